using System.Runtime.CompilerServices;
using L2O.Learned;

namespace L2O.Engine;

/// <summary>
/// <see cref="HyperAdam"/> on the engine with the coordinates along the SIMD lanes: the same
/// equations as <see cref="HyperAdamCell{T}"/> (StateCell, AdamCell, WeightCell, eqs. 3–7 and the
/// floors/guards of the reference), but every intermediate of a block is stored feature-major,
/// <c>[feature][coordinate]</c>, so each elementwise operation runs on whole vectors of coordinates
/// (no padding lanes for any J) and each product is "broadcast one weight × a vector of
/// coordinates, FMA" (<see cref="Lanes{T}.Product"/>).
/// </summary>
/// <remarks>
/// <para>State layout (owned by this cell; the engine only sizes it from <see cref="StateWidths"/>):
/// feature j of field f of coordinate i lives at <c>base + P·(offset_f + j) + i</c>, i.e. each field is J rows
/// of P coordinates (the same number of floats as the rows layout). Padding each row to whole 64-byte
/// lines, so that no vector straddles two, measured no faster (2.81 against 2.75 s per meta-iteration)
/// and would break "state floats per coordinate = 6J", so rows stay compact. A block's slice of a feature is then a contiguous, vector-aligned run, read
/// straight from the state vector (whole blocks) or copied with zeros past the last coordinate (the
/// last block), and written back without any transposition. Aux values (ā of m/‖m‖) use the same
/// feature-major layout, one field of J rows.</para>
/// <para>Column norms: as in <see cref="HyperAdamCell{T}"/>, the forward sums Σ_i m′_ij² of its output
/// state per block, and step s of the backward leaves ā (aux) and its block's share of
/// R_j = Σ_i ā_ij m_ij; step s−1 adds ‖m‖⁻¹ ā − m ‖m‖⁻³ R to the adjoint of m.</para>
/// <para>Meta-gradient packing: every weight in PyTorch's own layout (out × in, row-major), with
/// [θ_u ; θ_r] stacked as one (2J × 2J) matrix on [m′, s] and [b_u | b_r] as one 2J bias.</para>
/// <para><c>state-norm=true</c> (the AdamCell reads s′ = s/‖s‖_col, s = h_t of this step's LSTM) runs each step as two passes
/// (<see cref="FusedCell.StatePhaseReduction"/>): <see cref="ForwardState"/> runs the StateCell, writes h_t and c_t to the
/// output state and sums Σ_i s_ij²; <see cref="Forward"/> reads h_t back, scales it by the column factors
/// (<see cref="CompleteGlobals"/>) and runs the AdamCell and WeightCell. Without the LSTM, s is not part of the state, and
/// the second pass recomputes its one-input layer. The backward's main pass leaves ā_s′/‖s‖ + ā_s (the WeightCell reads s
/// itself) per coordinate and its block's share of R_j = Σ_i ā_s′,ij s_ij; the state pass adds −s ‖s‖⁻³ R / n and runs the
/// StateCell's backward, as the column norms of m do one step later.</para>
/// </remarks>
internal sealed unsafe class HyperAdamLanesCell<T> : FusedCell where T : unmanaged, ISimd<T>
{
    private const float Floor = (float)HyperAdam.BiasFloor;
    // Globals: [1/‖g‖, 1/n of the column-norm backward | 1/‖m‖ per column].
    private const int ColumnNormsOffset = 2;
    private readonly HyperAdamOptions _options;
    // state-norm=true: the AdamCell reads s′ = s/‖s‖_col; 1/‖s_j‖ follow 1/‖m_j‖ in the globals.
    private readonly bool _normalizeState;
    private readonly int _stateNormsOffset;
    private readonly int _candidates, _lstmInputs;
    // Floats between consecutive feature rows of a scratch buffer: BlockRows rounded up to whole 64-byte lines.
    private readonly int _rowStride;
    private readonly HyperAdamFields _fields;
    private readonly LaneMatrix? _preWeight, _embedWeight, _lstmInputWeight, _lstmHiddenWeight;
    private readonly AlignedBuffer? _preBias, _embedBias, _lstmBias;
    // [θ_u ; θ_r] on [m′, s]: rows 0..J−1 give z_β, rows J..2J−1 z_γ; columns 0..J−1 read m′, J..2J−1 read s.
    private readonly LaneMatrix _decayWeight, _rhoWeight;
    private readonly AlignedBuffer _decayBias, _rhoBias;
    private readonly int _gradPreWeight, _gradPreBias, _gradEmbedWeight, _gradEmbedBias, _gradLstmInput, _gradLstmHidden, _gradLstmBias;
    private readonly int _gradDecayWeight, _gradDecayBias, _gradRhoWeight, _gradRhoBias, _gradFloats;
    private readonly float _stepSize, _epsilon;

    public HyperAdamLanesCell(HyperAdamOptions options, int blockRows) : base(T.Count, blockRows)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (blockRows < 1) throw new ArgumentOutOfRangeException(nameof(blockRows), blockRows, "a block needs at least one coordinate");
        _options = options;
        int j = options.Candidates;
        if (j < 1) throw new ArgumentOutOfRangeException(nameof(options), j, "HyperAdam needs J ≥ 1 candidates");
        _candidates = j;
        _normalizeState = options.NormalizeState;
        _stateNormsOffset = ColumnNormsOffset + j;
        _lstmInputs = options.Preprocess ? j : 1;
        _rowStride = Layout.Pad(blockRows, 16);
        _stepSize = (float)options.StepSize;
        _epsilon = (float)options.Epsilon;
        int cursor = 0;
        if (options.Preprocess)
        {
            _preWeight = new LaneMatrix(j, 1); _preBias = new AlignedBuffer(j);
            _gradPreWeight = cursor; cursor += j; _gradPreBias = cursor; cursor += j;
        }
        if (options.UseLstm)
        {
            _lstmInputWeight = new LaneMatrix(4 * j, _lstmInputs); _lstmHiddenWeight = new LaneMatrix(4 * j, j); _lstmBias = new AlignedBuffer(4 * j);
            _gradLstmInput = cursor; cursor += 4 * j * _lstmInputs; _gradLstmHidden = cursor; cursor += 4 * j * j; _gradLstmBias = cursor; cursor += 4 * j;
        }
        if (!options.UseLstm && !options.Preprocess)
        {
            _embedWeight = new LaneMatrix(j, 1); _embedBias = new AlignedBuffer(j);
            _gradEmbedWeight = cursor; cursor += j; _gradEmbedBias = cursor; cursor += j;
        }
        _decayWeight = new LaneMatrix(2 * j, 2 * j); _decayBias = new AlignedBuffer(2 * j);
        _gradDecayWeight = cursor; cursor += 4 * j * j; _gradDecayBias = cursor; cursor += 2 * j;
        _rhoWeight = new LaneMatrix(j, j); _rhoBias = new AlignedBuffer(j);
        _gradRhoWeight = cursor; cursor += j * j; _gradRhoBias = cursor; cursor += j;
        _gradFloats = cursor;
        _fields = HyperAdamFields.Of(options);
    }

    public override int[] StateWidths => _fields.Widths;
    public override int ForwardReduction => _candidates;
    public override int BackwardReduction => _candidates;
    public override int AuxWidth => _candidates;
    public override int StatePhaseReduction => _normalizeState ? _candidates : 0;
    public override int StateAuxWidth => _normalizeState ? _candidates : 0;
    public override int GlobalsFloats => ColumnNormsOffset + (_normalizeState ? 2 : 1) * _candidates;
    public override int GradientFloats => _gradFloats;

    protected override void LayOut(ref Arena arena) => Take(ref arena);

    public override void Load(Func<string, float[]> read)
    {
        int j = _candidates;
        // β's and γ's biases share one buffer (γ's at offset J), so biases are copied at an offset rather than read whole.
        void Bias(AlignedBuffer target, string layer, int length, int offset = 0)
        {
            string name = MetaSchema.Bias(layer);
            target.CopyAt(read(name), offset, length, name);
        }
        if (_preWeight is not null) { _preWeight.Read(read, MetaSchema.Weight(HyperAdam.Layers.Preprocess)); Bias(_preBias!, HyperAdam.Layers.Preprocess, j); }
        if (_lstmInputWeight is not null)
        {
            _lstmInputWeight.Read(read, MetaSchema.InputWeight(HyperAdam.Layers.Lstm));
            _lstmHiddenWeight!.Read(read, MetaSchema.HiddenWeight(HyperAdam.Layers.Lstm));
            Bias(_lstmBias!, HyperAdam.Layers.Lstm, 4 * j);
        }
        if (_embedWeight is not null) { _embedWeight.Read(read, MetaSchema.Weight(HyperAdam.Layers.Embed)); Bias(_embedBias!, HyperAdam.Layers.Embed, j); }
        // β's and γ's weights are (J, 2J) on [m′, s]: stacked, they are the (2J, 2J) decay matrix.
        string betaName = MetaSchema.Weight(HyperAdam.Layers.Beta), gammaName = MetaSchema.Weight(HyperAdam.Layers.Gamma);
        float[] bw = read(betaName), gw = read(gammaName);
        if (bw.Length != 2 * j * j || gw.Length != 2 * j * j)
            throw new ArgumentException($"{betaName} and {gammaName} must have {j} × {2 * j} values each (got {bw.Length} and {gw.Length})");
        _decayWeight.Set([.. bw, .. gw], $"{betaName}, {gammaName}");
        Bias(_decayBias, HyperAdam.Layers.Beta, j);
        Bias(_decayBias, HyperAdam.Layers.Gamma, j, offset: j);
        _rhoWeight.Read(read, MetaSchema.Weight(HyperAdam.Layers.Rho));
        Bias(_rhoBias, HyperAdam.Layers.Rho, j);
    }

    public override void Unpack(ReadOnlySpan<double> g, Action<string, float[]> write)
    {
        int j = _candidates;
        if (_preWeight is not null) { write(MetaSchema.Weight(HyperAdam.Layers.Preprocess), Floats(g, _gradPreWeight, j)); write(MetaSchema.Bias(HyperAdam.Layers.Preprocess), Floats(g, _gradPreBias, j)); }
        if (_lstmInputWeight is not null)
        {
            write(MetaSchema.InputWeight(HyperAdam.Layers.Lstm), Floats(g, _gradLstmInput, 4 * j * _lstmInputs));
            write(MetaSchema.HiddenWeight(HyperAdam.Layers.Lstm), Floats(g, _gradLstmHidden, 4 * j * j));
            write(MetaSchema.Bias(HyperAdam.Layers.Lstm), Floats(g, _gradLstmBias, 4 * j));
        }
        if (_embedWeight is not null) { write(MetaSchema.Weight(HyperAdam.Layers.Embed), Floats(g, _gradEmbedWeight, j)); write(MetaSchema.Bias(HyperAdam.Layers.Embed), Floats(g, _gradEmbedBias, j)); }
        write(MetaSchema.Weight(HyperAdam.Layers.Beta), Floats(g, _gradDecayWeight, 2 * j * j));
        write(MetaSchema.Weight(HyperAdam.Layers.Gamma), Floats(g, _gradDecayWeight + 2 * j * j, 2 * j * j));
        write(MetaSchema.Bias(HyperAdam.Layers.Beta), Floats(g, _gradDecayBias, j));
        write(MetaSchema.Bias(HyperAdam.Layers.Gamma), Floats(g, _gradDecayBias + j, j));
        write(MetaSchema.Weight(HyperAdam.Layers.Rho), Floats(g, _gradRhoWeight, j * j));
        write(MetaSchema.Bias(HyperAdam.Layers.Rho), Floats(g, _gradRhoBias, j));
    }

    public override void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals)
        => HyperAdamFields.Globals(_options, p, gradientSquaredNorm, reduction, ColumnNormsOffset, globals);

    /// <summary>state-norm=true: 1/‖s_j‖ from the summed Σ_i s_ij² of the state pass, the same guard (and rms divisor) as m′'s.</summary>
    public override void CompleteGlobals(long p, ReadOnlySpan<double> reduction, Span<float> globals)
        => HyperAdamFields.ColumnFactors(_options, p, reduction, globals[_stateNormsOffset..]);

    /// <summary>A block's view of a state-shaped vector: the first coordinate of each field's first feature row, and the row stride.</summary>
    private struct Fields
    {
        public float* H, C, M, V, BetaHat, GammaHat;
        public long Stride;
    }

    /// <summary>
    /// Scratch of one block; every buffer is feature-major with rows of <see cref="_rowStride"/> floats. Forward:
    /// the gradient g and ĝ; the preprocessing's input and ELU output (Alg. 2 l. 3); the embedding (no LSTM, no
    /// preprocessing); the state features s fed to the decays and weights; m′ = m/‖m‖_col; the decay logits
    /// [z_β ; z_γ], the decays [β ; γ] and [1 − β ; 1 − γ] (σ(z_γ) and 1 − σ(z_γ) kept when γ is bounded); the new
    /// m, v, β̂, γ̂; the candidate directions m̂ (eq. 3); the weight logits and weights ρ (eq. 6). Each *Adjoint
    /// buffer holds the adjoint of its namesake in the backward.
    /// </summary>
    private struct Bufs
    {
        public float* Gradient, NormalizedGradient, Update, UpdateAdjoint, StateCopy, AdjointCopy, AuxCopy, NormalizedState;
        public float* PreInput, PreOutput, Embedding, StateFeatures;
        public float* Gates, GateActs, TanhC, H, C, GateLogitsAdjoint, InputAdjoint, PreviousHiddenAdjoint, PreviousCAdjoint;
        public float* NormalizedMomentum, DecayLogits, Decays, OneMinusDecays, GammaSigmoid, OneMinusGammaSigmoid,
            Momentum, SecondMoment, BetaHat, GammaHat, Directions, WeightLogits, Weights;
        public float* DecayLogitsAdjoint, MomentumAndFeaturesAdjoint, FeaturesAdjoint, WeightLogitsAdjoint,
            MomentumAdjoint, SecondMomentAdjoint, BetaHatAdjoint, GammaHatAdjoint, PreInputAdjoint;
    }

    private Bufs Take(float* scratch)
    {
        var a = new Arena(scratch);
        return Take(ref a);
    }

    private Bufs Take(ref Arena a)
    {
        long r = _rowStride;
        int j = _candidates, fields = _fields.Widths.Length;
        var b = new Bufs
        {
            Gradient = a.Take(r), NormalizedGradient = a.Take(r), Update = a.Take(r), UpdateAdjoint = a.Take(r),
            StateCopy = a.Take(fields * j * r), AdjointCopy = a.Take(fields * j * r), AuxCopy = a.Take(j * r),
            PreInput = a.Take(j * r), PreOutput = a.Take(j * r), Embedding = a.Take(j * r),
            NormalizedMomentum = a.Take(j * r), DecayLogits = a.Take(2 * j * r), Decays = a.Take(2 * j * r), OneMinusDecays = a.Take(2 * j * r),
            GammaSigmoid = a.Take(j * r), OneMinusGammaSigmoid = a.Take(j * r),
            Momentum = a.Take(j * r), SecondMoment = a.Take(j * r), BetaHat = a.Take(j * r), GammaHat = a.Take(j * r), Directions = a.Take(j * r), WeightLogits = a.Take(j * r), Weights = a.Take(j * r),
            DecayLogitsAdjoint = a.Take(2 * j * r), MomentumAndFeaturesAdjoint = a.Take(2 * j * r), WeightLogitsAdjoint = a.Take(j * r),
            MomentumAdjoint = a.Take(j * r), SecondMomentAdjoint = a.Take(j * r), BetaHatAdjoint = a.Take(j * r), GammaHatAdjoint = a.Take(j * r), PreInputAdjoint = a.Take(j * r),
        };
        b.FeaturesAdjoint = b.MomentumAndFeaturesAdjoint + j * r;   // [ā_m′ ; ā_s] = [θ_u ; θ_r]ᵀ ā_z in one product
        if (_normalizeState) b.NormalizedState = a.Take(j * r);
        if (_options.UseLstm)
        {
            b.Gates = a.Take(4 * j * r); b.GateActs = a.Take(4 * j * r); b.TanhC = a.Take(j * r); b.H = a.Take(j * r); b.C = a.Take(j * r);
            b.GateLogitsAdjoint = a.Take(4 * j * r); b.InputAdjoint = a.Take(_lstmInputs * r); b.PreviousHiddenAdjoint = a.Take(j * r); b.PreviousCAdjoint = a.Take(j * r);
        }
        return b;
    }

    /// <summary>Feature row 0 of field <paramref name="field"/> at the block's first coordinate (rows P apart).</summary>
    private float* FeatureRows(float* state, in Block b, int field) => state + b.P * FieldOffset(field) + b.Start;

    /// <summary>
    /// The block's slice of a state-shaped vector: read in place when the block is whole vectors of
    /// coordinates, else copied to <paramref name="copy"/> with zeros past the last coordinate (the
    /// vector loads of the last block would otherwise run into the next feature row or past the end).
    /// </summary>
    private Fields View(float* state, in Block b, float* copy, int n)
    {
        bool inPlace = b.Rows == n;
        int k = 0;
        var v = new Fields { Stride = inPlace ? b.P : _rowStride };
        if (_fields.H >= 0) { v.H = FieldView(state, b, _fields.H, copy, k++, n); v.C = FieldView(state, b, _fields.C, copy, k++, n); }
        v.M = FieldView(state, b, _fields.M, copy, k++, n);
        v.V = FieldView(state, b, _fields.V, copy, k++, n);
        v.BetaHat = FieldView(state, b, _fields.BetaHat, copy, k++, n);
        v.GammaHat = FieldView(state, b, _fields.GammaHat, copy, k++, n);
        return v;
    }

    /// <summary>Where <see cref="AdamCore"/> leaves m, v, β̂ and γ̂ for the backward (and a partial block's forward): the scratch.</summary>
    private Fields ScratchOutput(in Bufs f) =>
        new() { M = f.Momentum, V = f.SecondMoment, BetaHat = f.BetaHat, GammaHat = f.GammaHat, Stride = _rowStride };

    private float* FieldView(float* state, in Block b, int field, float* copy, int index, int n)
    {
        if (b.Rows == n) return FeatureRows(state, b, field);
        float* dst = copy + (long)index * _candidates * _rowStride;
        Lanes<T>.CopyIn(FeatureRows(state, b, field), b.P, _candidates, b.Rows, n, dst, _rowStride);
        return dst;
    }

    /// <summary>The gradient, ĝ and the StateCell: s in <see cref="Bufs.StateFeatures"/> (h and c with the LSTM).</summary>
    private void StateCore(in Block b, ref Bufs f, in Fields s, int n)
    {
        int rows = b.Rows, j = _candidates;
        long ld = _rowStride;
        Lanes<T>.CopyIn(b.G, 0, 1, rows, n, f.Gradient, ld);
        Lanes<T>.Scale(f.Gradient, b.Globals[0], f.NormalizedGradient, n);

        // StateCell.
        float* x = f.NormalizedGradient;
        if (_preWeight is not null)
        {
            Lanes<T>.Product(_preWeight.W, 1, j, 1, f.NormalizedGradient, ld, f.PreInput, ld, n, _preBias!.Pointer, false);
            Lanes<T>.Elu(f.PreInput, ld, f.PreOutput, ld, j, n);
            x = f.PreOutput;
        }
        if (_lstmInputWeight is not null)
        {
            LaneLstm<T>.Gates(_lstmInputWeight, _lstmHiddenWeight!, _lstmBias!.Pointer, x, ld, s.H, s.Stride, f.Gates, f.GateActs, ld, j, n);
            LaneLstm<T>.Cell(f.GateActs, s.C, s.Stride, f.TanhC, f.C, f.H, ld, j, n);
            f.StateFeatures = f.H;
        }
        else if (_embedWeight is not null)
        {
            Lanes<T>.Product(_embedWeight.W, 1, j, 1, f.NormalizedGradient, ld, f.Embedding, ld, n, _embedBias!.Pointer, false);
            f.StateFeatures = f.Embedding;
        }
        else f.StateFeatures = f.PreOutput;
    }

    /// <summary>
    /// The gradient and s for the AdamCell and WeightCell: computed by <see cref="StateCore"/>, or in a state-norm step with
    /// the LSTM, read back from the output state where the state pass left h_t (without the LSTM, s is one input layer and
    /// is recomputed).
    /// </summary>
    private void MainPassState(in Block b, ref Bufs f, in Fields s, int n)
    {
        if (!_normalizeState || _fields.H < 0) { StateCore(b, ref f, s, n); return; }
        Lanes<T>.CopyIn(b.G, 0, 1, b.Rows, n, f.Gradient, _rowStride);
        Lanes<T>.CopyIn(FeatureRows(b.StateOut, b, _fields.H), b.P, _candidates, b.Rows, n, f.H, _rowStride);
        f.StateFeatures = f.H;
    }

    /// <summary>
    /// The AdamCell and WeightCell from the gradient and s (<see cref="MainPassState"/>). The new m, v, β̂ and γ̂ go to
    /// <paramref name="output"/>: the scratch (<see cref="ScratchOutput"/>), or in a forward of a whole block the output state
    /// itself, which saves copying them there.
    /// </summary>
    private void AdamCore(in Block b, ref Bufs f, in Fields s, int n, in Fields output)
    {
        int j = _candidates;
        long ld = _rowStride;
        // AdamCell: decay rates from [m / ‖m‖_col, s] (state-norm: s / ‖s‖_col).
        float* adamState = f.StateFeatures;
        if (_normalizeState)
        {
            Lanes<T>.ScaleRows(f.StateFeatures, ld, b.Globals + _stateNormsOffset, f.NormalizedState, ld, j, n);
            adamState = f.NormalizedState;
        }
        Lanes<T>.ScaleRows(s.M, s.Stride, b.Globals + ColumnNormsOffset, f.NormalizedMomentum, ld, j, n);
        Lanes<T>.Product(_decayWeight.W, 2 * j, 2 * j, j, f.NormalizedMomentum, ld, f.DecayLogits, ld, n, _decayBias.Pointer, false);
        Lanes<T>.Product(_decayWeight.W + j, 2 * j, 2 * j, j, adamState, ld, f.DecayLogits, ld, n, null, true);
        Lanes<T>.Product(_rhoWeight.W, j, j, j, f.StateFeatures, ld, f.WeightLogits, ld, n, _rhoBias.Pointer, false);
        Lanes<T>.Elu(f.WeightLogits, ld, f.Weights, ld, j, n);
        // [β ; γ] and [1 − β ; 1 − γ]: 1 − β is σ(−z), never 1 − σ(z) (β near 1 would lose its digits, and β̂ = 1 − β at t = 1).
        Lanes<T>.SigmoidPairs(f.DecayLogits, f.Decays, f.OneMinusDecays, ld, 2 * j, n);
        if (_options.BoundsGamma) BoundGamma(f.Decays, f.OneMinusDecays, f.GammaSigmoid, f.OneMinusGammaSigmoid, ld, j, n, _options.CoupledDecays, (float)_options.GammaMin, (float)(1 - _options.GammaMin));
        Adam(f.Decays, f.OneMinusDecays, f.Gradient, s.M, s.V, s.BetaHat, s.GammaHat, s.Stride, output.M, output.V, output.BetaHat, output.GammaHat, output.Stride,
            f.Directions, ld, j, n, _epsilon, (float)_options.FieldClip);
    }

    /// <summary>
    /// coupled=true or gamma-min &gt; 0: γ = L + (1 − L) σ(z_γ) and 1 − γ = (1 − L)(1 − σ(z_γ)), no subtraction, with
    /// L = γ_min (coupled: γ_min + k β², 1 − L = k (1 − β)(1 + β)), k = 1 − γ_min; keeps σ and 1 − σ for the backward.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BoundGamma(float* bg, float* ombg, float* sig, float* omSig, long ld, int j, int n, bool coupled, float gammaMin, float keep)
    {
        T one = T.Splat(1f), gMin = T.Splat(gammaMin), k = T.Splat(keep);
        for (int r = 0; r < j; r++)
        {
            long b = r * ld, g = (j + r) * ld;
            for (int v = 0; v < n; v += T.Count)
            {
                T sg = T.Load(bg + g + v), omsg = T.Load(ombg + g + v);
                T.Store(sig + b + v, sg); T.Store(omSig + b + v, omsg);
                T lower = gMin, omLower = k;
                if (coupled)
                {
                    T beta = T.Load(bg + b + v), omb = T.Load(ombg + b + v);
                    lower = T.Fma(k, T.Mul(beta, beta), gMin);
                    omLower = T.Mul(k, T.Mul(omb, T.Add(one, beta)));
                }
                T.Store(bg + g + v, T.Fma(omLower, sg, lower));
                T.Store(ombg + g + v, T.Mul(omLower, omsg));
            }
        }
    }

    /// <summary>Eq. 3 and m̂ = (m/β̂) / √(v/γ̂ + ε) (Alg. 2 l. 16), β̂ and γ̂ floored at 1e-30 before dividing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Adam(float* bg, float* ombg, float* gs, float* m0s, float* v0s, float* bh0s, float* gh0s, long lds,
        float* mOut, float* vOut, float* bhOut, float* ghOut, long ldOut, float* fldOut, long ld, int j, int n, float epsilon, float clip)
    {
        T floor = T.Splat(Floor), eps = T.Splat(epsilon), hi = T.Splat(clip), lo = T.Splat(-clip);
        for (int r = 0; r < j; r++)
        {
            float* beta = bg + r * ld, gamma = bg + (j + r) * ld, omBeta = ombg + r * ld, omGamma = ombg + (j + r) * ld;
            float* m0 = m0s + r * lds, v0 = v0s + r * lds, bh0 = bh0s + r * lds, gh0 = gh0s + r * lds;
            long o = r * ld, oo = r * ldOut;
            for (int v = 0; v < n; v += T.Count)
            {
                T b = T.Load(beta + v), ga = T.Load(gamma + v), omb = T.Load(omBeta + v), omg = T.Load(omGamma + v);
                T g = T.Load(gs + v);
                T m = T.Fma(b, T.Load(m0 + v), T.Mul(omb, g));
                T vv = T.Fma(ga, T.Load(v0 + v), T.Mul(omg, T.Mul(g, g)));
                T bh = T.Fma(b, T.Load(bh0 + v), omb);
                T gh = T.Fma(ga, T.Load(gh0 + v), omg);
                T fld = T.Mul(T.Mul(m, T.Reciprocal(T.Max(floor, bh))), T.ReciprocalSqrt(T.Add(T.Mul(vv, T.Reciprocal(T.Max(floor, gh))), eps)));
                if (clip > 0) fld = T.Min(hi, T.Max(lo, fld));
                T.Store(mOut + oo + v, m); T.Store(vOut + oo + v, vv); T.Store(bhOut + oo + v, bh); T.Store(ghOut + oo + v, gh);
                T.Store(fldOut + o + v, fld);
            }
        }
    }

    /// <summary>update = −α Σ_j ρ_j ⊙ m̂_j (eq. 7), one vector of coordinates at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Direction(float* rho, float* fld, long ld, int j, int n, float minusLr, float* update)
    {
        T scale = T.Splat(minusLr);
        for (int v = 0; v < n; v += T.Count)
        {
            T acc = T.Splat(0f);
            for (int r = 0; r < j; r++) acc = T.Fma(T.Load(rho + r * ld + v), T.Load(fld + r * ld + v), acc);
            T.Store(update + v, T.Mul(scale, acc));
        }
    }

    /// <summary>state-norm=true, the step's first pass: the StateCell, h_t and c_t into the output state, and this block's Σ_i s_ij².</summary>
    public override void ForwardState(in Block b)
    {
        var f = Take(b.Scratch);
        int rows = b.Rows, n = Layout.Pad(rows, T.Count), j = _candidates;
        long ld = _rowStride;
        var s = View(b.StateIn, b, f.StateCopy, n);
        StateCore(b, ref f, s, n);
        WriteLstmState(b, f);
        Lanes<T>.RowDots(f.StateFeatures, ld, f.StateFeatures, ld, j, rows, b.Partial);
    }

    /// <summary>h_t and c_t of the block into the output state (nothing without the LSTM).</summary>
    private void WriteLstmState(in Block b, in Bufs f)
    {
        if (_fields.H < 0) return;
        Lanes<T>.CopyOut(f.H, _rowStride, _candidates, b.Rows, FeatureRows(b.StateOut, b, _fields.H), b.P);
        Lanes<T>.CopyOut(f.C, _rowStride, _candidates, b.Rows, FeatureRows(b.StateOut, b, _fields.C), b.P);
    }

    public override void Forward(in Block b)
    {
        var f = Take(b.Scratch);
        int rows = b.Rows, n = Layout.Pad(rows, T.Count), j = _candidates;
        long ld = _rowStride;
        var s = View(b.StateIn, b, f.StateCopy, n);
        MainPassState(b, ref f, s, n);
        // A whole block writes m, v, β̂, γ̂ straight into the output state; the last, partial block to the scratch, whose
        // vectors run past its last coordinate, and copies them from there.
        bool direct = rows == n;
        var output = direct ? View(b.StateOut, b, null, n) : ScratchOutput(f);   // a whole block's view is the state itself
        AdamCore(b, ref f, s, n, output);
        Direction(f.Weights, f.Directions, ld, j, n, -_stepSize, f.Update);
        Lanes<T>.CopyOut(f.Update, ld, 1, rows, b.Update, 0);
        if (!_normalizeState) WriteLstmState(b, f);   // (state-norm: written by the state pass)
        if (!direct)
        {
            Lanes<T>.CopyOut(f.Momentum, ld, j, rows, FeatureRows(b.StateOut, b, _fields.M), b.P);
            Lanes<T>.CopyOut(f.SecondMoment, ld, j, rows, FeatureRows(b.StateOut, b, _fields.V), b.P);
            Lanes<T>.CopyOut(f.BetaHat, ld, j, rows, FeatureRows(b.StateOut, b, _fields.BetaHat), b.P);
            Lanes<T>.CopyOut(f.GammaHat, ld, j, rows, FeatureRows(b.StateOut, b, _fields.GammaHat), b.P);
        }
        // Σ_i m′_ij² of this block's coordinates, for the next step's column norms.
        Lanes<T>.RowDots(output.M, output.Stride, output.M, output.Stride, j, rows, b.Partial);
    }

    public override void Backward(in Block b)
    {
        var f = Take(b.Scratch);
        int rows = b.Rows, n = Layout.Pad(rows, T.Count), j = _candidates;
        long ld = _rowStride;
        var s = View(b.StateIn, b, f.StateCopy, n);
        MainPassState(b, ref f, s, n);
        AdamCore(b, ref f, s, n, ScratchOutput(f));
        var a = View(b.AStateOut, b, f.AdjointCopy, n);
        Lanes<T>.CopyIn(b.AUpdate, 0, 1, rows, n, f.UpdateAdjoint, ld);
        bool pending = b.NextGlobals is not null;
        float* auxIn = null;
        long ldAux = b.P;
        if (pending)
        {
            auxIn = b.AuxIn + b.Start;
            if (rows != n) { Lanes<T>.CopyIn(auxIn, b.P, j, rows, n, f.AuxCopy, ld); auxIn = f.AuxCopy; ldAux = ld; }
        }
        AdamBackward(ref f, s, a, ld, j, n, -_stepSize, auxIn, ldAux, pending ? b.NextGlobals + ColumnNormsOffset : null, pending ? b.NextReduction : null,
            pending ? b.NextGlobals[1] : 0, _epsilon, _options.BoundsGamma, _options.CoupledDecays, (float)(1 - _options.GammaMin), (float)_options.FieldClip);
        // Past the last coordinate the lanes hold whatever zero inputs gave (with ε = 0, NaN): the sums over coordinates must not see them.
        Lanes<T>.ZeroTail(f.DecayLogitsAdjoint, ld, 2 * j, rows, n);
        Lanes<T>.ZeroTail(f.WeightLogitsAdjoint, ld, j, rows, n);

        float* grad = b.Grad;
        Lanes<T>.AccumulateOuter(f.DecayLogitsAdjoint, ld, 2 * j, f.NormalizedMomentum, ld, j, n, grad + _gradDecayWeight, 2 * j);
        Lanes<T>.AccumulateOuter(f.DecayLogitsAdjoint, ld, 2 * j, _normalizeState ? f.NormalizedState : f.StateFeatures, ld, j, n, grad + _gradDecayWeight + j, 2 * j);
        Lanes<T>.AccumulateRowSums(f.DecayLogitsAdjoint, ld, 2 * j, n, grad + _gradDecayBias);
        Lanes<T>.AccumulateOuter(f.WeightLogitsAdjoint, ld, j, f.StateFeatures, ld, j, n, grad + _gradRhoWeight, j);
        Lanes<T>.AccumulateRowSums(f.WeightLogitsAdjoint, ld, j, n, grad + _gradRhoBias);
        Lanes<T>.Product(_decayWeight.Transposed, 2 * j, 2 * j, 2 * j, f.DecayLogitsAdjoint, ld, f.MomentumAndFeaturesAdjoint, ld, n, null, false);
        if (_normalizeState)
        {
            // ā_s′ to ā_s: ‖s‖⁻¹ ā_s′ here; this block's share of R_j = Σ_i ā_s′,ij s_ij for the state pass, which adds −s ‖s‖⁻³ R / n.
            Lanes<T>.RowDots(f.FeaturesAdjoint, ld, f.StateFeatures, ld, j, rows, b.Partial + BackwardReduction);
            Lanes<T>.ScaleRows(f.FeaturesAdjoint, ld, b.Globals + _stateNormsOffset, f.FeaturesAdjoint, ld, j, n);
        }
        Lanes<T>.Product(_rhoWeight.Transposed, j, j, j, f.WeightLogitsAdjoint, ld, f.FeaturesAdjoint, ld, n, null, true);

        // The normalisation's pending part: ā (adjoint of m/‖m‖) and this block's share of R_j = Σ_i ā_ij m_ij.
        Lanes<T>.RowDots(f.MomentumAndFeaturesAdjoint, ld, s.M, s.Stride, j, rows, b.Partial);
        Lanes<T>.CopyOut(f.MomentumAndFeaturesAdjoint, ld, j, rows, b.AuxOut + b.Start, b.P);
        Lanes<T>.CopyOut(f.MomentumAdjoint, ld, j, rows, FeatureRows(b.AStateIn, b, _fields.M), b.P);
        Lanes<T>.CopyOut(f.SecondMomentAdjoint, ld, j, rows, FeatureRows(b.AStateIn, b, _fields.V), b.P);
        Lanes<T>.CopyOut(f.BetaHatAdjoint, ld, j, rows, FeatureRows(b.AStateIn, b, _fields.BetaHat), b.P);
        Lanes<T>.CopyOut(f.GammaHatAdjoint, ld, j, rows, FeatureRows(b.AStateIn, b, _fields.GammaHat), b.P);

        if (_normalizeState) Lanes<T>.CopyOut(f.FeaturesAdjoint, ld, j, rows, b.StateAux + b.Start, b.P);
        else StateCellBackward(b, ref f, s, a, n);
    }

    /// <summary>
    /// state-norm=true, the backward's second pass: ā_s from the main pass (<see cref="Block.StateAux"/>) completed with the
    /// normalisation's −s ‖s‖⁻³ R / n, R summed over every block (<see cref="Block.StateReduction"/>), then the StateCell's backward.
    /// </summary>
    public override void BackwardState(in Block b)
    {
        var f = Take(b.Scratch);
        int rows = b.Rows, n = Layout.Pad(rows, T.Count), j = _candidates;
        long ld = _rowStride;
        var s = View(b.StateIn, b, f.StateCopy, n);
        StateCore(b, ref f, s, n);
        var a = View(b.AStateOut, b, f.AdjointCopy, n);
        Lanes<T>.CopyIn(b.StateAux + b.Start, b.P, j, rows, n, f.FeaturesAdjoint, ld);
        float* c = b.Globals + _stateNormsOffset;
        float inverseCount = b.Globals[1];
        float* correction = stackalloc float[j];
        for (int r = 0; r < j; r++) correction[r] = -c[r] * c[r] * c[r] * inverseCount * b.StateReduction[r];
        Lanes<T>.AddScaledRows(f.FeaturesAdjoint, ld, f.StateFeatures, ld, correction, j, n);
        // Past the last coordinate s holds what zero inputs give (without the LSTM, the biases): the sums over coordinates must not see it.
        Lanes<T>.ZeroTail(f.FeaturesAdjoint, ld, j, rows, n);
        StateCellBackward(b, ref f, s, a, n);
    }

    /// <summary>The StateCell's backward from ā_s in <see cref="Bufs.FeaturesAdjoint"/>: the LSTM (with ā of h_t and c_t from step t+1), the input layers, and the adjoint of the input h and c.</summary>
    private void StateCellBackward(in Block b, ref Bufs f, in Fields s, in Fields a, int n)
    {
        int rows = b.Rows, j = _candidates;
        long ld = _rowStride;
        float* grad = b.Grad;
        float* ax = f.FeaturesAdjoint;
        if (_lstmInputWeight is not null)
        {
            Lanes<T>.Add(f.FeaturesAdjoint, ld, a.H, a.Stride, j, n);   // ā(h′): through s into this step's cells, and from step s+1
            LaneLstm<T>.CellBackward(f.GateActs, f.TanhC, s.C, s.Stride, f.FeaturesAdjoint, a.C, a.Stride, f.GateLogitsAdjoint, f.PreviousCAdjoint, ld, j, n);
            Lanes<T>.ZeroTail(f.GateLogitsAdjoint, ld, 4 * j, rows, n);
            float* x = _preWeight is not null ? f.PreOutput : f.NormalizedGradient;
            Lanes<T>.AccumulateOuter(f.GateLogitsAdjoint, ld, 4 * j, x, ld, _lstmInputs, n, grad + _gradLstmInput, _lstmInputs);
            Lanes<T>.AccumulateOuter(f.GateLogitsAdjoint, ld, 4 * j, s.H, s.Stride, j, n, grad + _gradLstmHidden, j);
            Lanes<T>.AccumulateRowSums(f.GateLogitsAdjoint, ld, 4 * j, n, grad + _gradLstmBias);
            Lanes<T>.Product(_lstmHiddenWeight!.Transposed, 4 * j, j, 4 * j, f.GateLogitsAdjoint, ld, f.PreviousHiddenAdjoint, ld, n, null, false);
            Lanes<T>.CopyOut(f.PreviousHiddenAdjoint, ld, j, rows, FeatureRows(b.AStateIn, b, _fields.H), b.P);
            Lanes<T>.CopyOut(f.PreviousCAdjoint, ld, j, rows, FeatureRows(b.AStateIn, b, _fields.C), b.P);
            if (_preWeight is not null) Lanes<T>.Product(_lstmInputWeight.Transposed, 4 * j, _lstmInputs, 4 * j, f.GateLogitsAdjoint, ld, f.InputAdjoint, ld, n, null, false);
            ax = f.InputAdjoint;
        }
        if (_preWeight is not null)
        {
            Lanes<T>.EluBackward(ax, ld, f.PreInput, f.PreOutput, ld, f.PreInputAdjoint, j, n);
            Lanes<T>.AccumulateOuter(f.PreInputAdjoint, ld, j, f.NormalizedGradient, ld, 1, n, grad + _gradPreWeight, 1);
            Lanes<T>.AccumulateRowSums(f.PreInputAdjoint, ld, j, n, grad + _gradPreBias);
        }
        else if (_embedWeight is not null)
        {
            Lanes<T>.AccumulateOuter(f.FeaturesAdjoint, ld, j, f.NormalizedGradient, ld, 1, n, grad + _gradEmbedWeight, 1);
            Lanes<T>.AccumulateRowSums(f.FeaturesAdjoint, ld, j, n, grad + _gradEmbedBias);
        }
    }

    /// <summary>
    /// The adjoints through eq. 3, m̂ and ρ (as in <see cref="HyperAdamCell{T}"/>), feature row by
    /// feature row: ā of the input state (m, v, β̂, γ̂), [ā_zβ ; ā_zγ] and ā_zρ.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AdamBackward(ref Bufs f, in Fields s, in Fields a, long ld, int j, int n, float minusLr, float* auxIn, long ldAux,
        float* colInvN, float* nextReduction, float cubicScale, float epsilon, bool bound, bool coupled, float keep, float clip)
    {
        T k = T.Splat(keep), twoK = T.Splat(2 * keep), one = T.Splat(1f), floor = T.Splat(Floor), eps = T.Splat(epsilon), half = T.Splat(-0.5f);
        T hi = T.Splat(clip), lo = T.Splat(-clip), zero = T.Splat(0f);
        long lds = s.Stride, lda = a.Stride;
        for (int r = 0; r < j; r++)
        {
            long o = r * ld, og = (j + r) * ld;
            float* m0 = s.M + r * lds, v0 = s.V + r * lds, bh0 = s.BetaHat + r * lds, gh0 = s.GammaHat + r * lds;
            float* aM1 = a.M + r * lda, aV1 = a.V + r * lda, aBh1 = a.BetaHat + r * lda, aGh1 = a.GammaHat + r * lda;
            // Normalisation path of m′ into step s+1, now that R_{s+1} is complete: ‖m‖⁻¹ ā − m ‖m‖⁻³ R / n.
            T ci = T.Splat(colInvN is null ? 0f : colInvN[r]);
            T cubicR = T.Splat(colInvN is null ? 0f : colInvN[r] * colInvN[r] * colInvN[r] * cubicScale * nextReduction[r]);
            float* aux = auxIn is null ? null : auxIn + r * ldAux;
            for (int v = 0; v < n; v += T.Count)
            {
                T adv = T.Mul(T.Splat(minusLr), T.Load(f.UpdateAdjoint + v));
                T g = T.Load(f.Gradient + v), g2 = T.Mul(g, g);
                T m = T.Load(f.Momentum + o + v), vv = T.Load(f.SecondMoment + o + v), bh = T.Load(f.BetaHat + o + v), gh = T.Load(f.GammaHat + o + v);
                T beta = T.Load(f.Decays + o + v), gamma = T.Load(f.Decays + og + v);
                T am = T.Load(aM1 + v);
                if (aux is not null) am = T.Add(am, T.Sub(T.Mul(ci, T.Load(aux + v)), T.Mul(m, cubicR)));
                T aField = T.Mul(adv, T.Load(f.Weights + o + v));
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
                T abh = T.Load(aBh1 + v);
                abh = T.SelectGreater(bh, floor, T.Sub(abh, T.Mul(aField, T.Mul(m, T.Mul(T.Mul(ia, ia), ib)))), abh);
                T aq = T.Mul(T.Mul(aField, T.Mul(m, ia)), T.Mul(half, T.Mul(ib, T.Mul(ib, ib))));
                T av = T.Fma(aq, ig, T.Load(aV1 + v));
                T agh = T.Load(aGh1 + v);
                agh = T.SelectGreater(gh, floor, T.Sub(agh, T.Mul(T.Mul(aq, vv), T.Mul(ig, ig))), agh);
                T aBeta = T.Add(T.Mul(am, T.Sub(T.Load(m0 + v), g)), T.Mul(abh, T.Sub(T.Load(bh0 + v), one)));
                T aGamma = T.Add(T.Mul(av, T.Sub(T.Load(v0 + v), g2)), T.Mul(agh, T.Sub(T.Load(gh0 + v), one)));
                T omb = T.Load(f.OneMinusDecays + o + v);
                if (bound)
                {
                    // γ = L + (1 − L) σ: ∂γ/∂z_γ = (1 − L) σ (1 − σ); coupled, ∂γ/∂β = 2kβ (1 − σ).
                    T sg = T.Load(f.GammaSigmoid + o + v), omsg = T.Load(f.OneMinusGammaSigmoid + o + v), omLower = k;
                    if (coupled)
                    {
                        aBeta = T.Fma(aGamma, T.Mul(twoK, T.Mul(beta, omsg)), aBeta);
                        omLower = T.Mul(k, T.Mul(omb, T.Add(one, beta)));
                    }
                    T.Store(f.DecayLogitsAdjoint + og + v, T.Mul(aGamma, T.Mul(omLower, T.Mul(sg, omsg))));
                }
                else T.Store(f.DecayLogitsAdjoint + og + v, T.Mul(aGamma, T.Mul(gamma, T.Load(f.OneMinusDecays + og + v))));
                T.Store(f.DecayLogitsAdjoint + o + v, T.Mul(aBeta, T.Mul(beta, omb)));
                T.Store(f.MomentumAdjoint + o + v, T.Mul(am, beta));
                T.Store(f.SecondMomentAdjoint + o + v, T.Mul(av, gamma));
                T.Store(f.BetaHatAdjoint + o + v, T.Mul(abh, beta));
                T.Store(f.GammaHatAdjoint + o + v, T.Mul(agh, gamma));
                T.Store(f.WeightLogitsAdjoint + o + v, T.Mul(T.Mul(adv, T.Load(f.Directions + o + v)), Act<T>.EluGrad(T.Load(f.WeightLogits + o + v), T.Load(f.Weights + o + v))));
            }
        }
    }
}
