using System.Runtime.CompilerServices;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Engine;

/// <summary>An optimizee's minibatch loss and gradient computed without autograd, straight on float32 memory.</summary>
internal unsafe interface IDirectGradient
{
    /// <summary>f(w) on <paramref name="batch"/>; ∇f(w) is written to <paramref name="gradient"/> (n floats).</summary>
    double LossAndGradient(float* parameters, float* gradient, Batch batch);
}

/// <summary>
/// The engine's <see cref="IGradientExecutor"/>: <see cref="MlpModel"/> networks on float32 CPU tensors get
/// <see cref="MlpGradient{T}"/> (one per network, with its buffers, so one executor serves one trajectory at a time);
/// everything else is declined, and autograd computes it.
/// </summary>
internal sealed unsafe class EngineGradients(EngineOptions options) : IGradientExecutor
{
    private readonly Dictionary<MlpModel, IDirectGradient> _mlps = new(ReferenceEqualityComparer.Instance);

    /// <summary>An executor for <paramref name="options"/>, or null where <see cref="EngineOptions.DirectGradient"/> is off.</summary>
    public static EngineGradients? For(EngineOptions options) => options.DirectGradient ? new EngineGradients(options) : null;

    public double? CrossEntropy(IClassifierModel model, Tensor parameters, Batch batch, Tensor gradient)
    {
        if (model is not MlpModel mlp || !Fits(parameters) || !Fits(gradient)
            || batch.Inputs is not { } x || x.device_type != DeviceType.CPU || x.dtype != ScalarType.Float32
            || batch.Targets is not { } y || y.device_type != DeviceType.CPU || y.dtype != ScalarType.Int64)
            return null;
        if (!_mlps.TryGetValue(mlp, out var direct))
            _mlps[mlp] = direct = Create(mlp, options);
        return direct.LossAndGradient(TensorMemory.Floats(parameters), TensorMemory.Floats(gradient), batch);
    }

    private static bool Fits(Tensor t) => t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.is_contiguous();

    internal static IDirectGradient Create(MlpModel mlp, EngineOptions options) => SimdSelect.Resolve(options.Width) switch
    {
        SimdWidth.Avx512 => new MlpGradient<V512>(mlp),
        SimdWidth.Avx2 => new MlpGradient<V256>(mlp),
        _ => new MlpGradient<V1>(mlp),
    };
}

/// <summary>
/// The mean cross-entropy of an <see cref="MlpModel"/> on a minibatch and its gradient, written out by hand:
/// forward z_l = h_{l−1} W_l + b_l, h_l = φ(z_l) (h_0 the flattened inputs, no φ on the logits z_L), loss
/// (1/B) Σ_i [log Σ_c e^{z_L,ic} − z_L,iy_i]; backward δ_L = (softmax(z_L) − onehot(y)) / B, ∂W_l = h_{l−1}ᵀ δ_l,
/// ∂b_l = Σ_i δ_l,i, δ_{l−1} = (δ_l W_lᵀ) ⊙ φ′, with φ′ read from h (σ: h(1 − h); tanh: 1 − h²; ReLU: h &gt; 0;
/// ELU: 1 for h &gt; 0, else h + 1 = e^z). Equal to TorchSharp's autograd of <see cref="MlpModel.Logits"/> to float
/// rounding (tested for each activation, 0–3 hidden layers and each SIMD width); a NaN or infinite parameter gives a
/// non-finite loss, as there.
/// </summary>
/// <remarks>
/// Why: the base MLP's step is small enough that libtorch's per-operation cost dominated its autograd. It runs on
/// the calling thread: a split over the engine's threads did not pay (docs/engine.md, "The optimizee's gradient").
/// Layers are padded to whole vectors of 16 floats; the padding columns are computed but never contribute.
/// </remarks>
internal sealed unsafe class MlpGradient<T> : IDirectGradient where T : unmanaged, ISimd<T>
{
    private const int Pad = 16;

    /// <summary>A dense layer's sizes (and padded sizes) and where its weight and bias start in the flat vector.</summary>
    private readonly record struct Layer(int In, int Out, int InPad, int OutPad, long WeightOffset, long BiasOffset);

    private readonly Layer[] _layers;
    private readonly Activation _activation;
    private readonly AlignedBuffer[] _weights;     // W_l, In × OutPad (padding columns zero)
    private readonly AlignedBuffer[] _transposed;  // W_lᵀ, Out × InPad (l ≥ 1; the input layer's δ is not needed)
    private readonly AlignedBuffer[] _biases;      // b_l, OutPad
    private readonly AlignedBuffer _weightGradient;  // ∂W_l, In × OutPad, the largest layer's
    private AlignedBuffer[] _outputs = [], _deltas = [];   // h_l (the logits for l = L) and δ_l, B × OutPad
    private int _batch;

    public MlpGradient(MlpModel model)
    {
        _activation = model.Activation;
        var dense = model.Dense;
        _layers = new Layer[dense.Count];
        for (int l = 0; l < dense.Count; l++)
        {
            var (w, b) = dense[l];
            int inSize = (int)w.Shape[0], outSize = (int)w.Shape[1];
            _layers[l] = new Layer(inSize, outSize, Round(inSize), Round(outSize), w.Offset, b.Offset);
        }
        _weights = [.. _layers.Select(l => new AlignedBuffer((long)l.In * l.OutPad))];
        _transposed = [.. _layers.Select((l, i) => new AlignedBuffer(i == 0 ? 1 : (long)l.Out * l.InPad))];
        _biases = [.. _layers.Select(l => new AlignedBuffer(l.OutPad))];
        _weightGradient = new AlignedBuffer(_layers.Max(l => (long)l.In * l.OutPad));
    }

    private static int Round(int n) => (n + Pad - 1) / Pad * Pad;

    private int Inputs => _layers[0].In;

    public double LossAndGradient(float* parameters, float* gradient, Batch batch)
    {
        var inputs = batch.Inputs ?? throw new L2OException("the MLP's direct gradient needs a minibatch of inputs");
        var targets = batch.Targets ?? throw new L2OException("the MLP's direct gradient needs a minibatch of targets");
        int b = (int)targets.shape[0];
        if (inputs.numel() != (long)b * Inputs)
            throw new L2OException($"the MLP's direct gradient expected {b} inputs of {Inputs} values, got shape [{string.Join(", ", inputs.shape)}]");
        Reserve(b);
        using var scope = NewDisposeScope();
        float* x = TensorMemory.Floats(inputs.contiguous());
        long* y = TensorMemory.Longs(targets.contiguous());

        Pack(parameters);
        float* a = x;
        long lda = Inputs;
        for (int l = 0; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            float* h = _outputs[l].Pointer;
            Dense<T>.Product(b, layer.In, layer.OutPad, a, lda, 1, _weights[l].Pointer, layer.OutPad, h, layer.OutPad, _biases[l].Pointer);
            if (l < _layers.Length - 1) Activate(h, (long)b * layer.OutPad);
            a = h;
            lda = layer.OutPad;
        }

        double loss = SoftmaxCrossEntropy(b, y);

        for (int l = _layers.Length - 1; l >= 0; l--)
        {
            var layer = _layers[l];
            float* delta = _deltas[l].Pointer;
            float* below = l == 0 ? x : _outputs[l - 1].Pointer;
            long ldBelow = l == 0 ? Inputs : layer.InPad;
            // ∂W_l = h_{l−1}ᵀ δ_l: rows are input features, summed over the batch.
            Dense<T>.Product(layer.In, b, layer.OutPad, below, 1, ldBelow, delta, layer.OutPad, _weightGradient.Pointer, layer.OutPad, null);
            for (int i = 0; i < layer.In; i++)
                new ReadOnlySpan<float>(_weightGradient.Pointer + (long)i * layer.OutPad, layer.Out).CopyTo(new Span<float>(gradient + layer.WeightOffset + (long)i * layer.Out, layer.Out));
            ColumnSums(delta, b, layer.OutPad, layer.Out, gradient + layer.BiasOffset);
            if (l == 0) break;
            // δ_{l−1} = (δ_l W_lᵀ) ⊙ φ′(h_{l−1})
            float* next = _deltas[l - 1].Pointer;
            Dense<T>.Product(b, layer.Out, layer.InPad, delta, layer.OutPad, 1, _transposed[l].Pointer, layer.InPad, next, layer.InPad, null);
            MultiplyByDerivative(next, _outputs[l - 1].Pointer, (long)b * layer.InPad);
        }
        return loss;
    }

    private void Reserve(int b)
    {
        if (b == _batch) return;
        _outputs = [.. _layers.Select(l => new AlignedBuffer((long)b * l.OutPad))];
        _deltas = [.. _layers.Select(l => new AlignedBuffer((long)b * l.OutPad))];
        _batch = b;
    }

    /// <summary>Copies W_l and b_l into the padded buffers (padding stays zero), and W_lᵀ for the backward.</summary>
    private void Pack(float* parameters)
    {
        for (int l = 0; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            float* w = parameters + layer.WeightOffset;
            float* padded = _weights[l].Pointer;
            for (int i = 0; i < layer.In; i++)
                new ReadOnlySpan<float>(w + (long)i * layer.Out, layer.Out).CopyTo(new Span<float>(padded + (long)i * layer.OutPad, layer.Out));
            new ReadOnlySpan<float>(parameters + layer.BiasOffset, layer.Out).CopyTo(new Span<float>(_biases[l].Pointer, layer.Out));
            if (l == 0) continue;
            float* t = _transposed[l].Pointer;
            for (int i = 0; i < layer.In; i++)
                for (int o = 0; o < layer.Out; o++) t[(long)o * layer.InPad + i] = w[(long)i * layer.Out + o];
        }
    }

    /// <summary>
    /// Loss in double from the float logits (max-shifted log-sum-exp), and δ_L = (softmax − onehot(y)) / B written
    /// over the logits' rows into the last layer's δ.
    /// </summary>
    private double SoftmaxCrossEntropy(int b, long* y)
    {
        int ld = _layers[^1].OutPad, classes = _layers[^1].Out;
        float* logits = _outputs[^1].Pointer, delta = _deltas[^1].Pointer;
        double total = 0;
        Span<double> e = stackalloc double[classes];
        for (int i = 0; i < b; i++)
        {
            float* z = logits + (long)i * ld;
            long target = y[i];
            if ((ulong)target >= (ulong)classes) throw new L2OException($"target {target} is not a class index below {classes}");
            double max = double.NegativeInfinity;
            for (int c = 0; c < classes; c++) max = Math.Max(max, z[c]);
            double sum = 0;
            for (int c = 0; c < classes; c++) sum += e[c] = Math.Exp(z[c] - max);
            total += Math.Log(sum) + max - z[target];
            float* d = delta + (long)i * ld;
            for (int c = 0; c < classes; c++) d[c] = (float)((e[c] / sum - (c == target ? 1 : 0)) / b);
        }
        return total / b;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Activate(float* h, long n)
    {
        for (long i = 0; i < n; i += T.Count)
        {
            T z = T.Load(h + i);
            T.Store(h + i, _activation switch
            {
                Activation.Sigmoid => Act<T>.SigmoidPair(z, out _),
                Activation.Tanh => Act<T>.Tanh(z),
                Activation.Relu => T.Max(T.Splat(0f), z),   // z second: a NaN passes through, as in torch
                _ => Act<T>.Elu(z),
            });
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void MultiplyByDerivative(float* delta, float* h, long n)
    {
        T one = T.Splat(1f), zero = T.Splat(0f);
        for (long i = 0; i < n; i += T.Count)
        {
            T v = T.Load(h + i);
            T d = _activation switch
            {
                Activation.Sigmoid => T.Mul(v, T.Sub(one, v)),
                Activation.Tanh => T.Sub(one, T.Mul(v, v)),
                Activation.Relu => T.SelectGreater(v, zero, one, zero),
                _ => T.SelectGreater(v, zero, one, T.Add(v, one)),
            };
            T.Store(delta + i, T.Mul(T.Load(delta + i), d));
        }
    }

    /// <summary>output[c] = Σ_i δ[i·ld + c] for c &lt; n, summed in row order.</summary>
    private static void ColumnSums(float* delta, int rows, int ld, int n, float* output)
    {
        for (int c = 0; c < n; c++) output[c] = 0;
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < n; c++) output[c] += delta[(long)i * ld + c];
    }
}

/// <summary>Small dense products on row-major float memory, for <see cref="MlpGradient{T}"/>.</summary>
internal static unsafe class Dense<T> where T : unmanaged, ISimd<T>
{
    /// <summary>
    /// c[i·ldc + v] = init[v] + Σ_{j&lt;k} a[i·aRow + j·aCol] · b[j·ldb + v] for i &lt; m, v &lt; n (init null: 0).
    /// <paramref name="n"/> is a multiple of the vector width. The strides of a let one kernel take A or Aᵀ.
    /// </summary>
    /// <remarks>
    /// Register tiles of 4 rows × 2 vectors: per j, two vector loads of b and four broadcasts of a feed eight
    /// multiply-adds into eight accumulators. Leftover vectors and rows use 4 × 1 and 1 × 1 tiles.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    public static void Product(int m, int k, int n, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, float* init)
    {
        int w = T.Count, i = 0;
        for (; i + 4 <= m; i += 4)
        {
            int v = 0;
            for (; v + 2 * w <= n; v += 2 * w) Tile4x2(k, a + i * aRow, aRow, aCol, b + v, ldb, c + i * ldc + v, ldc, init is null ? null : init + v);
            for (; v < n; v += w) Tile4x1(k, a + i * aRow, aRow, aCol, b + v, ldb, c + i * ldc + v, ldc, init is null ? null : init + v);
        }
        for (; i < m; i++)
            for (int v = 0; v < n; v += w) Tile1x1(k, a + i * aRow, aCol, b + v, ldb, c + i * ldc + v, init is null ? null : init + v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Start(float* init) => init is null ? T.Splat(0f) : T.Load(init);

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x2(int k, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, float* init)
    {
        int w = T.Count;
        float* a0 = a, a1 = a + aRow, a2 = a + 2 * aRow, a3 = a + 3 * aRow;
        T c00 = Start(init), c01 = Start(init == null ? null : init + w);
        T c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01;
        for (int j = 0; j < k; j++)
        {
            float* bj = b + j * ldb;
            T b0 = T.Load(bj), b1 = T.Load(bj + w);
            long o = j * aCol;
            T s = T.Splat(a0[o]); c00 = T.Fma(s, b0, c00); c01 = T.Fma(s, b1, c01);
            s = T.Splat(a1[o]); c10 = T.Fma(s, b0, c10); c11 = T.Fma(s, b1, c11);
            s = T.Splat(a2[o]); c20 = T.Fma(s, b0, c20); c21 = T.Fma(s, b1, c21);
            s = T.Splat(a3[o]); c30 = T.Fma(s, b0, c30); c31 = T.Fma(s, b1, c31);
        }
        T.Store(c, c00); T.Store(c + w, c01);
        T.Store(c + ldc, c10); T.Store(c + ldc + w, c11);
        T.Store(c + 2 * ldc, c20); T.Store(c + 2 * ldc + w, c21);
        T.Store(c + 3 * ldc, c30); T.Store(c + 3 * ldc + w, c31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x1(int k, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, float* init)
    {
        float* a0 = a, a1 = a + aRow, a2 = a + 2 * aRow, a3 = a + 3 * aRow;
        T c0 = Start(init), c1 = c0, c2 = c0, c3 = c0;
        for (int j = 0; j < k; j++)
        {
            T bj = T.Load(b + j * ldb);
            long o = j * aCol;
            c0 = T.Fma(T.Splat(a0[o]), bj, c0);
            c1 = T.Fma(T.Splat(a1[o]), bj, c1);
            c2 = T.Fma(T.Splat(a2[o]), bj, c2);
            c3 = T.Fma(T.Splat(a3[o]), bj, c3);
        }
        T.Store(c, c0); T.Store(c + ldc, c1); T.Store(c + 2 * ldc, c2); T.Store(c + 3 * ldc, c3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x1(int k, float* a, long aCol, float* b, long ldb, float* c, float* init)
    {
        T acc = Start(init);
        for (int j = 0; j < k; j++) acc = T.Fma(T.Splat(a[j * aCol]), T.Load(b + j * ldb), acc);
        T.Store(c, acc);
    }
}
