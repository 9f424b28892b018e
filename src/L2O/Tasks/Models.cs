using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using L2O.Runtime;

namespace L2O.Tasks;

/// <summary>Hidden-layer nonlinearity of the MLP tasks (HyperAdam §5 / RNNprop §5.2).</summary>
public enum Activation { Sigmoid, Relu, Elu, Tanh }

/// <summary>A classifier written functionally over a flat parameter vector.</summary>
public interface IClassifierModel
{
    ParameterLayout Layout { get; }

    /// <summary>Logits (B, classes) for inputs (B, C, H, W).</summary>
    /// <param name="noise">Generator for dropout masks when training; null at test time.</param>
    Tensor Logits(Tensor parameters, Tensor inputs, bool training, Generator? noise);
}

internal static class Layers
{
    public static Tensor Activate(Tensor x, Activation a) => a switch
    {
        Activation.Sigmoid => x.sigmoid(),
        Activation.Relu => x.relu(),
        Activation.Elu => x.Elu(),
        Activation.Tanh => x.tanh(),
        _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    /// <summary>Inverted dropout with a mask drawn on the CPU (device-independent and reproducible).</summary>
    public static Tensor Dropout(Tensor x, double p, Generator? noise)
    {
        if (p <= 0 || noise is null) return x;
        using var draw = rand(x.shape, dtype: x.dtype, generator: noise);
        using var keep = draw.GreaterOrEqual(p);
        var mask = keep.to(x.dtype).to(x.device).Over(1 - p);
        return x * mask;
    }

    /// <summary>Batch normalisation with the batch's own statistics (train and test alike; see docs/tasks.md).</summary>
    public static Tensor BatchNorm(Tensor x, Tensor gamma, Tensor beta)
    {
        // x: (B, C, H, W); statistics over B, H, W per channel.
        var mean = x.mean([0, 2, 3], keepdim: true);
        var variance = (x - mean).Squared().mean([0, 2, 3], keepdim: true);
        var normalized = (x - mean) / variance.Plus(1e-5).sqrt();
        return (normalized * gamma.view(1, -1, 1, 1)).Plus(beta.view(1, -1, 1, 1));
    }
}

/// <summary>
/// Multilayer perceptron: input → L hidden layers of <c>hidden</c> units with one activation →
/// linear output. Weights are stored (in, out) so a layer is x·W + b.
/// </summary>
public sealed class MlpModel : IClassifierModel
{
    private readonly List<(int W, int B)> _layers = [];
    private readonly Activation _activation;

    public MlpModel(int inputSize, int hiddenLayers, int hidden, int classes, Activation activation)
    {
        _activation = activation;
        int inSize = inputSize;
        for (int l = 0; l <= hiddenLayers; l++)
        {
            int outSize = l == hiddenLayers ? classes : hidden;
            _layers.Add((Layout.Add($"layer{l}.weight", [inSize, outSize]), Layout.Add($"layer{l}.bias", [outSize])));
            inSize = outSize;
        }
    }

    public ParameterLayout Layout { get; } = new();

    /// <summary>The hidden layers' activation.</summary>
    public Activation Activation => _activation;

    /// <summary>The layers from the input up, each a weight slot of shape (in, out) and a bias slot of shape (out).</summary>
    public IReadOnlyList<(ParameterSlot Weight, ParameterSlot Bias)> Dense => [.. _layers.Select(l => (Layout.Slots[l.W], Layout.Slots[l.B]))];

    public Tensor Logits(Tensor parameters, Tensor inputs, bool training, Generator? noise)
    {
        var h = inputs.flatten(1);                                  // (B, D)
        for (int l = 0; l < _layers.Count; l++)
        {
            h = h.matmul(Layout.View(parameters, _layers[l].W)).Plus(Layout.View(parameters, _layers[l].B));
            if (l < _layers.Count - 1) h = Layers.Activate(h, _activation);
        }
        return h;                                                   // (B, classes)
    }
}

/// <summary>Which of the papers' convolutional networks (HyperAdam §5, RNNprop §5.4.1).</summary>
public enum CnnKind
{
    /// <summary>c-c-p-f</summary>
    Cnn1,
    /// <summary>c-c-p-c-c-p-f-f</summary>
    Cnn2,
}

/// <summary>
/// The papers' CNNs: 3×3 convolutions (stride 1, padding 1) with ReLU, 2×2 max-pooling with
/// stride 2, fully connected layers. Optional batch normalisation after every convolution and
/// dropout before every fully connected layer.
/// </summary>
public sealed class CnnModel : IClassifierModel
{
    private readonly CnnKind _kind;
    private readonly bool _batchNorm;
    private readonly double _dropout;
    private readonly List<(int W, int B, int Gamma, int Beta)> _convs = [];
    private readonly List<(int W, int B)> _fcs = [];

    public CnnModel(CnnKind kind, int channels, int height, int width, int classes, int c1, int c2, int fc, bool batchNorm, double dropout)
    {
        _kind = kind;
        _batchNorm = batchNorm;
        _dropout = dropout;
        int[] convChannels = kind == CnnKind.Cnn1 ? [c1, c1] : [c1, c1, c2, c2];
        int inC = channels;
        for (int i = 0; i < convChannels.Length; i++)
        {
            int outC = convChannels[i];
            int w = Layout.Add($"conv{i}.weight", [outC, inC, 3, 3]);
            int b = Layout.Add($"conv{i}.bias", [outC]);
            int g = batchNorm ? Layout.Add($"bn{i}.weight", [outC], SlotInit.Ones) : -1;
            int be = batchNorm ? Layout.Add($"bn{i}.bias", [outC], SlotInit.Zeros) : -1;
            _convs.Add((w, b, g, be));
            inC = outC;
        }
        int pools = kind == CnnKind.Cnn1 ? 1 : 2;
        int h = height, wd = width;
        for (int p = 0; p < pools; p++) { h /= 2; wd /= 2; }
        int flat = inC * h * wd;
        int[] fcSizes = kind == CnnKind.Cnn1 ? [classes] : [fc, classes];
        int inF = flat;
        for (int i = 0; i < fcSizes.Length; i++)
        {
            _fcs.Add((Layout.Add($"fc{i}.weight", [inF, fcSizes[i]]), Layout.Add($"fc{i}.bias", [fcSizes[i]])));
            inF = fcSizes[i];
        }
    }

    public ParameterLayout Layout { get; } = new();

    public Tensor Logits(Tensor parameters, Tensor inputs, bool training, Generator? noise)
    {
        var x = inputs;                                             // (B, C, H, W)
        for (int i = 0; i < _convs.Count; i++)
        {
            var (w, b, g, be) = _convs[i];
            x = F.conv2d(x, Layout.View(parameters, w), Layout.View(parameters, b), padding: [1, 1]);
            if (_batchNorm) x = Layers.BatchNorm(x, Layout.View(parameters, g), Layout.View(parameters, be));
            x = x.relu();
            bool poolHere = _kind == CnnKind.Cnn1 ? i == 1 : i is 1 or 3;
            if (poolHere) x = F.max_pool2d(x, [2, 2], [2, 2]);
        }
        x = x.flatten(1);                                           // (B, C·H·W)
        for (int i = 0; i < _fcs.Count; i++)
        {
            if (training) x = Layers.Dropout(x, _dropout, noise);
            x = x.matmul(Layout.View(parameters, _fcs[i].W)).Plus(Layout.View(parameters, _fcs[i].B));
            if (i < _fcs.Count - 1) x = x.relu();
        }
        return x;                                                   // (B, classes)
    }
}
