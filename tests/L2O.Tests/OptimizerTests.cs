using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>
/// One table of optimizer cases drives the shared checks (torch.optim's OptimizerInfo idea):
/// every registered optimizer must appear here with settings that work on the test problems.
/// </summary>
public class OptimizerCaseTests
{
    public static readonly Dictionary<string, string> Cases = new()
    {
        ["sgd"] = "sgd:lr=0.02",
        ["momentum"] = "momentum:lr=0.05",
        ["heavy-ball"] = "heavy-ball:lr=0.005",
        ["nesterov"] = "nesterov:lr=0.005",
        ["adagrad"] = "adagrad:lr=0.5",
        ["adadelta"] = "adadelta:lr=10",
        ["rmsprop"] = "rmsprop:lr=0.02",
        ["adam"] = "adam:lr=0.05",
        ["adamax"] = "adamax:lr=0.05",
        ["mng"] = "mng:k=5,eta-min=0.001",
    };

    /// <summary>Rates for the steep Rosenbrock valley where the quadratic's are too large.</summary>
    public static readonly Dictionary<string, string> RosenbrockCases = new()
    {
        ["sgd"] = "sgd:lr=0.001",
        ["momentum"] = "momentum:lr=0.002",
        ["heavy-ball"] = "heavy-ball:lr=0.0002",
        ["nesterov"] = "nesterov:lr=0.0002",
    };

    /// <summary>The hand-designed rows of <see cref="MethodCases"/>, whose examples are <see cref="Cases"/>.</summary>
    public static TheoryData<string> Names() => MethodCases.HandDesigned();

    [Fact]
    public void Every_hand_designed_optimizer_has_a_case()
    {
        var registered = OptimizerRegistry.All.Where(o => !o.Learned).Select(o => o.Name).Order();
        Assert.Equal(registered, Cases.Keys.Order());
    }

    private static double Run(string spec, ITask task, int steps, long seed = 0)
    {
        var result = Evaluator.Evaluate(task, OptimizerRegistry.Create(spec, Contexts.DoubleBuild),
            new EvalSettings { Steps = steps, Runs = 1, Seed = seed, TestMetrics = false });
        Assert.Equal(0, result.Diverged);
        return result.Runs[0].Losses[steps];
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Goes_downhill_on_sum_of_squares(string name)
    {
        var task = TaskRegistry.Create("sum-of-squares:dim=50,init=uniform:-1:1", Contexts.Double);
        using var f = task.Sample(0);
        double start;
        using (var l = f.Loss(f.InitialParameters, Batch.None)) start = l.ToDouble();
        double end = Run(Cases[name], task, 100);
        Assert.True(end < 0.5 * start, $"{name}: {start} -> {end}");
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Goes_downhill_on_rosenbrock(string name)
    {
        var task = TaskRegistry.Create("rosenbrock:init=uniform:-1.5:-1", Contexts.Double);
        using var f = task.Sample(3);
        double start;
        using (var l = f.Loss(f.InitialParameters, Batch.None)) start = l.ToDouble();
        double end = Run(RosenbrockCases.GetValueOrDefault(name, Cases[name]), task, 300, 3);
        Assert.True(end < start, $"{name}: {start} -> {end}");
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Step_is_pure_and_out_of_place(string name)
    {
        using var scope = NewDisposeScope();
        var rule = OptimizerRegistry.Create(Cases[name], Contexts.DoubleBuild);
        var w = randn(9, dtype: ScalarType.Float64);
        var s = rule.Init(w);
        for (int i = 0; i < 3; i++)
        {
            var g = randn(9, dtype: ScalarType.Float64);
            var (wc, gc) = (w.clone(), g.clone());
            var sc = s.Tensors.Select(t => t.clone()).ToList();
            var step = rule.Step(g, w, s);
            Assert.Equal(0, Numeric.MaxAbsDiff(w, wc));
            Assert.Equal(0, Numeric.MaxAbsDiff(g, gc));
            foreach (var (t, c) in s.Tensors.Zip(sc)) Assert.Equal(0, Numeric.MaxAbsDiff(t, c));
            w = w + step.Update;
            s = step.State;
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Zero_gradients_keep_update_and_state_finite(string name)
    {
        using var scope = NewDisposeScope();
        var rule = OptimizerRegistry.Create(Cases[name], Contexts.DoubleBuild);
        var w = randn(5, dtype: ScalarType.Float64);
        var s = rule.Init(w);
        for (int i = 0; i < 4; i++)
        {
            var step = rule.Step(zeros(5, dtype: ScalarType.Float64), w, s);
            Assert.True(step.Update.isfinite().all().item<bool>(), name);
            Assert.True(step.State.IsFinite(), name);
            w = w + step.Update;
            s = step.State;
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Cloned_state_continues_identically(string name)
    {
        using var scope = NewDisposeScope();
        var rule = OptimizerRegistry.Create(Cases[name], Contexts.DoubleBuild);
        var w = randn(6, dtype: ScalarType.Float64);
        var s = rule.Init(w);
        var g = randn(6, dtype: ScalarType.Float64);
        s = rule.Step(g, w, s).State;
        var copy = s.Map(t => t.clone());
        var g2 = randn(6, dtype: ScalarType.Float64);
        var a = rule.Step(g2, w, s);
        var b = rule.Step(g2, w, copy);
        Assert.Equal(0, Numeric.MaxAbsDiff(a.Update, b.Update));
    }
}

/// <summary>Trajectories of our pure rules against torch.optim's in-place implementations.</summary>
public class TorchOptimOracleTests
{
    /// <summary>A nonconvex test function with coordinates of different curvature.</summary>
    private static Tensor Objective(Tensor w)
    {
        var scales = linspace(0.5, 5.0, w.shape[0], dtype: w.dtype);
        return (scales * (w - 0.3).square()).sum() + 0.2 * w.sin().sum();
    }

    private static void AssertSameTrajectory(IUpdateRule rule, Func<Parameter, torch.optim.Optimizer> oracle, int steps = 25, double tolerance = 1e-10)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(11);
        var w0 = randn([7], dtype: ScalarType.Float64, generator: gen);

        var p = new Parameter(w0.clone());
        var opt = oracle(p);
        var w = w0.clone();
        var s = rule.Init(w);
        for (int t = 0; t < steps; t++)
        {
            opt.zero_grad();
            Objective(p).backward();
            opt.step();

            var x = w.detach().requires_grad_(true);
            var g = torch.autograd.grad([Objective(x)], [x])[0];
            using (no_grad())
            {
                var step = rule.Step(g, w, s);
                w = w + step.Update;
                s = step.State;
            }
            double diff = Numeric.MaxAbsDiff(w, p.detach());
            Assert.True(diff < tolerance, $"{rule.Name} step {t + 1}: max |Δw| = {diff}");
        }
    }

    /// <summary>Every case of the method table with a torch.optim oracle (<see cref="MethodCase.Oracle"/>).</summary>
    [Theory]
    [MemberData(nameof(MethodCases.WithOracle), MemberType = typeof(MethodCases))]
    public void The_rule_follows_torch_optim_s_trajectory(string name)
    {
        var oracle = MethodCases.Find(name).Oracle!;
        AssertSameTrajectory(OptimizerRegistry.Create(oracle.Spec, Contexts.DoubleBuild), oracle.Create, tolerance: oracle.Tolerance);
    }
}

/// <summary>Equations checked by hand where torch.optim has no counterpart.</summary>
public class HandComputedTests
{
    [Fact]
    public void Ema_momentum_follows_m_t_equals_1_minus_gamma_to_the_t_for_unit_gradients()
    {
        using var scope = NewDisposeScope();
        var rule = new Momentum(new() { LearningRate = 0.5, Gamma = 0.9 });
        var w = zeros(1, dtype: ScalarType.Float64);
        var s = rule.Init(w);
        for (int t = 1; t <= 5; t++)
        {
            var step = rule.Step(ones(1, dtype: ScalarType.Float64), w, s);
            Assert.Equal(-0.5 * (1 - Math.Pow(0.9, t)), step.Update.ToDouble(), 12);
            s = step.State;
        }
    }

    [Fact]
    public void Adam_is_invariant_to_gradient_scale_without_epsilon()
    {
        using var scope = NewDisposeScope();
        var rule = new Adam(new() { LearningRate = 0.1, Epsilon = 0 });
        var w = zeros(4, dtype: ScalarType.Float64);
        var (s1, s2) = (rule.Init(w), rule.Init(w));
        using var gen = new Generator(3);
        for (int t = 0; t < 6; t++)
        {
            var g = randn([4], dtype: ScalarType.Float64, generator: gen);
            var a = rule.Step(g, w, s1);
            var b = rule.Step(g * 1000, w, s2);
            Assert.True(Numeric.MaxAbsDiff(a.Update, b.Update) < 1e-12);
            (s1, s2) = (a.State, b.State);
        }
    }

    [Fact]
    public void Mng_first_steps_match_algorithm_1_by_hand()
    {
        // k = 3, η_min = 0.1. Step 1: history filled with x0 = 1, g0 = 2 → δ = 1, range 0 → x1 = 1 − 0.1.
        // Step 2: H_x = [1, 1, 0.9], H_g = [2, 2, −1] → normalised [1, 1, −0.5], δ = 0.5,
        // x_ref = 0.95, range = 0.1 → x2 = 0.95 − 0.5 (0.1 + 0.1) = 0.85.
        using var scope = NewDisposeScope();
        var rule = new Mng(new() { K = 3, EtaMin = 0.1 });
        var w = tensor(new[] { 1.0 });
        var s = rule.Init(w);
        var step = rule.Step(tensor(new[] { 2.0 }), w, s);
        w = w + step.Update;
        Assert.Equal(0.9, w.ToDouble(), 12);
        step = rule.Step(tensor(new[] { -1.0 }), w, step.State);
        w = w + step.Update;
        Assert.Equal(0.85, w.ToDouble(), 12);
    }

    [Fact]
    public void Mng_momentum_history_blends_with_the_given_timescales()
    {
        using var scope = NewDisposeScope();
        var m = tensor(new[] { 0.5, 0.9 });
        var h = ThesisHistory.Push(null, tensor(new[] { 2.0 }), 2, HistoryKind.Momentums, m);
        Assert.Equal(new[] { 2.0, 2.0 }, h.data<double>().ToArray());
        h = ThesisHistory.Push(h, tensor(new[] { 0.0 }), 2, HistoryKind.Momentums, m);
        Assert.Equal(new[] { 1.0, 1.8 }, h.data<double>().ToArray().Select(v => Math.Round(v, 12)));
    }

    [Fact]
    public void Normalisation_divides_rows_by_their_infinity_norm_and_keeps_zero_rows_zero()
    {
        using var scope = NewDisposeScope();
        var h = tensor(new[,] { { 2.0, -4.0, 1.0 }, { 0.0, 0.0, 0.0 } });
        var n = ThesisHistory.Normalize(h);
        Assert.Equal(new[] { 0.5, -1.0, 0.25, 0, 0, 0 }, n.data<double>().ToArray());
    }
}
