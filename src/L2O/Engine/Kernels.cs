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
    /// <remarks>
    /// Register tiles of r rows × v vectors keep r·v accumulators (at most 20 of AVX-512's 32
    /// registers) busy enough to hide the FMA latency: 4×5 covers the LSTM gates (4H = 80 = 5
    /// vectors at H = 20), 4×4 and 4×3 wider outputs, 8×2 and 8×1 the narrow ones.
    /// </remarks>
    public static void MulAdd(float* x, int ldx, int rows, int k, float* b, int ldb, int n, float* y, int ldy) => Product(x, ldx, rows, k, b, ldb, n, y, ldy, true);

    /// <summary>Vectors of output the next register tile covers when <paramref name="left"/> remain: 5, 4 or 3 at a time (6 = 3 + 3, 7 = 4 + 3, 8 = 4 + 4), else what is left.</summary>
    private static int TileVectors(int left) => left == 5 || left >= 9 ? 5 : left == 6 ? 3 : left >= 4 ? 4 : left;

    /// <summary>y[r, 0:n] = Σ_k x[r, k] · b[k, 0:n] (overwrites y).</summary>
    public static void Mul(float* x, int ldx, int rows, int k, float* b, int ldb, int n, float* y, int ldy) => Product(x, ldx, rows, k, b, ldb, n, y, ldy, false);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Product(float* x, int ldx, int rows, int k, float* b, int ldb, int n, float* y, int ldy, bool add)
    {
        int c = T.Count, nv = n / c, v = 0;
        while (v < nv)
        {
            int left = nv - v;
            int take = TileVectors(left);
            float* bv = b + v * c, yv = y + v * c;
            int r = 0;
            switch (take)
            {
                case 5: for (; r + 4 <= rows; r += 4) Tile4x5(x + r * ldx, ldx, k, bv, ldb, yv + r * ldy, ldy, add); break;
                case 4: for (; r + 4 <= rows; r += 4) Tile4x4(x + r * ldx, ldx, k, bv, ldb, yv + r * ldy, ldy, add); break;
                case 3: for (; r + 4 <= rows; r += 4) Tile4x3(x + r * ldx, ldx, k, bv, ldb, yv + r * ldy, ldy, add); break;
                case 2: for (; r + 8 <= rows; r += 8) Tile8x2(x + r * ldx, ldx, k, bv, ldb, yv + r * ldy, ldy, add); break;
                default: for (; r + 8 <= rows; r += 8) Tile8x1(x + r * ldx, ldx, k, bv, ldb, yv + r * ldy, ldy, add); break;
            }
            for (; r < rows; r++)
            {
                float* xr = x + r * ldx, yr = yv + r * ldy;
                for (int u = 0; u < take; u++)
                {
                    T acc = add ? T.Load(yr + u * c) : T.Splat(0f);
                    for (int i = 0; i < k; i++) acc = T.Fma(T.Splat(xr[i]), T.Load(bv + i * ldb + u * c), acc);
                    T.Store(yr + u * c, acc);
                }
            }
            v += take;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x5(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy, bool add)
    {
        int c = T.Count;
        float* y0 = y + 0 * ldy; float* x0 = x + 0 * ldx;
        T a00 = add ? T.Load(y0 + 0 * c) : T.Splat(0f), a01 = add ? T.Load(y0 + 1 * c) : T.Splat(0f), a02 = add ? T.Load(y0 + 2 * c) : T.Splat(0f), a03 = add ? T.Load(y0 + 3 * c) : T.Splat(0f), a04 = add ? T.Load(y0 + 4 * c) : T.Splat(0f);
        float* y1 = y + 1 * ldy; float* x1 = x + 1 * ldx;
        T a10 = add ? T.Load(y1 + 0 * c) : T.Splat(0f), a11 = add ? T.Load(y1 + 1 * c) : T.Splat(0f), a12 = add ? T.Load(y1 + 2 * c) : T.Splat(0f), a13 = add ? T.Load(y1 + 3 * c) : T.Splat(0f), a14 = add ? T.Load(y1 + 4 * c) : T.Splat(0f);
        float* y2 = y + 2 * ldy; float* x2 = x + 2 * ldx;
        T a20 = add ? T.Load(y2 + 0 * c) : T.Splat(0f), a21 = add ? T.Load(y2 + 1 * c) : T.Splat(0f), a22 = add ? T.Load(y2 + 2 * c) : T.Splat(0f), a23 = add ? T.Load(y2 + 3 * c) : T.Splat(0f), a24 = add ? T.Load(y2 + 4 * c) : T.Splat(0f);
        float* y3 = y + 3 * ldy; float* x3 = x + 3 * ldx;
        T a30 = add ? T.Load(y3 + 0 * c) : T.Splat(0f), a31 = add ? T.Load(y3 + 1 * c) : T.Splat(0f), a32 = add ? T.Load(y3 + 2 * c) : T.Splat(0f), a33 = add ? T.Load(y3 + 3 * c) : T.Splat(0f), a34 = add ? T.Load(y3 + 4 * c) : T.Splat(0f);
        for (int i = 0; i < k; i++)
        {
            float* bi = b + i * ldb;
            T b0 = T.Load(bi + 0 * c), b1 = T.Load(bi + 1 * c), b2 = T.Load(bi + 2 * c), b3 = T.Load(bi + 3 * c), b4 = T.Load(bi + 4 * c);
            T s0 = T.Splat(x0[i]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01); a02 = T.Fma(s0, b2, a02); a03 = T.Fma(s0, b3, a03); a04 = T.Fma(s0, b4, a04);
            T s1 = T.Splat(x1[i]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11); a12 = T.Fma(s1, b2, a12); a13 = T.Fma(s1, b3, a13); a14 = T.Fma(s1, b4, a14);
            T s2 = T.Splat(x2[i]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21); a22 = T.Fma(s2, b2, a22); a23 = T.Fma(s2, b3, a23); a24 = T.Fma(s2, b4, a24);
            T s3 = T.Splat(x3[i]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31); a32 = T.Fma(s3, b2, a32); a33 = T.Fma(s3, b3, a33); a34 = T.Fma(s3, b4, a34);
        }
        T.Store(y0 + 0 * c, a00); T.Store(y0 + 1 * c, a01); T.Store(y0 + 2 * c, a02); T.Store(y0 + 3 * c, a03); T.Store(y0 + 4 * c, a04);
        T.Store(y1 + 0 * c, a10); T.Store(y1 + 1 * c, a11); T.Store(y1 + 2 * c, a12); T.Store(y1 + 3 * c, a13); T.Store(y1 + 4 * c, a14);
        T.Store(y2 + 0 * c, a20); T.Store(y2 + 1 * c, a21); T.Store(y2 + 2 * c, a22); T.Store(y2 + 3 * c, a23); T.Store(y2 + 4 * c, a24);
        T.Store(y3 + 0 * c, a30); T.Store(y3 + 1 * c, a31); T.Store(y3 + 2 * c, a32); T.Store(y3 + 3 * c, a33); T.Store(y3 + 4 * c, a34);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x4(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy, bool add)
    {
        int c = T.Count;
        float* y0 = y + 0 * ldy; float* x0 = x + 0 * ldx;
        T a00 = add ? T.Load(y0 + 0 * c) : T.Splat(0f), a01 = add ? T.Load(y0 + 1 * c) : T.Splat(0f), a02 = add ? T.Load(y0 + 2 * c) : T.Splat(0f), a03 = add ? T.Load(y0 + 3 * c) : T.Splat(0f);
        float* y1 = y + 1 * ldy; float* x1 = x + 1 * ldx;
        T a10 = add ? T.Load(y1 + 0 * c) : T.Splat(0f), a11 = add ? T.Load(y1 + 1 * c) : T.Splat(0f), a12 = add ? T.Load(y1 + 2 * c) : T.Splat(0f), a13 = add ? T.Load(y1 + 3 * c) : T.Splat(0f);
        float* y2 = y + 2 * ldy; float* x2 = x + 2 * ldx;
        T a20 = add ? T.Load(y2 + 0 * c) : T.Splat(0f), a21 = add ? T.Load(y2 + 1 * c) : T.Splat(0f), a22 = add ? T.Load(y2 + 2 * c) : T.Splat(0f), a23 = add ? T.Load(y2 + 3 * c) : T.Splat(0f);
        float* y3 = y + 3 * ldy; float* x3 = x + 3 * ldx;
        T a30 = add ? T.Load(y3 + 0 * c) : T.Splat(0f), a31 = add ? T.Load(y3 + 1 * c) : T.Splat(0f), a32 = add ? T.Load(y3 + 2 * c) : T.Splat(0f), a33 = add ? T.Load(y3 + 3 * c) : T.Splat(0f);
        for (int i = 0; i < k; i++)
        {
            float* bi = b + i * ldb;
            T b0 = T.Load(bi + 0 * c), b1 = T.Load(bi + 1 * c), b2 = T.Load(bi + 2 * c), b3 = T.Load(bi + 3 * c);
            T s0 = T.Splat(x0[i]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01); a02 = T.Fma(s0, b2, a02); a03 = T.Fma(s0, b3, a03);
            T s1 = T.Splat(x1[i]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11); a12 = T.Fma(s1, b2, a12); a13 = T.Fma(s1, b3, a13);
            T s2 = T.Splat(x2[i]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21); a22 = T.Fma(s2, b2, a22); a23 = T.Fma(s2, b3, a23);
            T s3 = T.Splat(x3[i]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31); a32 = T.Fma(s3, b2, a32); a33 = T.Fma(s3, b3, a33);
        }
        T.Store(y0 + 0 * c, a00); T.Store(y0 + 1 * c, a01); T.Store(y0 + 2 * c, a02); T.Store(y0 + 3 * c, a03);
        T.Store(y1 + 0 * c, a10); T.Store(y1 + 1 * c, a11); T.Store(y1 + 2 * c, a12); T.Store(y1 + 3 * c, a13);
        T.Store(y2 + 0 * c, a20); T.Store(y2 + 1 * c, a21); T.Store(y2 + 2 * c, a22); T.Store(y2 + 3 * c, a23);
        T.Store(y3 + 0 * c, a30); T.Store(y3 + 1 * c, a31); T.Store(y3 + 2 * c, a32); T.Store(y3 + 3 * c, a33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x3(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy, bool add)
    {
        int c = T.Count;
        float* y0 = y + 0 * ldy; float* x0 = x + 0 * ldx;
        T a00 = add ? T.Load(y0 + 0 * c) : T.Splat(0f), a01 = add ? T.Load(y0 + 1 * c) : T.Splat(0f), a02 = add ? T.Load(y0 + 2 * c) : T.Splat(0f);
        float* y1 = y + 1 * ldy; float* x1 = x + 1 * ldx;
        T a10 = add ? T.Load(y1 + 0 * c) : T.Splat(0f), a11 = add ? T.Load(y1 + 1 * c) : T.Splat(0f), a12 = add ? T.Load(y1 + 2 * c) : T.Splat(0f);
        float* y2 = y + 2 * ldy; float* x2 = x + 2 * ldx;
        T a20 = add ? T.Load(y2 + 0 * c) : T.Splat(0f), a21 = add ? T.Load(y2 + 1 * c) : T.Splat(0f), a22 = add ? T.Load(y2 + 2 * c) : T.Splat(0f);
        float* y3 = y + 3 * ldy; float* x3 = x + 3 * ldx;
        T a30 = add ? T.Load(y3 + 0 * c) : T.Splat(0f), a31 = add ? T.Load(y3 + 1 * c) : T.Splat(0f), a32 = add ? T.Load(y3 + 2 * c) : T.Splat(0f);
        for (int i = 0; i < k; i++)
        {
            float* bi = b + i * ldb;
            T b0 = T.Load(bi + 0 * c), b1 = T.Load(bi + 1 * c), b2 = T.Load(bi + 2 * c);
            T s0 = T.Splat(x0[i]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01); a02 = T.Fma(s0, b2, a02);
            T s1 = T.Splat(x1[i]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11); a12 = T.Fma(s1, b2, a12);
            T s2 = T.Splat(x2[i]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21); a22 = T.Fma(s2, b2, a22);
            T s3 = T.Splat(x3[i]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31); a32 = T.Fma(s3, b2, a32);
        }
        T.Store(y0 + 0 * c, a00); T.Store(y0 + 1 * c, a01); T.Store(y0 + 2 * c, a02);
        T.Store(y1 + 0 * c, a10); T.Store(y1 + 1 * c, a11); T.Store(y1 + 2 * c, a12);
        T.Store(y2 + 0 * c, a20); T.Store(y2 + 1 * c, a21); T.Store(y2 + 2 * c, a22);
        T.Store(y3 + 0 * c, a30); T.Store(y3 + 1 * c, a31); T.Store(y3 + 2 * c, a32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile8x2(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy, bool add)
    {
        int c = T.Count;
        float* y0 = y + 0 * ldy; float* x0 = x + 0 * ldx;
        T a00 = add ? T.Load(y0 + 0 * c) : T.Splat(0f), a01 = add ? T.Load(y0 + 1 * c) : T.Splat(0f);
        float* y1 = y + 1 * ldy; float* x1 = x + 1 * ldx;
        T a10 = add ? T.Load(y1 + 0 * c) : T.Splat(0f), a11 = add ? T.Load(y1 + 1 * c) : T.Splat(0f);
        float* y2 = y + 2 * ldy; float* x2 = x + 2 * ldx;
        T a20 = add ? T.Load(y2 + 0 * c) : T.Splat(0f), a21 = add ? T.Load(y2 + 1 * c) : T.Splat(0f);
        float* y3 = y + 3 * ldy; float* x3 = x + 3 * ldx;
        T a30 = add ? T.Load(y3 + 0 * c) : T.Splat(0f), a31 = add ? T.Load(y3 + 1 * c) : T.Splat(0f);
        float* y4 = y + 4 * ldy; float* x4 = x + 4 * ldx;
        T a40 = add ? T.Load(y4 + 0 * c) : T.Splat(0f), a41 = add ? T.Load(y4 + 1 * c) : T.Splat(0f);
        float* y5 = y + 5 * ldy; float* x5 = x + 5 * ldx;
        T a50 = add ? T.Load(y5 + 0 * c) : T.Splat(0f), a51 = add ? T.Load(y5 + 1 * c) : T.Splat(0f);
        float* y6 = y + 6 * ldy; float* x6 = x + 6 * ldx;
        T a60 = add ? T.Load(y6 + 0 * c) : T.Splat(0f), a61 = add ? T.Load(y6 + 1 * c) : T.Splat(0f);
        float* y7 = y + 7 * ldy; float* x7 = x + 7 * ldx;
        T a70 = add ? T.Load(y7 + 0 * c) : T.Splat(0f), a71 = add ? T.Load(y7 + 1 * c) : T.Splat(0f);
        for (int i = 0; i < k; i++)
        {
            float* bi = b + i * ldb;
            T b0 = T.Load(bi + 0 * c), b1 = T.Load(bi + 1 * c);
            T s0 = T.Splat(x0[i]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01);
            T s1 = T.Splat(x1[i]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11);
            T s2 = T.Splat(x2[i]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21);
            T s3 = T.Splat(x3[i]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31);
            T s4 = T.Splat(x4[i]);
            a40 = T.Fma(s4, b0, a40); a41 = T.Fma(s4, b1, a41);
            T s5 = T.Splat(x5[i]);
            a50 = T.Fma(s5, b0, a50); a51 = T.Fma(s5, b1, a51);
            T s6 = T.Splat(x6[i]);
            a60 = T.Fma(s6, b0, a60); a61 = T.Fma(s6, b1, a61);
            T s7 = T.Splat(x7[i]);
            a70 = T.Fma(s7, b0, a70); a71 = T.Fma(s7, b1, a71);
        }
        T.Store(y0 + 0 * c, a00); T.Store(y0 + 1 * c, a01);
        T.Store(y1 + 0 * c, a10); T.Store(y1 + 1 * c, a11);
        T.Store(y2 + 0 * c, a20); T.Store(y2 + 1 * c, a21);
        T.Store(y3 + 0 * c, a30); T.Store(y3 + 1 * c, a31);
        T.Store(y4 + 0 * c, a40); T.Store(y4 + 1 * c, a41);
        T.Store(y5 + 0 * c, a50); T.Store(y5 + 1 * c, a51);
        T.Store(y6 + 0 * c, a60); T.Store(y6 + 1 * c, a61);
        T.Store(y7 + 0 * c, a70); T.Store(y7 + 1 * c, a71);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile8x1(float* x, int ldx, int k, float* b, int ldb, float* y, int ldy, bool add)
    {
        int c = T.Count;
        float* y0 = y + 0 * ldy; float* x0 = x + 0 * ldx;
        T a00 = add ? T.Load(y0 + 0 * c) : T.Splat(0f);
        float* y1 = y + 1 * ldy; float* x1 = x + 1 * ldx;
        T a10 = add ? T.Load(y1 + 0 * c) : T.Splat(0f);
        float* y2 = y + 2 * ldy; float* x2 = x + 2 * ldx;
        T a20 = add ? T.Load(y2 + 0 * c) : T.Splat(0f);
        float* y3 = y + 3 * ldy; float* x3 = x + 3 * ldx;
        T a30 = add ? T.Load(y3 + 0 * c) : T.Splat(0f);
        float* y4 = y + 4 * ldy; float* x4 = x + 4 * ldx;
        T a40 = add ? T.Load(y4 + 0 * c) : T.Splat(0f);
        float* y5 = y + 5 * ldy; float* x5 = x + 5 * ldx;
        T a50 = add ? T.Load(y5 + 0 * c) : T.Splat(0f);
        float* y6 = y + 6 * ldy; float* x6 = x + 6 * ldx;
        T a60 = add ? T.Load(y6 + 0 * c) : T.Splat(0f);
        float* y7 = y + 7 * ldy; float* x7 = x + 7 * ldx;
        T a70 = add ? T.Load(y7 + 0 * c) : T.Splat(0f);
        for (int i = 0; i < k; i++)
        {
            float* bi = b + i * ldb;
            T b0 = T.Load(bi + 0 * c);
            T s0 = T.Splat(x0[i]);
            a00 = T.Fma(s0, b0, a00);
            T s1 = T.Splat(x1[i]);
            a10 = T.Fma(s1, b0, a10);
            T s2 = T.Splat(x2[i]);
            a20 = T.Fma(s2, b0, a20);
            T s3 = T.Splat(x3[i]);
            a30 = T.Fma(s3, b0, a30);
            T s4 = T.Splat(x4[i]);
            a40 = T.Fma(s4, b0, a40);
            T s5 = T.Splat(x5[i]);
            a50 = T.Fma(s5, b0, a50);
            T s6 = T.Splat(x6[i]);
            a60 = T.Fma(s6, b0, a60);
            T s7 = T.Splat(x7[i]);
            a70 = T.Fma(s7, b0, a70);
        }
        T.Store(y0 + 0 * c, a00);
        T.Store(y1 + 0 * c, a10);
        T.Store(y2 + 0 * c, a20);
        T.Store(y3 + 0 * c, a30);
        T.Store(y4 + 0 * c, a40);
        T.Store(y5 + 0 * c, a50);
        T.Store(y6 + 0 * c, a60);
        T.Store(y7 + 0 * c, a70);
    }

    /// <summary>acc[i, 0:n] += Σ_r x[r, i] · dy[r, 0:n] for i &lt; k (the weight gradient xᵀ dy, packed like the weight).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateXtY(float* x, int ldx, int rows, int k, float* dy, int lddy, int n, float* acc, int ldacc)
    {
        int c = T.Count, nv = n / c, v = 0;
        while (v < nv)
        {
            int left = nv - v;
            int take = TileVectors(left);
            float* dv = dy + v * c, av = acc + v * c;
            int i = 0;
            switch (take)
            {
                case 5: for (; i + 4 <= k; i += 4) XtTile4x5(x + i, ldx, rows, dv, lddy, av + i * ldacc, ldacc); break;
                case 4: for (; i + 4 <= k; i += 4) XtTile4x4(x + i, ldx, rows, dv, lddy, av + i * ldacc, ldacc); break;
                case 3: for (; i + 4 <= k; i += 4) XtTile4x3(x + i, ldx, rows, dv, lddy, av + i * ldacc, ldacc); break;
                case 2: for (; i + 8 <= k; i += 8) XtTile8x2(x + i, ldx, rows, dv, lddy, av + i * ldacc, ldacc); break;
                default: for (; i + 8 <= k; i += 8) XtTile8x1(x + i, ldx, rows, dv, lddy, av + i * ldacc, ldacc); break;
            }
            for (; i < k; i++)
                for (int u = 0; u < take; u++)
                {
                    float* a = av + i * ldacc + u * c;
                    T sum = T.Load(a);
                    for (int r = 0; r < rows; r++) sum = T.Fma(T.Splat(x[r * ldx + i]), T.Load(dv + r * lddy + u * c), sum);
                    T.Store(a, sum);
                }
            v += take;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void XtTile4x5(float* x, int ldx, int rows, float* dy, int lddy, float* a, int lda)
    {
        int c = T.Count;
        float* p0 = a + 0 * lda;
        T a00 = T.Load(p0 + 0 * c), a01 = T.Load(p0 + 1 * c), a02 = T.Load(p0 + 2 * c), a03 = T.Load(p0 + 3 * c), a04 = T.Load(p0 + 4 * c);
        float* p1 = a + 1 * lda;
        T a10 = T.Load(p1 + 0 * c), a11 = T.Load(p1 + 1 * c), a12 = T.Load(p1 + 2 * c), a13 = T.Load(p1 + 3 * c), a14 = T.Load(p1 + 4 * c);
        float* p2 = a + 2 * lda;
        T a20 = T.Load(p2 + 0 * c), a21 = T.Load(p2 + 1 * c), a22 = T.Load(p2 + 2 * c), a23 = T.Load(p2 + 3 * c), a24 = T.Load(p2 + 4 * c);
        float* p3 = a + 3 * lda;
        T a30 = T.Load(p3 + 0 * c), a31 = T.Load(p3 + 1 * c), a32 = T.Load(p3 + 2 * c), a33 = T.Load(p3 + 3 * c), a34 = T.Load(p3 + 4 * c);
        for (int r = 0; r < rows; r++)
        {
            float* d = dy + r * lddy; float* xr = x + r * ldx;
            T b0 = T.Load(d + 0 * c), b1 = T.Load(d + 1 * c), b2 = T.Load(d + 2 * c), b3 = T.Load(d + 3 * c), b4 = T.Load(d + 4 * c);
            T s0 = T.Splat(xr[0]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01); a02 = T.Fma(s0, b2, a02); a03 = T.Fma(s0, b3, a03); a04 = T.Fma(s0, b4, a04);
            T s1 = T.Splat(xr[1]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11); a12 = T.Fma(s1, b2, a12); a13 = T.Fma(s1, b3, a13); a14 = T.Fma(s1, b4, a14);
            T s2 = T.Splat(xr[2]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21); a22 = T.Fma(s2, b2, a22); a23 = T.Fma(s2, b3, a23); a24 = T.Fma(s2, b4, a24);
            T s3 = T.Splat(xr[3]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31); a32 = T.Fma(s3, b2, a32); a33 = T.Fma(s3, b3, a33); a34 = T.Fma(s3, b4, a34);
        }
        T.Store(p0 + 0 * c, a00); T.Store(p0 + 1 * c, a01); T.Store(p0 + 2 * c, a02); T.Store(p0 + 3 * c, a03); T.Store(p0 + 4 * c, a04);
        T.Store(p1 + 0 * c, a10); T.Store(p1 + 1 * c, a11); T.Store(p1 + 2 * c, a12); T.Store(p1 + 3 * c, a13); T.Store(p1 + 4 * c, a14);
        T.Store(p2 + 0 * c, a20); T.Store(p2 + 1 * c, a21); T.Store(p2 + 2 * c, a22); T.Store(p2 + 3 * c, a23); T.Store(p2 + 4 * c, a24);
        T.Store(p3 + 0 * c, a30); T.Store(p3 + 1 * c, a31); T.Store(p3 + 2 * c, a32); T.Store(p3 + 3 * c, a33); T.Store(p3 + 4 * c, a34);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void XtTile4x4(float* x, int ldx, int rows, float* dy, int lddy, float* a, int lda)
    {
        int c = T.Count;
        float* p0 = a + 0 * lda;
        T a00 = T.Load(p0 + 0 * c), a01 = T.Load(p0 + 1 * c), a02 = T.Load(p0 + 2 * c), a03 = T.Load(p0 + 3 * c);
        float* p1 = a + 1 * lda;
        T a10 = T.Load(p1 + 0 * c), a11 = T.Load(p1 + 1 * c), a12 = T.Load(p1 + 2 * c), a13 = T.Load(p1 + 3 * c);
        float* p2 = a + 2 * lda;
        T a20 = T.Load(p2 + 0 * c), a21 = T.Load(p2 + 1 * c), a22 = T.Load(p2 + 2 * c), a23 = T.Load(p2 + 3 * c);
        float* p3 = a + 3 * lda;
        T a30 = T.Load(p3 + 0 * c), a31 = T.Load(p3 + 1 * c), a32 = T.Load(p3 + 2 * c), a33 = T.Load(p3 + 3 * c);
        for (int r = 0; r < rows; r++)
        {
            float* d = dy + r * lddy; float* xr = x + r * ldx;
            T b0 = T.Load(d + 0 * c), b1 = T.Load(d + 1 * c), b2 = T.Load(d + 2 * c), b3 = T.Load(d + 3 * c);
            T s0 = T.Splat(xr[0]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01); a02 = T.Fma(s0, b2, a02); a03 = T.Fma(s0, b3, a03);
            T s1 = T.Splat(xr[1]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11); a12 = T.Fma(s1, b2, a12); a13 = T.Fma(s1, b3, a13);
            T s2 = T.Splat(xr[2]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21); a22 = T.Fma(s2, b2, a22); a23 = T.Fma(s2, b3, a23);
            T s3 = T.Splat(xr[3]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31); a32 = T.Fma(s3, b2, a32); a33 = T.Fma(s3, b3, a33);
        }
        T.Store(p0 + 0 * c, a00); T.Store(p0 + 1 * c, a01); T.Store(p0 + 2 * c, a02); T.Store(p0 + 3 * c, a03);
        T.Store(p1 + 0 * c, a10); T.Store(p1 + 1 * c, a11); T.Store(p1 + 2 * c, a12); T.Store(p1 + 3 * c, a13);
        T.Store(p2 + 0 * c, a20); T.Store(p2 + 1 * c, a21); T.Store(p2 + 2 * c, a22); T.Store(p2 + 3 * c, a23);
        T.Store(p3 + 0 * c, a30); T.Store(p3 + 1 * c, a31); T.Store(p3 + 2 * c, a32); T.Store(p3 + 3 * c, a33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void XtTile4x3(float* x, int ldx, int rows, float* dy, int lddy, float* a, int lda)
    {
        int c = T.Count;
        float* p0 = a + 0 * lda;
        T a00 = T.Load(p0 + 0 * c), a01 = T.Load(p0 + 1 * c), a02 = T.Load(p0 + 2 * c);
        float* p1 = a + 1 * lda;
        T a10 = T.Load(p1 + 0 * c), a11 = T.Load(p1 + 1 * c), a12 = T.Load(p1 + 2 * c);
        float* p2 = a + 2 * lda;
        T a20 = T.Load(p2 + 0 * c), a21 = T.Load(p2 + 1 * c), a22 = T.Load(p2 + 2 * c);
        float* p3 = a + 3 * lda;
        T a30 = T.Load(p3 + 0 * c), a31 = T.Load(p3 + 1 * c), a32 = T.Load(p3 + 2 * c);
        for (int r = 0; r < rows; r++)
        {
            float* d = dy + r * lddy; float* xr = x + r * ldx;
            T b0 = T.Load(d + 0 * c), b1 = T.Load(d + 1 * c), b2 = T.Load(d + 2 * c);
            T s0 = T.Splat(xr[0]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01); a02 = T.Fma(s0, b2, a02);
            T s1 = T.Splat(xr[1]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11); a12 = T.Fma(s1, b2, a12);
            T s2 = T.Splat(xr[2]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21); a22 = T.Fma(s2, b2, a22);
            T s3 = T.Splat(xr[3]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31); a32 = T.Fma(s3, b2, a32);
        }
        T.Store(p0 + 0 * c, a00); T.Store(p0 + 1 * c, a01); T.Store(p0 + 2 * c, a02);
        T.Store(p1 + 0 * c, a10); T.Store(p1 + 1 * c, a11); T.Store(p1 + 2 * c, a12);
        T.Store(p2 + 0 * c, a20); T.Store(p2 + 1 * c, a21); T.Store(p2 + 2 * c, a22);
        T.Store(p3 + 0 * c, a30); T.Store(p3 + 1 * c, a31); T.Store(p3 + 2 * c, a32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void XtTile8x2(float* x, int ldx, int rows, float* dy, int lddy, float* a, int lda)
    {
        int c = T.Count;
        float* p0 = a + 0 * lda;
        T a00 = T.Load(p0 + 0 * c), a01 = T.Load(p0 + 1 * c);
        float* p1 = a + 1 * lda;
        T a10 = T.Load(p1 + 0 * c), a11 = T.Load(p1 + 1 * c);
        float* p2 = a + 2 * lda;
        T a20 = T.Load(p2 + 0 * c), a21 = T.Load(p2 + 1 * c);
        float* p3 = a + 3 * lda;
        T a30 = T.Load(p3 + 0 * c), a31 = T.Load(p3 + 1 * c);
        float* p4 = a + 4 * lda;
        T a40 = T.Load(p4 + 0 * c), a41 = T.Load(p4 + 1 * c);
        float* p5 = a + 5 * lda;
        T a50 = T.Load(p5 + 0 * c), a51 = T.Load(p5 + 1 * c);
        float* p6 = a + 6 * lda;
        T a60 = T.Load(p6 + 0 * c), a61 = T.Load(p6 + 1 * c);
        float* p7 = a + 7 * lda;
        T a70 = T.Load(p7 + 0 * c), a71 = T.Load(p7 + 1 * c);
        for (int r = 0; r < rows; r++)
        {
            float* d = dy + r * lddy; float* xr = x + r * ldx;
            T b0 = T.Load(d + 0 * c), b1 = T.Load(d + 1 * c);
            T s0 = T.Splat(xr[0]);
            a00 = T.Fma(s0, b0, a00); a01 = T.Fma(s0, b1, a01);
            T s1 = T.Splat(xr[1]);
            a10 = T.Fma(s1, b0, a10); a11 = T.Fma(s1, b1, a11);
            T s2 = T.Splat(xr[2]);
            a20 = T.Fma(s2, b0, a20); a21 = T.Fma(s2, b1, a21);
            T s3 = T.Splat(xr[3]);
            a30 = T.Fma(s3, b0, a30); a31 = T.Fma(s3, b1, a31);
            T s4 = T.Splat(xr[4]);
            a40 = T.Fma(s4, b0, a40); a41 = T.Fma(s4, b1, a41);
            T s5 = T.Splat(xr[5]);
            a50 = T.Fma(s5, b0, a50); a51 = T.Fma(s5, b1, a51);
            T s6 = T.Splat(xr[6]);
            a60 = T.Fma(s6, b0, a60); a61 = T.Fma(s6, b1, a61);
            T s7 = T.Splat(xr[7]);
            a70 = T.Fma(s7, b0, a70); a71 = T.Fma(s7, b1, a71);
        }
        T.Store(p0 + 0 * c, a00); T.Store(p0 + 1 * c, a01);
        T.Store(p1 + 0 * c, a10); T.Store(p1 + 1 * c, a11);
        T.Store(p2 + 0 * c, a20); T.Store(p2 + 1 * c, a21);
        T.Store(p3 + 0 * c, a30); T.Store(p3 + 1 * c, a31);
        T.Store(p4 + 0 * c, a40); T.Store(p4 + 1 * c, a41);
        T.Store(p5 + 0 * c, a50); T.Store(p5 + 1 * c, a51);
        T.Store(p6 + 0 * c, a60); T.Store(p6 + 1 * c, a61);
        T.Store(p7 + 0 * c, a70); T.Store(p7 + 1 * c, a71);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void XtTile8x1(float* x, int ldx, int rows, float* dy, int lddy, float* a, int lda)
    {
        int c = T.Count;
        float* p0 = a + 0 * lda;
        T a00 = T.Load(p0 + 0 * c);
        float* p1 = a + 1 * lda;
        T a10 = T.Load(p1 + 0 * c);
        float* p2 = a + 2 * lda;
        T a20 = T.Load(p2 + 0 * c);
        float* p3 = a + 3 * lda;
        T a30 = T.Load(p3 + 0 * c);
        float* p4 = a + 4 * lda;
        T a40 = T.Load(p4 + 0 * c);
        float* p5 = a + 5 * lda;
        T a50 = T.Load(p5 + 0 * c);
        float* p6 = a + 6 * lda;
        T a60 = T.Load(p6 + 0 * c);
        float* p7 = a + 7 * lda;
        T a70 = T.Load(p7 + 0 * c);
        for (int r = 0; r < rows; r++)
        {
            float* d = dy + r * lddy; float* xr = x + r * ldx;
            T b0 = T.Load(d + 0 * c);
            T s0 = T.Splat(xr[0]);
            a00 = T.Fma(s0, b0, a00);
            T s1 = T.Splat(xr[1]);
            a10 = T.Fma(s1, b0, a10);
            T s2 = T.Splat(xr[2]);
            a20 = T.Fma(s2, b0, a20);
            T s3 = T.Splat(xr[3]);
            a30 = T.Fma(s3, b0, a30);
            T s4 = T.Splat(xr[4]);
            a40 = T.Fma(s4, b0, a40);
            T s5 = T.Splat(xr[5]);
            a50 = T.Fma(s5, b0, a50);
            T s6 = T.Splat(xr[6]);
            a60 = T.Fma(s6, b0, a60);
            T s7 = T.Splat(xr[7]);
            a70 = T.Fma(s7, b0, a70);
        }
        T.Store(p0 + 0 * c, a00);
        T.Store(p1 + 0 * c, a10);
        T.Store(p2 + 0 * c, a20);
        T.Store(p3 + 0 * c, a30);
        T.Store(p4 + 0 * c, a40);
        T.Store(p5 + 0 * c, a50);
        T.Store(p6 + 0 * c, a60);
        T.Store(p7 + 0 * c, a70);
    }

    /// <summary>acc[0:n] += Σ_r dy[r, 0:n] (a bias gradient).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    /// 2ⁿ from the exponent bits); about 1 ulp. Inputs are clamped to [−87, 88], so the result is
    /// finite and normal: at most 1.7e38, at least 1.6e-38. (.NET 10's Vector512.Exp made a
    /// sigmoid loop 7× slower than this on the development machine.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Exp(T x)
    {
        x = T.Min(T.Splat(88.0f), T.Max(T.Splat(-87.0f), x));   // NaN passes through; n stays in [−126, 127]
        T n = T.Floor(T.Fma(x, T.Splat(1.44269504088896341f), T.Splat(0.5f)));
        T r = T.Fma(n, T.Splat(-0.693359375f), x);              // Cody–Waite: ln 2 in two parts
        r = T.Fma(n, T.Splat(2.12194440e-4f), r);
        T p = T.Fma(T.Splat(1.9875691500E-4f), r, T.Splat(1.3981999507E-3f));
        p = T.Fma(p, r, T.Splat(8.3334519073E-3f));
        p = T.Fma(p, r, T.Splat(4.1665795894E-2f));
        p = T.Fma(p, r, T.Splat(1.6666665459E-1f));
        p = T.Fma(p, r, T.Splat(5.0000001201E-1f));
        p = T.Add(T.Fma(p, T.Mul(r, r), r), T.Splat(1f));
        return T.Mul(p, T.Pow2(n));
    }

    /// <summary>
    /// tanh(x) as a rational function, x·P(x²)/Q(x²) with degrees 6 and 3 on |x| ≤ 7.905 (beyond,
    /// tanh rounds to ±1 in float32): the minimax fit used by Eigen. Relative error at most 3.3e-7
    /// over [−12, 12] against double precision (checked in the tests), small arguments included, and
    /// no exponential: about 14 vector operations.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Tanh(T x)
    {
        x = T.Min(T.Splat(7.90531110763549805f), T.Max(T.Splat(-7.90531110763549805f), x));
        T x2 = T.Mul(x, x);
        T p = T.Fma(x2, T.Splat(-2.76076847742355e-16f), T.Splat(2.00018790482477e-13f));
        p = T.Fma(p, x2, T.Splat(-8.60467152213735e-11f));
        p = T.Fma(p, x2, T.Splat(5.12229709037114e-08f));
        p = T.Fma(p, x2, T.Splat(1.48572235717979e-05f));
        p = T.Fma(p, x2, T.Splat(6.37261928875436e-04f));
        p = T.Fma(p, x2, T.Splat(4.89352455891786e-03f));
        p = T.Mul(p, x);
        T q = T.Fma(x2, T.Splat(1.19825839466702e-06f), T.Splat(1.18534705686654e-04f));
        q = T.Fma(q, x2, T.Splat(2.26843463243900e-03f));
        q = T.Fma(q, x2, T.Splat(4.89352518554385e-03f));
        return T.Mul(p, T.Reciprocal(q));
    }

    /// <summary>
    /// σ(x) = ½ + ½ tanh(x/2) for the LSTM gates: absolute error below 2e-7, which is what a gate
    /// needs (it multiplies), and no exponential. Where relative accuracy of σ or 1 − σ matters
    /// (HyperAdam's decay rates) <see cref="SigmoidPair"/> is used instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Gate(T x) => T.Fma(T.Splat(0.5f), Tanh(T.Mul(T.Splat(0.5f), x)), T.Splat(0.5f));

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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Elu(float* x, float* y, int n)
    {
        for (int i = 0; i < n; i += T.Count) T.Store(y + i, Act<T>.Elu(T.Load(x + i)));
    }

    /// <summary>out[r] = d[r] ⊙ ELU′(a[r]) (using y = ELU(a)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void EluBackward(float* d, int ldd, float* a, float* y, int ld, float* o, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(o + r * ld + v, T.Mul(T.Load(d + r * ldd + v), Act<T>.EluGrad(T.Load(a + r * ld + v), T.Load(y + r * ld + v))));
    }

    /// <summary>dst[r] += src[r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(float* dst, int ldd, float* src, int lds, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(dst + r * ldd + v, T.Add(T.Load(dst + r * ldd + v), T.Load(src + r * lds + v)));
    }

    /// <summary>dst[r] = a[r] + b[r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Sum(float* a, int lda, float* b, int ldb, float* dst, int ldd, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(dst + r * ldd + v, T.Add(T.Load(a + r * lda + v), T.Load(b + r * ldb + v)));
    }

    /// <summary>dst[r] = src[r] ⊙ scale (one scale per column).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScaleColumns(float* src, int lds, float* scale, float* dst, int ldd, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < width; v += T.Count)
                T.Store(dst + r * ldd + v, T.Mul(T.Load(src + r * lds + v), T.Load(scale + v)));
    }

    /// <summary>out[c] = Σ_r a[r, c] · b[r, c].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ColumnDots(float* a, int lda, float* b, int ldb, int rows, int width, float* output)
    {
        for (int v = 0; v < width; v += T.Count)
        {
            T acc = T.Splat(0f);
            for (int r = 0; r < rows; r++) acc = T.Fma(T.Load(a + r * lda + v), T.Load(b + r * ldb + v), acc);
            T.Store(output + v, acc);
        }
    }

    /// <summary>dst[r] = s[r] · w + add[r] (s one scalar per row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScalarTimesRowPlus(float* s, float* w, float* add, int lda, float* dst, int ldd, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
        {
            T a = T.Splat(s[r]);
            for (int v = 0; v < width; v += T.Count) T.Store(dst + r * ldd + v, T.Fma(a, T.Load(w + v), T.Load(add + r * lda + v)));
        }
    }

    /// <summary>Σ_{c &lt; n} a[c] b[c] over the real width n (vector part, then the scalar tail).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
