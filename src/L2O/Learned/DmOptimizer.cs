using L2O.Optimizers;
using L2O.Specs;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Learned;

/// <summary>Hyperparameters of <see cref="DmOptimizer"/>.</summary>
public sealed record DmOptimizerOptions : LearnedOptions
{
    [Option("hidden", "width of each LSTM")] public int Hidden { get; init; } = 20;
    [Option("layers", "stacked coordinatewise LSTMs")] public int Layers { get; init; } = 2;
    [Option("scale", "output scale: Δ = scale · (W h + b); DeepMind's code 0.01, the RNNprop/HyperAdam reproductions 0.1")] public double Scale { get; init; } = 0.1;
    [Option("preprocess", "LogAndSign preprocessing of the gradient (Andrychowicz et al. 2016, appendix A)")] public bool Preprocess { get; init; } = true;
    [Option("k", "the constant of LogAndSign")] public double K { get; init; } = 5;

    public override void Validate()
    {
        Check.InRange(Hidden, 1, 4096, "hidden");
        Check.InRange(Layers, 1, 8, "layers");
        Check.Positive(Scale, "scale");
        Check.Positive(K, "k");
    }
}

/// <summary>
/// DMoptimizer (Andrychowicz et al., NIPS 2016, as described in RNNprop §1.1 and HyperAdam §2.1):
/// a coordinatewise two-layer LSTM on the gradient with a linear output, Δ = scale · (W_out h + b_out).
/// With LogAndSign the input is [max(log(|g| + ε)/k, −1), clamp(g e^k, −1, 1)], ε = float32 machine
/// epsilon, k = 5 (DeepMind's code); without it the raw gradient.
/// </summary>
/// <remarks>LSTM kernels Glorot-uniform with forget bias +1, output layer Glorot-uniform with zero bias (docs/methods/dmoptimizer.md).</remarks>
public sealed class DmOptimizer : LearnedOptimizer
{
    /// <summary>The output layer's checkpoint prefix (the LSTMs' are <see cref="LstmStack.LayerName"/>), for the reference and the fused cells.</summary>
    internal static class Layers
    {
        public const string Output = "out";
    }

    private readonly Parameter _outW, _outB;
    private readonly LstmStack _lstm;

    public DmOptimizer(DmOptimizerOptions options, BuildContext context) : base(context)
    {
        Typed = options;
        var p = Register(SchemaOf(options), options.InitSeed);
        _lstm = new LstmStack(p, options.Layers);
        (_outW, _outB) = (p[MetaSchema.Weight(Layers.Output)], p[MetaSchema.Bias(Layers.Output)]);
        Rule = new UpdateRule(this);
    }

    /// <summary>The meta-parameters for <paramref name="o"/>, in initialisation order: LSTMs Glorot-uniform with forget bias +1, output Glorot-uniform with zero bias.</summary>
    public static IReadOnlyList<MetaParameter> SchemaOf(DmOptimizerOptions o)
    {
        var list = new List<MetaParameter>();
        for (int l = 0; l < o.Layers; l++) list.AddRange(MetaSchema.Lstm(LstmStack.LayerName(l), l == 0 ? (o.Preprocess ? 2 : 1) : o.Hidden, o.Hidden));
        list.AddRange(MetaSchema.Linear(Layers.Output, 1, o.Hidden, MetaInitializer.GlorotUniform));
        return list;
    }

    /// <summary>Andrychowicz et al. 2016: the mean loss over an unroll of 20, Adam at 1e-3, no tricks.</summary>
    public static TrainingDefaults Training(DmOptimizerOptions o) => new(MetaLoss.Mean, 20, 1e-3, false);

    public DmOptimizerOptions Typed { get; }
    public override string Method => "dmoptimizer";
    public override object Options => Typed;
    public override IUpdateRule Rule { get; }

    /// <summary>The ε in LogAndSign's log(|g| + ε): float32's machine epsilon, as DeepMind's code (the reference and the fused cell).</summary>
    internal const double LogEpsilon = 1.1920928955078125e-07;

    /// <summary>LogAndSign preprocessing, (p) → (p, 2).</summary>
    public static Tensor LogAndSign(Tensor g, double k)
    {
        var log = g.abs().Plus(LogEpsilon).log().Over(k).ClampMin(-1.0);
        var sign = g.Times(Math.Exp(k)).Clamp(-1.0, 1.0);
        return stack([log, sign], 1);
    }

    private sealed class UpdateRule(DmOptimizer o) : IUpdateRule
    {
        public string Name => o.DisplayName("dmoptimizer");

        public OptimizerState Init(Tensor parameters)
        {
            var (h, c) = o._lstm.Zeros(parameters.shape[0], parameters.dtype, parameters.device);
            return new RecurrentState(0, null, null, h, c);
        }

        public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
        {
            var s = (RecurrentState)state;
            var x = o.Typed.Preprocess ? LogAndSign(gradient, o.Typed.K) : gradient.unsqueeze(1);
            var (top, h, c) = o._lstm.Step(x, s.H, s.C);
            var output = Cells.Linear(top, o._outW, o._outB).squeeze(1);
            return new(output.Times(o.Typed.Scale), new RecurrentState(s.Step + 1, null, null, h, c));
        }
    }
}
