using System.Runtime.CompilerServices;
using L2O.Learned;
using L2O.Optimizers;

namespace L2O.Engine;

/// <summary>
/// The thesis's normalised-history rules (<see cref="NormalizedHistoryOptimizer"/>: k-Timesteps, k-Momentums; Shahid 2017,
/// §3.3–3.5) on the engine, coordinates along the vector lanes. Per coordinate, with w the parameter and g the gradient:
/// <code>
/// hx = push(hx, w), hg = push(hg, g)          (k copies of the first value at t = 1)
/// n  = hg / max(‖hg‖_∞, 1e-30)
/// δ  = E[magnitude]·E[sign] from MLP(n): k → H ReLU → 12 (10 magnitude logits over linspace(0, 1, 10), 2 sign logits)
/// u  = x_ref − δ (x_max − x_min + η_min) − w   (x_ref the history's midpoint, or w)
/// </code>
/// The update reads w (<see cref="FusedCell.ReadsParameters"/>), so the backward also returns w's adjoint: through
/// x_ref, through x_max and x_min (shared evenly between tied entries, as torch's amax and amin do) and through the
/// history that w entered. The gradient history carries no adjoint (gradients are inputs in first-order meta-training).
/// </summary>
/// <remarks>
/// <para>State layout (owned by this cell): entry j of the parameter history of coordinate i lives at <c>base + P·j + i</c>,
/// entry j of the gradient history at <c>base + P·(k + j) + i</c>. Elementwise work runs per group of <c>T.Count</c>
/// coordinates, reading and writing these slices in place; a group cut short by the end of a block is copied through the
/// scratch with zeros past its last coordinate, so no write leaves the block. The two products run over the whole block,
/// feature-major (<c>[feature][coordinate]</c>, <see cref="Lanes{T}"/>), and so do the weight gradients (dot products
/// along the coordinates).</para>
/// <para>With the reference point at w the update is computed as −δ·range rather than (w − δ·range) − w, and with the
/// midpoint as ((x_max − w) + (x_min − w))/2 − δ·range, so that in float32 a small step is not lost to the rounding of w.</para>
/// <para>Meta-gradient packing: mlp.hidden.weight (H × k), mlp.hidden.bias, mlp.out.weight (12 × H), mlp.out.bias, PyTorch layouts.</para>
/// </remarks>
internal sealed unsafe class HistoryCell<T> : FusedCell where T : unmanaged, ISimd<T>
{
    private const int Magnitudes = 10, Outputs = 12;
    private readonly int _k, _hidden, _rowStride;
    private readonly bool _momentums, _midpoint;
    private readonly float _etaMin;
    private readonly float[] _timescales;
    private readonly LaneMatrix _hiddenWeight, _outWeight;
    private readonly AlignedBuffer _hiddenBias, _outBias;
    private readonly int _gradHiddenWeight, _gradHiddenBias, _gradOutWeight, _gradOutBias, _gradFloats;

    public HistoryCell(NormalizedHistoryOptions o, int blockRows) : base(T.Count, blockRows)
    {
        if (blockRows < 1) throw new ArgumentOutOfRangeException(nameof(blockRows), blockRows, "a block needs at least one coordinate");
        _k = o.K;
        _hidden = o.Hidden;
        _rowStride = Layout.Pad(blockRows, 16);
        _momentums = o.History == HistoryKind.Momentums;
        _midpoint = o.Reference == ReferencePoint.Midpoint;
        _etaMin = (float)o.EtaMin;
        _timescales = ThesisHistory.LinearTimescales(o.K, o.MinTimescale, o.MaxTimescale).Select(m => (float)m).ToArray();
        _hiddenWeight = new LaneMatrix(_hidden, _k);
        _outWeight = new LaneMatrix(Outputs, _hidden);
        _hiddenBias = new AlignedBuffer(_hidden);
        _outBias = new AlignedBuffer(Outputs);
        int cursor = 0;
        _gradHiddenWeight = cursor; cursor += _hidden * _k;
        _gradHiddenBias = cursor; cursor += _hidden;
        _gradOutWeight = cursor; cursor += Outputs * _hidden;
        _gradOutBias = cursor; cursor += Outputs;
        _gradFloats = cursor;
    }

    public override int[] StateWidths => [_k, _k];
    public override bool ReadsParameters => true;
    /// <summary>One flag: 1 at the first step (the histories are filled with the first value), else 0.</summary>
    public override int GlobalsFloats => 1;
    public override int GradientFloats => _gradFloats;

    public override void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals) =>
        globals[0] = t == 1 ? 1 : 0;

    public override void Load(Func<string, float[]> read)
    {
        _hiddenWeight.Read(read, MetaSchema.Weight(NormalizedHistoryOptimizer.Layers.Hidden));
        _hiddenBias.Read(read, MetaSchema.Bias(NormalizedHistoryOptimizer.Layers.Hidden), _hidden);
        _outWeight.Read(read, MetaSchema.Weight(NormalizedHistoryOptimizer.Layers.Output));
        _outBias.Read(read, MetaSchema.Bias(NormalizedHistoryOptimizer.Layers.Output), Outputs);
    }

    public override void Unpack(ReadOnlySpan<double> g, Action<string, float[]> write)
    {
        write(MetaSchema.Weight(NormalizedHistoryOptimizer.Layers.Hidden), Floats(g, _gradHiddenWeight, _hidden * _k));
        write(MetaSchema.Bias(NormalizedHistoryOptimizer.Layers.Hidden), Floats(g, _gradHiddenBias, _hidden));
        write(MetaSchema.Weight(NormalizedHistoryOptimizer.Layers.Output), Floats(g, _gradOutWeight, Outputs * _hidden));
        write(MetaSchema.Bias(NormalizedHistoryOptimizer.Layers.Output), Floats(g, _gradOutBias, Outputs));
    }

    /// <summary>
    /// A worker's scratch for one block, feature-major with rows of <see cref="_rowStride"/> floats: the two new histories,
    /// the normalised inputs, the hidden activations ReLU(z), the logits, the logits' adjoint and the hidden adjoint; and
    /// one group's worth (<c>T.Count</c> floats per entry) for a group cut short and for the history's adjoint.
    /// </summary>
    private struct Bufs
    {
        public float* History, GradHistory, Inputs, Hidden, Logits, LogitsAdjoint, HiddenAdjoint;
        public float* HistoryAdjoint, ShortIn, ShortOut, ShortW, ShortG, ShortU;
    }

    private Bufs Take(ref Arena arena)
    {
        int v = T.Count, k = _k;
        long ld = _rowStride;
        return new Bufs
        {
            History = arena.Take(k * ld), GradHistory = arena.Take(k * ld), Inputs = arena.Take(k * ld),
            Hidden = arena.Take(_hidden * ld), Logits = arena.Take(Outputs * ld), LogitsAdjoint = arena.Take(Outputs * ld),
            HiddenAdjoint = arena.Take(_hidden * ld),
            HistoryAdjoint = arena.Take(k * v), ShortIn = arena.Take(3 * k * v), ShortOut = arena.Take(2 * k * v),
            ShortW = arena.Take(v), ShortG = arena.Take(v), ShortU = arena.Take(v),
        };
    }

    protected override void LayOut(ref Arena arena) => Take(ref arena);

    /// <summary>
    /// Where one group's values live: its state and adjoint slices <c>Stride</c> floats apart (P in place, T.Count when copied),
    /// and its column <c>Column</c> of the block scratch.
    /// </summary>
    private struct Group
    {
        /// <summary>U is the update u in the forward and its adjoint a_u (in, then a_u + a_w out) in the backward.</summary>
        public float* StateIn, StateOut, W, G, U;
        public long Stride;
        public int Column;
        // Backward: the adjoints of the output state (read) and of the input state (written), same stride.
        public float* AStateOut, AStateIn;
    }

    /// <summary>The group at column i of the block: in place when whole, else copied into the scratch (zeros past the last coordinate).</summary>
    private Group GroupAt(in Block b, in Bufs f, int i, bool backward)
    {
        int v = T.Count, n = Math.Min(v, b.Rows - i);
        long at = b.Start + i;
        if (n == v)
            return backward
                ? new Group { StateIn = b.StateIn + at, W = b.W + i, G = b.G + i, U = b.AUpdate + i, Stride = b.P, Column = i, AStateOut = b.AStateOut + at, AStateIn = b.AStateIn + at }
                : new Group { StateIn = b.StateIn + at, StateOut = b.StateOut + at, W = b.W + i, G = b.G + i, U = b.Update + i, Stride = b.P, Column = i };
        Lanes<T>.CopyIn(b.StateIn + at, b.P, 2 * _k, n, v, f.ShortIn, v);
        Lanes<T>.CopyIn(b.W + i, 0, 1, n, v, f.ShortW, v);
        Lanes<T>.CopyIn(b.G + i, 0, 1, n, v, f.ShortG, v);
        var group = new Group { StateIn = f.ShortIn, StateOut = f.ShortOut, W = f.ShortW, G = f.ShortG, U = f.ShortU, Stride = v, Column = i };
        if (!backward) return group;
        Lanes<T>.CopyIn(b.AUpdate + i, 0, 1, n, v, f.ShortU, v);
        // The output state's adjoint (only the parameter history's is read) after the input state in the copy.
        Lanes<T>.CopyIn(b.AStateOut + at, b.P, _k, n, v, f.ShortIn + 2 * _k * v, v);
        return group with { AStateOut = f.ShortIn + 2 * _k * v, AStateIn = f.ShortOut };
    }

    /// <summary>Copies a short group's outputs back: the output state (forward) or the input state's adjoint (backward), and u or a_u.</summary>
    private void CopyBack(in Block b, in Bufs f, int i, float* state, float* update)
    {
        int n = Math.Min(T.Count, b.Rows - i);
        if (n == T.Count) return;
        Lanes<T>.CopyOut(f.ShortOut, T.Count, 2 * _k, n, state + b.Start + i, b.P);
        Lanes<T>.CopyOut(f.ShortU, 0, 1, n, update + i, 0);
    }

    /// <summary>Columns the block's products run over: its rows rounded up to whole vectors.</summary>
    private static int Columns(in Block b) => Layout.Pad(b.Rows, T.Count);

    /// <summary>The new histories, the normalised inputs, then both products for the whole block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Inputs(in Block b, in Bufs f, bool backward)
    {
        bool first = b.Globals[0] != 0;
        // A short group is copied in here and again by the caller's second pass: one group per block, not worth keeping.
        for (int i = 0; i < b.Rows; i += T.Count)
        {
            var group = GroupAt(b, f, i, backward);
            Push(group, f, first);
            Normalise(f, i);
        }
        long ld = _rowStride;
        int columns = Columns(b);
        Lanes<T>.Product(_hiddenWeight.W, _k, _hidden, _k, f.Inputs, ld, f.Hidden, ld, columns, _hiddenBias.Pointer, add: false);
        Lanes<T>.Relu(f.Hidden, ld, _hidden, columns);
        Lanes<T>.Product(_outWeight.W, _hidden, Outputs, _hidden, f.Hidden, ld, f.Logits, ld, columns, _outBias.Pointer, add: false);
    }

    public override void Forward(in Block b)
    {
        var arena = new Arena(b.Scratch);
        var f = Take(ref arena);
        Inputs(b, f, backward: false);
        for (int i = 0; i < b.Rows; i += T.Count)
        {
            var group = GroupAt(b, f, i, backward: false);
            ForwardGroup(group, f);
            CopyBack(b, f, i, b.StateOut, b.Update);
        }
    }

    public override void Backward(in Block b)
    {
        var arena = new Arena(b.Scratch);
        var f = Take(ref arena);
        bool first = b.Globals[0] != 0;
        Inputs(b, f, backward: true);
        for (int i = 0; i < b.Rows; i += T.Count)
        {
            var group = GroupAt(b, f, i, backward: true);
            BackwardGroup(group, f, first);
            CopyBack(b, f, i, b.AStateIn, b.AUpdate);
        }
        // Lanes past the last coordinate hold a zero logits' adjoint, so they add nothing below.
        long ld = _rowStride;
        int columns = Columns(b);
        float* grad = b.Grad;
        Lanes<T>.AccumulateOuter(f.LogitsAdjoint, ld, Outputs, f.Hidden, ld, _hidden, columns, grad + _gradOutWeight, _hidden);
        Lanes<T>.AccumulateRowSums(f.LogitsAdjoint, ld, Outputs, columns, grad + _gradOutBias);
        Lanes<T>.Product(_outWeight.Transposed, Outputs, _hidden, Outputs, f.LogitsAdjoint, ld, f.HiddenAdjoint, ld, columns, null, add: false);
        Lanes<T>.ReluBackward(f.HiddenAdjoint, f.Hidden, ld, _hidden, columns);
        Lanes<T>.AccumulateOuter(f.HiddenAdjoint, ld, _hidden, f.Inputs, ld, _k, columns, grad + _gradHiddenWeight, _k);
        Lanes<T>.AccumulateRowSums(f.HiddenAdjoint, ld, _hidden, columns, grad + _gradHiddenBias);
    }

    /// <summary>The group's new histories into the block scratch (Alg. 2's push, or the momentum average of §3.5).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Push(in Group gr, in Bufs f, bool first)
    {
        int k = _k;
        long ld = _rowStride;
        T w = T.Load(gr.W), g = T.Load(gr.G);
        float* xIn = gr.StateIn, gIn = gr.StateIn + gr.Stride * k;
        for (int j = 0; j < k; j++)
        {
            T x, y;
            if (first) { x = w; y = g; }
            else if (!_momentums)
            {
                x = j < k - 1 ? T.Load(xIn + gr.Stride * (j + 1)) : w;
                y = j < k - 1 ? T.Load(gIn + gr.Stride * (j + 1)) : g;
            }
            else
            {
                T m = T.Splat(_timescales[j]), rest = T.Splat(1 - _timescales[j]);
                x = T.Fma(T.Load(xIn + gr.Stride * j), m, T.Mul(w, rest));
                y = T.Fma(T.Load(gIn + gr.Stride * j), m, T.Mul(g, rest));
            }
            T.Store(f.History + j * ld + gr.Column, x);
            T.Store(f.GradHistory + j * ld + gr.Column, y);
        }
    }

    /// <summary>n = hg / max(‖hg‖_∞, 1e-30) for the group at <paramref name="column"/> (Alg. 2 lines 15–16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Normalise(in Bufs f, int column)
    {
        long ld = _rowStride;
        float* hg = f.GradHistory + column;
        T largest = T.Splat((float)ThesisHistory.RowFloor);
        for (int j = 0; j < _k; j++) largest = T.Max(largest, Act<T>.Abs(T.Load(hg + j * ld)));
        for (int j = 0; j < _k; j++) T.Store(f.Inputs + j * ld + column, T.Div(T.Load(hg + j * ld), largest));
    }

    /// <summary>Forward values of one group that the backward reuses.</summary>
    private struct Step
    {
        public T Magnitude, Sign, Delta, Range, Max, Min, ExpSum;
    }

    /// <summary>δ from the group's logits, and the history's extremes and range.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Step Compute(in Group gr, in Bufs f)
    {
        long ld = _rowStride;
        float* logits = f.Logits + gr.Column;
        T top = T.Load(logits);
        for (int i = 1; i < Magnitudes; i++) top = T.Max(top, T.Load(logits + i * ld));
        T sum = T.Splat(0f), weighted = T.Splat(0f);
        for (int i = 0; i < Magnitudes; i++)
        {
            T e = Act<T>.Exp(T.Sub(T.Load(logits + i * ld), top));
            sum = T.Add(sum, e);
            weighted = T.Fma(e, T.Splat(i / (float)(Magnitudes - 1)), weighted);
        }
        var s = new Step { ExpSum = sum, Magnitude = T.Div(weighted, sum) };
        // softmax(l₁₀, l₁₁)₁ − softmax(l₁₀, l₁₁)₀ = tanh((l₁₁ − l₁₀)/2).
        s.Sign = Act<T>.Tanh(T.Mul(T.Splat(0.5f), T.Sub(T.Load(logits + 11 * ld), T.Load(logits + 10 * ld))));
        s.Delta = T.Mul(s.Magnitude, s.Sign);
        float* history = f.History + gr.Column;
        T hi = T.Load(history), lo = hi;
        for (int j = 1; j < _k; j++)
        {
            T x = T.Load(history + j * ld);
            hi = T.Max(hi, x);
            lo = T.Min(lo, x);
        }
        s.Max = hi;
        s.Min = lo;
        s.Range = T.Add(T.Sub(hi, lo), T.Splat(_etaMin));
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ForwardGroup(in Group gr, in Bufs f)
    {
        long ld = _rowStride;
        var s = Compute(gr, f);
        T step = T.Mul(s.Delta, s.Range);
        T w = T.Load(gr.W);
        T u = _midpoint
            ? T.Sub(T.Mul(T.Splat(0.5f), T.Add(T.Sub(s.Max, w), T.Sub(s.Min, w))), step)
            : T.Sub(T.Splat(0f), step);
        T.Store(gr.U, u);
        for (int j = 0; j < _k; j++)
        {
            T.Store(gr.StateOut + gr.Stride * j, T.Load(f.History + j * ld + gr.Column));
            T.Store(gr.StateOut + gr.Stride * (_k + j), T.Load(f.GradHistory + j * ld + gr.Column));
        }
    }

    /// <summary>
    /// The group's adjoints from a_u = ā(u), with r = x_max − x_min + η_min: ā(δ) = −a_u r, ā(r) = −a_u δ;
    /// ā(x_max) = ā(r) + ½a_u and ā(x_min) = −ā(r) + ½a_u with the midpoint (without the ½a_u at x_ref = w); w's direct
    /// share −a_u with the midpoint (at x_ref = w, u = w − δr − w has none), plus what reaches it through the history.
    /// Writes a_u + ā(w) over a_u, the input state's adjoint, and the logits' adjoint.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void BackwardGroup(in Group gr, in Bufs f, bool first)
    {
        var s = Compute(gr, f);
        T aU = T.Load(gr.U);
        T aDelta = T.Mul(T.Sub(T.Splat(0f), aU), s.Range);
        T aRange = T.Mul(T.Sub(T.Splat(0f), aU), s.Delta);
        // With x_ref = w the two w terms of u = x_ref − δ·r − w cancel: no direct share.
        T aMax = aRange, aMin = T.Sub(T.Splat(0f), aRange), aW = T.Splat(0f);
        if (_midpoint)
        {
            T half = T.Mul(T.Splat(0.5f), aU);
            aMax = T.Add(aMax, half);
            aMin = T.Add(aMin, half);
            aW = T.Sub(aW, aU);
        }
        aW = T.Add(aW, HistoryBackward(gr, f, first, s, aMax, aMin));
        T.Store(gr.U, T.Add(aU, aW));
        LogitsBackward(gr, f, s, aDelta);
    }

    /// <summary>
    /// The parameter history's adjoint (from x_max, x_min and the next step) back through the push: writes the input
    /// state's adjoint (zero for the gradient history) and returns w's share.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private T HistoryBackward(in Group gr, in Bufs f, bool first, in Step s, T aMax, T aMin)
    {
        int v = T.Count, k = _k;
        long ld = _rowStride;
        float* history = f.History + gr.Column;
        T one = T.Splat(1f), zero = T.Splat(0f), countMax = zero, countMin = zero;
        for (int j = 0; j < k; j++)
        {
            T x = T.Load(history + j * ld);
            countMax = T.Add(countMax, T.SelectGreater(s.Max, x, zero, one));
            countMin = T.Add(countMin, T.SelectGreater(x, s.Min, zero, one));
        }
        // torch's amax / amin share the gradient evenly between tied entries.
        T shareMax = T.Div(aMax, countMax), shareMin = T.Div(aMin, countMin);
        for (int j = 0; j < k; j++)
        {
            T x = T.Load(history + j * ld);
            T a = T.Load(gr.AStateOut + gr.Stride * j);
            a = T.Add(a, T.SelectGreater(s.Max, x, zero, shareMax));
            a = T.Add(a, T.SelectGreater(x, s.Min, zero, shareMin));
            T.Store(f.HistoryAdjoint + j * v, a);
        }
        T aW = zero;
        for (int j = 0; j < k; j++)
        {
            T a = T.Load(f.HistoryAdjoint + j * v);
            T into;   // this entry's adjoint for entry j of the input history
            if (first) { aW = T.Add(aW, a); into = zero; }
            else if (!_momentums)
            {
                if (j == k - 1) aW = T.Add(aW, a);
                into = j > 0 ? T.Load(f.HistoryAdjoint + (j - 1) * v) : zero;
            }
            else
            {
                aW = T.Fma(a, T.Splat(1 - _timescales[j]), aW);
                into = T.Mul(a, T.Splat(_timescales[j]));
            }
            T.Store(gr.AStateIn + gr.Stride * j, into);
            T.Store(gr.AStateIn + gr.Stride * (k + j), zero);
        }
        return aW;
    }

    /// <summary>δ's adjoint back through E[sign] and E[magnitude] to the group's column of the logits' adjoint.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void LogitsBackward(in Group gr, in Bufs f, in Step s, T aDelta)
    {
        long ld = _rowStride;
        float* logits = f.Logits + gr.Column, adjoint = f.LogitsAdjoint + gr.Column;
        T aMagnitude = T.Mul(aDelta, s.Sign), aSign = T.Mul(aDelta, s.Magnitude);
        T inverseSum = T.Div(T.Splat(1f), s.ExpSum);
        T top = T.Load(logits);
        for (int i = 1; i < Magnitudes; i++) top = T.Max(top, T.Load(logits + i * ld));
        for (int i = 0; i < Magnitudes; i++)
        {
            // ∂E[m]/∂l_i = p_i (m_i − E[m])
            T p = T.Mul(Act<T>.Exp(T.Sub(T.Load(logits + i * ld), top)), inverseSum);
            T.Store(adjoint + i * ld, T.Mul(T.Mul(aMagnitude, p), T.Sub(T.Splat(i / (float)(Magnitudes - 1)), s.Magnitude)));
        }
        // ∂tanh((l₁₁ − l₁₀)/2)/∂l₁₁ = (1 − sign²)/2
        T aSignLogit = T.Mul(T.Mul(aSign, T.Splat(0.5f)), T.Sub(T.Splat(1f), T.Mul(s.Sign, s.Sign)));
        T.Store(adjoint + 10 * ld, T.Sub(T.Splat(0f), aSignLogit));
        T.Store(adjoint + 11 * ld, aSignLogit);
    }
}
