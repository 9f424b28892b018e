using L2O.Specs;
using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Optimizers;

// Hand-designed update rules. Each is pure and out of place (see IUpdateRule); equations use
// g = gradient, w = parameters, Δ = returned increment (w′ = w + Δ). Defaults follow torch.optim
// where it has the rule, so that torch.optim can serve as a test oracle; docs/optimizers.md lists
// how they differ from the TensorFlow defaults the papers' baselines used.

/// <summary>Options of <see cref="Sgd"/>.</summary>
public sealed record SgdOptions : IValidatable
{
    [Option("lr", "learning rate α")] public double LearningRate { get; init; } = 0.01;
    public void Validate() => Check.Positive(LearningRate, "lr");
}

/// <summary>Stochastic gradient descent: Δ = −α g (RNNprop Table 1; thesis §1.1).</summary>
public sealed class Sgd(SgdOptions options) : IUpdateRule
{
    public SgdOptions Options { get; } = options;
    public string Name => $"sgd(lr={Spec.Short(Options.LearningRate)})";
    public OptimizerState Init(Tensor parameters) => EmptyState.Instance;
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state) => new(gradient.Times(-Options.LearningRate), state);
}

/// <summary>Options of <see cref="Momentum"/>.</summary>
public sealed record MomentumOptions : IValidatable
{
    [Option("lr", "learning rate α")] public double LearningRate { get; init; } = 0.01;
    [Option("gamma", "EMA decay γ of the gradient average")] public double Gamma { get; init; } = 0.9;
    public void Validate() { Check.Positive(LearningRate, "lr"); Check.InRange(Gamma, 0, 1, "gamma", openHigh: true); }
}

/// <summary>A state holding one moving average and the step count.</summary>
public sealed record MomentState(long Step, Tensor M) : OptimizerState
{
    public override IEnumerable<Tensor> Tensors => [M];
    public override OptimizerState Map(Func<Tensor, Tensor> f) => this with { M = f(M) };
}

/// <summary>
/// Momentum in the exponential-moving-average form of RNNprop Table 1:
/// m_t = γ m_{t−1} + (1−γ) g_t, Δ = −α m_t, m_0 = 0.
/// </summary>
public sealed class Momentum(MomentumOptions options) : IUpdateRule
{
    public MomentumOptions Options { get; } = options;
    public string Name => $"momentum(lr={Spec.Short(Options.LearningRate)},gamma={Spec.Short(Options.Gamma)})";
    public OptimizerState Init(Tensor parameters) => new MomentState(0, zeros_like(parameters));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (MomentState)state;
        var m = s.M.Times(Options.Gamma).Plus(gradient.Times(1 - Options.Gamma));
        return new(m.Times(-Options.LearningRate), new MomentState(s.Step + 1, m));
    }
}

/// <summary>Options of <see cref="HeavyBall"/> and <see cref="Nesterov"/>.</summary>
public sealed record HeavyBallOptions : IValidatable
{
    [Option("lr", "learning rate α")] public double LearningRate { get; init; } = 0.01;
    [Option("momentum", "momentum coefficient μ")] public double Momentum { get; init; } = 0.9;
    public void Validate() { Check.Positive(LearningRate, "lr"); Check.InRange(Momentum, 0, 1, "momentum", openHigh: true); }
}

/// <summary>
/// Classic heavy-ball momentum (Polyak; thesis §1.1; torch.optim.SGD with momentum, dampening 0):
/// b_t = μ b_{t−1} + g_t with b_0 = 0, Δ = −α b_t.
/// </summary>
public sealed class HeavyBall(HeavyBallOptions options) : IUpdateRule
{
    public HeavyBallOptions Options { get; } = options;
    public string Name => $"heavy-ball(lr={Spec.Short(Options.LearningRate)},momentum={Spec.Short(Options.Momentum)})";
    public OptimizerState Init(Tensor parameters) => new MomentState(0, zeros_like(parameters));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (MomentState)state;
        var b = s.M.Times(Options.Momentum).Plus(gradient);
        return new(b.Times(-Options.LearningRate), new MomentState(s.Step + 1, b));
    }
}

/// <summary>
/// Nesterov momentum in the form of torch.optim.SGD(nesterov=True) (Sutskever et al. 2013):
/// b_t = μ b_{t−1} + g_t, Δ = −α (g_t + μ b_t). This evaluates the gradient at the current
/// point; it equals the look-ahead form of thesis §1.1 after a change of variables.
/// </summary>
public sealed class Nesterov(HeavyBallOptions options) : IUpdateRule
{
    public HeavyBallOptions Options { get; } = options;
    public string Name => $"nesterov(lr={Spec.Short(Options.LearningRate)},momentum={Spec.Short(Options.Momentum)})";
    public OptimizerState Init(Tensor parameters) => new MomentState(0, zeros_like(parameters));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (MomentState)state;
        var b = s.M.Times(Options.Momentum).Plus(gradient);
        return new(gradient.Plus(b.Times(Options.Momentum)).Times(-Options.LearningRate), new MomentState(s.Step + 1, b));
    }
}

/// <summary>Options of <see cref="Adagrad"/>.</summary>
public sealed record AdagradOptions : IValidatable
{
    [Option("lr", "learning rate α")] public double LearningRate { get; init; } = 0.01;
    [Option("eps", "ε added to √G")] public double Epsilon { get; init; } = 1e-10;
    [Option("initial", "initial accumulator value G_0 (TensorFlow uses 0.1)")] public double InitialAccumulator { get; init; } = 0.0;
    public void Validate() { Check.Positive(LearningRate, "lr"); Check.NonNegative(Epsilon, "eps"); Check.NonNegative(InitialAccumulator, "initial"); }
}

/// <summary>
/// Adagrad (Duchi et al. 2011; RNNprop Table 1): G_t = G_{t−1} + g_t², Δ = −α g_t / (√G_t + ε).
/// </summary>
public sealed class Adagrad(AdagradOptions options) : IUpdateRule
{
    public AdagradOptions Options { get; } = options;
    public string Name => $"adagrad(lr={Spec.Short(Options.LearningRate)})";
    public OptimizerState Init(Tensor parameters) => new MomentState(0, KeptScalars.FullLike(parameters, Options.InitialAccumulator));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (MomentState)state;
        var g2 = s.M.Plus(gradient.Squared());
        return new((gradient / g2.sqrt().Plus(Options.Epsilon)).Times(-Options.LearningRate), new MomentState(s.Step + 1, g2));
    }
}

/// <summary>Options of <see cref="Adadelta"/>.</summary>
public sealed record AdadeltaOptions : IValidatable
{
    [Option("lr", "learning rate α (scales the unit-corrected step)")] public double LearningRate { get; init; } = 1.0;
    [Option("rho", "decay ρ of both running averages")] public double Rho { get; init; } = 0.9;
    [Option("eps", "ε inside both square roots")] public double Epsilon { get; init; } = 1e-6;
    public void Validate() { Check.Positive(LearningRate, "lr"); Check.InRange(Rho, 0, 1, "rho", openHigh: true); Check.Positive(Epsilon, "eps"); }
}

/// <summary>A state with two running averages and the step count.</summary>
public sealed record TwoMomentState(long Step, Tensor M, Tensor V) : OptimizerState
{
    public override IEnumerable<Tensor> Tensors => [M, V];
    public override OptimizerState Map(Func<Tensor, Tensor> f) => this with { M = f(M), V = f(V) };
}

/// <summary>
/// Adadelta (Zeiler 2012; RNNprop Table 1 with β1 = β2 = ρ):
/// v_t = ρ v_{t−1} + (1−ρ) g_t², δ_t = g_t √(D_{t−1}+ε) / √(v_t+ε), D_t = ρ D_{t−1} + (1−ρ) δ_t², Δ = −α δ_t.
/// State: M = D (squared-update average), V = v (squared-gradient average).
/// </summary>
public sealed class Adadelta(AdadeltaOptions options) : IUpdateRule
{
    public AdadeltaOptions Options { get; } = options;
    public string Name => $"adadelta(lr={Spec.Short(Options.LearningRate)},rho={Spec.Short(Options.Rho)})";
    public OptimizerState Init(Tensor parameters) => new TwoMomentState(0, zeros_like(parameters), zeros_like(parameters));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (TwoMomentState)state;
        double rho = Options.Rho, eps = Options.Epsilon;
        var v = s.V.Times(rho).Plus(gradient.Squared().Times(1 - rho));
        var delta = gradient * s.M.Plus(eps).sqrt() / v.Plus(eps).sqrt();
        var d = s.M.Times(rho).Plus(delta.Squared().Times(1 - rho));
        return new(delta.Times(-Options.LearningRate), new TwoMomentState(s.Step + 1, d, v));
    }
}

/// <summary>Options of <see cref="RmsProp"/>.</summary>
public sealed record RmsPropOptions : IValidatable
{
    [Option("lr", "learning rate α")] public double LearningRate { get; init; } = 0.01;
    [Option("rho", "decay of the squared-gradient average (torch: alpha)")] public double Rho { get; init; } = 0.99;
    [Option("eps", "ε added to √v")] public double Epsilon { get; init; } = 1e-8;
    public void Validate() { Check.Positive(LearningRate, "lr"); Check.InRange(Rho, 0, 1, "rho", openHigh: true); Check.NonNegative(Epsilon, "eps"); }
}

/// <summary>
/// RMSprop (Tieleman and Hinton 2012; RNNprop Table 1): v_t = ρ v_{t−1} + (1−ρ) g_t², Δ = −α g_t / (√v_t + ε).
/// </summary>
public sealed class RmsProp(RmsPropOptions options) : IUpdateRule
{
    public RmsPropOptions Options { get; } = options;
    public string Name => $"rmsprop(lr={Spec.Short(Options.LearningRate)})";
    public OptimizerState Init(Tensor parameters) => new MomentState(0, zeros_like(parameters));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (MomentState)state;
        var v = s.M.Times(Options.Rho).Plus(gradient.Squared().Times(1 - Options.Rho));
        return new((gradient / v.sqrt().Plus(Options.Epsilon)).Times(-Options.LearningRate), new MomentState(s.Step + 1, v));
    }
}

/// <summary>Options of <see cref="Adam"/> and <see cref="Adamax"/>.</summary>
public sealed record AdamOptions : IValidatable
{
    [Option("lr", "learning rate α")] public double LearningRate { get; init; } = 0.001;
    [Option("beta1", "decay β1 of the first moment")] public double Beta1 { get; init; } = 0.9;
    [Option("beta2", "decay β2 of the second moment")] public double Beta2 { get; init; } = 0.999;
    [Option("eps", "ε added to the denominator")] public double Epsilon { get; init; } = 1e-8;
    public void Validate()
    {
        Check.Positive(LearningRate, "lr");
        Check.InRange(Beta1, 0, 1, "beta1", openHigh: true);
        Check.InRange(Beta2, 0, 1, "beta2", openHigh: true);
        Check.NonNegative(Epsilon, "eps");
    }
}

/// <summary>
/// Adam (Kingma and Ba 2015; HyperAdam Alg. 1; RNNprop Table 1):
/// m_t = β1 m_{t−1} + (1−β1) g_t, v_t = β2 v_{t−1} + (1−β2) g_t²,
/// m̂ = m_t/(1−β1^t), v̂ = v_t/(1−β2^t), Δ = −α m̂ / (√v̂ + ε).
/// </summary>
public sealed class Adam(AdamOptions options) : IUpdateRule
{
    public AdamOptions Options { get; } = options;
    public string Name => $"adam(lr={Spec.Short(Options.LearningRate)})";
    public OptimizerState Init(Tensor parameters) => new TwoMomentState(0, zeros_like(parameters), zeros_like(parameters));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (TwoMomentState)state;
        var o = Options;
        long t = s.Step + 1;
        var m = s.M.Times(o.Beta1).Plus(gradient.Times(1 - o.Beta1));
        var v = s.V.Times(o.Beta2).Plus(gradient.Squared().Times(1 - o.Beta2));
        double c1 = 1 - Math.Pow(o.Beta1, t), c2 = 1 - Math.Pow(o.Beta2, t);
        var update = (m / v.Over(c2).sqrt().Plus(o.Epsilon)).Times(-o.LearningRate / c1);
        return new(update, new TwoMomentState(t, m, v));
    }
}

/// <summary>
/// Adamax (Kingma and Ba 2015 §7.1; thesis §1.1), in torch.optim's form:
/// m_t = β1 m_{t−1} + (1−β1) g_t, u_t = max(β2 u_{t−1}, |g_t| + ε), Δ = −α m_t / ((1−β1^t) u_t).
/// </summary>
public sealed class Adamax(AdamOptions options) : IUpdateRule
{
    public AdamOptions Options { get; } = options;
    public string Name => $"adamax(lr={Spec.Short(Options.LearningRate)})";
    public OptimizerState Init(Tensor parameters) => new TwoMomentState(0, zeros_like(parameters), zeros_like(parameters));
    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (TwoMomentState)state;
        var o = Options;
        long t = s.Step + 1;
        var m = s.M.Times(o.Beta1).Plus(gradient.Times(1 - o.Beta1));
        var u = maximum(s.V.Times(o.Beta2), gradient.abs().Plus(o.Epsilon));
        var update = (m / u).Times(-o.LearningRate / (1 - Math.Pow(o.Beta1, t)));
        return new(update, new TwoMomentState(t, m, u));
    }
}
