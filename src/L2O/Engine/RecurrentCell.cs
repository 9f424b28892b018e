using System.Runtime.CompilerServices;
using L2O.Learned;

namespace L2O.Engine;

/// <summary>How a <see cref="RecurrentCell{T}"/> turns the gradient into the LSTM's input.</summary>
internal enum RecurrentInput
{
    /// <summary>RNNprop: [g/sv, m̂/sv] from Adam moments carried in the state (eqs. 5, 6, 8, 9).</summary>
    Moments,
    /// <summary>DMoptimizer's LogAndSign: [max(log(|g| + ε)/k, −1), clamp(g e^k, −1, 1)].</summary>
    LogAndSign,
    /// <summary>The raw gradient.</summary>
    Raw,
}

/// <summary>The shape of a coordinatewise LSTM optimizer (RNNprop or DMoptimizer).</summary>
/// <param name="PreLayer">Checkpoint prefix of an FC + ELU layer of width Hidden before the LSTMs (RNNprop), or null for none.</param>
/// <param name="OutputLayer">Checkpoint prefix of the output layer after the LSTMs.</param>
/// <param name="TanhStep">Δ = −Scale·tanh(W h + b) (RNNprop, eq. 7); otherwise Δ = Scale·(W h + b).</param>
/// <remarks>The parts both cells (rows and lanes) share live here: state fields, names, step constants, input features, output step.</remarks>
internal sealed record RecurrentSpec(int Hidden, int Layers, RecurrentInput Input, string? PreLayer, string OutputLayer, bool TanhStep, double Scale,
    double Beta1 = 0, double Beta2 = 0, double Epsilon = 0, double K = 5)
{
    /// <summary>Input features per coordinate: 1 raw, 2 for moments or LogAndSign.</summary>
    public int Inputs => Input == RecurrentInput.Raw ? 1 : 2;

    /// <summary>The state field of the first LSTM's h (the moments m, v come before it when the input needs them).</summary>
    private int FirstLstmField => Input == RecurrentInput.Moments ? 2 : 0;

    /// <summary>Widths of the state fields: [m, v,] h of each layer, c of each layer.</summary>
    public int[] StateWidths() => [.. Enumerable.Repeat(1, FirstLstmField), .. Enumerable.Repeat(Hidden, 2 * Layers)];

    public int FieldH(int l) => FirstLstmField + l;
    public int FieldC(int l) => FirstLstmField + Layers + l;
    public string NameOfLayer(int l) => LstmStack.LayerName(l);

    /// <summary>RNNprop's bias corrections 1/(1 − β₁ᵗ), 1/(1 − β₂ᵗ); nothing for the other inputs.</summary>
    public void Globals(long t, Span<float> globals)
    {
        globals.Clear();
        if (Input != RecurrentInput.Moments) return;
        globals[0] = (float)(1 / (1 - Math.Pow(Beta1, t)));
        globals[1] = (float)(1 / (1 - Math.Pow(Beta2, t)));
    }

    /// <summary>
    /// The two input features of <paramref name="rows"/> coordinates, coordinate r's at in0[r·stride] and in1[r·stride]:
    /// RNNprop's [g/sv, m̂/sv] from new Adam moments (eqs. 5, 6, 8, 9; sv = √v̂ + ε, the moments written to mOut, vOut),
    /// or DMoptimizer's LogAndSign [max(log(|g| + ε)/k, −1), clamp(g e^k, −1, 1)]. Not for raw inputs.
    /// </summary>
    public unsafe void Features(float* g, float* m0, float* v0, float* globals, float* mOut, float* vOut, float* in0, float* in1, int stride, int rows)
    {
        if (Input == RecurrentInput.Moments)
        {
            float b1 = (float)Beta1, b2 = (float)Beta2, eps = (float)Epsilon, bc1 = globals[0], bc2 = globals[1];
            for (int r = 0; r < rows; r++)
            {
                float m = m0[r] * b1 + g[r] * (1 - b1), v = v0[r] * b2 + g[r] * g[r] * (1 - b2);
                float sv = MathF.Sqrt(v * bc2) + eps;
                mOut[r] = m; vOut[r] = v;
                in0[r * stride] = g[r] / sv;
                in1[r * stride] = m * bc1 / sv;
            }
        }
        else
        {
            const float eps = (float)DmOptimizer.LogEpsilon;
            float k = (float)K, ek = (float)Math.Exp(K);
            for (int r = 0; r < rows; r++)
            {
                in0[r * stride] = MathF.Max(MathF.Log(MathF.Abs(g[r]) + eps) / k, -1f);
                in1[r * stride] = Math.Clamp(g[r] * ek, -1f, 1f);
            }
        }
    }

    /// <summary>The update from the output: −Scale·tanh(out) (RNNprop eq. 7) or Scale·out.</summary>
    public float Step(float output) => TanhStep ? -(float)Scale * MathF.Tanh(output) : (float)Scale * output;

    /// <summary>ā(out) from ā(update) <paramref name="d"/>.</summary>
    public float StepAdjoint(float output, float d)
    {
        if (!TanhStep) return (float)Scale * d;
        float th = MathF.Tanh(output);
        return -(float)Scale * (1 - th * th) * d;
    }
}

/// <summary>
/// <see cref="L2O.Learned.RnnProp"/> and <see cref="L2O.Learned.DmOptimizer"/> on the engine: input
/// features (constants for the meta-gradient: they depend on gradients only), an optional FC + ELU,
/// a stack of LSTMs and a linear output. No global statistics: every block is independent.
/// </summary>
internal sealed unsafe class RecurrentCell<T> : FusedCell where T : unmanaged, ISimd<T>
{
    private readonly RecurrentSpec _spec;
    // LSTM width H and H rounded up to whole vectors; input features per coordinate (1 raw, 2 for moments or LogAndSign);
    // the state field of the first LSTM's h (the moments m, v come before it when the input needs them).
    private readonly int _hidden, _hiddenPadded, _inputs;
    private readonly int[] _widths;
    private readonly PackedMatrix? _preWeight;
    private readonly AlignedBuffer? _preBias;
    private readonly LstmBlock<T>[] _layers;
    private readonly AlignedBuffer _outWeight;
    private float _outBias;
    // Offsets of each meta-parameter's gradient in the packed gradient accumulator.
    private readonly int _gradPreWeight, _gradPreBias, _gradOutWeight, _gradOutBias, _gradFloats;

    public RecurrentCell(RecurrentSpec spec, int blockRows) : base(T.Count, blockRows)
    {
        _spec = spec;
        int c = T.Count;
        _hidden = spec.Hidden; _hiddenPadded = Layout.Pad(_hidden, c);
        _inputs = spec.Inputs;
        int cursor = 0;
        if (spec.PreLayer is not null)
        {
            _preWeight = new PackedMatrix(_hidden, _inputs, c); _preBias = new AlignedBuffer(_hiddenPadded);
            _gradPreWeight = cursor; cursor += _inputs * _hiddenPadded; _gradPreBias = cursor; cursor += _hiddenPadded;
        }
        if (spec.Layers > MaxLayers) throw new L2OException($"the fused recurrent cell has at most {MaxLayers} layers (got {spec.Layers})");
        _layers = new LstmBlock<T>[spec.Layers];
        for (int l = 0; l < spec.Layers; l++) _layers[l] = new LstmBlock<T>(l == 0 ? (spec.PreLayer is not null ? _hidden : _inputs) : _hidden, _hidden, ref cursor);
        _outWeight = new AlignedBuffer(_hiddenPadded);
        _gradOutWeight = cursor; cursor += _hiddenPadded; _gradOutBias = cursor; cursor += c;
        _gradFloats = cursor;
        _widths = spec.StateWidths();
    }

    private int FieldH(int l) => _spec.FieldH(l);
    private int FieldC(int l) => _spec.FieldC(l);
    private string LayerName(int l) => _spec.NameOfLayer(l);

    public override int[] StateWidths => _widths;
    public override int GlobalsFloats => 2;
    public override int GradientFloats => _gradFloats;
    protected override void LayOut(ref Arena arena)
    {
        var b = new Bufs();
        TakeKept(ref arena, ref b);
        TakeWork(ref arena, ref b);
    }

    public override void Load(Func<string, float[]> read)
    {
        if (_preWeight is not null)
        {
            _preWeight.Set(read(MetaSchema.Weight(_spec.PreLayer!)));
            _preBias!.CopyFrom(read(MetaSchema.Bias(_spec.PreLayer!)));
        }
        for (int l = 0; l < _layers.Length; l++)
            _layers[l].Load(read(MetaSchema.InputWeight(LayerName(l))), read(MetaSchema.HiddenWeight(LayerName(l))), read(MetaSchema.Bias(LayerName(l))));
        _outWeight.CopyFrom(read(MetaSchema.Weight(_spec.OutputLayer)));
        _outBias = read(MetaSchema.Bias(_spec.OutputLayer))[0];
    }

    public override void Unpack(ReadOnlySpan<double> g, Action<string, float[]> write)
    {
        if (_preWeight is not null)
        {
            write(MetaSchema.Weight(_spec.PreLayer!), _preWeight.Unpack(g, _gradPreWeight));
            write(MetaSchema.Bias(_spec.PreLayer!), Floats(g, _gradPreBias, _hidden));
        }
        for (int l = 0; l < _layers.Length; l++) _layers[l].Unpack(g, LayerName(l), write);
        write(MetaSchema.Weight(_spec.OutputLayer), Floats(g, _gradOutWeight, _hidden));
        write(MetaSchema.Bias(_spec.OutputLayer), [(float)g[_gradOutBias]]);
    }

    public override void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals) => _spec.Globals(t, globals);

    /// <summary>
    /// One block's scratch: the LSTM's input features (from the gradient and, for RNNprop, the moments); the new moments
    /// m and v that go to the output state; the preprocessing's input and ELU output; the output before the step
    /// function; the hidden state's adjoint passed down the layers; each layer's LSTM buffers. Each *Adjoint buffer holds
    /// its namesake's adjoint.
    /// </summary>
    private struct Bufs
    {
        public float* Features, NewMomentum, NewSecondMoment, PreInput, PreOutput, Output, OutputAdjoint, HiddenAdjoint, PreInputAdjoint;
        public float* FirstLayerInput; public int FirstLayerInputStride;
        public LayerBuffers Layers;
    }

    /// <summary>Each layer's buffers, inline in <see cref="Bufs"/> so that laying out a block allocates nothing (at most <see cref="MaxLayers"/> layers).</summary>
    [InlineArray(MaxLayers)]
    private struct LayerBuffers
    {
        private LstmBlock<T>.Buffers _layer;
    }

    private const int MaxLayers = 8;

    protected override void LayOutKept(ref Arena arena)
    {
        var b = new Bufs();
        TakeKept(ref arena, ref b);
    }

    /// <summary>The block's buffers: the kept forward at <paramref name="kept"/> (the scratch's head, or the unroll's store), the rest after the scratch's head.</summary>
    private Bufs Take(in Block blk, float* kept, float* scratch)
    {
        var b = new Bufs();
        var k = new Arena(kept);
        TakeKept(ref k, ref b);
        var w = new Arena(scratch + KeptFloats);
        TakeWork(ref w, ref b);
        if (_spec.Input == RecurrentInput.Raw) { b.FirstLayerInput = blk.G; b.FirstLayerInputStride = 1; }
        else { b.FirstLayerInput = b.Features; b.FirstLayerInputStride = 2; }
        return b;
    }

    // The forward's values that the backward reads and cannot take from the output state (each layer's h′ is there)
    // nor cheaply recompute (PreLayer: a kept backward recomputes its 2 × hidden floats per coordinate instead).
    private void TakeKept(ref Arena a, ref Bufs b)
    {
        long r = BlockRows;
        b.Features = a.Take(2 * r);
        b.Output = a.Take(r);
        for (int l = 0; l < _layers.Length; l++) _layers[l].TakeKept(ref a, BlockRows, ref b.Layers[l]);
    }

    private void TakeWork(ref Arena a, ref Bufs b)
    {
        long r = BlockRows;
        if (_preWeight is not null) { b.PreInput = a.Take(r * _hiddenPadded); b.PreOutput = a.Take(r * _hiddenPadded); }
        b.NewMomentum = a.Take(r);   // the new moments: copied to the output state
        b.NewSecondMoment = a.Take(r);
        b.OutputAdjoint = a.Take(r);
        b.HiddenAdjoint = a.Take(r * _hiddenPadded);
        b.PreInputAdjoint = a.Take(r * _hiddenPadded);
        for (int l = 0; l < _layers.Length; l++) _layers[l].TakeWork(ref a, BlockRows, ref b.Layers[l]);
    }

    /// <summary>
    /// RNNprop's input layer x = ELU(W_pre [m̂, ĝ] + b_pre): two inputs per coordinate, so a kept backward recomputes it
    /// (two FMAs and an ELU per element) rather than store and stream back 2 × hidden floats per coordinate and step.
    /// </summary>
    private void PreLayer(ref Bufs f, int rows)
    {
        int hp = _hiddenPadded;
        Gemm<T>.SetRows(f.PreInput, hp, rows, hp, _preBias!.Pointer);
        Gemm<T>.MulAdd(f.FirstLayerInput, f.FirstLayerInputStride, rows, _inputs, _preWeight!.Forward, hp, hp, f.PreInput, hp);
        Rows<T>.Elu(f.PreInput, f.PreOutput, rows * hp);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ForwardCore(in Block b, ref Bufs f)
    {
        int rows = b.Rows, w = T.Count, hp = _hiddenPadded;
        float* g = b.G;
        if (_spec.Input != RecurrentInput.Raw)
        {
            bool moments = _spec.Input == RecurrentInput.Moments;
            _spec.Features(g, moments ? Field(b.StateIn, b, 0) : null, moments ? Field(b.StateIn, b, 1) : null, b.Globals, f.NewMomentum, f.NewSecondMoment, f.Features, f.Features + 1, 2, rows);
        }
        float* x = f.FirstLayerInput; int ldx = f.FirstLayerInputStride;
        if (_preWeight is not null)
        {
            PreLayer(ref f, rows);
            x = f.PreOutput; ldx = hp;
        }
        for (int l = 0; l < _layers.Length; l++)
        {
            _layers[l].Forward(f.Layers[l], rows, x, ldx, Field(b.StateIn, b, FieldH(l)), _hidden, Field(b.StateIn, b, FieldC(l)), _hidden);
            x = f.Layers[l].HOut; ldx = hp;
        }
        for (int r = 0; r < rows; r++) f.Output[r] = Rows<T>.Dot(x + r * hp, _outWeight.Pointer, _hidden) + _outBias;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Forward(in Block b)
    {
        var f = Take(b, b.Kept != null ? b.Kept : b.Scratch, b.Scratch);
        ForwardCore(b, ref f);
        int rows = b.Rows;
        for (int r = 0; r < rows; r++) b.Update[r] = _spec.Step(f.Output[r]);
        if (_spec.Input == RecurrentInput.Moments)
        {
            CopyOut(f.NewMomentum, 1, Field(b.StateOut, b, 0), 1, rows);
            CopyOut(f.NewSecondMoment, 1, Field(b.StateOut, b, 1), 1, rows);
        }
        for (int l = 0; l < _layers.Length; l++)
        {
            CopyOut(f.Layers[l].HOut, _hiddenPadded, Field(b.StateOut, b, FieldH(l)), _hidden, rows);
            CopyOut(f.Layers[l].COut, _hiddenPadded, Field(b.StateOut, b, FieldC(l)), _hidden, rows);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Backward(in Block b)
    {
        // The forward's values: kept by the unroll's forward, or recomputed from the stored input state.
        var f = Take(b, b.Kept != null ? b.Kept : b.Scratch, b.Scratch);
        if (b.Kept == null) ForwardCore(b, ref f);
        else if (_preWeight is not null) PreLayer(ref f, b.Rows);
        int rows = b.Rows, w = T.Count, hp = _hiddenPadded, top = _layers.Length - 1;
        // Each layer's h′: in the recomputed scratch (padded rows), or in the output state (compact).
        bool kept = b.Kept != null;
        int ldh = kept ? _hidden : hp;
        for (int r = 0; r < rows; r++) f.OutputAdjoint[r] = _spec.StepAdjoint(f.Output[r], b.AUpdate[r]);
        float* grad = b.Grad;
        Gemm<T>.AccumulateXtY(f.OutputAdjoint, 1, rows, 1, kept ? Field(b.StateOut, b, FieldH(top)) : f.Layers[top].HOut, ldh, hp, grad + _gradOutWeight, hp);   // compact rows over-read into padding columns, which Unpack ignores
        float sum = 0;
        for (int r = 0; r < rows; r++) sum += f.OutputAdjoint[r];
        grad[_gradOutBias] += sum;

        float* ah = Field(b.AStateOut, b, FieldH(top));
        Rows<T>.ScalarTimesRowPlus(f.OutputAdjoint, _outWeight.Pointer, ah, _hidden, f.HiddenAdjoint, hp, rows, hp);
        for (int l = top; l >= 0; l--)
        {
            float* x = l == 0 ? (_preWeight is not null ? f.PreOutput : f.FirstLayerInput) : kept ? Field(b.StateOut, b, FieldH(l - 1)) : f.Layers[l - 1].HOut;
            int ldx = l == 0 ? (_preWeight is not null ? hp : f.FirstLayerInputStride) : ldh;
            _layers[l].Backward(f.Layers[l], rows, x, ldx, Field(b.StateIn, b, FieldH(l)), _hidden, Field(b.StateIn, b, FieldC(l)), _hidden,
                f.HiddenAdjoint, hp, Field(b.AStateOut, b, FieldC(l)), _hidden, grad);
            CopyOut(f.Layers[l].PreviousHiddenAdjoint, _layers[l].AdjointStride, Field(b.AStateIn, b, FieldH(l)), _hidden, rows);
            CopyOut(f.Layers[l].PreviousCAdjoint, hp, Field(b.AStateIn, b, FieldC(l)), _hidden, rows);
            if (l > 0)
            {
                float* ahl = Field(b.AStateOut, b, FieldH(l - 1));
                float* dx = f.Layers[l].InputAdjoint; int ld = _layers[l].AdjointStride;
                Rows<T>.Sum(dx, ld, ahl, _hidden, f.HiddenAdjoint, hp, rows, hp);
            }
        }
        if (_preWeight is not null)
        {
            float* dx = f.Layers[0].InputAdjoint; int ld = _layers[0].AdjointStride;
            Rows<T>.EluBackward(dx, ld, f.PreInput, f.PreOutput, hp, f.PreInputAdjoint, rows, hp);
            Gemm<T>.AccumulateXtY(f.FirstLayerInput, f.FirstLayerInputStride, rows, _inputs, f.PreInputAdjoint, hp, hp, grad + _gradPreWeight, hp);
            Gemm<T>.AccumulateColumns(f.PreInputAdjoint, hp, rows, hp, grad + _gradPreBias);
        }
        if (_spec.Input == RecurrentInput.Moments)
        {
            new Span<float>(Field(b.AStateIn, b, 0), rows).Clear();
            new Span<float>(Field(b.AStateIn, b, 1), rows).Clear();
        }
    }
}

internal static class RecurrentCells
{
    public static FusedCell Create(RecurrentSpec spec, SimdWidth width, int blockRows, CellLayout layout) => (layout, width) switch
    {
        (CellLayout.Lanes, SimdWidth.Avx512) => new RecurrentLanesCell<V512>(spec, blockRows),
        (CellLayout.Lanes, SimdWidth.Avx2) => new RecurrentLanesCell<V256>(spec, blockRows),
        (CellLayout.Lanes, _) => new RecurrentLanesCell<V1>(spec, blockRows),
        (_, SimdWidth.Avx512) => new RecurrentCell<V512>(spec, blockRows),
        (_, SimdWidth.Avx2) => new RecurrentCell<V256>(spec, blockRows),
        _ => new RecurrentCell<V1>(spec, blockRows),
    };
}
