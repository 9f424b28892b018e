using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Parameter = TorchSharp.Modules.Parameter;

namespace L2O.Learned;

/// <summary>
/// Coordinatewise building blocks shared by the learned optimizers. Every coordinate of the
/// optimizee is one row: inputs are (p, in), so a layer's weights are shared across coordinates.
/// Weight layouts follow PyTorch (a linear weight is (out, in); LSTM gates are stacked i, f, g, o),
/// so checkpoints load into <c>torch.nn.Linear</c> / <c>torch.nn.LSTMCell</c> directly.
/// </summary>
public static class Cells
{
    /// <summary>y = x Wᵀ + b for x (p, in), W (out, in), b (out).</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias) =>
        bias is null ? x.matmul(weight.t()) : torch.addmm(bias, x, weight.t(), 1, 1);

    public static Tensor Elu(Tensor x) => F.elu(x, 1.0);

    /// <summary>
    /// One LSTM step for every coordinate: gates = x W_ihᵀ + h W_hhᵀ + b, split as i, f, g, o;
    /// c′ = σ(f) c + σ(i) tanh(g); h′ = σ(o) tanh(c′). The single bias b equals PyTorch's b_ih + b_hh.
    /// </summary>
    /// <returns>(h′, c′), each (p, H).</returns>
    public static (Tensor H, Tensor C) LstmStep(Tensor x, Tensor h, Tensor c, Tensor weightIh, Tensor weightHh, Tensor bias)
    {
        var gates = torch.addmm(bias, x, weightIh.t(), 1, 1) + h.matmul(weightHh.t());   // (p, 4H)
        var chunks = gates.chunk(4, 1);
        var cNext = chunks[1].sigmoid() * c + chunks[0].sigmoid() * chunks[2].tanh();
        var hNext = chunks[3].sigmoid() * cNext.tanh();
        return (hNext, cNext);
    }

    /// <summary>
    /// x / √(Σ x² + 1e-16) along <paramref name="dim"/> (all elements when null); with <paramref name="rms"/>,
    /// x / √(Σ x² / n + 1e-16), n the number of elements summed (unit root-mean-square). The constant is the
    /// HyperAdam authors' guard for the column norms of m; it keeps a zero input at zero with a
    /// finite gradient, and changes the scale of any input with ‖x‖ ≫ 1e-8 by a negligible amount.
    /// </summary>
    public static Tensor SafeNormalize(Tensor x, long? dim = null, bool rms = false)
    {
        var sumSq = dim is long d ? x.square().sum([d], keepdim: true) : x.square().sum();
        if (rms) sumSq = sumSq / (dim is long d2 ? x.shape[d2] : x.numel());
        return x / (sumSq + 1e-16).sqrt();
    }
}

/// <summary>Initialisers for meta-parameters, all drawn from one seeded generator on the CPU.</summary>
public static class MetaInit
{
    /// <summary>Glorot (Xavier) uniform: U(−a, a), a = √(6 / (fan_in + fan_out)); TensorFlow's default kernel initialiser.</summary>
    public static Tensor GlorotUniform(long fanOut, long fanIn, Generator g, ScalarType dtype)
    {
        double a = Math.Sqrt(6.0 / (fanIn + fanOut));
        return rand([fanOut, fanIn], dtype: dtype, generator: g) * (2 * a) - a;
    }

    /// <summary>N(0, σ²) truncated at ±2σ by redrawing (TensorFlow's truncated_normal).</summary>
    public static Tensor TruncatedNormal(long[] shape, double std, Generator g, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var x = randn(shape, dtype: dtype, generator: g);
        for (int i = 0; i < 100; i++)
        {
            var outside = x.abs() > 2;
            if (!outside.any().item<bool>()) break;
            x = where(outside, randn(shape, dtype: dtype, generator: g), x);
        }
        return (x * std).MoveToOuterDisposeScope();
    }

    public static Tensor Normal(long[] shape, double std, Generator g, ScalarType dtype) => randn(shape, dtype: dtype, generator: g) * std;

    /// <summary>LSTM bias of 4H with the forget-gate quarter set to <paramref name="forgetBias"/> and the rest 0.</summary>
    public static Tensor LstmBias(long hidden, double forgetBias, ScalarType dtype)
    {
        var b = zeros([4 * hidden], dtype: dtype);
        b.narrow(0, hidden, hidden).fill_(forgetBias);
        return b;
    }
}

/// <summary>A stack of coordinatewise LSTMs with its meta-parameters.</summary>
internal sealed class LstmStack
{
    private readonly List<(Parameter Ih, Parameter Hh, Parameter B)> _layers = [];

    /// <param name="layerName">Checkpoint name prefix of layer l (default <c>lstm{l}</c>).</param>
    public LstmStack(Func<string, Tensor, Parameter> register, int input, int hidden, int layers, Generator g, Func<int, string>? layerName = null)
    {
        Hidden = hidden;
        layerName ??= l => $"lstm{l}";
        for (int l = 0; l < layers; l++)
        {
            int inp = l == 0 ? input : hidden;
            double a = Math.Sqrt(6.0 / (inp + hidden + 4 * hidden));   // Glorot over TensorFlow's joined kernel
            _layers.Add((register($"{layerName(l)}.weight_ih", rand([4 * hidden, inp], dtype: ScalarType.Float64, generator: g) * (2 * a) - a),
                         register($"{layerName(l)}.weight_hh", rand([4 * hidden, hidden], dtype: ScalarType.Float64, generator: g) * (2 * a) - a),
                         register($"{layerName(l)}.bias", MetaInit.LstmBias(hidden, 1.0, ScalarType.Float64))));
        }
    }

    public int Hidden { get; }
    public int Layers => _layers.Count;

    public (Tensor Top, List<Tensor> H, List<Tensor> C) Step(Tensor x, IReadOnlyList<Tensor> h, IReadOnlyList<Tensor> c)
    {
        var hs = new List<Tensor>(_layers.Count);
        var cs = new List<Tensor>(_layers.Count);
        for (int l = 0; l < _layers.Count; l++)
        {
            var (ih, hh, b) = _layers[l];
            var (hn, cn) = Cells.LstmStep(x, h[l], c[l], ih, hh, b);
            hs.Add(hn);
            cs.Add(cn);
            x = hn;
        }
        return (x, hs, cs);
    }

    public (List<Tensor> H, List<Tensor> C) Zeros(long p, ScalarType dtype, Device device) =>
        (Enumerable.Range(0, _layers.Count).Select(_ => zeros([p, Hidden], dtype: dtype, device: device)).ToList(),
         Enumerable.Range(0, _layers.Count).Select(_ => zeros([p, Hidden], dtype: dtype, device: device)).ToList());
}
