using System.Runtime.CompilerServices;
using L2O.Learned;

namespace L2O.Engine;

/// <summary>
/// <see cref="L2O.Learned.RnnProp"/> and <see cref="L2O.Learned.DmOptimizer"/> on the engine with the
/// coordinates along the SIMD lanes: the same equations as <see cref="RecurrentCell{T}"/> (input features,
/// optional FC + ELU, a stack of LSTMs, a linear output), with every intermediate of a block stored
/// feature-major, <c>[feature][coordinate]</c>, so that H = 20 fills whole vectors of coordinates instead
/// of padding rows of 20 to 32 lanes, and each product broadcasts one weight over a vector of coordinates.
/// </summary>
/// <remarks>
/// <para>State layout (owned by this cell): feature k of field f of coordinate i lives at
/// <c>base + P·(offset_f + k) + i</c>, the fields in <see cref="RecurrentCell{T}"/>'s order (m, v for
/// RNNprop's moments, then h and c of each layer). A block reads whole-vector slices in place and copies
/// the last, partial block with zeros past its last coordinate.</para>
/// <para>The input features are computed per coordinate in scalar code, exactly as the rows cell does
/// (they need a logarithm or a square root per coordinate, two values each); the lanes past the last
/// coordinate get zeros, so nothing downstream sees 0/0 when ε = 0.</para>
/// <para>Meta-gradient packing: every weight in PyTorch's layout (out × in, row-major).</para>
/// </remarks>
internal sealed unsafe class RecurrentLanesCell<T> : FusedCell where T : unmanaged, ISimd<T>
{
    private readonly RecurrentSpec _spec;
    private readonly int _hidden, _inputs, _rowStride;
    private readonly int[] _widths;
    private readonly LaneMatrix? _preWeight;
    private readonly AlignedBuffer? _preBias;
    private readonly LaneMatrix[] _inputWeights, _hiddenWeights;
    private readonly AlignedBuffer[] _biases;
    private readonly LaneMatrix _outWeight;
    private readonly AlignedBuffer _outBias;
    // Offsets of each meta-parameter's gradient in the packed accumulator.
    private readonly int _gradPreWeight, _gradPreBias, _gradOutWeight, _gradOutBias, _gradFloats;
    private readonly int[] _gradInput, _gradHidden, _gradBias;

    public RecurrentLanesCell(RecurrentSpec spec, int blockRows) : base(T.Count, blockRows)
    {
        if (blockRows < 1) throw new ArgumentOutOfRangeException(nameof(blockRows), blockRows, "a block needs at least one coordinate");
        _spec = spec;
        _hidden = spec.Hidden;
        _inputs = spec.Inputs;
        _rowStride = Layout.Pad(blockRows, 16);
        int h = _hidden, cursor = 0;
        if (spec.PreLayer is not null)
        {
            _preWeight = new LaneMatrix(h, _inputs); _preBias = new AlignedBuffer(h);
            _gradPreWeight = cursor; cursor += h * _inputs; _gradPreBias = cursor; cursor += h;
        }
        int layers = spec.Layers;
        _inputWeights = new LaneMatrix[layers]; _hiddenWeights = new LaneMatrix[layers]; _biases = new AlignedBuffer[layers];
        _gradInput = new int[layers]; _gradHidden = new int[layers]; _gradBias = new int[layers];
        for (int l = 0; l < layers; l++)
        {
            int input = LayerInputs(l);
            _inputWeights[l] = new LaneMatrix(4 * h, input); _hiddenWeights[l] = new LaneMatrix(4 * h, h); _biases[l] = new AlignedBuffer(4 * h);
            _gradInput[l] = cursor; cursor += 4 * h * input;
            _gradHidden[l] = cursor; cursor += 4 * h * h;
            _gradBias[l] = cursor; cursor += 4 * h;
        }
        _outWeight = new LaneMatrix(1, h); _outBias = new AlignedBuffer(1);
        _gradOutWeight = cursor; cursor += h; _gradOutBias = cursor; cursor += 1;
        _gradFloats = cursor;
        _widths = spec.StateWidths();
    }

    private int LayerInputs(int l) => l > 0 || _spec.PreLayer is not null ? _hidden : _inputs;
    private int FieldH(int l) => _spec.FieldH(l);
    private int FieldC(int l) => _spec.FieldC(l);
    private string LayerName(int l) => _spec.NameOfLayer(l);

    public override int[] StateWidths => _widths;
    public override int GlobalsFloats => 2;
    public override int GradientFloats => _gradFloats;
    protected override void LayOut(ref Arena arena) => Take(ref arena);

    public override void Load(Func<string, float[]> read)
    {
        if (_preWeight is not null)
        {
            _preWeight.Read(read, MetaSchema.Weight(_spec.PreLayer!));
            _preBias!.Read(read, MetaSchema.Bias(_spec.PreLayer!), _hidden);
        }
        for (int l = 0; l < _spec.Layers; l++)
        {
            string name = LayerName(l);
            _inputWeights[l].Read(read, MetaSchema.InputWeight(name));
            _hiddenWeights[l].Read(read, MetaSchema.HiddenWeight(name));
            _biases[l].Read(read, MetaSchema.Bias(name), 4 * _hidden);
        }
        _outWeight.Read(read, MetaSchema.Weight(_spec.OutputLayer));
        _outBias.Read(read, MetaSchema.Bias(_spec.OutputLayer), 1);
    }

    public override void Unpack(ReadOnlySpan<double> g, Action<string, float[]> write)
    {
        int h = _hidden;
        if (_preWeight is not null)
        {
            write(MetaSchema.Weight(_spec.PreLayer!), Floats(g, _gradPreWeight, h * _inputs));
            write(MetaSchema.Bias(_spec.PreLayer!), Floats(g, _gradPreBias, h));
        }
        for (int l = 0; l < _spec.Layers; l++)
        {
            string name = LayerName(l);
            write(MetaSchema.InputWeight(name), Floats(g, _gradInput[l], 4 * h * LayerInputs(l)));
            write(MetaSchema.HiddenWeight(name), Floats(g, _gradHidden[l], 4 * h * h));
            write(MetaSchema.Bias(name), Floats(g, _gradBias[l], 4 * h));
        }
        write(MetaSchema.Weight(_spec.OutputLayer), Floats(g, _gradOutWeight, h));
        write(MetaSchema.Bias(_spec.OutputLayer), Floats(g, _gradOutBias, 1));
    }

    public override void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals) => _spec.Globals(t, globals);

    /// <summary>One LSTM layer's scratch, feature-major with rows of <see cref="_rowStride"/> floats.</summary>
    private struct LayerBufs
    {
        public float* Gates, Acts, TanhC, H, C, GateLogitsAdjoint, PreviousHiddenAdjoint, PreviousCAdjoint, InputAdjoint;
    }

    /// <summary>
    /// One block's scratch: the LSTM's input features (from the gradient and, for RNNprop, the moments); the new moments
    /// m and v that go to the output state; the preprocessing's input and ELU output; the output before the step
    /// function; the hidden state's adjoint passed down the layers; each layer's LSTM buffers. Each *Adjoint buffer holds
    /// its namesake's adjoint.
    /// </summary>
    private struct Bufs
    {
        public float* Features, NewMomentum, NewSecondMoment, PreInput, PreOutput, Output, Update, UpdateAdjoint, HiddenAdjoint, PreInputAdjoint, StateCopy, AdjointCopy;
        public LayerBufs[] Layers;
    }

    private Bufs Take(float* scratch)
    {
        var a = new Arena(scratch);
        return Take(ref a);
    }

    private Bufs Take(ref Arena a)
    {
        long r = _rowStride;
        int h = _hidden, fields = _widths.Sum();
        var b = new Bufs
        {
            Features = a.Take(_inputs * r), NewMomentum = a.Take(r), NewSecondMoment = a.Take(r),
            PreInput = a.Take(h * r), PreOutput = a.Take(h * r),
            Output = a.Take(r), Update = a.Take(r), UpdateAdjoint = a.Take(r),
            HiddenAdjoint = a.Take(h * r), PreInputAdjoint = a.Take(h * r),
            StateCopy = a.Take(fields * r), AdjointCopy = a.Take(fields * r),
            Layers = new LayerBufs[_spec.Layers],
        };
        for (int l = 0; l < _spec.Layers; l++)
            b.Layers[l] = new LayerBufs
            {
                Gates = a.Take(4 * h * r), Acts = a.Take(4 * h * r), TanhC = a.Take(h * r), H = a.Take(h * r), C = a.Take(h * r),
                GateLogitsAdjoint = a.Take(4 * h * r), PreviousHiddenAdjoint = a.Take(h * r), PreviousCAdjoint = a.Take(h * r), InputAdjoint = a.Take(LayerInputs(l) * r),
            };
        return b;
    }

    /// <summary>Feature row 0 of field <paramref name="field"/> at the block's first coordinate (rows P apart).</summary>
    private float* FeatureRows(float* state, in Block b, int field) => state + b.P * FieldOffset(field) + b.Start;

    /// <summary>
    /// The block's slice of a state-shaped vector, field by field: in place (row stride P) when the block is
    /// whole vectors, else copied with zeros past the last coordinate (row stride <see cref="_rowStride"/>).
    /// </summary>
    private float* View(float* state, in Block b, float* copy, int n, out long stride)
    {
        if (b.Rows == n) { stride = b.P; return state + b.Start; }
        stride = _rowStride;
        for (int field = 0; field < _widths.Length; field++)
            Lanes<T>.CopyIn(FeatureRows(state, b, field), b.P, _widths[field], b.Rows, n, copy + (long)FieldOffset(field) * _rowStride, _rowStride);
        return copy;
    }

    /// <summary>The forward of one block into scratch (shared by the step and the backward's recomputation).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ForwardCore(in Block b, ref Bufs f, float* s, long lds, int n)
    {
        int rows = b.Rows, h = _hidden;
        long ld = _rowStride;
        float* g = b.G;
        if (_spec.Input == RecurrentInput.Raw) new ReadOnlySpan<float>(g, rows).CopyTo(new Span<float>(f.Features, rows));
        else
        {
            bool moments = _spec.Input == RecurrentInput.Moments;
            _spec.Features(g, moments ? s + lds * FieldOffset(0) : null, moments ? s + lds * FieldOffset(1) : null, b.Globals, f.NewMomentum, f.NewSecondMoment, f.Features, f.Features + ld, 1, rows);
        }
        Lanes<T>.ZeroTail(f.Features, ld, _inputs, rows, n);

        float* x = f.Features;
        if (_preWeight is not null)
        {
            Lanes<T>.Product(_preWeight.W, _inputs, h, _inputs, f.Features, ld, f.PreInput, ld, n, _preBias!.Pointer, false);
            Lanes<T>.Elu(f.PreInput, ld, f.PreOutput, ld, h, n);
            x = f.PreOutput;
        }
        for (int l = 0; l < _spec.Layers; l++)
        {
            ref var L = ref f.Layers[l];
            float* h0 = s + lds * FieldOffset(FieldH(l)), c0 = s + lds * FieldOffset(FieldC(l));
            LaneLstm<T>.Gates(_inputWeights[l], _hiddenWeights[l], _biases[l].Pointer, x, ld, h0, lds, L.Gates, L.Acts, ld, h, n);
            LaneLstm<T>.Cell(L.Acts, c0, lds, L.TanhC, L.C, L.H, ld, h, n);
            x = L.H;
        }
        Lanes<T>.Product(_outWeight.W, h, 1, h, x, ld, f.Output, ld, n, _outBias.Pointer, false);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Forward(in Block b)
    {
        var f = Take(b.Scratch);
        int rows = b.Rows, n = Layout.Pad(rows, T.Count);
        long ld = _rowStride;
        float* s = View(b.StateIn, b, f.StateCopy, n, out long lds);
        ForwardCore(b, ref f, s, lds, n);
        for (int r = 0; r < rows; r++) b.Update[r] = _spec.Step(f.Output[r]);
        if (_spec.Input == RecurrentInput.Moments)
        {
            Lanes<T>.CopyOut(f.NewMomentum, ld, 1, rows, FeatureRows(b.StateOut, b, 0), b.P);
            Lanes<T>.CopyOut(f.NewSecondMoment, ld, 1, rows, FeatureRows(b.StateOut, b, 1), b.P);
        }
        for (int l = 0; l < _spec.Layers; l++)
        {
            Lanes<T>.CopyOut(f.Layers[l].H, ld, _hidden, rows, FeatureRows(b.StateOut, b, FieldH(l)), b.P);
            Lanes<T>.CopyOut(f.Layers[l].C, ld, _hidden, rows, FeatureRows(b.StateOut, b, FieldC(l)), b.P);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Backward(in Block b)
    {
        var f = Take(b.Scratch);
        int rows = b.Rows, n = Layout.Pad(rows, T.Count), h = _hidden, top = _spec.Layers - 1;
        long ld = _rowStride;
        float* s = View(b.StateIn, b, f.StateCopy, n, out long lds);
        ForwardCore(b, ref f, s, lds, n);
        float* a = View(b.AStateOut, b, f.AdjointCopy, n, out long lda);

        // ā(out) from ā(update): Δ = −scale·tanh(out) (RNNprop eq. 7) or scale·out; zero past the last coordinate.
        for (int r = 0; r < rows; r++) f.UpdateAdjoint[r] = _spec.StepAdjoint(f.Output[r], b.AUpdate[r]);
        Lanes<T>.ZeroTail(f.UpdateAdjoint, ld, 1, rows, n);
        float* grad = b.Grad;
        Lanes<T>.AccumulateOuter(f.UpdateAdjoint, ld, 1, f.Layers[top].H, ld, h, n, grad + _gradOutWeight, h);
        Lanes<T>.AccumulateRowSums(f.UpdateAdjoint, ld, 1, n, grad + _gradOutBias);

        // ā(h′) of the top layer: through the output, and from step s+1.
        Lanes<T>.Product(_outWeight.Transposed, 1, h, 1, f.UpdateAdjoint, ld, f.HiddenAdjoint, ld, n, null, false);
        Lanes<T>.Add(f.HiddenAdjoint, ld, a + lda * FieldOffset(FieldH(top)), lda, h, n);
        for (int l = top; l >= 0; l--)
        {
            ref var L = ref f.Layers[l];
            float* x = l > 0 ? f.Layers[l - 1].H : _preWeight is not null ? f.PreOutput : f.Features;
            float* h0 = s + lds * FieldOffset(FieldH(l)), c0 = s + lds * FieldOffset(FieldC(l));
            LaneLstm<T>.CellBackward(L.Acts, L.TanhC, c0, lds, f.HiddenAdjoint, a + lda * FieldOffset(FieldC(l)), lda, L.GateLogitsAdjoint, L.PreviousCAdjoint, ld, h, n);
            Lanes<T>.ZeroTail(L.GateLogitsAdjoint, ld, 4 * h, rows, n);
            Lanes<T>.AccumulateOuter(L.GateLogitsAdjoint, ld, 4 * h, x, ld, LayerInputs(l), n, grad + _gradInput[l], LayerInputs(l));
            Lanes<T>.AccumulateOuter(L.GateLogitsAdjoint, ld, 4 * h, h0, lds, h, n, grad + _gradHidden[l], h);
            Lanes<T>.AccumulateRowSums(L.GateLogitsAdjoint, ld, 4 * h, n, grad + _gradBias[l]);
            Lanes<T>.Product(_hiddenWeights[l].Transposed, 4 * h, h, 4 * h, L.GateLogitsAdjoint, ld, L.PreviousHiddenAdjoint, ld, n, null, false);
            Lanes<T>.CopyOut(L.PreviousHiddenAdjoint, ld, h, rows, FeatureRows(b.AStateIn, b, FieldH(l)), b.P);
            Lanes<T>.CopyOut(L.PreviousCAdjoint, ld, h, rows, FeatureRows(b.AStateIn, b, FieldC(l)), b.P);
            if (l > 0 || _preWeight is not null)
                Lanes<T>.Product(_inputWeights[l].Transposed, 4 * h, LayerInputs(l), 4 * h, L.GateLogitsAdjoint, ld, L.InputAdjoint, ld, n, null, false);
            if (l > 0)
            {
                // ā(h′) of the layer below: through this layer's input, and from step s+1.
                new ReadOnlySpan<float>(L.InputAdjoint, (int)(h * ld)).CopyTo(new Span<float>(f.HiddenAdjoint, (int)(h * ld)));
                Lanes<T>.Add(f.HiddenAdjoint, ld, a + lda * FieldOffset(FieldH(l - 1)), lda, h, n);
            }
        }
        if (_preWeight is not null)
        {
            Lanes<T>.EluBackward(f.Layers[0].InputAdjoint, ld, f.PreInput, f.PreOutput, ld, f.PreInputAdjoint, h, n);
            Lanes<T>.AccumulateOuter(f.PreInputAdjoint, ld, h, f.Features, ld, _inputs, n, grad + _gradPreWeight, _inputs);
            Lanes<T>.AccumulateRowSums(f.PreInputAdjoint, ld, h, n, grad + _gradPreBias);
        }
        // The input features depend on gradients only: constants of the first-order meta-gradient.
        if (_spec.Input == RecurrentInput.Moments)
        {
            new Span<float>(FeatureRows(b.AStateIn, b, 0), rows).Clear();
            new Span<float>(FeatureRows(b.AStateIn, b, 1), rows).Clear();
        }
    }
}
