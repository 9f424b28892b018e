using System.Runtime.CompilerServices;
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
    private const float Floor = (float)HyperAdam.BiasFloor;
    private readonly HyperAdamOptions _options;
    // J, and J rounded up to whole vectors (the width of one coordinate's row of any J-wide quantity).
    private readonly int _candidates, _candidatesPadded;
    // Row widths: [β | γ] logits (2J padded) and the AdamCell's input [m′ | s] (laid out so either half starts on a vector).
    private readonly int _decayRowWidth, _featureRowWidth;
    // Globals (HyperAdamFields.Globals): [1/‖g‖, 1/n, pad | 1/‖m‖ per column]; this is where the column norms start.
    private readonly int _columnNormsOffset;
    private readonly HyperAdamFields _fields;
    // StateCell: the preprocessing layer W_pre, b_pre, or without LSTM and preprocessing the linear embedding W_e, b_e.
    private readonly PackedMatrix? _preWeight, _embedWeight;
    private readonly AlignedBuffer? _preBias, _embedBias;
    private readonly LstmBlock<T>? _lstm;
    // AdamCell: [θ_u | θ_r] split by input half (from m′, from s) and joined (both), its bias [b_u | b_r]; WeightCell θ_q, b_q.
    private readonly PackedMatrix _decayFromM, _decayFromState, _decayFromBoth, _rhoWeight;
    private readonly AlignedBuffer _decayBias, _rhoBias;
    // Offsets of each meta-parameter's gradient in the packed gradient accumulator.
    private readonly int _gradPreWeight, _gradPreBias, _gradEmbedWeight, _gradEmbedBias, _gradDecayFromM, _gradDecayFromState, _gradDecayBias, _gradRhoWeight, _gradRhoBias, _gradFloats;
    private readonly float _stepSize, _epsilon;

    public HyperAdamCell(HyperAdamOptions options, int blockRows) : base(T.Count, blockRows)
    {
        // state-norm's two passes per step are built in the lanes cell only; FusedCells routes it there.
        if (options.NormalizeState) throw new ArgumentException("the rows HyperAdam cell does not run state-norm=true; HyperAdamLanesCell does", nameof(options));
        _options = options;
        int c = T.Count, j = options.Candidates;
        _candidates = j; _candidatesPadded = Layout.Pad(j, c);
        _decayRowWidth = Layout.Pad(2 * j, c);
        _featureRowWidth = Layout.Pad(Math.Max(2 * j, j + _candidatesPadded), c);
        _columnNormsOffset = Layout.Pad(2, c);
        _stepSize = (float)options.StepSize;
        _epsilon = (float)options.Epsilon;
        int cursor = 0;
        if (options.Preprocess)
        {
            _preWeight = new PackedMatrix(j, 1, c); _preBias = new AlignedBuffer(_candidatesPadded);
            _gradPreWeight = cursor; cursor += _candidatesPadded; _gradPreBias = cursor; cursor += _candidatesPadded;
        }
        if (options.UseLstm) _lstm = new LstmBlock<T>(options.Preprocess ? j : 1, j, ref cursor);
        if (!options.UseLstm && !options.Preprocess)
        {
            _embedWeight = new PackedMatrix(j, 1, c); _embedBias = new AlignedBuffer(_candidatesPadded);
            _gradEmbedWeight = cursor; cursor += _candidatesPadded; _gradEmbedBias = cursor; cursor += _candidatesPadded;
        }
        _decayFromM = new PackedMatrix(2 * j, j, c); _decayFromState = new PackedMatrix(2 * j, j, c); _decayFromBoth = new PackedMatrix(2 * j, 2 * j, c); _decayBias = new AlignedBuffer(_decayRowWidth);
        _gradDecayFromM = cursor; cursor += j * _decayRowWidth; _gradDecayFromState = cursor; cursor += j * _decayRowWidth; _gradDecayBias = cursor; cursor += _decayRowWidth;
        _rhoWeight = new PackedMatrix(j, j, c); _rhoBias = new AlignedBuffer(_candidatesPadded);
        _gradRhoWeight = cursor; cursor += j * _candidatesPadded; _gradRhoBias = cursor; cursor += _candidatesPadded;
        _gradFloats = cursor;
        _fields = HyperAdamFields.Of(options);
    }

    public override int[] StateWidths => _fields.Widths;
    public override int ForwardReduction => _candidatesPadded;
    public override int BackwardReduction => _candidatesPadded;
    public override int AuxWidth => _candidates;
    public override int GlobalsFloats => _columnNormsOffset + _candidatesPadded;
    public override int GradientFloats => _gradFloats;

    protected override void LayOut(ref Arena arena)
    {
        var b = new Bufs();
        TakeKept(ref arena, ref b);
        TakeWork(ref arena, ref b);
    }

    public override void Load(Func<string, float[]> read)
    {
        int j = _candidates;
        if (_preWeight is not null) { _preWeight.Set(read(MetaSchema.Weight(HyperAdam.Layers.Preprocess))); _preBias!.CopyFrom(read(MetaSchema.Bias(HyperAdam.Layers.Preprocess))); }
        _lstm?.Load(read(MetaSchema.InputWeight(HyperAdam.Layers.Lstm)), read(MetaSchema.HiddenWeight(HyperAdam.Layers.Lstm)), read(MetaSchema.Bias(HyperAdam.Layers.Lstm)));
        if (_embedWeight is not null) { _embedWeight.Set(read(MetaSchema.Weight(HyperAdam.Layers.Embed))); _embedBias!.CopyFrom(read(MetaSchema.Bias(HyperAdam.Layers.Embed))); }
        float[] bw = read(MetaSchema.Weight(HyperAdam.Layers.Beta)), gw = read(MetaSchema.Weight(HyperAdam.Layers.Gamma));   // (J, 2J) on [m′, s]
        var wm = new float[2 * j * j];
        var ws = new float[2 * j * j];
        for (int o = 0; o < j; o++)
            for (int i = 0; i < j; i++)
            {
                wm[o * j + i] = bw[o * 2 * j + i]; ws[o * j + i] = bw[o * 2 * j + j + i];
                wm[(j + o) * j + i] = gw[o * 2 * j + i]; ws[(j + o) * j + i] = gw[o * 2 * j + j + i];
            }
        _decayFromM.Set(wm); _decayFromState.Set(ws);
        // [W_m | W_s] for the backward: one product gives [ā_m′ | ā_s] (48 padded columns at J = 20 instead of 2 × 32).
        var wms = new float[2 * j * 2 * j];
        for (int o = 0; o < 2 * j; o++)
        {
            Array.Copy(wm, o * j, wms, o * 2 * j, j);
            Array.Copy(ws, o * j, wms, o * 2 * j + j, j);
        }
        _decayFromBoth.Set(wms);
        _decayBias.Clear();
        read(MetaSchema.Bias(HyperAdam.Layers.Beta)).AsSpan().CopyTo(_decayBias.Span);
        read(MetaSchema.Bias(HyperAdam.Layers.Gamma)).AsSpan().CopyTo(_decayBias.Span[j..]);
        _rhoWeight.Set(read(MetaSchema.Weight(HyperAdam.Layers.Rho)));
        _rhoBias.CopyFrom(read(MetaSchema.Bias(HyperAdam.Layers.Rho)));
    }

    public override void Unpack(ReadOnlySpan<double> g, Action<string, float[]> write)
    {
        int j = _candidates;
        if (_preWeight is not null) { write(MetaSchema.Weight(HyperAdam.Layers.Preprocess), Floats(g, _gradPreWeight, j)); write(MetaSchema.Bias(HyperAdam.Layers.Preprocess), Floats(g, _gradPreBias, j)); }
        _lstm?.Unpack(g, HyperAdam.Layers.Lstm, write);
        if (_embedWeight is not null) { write(MetaSchema.Weight(HyperAdam.Layers.Embed), Floats(g, _gradEmbedWeight, j)); write(MetaSchema.Bias(HyperAdam.Layers.Embed), Floats(g, _gradEmbedBias, j)); }
        // The inverse of Load's split: rows 0..J−1 of the packed products are β's, J..2J−1 γ's, on m′ (wm) and s (ws).
        float[] wm = _decayFromM.Unpack(g, _gradDecayFromM), ws = _decayFromState.Unpack(g, _gradDecayFromState);
        var bw = new float[2 * j * j];
        var gw = new float[2 * j * j];
        for (int o = 0; o < j; o++)
            for (int i = 0; i < j; i++)
            {
                bw[o * 2 * j + i] = wm[o * j + i]; bw[o * 2 * j + j + i] = ws[o * j + i];
                gw[o * 2 * j + i] = wm[(j + o) * j + i]; gw[o * 2 * j + j + i] = ws[(j + o) * j + i];
            }
        write(MetaSchema.Weight(HyperAdam.Layers.Beta), bw); write(MetaSchema.Weight(HyperAdam.Layers.Gamma), gw);
        write(MetaSchema.Bias(HyperAdam.Layers.Beta), Floats(g, _gradDecayBias, j)); write(MetaSchema.Bias(HyperAdam.Layers.Gamma), Floats(g, _gradDecayBias + j, j));
        write(MetaSchema.Weight(HyperAdam.Layers.Rho), _rhoWeight.Unpack(g, _gradRhoWeight)); write(MetaSchema.Bias(HyperAdam.Layers.Rho), Floats(g, _gradRhoBias, j));
    }

    public override void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals)
        => HyperAdamFields.Globals(_options, p, gradientSquaredNorm, reduction, _columnNormsOffset, globals);

    /// <summary>
    /// One block's buffers, coordinate-major with a row of padded features per coordinate: ĝ; the preprocessing's input
    /// and ELU output; the embedding; the state features s; m′ = m/‖m‖_col; the decay logits [z_β | z_γ], the decays
    /// [β | γ] and [1 − β | 1 − γ] (σ(z_γ) and 1 − σ(z_γ) kept when γ is bounded); the new m, v, β̂, γ̂; the candidate
    /// directions m̂ (eq. 3); the weight logits and weights ρ (eq. 6). Each *Adjoint buffer holds its namesake's adjoint.
    /// </summary>
    private struct Bufs
    {
        public float* NormalizedGradient, PreInput, PreOutput, Embedding, StateFeatures, NormalizedMomentum, DecayLogits, Decays, OneMinusDecays,
            GammaSigmoid, OneMinusGammaSigmoid, Momentum, SecondMoment, BetaHat, GammaHat, Directions, WeightLogits, Weights;
        public float* DecayLogitsAdjoint, BetaAdjoint, GammaAdjoint, NormalizedMomentumAdjoint, FeaturesAdjoint, WeightLogitsAdjoint,
            MomentumAdjoint, SecondMomentAdjoint, BetaHatAdjoint, GammaHatAdjoint, PreInputAdjoint;
        public int StateFeaturesStride;
        public LstmBlock<T>.Buffers Lstm;
    }

    protected override void LayOutKept(ref Arena arena)
    {
        var b = new Bufs();
        TakeKept(ref arena, ref b);
    }

    /// <summary>The block's buffers: the kept forward at <paramref name="kept"/> (the scratch's head, or the unroll's store), the rest after the scratch's head.</summary>
    private Bufs Take(float* kept, float* scratch)
    {
        var b = new Bufs();
        var k = new Arena(kept);
        TakeKept(ref k, ref b);
        var w = new Arena(scratch + KeptFloats);
        TakeWork(ref w, ref b);
        return b;
    }

    // The forward's values that the backward reads and can take neither from the output state (m, v, β̂, γ̂ and h are
    // there) nor cheaply recompute (InputLayers: a kept backward recomputes those 3J floats per coordinate instead).
    private void TakeKept(ref Arena a, ref Bufs b)
    {
        long r = BlockRows, jp = _candidatesPadded;
        b.NormalizedGradient = a.Take(r);
        b.Decays = a.Take(r * _featureRowWidth);
        b.OneMinusDecays = a.Take(r * _featureRowWidth);
        if (_options.BoundsGamma)
        {
            b.GammaSigmoid = a.Take(r * jp);     // coupled or gamma-min: σ(z_γ) and 1 − σ(z_γ) before γ = L + (1 − L) σ(z_γ)
            b.OneMinusGammaSigmoid = a.Take(r * jp);
        }
        b.Directions = a.Take(r * jp);
        b.WeightLogits = a.Take(r * jp);
        b.Weights = a.Take(r * jp);
        _lstm?.TakeKept(ref a, BlockRows, ref b.Lstm);
    }

    private void TakeWork(ref Arena a, ref Bufs b)
    {
        long r = BlockRows, jp = _candidatesPadded;
        if (_preWeight is not null) { b.PreInput = a.Take(r * jp); b.PreOutput = a.Take(r * jp); }
        if (_embedWeight is not null) b.Embedding = a.Take(r * jp);
        b.NormalizedMomentum = a.Take(r * jp);
        b.DecayLogits = a.Take(r * _featureRowWidth);   // [β | γ] logits: read only by the forward's σ pass
        b.Momentum = a.Take(r * jp);                 // m, v, β̂, γ̂: copied to the output state
        b.SecondMoment = a.Take(r * jp);
        b.BetaHat = a.Take(r * jp);
        b.GammaHat = a.Take(r * jp);
        b.DecayLogitsAdjoint = a.Take(r * _featureRowWidth);
        b.BetaAdjoint = a.Take(r * jp);
        b.GammaAdjoint = a.Take(r * jp);
        b.NormalizedMomentumAdjoint = a.Take(r * _featureRowWidth + 16);
        b.WeightLogitsAdjoint = a.Take(r * jp);
        b.MomentumAdjoint = a.Take(r * jp);
        b.SecondMomentAdjoint = a.Take(r * jp);
        b.BetaHatAdjoint = a.Take(r * jp);
        b.GammaHatAdjoint = a.Take(r * jp);
        b.PreInputAdjoint = a.Take(r * jp);
        b.FeaturesAdjoint = b.NormalizedMomentumAdjoint + _candidates;   // [ā_m′ | ā_s] share rows of stride _featureRowWidth
        if (_lstm is not null) _lstm.TakeWork(ref a, BlockRows, ref b.Lstm);
        // s, the AdamCell's input from the StateCell.
        if (_lstm is not null) b.StateFeatures = b.Lstm.HOut;
        else if (_embedWeight is not null) b.StateFeatures = b.Embedding;
        else b.StateFeatures = b.PreOutput;
        b.StateFeaturesStride = (int)jp;
    }

    /// <summary>
    /// From ĝ and the input state: the StateCell's rank-one input layer (x = ELU(W_pre ĝ + b_pre), or without LSTM and
    /// preprocessing e = W_e ĝ + b_e) and the AdamCell's m′ = m_{t−1} / ‖m_{t−1}‖_col. A kept backward recomputes these
    /// (one FMA, and an ELU, per element) rather than store and stream back 3J floats per coordinate and step.
    /// </summary>
    private void InputLayers(in Block b, ref Bufs f)
    {
        int rows = b.Rows, jp = _candidatesPadded;
        if (_preWeight is not null)
        {
            Gemm<T>.SetRows(f.PreInput, jp, rows, jp, _preBias!.Pointer);
            Gemm<T>.MulAdd(f.NormalizedGradient, 1, rows, 1, _preWeight.Forward, _preWeight.OutPad, jp, f.PreInput, jp);
            Rows<T>.Elu(f.PreInput, f.PreOutput, rows * jp);
        }
        else if (_embedWeight is not null)
        {
            Gemm<T>.SetRows(f.Embedding, jp, rows, jp, _embedBias!.Pointer);
            Gemm<T>.MulAdd(f.NormalizedGradient, 1, rows, 1, _embedWeight.Forward, _embedWeight.OutPad, jp, f.Embedding, jp);
        }
        Rows<T>.ScaleColumns(Field(b.StateIn, b, _fields.M), _candidates, b.Globals + _columnNormsOffset, f.NormalizedMomentum, jp, rows, jp);
    }

    /// <summary>The forward of one block into scratch (shared by the step and the backward's recomputation).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ForwardCore(in Block b, ref Bufs f)
    {
        int rows = b.Rows, j = _candidates, jp = _candidatesPadded, w = T.Count;
        float* g = b.G, glob = b.Globals;
        float gInv = glob[0];
        for (int r = 0; r < rows; r++) f.NormalizedGradient[r] = g[r] * gInv;
        InputLayers(b, ref f);

        // StateCell.
        if (_lstm is not null)
        {
            float* x = _preWeight is not null ? f.PreOutput : f.NormalizedGradient;
            _lstm.Forward(f.Lstm, rows, x, _preWeight is not null ? jp : 1, Field(b.StateIn, b, _fields.H), j, Field(b.StateIn, b, _fields.C), j);
        }

        // AdamCell: decay rates from [m′ = m / ‖m‖_col, s].
        float* m0 = Field(b.StateIn, b, _fields.M), v0 = Field(b.StateIn, b, _fields.V), bh0 = Field(b.StateIn, b, _fields.BetaHat), gh0 = Field(b.StateIn, b, _fields.GammaHat);
        Gemm<T>.SetRows(f.DecayLogits, _featureRowWidth, rows, _decayRowWidth, _decayBias.Pointer);
        Gemm<T>.MulAdd(f.NormalizedMomentum, jp, rows, j, _decayFromM.Forward, _decayRowWidth, _decayRowWidth, f.DecayLogits, _featureRowWidth);
        Gemm<T>.MulAdd(f.StateFeatures, f.StateFeaturesStride, rows, j, _decayFromState.Forward, _decayRowWidth, _decayRowWidth, f.DecayLogits, _featureRowWidth);
        Gemm<T>.SetRows(f.WeightLogits, jp, rows, jp, _rhoBias.Pointer);
        Gemm<T>.MulAdd(f.StateFeatures, f.StateFeaturesStride, rows, j, _rhoWeight.Forward, jp, jp, f.WeightLogits, jp);

        Rows<T>.Elu(f.WeightLogits, f.Weights, rows * jp);
        AdamRows(ref f, rows, j, jp, _featureRowWidth, g, m0, v0, bh0, gh0, _epsilon, _options.BoundsGamma, _options.CoupledDecays, (float)_options.GammaMin, (float)(1 - _options.GammaMin), (float)_options.FieldClip);
    }

    /// <summary>AdamCell for the block's rows: eq. 3 and m̂ (Alg. 2 l. 16). One call per block: per-row calls with this many arguments cost more than the row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AdamRows(ref Bufs f, int rows, int j, int jp, int decayStride, float* gs, float* m0s, float* v0s, float* bh0s, float* gh0s, float epsilon, bool bound, bool coupled, float gammaMin, float keep, float clip)
    {
        T one = T.Splat(1f), gMin = T.Splat(gammaMin), k = T.Splat(keep);
        T hi = T.Splat(clip), lo = T.Splat(-clip);
        T floor = T.Splat(Floor), eps = T.Splat(epsilon);
        for (int r = 0; r < rows; r++)
        {
            float g = gs[r];
            float* z = f.DecayLogits + r * decayStride, m0 = m0s + r * j, v0 = v0s + r * j, bh0 = bh0s + r * j, gh0 = gh0s + r * j;
            int o = r * jp;
            float* bg = f.Decays + r * decayStride, ombg = f.OneMinusDecays + r * decayStride;
            // [β | γ] and [1 − β | 1 − γ] in one pass over the contiguous row (2J = 40 floats: three
            // vectors, not four). 1 − β comes from σ(−z), not by subtraction: with β near 1 (long
            // memory) the subtraction would lose most digits of 1 − β, and β̂ = 1 − β at t = 1.
            for (int v = 0; v < decayStride; v += T.Count)
            {
                T.Store(bg + v, Act<T>.SigmoidPair(T.Load(z + v), out T om));
                T.Store(ombg + v, om);
            }
            if (bound)
            {
                // γ = L + (1 − L) σ, 1 − γ = (1 − L)(1 − σ): L = γ_min, coupled L = γ_min + k β² with
                // 1 − L = k (1 − β)(1 + β), k = 1 − γ_min; no subtraction, as above.
                float* sig = f.GammaSigmoid + o, omSig = f.OneMinusGammaSigmoid + o;
                for (int v = 0; v < jp; v += T.Count)
                {
                    T sg = T.Load(bg + j + v), omsg = T.Load(ombg + j + v);
                    T.Store(sig + v, sg); T.Store(omSig + v, omsg);
                    T lower = gMin, omLower = k;
                    if (coupled)
                    {
                        T beta = T.Load(bg + v), omb = T.Load(ombg + v);
                        lower = T.Fma(k, T.Mul(beta, beta), gMin);
                        omLower = T.Mul(k, T.Mul(omb, T.Add(one, beta)));
                    }
                    T.Store(bg + j + v, T.Fma(omLower, sg, lower));
                    T.Store(ombg + j + v, T.Mul(omLower, omsg));
                }
            }
            float* mOut = f.Momentum + o, vOut = f.SecondMoment + o, bhOut = f.BetaHat + o, ghOut = f.GammaHat + o, fldOut = f.Directions + o;
            T gv = T.Splat(g), g2 = T.Splat(g * g);
            for (int v = 0; v < jp; v += T.Count)
            {
                T beta = T.Load(bg + v), gamma = T.Load(bg + j + v), omb = T.Load(ombg + v), omg = T.Load(ombg + j + v);
                T m = T.Fma(beta, T.Load(m0 + v), T.Mul(omb, gv));
                T vv = T.Fma(gamma, T.Load(v0 + v), T.Mul(omg, g2));
                T bh = T.Fma(beta, T.Load(bh0 + v), omb);
                T gh = T.Fma(gamma, T.Load(gh0 + v), omg);
                T fld = T.Mul(T.Mul(m, T.Reciprocal(T.Max(floor, bh))), T.ReciprocalSqrt(T.Add(T.Mul(vv, T.Reciprocal(T.Max(floor, gh))), eps)));
                if (clip > 0) fld = T.Min(hi, T.Max(lo, fld));
                T.Store(mOut + v, m); T.Store(vOut + v, vv); T.Store(bhOut + v, bh); T.Store(ghOut + v, gh);
                T.Store(fldOut + v, fld);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Forward(in Block b)
    {
        var f = Take(b.Kept != null ? b.Kept : b.Scratch, b.Scratch);
        ForwardCore(b, ref f);
        int rows = b.Rows, j = _candidates, jp = _candidatesPadded, w = T.Count;
        for (int r = 0; r < rows; r++) b.Update[r] = -_stepSize * Rows<T>.Dot(f.Weights + r * jp, f.Directions + r * jp, j);
        if (_lstm is not null)
        {
            CopyOut(f.Lstm.HOut, jp, Field(b.StateOut, b, _fields.H), j, rows);
            CopyOut(f.Lstm.COut, jp, Field(b.StateOut, b, _fields.C), j, rows);
        }
        CopyOut(f.Momentum, jp, Field(b.StateOut, b, _fields.M), j, rows);
        CopyOut(f.SecondMoment, jp, Field(b.StateOut, b, _fields.V), j, rows);
        CopyOut(f.BetaHat, jp, Field(b.StateOut, b, _fields.BetaHat), j, rows);
        CopyOut(f.GammaHat, jp, Field(b.StateOut, b, _fields.GammaHat), j, rows);
        // Σ_i m′_ij² of this block, for the next step's column norms.
        Rows<T>.ColumnDots(f.Momentum, jp, f.Momentum, jp, rows, jp, b.Partial);
    }

    public override void Backward(in Block b)
    {
        // The forward's outputs: kept by the unroll's forward, or recomputed from the stored input state.
        var f = Take(b.Kept != null ? b.Kept : b.Scratch, b.Scratch);
        int rows = b.Rows, j = _candidates, jp = _candidatesPadded, w = T.Count;
        // m, v, β̂, γ̂ (and h, the AdamCell's s) of this step: in the recomputed scratch (padded rows), or in the output state (compact).
        float* m1 = f.Momentum, v1 = f.SecondMoment, bh1 = f.BetaHat, gh1 = f.GammaHat;
        int ld1 = jp;
        if (b.Kept == null) ForwardCore(b, ref f);
        else
        {
            InputLayers(b, ref f);
            m1 = Field(b.StateOut, b, _fields.M); v1 = Field(b.StateOut, b, _fields.V);
            bh1 = Field(b.StateOut, b, _fields.BetaHat); gh1 = Field(b.StateOut, b, _fields.GammaHat);
            ld1 = j;
            if (_lstm is not null) { f.StateFeatures = Field(b.StateOut, b, _fields.H); f.StateFeaturesStride = j; }
        }
        float* aOut = b.AStateOut, m0 = Field(b.StateIn, b, _fields.M), v0 = Field(b.StateIn, b, _fields.V);
        float* bh0 = Field(b.StateIn, b, _fields.BetaHat), gh0 = Field(b.StateIn, b, _fields.GammaHat);
        float* aM1 = Field(aOut, b, _fields.M), aV1 = Field(aOut, b, _fields.V), aBh1 = Field(aOut, b, _fields.BetaHat), aGh1 = Field(aOut, b, _fields.GammaHat);
        bool pending = b.NextGlobals is not null;
        float* colInvN = pending ? b.NextGlobals + _columnNormsOffset : null;
        float* auxIn = pending ? b.AuxIn + (long)b.Start * j : null;
        AdamRowsBackward(ref f, rows, j, jp, _featureRowWidth, -_stepSize, b.AUpdate, b.G, m1, v1, bh1, gh1, ld1, m0, v0, bh0, gh0, aM1, aV1, aBh1, aGh1,
            pending ? colInvN : null, pending ? auxIn : null, pending ? b.NextReduction : null, pending ? b.NextGlobals[1] : 0, _epsilon, _options.BoundsGamma, _options.CoupledDecays, (float)(1 - _options.GammaMin), (float)_options.FieldClip);
        float* grad = b.Grad;
        Gemm<T>.AccumulateXtY(f.NormalizedMomentum, jp, rows, j, f.DecayLogitsAdjoint, _featureRowWidth, _decayRowWidth, grad + _gradDecayFromM, _decayRowWidth);
        Gemm<T>.AccumulateXtY(f.StateFeatures, f.StateFeaturesStride, rows, j, f.DecayLogitsAdjoint, _featureRowWidth, _decayRowWidth, grad + _gradDecayFromState, _decayRowWidth);
        Gemm<T>.AccumulateColumns(f.DecayLogitsAdjoint, _featureRowWidth, rows, _decayRowWidth, grad + _gradDecayBias);
        Gemm<T>.AccumulateXtY(f.StateFeatures, f.StateFeaturesStride, rows, j, f.WeightLogitsAdjoint, jp, jp, grad + _gradRhoWeight, jp);
        Gemm<T>.AccumulateColumns(f.WeightLogitsAdjoint, jp, rows, jp, grad + _gradRhoBias);
        Gemm<T>.Mul(f.DecayLogitsAdjoint, _featureRowWidth, rows, 2 * j, _decayFromBoth.Backward, _decayFromBoth.InPad, _decayFromBoth.InPad, f.NormalizedMomentumAdjoint, _featureRowWidth);
        Gemm<T>.MulAdd(f.WeightLogitsAdjoint, jp, rows, j, _rhoWeight.Backward, jp, jp, f.FeaturesAdjoint, _featureRowWidth);

        // The normalisation's pending part: ā (adjoint of m/‖m‖) and this block's share of R_j = Σ_i ā_ij m_ij.
        Rows<T>.ColumnDots(f.NormalizedMomentumAdjoint, _featureRowWidth, m0, j, rows, jp, b.Partial);
        CopyOut(f.NormalizedMomentumAdjoint, _featureRowWidth, b.AuxOut + (long)b.Start * j, j, rows);

        float* ax; int ldax;
        if (_lstm is not null)
        {
            float* ah1 = Field(aOut, b, _fields.H);
            Rows<T>.Add(f.FeaturesAdjoint, _featureRowWidth, ah1, j, rows, jp);
            float* x = _preWeight is not null ? f.PreOutput : f.NormalizedGradient;
            int ldx = _preWeight is not null ? jp : 1;
            _lstm.Backward(f.Lstm, rows, x, ldx, Field(b.StateIn, b, _fields.H), j, Field(b.StateIn, b, _fields.C), j, f.FeaturesAdjoint, _featureRowWidth, Field(aOut, b, _fields.C), j, grad);
            CopyOut(f.Lstm.PreviousHiddenAdjoint, _lstm.AdjointStride, Field(b.AStateIn, b, _fields.H), j, rows);
            CopyOut(f.Lstm.PreviousCAdjoint, jp, Field(b.AStateIn, b, _fields.C), j, rows);
            ax = f.Lstm.InputAdjoint; ldax = _lstm.AdjointStride;
        }
        else { ax = f.FeaturesAdjoint; ldax = _featureRowWidth; }

        if (_preWeight is not null)
        {
            Rows<T>.EluBackward(ax, ldax, f.PreInput, f.PreOutput, jp, f.PreInputAdjoint, rows, jp);
            Gemm<T>.AccumulateXtY(f.NormalizedGradient, 1, rows, 1, f.PreInputAdjoint, jp, jp, grad + _gradPreWeight, jp);
            Gemm<T>.AccumulateColumns(f.PreInputAdjoint, jp, rows, jp, grad + _gradPreBias);
        }
        else if (_embedWeight is not null)
        {
            Gemm<T>.AccumulateXtY(f.NormalizedGradient, 1, rows, 1, f.FeaturesAdjoint, _featureRowWidth, jp, grad + _gradEmbedWeight, jp);
            Gemm<T>.AccumulateColumns(f.FeaturesAdjoint, _featureRowWidth, rows, jp, grad + _gradEmbedBias);
        }
        CopyOut(f.MomentumAdjoint, jp, Field(b.AStateIn, b, _fields.M), j, rows);
        CopyOut(f.SecondMomentAdjoint, jp, Field(b.AStateIn, b, _fields.V), j, rows);
        CopyOut(f.BetaHatAdjoint, jp, Field(b.AStateIn, b, _fields.BetaHat), j, rows);
        CopyOut(f.GammaHatAdjoint, jp, Field(b.AStateIn, b, _fields.GammaHat), j, rows);
    }

    /// <summary>The adjoints of the block's rows through eq. 3, m̂ and ρ (see <see cref="Backward"/>), and [ā_zβ | ā_zγ] side by side.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AdamRowsBackward(ref Bufs f, int rows, int j, int jp, int decayStride, float minusLr, float* aUpdate, float* gs,
        float* m1, float* v1, float* bh1, float* gh1, int ld1, float* m0, float* v0, float* bh0, float* gh0,
        float* aM1, float* aV1, float* aBh1, float* aGh1, float* colInvN, float* auxIn, float* nextReduction, float cubicScale, float epsilon, bool bound, bool coupled, float keep, float clip)
    {
        T k = T.Splat(keep), twoK = T.Splat(2 * keep);
        T hi = T.Splat(clip), lo = T.Splat(-clip), zero = T.Splat(0f);
        T cubic = T.Splat(cubicScale);
        T one = T.Splat(1f), floor = T.Splat(Floor), eps = T.Splat(epsilon), half = T.Splat(-0.5f);
        for (int r = 0; r < rows; r++)
        {
            int o = r * jp, oc = r * j, o1 = r * ld1;
            float g = gs[r];
            T adv = T.Splat(minusLr * aUpdate[r]), gv = T.Splat(g), g2 = T.Splat(g * g);
            for (int v = 0; v < jp; v += T.Count)
            {
                int i = o + v, ic = oc + v;
                T m = T.Load(m1 + o1 + v), vv = T.Load(v1 + o1 + v), bh = T.Load(bh1 + o1 + v), gh = T.Load(gh1 + o1 + v);
                float* bg = f.Decays + r * decayStride + v, ombg = f.OneMinusDecays + r * decayStride + v;
                T beta = T.Load(bg), gamma = T.Load(bg + j);
                // Adjoint of m′ from step s+1: its direct use, plus (now that R_{s+1} is complete) the normalisation path.
                T am = T.Load(aM1 + ic);
                if (colInvN is not null)
                {
                    T ci = T.Load(colInvN + v);
                    am = T.Add(am, T.Sub(T.Mul(ci, T.Load(auxIn + ic)), T.Mul(T.Mul(m, T.Mul(ci, T.Mul(ci, ci))), T.Mul(cubic, T.Load(nextReduction + v)))));
                }
                T aField = T.Mul(adv, T.Load(f.Weights + i));
                T bhc = T.Max(floor, bh), ghc = T.Max(floor, gh);
                T ia = T.Reciprocal(bhc), ig = T.Reciprocal(ghc);
                T ib = T.ReciprocalSqrt(T.Add(T.Mul(vv, ig), eps));
                if (clip > 0)
                {
                    // field-clip: no gradient where the bound acted (|m̂| > c), as torch.clamp.
                    T raw = T.Mul(T.Mul(m, ia), ib);
                    aField = T.SelectGreater(raw, hi, zero, T.SelectGreater(lo, raw, zero, aField));
                }
                am = T.Fma(aField, T.Mul(ia, ib), am);
                T abh = T.Load(aBh1 + ic);
                abh = T.SelectGreater(bh, floor, T.Sub(abh, T.Mul(aField, T.Mul(m, T.Mul(T.Mul(ia, ia), ib)))), abh);
                T aq = T.Mul(T.Mul(aField, T.Mul(m, ia)), T.Mul(half, T.Mul(ib, T.Mul(ib, ib))));
                T av = T.Fma(aq, ig, T.Load(aV1 + ic));
                T agh = T.Load(aGh1 + ic);
                agh = T.SelectGreater(gh, floor, T.Sub(agh, T.Mul(T.Mul(aq, vv), T.Mul(ig, ig))), agh);
                T aBeta = T.Add(T.Mul(am, T.Sub(T.Load(m0 + ic), gv)), T.Mul(abh, T.Sub(T.Load(bh0 + ic), one)));
                T aGamma = T.Add(T.Mul(av, T.Sub(T.Load(v0 + ic), g2)), T.Mul(agh, T.Sub(T.Load(gh0 + ic), one)));
                if (bound)
                {
                    // γ = L + (1 − L) σ: ∂γ/∂z_γ = (1 − L) σ (1 − σ); coupled, ∂γ/∂β = 2kβ (1 − σ).
                    T sg = T.Load(f.GammaSigmoid + i), omsg = T.Load(f.OneMinusGammaSigmoid + i), omLower = k;
                    if (coupled)
                    {
                        T omb = T.Load(ombg);
                        aBeta = T.Fma(aGamma, T.Mul(twoK, T.Mul(beta, omsg)), aBeta);
                        omLower = T.Mul(k, T.Mul(omb, T.Add(one, beta)));
                    }
                    T.Store(f.GammaAdjoint + i, T.Mul(aGamma, T.Mul(omLower, T.Mul(sg, omsg))));
                }
                else T.Store(f.GammaAdjoint + i, T.Mul(aGamma, T.Mul(gamma, T.Load(ombg + j))));
                T.Store(f.BetaAdjoint + i, T.Mul(aBeta, T.Mul(beta, T.Load(ombg))));
                T.Store(f.MomentumAdjoint + i, T.Mul(am, beta));
                T.Store(f.SecondMomentAdjoint + i, T.Mul(av, gamma));
                T.Store(f.BetaHatAdjoint + i, T.Mul(abh, beta));
                T.Store(f.GammaHatAdjoint + i, T.Mul(agh, gamma));
                T.Store(f.WeightLogitsAdjoint + i, T.Mul(T.Mul(adv, T.Load(f.Directions + i)), Act<T>.EluGrad(T.Load(f.WeightLogits + i), T.Load(f.Weights + i))));
            }
            // [ā_zβ | ā_zγ] side by side, β first so γ's stores overwrite β's tail overrun.
            float* az = f.DecayLogitsAdjoint + r * decayStride;
            for (int v = 0; v < jp; v += T.Count) T.Store(az + v, T.Load(f.BetaAdjoint + o + v));
            for (int v = 0; v < jp; v += T.Count) T.Store(az + j + v, T.Load(f.GammaAdjoint + o + v));
        }
    }
}
