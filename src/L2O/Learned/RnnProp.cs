using L2O.Optimizers;
using L2O.Specs;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Learned;

/// <summary>Hyperparameters of <see cref="RnnProp"/> (RNNprop §4.3, §5).</summary>
public sealed record RnnPropOptions : LearnedOptions
{
    [Option("beta1", "decay of the first moment")] public double Beta1 { get; init; } = 0.95;
    [Option("beta2", "decay of the second moment")] public double Beta2 { get; init; } = 0.95;
    [Option("eps", "ε added outside the square root: sv = √v̂ + ε")] public double Epsilon { get; init; } = 1e-8;
    [Option("hidden", "width of the preprocessing layer and of each LSTM")] public int Hidden { get; init; } = 20;
    [Option("layers", "stacked coordinatewise LSTMs")] public int Layers { get; init; } = 2;
    [Option("lr", "bound α of the step: Δ = −α tanh(x_out)")] public double StepSize { get; init; } = 0.1;

    public override void Validate()
    {
        Check.InRange(Beta1, 0, 1, "beta1", openHigh: true);
        Check.InRange(Beta2, 0, 1, "beta2", openHigh: true);
        Check.NonNegative(Epsilon, "eps");
        Check.InRange(Hidden, 1, 4096, "hidden");
        Check.InRange(Layers, 1, 8, "layers");
        Check.Positive(StepSize, "lr");
    }
}

/// <summary>State of a coordinatewise LSTM stack plus Adam moments (RNNprop) or none (DMoptimizer).</summary>
public sealed record RecurrentState(long Step, Tensor? M, Tensor? V, IReadOnlyList<Tensor> H, IReadOnlyList<Tensor> C) : OptimizerState
{
    public override IEnumerable<Tensor> Tensors => (M is null ? Array.Empty<Tensor>() : [M, V!]).Concat(H).Concat(C);

    public override OptimizerState Map(Func<Tensor, Tensor> f) =>
        this with { M = M is null ? null : f(M), V = V is null ? null : f(V), H = H.Select(f).ToList(), C = C.Select(f).ToList() };
}

/// <summary>
/// RNNprop (Lv, Jiang and Li, ICML 2017, §4.3): a coordinatewise two-layer LSTM fed with Adam's
/// normalised statistics instead of the raw gradient.
/// <code>
/// m_t = β1 m + (1−β1) g,  v_t = β2 v + (1−β2) g²,  m̂ = m_t/(1−β1^t),  v̂ = v_t/(1−β2^t)
/// sv = √v̂ + ε;   inputs  g̃ = g/sv,  m̃ = m̂/sv                                       (5), (6), (8), (9)
/// x = ELU(W_pre [g̃, m̃] + b_pre);  two stacked LSTMs of 20;  x_out = W_out h + b_out
/// Δ = −α tanh(x_out),  α = 0.1                                                          (7)
/// </code>
/// </summary>
/// <remarks>
/// The sign follows the authors' code (w ← w − α tanh(x_out)); eq. 7 adds it, which is the same
/// model with the output layer negated. Fully connected layers start truncated-normal(0.1) with zero
/// bias; LSTM kernels Glorot-uniform with forget bias +1 (docs/methods/rnnprop.md).
/// </remarks>
public sealed class RnnProp : LearnedOptimizer
{
    /// <summary>The linear layers' checkpoint prefixes (the LSTMs' are <see cref="LstmStack.LayerName"/>), for the reference and the fused cells.</summary>
    internal static class Layers
    {
        /// <summary>The FC + ELU layer before the LSTMs (eq. 6).</summary>
        public const string Preprocess = "pre";
        /// <summary>The output layer after the LSTMs (eq. 7).</summary>
        public const string Output = "out";
    }

    private readonly Parameter _preW, _preB, _outW, _outB;
    private readonly LstmStack _lstm;

    public RnnProp(RnnPropOptions options, BuildContext context) : base(context)
    {
        Typed = options;
        var p = Register(SchemaOf(options), options.InitSeed);
        (_preW, _preB) = (p[MetaSchema.Weight(Layers.Preprocess)], p[MetaSchema.Bias(Layers.Preprocess)]);
        (_outW, _outB) = (p[MetaSchema.Weight(Layers.Output)], p[MetaSchema.Bias(Layers.Output)]);
        _lstm = new LstmStack(p, options.Layers);
        Rule = new UpdateRule(this);
    }

    /// <summary>The meta-parameters for <paramref name="o"/>, in initialisation order: fully connected layers truncated-normal(0.1), zero biases; LSTMs Glorot-uniform, forget bias +1.</summary>
    public static IReadOnlyList<MetaParameter> SchemaOf(RnnPropOptions o)
    {
        var list = new List<MetaParameter>(MetaSchema.Linear(Layers.Preprocess, o.Hidden, 2, MetaInitializer.TruncatedNormal(0.1)));
        for (int l = 0; l < o.Layers; l++) list.AddRange(MetaSchema.Lstm(LstmStack.LayerName(l), o.Hidden, o.Hidden));
        list.AddRange(MetaSchema.Linear(Layers.Output, 1, o.Hidden, MetaInitializer.TruncatedNormal(0.1)));
        return list;
    }

    /// <summary>RNNprop §5: the loss after the last step of an unroll of 20, Adam at 1e-4, both tricks.</summary>
    public static TrainingDefaults Training(RnnPropOptions o) => new(MetaLoss.Last, 20, 1e-4, true);

    public RnnPropOptions Typed { get; }
    public override string Method => "rnnprop";
    public override object Options => Typed;
    public override IUpdateRule Rule { get; }

    /// <summary>The normalised inputs [g̃, m̃] and the new moments (exposed for tests).</summary>
    internal static (Tensor Inputs, Tensor M, Tensor V) Inputs(Tensor g, Tensor m0, Tensor v0, long t, RnnPropOptions o)
    {
        var m = m0.Times(o.Beta1).Plus(g.Times(1 - o.Beta1));
        var v = v0.Times(o.Beta2).Plus(g.Squared().Times(1 - o.Beta2));
        var mHat = m.Over(1 - Math.Pow(o.Beta1, t));
        var vHat = v.Over(1 - Math.Pow(o.Beta2, t));
        var sv = vHat.sqrt().Plus(o.Epsilon);
        return (stack([g / sv, mHat / sv], 1), m, v);                                   // (p, 2)
    }

    private sealed class UpdateRule(RnnProp o) : IUpdateRule
    {
        public string Name => o.DisplayName("rnnprop");

        public OptimizerState Init(Tensor parameters)
        {
            var (h, c) = o._lstm.Zeros(parameters.shape[0], parameters.dtype, parameters.device);
            return new RecurrentState(0, zeros_like(parameters), zeros_like(parameters), h, c);
        }

        public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
        {
            var s = (RecurrentState)state;
            long t = s.Step + 1;
            var (inputs, m, v) = Inputs(gradient, s.M!, s.V!, t, o.Typed);
            var x = Cells.Elu(Cells.Linear(inputs, o._preW, o._preB));                  // (p, H)
            var (top, h, c) = o._lstm.Step(x, s.H, s.C);
            var output = Cells.Linear(top, o._outW, o._outB).squeeze(1);               // (p)
            return new(output.tanh().Times(-o.Typed.StepSize), new RecurrentState(t, m, v, h, c));
        }
    }
}
