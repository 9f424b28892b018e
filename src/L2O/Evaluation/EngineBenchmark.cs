using System.Globalization;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using static TorchSharp.torch;

namespace L2O.Evaluation;

/// <summary>What <see cref="EngineBenchmark"/> measures (defaults: issue #4's set-up).</summary>
public sealed record EngineBenchmarkOptions
{
    /// <summary>Learned optimizers to time, each with its paper's meta-training settings on the base MLP.</summary>
    public IReadOnlyList<string> Methods { get; init; } = ["hyperadam", "rnnprop", "dmoptimizer"];
    /// <summary>Timed meta-iterations per backend (after <see cref="Warmup"/> untimed ones).</summary>
    public int Iterations { get; init; } = 3;
    public int Warmup { get; init; } = 1;
    /// <summary>Tasks for the evaluation (no-grad) timing.</summary>
    public IReadOnlyList<string> EvalTasks { get; init; } = ["mlp:layers=9", "cnn2"];
    public int EvalSteps { get; init; } = 30;
    public string EvalMethod { get; init; } = "hyperadam";

    public void Validate()
    {
        if (Iterations < 1) throw new L2OException($"iterations must be >= 1 (got {Iterations})");
        if (Warmup < 0) throw new L2OException($"warmup must be >= 0 (got {Warmup})");
        if (EvalSteps < 1) throw new L2OException($"eval steps must be >= 1 (got {EvalSteps})");
    }
}

/// <param name="ReferenceSeconds">Median seconds per meta-iteration on the TorchSharp reference.</param>
/// <param name="EngineSeconds">Median seconds per meta-iteration on the fused engine.</param>
/// <param name="ReferencePeakMiB">Peak resident memory during the reference iterations, above the process's memory when they started.</param>
public sealed record MetaIterationTiming(string Method, int Coordinates, double ReferenceSeconds, double EngineSeconds, double ReferencePeakMiB, double EnginePeakMiB, string Engine)
{
    public double Speedup => ReferenceSeconds / EngineSeconds;
}

/// <summary>Milliseconds per update (the optimizer's step alone) during evaluation.</summary>
public sealed record EvalTiming(string Task, int Parameters, double AdamMs, double ReferenceMs, double EngineMs);

/// <summary>
/// Times the fused engine against the reference on the same work in one process: meta-iterations
/// (same seeds, so the same trajectories up to rounding), evaluation steps, and peak memory.
/// </summary>
public static class EngineBenchmark
{
    public static IReadOnlyList<MetaIterationTiming> MetaIterations(EngineBenchmarkOptions o, Action<string>? log = null)
    {
        o.Validate();
        var rows = new List<MetaIterationTiming>();
        var context = new TaskContext(CPU, ScalarType.Float32, null);
        foreach (var method in o.Methods)
        {
            var (refSec, refMem, coords, _) = Time(method, Backend.Reference, o, context, log);
            var (engSec, engMem, _, describe) = Time(method, Backend.Engine, o, context, log);
            rows.Add(new MetaIterationTiming(method, coords, refSec, engSec, refMem, engMem, describe));
        }
        return rows;
    }

    private static (double Seconds, double PeakMiB, int Coordinates, string Backend) Time(string method, Backend backend, EngineBenchmarkOptions o, TaskContext context, Action<string>? log)
    {
        string folder = Path.Combine(Path.GetTempPath(), "l2o-bench-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var learned = LearnedRegistry.Create(method);
            var d = learned.TrainingDefaults;
            var options = new MetaTrainOptions
            {
                Tasks = ["mlp"], Iterations = o.Warmup + o.Iterations, Unroll = d.Unroll, MetaLoss = d.MetaLoss, MetaLearningRate = d.MetaLearningRate,
                Tricks = d.Tricks ? new TrickOptions() : TrickOptions.None, ValidateEvery = 0, Selection = Selection.TrainAverage, CheckpointEvery = 1_000_000,
            };
            using var trainer = new MetaTrainer(learned, options, context, folder, "l2o bench", backend);
            var seconds = new List<double>();
            ProcessMemory.ResetPeak();
            long start = ProcessMemory.ResidentBytes();
            trainer.Train(new SyncProgress<IterationStats>(s =>
            {
                if (s.Iteration > o.Warmup) seconds.Add(s.Seconds);
                log?.Invoke($"{method} {trainer.BackendDescription}: iteration {s.Iteration}/{s.Iterations} {s.Seconds.ToString("0.000", CultureInfo.InvariantCulture)} s");
            }));
            double peak = Math.Max(0, ProcessMemory.PeakResidentBytes() - start) / (1024.0 * 1024.0);
            int coords = 15910 + (options.Tricks.ConvexCombination ? options.Tricks.ConvexDimension : 0);
            return (Summary.Of(seconds).Median, peak, coords, trainer.BackendDescription);
        }
        finally
        {
            try { Directory.Delete(folder, true); } catch (IOException) { }
        }
    }

    public static IReadOnlyList<EvalTiming> Evaluation(EngineBenchmarkOptions o, Action<string>? log = null)
    {
        o.Validate();
        var rows = new List<EvalTiming>();
        var context = new TaskContext(CPU, ScalarType.Float32, null);
        var settings = new EvalSettings { Steps = o.EvalSteps, Runs = 1, TestMetrics = false, DivergenceThreshold = double.PositiveInfinity };
        foreach (var spec in o.EvalTasks)
        {
            var task = TaskRegistry.Create(spec, context);
            double Ms(IUpdateRule rule)
            {
                Evaluator.Evaluate(task, rule, settings with { Steps = Math.Min(5, o.EvalSteps) });   // warm-up (JIT, allocator)
                var r = Evaluator.Evaluate(task, rule, settings);
                log?.Invoke($"{spec}: {rule.Name} {r.MillisecondsPerUpdate.ToString("0.000", CultureInfo.InvariantCulture)} ms/update");
                return r.MillisecondsPerUpdate;
            }
            double adam = Ms(OptimizerRegistry.Create("adam:lr=0.001"));
            double reference = Ms(OptimizerRegistry.Create(o.EvalMethod, BuildContext.Cpu with { Backend = Backend.Reference }));
            double engine = Ms(OptimizerRegistry.Create(o.EvalMethod, BuildContext.Cpu with { Backend = Backend.Engine }));
            rows.Add(new EvalTiming(spec, task.Dimension, adam, reference, engine));
        }
        return rows;
    }
}

/// <summary>Resident memory of this process (Linux /proc; zero elsewhere).</summary>
internal static class ProcessMemory
{
    /// <summary>Resets the kernel's high-water mark of resident memory (writes 5 to /proc/self/clear_refs).</summary>
    public static void ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    public static long ResidentBytes() => Read("VmRSS:");
    public static long PeakResidentBytes() => Read("VmHWM:");

    private static long Read(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return 0;
    }
}

/// <summary>IProgress that reports on the calling thread (System.Progress posts to the thread pool).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
