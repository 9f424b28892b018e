using System.Runtime.CompilerServices;
using L2O.Learned;
using L2O.Optimizers;

namespace L2O.Engine;

/// <summary>
/// Multiscale Adam (<see cref="MultiscaleAdam"/>; Shahid 2017, ch. 4, Alg. 4 and 5) on the engine, coordinates along the
/// vector lanes. Per coordinate, for the k timescales (β1_j, β2_j) of Table 4.1:
/// <code>
/// m_j ← β1_j m_j + (1 − β1_j) g,   v_j ← β2_j v_j + (1 − β2_j) g²
/// s_j = (m_j / c1_j) / (√(v_j / c2_j) + ε),   c1_j = 1 − β1_j^t, c2_j = 1 − β2_j^t   (step constants)
/// δ = Σ_j w̄_j s_j,   u = −η δ
/// </code>
/// with w̄ the linear combiner's normalised weights (the same for every coordinate) or the mlp combiner's
/// softmax(MLP(s)) (per coordinate: ReLU hidden layers, then k logits).
/// </summary>
/// <remarks>
/// <para>The moments read only gradients, which first-order meta-training treats as inputs, so no adjoint reaches the
/// state: the backward writes zeros for the input state's adjoint, and the meta-gradient comes from a_u alone,
/// ā(δ) = −η a_u. Linear combiners: the cell accumulates ā(w̄_j) = Σ_coords ā(δ) s_j and <see cref="Unpack"/> carries it
/// through w̄(w) with the weights of the last <see cref="Load"/>. Mlp: ā(z_j) = p_j (ā(δ) s_j − Σ_i p_i ā(δ) s_i), p the
/// softmax, then back through the layers (torch's relu backward passes nothing at 0).</para>
/// <para>State layout (owned by this cell): m_j of coordinate i at <c>base + P·j + i</c>, v_j at <c>base + P·(k + j) + i</c>.
/// A group of <c>T.Count</c> coordinates cut short by the end of a block is copied through the scratch with zeros past
/// its last coordinate; the steps of those lanes are zeroed after the moments (with ε = 0 they would be 0/0), so the
/// weight gradients, sums over whole vectors, see nothing from them.</para>
/// <para>Meta-gradient packing: la.weight's k values (as ā(w̄), until <see cref="Unpack"/>), or per mlp layer its weight
/// (out × in) then its bias, hidden layers first, PyTorch layouts.</para>
/// </remarks>
internal sealed unsafe class MultiscaleAdamCell<T> : FusedCell where T : unmanaged, ISimd<T>
{
    private readonly int _k, _hidden, _rowStride;
    private readonly Combiner _combiner;
    private readonly float _stepSize, _epsilon;
    private readonly float[] _beta1f, _beta2f;
    /// <summary>Mlp: the hidden layers, then the output layer (k logits).</summary>
    private readonly LaneMatrix[] _layers = [];
    private readonly AlignedBuffer[] _biases = [];
    private readonly int[] _gradWeight = [], _gradBias = [];
    private readonly int _gradFloats;
    /// <summary>Linear combiners: w as loaded (double, for <see cref="Unpack"/>) and w̄ (float, for the step).</summary>
    private readonly double[] _linear = [];
    private readonly float[] _average = [];

    public MultiscaleAdamCell(MultiscaleAdamOptions o, int blockRows) : base(T.Count, blockRows)
    {
        if (blockRows < 1) throw new ArgumentOutOfRangeException(nameof(blockRows), blockRows, "a block needs at least one coordinate");
        _k = o.K;
        _hidden = o.Hidden;
        _combiner = o.Combiner;
        _stepSize = (float)o.StepSize;
        _epsilon = (float)o.Epsilon;
        _rowStride = Layout.Pad(blockRows, 16);
        var timescales = MultiscaleAdam.TimescalesOf(o.K);
        _beta1f = timescales.Select(x => (float)x.B1).ToArray();
        _beta2f = timescales.Select(x => (float)x.B2).ToArray();
        if (_combiner != Combiner.Mlp)
        {
            _linear = new double[_k];
            _average = new float[_k];
            _gradFloats = _k;
            return;
        }
        int layers = o.HiddenLayers + 1, cursor = 0;
        _layers = new LaneMatrix[layers];
        _biases = new AlignedBuffer[layers];
        _gradWeight = new int[layers];
        _gradBias = new int[layers];
        for (int l = 0; l < layers; l++)
        {
            int outs = l < layers - 1 ? _hidden : _k, ins = l == 0 ? _k : _hidden;
            _layers[l] = new LaneMatrix(outs, ins);
            _biases[l] = new AlignedBuffer(outs);
            _gradWeight[l] = cursor; cursor += outs * ins;
            _gradBias[l] = cursor; cursor += outs;
        }
        _gradFloats = cursor;
    }

    private bool Mlp => _combiner == Combiner.Mlp;
    private int HiddenLayers => _layers.Length - 1;
    private static string LayerName(int l, int layers) => l < layers - 1 ? MultiscaleAdam.Layers.Hidden(l) : MultiscaleAdam.Layers.Output;

    public override int[] StateWidths => [_k, _k];
    /// <summary>The bias corrections c1_j = 1 − β1_j^t, then c2_j = 1 − β2_j^t (float32 powers, as the reference takes them).</summary>
    public override int GlobalsFloats => 2 * _k;
    public override int GradientFloats => _gradFloats;

    public override void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals)
    {
        for (int j = 0; j < _k; j++)
        {
            globals[j] = 1f - MathF.Pow(_beta1f[j], (float)t);
            globals[_k + j] = 1f - MathF.Pow(_beta2f[j], (float)t);
        }
    }

    public override void Load(Func<string, float[]> read)
    {
        if (!Mlp)
        {
            var w = read(MultiscaleAdam.Layers.LinearWeights);
            if (w.Length != _k) throw new ArgumentException($"meta-parameter '{MultiscaleAdam.Layers.LinearWeights}' has {w.Length} values, expected {_k}");
            for (int j = 0; j < _k; j++) _linear[j] = w[j];
            var average = Normalised(_linear);
            for (int j = 0; j < _k; j++) _average[j] = (float)average[j];
            return;
        }
        for (int l = 0; l < _layers.Length; l++)
        {
            string name = LayerName(l, _layers.Length);
            _layers[l].Read(read, MetaSchema.Weight(name));
            _biases[l].Read(read, MetaSchema.Bias(name), _layers[l].Out);
        }
    }

    /// <summary>w̄(w): w/Σw (LA_a), |w|/Σ|w| (LA_b) or w (LA_c).</summary>
    private double[] Normalised(double[] w) => _combiner switch
    {
        Combiner.LaA => w.Select(x => x / w.Sum()).ToArray(),
        Combiner.LaB => w.Select(x => Math.Abs(x) / w.Sum(Math.Abs)).ToArray(),
        _ => (double[])w.Clone(),
    };

    public override void Unpack(ReadOnlySpan<double> g, Action<string, float[]> write)
    {
        if (!Mlp)
        {
            // ā(w) = J(w̄; w)ᵀ ā(w̄). LA_a: (ā_j − Σ_i ā_i w̄_i)/Σw; LA_b: sign(w_j)(ā_j − Σ_i ā_i w̄_i)/Σ|w| (torch's sign(0) = 0).
            var average = Normalised(_linear);
            double dot = 0;
            for (int j = 0; j < _k; j++) dot += g[j] * average[j];
            var a = new float[_k];
            for (int j = 0; j < _k; j++)
                a[j] = _combiner switch
                {
                    Combiner.LaA => (float)((g[j] - dot) / _linear.Sum()),
                    Combiner.LaB => (float)(Sign(_linear[j]) * (g[j] - dot) / _linear.Sum(Math.Abs)),
                    _ => (float)g[j],
                };
            write(MultiscaleAdam.Layers.LinearWeights, a);
            return;
        }
        for (int l = 0; l < _layers.Length; l++)
        {
            string name = LayerName(l, _layers.Length);
            write(MetaSchema.Weight(name), Floats(g, _gradWeight[l], _layers[l].Out * _layers[l].In));
            write(MetaSchema.Bias(name), Floats(g, _gradBias[l], _layers[l].Out));
        }
    }

    /// <summary>torch's sign: 0 at 0 and NaN at NaN (<see cref="Math.Sign(double)"/> throws there).</summary>
    private static double Sign(double x) => x > 0 ? 1 : x < 0 ? -1 : x == 0 ? 0 : double.NaN;

    /// <summary>
    /// A worker's scratch for one block, feature-major with rows of <see cref="_rowStride"/> floats: the unit-rate steps,
    /// each hidden layer's ReLU output, the logits, the update (or its adjoint), two hidden adjoints used in turn, the
    /// logits' adjoint; and one group's worth (<c>T.Count</c> floats per entry) for a group cut short.
    /// </summary>
    private struct Bufs
    {
        public float* Steps, Hidden, Logits, Update, LogitsAdjoint, AdjointA, AdjointB, ShortIn, ShortOut, ShortG;
    }

    /// <summary>Hidden layer <paramref name="l"/>'s ReLU output in the scratch.</summary>
    private float* HiddenOutput(in Bufs f, int l) => f.Hidden + (long)l * _hidden * _rowStride;

    private Bufs Take(ref Arena arena)
    {
        int v = T.Count, k = _k;
        long ld = _rowStride;
        var f = new Bufs { Steps = arena.Take(k * ld), Update = arena.Take(ld), ShortIn = arena.Take(2 * k * v), ShortOut = arena.Take(2 * k * v), ShortG = arena.Take(v) };
        if (!Mlp) return f;
        f.Hidden = arena.Take(HiddenLayers * _hidden * ld);
        f.Logits = arena.Take(k * ld);
        f.LogitsAdjoint = arena.Take(k * ld);
        f.AdjointA = arena.Take(_hidden * ld);
        f.AdjointB = arena.Take(_hidden * ld);
        return f;
    }

    protected override void LayOut(ref Arena arena) => Take(ref arena);

    /// <summary>Columns the block's products run over: its rows rounded up to whole vectors.</summary>
    private static int Columns(in Block b) => Layout.Pad(b.Rows, T.Count);

    /// <summary>
    /// The new moments (written to the output state when <paramref name="output"/> is not null) and the unit-rate steps
    /// s_j into the block scratch, lanes past the block's last coordinate zeroed; then, for the mlp, its layers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Steps(in Block b, in Bufs f, float* output)
    {
        int v = T.Count, k = _k;
        for (int i = 0; i < b.Rows; i += v)
        {
            int n = Math.Min(v, b.Rows - i);
            long at = b.Start + i;
            if (n == v) { Moments(b.StateIn + at, output is null ? null : output + at, b.P, b.G + i, f, i, b.Globals); continue; }
            Lanes<T>.CopyIn(b.StateIn + at, b.P, 2 * k, n, v, f.ShortIn, v);
            Lanes<T>.CopyIn(b.G + i, 0, 1, n, v, f.ShortG, v);
            Moments(f.ShortIn, output is null ? null : f.ShortOut, v, f.ShortG, f, i, b.Globals);
            if (output is not null) Lanes<T>.CopyOut(f.ShortOut, v, 2 * k, n, output + at, b.P);
        }
        long ld = _rowStride;
        int columns = Columns(b);
        Lanes<T>.ZeroTail(f.Steps, ld, k, b.Rows, columns);
        if (!Mlp) return;
        float* x = f.Steps;
        for (int l = 0; l < HiddenLayers; l++)
        {
            var w = _layers[l];
            float* h = HiddenOutput(f, l);
            Lanes<T>.Product(w.W, w.In, w.Out, w.In, x, ld, h, ld, columns, _biases[l].Pointer, add: false);
            Lanes<T>.Relu(h, ld, _hidden, columns);
            x = h;
        }
        var last = _layers[^1];
        Lanes<T>.Product(last.W, last.In, last.Out, last.In, x, ld, f.Logits, ld, columns, _biases[^1].Pointer, add: false);
    }

    /// <summary>One group's moments (Alg. 4's k Adam optimizers) and unit-rate steps at <paramref name="column"/> of the scratch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Moments(float* stateIn, float* stateOut, long stride, float* gradient, in Bufs f, int column, float* globals)
    {
        int k = _k;
        long ld = _rowStride;
        T g = T.Load(gradient), g2 = T.Mul(g, g), eps = T.Splat(_epsilon);
        for (int j = 0; j < k; j++)
        {
            float b1 = _beta1f[j], b2 = _beta2f[j];
            T m = T.Fma(T.Load(stateIn + stride * j), T.Splat(b1), T.Mul(g, T.Splat(1f - b1)));
            T s = T.Fma(T.Load(stateIn + stride * (k + j)), T.Splat(b2), T.Mul(g2, T.Splat(1f - b2)));
            if (stateOut is not null)
            {
                T.Store(stateOut + stride * j, m);
                T.Store(stateOut + stride * (k + j), s);
            }
            T denominator = T.Add(T.Sqrt(T.Div(s, T.Splat(globals[k + j]))), eps);
            T.Store(f.Steps + j * ld + column, T.Div(T.Div(m, T.Splat(globals[j])), denominator));
        }
    }

    public override void Forward(in Block b)
    {
        var arena = new Arena(b.Scratch);
        var f = Take(ref arena);
        Steps(b, f, b.StateOut);
        long ld = _rowStride;
        int columns = Columns(b);
        T minusRate = T.Splat(-_stepSize);
        for (int c = 0; c < columns; c += T.Count)
            T.Store(f.Update + c, T.Mul(minusRate, Mlp ? Combined(f, c) : Averaged(f, c)));
        new ReadOnlySpan<float>(f.Update, b.Rows).CopyTo(new Span<float>(b.Update, b.Rows));
    }

    /// <summary>δ = Σ_j w̄_j s_j with the linear combiner's weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private T Averaged(in Bufs f, int column)
    {
        long ld = _rowStride;
        T delta = T.Splat(0f);
        for (int j = 0; j < _k; j++) delta = T.Fma(T.Splat(_average[j]), T.Load(f.Steps + j * ld + column), delta);
        return delta;
    }

    /// <summary>δ = Σ_j p_j s_j with p = softmax of the logits (their largest subtracted, as torch's softmax does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private T Combined(in Bufs f, int column)
    {
        long ld = _rowStride;
        float* logits = f.Logits + column, steps = f.Steps + column;
        T top = T.Load(logits);
        for (int j = 1; j < _k; j++) top = T.Max(top, T.Load(logits + j * ld));
        T sum = T.Splat(0f), weighted = T.Splat(0f);
        for (int j = 0; j < _k; j++)
        {
            T e = Act<T>.Exp(T.Sub(T.Load(logits + j * ld), top));
            sum = T.Add(sum, e);
            weighted = T.Fma(e, T.Load(steps + j * ld), weighted);
        }
        return T.Div(weighted, sum);
    }

    public override void Backward(in Block b)
    {
        var arena = new Arena(b.Scratch);
        var f = Take(ref arena);
        int k = _k;
        // No adjoint reaches the moments (they read only gradients, inputs here).
        for (int j = 0; j < 2 * k; j++) new Span<float>(b.AStateIn + b.P * j + b.Start, b.Rows).Clear();
        Steps(b, f, output: null);
        long ld = _rowStride;
        int columns = Columns(b);
        // ā(δ) = −η a_u, zero past the block's last coordinate.
        Lanes<T>.CopyIn(b.AUpdate, 0, 1, b.Rows, columns, f.Update, ld);
        Lanes<T>.Scale(f.Update, -_stepSize, f.Update, columns);
        float* grad = b.Grad;
        if (!Mlp)
        {
            Lanes<T>.AccumulateOuter(f.Update, ld, 1, f.Steps, ld, k, columns, grad, k);
            return;
        }
        for (int c = 0; c < columns; c += T.Count) LogitsBackward(f, c);
        int layers = _layers.Length;
        float* adjoint = f.LogitsAdjoint, spare = f.AdjointA;
        for (int l = layers - 1; l >= 0; l--)
        {
            var w = _layers[l];
            float* input = l == 0 ? f.Steps : HiddenOutput(f, l - 1);
            Lanes<T>.AccumulateOuter(adjoint, ld, w.Out, input, ld, w.In, columns, grad + _gradWeight[l], w.In);
            Lanes<T>.AccumulateRowSums(adjoint, ld, w.Out, columns, grad + _gradBias[l]);
            if (l == 0) break;   // the steps carry no adjoint
            Lanes<T>.Product(w.Transposed, w.Out, w.In, w.Out, adjoint, ld, spare, ld, columns, null, add: false);
            Lanes<T>.ReluBackward(spare, input, ld, _hidden, columns);
            adjoint = spare;
            spare = spare == f.AdjointA ? f.AdjointB : f.AdjointA;
        }
    }

    /// <summary>ā(z_j) = p_j (ā(δ) s_j − Σ_i p_i ā(δ) s_i) for one vector of columns (ā(δ) in the update row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void LogitsBackward(in Bufs f, int column)
    {
        long ld = _rowStride;
        float* logits = f.Logits + column, steps = f.Steps + column, adjoint = f.LogitsAdjoint + column;
        T aDelta = T.Load(f.Update + column);
        T top = T.Load(logits);
        for (int j = 1; j < _k; j++) top = T.Max(top, T.Load(logits + j * ld));
        T sum = T.Splat(0f);
        for (int j = 0; j < _k; j++)
        {
            T e = Act<T>.Exp(T.Sub(T.Load(logits + j * ld), top));
            T.Store(adjoint + j * ld, e);
            sum = T.Add(sum, e);
        }
        T inverse = T.Div(T.Splat(1f), sum), delta = T.Splat(0f);
        for (int j = 0; j < _k; j++)
        {
            T p = T.Mul(T.Load(adjoint + j * ld), inverse);
            T.Store(adjoint + j * ld, p);
            delta = T.Fma(p, T.Load(steps + j * ld), delta);
        }
        // Σ_i p_i ā(δ) s_i = ā(δ) δ.
        for (int j = 0; j < _k; j++)
            T.Store(adjoint + j * ld, T.Mul(T.Mul(T.Load(adjoint + j * ld), aDelta), T.Sub(T.Load(steps + j * ld), delta)));
    }
}
