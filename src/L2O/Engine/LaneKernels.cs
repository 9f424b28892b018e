using System.Runtime.CompilerServices;

namespace L2O.Engine;

/// <summary>
/// A weight matrix W (out × in, PyTorch layout) for the lanes layout: W itself, row-major, for
/// y = W x on feature-major blocks, and Wᵀ (in × out) for the backward x̄ = Wᵀ ȳ. No padding: the
/// products broadcast one weight at a time, the vectors run along the coordinates.
/// </summary>
internal sealed unsafe class LaneMatrix
{
    private readonly AlignedBuffer _w, _wt;

    public LaneMatrix(int outs, int ins)
    {
        Out = outs; In = ins;
        _w = new AlignedBuffer((long)outs * ins);
        _wt = new AlignedBuffer((long)outs * ins);
    }

    public int Out { get; }
    public int In { get; }
    /// <summary>W, [out][in].</summary>
    public float* W => _w.Pointer;
    /// <summary>Wᵀ, [in][out].</summary>
    public float* Transposed => _wt.Pointer;

    /// <summary>Packs W given row-major as out × in.</summary>
    /// <summary>Reads meta-parameter <paramref name="name"/> through <paramref name="read"/> into the matrix (see <see cref="Set"/>).</summary>
    public void Read(Func<string, float[]> read, string name) => Set(read(name), name);

    public void Set(ReadOnlySpan<float> w, string name)
    {
        if (w.Length != Out * In) throw new ArgumentException($"meta-parameter '{name}' has {w.Length} values, expected {Out} × {In} = {Out * In}");
        for (int o = 0; o < Out; o++)
            for (int i = 0; i < In; i++)
            {
                W[o * In + i] = w[o * In + i];
                Transposed[i * Out + o] = w[o * In + i];
            }
    }
}

/// <summary>
/// Kernels for blocks stored feature-major, <c>[feature][coordinate]</c>: each feature is a row of
/// coordinates, so the SIMD lanes run along the coordinates and no lane is padding. Row strides
/// are in floats (a scratch row, or P for rows read straight from a state vector); n, the
/// coordinates processed, is a multiple of the vector width.
/// </summary>
internal static unsafe class Lanes<T> where T : unmanaged, ISimd<T>
{
    /// <summary>
    /// y[o][c] = init_o + Σ_{i&lt;k} w[o·ldw + i] · x[i][c] for o &lt; outs, c &lt; n, where init_o is
    /// y[o][c] itself (<paramref name="add"/>), bias[o], or 0 (bias null).
    /// </summary>
    /// <remarks>
    /// Register tiles of 4 output features × 4 coordinate vectors: per input feature 4 vector loads
    /// and 4 weight broadcasts feed 16 FMAs into 16 accumulators, so the FMA units, not the load
    /// ports, bound the loop. Leftover features and vectors use the 4×1, 1×4 and 1×1 tiles.
    /// </remarks>
    // Never inlined: inlined into a large caller, the JIT ran out of inlining budget and called V512.Fma per operation (perf: 14-20 % of RNNprop's lanes forward).
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    public static void Product(float* w, int ldw, int outs, int k, float* x, long ldx, float* y, long ldy, int n, float* bias, bool add)
    {
        int c = T.Count, wide = 4 * c, o = 0;
        for (; o + 4 <= outs; o += 4)
        {
            float* wo = w + o * ldw, yo = y + o * ldy, bo = bias is null ? null : bias + o;
            int v = 0;
            for (; v + wide <= n; v += wide) Tile4x4(wo, ldw, k, x + v, ldx, yo + v, ldy, bo, add);
            for (; v < n; v += c) Tile4x1(wo, ldw, k, x + v, ldx, yo + v, ldy, bo, add);
        }
        for (; o < outs; o++)
        {
            float* wo = w + o * ldw, yo = y + o * ldy, bo = bias is null ? null : bias + o;
            int v = 0;
            for (; v + wide <= n; v += wide) Tile1x4(wo, k, x + v, ldx, yo + v, bo, add);
            for (; v < n; v += c) Tile1x1(wo, k, x + v, ldx, yo + v, bo, add);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Start(float* y, float* bias, int feature, bool add) => add ? T.Load(y) : bias is null ? T.Splat(0f) : T.Splat(bias[feature]);

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x4(float* w, int ldw, int k, float* x, long ldx, float* y, long ldy, float* bias, bool add)
    {
        int c = T.Count;
        float* y0 = y, y1 = y + ldy, y2 = y + 2 * ldy, y3 = y + 3 * ldy;
        float* w0 = w, w1 = w + ldw, w2 = w + 2 * ldw, w3 = w + 3 * ldw;
        T a00 = Start(y0, bias, 0, add), a01 = Start(y0 + c, bias, 0, add), a02 = Start(y0 + 2 * c, bias, 0, add), a03 = Start(y0 + 3 * c, bias, 0, add);
        T a10 = Start(y1, bias, 1, add), a11 = Start(y1 + c, bias, 1, add), a12 = Start(y1 + 2 * c, bias, 1, add), a13 = Start(y1 + 3 * c, bias, 1, add);
        T a20 = Start(y2, bias, 2, add), a21 = Start(y2 + c, bias, 2, add), a22 = Start(y2 + 2 * c, bias, 2, add), a23 = Start(y2 + 3 * c, bias, 2, add);
        T a30 = Start(y3, bias, 3, add), a31 = Start(y3 + c, bias, 3, add), a32 = Start(y3 + 2 * c, bias, 3, add), a33 = Start(y3 + 3 * c, bias, 3, add);
        for (int i = 0; i < k; i++)
        {
            float* xi = x + i * ldx;
            T x0 = T.Load(xi), x1 = T.Load(xi + c), x2 = T.Load(xi + 2 * c), x3 = T.Load(xi + 3 * c);
            T s = T.Splat(w0[i]);
            a00 = T.Fma(s, x0, a00); a01 = T.Fma(s, x1, a01); a02 = T.Fma(s, x2, a02); a03 = T.Fma(s, x3, a03);
            s = T.Splat(w1[i]);
            a10 = T.Fma(s, x0, a10); a11 = T.Fma(s, x1, a11); a12 = T.Fma(s, x2, a12); a13 = T.Fma(s, x3, a13);
            s = T.Splat(w2[i]);
            a20 = T.Fma(s, x0, a20); a21 = T.Fma(s, x1, a21); a22 = T.Fma(s, x2, a22); a23 = T.Fma(s, x3, a23);
            s = T.Splat(w3[i]);
            a30 = T.Fma(s, x0, a30); a31 = T.Fma(s, x1, a31); a32 = T.Fma(s, x2, a32); a33 = T.Fma(s, x3, a33);
        }
        T.Store(y0, a00); T.Store(y0 + c, a01); T.Store(y0 + 2 * c, a02); T.Store(y0 + 3 * c, a03);
        T.Store(y1, a10); T.Store(y1 + c, a11); T.Store(y1 + 2 * c, a12); T.Store(y1 + 3 * c, a13);
        T.Store(y2, a20); T.Store(y2 + c, a21); T.Store(y2 + 2 * c, a22); T.Store(y2 + 3 * c, a23);
        T.Store(y3, a30); T.Store(y3 + c, a31); T.Store(y3 + 2 * c, a32); T.Store(y3 + 3 * c, a33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x1(float* w, int ldw, int k, float* x, long ldx, float* y, long ldy, float* bias, bool add)
    {
        float* y0 = y, y1 = y + ldy, y2 = y + 2 * ldy, y3 = y + 3 * ldy;
        float* w0 = w, w1 = w + ldw, w2 = w + 2 * ldw, w3 = w + 3 * ldw;
        T a0 = Start(y0, bias, 0, add), a1 = Start(y1, bias, 1, add), a2 = Start(y2, bias, 2, add), a3 = Start(y3, bias, 3, add);
        for (int i = 0; i < k; i++)
        {
            T xi = T.Load(x + i * ldx);
            a0 = T.Fma(T.Splat(w0[i]), xi, a0); a1 = T.Fma(T.Splat(w1[i]), xi, a1);
            a2 = T.Fma(T.Splat(w2[i]), xi, a2); a3 = T.Fma(T.Splat(w3[i]), xi, a3);
        }
        T.Store(y0, a0); T.Store(y1, a1); T.Store(y2, a2); T.Store(y3, a3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x4(float* w, int k, float* x, long ldx, float* y, float* bias, bool add)
    {
        int c = T.Count;
        T a0 = Start(y, bias, 0, add), a1 = Start(y + c, bias, 0, add), a2 = Start(y + 2 * c, bias, 0, add), a3 = Start(y + 3 * c, bias, 0, add);
        for (int i = 0; i < k; i++)
        {
            float* xi = x + i * ldx;
            T s = T.Splat(w[i]);
            a0 = T.Fma(s, T.Load(xi), a0); a1 = T.Fma(s, T.Load(xi + c), a1); a2 = T.Fma(s, T.Load(xi + 2 * c), a2); a3 = T.Fma(s, T.Load(xi + 3 * c), a3);
        }
        T.Store(y, a0); T.Store(y + c, a1); T.Store(y + 2 * c, a2); T.Store(y + 3 * c, a3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x1(float* w, int k, float* x, long ldx, float* y, float* bias, bool add)
    {
        T a = Start(y, bias, 0, add);
        for (int i = 0; i < k; i++) a = T.Fma(T.Splat(w[i]), T.Load(x + i * ldx), a);
        T.Store(y, a);
    }

    /// <summary>
    /// grad[o·ldg + i] += Σ_{c&lt;n} dy[o][c] · x[i][c] for o &lt; outs, i &lt; k (a weight gradient:
    /// dot products along the coordinates). Lanes past the block's last coordinate must hold zeros in dy.
    /// </summary>
    /// <remarks>
    /// Tiles of 4 × 4 (output, input) pairs: per coordinate vector 8 loads feed 16 FMAs; each
    /// accumulator is summed across its lanes once at the end.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    public static void AccumulateOuter(float* dy, long lddy, int outs, float* x, long ldx, int k, int n, float* grad, int ldg)
    {
        int o = 0;
        for (; o + 4 <= outs; o += 4)
        {
            int i = 0;
            for (; i + 4 <= k; i += 4) Outer4x4(dy + o * lddy, lddy, x + i * ldx, ldx, n, grad + o * ldg + i, ldg);
            for (; i < k; i++) Outer4x1(dy + o * lddy, lddy, x + i * ldx, n, grad + o * ldg + i, ldg);
        }
        for (; o < outs; o++)
        {
            int i = 0;
            for (; i + 4 <= k; i += 4) Outer1x4(dy + o * lddy, x + i * ldx, ldx, n, grad + o * ldg + i);
            for (; i < k; i++) grad[o * ldg + i] += Dot(dy + o * lddy, x + i * ldx, n);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Outer4x4(float* dy, long lddy, float* x, long ldx, int n, float* g, int ldg)
    {
        float* d0 = dy, d1 = dy + lddy, d2 = dy + 2 * lddy, d3 = dy + 3 * lddy;
        float* x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx;
        T z = T.Splat(0f);
        T a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
        T a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
        for (int v = 0; v < n; v += T.Count)
        {
            T u0 = T.Load(x0 + v), u1 = T.Load(x1 + v), u2 = T.Load(x2 + v), u3 = T.Load(x3 + v);
            T e = T.Load(d0 + v);
            a00 = T.Fma(e, u0, a00); a01 = T.Fma(e, u1, a01); a02 = T.Fma(e, u2, a02); a03 = T.Fma(e, u3, a03);
            e = T.Load(d1 + v);
            a10 = T.Fma(e, u0, a10); a11 = T.Fma(e, u1, a11); a12 = T.Fma(e, u2, a12); a13 = T.Fma(e, u3, a13);
            e = T.Load(d2 + v);
            a20 = T.Fma(e, u0, a20); a21 = T.Fma(e, u1, a21); a22 = T.Fma(e, u2, a22); a23 = T.Fma(e, u3, a23);
            e = T.Load(d3 + v);
            a30 = T.Fma(e, u0, a30); a31 = T.Fma(e, u1, a31); a32 = T.Fma(e, u2, a32); a33 = T.Fma(e, u3, a33);
        }
        T.AddSums4(a00, a01, a02, a03, g);
        T.AddSums4(a10, a11, a12, a13, g + ldg);
        T.AddSums4(a20, a21, a22, a23, g + 2 * ldg);
        T.AddSums4(a30, a31, a32, a33, g + 3 * ldg);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Outer4x1(float* dy, long lddy, float* x, int n, float* g, int ldg)
    {
        float* d0 = dy, d1 = dy + lddy, d2 = dy + 2 * lddy, d3 = dy + 3 * lddy;
        T z = T.Splat(0f);
        T a0 = z, a1 = z, a2 = z, a3 = z;
        for (int v = 0; v < n; v += T.Count)
        {
            T u = T.Load(x + v);
            a0 = T.Fma(T.Load(d0 + v), u, a0); a1 = T.Fma(T.Load(d1 + v), u, a1);
            a2 = T.Fma(T.Load(d2 + v), u, a2); a3 = T.Fma(T.Load(d3 + v), u, a3);
        }
        float* sums = stackalloc float[4];
        sums[0] = sums[1] = sums[2] = sums[3] = 0f;
        T.AddSums4(a0, a1, a2, a3, sums);
        g[0] += sums[0]; g[ldg] += sums[1]; g[2 * ldg] += sums[2]; g[3 * ldg] += sums[3];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Outer1x4(float* dy, float* x, long ldx, int n, float* g)
    {
        float* x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx;
        T z = T.Splat(0f);
        T a0 = z, a1 = z, a2 = z, a3 = z;
        for (int v = 0; v < n; v += T.Count)
        {
            T e = T.Load(dy + v);
            a0 = T.Fma(e, T.Load(x0 + v), a0); a1 = T.Fma(e, T.Load(x1 + v), a1);
            a2 = T.Fma(e, T.Load(x2 + v), a2); a3 = T.Fma(e, T.Load(x3 + v), a3);
        }
        T.AddSums4(a0, a1, a2, a3, g);
    }

    /// <summary>Σ_{c&lt;n} a[c] b[c] over whole vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Dot(float* a, float* b, int n)
    {
        T acc = T.Splat(0f);
        for (int v = 0; v < n; v += T.Count) acc = T.Fma(T.Load(a + v), T.Load(b + v), acc);
        return T.Sum(acc);
    }

    /// <summary>grad[o] += Σ_{c&lt;n} dy[o][c] (a bias gradient; zeros past the block's last coordinate).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateRowSums(float* dy, long lddy, int outs, int n, float* grad)
    {
        for (int o = 0; o < outs; o++)
        {
            float* d = dy + o * lddy;
            T acc = T.Splat(0f);
            for (int v = 0; v < n; v += T.Count) acc = T.Add(acc, T.Load(d + v));
            grad[o] += T.Sum(acc);
        }
    }

    /// <summary>output[r] = Σ_{c&lt;count} a[r][c] · b[r][c] over exactly <paramref name="count"/> coordinates (vectors, then the scalar tail).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowDots(float* a, long lda, float* b, long ldb, int features, int count, float* output)
    {
        int full = count / T.Count * T.Count;
        for (int r = 0; r < features; r++)
        {
            float* ar = a + r * lda, br = b + r * ldb;
            T acc = T.Splat(0f);
            for (int v = 0; v < full; v += T.Count) acc = T.Fma(T.Load(ar + v), T.Load(br + v), acc);
            float s = T.Sum(acc);
            for (int c = full; c < count; c++) s += ar[c] * br[c];
            output[r] = s;
        }
    }

    /// <summary>Copies <paramref name="count"/> coordinates of each feature row to a scratch row and zeroes the lanes up to n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void CopyIn(float* src, long lds, int features, int count, int n, float* dst, long ldd)
    {
        for (int r = 0; r < features; r++)
        {
            new ReadOnlySpan<float>(src + r * lds, count).CopyTo(new Span<float>(dst + r * ldd, count));
            new Span<float>(dst + r * ldd + count, n - count).Clear();
        }
    }

    /// <summary>Copies <paramref name="count"/> coordinates of each feature row (whole vectors while they fit, then exactly).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void CopyOut(float* src, long lds, int features, int count, float* dst, long ldd)
    {
        int full = count / T.Count * T.Count;
        for (int r = 0; r < features; r++)
        {
            float* s = src + r * lds, d = dst + r * ldd;
            for (int v = 0; v < full; v += T.Count) T.Store(d + v, T.Load(s + v));
            for (int c = full; c < count; c++) d[c] = s[c];
        }
    }

    /// <summary>Zeroes lanes [count, n) of each feature row: the block's last vector past its last coordinate.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ZeroTail(float* x, long ld, int features, int count, int n)
    {
        if (count == n) return;
        for (int r = 0; r < features; r++) new Span<float>(x + r * ld + count, n - count).Clear();
    }

    /// <summary>x[r] = ReLU(x[r]), in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Relu(float* x, long ld, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int c = 0; c < n; c += T.Count) T.Store(x + r * ld + c, T.Max(T.Splat(0f), T.Load(x + r * ld + c)));   // the variable second: a NaN passes (ISimd.Min)
    }

    /// <summary>ā_z = ā_h where ReLU(z) &gt; 0 (torch's relu backward passes nothing at z = 0), in place; <paramref name="relu"/> holds ReLU(z).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ReluBackward(float* adjoint, float* relu, long ld, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int c = 0; c < n; c += T.Count)
            {
                float* a = adjoint + r * ld + c;
                T.Store(a, T.SelectGreater(T.Load(relu + r * ld + c), T.Splat(0f), T.Load(a), T.Splat(0f)));
            }
    }

    /// <summary>y[r] = ELU(x[r]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Elu(float* x, long ldx, float* y, long ldy, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int v = 0; v < n; v += T.Count) T.Store(y + r * ldy + v, Act<T>.Elu(T.Load(x + r * ldx + v)));
    }

    /// <summary>o[r] = d[r] ⊙ ELU′(a[r]), from y = ELU(a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void EluBackward(float* d, long ldd, float* a, float* y, long ld, float* o, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int v = 0; v < n; v += T.Count)
                T.Store(o + r * ld + v, T.Mul(T.Load(d + r * ldd + v), Act<T>.EluGrad(T.Load(a + r * ld + v), T.Load(y + r * ld + v))));
    }

    /// <summary>y[r] = x[r] · scale[r] (one scalar per feature row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScaleRows(float* x, long ldx, float* scale, float* y, long ldy, int features, int n)
    {
        for (int r = 0; r < features; r++)
        {
            T s = T.Splat(scale[r]);
            for (int v = 0; v < n; v += T.Count) T.Store(y + r * ldy + v, T.Mul(T.Load(x + r * ldx + v), s));
        }
    }

    /// <summary>y = x · s over one row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(float* x, float s, float* y, int n)
    {
        T sv = T.Splat(s);
        for (int v = 0; v < n; v += T.Count) T.Store(y + v, T.Mul(T.Load(x + v), sv));
    }

    /// <summary>dst[r] += src[r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(float* dst, long ldd, float* src, long lds, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int v = 0; v < n; v += T.Count)
                T.Store(dst + r * ldd + v, T.Add(T.Load(dst + r * ldd + v), T.Load(src + r * lds + v)));
    }

    /// <summary>dst[r] += scale[r] · src[r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddScaledRows(float* dst, long ldd, float* src, long lds, float* scale, int features, int n)
    {
        for (int r = 0; r < features; r++)
        {
            T k = T.Splat(scale[r]);
            for (int v = 0; v < n; v += T.Count)
                T.Store(dst + r * ldd + v, T.Fma(k, T.Load(src + r * lds + v), T.Load(dst + r * ldd + v)));
        }
    }

    /// <summary>y[r] = σ(x[r]) = ½ + ½ tanh(x/2) (the LSTM gate form).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gates(float* x, float* y, long ld, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int v = 0; v < n; v += T.Count) T.Store(y + r * ld + v, Act<T>.Gate(T.Load(x + r * ld + v)));
    }

    /// <summary>y[r] = tanh(x[r]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tanh(float* x, float* y, long ld, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int v = 0; v < n; v += T.Count) T.Store(y + r * ld + v, Act<T>.Tanh(T.Load(x + r * ld + v)));
    }

    /// <summary>y[r] = σ(x[r]) and y1[r] = 1 − σ(x[r]) = σ(−x[r]), each without cancellation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SigmoidPairs(float* x, float* y, float* oneMinus, long ld, int features, int n)
    {
        for (int r = 0; r < features; r++)
            for (int v = 0; v < n; v += T.Count)
            {
                long i = r * ld + v;
                T.Store(y + i, Act<T>.SigmoidPair(T.Load(x + i), out T om));
                T.Store(oneMinus + i, om);
            }
    }
}

/// <summary>
/// One coordinatewise LSTM layer on feature-major blocks (gates stacked i, f, g, o as in PyTorch), shared by
/// the lanes cells: the cell update from the gate activations, and its adjoints.
/// </summary>
internal static unsafe class LaneLstm<T> where T : unmanaged, ISimd<T>
{
    /// <summary>
    /// The gates of one layer: z = b + W_ih x + W_hh h (4H feature rows), then σ on i, f, o and tanh on g
    /// (one activation per row range, no per-lane choice).
    /// </summary>
    public static void Gates(LaneMatrix wx, LaneMatrix wh, float* bias, float* x, long ldx, float* h0, long ldh, float* gates, float* acts, long ld, int hidden, int n)
    {
        Lanes<T>.Product(wx.W, wx.In, 4 * hidden, wx.In, x, ldx, gates, ld, n, bias, false);
        Lanes<T>.Product(wh.W, hidden, 4 * hidden, hidden, h0, ldh, gates, ld, n, null, true);
        Lanes<T>.Gates(gates, acts, ld, 2 * hidden, n);
        Lanes<T>.Tanh(gates + 2 * hidden * ld, acts + 2 * hidden * ld, ld, hidden, n);
        Lanes<T>.Gates(gates + 3 * hidden * ld, acts + 3 * hidden * ld, ld, hidden, n);
    }

    /// <summary>c′ = σ(f) c + σ(i) tanh(g), h′ = σ(o) tanh(c′), keeping tanh(c′) for the backward.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Cell(float* acts, float* c0, long ldc, float* tanhC, float* cOut, float* hOut, long ld, int hidden, int n)
    {
        for (int r = 0; r < hidden; r++)
        {
            float* i = acts + r * ld, fg = acts + (hidden + r) * ld, g = acts + (2 * hidden + r) * ld, o = acts + (3 * hidden + r) * ld;
            float* c = c0 + r * ldc;
            long row = r * ld;
            for (int v = 0; v < n; v += T.Count)
            {
                T cn = T.Fma(T.Load(fg + v), T.Load(c + v), T.Mul(T.Load(i + v), T.Load(g + v)));
                T tc = Act<T>.Tanh(cn);
                T.Store(tanhC + row + v, tc);
                T.Store(cOut + row + v, cn);
                T.Store(hOut + row + v, T.Mul(T.Load(o + v), tc));
            }
        }
    }

    /// <summary>
    /// The LSTM cell's adjoints: from ā(h′) (dh) and ā(c′) of step s+1 (dcNext), the adjoints of the
    /// gate pre-activations [z_i ; z_f ; z_g ; z_o] and of c.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void CellBackward(float* acts, float* tanhC, float* c0, long ldc, float* dh, float* dcNext, long lddc, float* dGates, float* dc, long ld, int hidden, int n)
    {
        T one = T.Splat(1f);
        for (int r = 0; r < hidden; r++)
        {
            long ri = r * ld, rf = (hidden + r) * ld, rg = (2 * hidden + r) * ld, ro = (3 * hidden + r) * ld;
            float* c = c0 + r * ldc, dcn = dcNext + r * lddc;
            for (int v = 0; v < n; v += T.Count)
            {
                T i = T.Load(acts + ri + v), fg = T.Load(acts + rf + v), g = T.Load(acts + rg + v), o = T.Load(acts + ro + v);
                T tc = T.Load(tanhC + ri + v), h = T.Load(dh + ri + v);
                T d = T.Fma(h, T.Mul(o, T.Sub(one, T.Mul(tc, tc))), T.Load(dcn + v));
                T.Store(dc + ri + v, T.Mul(d, fg));
                T.Store(dGates + ri + v, T.Mul(T.Mul(d, g), T.Mul(i, T.Sub(one, i))));
                T.Store(dGates + rf + v, T.Mul(T.Mul(d, T.Load(c + v)), T.Mul(fg, T.Sub(one, fg))));
                T.Store(dGates + rg + v, T.Mul(T.Mul(d, i), T.Sub(one, T.Mul(g, g))));
                T.Store(dGates + ro + v, T.Mul(T.Mul(h, tc), T.Mul(o, T.Sub(one, o))));
            }
        }
    }
}
