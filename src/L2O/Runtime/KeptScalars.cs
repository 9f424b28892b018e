using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Runtime;

/// <summary>
/// Tensor–number arithmetic whose TorchSharp <see cref="Scalar"/>s stay alive until libtorch has read them.
/// Every number that L2O hands to libtorch goes through here.
/// </summary>
/// <remarks>
/// <para>Why: TorchSharp turns a number into a native Scalar (every <c>x * 0.5</c>, <c>1 - x</c>, <c>clamp_min(eps)</c>,
/// and the hidden <c>alpha = 1</c> inside every tensor <c>a + b</c> and <c>square()</c>) and passes its handle to libtorch
/// without keeping the managed object reachable. A garbage collection started by any other thread during that call can
/// finalize the Scalar and free its native part while libtorch still reads it; libtorch then fails with "Expected false
/// to be true" (docs/reliability.md). Here each Scalar is either static (never collected) or disposed after the call,
/// which keeps it reachable until the call has returned.</para>
/// <para>Safe as they are in TorchSharp: tensor–tensor <c>*</c>, <c>-</c>, <c>/</c>. Not safe: tensor <c>+</c> in any
/// form, and any operator or method given a bare number. <c>ArchitectureTests</c> fails on any such call in L2O.</para>
/// </remarks>
public static class KeptScalars
{
    // The same values TorchSharp's own overloads pass (int 1 as add's alpha, int 2 for square), so results are bitwise unchanged.
    private static readonly Scalar One = 1.ToScalar();
    private static readonly Scalar Two = 2.ToScalar();
    private static readonly Scalar OneDouble = 1.0.ToScalar();

    /// <summary><c>a + b</c>.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary><c>a + b</c> for a number b.</summary>
    public static Tensor Plus(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.add(s, One);
    }

    /// <summary><c>a − b</c> for a number b.</summary>
    public static Tensor Minus(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.sub(s);
    }

    /// <summary><c>b − a</c> for a number b (TorchSharp's <c>b - a</c>: −a + b).</summary>
    public static Tensor SubtractedFrom(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.neg().add(s, One);
    }

    /// <summary><c>a · b</c> for a number b.</summary>
    public static Tensor Times(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.mul(s);
    }

    /// <summary><c>a / b</c> for a number b.</summary>
    public static Tensor Over(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.div(s);
    }

    /// <summary><c>a²</c> (TorchSharp's <c>square()</c>: pow(a, 2)).</summary>
    public static Tensor Squared(this Tensor a) => a.pow(Two);

    /// <summary><c>aᵉ</c> for a number e.</summary>
    public static Tensor Pow(this Tensor a, double e)
    {
        using var s = e.ToScalar();
        return a.pow(s);
    }

    /// <summary><c>max(a, min)</c> elementwise.</summary>
    public static Tensor ClampMin(this Tensor a, double min)
    {
        using var s = min.ToScalar();
        return a.clamp_min(s);
    }

    /// <summary><c>min(a, max)</c> elementwise.</summary>
    public static Tensor ClampMax(this Tensor a, double max)
    {
        using var s = max.ToScalar();
        return a.clamp_max(s);
    }

    /// <summary><c>min(max(a, min), max)</c> elementwise.</summary>
    public static Tensor Clamp(this Tensor a, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return a.clamp(lo, hi);
    }

    /// <summary>ELU with slope parameter <paramref name="alpha"/>: x for x &gt; 0, α(eˣ − 1) otherwise.</summary>
    public static Tensor Elu(this Tensor a, double alpha = 1.0)
    {
        using var s = alpha.ToScalar();
        return a.elu(s, OneDouble, OneDouble);
    }

    /// <summary>In place: <c>a += b</c>.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary>In place: <c>a += alpha · b</c>.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add_(b, s);
    }

    /// <summary><c>a + alpha · b</c>.</summary>
    public static Tensor Plus(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add(b, s);
    }

    /// <summary><c>a &gt; b</c> elementwise for a number b.</summary>
    public static Tensor GreaterThan(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.gt(s);
    }

    /// <summary><c>a ≥ b</c> elementwise for a number b.</summary>
    public static Tensor GreaterOrEqual(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.ge(s);
    }

    /// <summary>In place: every element of <paramref name="a"/> becomes <paramref name="value"/>.</summary>
    public static Tensor Fill(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.fill_(s);
    }

    /// <summary>0, 1, …, <paramref name="stop"/> − 1 as <paramref name="dtype"/>.</summary>
    public static Tensor Arange(long stop, ScalarType dtype)
    {
        using var start = 0L.ToScalar();
        using var end = stop.ToScalar();
        using var step = 1L.ToScalar();
        return arange(start, end, step, dtype: dtype);
    }

    /// <summary>A tensor of <paramref name="like"/>'s shape, dtype and device filled with <paramref name="value"/>.</summary>
    public static Tensor FullLike(Tensor like, double value)
    {
        using var s = value.ToScalar();
        return full_like(like, s);
    }
}
