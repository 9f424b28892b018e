using L2O.Specs;
using static TorchSharp.torch;

namespace L2O.Optimizers;

/// <summary>Options of <see cref="Mng"/>.</summary>
public sealed record MngOptions : IValidatable
{
    [Option("k", "history length (timesteps) or number of timescales (momentums)")] public int K { get; init; } = 5;
    [Option("eta-min", "minimum step η_min added to the history range")] public double EtaMin { get; init; } = 1e-3;
    [Option("history", "timesteps (§3.4) or momentums (§3.5)")] public HistoryKind History { get; init; } = HistoryKind.Timesteps;
    [Option("reference", "midpoint (eq. 3.4) or current (eq. 3.5)")] public ReferencePoint Reference { get; init; } = ReferencePoint.Midpoint;
    [Option("sign-only", "use only gradient signs (the thesis's Fig. 3.4 ablation)")] public bool SignOnly { get; init; }
    [Option("min-timescale", "smallest momentum timescale (momentums only)")] public double MinTimescale { get; init; } = 0.2;
    [Option("max-timescale", "largest momentum timescale (momentums only)")] public double MaxTimescale { get; init; } = 0.99;

    public void Validate()
    {
        Check.InRange(K, 1, 1000, "k");
        Check.NonNegative(EtaMin, "eta-min");
        Check.InRange(MinTimescale, 0, 1, "min-timescale", openHigh: true);
        Check.InRange(MaxTimescale, 0, 1, "max-timescale", openHigh: true);
    }
}

/// <summary>History state of the thesis family: H_x and H_∇L (n×k each), null before the first step.</summary>
public sealed record HistoryState(long Step, Tensor? X, Tensor? G) : OptimizerState
{
    public override IEnumerable<Tensor> Tensors => X is null ? [] : [X, G!];
    public override OptimizerState Map(Func<Tensor, Tensor> f) => X is null ? this : this with { X = f(X), G = f(G!) };
}

/// <summary>
/// Mean Normalized Gradient (Shahid 2017, §3.4.1, Algorithm 1). Keeps the last k parameters and
/// gradients per coordinate, normalises each gradient row by its ∞-norm, takes the mean as the step
/// δ ∈ [−1, 1] and moves to x_{t+1} = x_ref − δ ⊙ (x_max − x_min + η_min).
/// </summary>
/// <remarks>
/// Eq. 3.4 writes "+ δ"; Algorithm 1 writes "− δ". With δ the mean of normalised gradients, only
/// the minus sign descends, so it is used here. The first step fills the history with k copies of
/// (x_0, g_0), so x_max − x_min = 0 and the first move is η_min·δ, as the thesis describes.
/// </remarks>
public sealed class Mng : IUpdateRule
{
    private readonly double[] _timescales;

    public Mng(MngOptions options)
    {
        Options = options;
        _timescales = ThesisHistory.LinearTimescales(options.K, options.MinTimescale, options.MaxTimescale);
    }

    public MngOptions Options { get; }
    public string Name => $"mng(k={Options.K},eta-min={Specs.Spec.Short(Options.EtaMin)}{(Options.History == HistoryKind.Momentums ? ",momentums" : "")})";

    public OptimizerState Init(Tensor parameters) => new HistoryState(0, null, null);

    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (HistoryState)state;
        using var m = Options.History == HistoryKind.Momentums ? tensor(_timescales, parameters.dtype, parameters.device) : null;
        var hx = ThesisHistory.Push(s.X, parameters, Options.K, Options.History, m);
        var hg = ThesisHistory.Push(s.G, gradient, Options.K, Options.History, m);
        var normalized = Options.SignOnly ? hg.sign() : ThesisHistory.Normalize(hg);
        var delta = normalized.mean([1]);
        var update = ThesisHistory.ReferenceUpdate(parameters, hx, delta, Options.Reference, Options.EtaMin);
        return new(update, new HistoryState(s.Step + 1, hx, hg));
    }
}
