using L2O.Optimizers;
using L2O.Specs;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace L2O.Learned;

/// <summary>Hyperparameters of the thesis's learned "normalized inputs" optimizers (Shahid 2017, ch. 3).</summary>
public abstract record NormalizedHistoryOptions : LearnedOptions
{
    [Option("k", "history length (timesteps) or number of timescales (momentums)")] public int K { get; init; } = 5;
    [Option("eta-min", "minimum step η_min (thesis: 1e-4 to train, retuned after)")] public double EtaMin { get; init; } = 1e-4;
    [Option("hidden", "ReLU units of the MLP")] public int Hidden { get; init; } = 50;
    [Option("history", "timesteps (§3.4) or momentums (§3.5)")] public HistoryKind History { get; init; } = HistoryKind.Timesteps;
    [Option("reference", "midpoint (eq. 3.4) or current (eq. 3.5)")] public ReferencePoint Reference { get; init; } = ReferencePoint.Midpoint;
    [Option("min-timescale", "smallest momentum timescale")] public double MinTimescale { get; init; } = 0.2;
    [Option("max-timescale", "largest momentum timescale")] public double MaxTimescale { get; init; } = 0.99;

    public override void Validate()
    {
        Check.InRange(K, 1, 1000, "k");
        Check.NonNegative(EtaMin, "eta-min");
        Check.InRange(Hidden, 1, 4096, "hidden");
        Check.InRange(MinTimescale, 0, 1, "min-timescale", openHigh: true);
        Check.InRange(MaxTimescale, 0, 1, "max-timescale", openHigh: true);
    }
}

/// <summary>k Timesteps (thesis §3.4.2): the last k gradients, reference point at the history midpoint.</summary>
public sealed record KTimestepsOptions : NormalizedHistoryOptions;

/// <summary>k Momentums (thesis §3.5): k = 6 moving averages at timescales 0.2…0.99, reference point x_t.</summary>
public sealed record KMomentumsOptions : NormalizedHistoryOptions
{
    public KMomentumsOptions()
    {
        K = 6;
        History = HistoryKind.Momentums;
        Reference = ReferencePoint.Current;
    }
}

/// <summary>
/// The thesis's learned optimizer with normalised inputs (Shahid 2017, §3.3, Alg. 2 and 3): an MLP
/// (k → 50 ReLU → 12) reads each coordinate's gradient history normalised by its ∞-norm. Ten outputs
/// are a softmax over step magnitudes linspace(0, 1, 10), two a softmax over signs {−1, +1}; the step
/// is δ = E[magnitude]·E[sign] ∈ [−1, 1], applied as x_{t+1} = x_ref − δ ⊙ (x_max − x_min + η_min)
/// (eqs. 3.4 / 3.5 with Alg. 2's sign). Weights start N(0, 0.01), biases 0.
/// </summary>
public sealed class NormalizedHistoryOptimizer : LearnedOptimizer
{
    /// <summary>The MLP's layers' checkpoint prefixes, for the reference and the fused cell.</summary>
    internal static class Layers
    {
        /// <summary>The ReLU layer on the k normalised inputs.</summary>
        public const string Hidden = "mlp.hidden";
        /// <summary>The 12 outputs (eq. 3.2's softmax logits and step terms).</summary>
        public const string Output = "mlp.out";
    }

    private readonly Parameter _w1, _b1, _w2, _b2;
    private readonly double[] _timescales;
    private readonly string _method;

    public NormalizedHistoryOptimizer(string method, NormalizedHistoryOptions options, BuildContext context) : base(context)
    {
        _method = method;
        Typed = options;
        _timescales = ThesisHistory.LinearTimescales(options.K, options.MinTimescale, options.MaxTimescale);
        var p = Register(SchemaOf(options), options.InitSeed);
        (_w1, _b1) = (p[MetaSchema.Weight(Layers.Hidden)], p[MetaSchema.Bias(Layers.Hidden)]);
        (_w2, _b2) = (p[MetaSchema.Weight(Layers.Output)], p[MetaSchema.Bias(Layers.Output)]);
        Rule = new UpdateRule(this);
    }

    public NormalizedHistoryOptions Typed { get; }
    public override string Method => _method;
    public override object Options => Typed;
    public override IUpdateRule Rule { get; }

    /// <summary>The meta-parameters for <paramref name="o"/>: the MLP k → hidden ReLU → 12, weights N(0, 0.01²), biases 0.</summary>
    public static IReadOnlyList<MetaParameter> SchemaOf(NormalizedHistoryOptions o) =>
        [.. MetaSchema.Linear(Layers.Hidden, o.Hidden, o.K, MetaInitializer.Normal(0.01)), .. MetaSchema.Linear(Layers.Output, 12, o.Hidden, MetaInitializer.Normal(0.01))];

    /// <summary>The thesis trains by backpropagating the loss after each single step (Alg. 2), Adam at 2.5e-4.</summary>
    public static TrainingDefaults Training(NormalizedHistoryOptions o) => new(MetaLoss.Last, 1, 2.5e-4, false);

    /// <summary>δ ∈ [−1, 1] per coordinate from normalised histories (p, k).</summary>
    internal Tensor Delta(Tensor normalized)
    {
        var hidden = Cells.Linear(normalized, _w1, _b1).relu();
        var logits = Cells.Linear(hidden, _w2, _b2);                                 // (p, 12)
        var magnitudes = linspace(0, 1, 10, dtype: logits.dtype, device: logits.device);
        var magnitude = (logits.narrow(1, 0, 10).softmax(1) * magnitudes).sum(1);    // E[|δ|]
        var signs = logits.narrow(1, 10, 2).softmax(1);
        var sign = signs.select(1, 1) - signs.select(1, 0);                          // E[sign], sign ∈ {−1, +1}
        return magnitude * sign;
    }

    private sealed class UpdateRule(NormalizedHistoryOptimizer o) : IUpdateRule
    {
        public string Name => o.DisplayName($"{o._method}(k={o.Typed.K})");

        public OptimizerState Init(Tensor parameters) => new HistoryState(0, null, null);

        public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
        {
            var s = (HistoryState)state;
            var opt = o.Typed;
            using var m = opt.History == HistoryKind.Momentums ? tensor(o._timescales, parameters.dtype, parameters.device) : null;
            var hx = ThesisHistory.Push(s.X, parameters, opt.K, opt.History, m);
            var hg = ThesisHistory.Push(s.G, gradient, opt.K, opt.History, m);
            var delta = o.Delta(ThesisHistory.Normalize(hg));
            var update = ThesisHistory.ReferenceUpdate(parameters, hx, delta, opt.Reference, opt.EtaMin);
            return new(update, new HistoryState(s.Step + 1, hx, hg));
        }
    }
}
