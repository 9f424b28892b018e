using System.Runtime.CompilerServices;

namespace L2O.Engine;

/// <summary>
/// Small dense products on one block of coordinates (rows), written once over <see cref="ISimd{T}"/>.
/// Right-hand matrices are packed row-major with their columns padded to a whole number of vectors
/// (zeros in the padding), so every load and store is a full vector and the padding of an output
/// row receives exact zeros. Only the first K columns of a left-hand row are read: whatever a
/// buffer holds past its real width is never mixed into real values.
/// </summary>
internal static unsafe class Gemm<T> where T : unmanaged, ISimd<T>
{
    /// <summary>y[r, 0:n] += Σ_k x[r, k] · b[k, 0:n] for r &lt; rows; n a multiple of the vector width.</summary>
    public static void MulAdd(float* x, int ldx, int rows, int k, float* b, int ldb, int n, float* y, int ldy)
    {
        int c = T.Count, nv = n / c, r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            float* xr = x + r * ldx, yr = y + r * ldy;
            int v = 0;
            for (; v + 4 <= nv; v += 4) Tile4x4(xr, ldx, k, b + v * c, ldb, yr + v * c, ldy);
            for (; v + 2 <= nv; v += 2) Tile4x2(xr, ldx, k, b + v * c, ldb, yr + v * c, ldy);
            for (; v < nv; v++) Tile4x1(xr, ldx, k, b + v * c, ldb, yr + v * c, ldy);
        }
        for (; r < rows; r++)
        {
            float* xr = x + r * ldx, yr = y + r * ldy;
            for (int v = 0; v < nv; v++)
            {
                T acc = T.Load(yr + v * c);
                for (int i = 0; i < k; i++) acc = T.Fma(T.Splat(xr[i]), T.Load(b + i * ldb + v * c), acc);
                T.Store(yr + v * c, acc);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile4x4(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy)
    {
        int c = T.Count;
        float* y1 = y + ldy, y2 = y1 + ldy, y3 = y2 + ldy;
        T a00 = T.Load(y), a01 = T.Load(y + c), a02 = T.Load(y + 2 * c), a03 = T.Load(y + 3 * c);
        T a10 = T.Load(y1), a11 = T.Load(y1 + c), a12 = T.Load(y1 + 2 * c), a13 = T.Load(y1 + 3 * c);
        T a20 = T.Load(y2), a21 = T.Load(y2 + c), a22 = T.Load(y2 + 2 * c), a23 = T.Load(y2 + 3 * c);
        T a30 = T.Load(y3), a31 = T.Load(y3 + c), a32 = T.Load(y3 + 2 * c), a33 = T.Load(y3 + 3 * c);
        float* x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        for (int i = 0; i < k; i++)
        {
            float* bi = b + i * ldb;
            T b0 = T.Load(bi), b1 = T.Load(bi + c), b2 = T.Load(bi + 2 * c), b3 = T.Load(bi + 3 * c);
            T s = T.Splat(x[i]);
            a00 = T.Fma(s, b0, a00); a01 = T.Fma(s, b1, a01); a02 = T.Fma(s, b2, a02); a03 = T.Fma(s, b3, a03);
            s = T.Splat(x1[i]);
            a10 = T.Fma(s, b0, a10); a11 = T.Fma(s, b1, a11); a12 = T.Fma(s, b2, a12); a13 = T.Fma(s, b3, a13);
            s = T.Splat(x2[i]);
            a20 = T.Fma(s, b0, a20); a21 = T.Fma(s, b1, a21); a22 = T.Fma(s, b2, a22); a23 = T.Fma(s, b3, a23);
            s = T.Splat(x3[i]);
            a30 = T.Fma(s, b0, a30); a31 = T.Fma(s, b1, a31); a32 = T.Fma(s, b2, a32); a33 = T.Fma(s, b3, a33);
        }
        T.Store(y, a00); T.Store(y + c, a01); T.Store(y + 2 * c, a02); T.Store(y + 3 * c, a03);
        T.Store(y1, a10); T.Store(y1 + c, a11); T.Store(y1 + 2 * c, a12); T.Store(y1 + 3 * c, a13);
        T.Store(y2, a20); T.Store(y2 + c, a21); T.Store(y2 + 2 * c, a22); T.Store(y2 + 3 * c, a23);
        T.Store(y3, a30); T.Store(y3 + c, a31); T.Store(y3 + 2 * c, a32); T.Store(y3 + 3 * c, a33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile4x2(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy)
    {
        int c = T.Count;
        float* y1 = y + ldy, y2 = y1 + ldy, y3 = y2 + ldy;
        T a00 = T.Load(y), a01 = T.Load(y + c), a10 = T.Load(y1), a11 = T.Load(y1 + c);
        T a20 = T.Load(y2), a21 = T.Load(y2 + c), a30 = T.Load(y3), a31 = T.Load(y3 + c);
        float* x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        for (int i = 0; i < k; i++)
        {
            float* bi = b + i * ldb;
            T b0 = T.Load(bi), b1 = T.Load(bi + c);
            T s = T.Splat(x[i]); a00 = T.Fma(s, b0, a00); a01 = T.Fma(s, b1, a01);
            s = T.Splat(x1[i]); a10 = T.Fma(s, b0, a10); a11 = T.Fma(s, b1, a11);
            s = T.Splat(x2[i]); a20 = T.Fma(s, b0, a20); a21 = T.Fma(s, b1, a21);
            s = T.Splat(x3[i]); a30 = T.Fma(s, b0, a30); a31 = T.Fma(s, b1, a31);
        }
        T.Store(y, a00); T.Store(y + c, a01); T.Store(y1, a10); T.Store(y1 + c, a11);
        T.Store(y2, a20); T.Store(y2 + c, a21); T.Store(y3, a30); T.Store(y3 + c, a31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile4x1(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy)
    {
        float* y1 = y + ldy, y2 = y1 + ldy, y3 = y2 + ldy;
        T a0 = T.Load(y), a1 = T.Load(y1), a2 = T.Load(y2), a3 = T.Load(y3);
        float* x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        for (int i = 0; i < k; i++)
        {
            T b0 = T.Load(b + i * ldb);
            a0 = T.Fma(T.Splat(x[i]), b0, a0); a1 = T.Fma(T.Splat(x1[i]), b0, a1);
            a2 = T.Fma(T.Splat(x2[i]), b0, a2); a3 = T.Fma(T.Splat(x3[i]), b0, a3);
        }
        T.Store(y, a0); T.Store(y1, a1); T.Store(y2, a2); T.Store(y3, a3);
    }

    /// <summary>acc[i, 0:n] += Σ_r x[r, i] · dy[r, 0:n] for i &lt; k (the weight gradient xᵀ dy, packed like the weight).</summary>
    public static void AccumulateXtY(float* x, int ldx, int rows, int k, float* dy, int lddy, int n, float* acc, int ldacc)
    {
        int c = T.Count, nv = n / c, i = 0;
        for (; i + 4 <= k; i += 4)
        {
            int v = 0;
            for (; v + 4 <= nv; v += 4) XtTile4x4(x + i, ldx, rows, dy + v * c, lddy, acc + i * ldacc + v * c, ldacc);
            for (; v < nv; v++) XtTile4x1(x + i, ldx, rows, dy + v * c, lddy, acc + i * ldacc + v * c, ldacc);
        }
        for (; i < k; i++)
            for (int v = 0; v < nv; v++)
            {
                float* a = acc + i * ldacc + v * c;
                T s = T.Load(a);
                for (int r = 0; r < rows; r++) s = T.Fma(T.Splat(x[r * ldx + i]), T.Load(dy + r * lddy + v * c), s);
                T.Store(a, s);
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void XtTile4x4(float* x, int ldx, int rows, float* dy, int lddy, float* a, int lda)
    {
        int c = T.Count;
        float* r1 = a + lda, r2 = r1 + lda, r3 = r2 + lda;
        T a00 = T.Load(a), a01 = T.Load(a + c), a02 = T.Load(a + 2 * c), a03 = T.Load(a + 3 * c);
        T a10 = T.Load(r1), a11 = T.Load(r1 + c), a12 = T.Load(r1 + 2 * c), a13 = T.Load(r1 + 3 * c);
        T a20 = T.Load(r2), a21 = T.Load(r2 + c), a22 = T.Load(r2 + 2 * c), a23 = T.Load(r2 + 3 * c);
        T a30 = T.Load(r3), a31 = T.Load(r3 + c), a32 = T.Load(r3 + 2 * c), a33 = T.Load(r3 + 3 * c);
        for (int r = 0; r < rows; r++)
        {
            float* d = dy + r * lddy;
            float* xr = x + r * ldx;
            T b0 = T.Load(d), b1 = T.Load(d + c), b2 = T.Load(d + 2 * c), b3 = T.Load(d + 3 * c);
            T s = T.Splat(xr[0]);
            a00 = T.Fma(s, b0, a00); a01 = T.Fma(s, b1, a01); a02 = T.Fma(s, b2, a02); a03 = T.Fma(s, b3, a03);
            s = T.Splat(xr[1]);
            a10 = T.Fma(s, b0, a10); a11 = T.Fma(s, b1, a11); a12 = T.Fma(s, b2, a12); a13 = T.Fma(s, b3, a13);
            s = T.Splat(xr[2]);
            a20 = T.Fma(s, b0, a20); a21 = T.Fma(s, b1, a21); a22 = T.Fma(s, b2, a22); a23 = T.Fma(s, b3, a23);
            s = T.Splat(xr[3]);
            a30 = T.Fma(s, b0, a30); a31 = T.Fma(s, b1, a31); a32 = T.Fma(s, b2, a32); a33 = T.Fma(s, b3, a33);
        }
        T.Store(a, a00); T.Store(a + c, a01); T.Store(a + 2 * c, a02); T.Store(a + 3 * c, a03);
        T.Store(r1, a10); T.Store(r1 + c, a11); T.Store(r1 + 2 * c, a12); T.Store(r1 + 3 * c, a13);
        T.Store(r2, a20); T.Store(r2 + c, a21); T.Store(r2 + 2 * c, a22); T.Store(r2 + 3 * c, a23);
        T.Store(r3, a30); T.Store(r3 + c, a31); T.Store(r3 + 2 * c, a32); T.Store(r3 + 3 * c, a33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void XtTile4x1(float* x, int ldx, int rows, float* dy, int lddy, float* a, int lda)
    {
        float* r1 = a + lda, r2 = r1 + lda, r3 = r2 + lda;
        T a0 = T.Load(a), a1 = T.Load(r1), a2 = T.Load(r2), a3 = T.Load(r3);
        for (int r = 0; r < rows; r++)
        {
            T d = T.Load(dy + r * lddy);
            float* xr = x + r * ldx;
            a0 = T.Fma(T.Splat(xr[0]), d, a0); a1 = T.Fma(T.Splat(xr[1]), d, a1);
            a2 = T.Fma(T.Splat(xr[2]), d, a2); a3 = T.Fma(T.Splat(xr[3]), d, a3);
        }
        T.Store(a, a0); T.Store(r1, a1); T.Store(r2, a2); T.Store(r3, a3);
    }

    /// <summary>acc[0:n] += Σ_r dy[r, 0:n] (a bias gradient).</summary>
    public static void AccumulateColumns(float* dy, int lddy, int rows, int n, float* acc)
    {
        int c = T.Count;
        for (int v = 0; v < n; v += c)
        {
            T s = T.Load(acc + v);
            for (int r = 0; r < rows; r++) s = T.Add(s, T.Load(dy + r * lddy + v));
            T.Store(acc + v, s);
        }
    }

    /// <summary>y[r, 0:n] = bias[0:n] for every row.</summary>
    public static void SetRows(float* y, int ldy, int rows, int n, float* bias)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < n; v += T.Count) T.Store(y + r * ldy + v, T.Load(bias + v));
    }
}

/// <summary>Activation functions and their derivatives on vectors.</summary>
internal static class Act<T> where T : unmanaged, ISimd<T>
{
    /// <summary>
    /// e^x in float32 (Cephes' expf: x = n ln 2 + r, |r| ≤ ln 2 / 2, a degree-7 polynomial for e^r,
    /// 2ⁿ from the exponent bits); about 1 ulp. Inputs are clamped to [−87.3, 88.7], so the result is
    /// finite: at most 3.4e38, at least 2⁻¹²⁶. (.NET's Vector512.Exp is not vectorised on .NET 10 and
    /// ran 600× slower than this.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Exp(T x)
    {
        x = T.Min(T.Splat(88.72283f), T.Max(T.Splat(-87.33654f), x));   // NaN passes through
        T n = T.Floor(T.Fma(x, T.Splat(1.44269504088896341f), T.Splat(0.5f)));
        T r = T.Sub(x, T.Mul(n, T.Splat(0.693359375f)));
        r = T.Sub(r, T.Mul(n, T.Splat(-2.12194440e-4f)));
        T p = T.Fma(T.Splat(1.9875691500E-4f), r, T.Splat(1.3981999507E-3f));
        p = T.Fma(p, r, T.Splat(8.3334519073E-3f));
        p = T.Fma(p, r, T.Splat(4.1665795894E-2f));
        p = T.Fma(p, r, T.Splat(1.6666665459E-1f));
        p = T.Fma(p, r, T.Splat(5.0000001201E-1f));
        p = T.Add(T.Fma(p, T.Mul(r, r), r), T.Splat(1f));
        // 2ⁿ for n = 128 would overflow the exponent field: split it as 2ⁿ⁻¹ · 2.
        T half = T.Pow2(T.Sub(n, T.Splat(1f)));
        return T.Mul(T.Mul(p, half), T.Splat(2f));
    }

    /// <summary>σ(x) = 1 / (1 + e^{−x}); saturates to 0 or 1 without overflow trouble.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Sigmoid(T x) => T.Reciprocal(T.Add(T.Splat(1f), Exp(T.Sub(T.Splat(0f), x))));

    /// <summary>
    /// tanh(x): 2σ(2x) − 1, and for |x| &lt; 1/4 its odd Taylor series to x¹¹ so that small values keep
    /// full relative precision (the first form loses it to cancellation near 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Tanh(T x)
    {
        T big = T.Sub(T.Mul(T.Splat(2f), Sigmoid(T.Add(x, x))), T.Splat(1f));
        T x2 = T.Mul(x, x);
        T p = T.Fma(x2, T.Splat(-1382f / 155925f), T.Splat(62f / 2835f));
        p = T.Fma(x2, p, T.Splat(-17f / 315f));
        p = T.Fma(x2, p, T.Splat(2f / 15f));
        p = T.Fma(x2, p, T.Splat(-1f / 3f));
        T small = T.Fma(T.Mul(x2, x), p, x);
        return T.SelectGreater(T.Splat(0.25f), Abs(x), small, big);
    }

    /// <summary>e^x − 1 with full relative precision near 0 (Taylor series to x⁸ for |x| &lt; 1/4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Expm1(T x)
    {
        T big = T.Sub(Exp(x), T.Splat(1f));
        T p = T.Fma(x, T.Splat(1f / 40320f), T.Splat(1f / 5040f));
        p = T.Fma(x, p, T.Splat(1f / 720f));
        p = T.Fma(x, p, T.Splat(1f / 120f));
        p = T.Fma(x, p, T.Splat(1f / 24f));
        p = T.Fma(x, p, T.Splat(1f / 6f));
        p = T.Fma(x, p, T.Splat(0.5f));
        T small = T.Fma(T.Mul(x, x), p, x);
        return T.SelectGreater(T.Splat(0.25f), Abs(x), small, big);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Abs(T x) => T.Max(x, T.Sub(T.Splat(0f), x));

    /// <summary>ELU(x) = x for x &gt; 0, e^x − 1 otherwise (α = 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Elu(T x) => T.SelectGreater(x, T.Splat(0f), x, Expm1(T.Min(T.Splat(0f), x)));

    /// <summary>σ(x) and 1 − σ(x) = σ(−x), each without cancellation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T SigmoidPair(T x, out T oneMinus)
    {
        T e = Exp(T.Sub(T.Splat(0f), x));
        T inv = T.Reciprocal(T.Add(T.Splat(1f), e));
        // For x ≪ 0, e is huge and e·inv rounds poorly; 1 − σ is then 1 to float precision.
        oneMinus = T.SelectGreater(e, T.Splat(1e30f), T.Splat(1f), T.Mul(e, inv));
        return inv;
    }

    /// <summary>ELU′ from the pre-activation x and the output y: 1 for x &gt; 0, y + 1 = e^x otherwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T EluGrad(T x, T y) => T.SelectGreater(x, T.Splat(0f), T.Splat(1f), T.Add(y, T.Splat(1f)));
}

/// <summary>
/// Vector loops over padded rows (width a multiple of the vector width). Kept as small separate
/// methods: inside one large method the JIT runs out of inlining budget and calls the vector
/// operations instead of inlining them, which made the engine several times slower.
/// </summary>
internal static unsafe class Rows<T> where T : unmanaged, ISimd<T>
{
    /// <summary>y = ELU(x) over n contiguous floats.</summary>
    public static void Elu(float* x, float* y, int n)
    {
        for (int i = 0; i < n; i += T.Count) T.Store(y + i, Act<T>.Elu(T.Load(x + i)));
    }

    /// <summary>out[r] = d[r] ⊙ ELU′(a[r]) (using y = ELU(a)).</summary>
    public static void EluBackward(float* d, int ldd, float* a, float* y, int ld, float* o, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(o + r * ld + v, T.Mul(T.Load(d + r * ldd + v), Act<T>.EluGrad(T.Load(a + r * ld + v), T.Load(y + r * ld + v))));
    }

    /// <summary>dst[r] += src[r].</summary>
    public static void Add(float* dst, int ldd, float* src, int lds, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(dst + r * ldd + v, T.Add(T.Load(dst + r * ldd + v), T.Load(src + r * lds + v)));
    }

    /// <summary>dst[r] = a[r] + b[r].</summary>
    public static void Sum(float* a, int lda, float* b, int ldb, float* dst, int ldd, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(dst + r * ldd + v, T.Add(T.Load(a + r * lda + v), T.Load(b + r * ldb + v)));
    }

    /// <summary>dst[r] = src[r] ⊙ scale (one scale per column).</summary>
    public static void ScaleColumns(float* src, int lds, float* scale, float* dst, int ldd, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(dst + r * ldd + v, T.Mul(T.Load(src + r * lds + v), T.Load(scale + v)));
    }

    /// <summary>out[c] = Σ_r a[r, c] · b[r, c].</summary>
    public static void ColumnDots(float* a, int lda, float* b, int ldb, int rows, int width, float* output)
    {
        for (int v = 0; v < width; v += T.Count)
        {
            T acc = T.Splat(0f);
            for (int r = 0; r < rows; r++) acc = T.Fma(T.Load(a + r * lda + v), T.Load(b + r * ldb + v), acc);
            T.Store(output + v, acc);
        }
    }

    /// <summary>dst[r, 0:width] = src[r, 0:width] with full vectors (may write up to the next vector boundary).</summary>
    public static void Copy(float* src, int lds, float* dst, int ldd, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count) T.Store(dst + r * ldd + v, T.Load(src + r * lds + v));
    }

    /// <summary>dst[r] = s[r] · w + add[r] (s one scalar per row).</summary>
    public static void ScalarTimesRowPlus(float* s, float* w, float* add, int lda, float* dst, int ldd, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
        {
            T a = T.Splat(s[r]);
            for (int v = 0; v < width; v += T.Count) T.Store(dst + r * ldd + v, T.Fma(a, T.Load(w + v), T.Load(add + r * lda + v)));
        }
    }

    /// <summary>Σ_{c &lt; n} a[c] b[c] over the real width n (vector part, then the scalar tail).</summary>
    public static float Dot(float* a, float* b, int n)
    {
        int full = n / T.Count * T.Count;
        T acc = T.Splat(0f);
        for (int v = 0; v < full; v += T.Count) acc = T.Fma(T.Load(a + v), T.Load(b + v), acc);
        float d = T.Sum(acc);
        for (int i = full; i < n; i++) d += a[i] * b[i];
        return d;
    }
}
