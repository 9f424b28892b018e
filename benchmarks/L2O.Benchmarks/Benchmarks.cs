using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Benchmarks;

/// <summary>Time of one update (Δ and new state) on the base MLP's parameter count, in evaluation mode.</summary>
[MemoryDiagnoser]
[SimpleJob(warmupCount: 3, iterationCount: 10)]
public class UpdateRuleBenchmarks
{
    private IUpdateRule _rule = null!;
    private Tensor _w = null!, _g = null!;
    private OptimizerState _state = null!;

    [Params("adam", "rmsprop", "mng", "hyperadam:checkpoint=pretrained", "rnnprop:checkpoint=pretrained", "dmoptimizer:checkpoint=pretrained")]
    public string Optimizer { get; set; } = "adam";

    /// <summary>Which implementation runs the learned rules (hand-designed rules ignore it: their two rows are the same work).</summary>
    [Params(Backend.Reference, Backend.Engine)]
    public Backend Backend { get; set; }

    [Params(15910, 54670)]   // base MLP; 9-hidden-layer MLP
    public int Parameters { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _rule = OptimizerRegistry.Create(Optimizer, BuildContext.Cpu with { Backend = Backend });
        using var gen = new Generator(1);
        _w = randn([Parameters], generator: gen);
        _g = randn([Parameters], generator: gen) * 0.01;
        using var _ = no_grad();
        _state = _rule.Init(_w);
        for (int i = 0; i < 3; i++) _state = _rule.Step(_g, _w, _state).State;
    }

    [Benchmark]
    public void Step()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        _rule.Step(_g, _w, _state);
    }
}

/// <summary>
/// One meta-iteration of the papers' set-up: base MLP + 20-dimensional convex function with Random
/// Scaling, T = 100 in 5 unrolls of 20, first-order, one Adam meta-step per unroll.
/// </summary>
[Config(typeof(MallocConfig))]
public class MetaIterationBenchmarks
{
    private LearnedOptimizer _learned = null!;
    private TrainingTask _task = null!;
    private MetaOptimizer _meta = null!;
    private L2O.Engine.FusedEngine? _engine;
    private int _iteration;

    [Params("hyperadam", "rnnprop", "dmoptimizer")]
    public string Optimizer { get; set; } = "hyperadam";

    [Params(Backend.Reference, Backend.Engine)]
    public Backend Backend { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _learned = LearnedRegistry.Create(Optimizer);
        var ctx = TaskContext.Cpu;
        _task = new TrainingTask([(TaskRegistry.Create("mlp", ctx), 1.0)], new TrickOptions(), ctx);
        _meta = new MetaOptimizer(_learned.Parameters.Select(p => p.Parameter).ToList(), 1e-4, null);
        _engine = Backends.CreateEngine(_learned, Backend);
    }

    [Benchmark]
    public void MetaIteration()
    {
        using var trajectory = MetaTrajectories.Start(_learned, _task.Sample(_iteration++), _engine);
        for (int u = 0; u < 5; u++)
        {
            using var outcome = trajectory.Unroll(20, MetaLoss.Mean);
            _meta.Step(outcome.MetaGradient!);
        }
    }
}

/// <summary>Two jobs that differ only in L2O's glibc malloc tuning (docs/runtime.md), each in its own process.</summary>
public sealed class MallocConfig : ManualConfig
{
    public MallocConfig()
    {
        var job = Job.Default.WithStrategy(RunStrategy.Monitoring).WithWarmupCount(1).WithIterationCount(5);
        AddJob(job.WithEnvironmentVariables(new EnvironmentVariable("L2O_MALLOC_TUNING", "1")).WithId("malloc-tuned"));
        AddJob(job.WithEnvironmentVariables(new EnvironmentVariable("L2O_MALLOC_TUNING", "0")).WithId("malloc-default"));
    }
}
