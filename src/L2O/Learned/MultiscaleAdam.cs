using L2O.Optimizers;
using L2O.Specs;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Learned;

/// <summary>How Multiscale Adam combines its Adam steps (thesis §4.3).</summary>
public enum Combiner
{
    /// <summary>LA_a: w̄ = w / Σ w (weights sum to one, may be negative).</summary>
    LaA,
    /// <summary>LA_b: w̄ = |w| / Σ |w| (convex weights; the thesis's "LA").</summary>
    LaB,
    /// <summary>LA_c: w̄ = w (no constraint).</summary>
    LaC,
    /// <summary>MLP: per coordinate, 50 ReLU units (one or two layers) → softmax weights over the k steps.</summary>
    Mlp,
}

/// <summary>Hyperparameters of <see cref="MultiscaleAdam"/>.</summary>
public sealed record MultiscaleAdamOptions : LearnedOptions
{
    [Option("k", "number of Adam timescales: 5, 6 or 11 (thesis Table 4.1)")] public int K { get; init; } = 6;
    [Option("combiner", "la-a, la-b, la-c or mlp")] public Combiner Combiner { get; init; } = Combiner.LaB;
    [Option("hidden", "ReLU units per hidden layer (mlp)")] public int Hidden { get; init; } = 50;
    [Option("hidden-layers", "hidden layers of the mlp combiner (the thesis's 'RNN' uses 1 or 2)")] public int HiddenLayers { get; init; } = 1;
    [Option("lr", "learning rate η in x ← x − η δ")] public double StepSize { get; init; } = 0.01;
    [Option("eps", "ε of every Adam step m̂/(√v̂ + ε)")] public double Epsilon { get; init; } = 1e-8;

    public override void Validate()
    {
        if (K is not (5 or 6 or 11)) throw new L2OException($"option 'k' must be 5, 6 or 11 (the thesis's Table 4.1 sets; got {K})");
        Check.InRange(Hidden, 1, 4096, "hidden");
        Check.InRange(HiddenLayers, 1, 4, "hidden-layers");
        Check.Positive(StepSize, "lr");
        Check.NonNegative(Epsilon, "eps");
    }
}

/// <summary>
/// Multiscale Adam (Shahid 2017, ch. 4, Alg. 4 and 5): k Adam optimizers at the timescales of
/// Table 4.1 each propose a unit-rate step s_i = m̂_i / (√v̂_i + ε); a learned combiner averages them,
/// δ = Σ_i w̄_i s_i, and x ← x − η δ. The "RNN" variant is the mlp combiner trained with a 20-step
/// unroll on the mean of log(f + 1e-15) (eq. 4.1): choose it at meta-training time.
/// </summary>
/// <remarks>
/// The thesis draws all weights from N(0, 0.01); for the linear combiners that makes Σ w ≈ 0 and LA_a
/// unstable, so LA weights start at (1 + N(0, 0.01))/k, i.e. at the plain average (docs/methods/thesis.md).
/// </remarks>
public sealed class MultiscaleAdam : LearnedOptimizer
{
    /// <summary>(β1, β2) of Table 4.1a (k = 6); k = 5 drops Adam.5; k = 11 adds Table 4.1b.</summary>
    public static readonly (double B1, double B2)[] Six = [(0.99, 0.9999), (0.9, 0.999), (0.8, 0.888), (0.7, 0.777), (0.6, 0.666), (0.5, 0.555)];
    public static readonly (double B1, double B2)[] ExtraForEleven = [(0.995, 0.9995), (0.85, 0.8855), (0.75, 0.7775), (0.65, 0.6665), (0.55, 0.5555)];

    /// <summary>The meta-parameters' names, for the reference and the fused cell alike.</summary>
    internal static class Layers
    {
        /// <summary>The linear combiners' k weights w (before LA_a's or LA_b's normalisation).</summary>
        public const string LinearWeights = "la.weight";
        /// <summary>Hidden ReLU layer <paramref name="l"/> of the mlp combiner (0 reads the k unit-rate steps).</summary>
        public static string Hidden(int l) => $"mlp.hidden{l}";
        /// <summary>The mlp combiner's k logits.</summary>
        public const string Output = "mlp.out";
    }

    private readonly Parameter? _la;
    private readonly List<(Parameter W, Parameter B)> _mlp = [];

    public MultiscaleAdam(MultiscaleAdamOptions options, BuildContext context) : base(context)
    {
        Typed = options;
        Timescales = TimescalesOf(options.K);
        var p = Register(SchemaOf(options), options.InitSeed);
        if (options.Combiner == Combiner.Mlp)
        {
            for (int l = 0; l < options.HiddenLayers; l++) _mlp.Add((p[MetaSchema.Weight(Layers.Hidden(l))], p[MetaSchema.Bias(Layers.Hidden(l))]));
            _mlp.Add((p[MetaSchema.Weight(Layers.Output)], p[MetaSchema.Bias(Layers.Output)]));
        }
        else _la = p[Layers.LinearWeights];
        Rule = new UpdateRule(this);
    }

    /// <summary>The (β1, β2) of the k Adam optimizers (Table 4.1): k = 6 is Table 4.1a, 5 drops its Adam.5, 11 adds Table 4.1b.</summary>
    public static (double B1, double B2)[] TimescalesOf(int k) => k switch { 5 => Six[..5], 6 => Six, _ => Six.Concat(ExtraForEleven).ToArray() };

    public MultiscaleAdamOptions Typed { get; }
    public (double B1, double B2)[] Timescales { get; }
    public override string Method => "multiscale-adam";
    public override object Options => Typed;
    public override IUpdateRule Rule { get; }
    /// <summary>
    /// The meta-parameters for <paramref name="o"/>: the mlp combiner's layers (weights N(0, 0.01²), biases 0),
    /// or the k linear weights, which start at the plain average (see the remarks).
    /// </summary>
    public static IReadOnlyList<MetaParameter> SchemaOf(MultiscaleAdamOptions o)
    {
        if (o.Combiner != Combiner.Mlp) return [new(Layers.LinearWeights, [o.K], MetaInitializer.NearAverage(0.01))];
        var list = new List<MetaParameter>();
        int input = o.K;
        for (int l = 0; l < o.HiddenLayers; l++)
        {
            list.AddRange(MetaSchema.Linear(Layers.Hidden(l), o.Hidden, input, MetaInitializer.Normal(0.01)));
            input = o.Hidden;
        }
        list.AddRange(MetaSchema.Linear(Layers.Output, o.K, input, MetaInitializer.Normal(0.01)));
        return list;
    }

    /// <summary>The thesis: the mlp ("RNN") combiner on the mean log-loss over an unroll of 20 (eq. 4.1); the linear combiners one step at a time; Adam at 2e-4.</summary>
    public static TrainingDefaults Training(MultiscaleAdamOptions o) => o.Combiner == Combiner.Mlp
        ? new(MetaLoss.MeanLog, 20, 2e-4, false) : new(MetaLoss.Last, 1, 2e-4, false);

    /// <summary>Combination weights: (k) for the linear combiners, (p, k) for the mlp.</summary>
    internal Tensor Weights(Tensor steps)
    {
        switch (Typed.Combiner)
        {
            case Combiner.LaA: return _la! / _la!.sum();
            case Combiner.LaB: return _la!.abs() / _la!.abs().sum();
            case Combiner.LaC: return _la!;
            default:
                var x = steps;                                                        // (p, k)
                for (int l = 0; l < _mlp.Count - 1; l++) x = Cells.Linear(x, _mlp[l].W, _mlp[l].B).relu();
                return Cells.Linear(x, _mlp[^1].W, _mlp[^1].B).softmax(1);
        }
    }

    private sealed class UpdateRule(MultiscaleAdam o) : IUpdateRule
    {
        public string Name => o.DisplayName($"multiscale-adam({OptionsBinder.EnumName(o.Typed.Combiner)},k={o.Typed.K})");

        public OptimizerState Init(Tensor parameters)
        {
            var z = zeros([parameters.shape[0], o.Typed.K], dtype: parameters.dtype, device: parameters.device);
            return new TwoMomentState(0, z, z.clone());
        }

        public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
        {
            var s = (TwoMomentState)state;
            long t = s.Step + 1;
            var ts = o.Timescales;
            var b1 = tensor(ts.Select(x => x.B1).ToArray(), parameters.dtype, parameters.device);   // (k)
            var b2 = tensor(ts.Select(x => x.B2).ToArray(), parameters.dtype, parameters.device);
            var g = gradient.unsqueeze(1);
            var m = (s.M * b1).Plus(g * b1.SubtractedFrom(1));
            var v = (s.V * b2).Plus(g.Squared() * b2.SubtractedFrom(1));
            var c1 = b1.Pow(t).SubtractedFrom(1);
            var c2 = b2.Pow(t).SubtractedFrom(1);
            var steps = m / c1 / (v / c2).sqrt().Plus(o.Typed.Epsilon);                // (p, k) unit-rate Adam steps
            var delta = (steps * o.Weights(steps)).sum(1);                             // (p)
            return new(delta.Times(-o.Typed.StepSize), new TwoMomentState(t, m, v));
        }
    }
}
