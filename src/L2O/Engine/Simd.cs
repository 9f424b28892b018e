using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace L2O.Engine;

/// <summary>
/// A SIMD vector of floats as a generic parameter, so each kernel is written once and the JIT
/// specialises it for <see cref="V512"/>, <see cref="V256"/> and <see cref="V1"/> (scalar).
/// All members are static so calls inline to single instructions.
/// </summary>
internal unsafe interface ISimd<T> where T : unmanaged, ISimd<T>
{
    static abstract int Count { get; }
    static abstract string Name { get; }
    static abstract T Load(float* p);
    static abstract void Store(float* p, T v);
    static abstract T Splat(float x);
    /// <summary>a · b + c.</summary>
    static abstract T Fma(T a, T b, T c);
    static abstract T Add(T a, T b);
    static abstract T Sub(T a, T b);
    static abstract T Mul(T a, T b);
    static abstract T Div(T a, T b);
    /// <summary>
    /// Minimum as the hardware does it (vminps): when either operand is NaN the result is
    /// <paramref name="b"/>, so callers pass the variable second to let a NaN through. Saves the two
    /// fix-up instructions per call of IEEE semantics.
    /// </summary>
    static abstract T Min(T a, T b);
    static abstract T Max(T a, T b);
    static abstract T Sqrt(T a);
    static abstract T Floor(T a);
    /// <summary>1/a to about float precision (hardware estimate and one Newton step where available; a finite and nonzero).</summary>
    static abstract T Reciprocal(T a);
    /// <summary>1/√a to about float precision (a finite and positive).</summary>
    static abstract T ReciprocalSqrt(T a);
    /// <summary>2ⁿ for lanes holding integers n in [−126, 127] (built from the exponent bits).</summary>
    static abstract T Pow2(T n);
    /// <summary>a &gt; b ? x : y, elementwise.</summary>
    static abstract T SelectGreater(T a, T b, T x, T y);
    /// <summary>Sum of the lanes.</summary>
    static abstract float Sum(T a);
    /// <summary>
    /// output[0..3] += (Σ a, Σ b, Σ c, Σ d): four horizontal sums at once, by folding the vectors into
    /// each other (about a third of the instructions of four <see cref="Sum"/> calls); the lanes are added in another order than Sum's.
    /// </summary>
    static abstract void AddSums4(T a, T b, T c, T d, float* output);
}

internal readonly unsafe struct V512 : ISimd<V512>
{
    private readonly Vector512<float> _v;
    private V512(Vector512<float> v) => _v = v;
    public static int Count => Vector512<float>.Count;
    public static string Name => "avx512";
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, V512 v) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Splat(float x) => new(Vector512.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Fma(V512 a, V512 b, V512 c) => new(Vector512.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Add(V512 a, V512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Sub(V512 a, V512 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Mul(V512 a, V512 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Div(V512 a, V512 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Min(V512 a, V512 b) => new(Vector512.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Max(V512 a, V512 b) => new(Vector512.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Sqrt(V512 a) => new(Vector512.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Floor(V512 a) => new(Vector512.Floor(a._v));
    // A division or square root occupies the divider for 10+ cycles per zmm; the 14-bit estimate and
    // one Newton step (relative error about 2⁻²⁷) cost a few FMA slots.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Reciprocal(V512 a)
    {
        if (!Avx512F.IsSupported) return new(Vector512<float>.One / a._v);
        var r = Avx512F.Reciprocal14(a._v);
        return new(r * Vector512.FusedMultiplyAdd(-a._v, r, Vector512.Create(2f)));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 ReciprocalSqrt(V512 a)
    {
        if (!Avx512F.IsSupported) return new(Vector512<float>.One / Vector512.Sqrt(a._v));
        var r = Avx512F.ReciprocalSqrt14(a._v);
        // r (1.5 − a r² / 2)
        return new(r * Vector512.FusedMultiplyAdd(a._v * Vector512.Create(-0.5f), r * r, Vector512.Create(1.5f)));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Pow2(V512 n) => new(Vector512.ShiftLeft(Vector512.ConvertToInt32Native(n._v) + Vector512.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 SelectGreater(V512 a, V512 b, V512 x, V512 y) => new(Vector512.ConditionalSelect(Vector512.GreaterThan(a._v, b._v), x._v, y._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(V512 a) => Vector512.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddSums4(V512 a, V512 b, V512 c, V512 d, float* output)
    {
        if (!Avx512F.IsSupported)
        {
            output[0] += Sum(a); output[1] += Sum(b); output[2] += Sum(c); output[3] += Sum(d);
            return;
        }
        // 128-bit quarters: [a0+a2, a1+a3, b0+b2, b1+b3], then [a, b, c, d] with four partial sums each.
        var ab = Avx512F.Shuffle4x128(a._v, b._v, 0b01_00_01_00) + Avx512F.Shuffle4x128(a._v, b._v, 0b11_10_11_10);
        var cd = Avx512F.Shuffle4x128(c._v, d._v, 0b01_00_01_00) + Avx512F.Shuffle4x128(c._v, d._v, 0b11_10_11_10);
        var u = Avx512F.Shuffle4x128(ab, cd, 0b10_00_10_00) + Avx512F.Shuffle4x128(ab, cd, 0b11_01_11_01);
        // Within each quarter: element 0 becomes the quarter's sum.
        u += Avx512F.Shuffle(u, u, 0b10_11_00_01);
        u += Avx512F.Shuffle(u, u, 0b01_00_11_10);
        var sums = Avx512F.PermuteVar16x32(u, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower();
        (Vector128.Load(output) + sums).Store(output);
    }
}

internal readonly unsafe struct V256 : ISimd<V256>
{
    private readonly Vector256<float> _v;
    private V256(Vector256<float> v) => _v = v;
    public static int Count => Vector256<float>.Count;
    public static string Name => "avx2";
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, V256 v) => v._v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Splat(float x) => new(Vector256.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Fma(V256 a, V256 b, V256 c) => new(Vector256.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Add(V256 a, V256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Sub(V256 a, V256 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Mul(V256 a, V256 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Div(V256 a, V256 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Min(V256 a, V256 b) => new(Vector256.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Max(V256 a, V256 b) => new(Vector256.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Sqrt(V256 a) => new(Vector256.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Floor(V256 a) => new(Vector256.Floor(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Reciprocal(V256 a) => new(Vector256<float>.One / a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 ReciprocalSqrt(V256 a) => new(Vector256<float>.One / Vector256.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Pow2(V256 n) => new(Vector256.ShiftLeft(Vector256.ConvertToInt32Native(n._v) + Vector256.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 SelectGreater(V256 a, V256 b, V256 x, V256 y) => new(Vector256.ConditionalSelect(Vector256.GreaterThan(a._v, b._v), x._v, y._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(V256 a) => Vector256.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddSums4(V256 a, V256 b, V256 c, V256 d, float* output)
    {
        if (!Avx.IsSupported)
        {
            output[0] += Sum(a); output[1] += Sum(b); output[2] += Sum(c); output[3] += Sum(d);
            return;
        }
        // Three horizontal adds give [Σa, Σb, Σc, Σd] of each 128-bit half.
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a._v, b._v), Avx.HorizontalAdd(c._v, d._v));
        (Vector128.Load(output) + h.GetLower() + h.GetUpper()).Store(output);
    }
}

/// <summary>The scalar fallback (and the reference for the vector paths in tests).</summary>
internal readonly unsafe struct V1 : ISimd<V1>
{
    private readonly float _v;
    private V1(float v) => _v = v;
    public static int Count => 1;
    public static string Name => "scalar";
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Load(float* p) => new(*p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, V1 v) => *p = v._v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Splat(float x) => new(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Fma(V1 a, V1 b, V1 c) => new(MathF.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Add(V1 a, V1 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Sub(V1 a, V1 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Mul(V1 a, V1 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Div(V1 a, V1 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Min(V1 a, V1 b) => new(MathF.Min(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Max(V1 a, V1 b) => new(MathF.Max(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Sqrt(V1 a) => new(MathF.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Floor(V1 a) => new(MathF.Floor(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Reciprocal(V1 a) => new(1f / a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 ReciprocalSqrt(V1 a) => new(1f / MathF.Sqrt(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 Pow2(V1 n) => new(BitConverter.Int32BitsToSingle(((int)n._v + 127) << 23));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V1 SelectGreater(V1 a, V1 b, V1 x, V1 y) => a._v > b._v ? x : y;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(V1 a) => a._v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddSums4(V1 a, V1 b, V1 c, V1 d, float* output)
    {
        output[0] += a._v; output[1] += b._v; output[2] += c._v; output[3] += d._v;
    }
}

/// <summary>Which vector width the engine runs with.</summary>
public enum SimdWidth
{
    /// <summary>The widest the CPU accelerates: AVX-512, else AVX2, else scalar.</summary>
    Auto,
    Avx512,
    Avx2,
    Scalar,
}

internal static class SimdSelect
{
    /// <summary>The widest width this CPU accelerates.</summary>
    private static SimdWidth Best => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? SimdWidth.Avx512
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? SimdWidth.Avx2 : SimdWidth.Scalar;

    /// <summary>Why <paramref name="width"/> cannot run on this CPU, or null where it can (auto and scalar always can).</summary>
    public static string? Unavailable(SimdWidth width) => width switch
    {
        SimdWidth.Avx512 when Best != SimdWidth.Avx512 => "this CPU does not accelerate 512-bit vectors (AVX-512); use avx2 or scalar",
        SimdWidth.Avx2 when Best == SimdWidth.Scalar => "this CPU does not accelerate 256-bit vectors; use scalar",
        _ => null,
    };

    public static SimdWidth Resolve(SimdWidth requested)
    {
        if (requested == SimdWidth.Auto) return Best;
        if (Unavailable(requested) is { } why) throw new L2OException(why);
        return requested;
    }
}
