using L2O.Optimizers;
using L2O.Specs;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Learned;

/// <summary>Hyperparameters of <see cref="HyperAdam"/> (defaults: HyperAdam §4 and the authors' code).</summary>
public sealed record HyperAdamOptions : LearnedOptions
{
    [Option("j", "number J of Adam candidates (also the state width)")] public int Candidates { get; init; } = 20;
    [Option("lr", "step size α in w ← w − α d")] public double StepSize { get; init; } = 0.005;
    [Option("eps", "ε inside the square root of the moment field")] public double Epsilon { get; init; } = 1e-24;
    [Option("lstm", "StateCell uses its LSTM (false: ablation 'without LSTM')")] public bool UseLstm { get; init; } = true;
    [Option("preprocess", "StateCell preprocesses with FC + ELU (false: ablation 'without preprocessing')")] public bool Preprocess { get; init; } = true;
    [Option("input-norm", "how ĝ and the columns of m′ are normalised: l2 (the paper: unit Euclidean norm, entries shrink like 1/√p) or rms (unit root-mean-square, the same scale for every p)")]
    public InputNorm InputNorm { get; init; } = InputNorm.L2;
    [Option("coupled", "γ = β² + (1 − β²) σ(z_γ) instead of σ(z_γ), so γ ≥ β² and m̂ stays bounded when gradients shrink (this library's extension, docs/methods/hyperadam.md)")]
    public bool CoupledDecays { get; init; }
    [Option("gamma-min", "lower bound γ_min of the second-moment decays: γ = γ_min + (1 − γ_min) γ_cell, so v remembers at least about 1/(1 − γ_min) steps (0: the paper; this library's extension, docs/methods/hyperadam.md)")]
    public double GammaMin { get; init; }
    [Option("field-clip", "bound c on each candidate direction: m̂ ← clamp(m̂, −c, c), so no coordinate's step exceeds α c Σ|ρ| (0: no bound, the paper; this library's extension, docs/methods/hyperadam.md)")]
    public double FieldClip { get; init; }
    [Option("state-norm", "AdamCell reads s′ = s_t normalised column-wise like m′ instead of s_t (the authors' code; the WeightCell still reads s_t); on the engine, two passes per step in the lanes cell")]
    public bool NormalizeState { get; init; }

    public override void Validate()
    {
        Check.InRange(Candidates, 1, 4096, "j");
        Check.Positive(StepSize, "lr");
        Check.NonNegative(Epsilon, "eps");
        Check.InRange(GammaMin, 0, 1, "gamma-min", openHigh: true);
        Check.NonNegative(FieldClip, "field-clip");
    }

    /// <summary>
    /// The second-moment decay from the cell's σ = σ([m′, s] θ_r + b_r), written as γ = L + (1 − L) σ with
    /// L = γ_min (coupled: L = γ_min + (1 − γ_min) β²) and 1 − γ = (1 − L)(1 − σ): no subtraction near 1.
    /// </summary>
    internal bool BoundsGamma => CoupledDecays || GammaMin > 0;
}

/// <summary>How HyperAdam normalises the gradient ĝ and the columns of m′ that its cells read.</summary>
public enum InputNorm
{
    /// <summary>x / √(Σ x² + 1e-16): unit Euclidean norm over the p coordinates (HyperAdam §3.2, eqs. 4–5).</summary>
    L2,
    /// <summary>x / √(Σ x² / p + 1e-16) = √p times the L2 form: unit root-mean-square, so the inputs keep their scale when p changes (this library's extension, docs/methods/hyperadam.md).</summary>
    Rms,
}

/// <summary>State of <see cref="HyperAdam"/>: StateCell's LSTM (h = s_t, c) and AdamCell's C_t = [m, v, β̂, γ̂], each (p, J).</summary>
public sealed record HyperAdamState(long Step, Tensor? H, Tensor? C, Tensor M, Tensor V, Tensor BetaHat, Tensor GammaHat) : OptimizerState
{
    public override IEnumerable<Tensor> Tensors => H is null ? [M, V, BetaHat, GammaHat] : [H, C!, M, V, BetaHat, GammaHat];

    public override OptimizerState Map(Func<Tensor, Tensor> f) =>
        this with { H = H is null ? null : f(H), C = C is null ? null : f(C), M = f(M), V = f(V), BetaHat = f(BetaHat), GammaHat = f(GammaHat) };
}

/// <summary>
/// HyperAdam (Wang, Sun and Xu, AAAI 2019; Algorithm 2, eqs. 3–7): J Adam candidates with learned,
/// state-dependent decay rates, combined with learned ELU weights.
/// <code>
/// StateCell:  ĝ = g/‖g‖₂ (whole vector; input-norm=rms: g/(‖g‖₂/√p)), x = ELU(ĝ W_pre + b_pre), (s_t, c_t) = LSTM(x, s_{t−1}, c_{t−1})
/// AdamCell:   m′ = m_{t−1} / ‖m_{t−1}‖₂ (column-wise over coordinates)
///             β_t = σ([m′, s_t] θ_u + b_u),  γ_t = σ([m′, s_t] θ_r + b_r)                    (4), (5)
///             (state-norm=true: s_t ← s′ = s_t / ‖s_t‖₂ column-wise in these two, as the authors' code does)
///             (coupled=true: γ_t = β_t² + (1 − β_t²) σ([m′, s_t] θ_r + b_r), so γ ≥ β²)
///             (gamma-min=γ_min: γ_t ← γ_min + (1 − γ_min) γ_t, so γ ≥ γ_min)
///             [m, v, β̂, γ̂]_t = F ⊙ [m, v, β̂, γ̂]_{t−1} + (1 − F) ⊙ [G, G², 1, 1],  F = [β, γ, β, γ]   (3)
///             m̂ = (m/β̂) / √(v/γ̂ + ε)                                                        (Alg. 2 l. 16)
///             (field-clip=c: m̂ ← clamp(m̂, −c, c); the gradient is zero where the bound acts, as torch.clamp's)
/// WeightCell: ρ_t = ELU(s_t θ_q + b_q)                                                        (6)
/// Update:     d_t = Σ_j ρ_t^j ⊙ m̂_t^j,  w_t = w_{t−1} − α d_t                                 (7)
/// </code>
/// </summary>
/// <remarks>
/// Choices where the paper is silent (docs/methods/hyperadam.md): ‖·‖ uses √(Σx² + 1e-16) so a zero
/// gradient or zero m stays finite; β̂ and γ̂ are floored at 1e-30 before dividing (a decay of exactly 1
/// in floating point would otherwise give 0/0 at t = 1); "without LSTM" uses s_t = ELU(ĝ W_pre + b_pre),
/// "without preprocessing" feeds ĝ (width 1) to the LSTM, and without both s_t = ĝ W_e + b_e (linear).
/// Initialisation follows the authors' code: Glorot-uniform kernels, zero biases, LSTM forget bias +1,
/// WeightCell weights truncated-normal(0.1).
/// </remarks>
public sealed class HyperAdam : LearnedOptimizer
{
    /// <summary>The floor under β̂ and γ̂ before dividing (the reference and the fused cells).</summary>
    internal const double BiasFloor = 1e-30;

    /// <summary>The layers' checkpoint prefixes (tensor names through <see cref="MetaSchema"/>), for the reference and the fused cells.</summary>
    internal static class Layers
    {
        /// <summary>StateCell's FC before the LSTM (absent without preprocessing).</summary>
        public const string Preprocess = "state.pre";
        /// <summary>StateCell's LSTM (absent without the LSTM).</summary>
        public const string Lstm = "state.lstm";
        /// <summary>StateCell's linear embedding when it has neither (the "both" ablation).</summary>
        public const string Embed = "state.embed";
        /// <summary>AdamCell's first-moment decay layer on [m′, s].</summary>
        public const string Beta = "adam.beta";
        /// <summary>AdamCell's second-moment decay layer on [m′, s].</summary>
        public const string Gamma = "adam.gamma";
        /// <summary>WeightCell's layer giving ρ.</summary>
        public const string Rho = "weight";
    }

    private readonly Parameter? _preW, _preB, _embW, _embB;
    private readonly LstmStack? _lstm;
    private readonly Parameter _betaW, _betaB, _gammaW, _gammaB, _rhoW, _rhoB;

    public HyperAdam(HyperAdamOptions options, BuildContext context) : base(context)
    {
        Typed = options;
        var p = Register(SchemaOf(options), options.InitSeed);
        _preW = p.GetValueOrDefault(MetaSchema.Weight(Layers.Preprocess)); _preB = p.GetValueOrDefault(MetaSchema.Bias(Layers.Preprocess));
        if (options.UseLstm) _lstm = new LstmStack(p, 1, _ => Layers.Lstm);
        _embW = p.GetValueOrDefault(MetaSchema.Weight(Layers.Embed)); _embB = p.GetValueOrDefault(MetaSchema.Bias(Layers.Embed));
        (_betaW, _betaB) = (p[MetaSchema.Weight(Layers.Beta)], p[MetaSchema.Bias(Layers.Beta)]);
        (_gammaW, _gammaB) = (p[MetaSchema.Weight(Layers.Gamma)], p[MetaSchema.Bias(Layers.Gamma)]);
        (_rhoW, _rhoB) = (p[MetaSchema.Weight(Layers.Rho)], p[MetaSchema.Bias(Layers.Rho)]);
        Rule = new UpdateRule(this);
    }

    /// <summary>
    /// The meta-parameters for <paramref name="o"/>, in initialisation order. Following the authors' code:
    /// Glorot-uniform kernels, zero biases, LSTM forget bias +1, WeightCell weights truncated-normal(0.1).
    /// </summary>
    public static IReadOnlyList<MetaParameter> SchemaOf(HyperAdamOptions o)
    {
        int j = o.Candidates;
        var list = new List<MetaParameter>();
        if (o.Preprocess) list.AddRange(MetaSchema.Linear(Layers.Preprocess, j, 1, MetaInitializer.GlorotUniform));
        if (o.UseLstm) list.AddRange(MetaSchema.Lstm(Layers.Lstm, o.Preprocess ? j : 1, j));
        if (!o.UseLstm && !o.Preprocess) list.AddRange(MetaSchema.Linear(Layers.Embed, j, 1, MetaInitializer.GlorotUniform));
        list.AddRange(MetaSchema.Linear(Layers.Beta, j, 2 * j, MetaInitializer.GlorotUniform));
        list.AddRange(MetaSchema.Linear(Layers.Gamma, j, 2 * j, MetaInitializer.GlorotUniform));
        list.AddRange(MetaSchema.Linear(Layers.Rho, j, j, MetaInitializer.TruncatedNormal(0.1)));
        return list;
    }

    public HyperAdamOptions Typed { get; }
    public override string Method => "hyperadam";
    public override object Options => Typed;
    public override IUpdateRule Rule { get; }

    /// <summary>The paper's meta-training (§4): the mean of the losses over an unroll of 20, Adam at 1e-4, both tricks.</summary>
    public static TrainingDefaults Training(HyperAdamOptions o) => new(MetaLoss.Mean, 20, 1e-4, true);

    private sealed class UpdateRule(HyperAdam o) : IUpdateRule
    {
        public string Name => o.DisplayName($"hyperadam(j={o.Typed.Candidates})");

        public OptimizerState Init(Tensor parameters)
        {
            long p = parameters.shape[0];
            int j = o.Typed.Candidates;
            Tensor Z() => zeros([p, j], dtype: parameters.dtype, device: parameters.device);
            return o.Typed.UseLstm ? new HyperAdamState(0, Z(), Z(), Z(), Z(), Z(), Z()) : new HyperAdamState(0, null, null, Z(), Z(), Z(), Z());
        }

        public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
        {
            var s = (HyperAdamState)state;
            var opt = o.Typed;

            // StateCell.
            bool rms = opt.InputNorm == InputNorm.Rms;
            var gHat = Cells.SafeNormalize(gradient, rms: rms).unsqueeze(1);              // (p, 1)
            var x = opt.Preprocess ? Cells.Elu(Cells.Linear(gHat, o._preW!, o._preB)) : gHat;   // (p, J) or (p, 1)
            Tensor st; Tensor? h = null, c = null;
            if (opt.UseLstm)
            {
                var (top, hs, cs) = o._lstm!.Step(x, [s.H!], [s.C!]);
                (st, h, c) = (top, hs[0], cs[0]);                                        // s_t = h_t, (p, J)
            }
            else
            {
                st = opt.Preprocess ? x : Cells.Linear(gHat, o._embW!, o._embB);
            }

            // AdamCell: decay rates from the column-normalised previous first moments and the state
            // (the state column-normalised too with state-norm=true, as in the authors' code).
            var adamState = opt.NormalizeState ? Cells.SafeNormalize(st, 0, rms) : st;
            var features = cat([Cells.SafeNormalize(s.M, 0, rms), adamState], 1);          // (p, 2J)
            var beta = Cells.Linear(features, o._betaW, o._betaB).sigmoid();              // (p, J)
            var gamma = Cells.Linear(features, o._gammaW, o._gammaB).sigmoid();
            var oneMinusGamma = gamma.SubtractedFrom(1);
            if (opt.BoundsGamma)
            {
                // γ = L + (1 − L) σ: L = γ_min, coupled L = γ_min + (1 − γ_min) β² (γ ≥ β²).
                double k = 1 - opt.GammaMin;
                var (lower, oneMinusL) = opt.CoupledDecays
                    ? (beta.Squared().Times(k).Plus(opt.GammaMin), beta.Squared().SubtractedFrom(1).Times(k))
                    : (KeptScalars.FullLike(gamma, opt.GammaMin), KeptScalars.FullLike(gamma, k));
                gamma = lower.Plus(oneMinusL * gamma);
                oneMinusGamma = oneMinusL * oneMinusGamma;
            }
            var g = gradient.unsqueeze(1);                                                // G_t broadcast over J
            var m = (beta * s.M).Plus(beta.SubtractedFrom(1) * g);
            var v = (gamma * s.V).Plus(oneMinusGamma * g.Squared());
            var betaHat = (beta * s.BetaHat).Plus(beta.SubtractedFrom(1));
            var gammaHat = (gamma * s.GammaHat).Plus(oneMinusGamma);
            var field = m / betaHat.ClampMin(BiasFloor) / (v / gammaHat.ClampMin(BiasFloor)).Plus(opt.Epsilon).sqrt();   // m̂, (p, J)
            // Learned, time-varying β and γ do not bound |m̂| as Adam's β₁ < √β₂ does (docs/methods/hyperadam.md).
            if (opt.FieldClip > 0) field = field.Clamp(-opt.FieldClip, opt.FieldClip);

            // WeightCell and combination.
            var rho = Cells.Elu(Cells.Linear(st, o._rhoW, o._rhoB));                      // (p, J)
            var direction = (rho * field).sum(1);                                          // d_t, (p)
            if (o.Probe is { } probe)
            {
                probe("g_hat", gHat); probe("lstm_input", x); probe("state", st); probe("m_norm", features.narrow(1, 0, opt.Candidates));
                if (opt.NormalizeState) probe("state_norm", adamState);
                probe("beta", beta); probe("gamma", gamma); probe("rho", rho); probe("rho_sum", rho.sum(1)); probe("field", field);
            }
            return new(direction.Times(-opt.StepSize), new HyperAdamState(s.Step + 1, h, c, m, v, betaHat, gammaHat));
        }
    }
}
