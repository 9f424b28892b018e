using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Specs;
using Parameter = TorchSharp.Modules.Parameter;

namespace L2O;

/// <summary>
/// TorchSharp optimizers in torch.optim's shape, learned and hand-designed, e.g.
/// <c>L2O.Optim.HyperAdam(model.parameters())</c>. Each returns a <see cref="RuleOptimizer"/>, a
/// <c>torch.optim.Optimizer</c>, so <c>step()</c>, <c>zero_grad()</c>, parameter groups, learning-rate
/// schedulers and <c>save_state_dict</c> / <c>load_state_dict</c> work as for <c>torch.optim.Adam</c>.
/// </summary>
/// <remarks>
/// <c>lr</c> of a learned optimizer is a multiplier on its learned step (1 = as meta-trained), so a
/// schedule such as <c>StepLR</c> scales the step it learned; <c>lr</c> of a hand-designed rule is its
/// learning rate, as in torch.optim. The update rule underneath is the one evaluation and meta-training
/// use (<see cref="IUpdateRule"/>); see <see cref="RuleOptimizer"/> for parameter groups.
/// </remarks>
public static class Optim
{
    /// <summary>HyperAdam (Wang et al. 2019); <paramref name="checkpoint"/> defaults to the shipped meta-trained one.</summary>
    /// <param name="lr">Multiplier on the learned step α d_t (1 = as meta-trained).</param>
    /// <param name="checkpoint">A safetensors file written by <c>l2o meta-train</c>, <c>pretrained</c> (the shipped one) or <c>pretrained-NAME</c> (a shipped variant, e.g. <c>pretrained-mix</c>).</param>
    /// <param name="backend">Auto: the fused CPU engine for float32 CPU parameters, else the TorchSharp reference.</param>
    public static RuleOptimizer HyperAdam(IEnumerable<Parameter> parameters, double lr = 1.0, string checkpoint = Pretrained.Keyword, Backend backend = Backend.Auto) =>
        LearnedMethod(parameters, "hyperadam", checkpoint, lr, backend);

    /// <summary>RNNprop (Lv et al. 2017); <paramref name="lr"/> multiplies the learned step (1 = as meta-trained).</summary>
    public static RuleOptimizer RNNprop(IEnumerable<Parameter> parameters, double lr = 1.0, string checkpoint = Pretrained.Keyword, Backend backend = Backend.Auto) =>
        LearnedMethod(parameters, "rnnprop", checkpoint, lr, backend);

    /// <summary>DMoptimizer (Andrychowicz et al. 2016); <paramref name="lr"/> multiplies the learned step (1 = as meta-trained).</summary>
    public static RuleOptimizer DMOptimizer(IEnumerable<Parameter> parameters, double lr = 1.0, string checkpoint = Pretrained.Keyword, Backend backend = Backend.Auto) =>
        LearnedMethod(parameters, "dmoptimizer", checkpoint, lr, backend);

    /// <summary>Any learned optimizer from a checkpoint file (its method and architecture are read from the file).</summary>
    public static RuleOptimizer Learned(IEnumerable<Parameter> parameters, string checkpoint, double lr = 1.0, Backend backend = Backend.Auto) =>
        new(parameters, context => LearnedRule(LearnedRegistry.Load(checkpoint, context), context with { Backend = backend }), lr, 1.0);

    /// <summary>
    /// Any optimizer of the registry (<c>l2o list</c>) by specification, e.g. <c>adam:lr=0.01</c>,
    /// <c>rnnprop:checkpoint=runs/x/best-validation.safetensors</c> or <c>mng:k=5</c>.
    /// </summary>
    /// <param name="lr">
    /// Initial group learning rate. Hand-designed rules with an <c>lr</c> option: defaults to it, and a
    /// scheduler's value replaces it. Learned rules and rules without <c>lr</c>: a multiplier on the update (default 1).
    /// </param>
    public static RuleOptimizer Create(IEnumerable<Parameter> parameters, string spec, double? lr = null, Backend backend = Backend.Auto)
    {
        var parsed = Spec.Parse(spec);
        var info = OptimizerRegistry.Find(parsed.Name);
        var options = OptionsBinder.Bind(info.OptionsType, info.Name, parsed.Arguments);
        if (info.Learned)
        {
            var method = LearnedRegistry.Find(info.Name);
            return new(parameters, context => LearnedRule(LearnedRegistry.Build(method, options, context), context with { Backend = backend }), lr ?? 1.0, 1.0);
        }
        double reference = info.HasLearningRate ? double.Parse(OptionsBinder.ToArguments(options)["lr"], System.Globalization.CultureInfo.InvariantCulture) : 1.0;
        return new(parameters, context => (info.Create(options, context), null), lr ?? reference, reference);
    }

    /// <summary>SGD as torch.optim.SGD: Δ = −α g; with <paramref name="momentum"/> μ &gt; 0 heavy ball b = μb + g, Δ = −α b, or Nesterov Δ = −α (g + μb).</summary>
    public static RuleOptimizer SGD(IEnumerable<Parameter> parameters, double lr = 0.01, double momentum = 0, bool nesterov = false)
    {
        if (nesterov && momentum == 0) throw new L2OException("nesterov needs a momentum > 0");
        if (momentum == 0) return Hand(parameters, lr, new Sgd(Valid(new SgdOptions { LearningRate = lr })));
        var options = Valid(new HeavyBallOptions { LearningRate = lr, Momentum = momentum });
        return Hand(parameters, lr, nesterov ? new Nesterov(options) : new HeavyBall(options));
    }

    /// <summary>Momentum in EMA form (RNNprop Table 1): m = γm + (1−γ)g, Δ = −α m.</summary>
    public static RuleOptimizer Momentum(IEnumerable<Parameter> parameters, double lr = 0.01, double gamma = 0.9) =>
        Hand(parameters, lr, new Momentum(Valid(new MomentumOptions { LearningRate = lr, Gamma = gamma })));

    /// <summary>Adagrad: G = G + g², Δ = −α g / (√G + ε).</summary>
    public static RuleOptimizer Adagrad(IEnumerable<Parameter> parameters, double lr = 0.01, double eps = 1e-10, double initialAccumulator = 0) =>
        Hand(parameters, lr, new Adagrad(Valid(new AdagradOptions { LearningRate = lr, Epsilon = eps, InitialAccumulator = initialAccumulator })));

    /// <summary>Adadelta: v = ρv + (1−ρ)g², δ = g √(D+ε)/√(v+ε), D = ρD + (1−ρ)δ², Δ = −α δ.</summary>
    public static RuleOptimizer Adadelta(IEnumerable<Parameter> parameters, double lr = 1.0, double rho = 0.9, double eps = 1e-6) =>
        Hand(parameters, lr, new Adadelta(Valid(new AdadeltaOptions { LearningRate = lr, Rho = rho, Epsilon = eps })));

    /// <summary>RMSprop: v = ρv + (1−ρ)g², Δ = −α g / (√v + ε) (ρ is torch's <c>alpha</c>).</summary>
    public static RuleOptimizer RMSprop(IEnumerable<Parameter> parameters, double lr = 0.01, double rho = 0.99, double eps = 1e-8) =>
        Hand(parameters, lr, new RmsProp(Valid(new RmsPropOptions { LearningRate = lr, Rho = rho, Epsilon = eps })));

    /// <summary>Adam: bias-corrected moments, Δ = −α m̂ / (√v̂ + ε).</summary>
    public static RuleOptimizer Adam(IEnumerable<Parameter> parameters, double lr = 0.001, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8) =>
        Hand(parameters, lr, new Adam(Valid(new AdamOptions { LearningRate = lr, Beta1 = beta1, Beta2 = beta2, Epsilon = eps })));

    /// <summary>Adamax: u = max(β2 u, |g| + ε), Δ = −α m / ((1−β1ᵗ) u).</summary>
    public static RuleOptimizer Adamax(IEnumerable<Parameter> parameters, double lr = 0.002, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8) =>
        Hand(parameters, lr, new Adamax(Valid(new AdamOptions { LearningRate = lr, Beta1 = beta1, Beta2 = beta2, Epsilon = eps })));

    /// <summary>Mean Normalized Gradient (Shahid 2017, Alg. 1); it has no learning rate, so <paramref name="lr"/> multiplies its step (default 1).</summary>
    public static RuleOptimizer Mng(IEnumerable<Parameter> parameters, int k = 5, double etaMin = 1e-3, double lr = 1.0) =>
        new(parameters, _ => (new Mng(Valid(new MngOptions { K = k, EtaMin = etaMin })), null), lr, 1.0);

    private static RuleOptimizer LearnedMethod(IEnumerable<Parameter> parameters, string method, string checkpoint, double lr, Backend backend) =>
        new(parameters, context => LearnedRule(LearnedRegistry.Load(checkpoint, context, expectedMethod: method), context with { Backend = backend }), lr, 1.0);

    private static (IUpdateRule, IDisposable?) LearnedRule(LearnedOptimizer learned, BuildContext context) =>
        (Backends.Rule(learned, context.Backend), learned);

    private static RuleOptimizer Hand(IEnumerable<Parameter> parameters, double lr, IUpdateRule rule) =>
        new(parameters, _ => (rule, null), lr, lr);

    private static T Valid<T>(T options) where T : IValidatable
    {
        options.Validate();
        return options;
    }
}
