using L2O.Learned;

namespace L2O.Engine;

/// <summary>
/// <see cref="HyperAdam"/> on the engine: the same equations (StateCell, AdamCell, WeightCell,
/// eqs. 3–7 and the floors/guards documented there), per block of coordinates. The two global
/// statistics are the gradient norm (a constant: gradients carry no meta-gradient in first-order
/// training) and the column norms of m_{t−1}. The forward sums Σ_i m′_ij² of its output state
/// per block; the backward of the normalisation m/‖m‖ needs R_j = Σ_i ā_ij m_ij over all
/// coordinates, so step s leaves ā (aux) and its partial R, and step s−1 adds
/// ‖m‖⁻¹ ā − m ‖m‖⁻³ R to the adjoint of m once R is complete.
/// </summary>
internal sealed unsafe class HyperAdamCell<T> : FusedCell where T : unmanaged, ISimd<T>
{
    private const float Floor = 1e-30f;
    private readonly HyperAdamOptions _o;
    private readonly int _j, _jp, _zb, _nb, _gOff;
    private readonly int _fH = -1, _fC = -1, _fM, _fV, _fBh, _fGh;
    private readonly int[] _widths;
    private readonly PackedMatrix? _pre, _emb;
    private readonly AlignedBuffer? _preB, _embB;
    private readonly LstmBlock<T>? _lstm;
    private readonly PackedMatrix _bgM, _bgS, _bgMS, _rho;
    private readonly AlignedBuffer _bgB, _rhoB;
    private readonly int _gPreW, _gPreB, _gEmbW, _gEmbB, _gBgM, _gBgS, _gBgB, _gRhoW, _gRhoB, _gradFloats;
    private readonly float _lr, _eps;

    public HyperAdamCell(HyperAdamOptions options, int blockRows) : base(T.Count, blockRows)
    {
        _o = options;
        int c = T.Count, j = options.Candidates;
        _j = j; _jp = Layout.Pad(j, c);
        _nb = Layout.Pad(2 * j, c);
        _zb = Layout.Pad(Math.Max(2 * j, j + _jp), c);
        _gOff = Layout.Pad(2, c);   // globals: [1/‖g‖, cubic factor of the column-norm backward, pad | 1/‖m‖_col …]
        _lr = (float)options.StepSize;
        _eps = (float)options.Epsilon;
        int cursor = 0;
        if (options.Preprocess)
        {
            _pre = new PackedMatrix(j, 1, c); _preB = new AlignedBuffer(_jp);
            _gPreW = cursor; cursor += _jp; _gPreB = cursor; cursor += _jp;
        }
        if (options.UseLstm) _lstm = new LstmBlock<T>(options.Preprocess ? j : 1, j, ref cursor);
        if (!options.UseLstm && !options.Preprocess)
        {
            _emb = new PackedMatrix(j, 1, c); _embB = new AlignedBuffer(_jp);
            _gEmbW = cursor; cursor += _jp; _gEmbB = cursor; cursor += _jp;
        }
        _bgM = new PackedMatrix(2 * j, j, c); _bgS = new PackedMatrix(2 * j, j, c); _bgMS = new PackedMatrix(2 * j, 2 * j, c); _bgB = new AlignedBuffer(_nb);
        _gBgM = cursor; cursor += j * _nb; _gBgS = cursor; cursor += j * _nb; _gBgB = cursor; cursor += _nb;
        _rho = new PackedMatrix(j, j, c); _rhoB = new AlignedBuffer(_jp);
        _gRhoW = cursor; cursor += j * _jp; _gRhoB = cursor; cursor += _jp;
        _gradFloats = cursor;
        int f = 0;
        if (options.UseLstm) { _fH = f++; _fC = f++; }
        _fM = f++; _fV = f++; _fBh = f++; _fGh = f++;
        _widths = Enumerable.Repeat(j, f).ToArray();
    }

    public override int[] StateWidths => _widths;
    public override int ForwardReduction => _jp;
    public override int BackwardReduction => _jp;
    public override int AuxWidth => _j;
    public override int GlobalsFloats => _gOff + _jp;
    public override int GradientFloats => _gradFloats;

    protected override void LayOut(ref Arena arena) => Take(ref arena);

    public override void Load(Func<string, float[]> read)
    {
        int j = _j;
        if (_pre is not null) { _pre.Set(read("state.pre.weight")); _preB!.CopyFrom(read("state.pre.bias")); }
        _lstm?.Load(read("state.lstm.weight_ih"), read("state.lstm.weight_hh"), read("state.lstm.bias"));
        if (_emb is not null) { _emb.Set(read("state.embed.weight")); _embB!.CopyFrom(read("state.embed.bias")); }
        float[] bw = read("adam.beta.weight"), gw = read("adam.gamma.weight");   // (J, 2J) on [m′, s]
        var wm = new float[2 * j * j];
        var ws = new float[2 * j * j];
        for (int o = 0; o < j; o++)
            for (int i = 0; i < j; i++)
            {
                wm[o * j + i] = bw[o * 2 * j + i]; ws[o * j + i] = bw[o * 2 * j + j + i];
                wm[(j + o) * j + i] = gw[o * 2 * j + i]; ws[(j + o) * j + i] = gw[o * 2 * j + j + i];
            }
        _bgM.Set(wm); _bgS.Set(ws);
        // [W_m | W_s] for the backward: one product gives [ā_m′ | ā_s] (48 padded columns at J = 20 instead of 2 × 32).
        var wms = new float[2 * j * 2 * j];
        for (int o = 0; o < 2 * j; o++)
        {
            Array.Copy(wm, o * j, wms, o * 2 * j, j);
            Array.Copy(ws, o * j, wms, o * 2 * j + j, j);
        }
        _bgMS.Set(wms);
        _bgB.Clear();
        read("adam.beta.bias").AsSpan().CopyTo(_bgB.Span);
        read("adam.gamma.bias").AsSpan().CopyTo(_bgB.Span[j..]);
        _rho.Set(read("weight.weight"));
        _rhoB.CopyFrom(read("weight.bias"));
    }

    public override void Unpack(ReadOnlySpan<double> g, Action<string, float[]> write)
    {
        int j = _j;
        if (_pre is not null) { write("state.pre.weight", Floats(g, _gPreW, j)); write("state.pre.bias", Floats(g, _gPreB, j)); }
        _lstm?.Unpack(g, "state.lstm", write);
        if (_emb is not null) { write("state.embed.weight", Floats(g, _gEmbW, j)); write("state.embed.bias", Floats(g, _gEmbB, j)); }
        // The inverse of Load's split: rows 0..J−1 of the packed products are β's, J..2J−1 γ's, on m′ (wm) and s (ws).
        float[] wm = _bgM.Unpack(g, _gBgM), ws = _bgS.Unpack(g, _gBgS);
        var bw = new float[2 * j * j];
        var gw = new float[2 * j * j];
        for (int o = 0; o < j; o++)
            for (int i = 0; i < j; i++)
            {
                bw[o * 2 * j + i] = wm[o * j + i]; bw[o * 2 * j + j + i] = ws[o * j + i];
                gw[o * 2 * j + i] = wm[(j + o) * j + i]; gw[o * 2 * j + j + i] = ws[(j + o) * j + i];
            }
        write("adam.beta.weight", bw); write("adam.gamma.weight", gw);
        write("adam.beta.bias", Floats(g, _gBgB, j)); write("adam.gamma.bias", Floats(g, _gBgB + j, j));
        write("weight.weight", _rho.Unpack(g, _gRhoW)); write("weight.bias", Floats(g, _gRhoB, j));
    }

    public override void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals)
    {
        globals.Clear();
        // input-norm=rms divides the sums by p (HyperAdam.InputNorm); the backward of m·c(m), c = (Σm²/n + ε)^−½,
        // is c ā − m c³ R / n, so 1/n travels with the column factors.
        double n = _o.InputNorm == InputNorm.Rms ? p : 1;
        globals[0] = (float)(1 / Math.Sqrt(gradientSquaredNorm / n + 1e-16));
        globals[1] = (float)(1 / n);
        for (int i = 0; i < _j; i++) globals[_gOff + i] = (float)(1 / Math.Sqrt(reduction[i] / n + 1e-16));
    }

    private struct Bufs
    {
        public float* GHat, A, X, E, S, MN, Z, BG, OmBG, SigG, OmSigG, M, V, Bh, Gh, Fld, Zr, Rho;
        public float* AZ, ABeta, AGamma, AMN, AS, AZr, AM, AV, ABh, AGh, AA;
        public int LdS;
        public LstmBlock<T>.Buffers L;
    }

    private Bufs Take(float* scratch)
    {
        var a = new Arena(scratch);
        return Take(ref a);
    }

    private Bufs Take(ref Arena a)
    {
        long r = BlockRows, jp = _jp;
        var b = new Bufs
        {
            GHat = a.Take(r),
            A = a.Take(r * jp),
            X = a.Take(r * jp),
            E = a.Take(r * jp),
            MN = a.Take(r * jp),
            Z = a.Take(r * _zb),
            BG = a.Take(r * _zb),
            OmBG = a.Take(r * _zb),
            SigG = a.Take(r * jp),     // coupled: σ(z_γ) and 1 − σ(z_γ) before γ = β² + (1 − β²) σ(z_γ)
            OmSigG = a.Take(r * jp),
            M = a.Take(r * jp),
            V = a.Take(r * jp),
            Bh = a.Take(r * jp),
            Gh = a.Take(r * jp),
            Fld = a.Take(r * jp),
            Zr = a.Take(r * jp),
            Rho = a.Take(r * jp),
            AZ = a.Take(r * _zb),
            ABeta = a.Take(r * jp),
            AGamma = a.Take(r * jp),
            AMN = a.Take(r * _zb + 16),
            AZr = a.Take(r * jp),
            AM = a.Take(r * jp),
            AV = a.Take(r * jp),
            ABh = a.Take(r * jp),
            AGh = a.Take(r * jp),
            AA = a.Take(r * jp),
        };
        b.AS = b.AMN + _j;   // [ā_m′ | ā_s] share rows of stride _zb
        if (_lstm is not null) b.L = _lstm.Take(ref a, BlockRows);
        return b;
    }

    /// <summary>The forward of one block into scratch (shared by the step and the backward's recomputation).</summary>
    private void ForwardCore(in Block b, ref Bufs f)
    {
        int rows = b.Rows, j = _j, jp = _jp, w = T.Count;
        float* g = b.G, glob = b.Globals;
        float gInv = glob[0];
        for (int r = 0; r < rows; r++) f.GHat[r] = g[r] * gInv;

        // StateCell.
        float* x = f.GHat; int ldx = 1;
        if (_pre is not null)
        {
            Gemm<T>.SetRows(f.A, jp, rows, jp, _preB!.Pointer);
            Gemm<T>.MulAdd(f.GHat, 1, rows, 1, _pre.Forward, _pre.OutPad, jp, f.A, jp);
            Rows<T>.Elu(f.A, f.X, rows * jp);
            x = f.X; ldx = jp;
        }
        if (_lstm is not null)
        {
            _lstm.Forward(f.L, rows, x, ldx, Field(b.StateIn, b, _fH), j, Field(b.StateIn, b, _fC), j);
            f.S = f.L.H; f.LdS = jp;
        }
        else if (_emb is not null)
        {
            Gemm<T>.SetRows(f.E, jp, rows, jp, _embB!.Pointer);
            Gemm<T>.MulAdd(f.GHat, 1, rows, 1, _emb.Forward, _emb.OutPad, jp, f.E, jp);
            f.S = f.E; f.LdS = jp;
        }
        else { f.S = f.X; f.LdS = jp; }

        // AdamCell: decay rates from [m / ‖m‖_col, s].
        float* m0 = Field(b.StateIn, b, _fM), v0 = Field(b.StateIn, b, _fV), bh0 = Field(b.StateIn, b, _fBh), gh0 = Field(b.StateIn, b, _fGh);
        float* colInv = glob + _gOff;
        Rows<T>.ScaleColumns(m0, j, colInv, f.MN, jp, rows, jp);
        Gemm<T>.SetRows(f.Z, _zb, rows, _nb, _bgB.Pointer);
        Gemm<T>.MulAdd(f.MN, jp, rows, j, _bgM.Forward, _nb, _nb, f.Z, _zb);
        Gemm<T>.MulAdd(f.S, f.LdS, rows, j, _bgS.Forward, _nb, _nb, f.Z, _zb);
        Gemm<T>.SetRows(f.Zr, jp, rows, jp, _rhoB.Pointer);
        Gemm<T>.MulAdd(f.S, f.LdS, rows, j, _rho.Forward, jp, jp, f.Zr, jp);

        Rows<T>.Elu(f.Zr, f.Rho, rows * jp);
        AdamRows(ref f, rows, j, jp, _zb, g, m0, v0, bh0, gh0, _eps, _o.CoupledDecays);
    }

    /// <summary>AdamCell for the block's rows: eq. 3 and m̂ (Alg. 2 l. 16). One call per block: per-row calls with this many arguments cost more than the row.</summary>
    private static void AdamRows(ref Bufs f, int rows, int j, int jp, int zb, float* gs, float* m0s, float* v0s, float* bh0s, float* gh0s, float epsilon, bool coupled)
    {
        T one = T.Splat(1f);
        T floor = T.Splat(Floor), eps = T.Splat(epsilon);
        for (int r = 0; r < rows; r++)
        {
            float g = gs[r];
            float* z = f.Z + r * zb, m0 = m0s + r * j, v0 = v0s + r * j, bh0 = bh0s + r * j, gh0 = gh0s + r * j;
            int o = r * jp;
            float* bg = f.BG + r * zb, ombg = f.OmBG + r * zb;
            // [β | γ] and [1 − β | 1 − γ] in one pass over the contiguous row (2J = 40 floats: three
            // vectors, not four). 1 − β comes from σ(−z), not by subtraction: with β near 1 (long
            // memory) the subtraction would lose most digits of 1 − β, and β̂ = 1 − β at t = 1.
            for (int v = 0; v < zb; v += T.Count)
            {
                T.Store(bg + v, Act<T>.SigmoidPair(T.Load(z + v), out T om));
                T.Store(ombg + v, om);
            }
            if (coupled)
            {
                // γ = β² + (1 − β²) σ, 1 − γ = (1 − β)(1 + β)(1 − σ): no subtraction, as above.
                float* sig = f.SigG + o, omSig = f.OmSigG + o;
                for (int v = 0; v < jp; v += T.Count)
                {
                    T beta = T.Load(bg + v), omb = T.Load(ombg + v), sg = T.Load(bg + j + v), omsg = T.Load(ombg + j + v);
                    T.Store(sig + v, sg); T.Store(omSig + v, omsg);
                    T oneMinusBeta2 = T.Mul(omb, T.Add(one, beta));
                    T.Store(bg + j + v, T.Fma(oneMinusBeta2, sg, T.Mul(beta, beta)));
                    T.Store(ombg + j + v, T.Mul(oneMinusBeta2, omsg));
                }
            }
            float* mOut = f.M + o, vOut = f.V + o, bhOut = f.Bh + o, ghOut = f.Gh + o, fldOut = f.Fld + o;
            T gv = T.Splat(g), g2 = T.Splat(g * g);
            for (int v = 0; v < jp; v += T.Count)
            {
                T beta = T.Load(bg + v), gamma = T.Load(bg + j + v), omb = T.Load(ombg + v), omg = T.Load(ombg + j + v);
                T m = T.Fma(beta, T.Load(m0 + v), T.Mul(omb, gv));
                T vv = T.Fma(gamma, T.Load(v0 + v), T.Mul(omg, g2));
                T bh = T.Fma(beta, T.Load(bh0 + v), omb);
                T gh = T.Fma(gamma, T.Load(gh0 + v), omg);
                T fld = T.Mul(T.Mul(m, T.Reciprocal(T.Max(floor, bh))), T.ReciprocalSqrt(T.Add(T.Mul(vv, T.Reciprocal(T.Max(floor, gh))), eps)));
                T.Store(mOut + v, m); T.Store(vOut + v, vv); T.Store(bhOut + v, bh); T.Store(ghOut + v, gh);
                T.Store(fldOut + v, fld);
            }
        }
    }

    public override void Forward(in Block b)
    {
        var f = Take(b.Scratch);
        ForwardCore(b, ref f);
        int rows = b.Rows, j = _j, jp = _jp, w = T.Count;
        for (int r = 0; r < rows; r++) b.Update[r] = -_lr * Rows<T>.Dot(f.Rho + r * jp, f.Fld + r * jp, j);
        if (_lstm is not null)
        {
            CopyOut(f.L.H, jp, Field(b.StateOut, b, _fH), j, rows);
            CopyOut(f.L.C, jp, Field(b.StateOut, b, _fC), j, rows);
        }
        CopyOut(f.M, jp, Field(b.StateOut, b, _fM), j, rows);
        CopyOut(f.V, jp, Field(b.StateOut, b, _fV), j, rows);
        CopyOut(f.Bh, jp, Field(b.StateOut, b, _fBh), j, rows);
        CopyOut(f.Gh, jp, Field(b.StateOut, b, _fGh), j, rows);
        // Σ_i m′_ij² of this block, for the next step's column norms.
        Rows<T>.ColumnDots(f.M, jp, f.M, jp, rows, jp, b.Partial);
    }

    public override void Backward(in Block b)
    {
        var f = Take(b.Scratch);
        ForwardCore(b, ref f);
        int rows = b.Rows, j = _j, jp = _jp, w = T.Count;
        float* aOut = b.AStateOut, m0 = Field(b.StateIn, b, _fM), v0 = Field(b.StateIn, b, _fV);
        float* bh0 = Field(b.StateIn, b, _fBh), gh0 = Field(b.StateIn, b, _fGh);
        float* aM1 = Field(aOut, b, _fM), aV1 = Field(aOut, b, _fV), aBh1 = Field(aOut, b, _fBh), aGh1 = Field(aOut, b, _fGh);
        bool pending = b.NextGlobals is not null;
        float* colInvN = pending ? b.NextGlobals + _gOff : null;
        float* auxIn = pending ? b.AuxIn + (long)b.Start * j : null;
        AdamRowsBackward(ref f, rows, j, jp, _zb, -_lr, b.AUpdate, b.G, m0, v0, bh0, gh0, aM1, aV1, aBh1, aGh1,
            pending ? colInvN : null, pending ? auxIn : null, pending ? b.NextReduction : null, pending ? b.NextGlobals[1] : 0, _eps, _o.CoupledDecays);
        float* grad = b.Grad;
        Gemm<T>.AccumulateXtY(f.MN, jp, rows, j, f.AZ, _zb, _nb, grad + _gBgM, _nb);
        Gemm<T>.AccumulateXtY(f.S, f.LdS, rows, j, f.AZ, _zb, _nb, grad + _gBgS, _nb);
        Gemm<T>.AccumulateColumns(f.AZ, _zb, rows, _nb, grad + _gBgB);
        Gemm<T>.AccumulateXtY(f.S, f.LdS, rows, j, f.AZr, jp, jp, grad + _gRhoW, jp);
        Gemm<T>.AccumulateColumns(f.AZr, jp, rows, jp, grad + _gRhoB);
        Gemm<T>.Mul(f.AZ, _zb, rows, 2 * j, _bgMS.Backward, _bgMS.InPad, _bgMS.InPad, f.AMN, _zb);
        Gemm<T>.MulAdd(f.AZr, jp, rows, j, _rho.Backward, jp, jp, f.AS, _zb);

        // The normalisation's pending part: ā (adjoint of m/‖m‖) and this block's share of R_j = Σ_i ā_ij m_ij.
        Rows<T>.ColumnDots(f.AMN, _zb, m0, j, rows, jp, b.Partial);
        CopyOut(f.AMN, _zb, b.AuxOut + (long)b.Start * j, j, rows);

        float* ax; int ldax;
        if (_lstm is not null)
        {
            float* ah1 = Field(aOut, b, _fH);
            Rows<T>.Add(f.AS, _zb, ah1, j, rows, jp);
            float* x = _pre is not null ? f.X : f.GHat;
            int ldx = _pre is not null ? jp : 1;
            _lstm.Backward(f.L, rows, x, ldx, Field(b.StateIn, b, _fH), j, Field(b.StateIn, b, _fC), j, f.AS, _zb, Field(aOut, b, _fC), j, grad);
            CopyOut(f.L.DH, _lstm.XHP, Field(b.AStateIn, b, _fH), j, rows);
            CopyOut(f.L.DC, jp, Field(b.AStateIn, b, _fC), j, rows);
            ax = f.L.DX; ldax = _lstm.XHP;
        }
        else { ax = f.AS; ldax = _zb; }

        if (_pre is not null)
        {
            Rows<T>.EluBackward(ax, ldax, f.A, f.X, jp, f.AA, rows, jp);
            Gemm<T>.AccumulateXtY(f.GHat, 1, rows, 1, f.AA, jp, jp, grad + _gPreW, jp);
            Gemm<T>.AccumulateColumns(f.AA, jp, rows, jp, grad + _gPreB);
        }
        else if (_emb is not null)
        {
            Gemm<T>.AccumulateXtY(f.GHat, 1, rows, 1, f.AS, _zb, jp, grad + _gEmbW, jp);
            Gemm<T>.AccumulateColumns(f.AS, _zb, rows, jp, grad + _gEmbB);
        }
        CopyOut(f.AM, jp, Field(b.AStateIn, b, _fM), j, rows);
        CopyOut(f.AV, jp, Field(b.AStateIn, b, _fV), j, rows);
        CopyOut(f.ABh, jp, Field(b.AStateIn, b, _fBh), j, rows);
        CopyOut(f.AGh, jp, Field(b.AStateIn, b, _fGh), j, rows);
    }

    /// <summary>The adjoints of the block's rows through eq. 3, m̂ and ρ (see <see cref="Backward"/>), and [ā_zβ | ā_zγ] side by side.</summary>
    private static void AdamRowsBackward(ref Bufs f, int rows, int j, int jp, int zb, float minusLr, float* aUpdate, float* gs, float* m0, float* v0, float* bh0, float* gh0,
        float* aM1, float* aV1, float* aBh1, float* aGh1, float* colInvN, float* auxIn, float* nextReduction, float cubicScale, float epsilon, bool coupled)
    {
        T two = T.Splat(2f);
        T cubic = T.Splat(cubicScale);
        T one = T.Splat(1f), floor = T.Splat(Floor), eps = T.Splat(epsilon), half = T.Splat(-0.5f);
        for (int r = 0; r < rows; r++)
        {
            int o = r * jp, oc = r * j;
            float g = gs[r];
            T adv = T.Splat(minusLr * aUpdate[r]), gv = T.Splat(g), g2 = T.Splat(g * g);
            for (int v = 0; v < jp; v += T.Count)
            {
                int i = o + v, ic = oc + v;
                T m = T.Load(f.M + i), vv = T.Load(f.V + i), bh = T.Load(f.Bh + i), gh = T.Load(f.Gh + i);
                float* bg = f.BG + r * zb + v, ombg = f.OmBG + r * zb + v;
                T beta = T.Load(bg), gamma = T.Load(bg + j);
                // Adjoint of m′ from step s+1: its direct use, plus (now that R_{s+1} is complete) the normalisation path.
                T am = T.Load(aM1 + ic);
                if (colInvN is not null)
                {
                    T ci = T.Load(colInvN + v);
                    am = T.Add(am, T.Sub(T.Mul(ci, T.Load(auxIn + v)), T.Mul(T.Mul(m, T.Mul(ci, T.Mul(ci, ci))), T.Mul(cubic, T.Load(nextReduction + v)))));
                }
                T aField = T.Mul(adv, T.Load(f.Rho + i));
                T bhc = T.Max(floor, bh), ghc = T.Max(floor, gh);
                T ia = T.Reciprocal(bhc), ig = T.Reciprocal(ghc);
                T ib = T.ReciprocalSqrt(T.Add(T.Mul(vv, ig), eps));
                am = T.Fma(aField, T.Mul(ia, ib), am);
                T abh = T.Load(aBh1 + ic);
                abh = T.SelectGreater(bh, floor, T.Sub(abh, T.Mul(aField, T.Mul(m, T.Mul(T.Mul(ia, ia), ib)))), abh);
                T aq = T.Mul(T.Mul(aField, T.Mul(m, ia)), T.Mul(half, T.Mul(ib, T.Mul(ib, ib))));
                T av = T.Fma(aq, ig, T.Load(aV1 + ic));
                T agh = T.Load(aGh1 + ic);
                agh = T.SelectGreater(gh, floor, T.Sub(agh, T.Mul(T.Mul(aq, vv), T.Mul(ig, ig))), agh);
                T aBeta = T.Add(T.Mul(am, T.Sub(T.Load(m0 + ic), gv)), T.Mul(abh, T.Sub(T.Load(bh0 + ic), one)));
                T aGamma = T.Add(T.Mul(av, T.Sub(T.Load(v0 + ic), g2)), T.Mul(agh, T.Sub(T.Load(gh0 + ic), one)));
                if (coupled)
                {
                    // γ = β² + (1 − β²) σ: ∂γ/∂z_γ = (1 − β²) σ (1 − σ), ∂γ/∂β = 2β (1 − σ).
                    T sg = T.Load(f.SigG + i), omsg = T.Load(f.OmSigG + i), omb = T.Load(ombg);
                    aBeta = T.Fma(aGamma, T.Mul(two, T.Mul(beta, omsg)), aBeta);
                    T.Store(f.AGamma + i, T.Mul(aGamma, T.Mul(T.Mul(omb, T.Add(one, beta)), T.Mul(sg, omsg))));
                }
                else T.Store(f.AGamma + i, T.Mul(aGamma, T.Mul(gamma, T.Load(ombg + j))));
                T.Store(f.ABeta + i, T.Mul(aBeta, T.Mul(beta, T.Load(ombg))));
                T.Store(f.AM + i, T.Mul(am, beta));
                T.Store(f.AV + i, T.Mul(av, gamma));
                T.Store(f.ABh + i, T.Mul(abh, beta));
                T.Store(f.AGh + i, T.Mul(agh, gamma));
                T.Store(f.AZr + i, T.Mul(T.Mul(adv, T.Load(f.Fld + i)), Act<T>.EluGrad(T.Load(f.Zr + i), T.Load(f.Rho + i))));
            }
            // [ā_zβ | ā_zγ] side by side, β first so γ's stores overwrite β's tail overrun.
            float* az = f.AZ + r * zb;
            for (int v = 0; v < jp; v += T.Count) T.Store(az + v, T.Load(f.ABeta + o + v));
            for (int v = 0; v < jp; v += T.Count) T.Store(az + j + v, T.Load(f.AGamma + o + v));
        }
    }
}
