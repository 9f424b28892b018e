using L2O.Evaluation;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Runtime;
using L2O.Tasks;
using L2O.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

public class TrickTests
{
    [Fact]
    public void Random_scaling_evaluates_f_at_c_times_w_from_w0_over_c()
    {
        var task = TaskRegistry.Create("quadratic:dim=5", Contexts.Double);
        using var scope = NewDisposeScope();
        using var gen = new Generator(1);
        var c = ScaledOptimizee.DrawScale(5, 3, gen, ScalarType.Float64, CPU);
        Assert.InRange(c.min().ToDouble(), Math.Exp(-3), Math.Exp(3));
        using var inner = task.Sample(4);
        using var scaled = new ScaledOptimizee(task.Sample(4), c.clone());
        Assert.Equal(0, Numeric.MaxAbsDiff(scaled.InitialParameters * c, inner.InitialParameters), 12);
        var w = randn(5, dtype: ScalarType.Float64);
        Assert.Equal(inner.Loss(w * c, Batch.None).ToDouble(), scaled.Loss(w, Batch.None).ToDouble(), 12);
        // ∇_w f(c ⊙ w) = c ⊙ ∇f(c ⊙ w).
        var (_, gs) = Autodiff.LossAndGradient(scaled, w, Batch.None);
        var (_, gi) = Autodiff.LossAndGradient(inner, w * c, Batch.None);
        Assert.True(Numeric.MaxAbsDiff(gs, gi * c) < 1e-10);
    }

    [Fact]
    public void Convex_combination_appends_z_and_adds_h()
    {
        var f = TaskRegistry.Create("quadratic:dim=3", Contexts.Double);
        var h = TaskRegistry.Create("convex:dim=4", Contexts.Double);
        using var scope = NewDisposeScope();
        using var fi = f.Sample(1);
        using var hi = h.Sample(2);
        using var both = new CombinedOptimizee(f.Sample(1), h.Sample(2));
        Assert.Equal(7, both.Dimension);
        var w = randn(7, dtype: ScalarType.Float64);
        double expected = fi.Loss(w.narrow(0, 0, 3), Batch.None).ToDouble() + hi.Loss(w.narrow(0, 3, 4), Batch.None).ToDouble();
        Assert.Equal(expected, both.Loss(w, Batch.None).ToDouble(), 12);
    }

    [Fact]
    public void Training_distribution_is_a_function_of_the_seed_and_respects_weights()
    {
        var ctx = Contexts.Double;
        var mixture = new TrainingTask([(TaskRegistry.Create("quadratic:dim=3", ctx), 3.0), (TaskRegistry.Create("rosenbrock", ctx), 1.0)], new TrickOptions(), ctx);
        int quadratic = Enumerable.Range(0, 2000).Count(s => mixture.Pick(s).Name.StartsWith("quadratic"));
        Assert.InRange(quadratic, 1400, 1600);
        using var scope = NewDisposeScope();
        using var a = mixture.Sample(77);
        using var b = mixture.Sample(77);
        Assert.Equal(0, Numeric.MaxAbsDiff(a.InitialParameters, b.InitialParameters));
        Assert.Equal(a.Dimension, mixture.Pick(77).Dimension + 20);
    }
}

public class MetaTrainingTests
{
    private static MetaTrainOptions Quick(int iterations) => new()
    {
        Tasks = ["quadratic"],
        Iterations = iterations,
        TrajectorySteps = 20,
        Unroll = 5,
        MetaLearningRate = 3e-3,
        Tricks = TrickOptions.None,
        CheckpointEvery = 2,
        ValidateEvery = 2,
        ValidationRuns = 5,
        Seed = 3,
    };

    public static TheoryData<string> Methods() => ["hyperadam:j=5,lr=0.05", "rnnprop", "dmoptimizer"];

    [Theory]
    [MemberData(nameof(Methods))]
    public void Short_meta_training_on_quadratics_halves_the_validation_loss(string spec)
    {
        using var dir = new TempDir();
        using var learned = LearnedRegistry.Create(spec);
        using var trainer = new MetaTrainer(learned, Quick(40) with { ValidateEvery = 40, CheckpointEvery = 40 }, TaskContext.Cpu, dir.Path);
        var before = trainer.Validate();
        trainer.Train();
        var after = trainer.Validate();
        Assert.Equal(0, after.Diverged);
        Assert.True(after.Loss < 0.5 * before.Loss, $"{spec}: validation loss {before.Loss} -> {after.Loss}");
    }

    [Fact]
    public void Validation_steps_set_the_validation_horizon_apart_from_the_trajectory_length()
    {
        ValidationScore Score(MetaTrainOptions options)
        {
            using var dir = new TempDir();
            using var learned = LearnedRegistry.Create("rnnprop:hidden=6,init-seed=2");
            using var trainer = new MetaTrainer(learned, options, TaskContext.Cpu, dir.Path);
            return trainer.Validate();
        }
        var longer = Score(Quick(1) with { ValidationSteps = 40 });
        Assert.Equal(Score(Quick(1) with { TrajectorySteps = 40 }), longer);
        Assert.NotEqual(Score(Quick(1)), longer);
    }

    [Fact]
    public void Resumed_run_continues_exactly_as_an_uninterrupted_one()
    {
        using var dirA = new TempDir();
        using var dirB = new TempDir();
        Tensor straight;
        using (var learned = LearnedRegistry.Create("rnnprop:hidden=6,init-seed=2"))
        using (var trainer = new MetaTrainer(learned, Quick(4), TaskContext.Cpu, dirA.Path))
        {
            trainer.Train();
            straight = learned.Flatten();
        }
        using (var learned = LearnedRegistry.Create("rnnprop:hidden=6,init-seed=2"))
        using (var trainer = new MetaTrainer(learned, Quick(2), TaskContext.Cpu, dirB.Path))
            trainer.Train();
        using (var resumed = MetaTrainer.Resume(dirB.Path, TaskContext.Cpu, new ResumeChanges { Iterations = 4 }))
        {
            Assert.Equal(2, resumed.Iteration);
            resumed.Train();
            Assert.Equal(0, Numeric.MaxAbsDiff(straight, resumed.Learned.Flatten()));
        }
        string Strip(string line) => string.Join(",", line.Split(',').Where((_, i) => i != 7));   // drop timing
        Assert.Equal(File.ReadLines(Path.Combine(dirA.Path, MetaTrainer.LogFile)).Select(Strip), File.ReadLines(Path.Combine(dirB.Path, MetaTrainer.LogFile)).Select(Strip));
        foreach (var f in new[] { MetaTrainer.LastFile, MetaTrainer.BestValidationFile, MetaTrainer.BestTrainFile })
            Assert.True(File.Exists(Path.Combine(dirB.Path, f)), f);
        // Nothing hidden stays but the lock file (which is never deleted; the lock itself is gone with the trainer).
        Assert.Equal([RunFolder.LockFile], Directory.GetFiles(dirB.Path).Select(Path.GetFileName).Where(f => f!.StartsWith('.')));
    }

    [Fact]
    public void Non_finite_meta_gradients_are_skipped_and_counted()
    {
        using var learned = LearnedRegistry.Create("dmoptimizer:hidden=3");
        using var meta = new MetaOptimizer(learned.Parameters.Select(p => p.Parameter).ToList(), 0.1, clipNorm: null);
        using var before = learned.Flatten();
        foreach (var (_, p) in learned.Parameters)
            p.grad = full_like(p, double.NaN);
        Assert.Null(meta.Step());
        Assert.Equal(1, meta.Skipped);
        Assert.Equal(0, meta.Steps);
        using var after = learned.Flatten();
        Assert.Equal(0, Numeric.MaxAbsDiff(before, after));
    }

    [Fact]
    public void Clipping_bounds_the_applied_meta_gradient()
    {
        using var learned = LearnedRegistry.Create("dmoptimizer:hidden=3");
        using var meta = new MetaOptimizer(learned.Parameters.Select(p => p.Parameter).ToList(), 0.1, clipNorm: 1.0);
        foreach (var (_, p) in learned.Parameters) p.grad = full_like(p, 100.0);
        Assert.True(meta.Step() > 1.0);   // reports the norm before clipping
        Assert.Equal(1, meta.Steps);
    }

    [Fact]
    public void Trajectories_start_from_a_fresh_state_whatever_ran_before()
    {
        using var learned = LearnedRegistry.Create("hyperadam:j=4");
        var task = TaskRegistry.Create("quadratic");
        double[] Run(long seed)
        {
            using var scope = NewDisposeScope();
            using var t = Trajectory.Start(task.Sample(seed), learned.Rule);
            return Unroll.Run(learned.Rule, t, 5, MetaLoss.Mean).Losses;
        }
        var fresh = Run(2);
        Run(1);
        Run(5);
        Assert.Equal(fresh, Run(2));
    }

    [Fact]
    public void Unroll_losses_are_the_losses_after_each_update()
    {
        // With a hand-checkable rule: the mean meta-loss is the mean of f(w_1..w_U), last is f(w_U).
        using var learned = LearnedRegistry.Create("multiscale-adam:combiner=la-c,lr=0.01");
        var task = TaskRegistry.Create("quadratic");
        using var scope = NewDisposeScope();
        using var t = Trajectory.Start(task.Sample(0), learned.Rule);
        var mean = Unroll.Run(learned.Rule, t, 4, MetaLoss.Mean);
        Assert.Equal(mean.Losses.Average(), mean.MetaLoss.ToDouble(), 5);
        using var t2 = Trajectory.Start(task.Sample(0), learned.Rule);
        var last = Unroll.Run(learned.Rule, t2, 4, MetaLoss.Last);
        Assert.Equal(last.Losses[^1], last.MetaLoss.ToDouble(), 5);
        using var t3 = Trajectory.Start(task.Sample(0), learned.Rule);
        var log = Unroll.Run(learned.Rule, t3, 4, MetaLoss.MeanLog);
        Assert.Equal(log.Losses.Select(l => Math.Log(l + 1e-15)).Average(), log.MetaLoss.ToDouble(), 4);
        Assert.NotEqual(t.Loss, mean.Losses[0]);   // the start loss f(w_0) is not a term
        using var t4 = Trajectory.Start(task.Sample(0), learned.Rule);
        double start = t4.Loss;
        var before = Unroll.Run(learned.Rule, t4, 4, MetaLoss.MeanBefore);
        Assert.Equal((start + before.Losses.Take(3).Sum()) / 4, before.MetaLoss.ToDouble(), 5);
        Assert.Equal(before.MetaLoss.ToDouble(), MetaLosses.Value(MetaLoss.MeanBefore, start, before.Losses), 5);
    }

    [Fact]
    public void Mean_before_over_U_steps_is_the_mean_over_U_minus_1_steps_rescaled()
    {
        // The authors' meta-loss, (1/U) Σ_{s<U} f(w_s): f(w_0) is a constant and f(w_U) is not a term,
        // so its meta-gradient is (U−1)/U times that of the mean after each update over U−1 steps.
        using var learned = LearnedRegistry.Create("hyperadam:j=3,init-seed=4", new BuildContext(CPU, ScalarType.Float64));
        var task = TaskRegistry.Create("quadratic:dim=5,init=normal:1", Contexts.Double);
        Tensor MetaGradient(int steps, MetaLoss kind)
        {
            using var t = Trajectory.Start(task.Sample(3), learned.Rule);
            var run = Unroll.Run(learned.Rule, t, steps, kind);
            var parameters = learned.Parameters.Select(p => p.Parameter).ToList();
            foreach (var p in parameters) p.grad?.zero_();
            run.MetaLoss.backward();
            return ParameterVector.Gradients(parameters).detach().clone();
        }
        using var scope = NewDisposeScope();
        var before = MetaGradient(6, MetaLoss.MeanBefore);
        var mean = MetaGradient(5, MetaLoss.Mean);
        Assert.True(mean.norm().ToDouble() > 1e-6);
        double err = ((before - mean * (5.0 / 6)).norm() / before.norm()).ToDouble();
        Assert.True(err < 1e-12, $"relative difference {err:E2}");
        // One step of MeanBefore has no term that depends on Θ: the meta-loss is f(w_0), with a zero gradient.
        using var t1 = Trajectory.Start(task.Sample(3), learned.Rule);
        var one = Unroll.Run(learned.Rule, t1, 1, MetaLoss.MeanBefore);
        Assert.Equal(t1.Loss, one.MetaLoss.ToDouble(), 12);
        Assert.Equal(0.0, MetaGradient(1, MetaLoss.MeanBefore).abs().max().ToDouble());
    }

    [Fact]
    public void Convex_init_sets_where_the_convex_coordinates_start()
    {
        // HyperAdam's code starts z at 0 (--convex-init normal:0); the default is the convex task's U[-1, 1].
        var mlp = TaskRegistry.Create("quadratic:dim=7");
        using var scope = NewDisposeScope();
        var zero = new TrainingTask([(mlp, 1.0)], new TrickOptions { ConvexInit = "normal:0" }, TaskContext.Cpu);
        using var f = zero.Sample(5);
        Assert.Equal(27, f.Dimension);
        Assert.Equal(0.0, f.InitialParameters.narrow(0, 7, 20).abs().max().ToDouble());
        Assert.True(f.InitialParameters.narrow(0, 0, 7).abs().max().ToDouble() > 0);
        using var g = new TrainingTask([(mlp, 1.0)], new TrickOptions(), TaskContext.Cpu).Sample(5);
        Assert.True(g.InitialParameters.narrow(0, 7, 20).abs().max().ToDouble() > 0);
        var bad = Assert.Throws<L2OException>(() => (new MetaTrainOptions { Tasks = ["mlp"], Tricks = new TrickOptions { ConvexInit = "zero" } }).Validate());
        Assert.Contains("initializer 'zero' is not valid", bad.Message);
        var one = Assert.Throws<L2OException>(() => (new MetaTrainOptions { Tasks = ["mlp"], Unroll = 1, MetaLoss = MetaLoss.MeanBefore }).Validate());
        Assert.Contains("mean-before needs --unroll >= 2", one.Message);
    }

    [Fact]
    public void Bad_training_options_are_explained()
    {
        Assert.Contains("unroll", Assert.Throws<L2OException>(() => (Quick(1) with { Unroll = 0 }).Validate()).Message);
        Assert.Contains("iterations", Assert.Throws<L2OException>(() => (Quick(1) with { Iterations = 0 }).Validate()).Message);
        Assert.Contains("validate-every", Assert.Throws<L2OException>(() => (Quick(1) with { ValidateEvery = 0 }).Validate()).Message);
    }
}
