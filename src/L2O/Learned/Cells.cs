using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Parameter = TorchSharp.Modules.Parameter;
using L2O.Runtime;

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

    public static Tensor Elu(Tensor x) => x.Elu();

    /// <summary>
    /// One LSTM step for every coordinate: gates = x W_ihᵀ + h W_hhᵀ + b, split as i, f, g, o;
    /// c′ = σ(f) c + σ(i) tanh(g); h′ = σ(o) tanh(c′). The single bias b equals PyTorch's b_ih + b_hh.
    /// </summary>
    /// <returns>(h′, c′), each (p, H).</returns>
    public static (Tensor H, Tensor C) LstmStep(Tensor x, Tensor h, Tensor c, Tensor weightIh, Tensor weightHh, Tensor bias)
    {
        var gates = torch.addmm(bias, x, weightIh.t(), 1, 1).Plus(h.matmul(weightHh.t()));   // (p, 4H)
        var chunks = gates.chunk(4, 1);
        var cNext = (chunks[1].sigmoid() * c).Plus(chunks[0].sigmoid() * chunks[2].tanh());
        var hNext = chunks[3].sigmoid() * cNext.tanh();
        return (hNext, cNext);
    }

    /// <summary>The ε² under the square root of every normalisation ‖x‖ = √(Σ x² + ε²) (the HyperAdam authors' guard).</summary>
    internal const double NormGuard = 1e-16;

    /// <summary>
    /// x / √(Σ x² + 1e-16) along <paramref name="dim"/> (all elements when null); with <paramref name="rms"/>,
    /// x / √(Σ x² / n + 1e-16), n the number of elements summed (unit root-mean-square). The constant is the
    /// HyperAdam authors' guard for the column norms of m; it keeps a zero input at zero with a
    /// finite gradient, and changes the scale of any input with ‖x‖ ≫ 1e-8 by a negligible amount.
    /// </summary>
    public static Tensor SafeNormalize(Tensor x, long? dim = null, bool rms = false)
    {
        // NormGuard, not a literal: the fused cells' globals use the same constant.
        var sumSq = dim is long d ? x.Squared().sum([d], keepdim: true) : x.Squared().sum();
        if (rms) sumSq = sumSq.Over(dim is long d2 ? x.shape[d2] : x.numel());
        return x / sumSq.Plus(NormGuard).sqrt();
    }
}

/// <summary>A stack of coordinatewise LSTMs with its meta-parameters.</summary>
internal sealed class LstmStack
{
    private readonly List<(Parameter Ih, Parameter Hh, Parameter B)> _layers = [];

    /// <summary>The stack over registered meta-parameters (declared by <see cref="MetaSchema.Lstm"/>).</summary>
    /// <param name="layerName">Checkpoint name prefix of layer l (default <c>lstm{l}</c>).</param>
    public LstmStack(IReadOnlyDictionary<string, Parameter> parameters, int layers, Func<int, string>? layerName = null)
    {
        layerName ??= LayerName;
        for (int l = 0; l < layers; l++)
        {
            string n = layerName(l);
            _layers.Add((parameters[MetaSchema.InputWeight(n)], parameters[MetaSchema.HiddenWeight(n)], parameters[MetaSchema.Bias(n)]));
        }
        Hidden = (int)_layers[0].Hh.shape[1];
    }

    /// <summary>The default checkpoint prefix of layer l.</summary>
    public static string LayerName(int l) => $"lstm{l}";

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
