using System.Globalization;
using L2O.Runtime;
using L2O.Engine;
using L2O.Evaluation;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using static TorchSharp.torch;

namespace L2O.Performance;

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
    /// <summary>Learned optimizers whose evaluation update is timed (each against the same Adam timing per task).</summary>
    public IReadOnlyList<string> EvalMethods { get; init; } = ["hyperadam"];
    /// <summary>
    /// Engine block layouts to time, each in the same run (<see cref="EngineOptions.Layout"/>); a method
    /// without a cell of a layout is timed once, with its lanes cell. Null is the engine's choice
    /// (<see cref="EngineOptions.ResolvedLayout"/>: lanes).
    /// </summary>
    public IReadOnlyList<CellLayout?> Layouts { get; init; } = [EngineOptions.Default.Layout];

    /// <summary>
    /// How each backward step gets its forward outputs, each timed in the same run for the meta-iteration: recompute them
    /// (false) or keep them from the forward (true, <see cref="EngineOptions.KeepForward"/>; cells that cannot keep them are timed recomputing only).
    /// </summary>
    public IReadOnlyList<bool> KeepForward { get; init; } = [EngineOptions.Default.KeepForward ?? true];

    /// <summary>
    /// How the meta-iteration computes the optimizee's loss and gradient, each timed in the same run: the engine's own
    /// kernels where it has them (true, <see cref="EngineOptions.DirectGradient"/>) or TorchSharp's autograd (false).
    /// </summary>
    public IReadOnlyList<bool> DirectGradient { get; init; } = [EngineOptions.Default.DirectGradient];

    public void Validate()
    {
        if (DirectGradient.Count == 0) throw new L2OException("give at least one of direct, autograd");
        if (Iterations < 1) throw new L2OException($"iterations must be >= 1 (got {Iterations})");
        if (Warmup < 0) throw new L2OException($"warmup must be >= 0 (got {Warmup})");
        if (EvalSteps < 1) throw new L2OException($"eval steps must be >= 1 (got {EvalSteps})");
        if (Layouts.Count == 0) throw new L2OException("give at least one engine layout");
        if (KeepForward.Count == 0) throw new L2OException("give at least one of recompute, keep");
        if (EvalMethods.Count == 0) throw new L2OException("give at least one optimizer to time in evaluation");
    }

    /// <summary>The layouts <paramref name="method"/> is timed with: those asked for, or only the lanes one for a cell that has no other.</summary>
    internal IReadOnlyList<CellLayout?> LayoutsOf(string method)
    {
        using var learned = LearnedRegistry.Create(method);
        return FusedCells.Find(learned.Method)?.OnlyLanes(learned) == true ? [CellLayout.Lanes] : Layouts.Distinct().ToList();
    }

    /// <summary>rows, lanes, or auto (null: the engine's choice by use).</summary>
    public static string LayoutName(CellLayout? layout) => layout?.ToString().ToLowerInvariant() ?? "auto";

    /// <summary>"hyperadam (lanes)" when several layouts are timed, else the method alone.</summary>
    internal string Label(string method, CellLayout? layout) => Layouts.Distinct().Count() > 1 && LayoutsOf(method).Count > 1 ? $"{method} ({LayoutName(layout)})" : method;

    /// <summary>The keep-forward settings <paramref name="method"/>'s meta-iteration is timed with under <paramref name="layout"/>.</summary>
    internal IReadOnlyList<bool> KeepForwardOf(string method, CellLayout? layout)
    {
        var modes = KeepForward.Distinct().ToList();
        if (modes.Contains(true) && !CanKeepForward(method, layout)) modes.Remove(true);
        return modes.Count == 0 ? [false] : modes;
    }

    /// <summary>Whether the meta-training cell of <paramref name="method"/> under <paramref name="layout"/> can keep its forward.</summary>
    internal static bool CanKeepForward(string method, CellLayout? layout)
    {
        using var learned = LearnedRegistry.Create(method);
        return Backends.CreateEngine(learned, Backend.Engine, EngineOptions.Default with { Layout = layout, KeepForward = false }) is { Cell.KeptFloats: > 0 };
    }

    /// <summary>The label with ", keep" or ", recompute" when both are timed.</summary>
    internal string Label(string method, CellLayout? layout, bool keep) =>
        KeepForward.Distinct().Count() > 1 ? $"{Label(method, layout)} ({(keep ? "keep" : "recompute")})".Replace(") (", ", ") : Label(method, layout);

    /// <summary>The label with ", direct" or ", autograd" (the optimizee's gradient) when both are timed.</summary>
    internal string Label(string method, CellLayout? layout, bool keep, bool direct) =>
        DirectGradient.Distinct().Count() > 1 ? $"{Label(method, layout, keep)} ({(direct ? "direct" : "autograd")})".Replace(") (", ", ") : Label(method, layout, keep);
}

/// <param name="ReferenceSeconds">Median seconds per meta-iteration on the TorchSharp reference.</param>
/// <param name="EngineSeconds">Median seconds per meta-iteration on the fused engine.</param>
/// <param name="ReferencePeakMiB">Peak resident memory of a process running one reference meta-iteration (NaN when not measured).</param>
/// <param name="EngineParts">Mean seconds per timed engine iteration in the engine's forward, its backward, and the optimizee.</param>
/// <param name="Flops">The products of one meta-iteration by <see cref="FlopModel.MetaGradientFlopsPerCoordinate"/> × coordinates × steps.</param>
public sealed record MetaIterationTiming(string Method, int Coordinates, double ReferenceSeconds, double EngineSeconds, double ReferencePeakMiB, double EnginePeakMiB, string Engine,
    (double Forward, double Backward, double Optimizee) EngineParts, double Flops)
{
    public double Speedup => ReferenceSeconds / EngineSeconds;
}

/// <summary>Milliseconds per update (the optimizer's step alone) during evaluation.</summary>
/// <param name="Flops">The products of one update by <see cref="FlopModel.ForwardFlopsPerCoordinate(LearnedOptimizer)"/> × parameters.</param>
/// <param name="ReferencePeakMiB">Peak resident memory of a process evaluating the method on the task with the reference (NaN when not measured).</param>
/// <param name="EnginePeakMiB">The same with the fused engine.</param>
public sealed record EvalTiming(string Method, string Task, int Parameters, double AdamMs, double ReferenceMs, double EngineMs, double Flops,
    double ReferencePeakMiB = double.NaN, double EnginePeakMiB = double.NaN);

/// <summary>
/// Times the fused engine against the reference on the same work in one process: meta-iterations
/// (same seeds, so the same trajectories up to rounding), evaluation steps, and peak memory.
/// </summary>
public static class EngineBenchmark
{
    /// <param name="peakMemory">
    /// Peak resident memory (MiB) of one meta-iteration of (method, backend), measured in a fresh
    /// process so that memory kept by earlier phases does not hide it; null skips memory.
    /// </param>
    /// <remarks>With several <see cref="EngineBenchmarkOptions.Layouts"/>, the reference is timed once per method and each layout's engine after it, one row per layout.</remarks>
    public static IReadOnlyList<MetaIterationTiming> MetaIterations(EngineBenchmarkOptions o, Action<string>? log = null,
        Func<string, Backend, CellLayout?, bool, double>? peakMemory = null)
    {
        o.Validate();
        var rows = new List<MetaIterationTiming>();
        var context = TaskContext.Cpu;
        foreach (var method in o.Methods)
        {
            var (refSec, coords, _) = Time(method, Backend.Reference, o, context, log);
            double flops;
            using (var learned = LearnedRegistry.Create(method)) flops = (double)FlopModel.MetaGradientFlopsPerCoordinate(learned.Schema) * coords * new MetaTrainOptions().TrajectorySteps;
            double refMem = peakMemory?.Invoke(method, Backend.Reference, o.Layouts[0], false) ?? double.NaN;
            foreach (var layout in o.LayoutsOf(method))
            foreach (var keep in o.KeepForwardOf(method, layout))
            foreach (var direct in o.DirectGradient.Distinct())
            {
                Array.Clear(FusedTrajectory.Profile);
                var (engSec, _, describe) = WithEngine(layout, keep, direct, () => Time(method, Backend.Engine, o, context, log));
                // The profile covers warm-up and timed iterations alike.
                var parts = (FusedTrajectory.Profile[0], FusedTrajectory.Profile[1], FusedTrajectory.Profile[2]);
                int n = o.Warmup + o.Iterations;
                parts = (parts.Item1 / n, parts.Item2 / n, parts.Item3 / n);
                double engMem = peakMemory?.Invoke(method, Backend.Engine, layout, keep) ?? double.NaN;
                rows.Add(new MetaIterationTiming(o.Label(method, layout, keep, direct), coords, refSec, engSec, refMem, engMem, describe, parts, flops));
            }
        }
        return rows;
    }

    /// <summary>Runs <paramref name="body"/> with <see cref="EngineOptions.Default"/> set to <paramref name="layout"/> (and for WithEngine, keep-forward), then restores it.</summary>
    private static TResult WithLayout<TResult>(CellLayout? layout, Func<TResult> body) =>
        WithEngine(layout, EngineOptions.Default.KeepForward, EngineOptions.Default.DirectGradient, body);

    private static TResult WithEngine<TResult>(CellLayout? layout, bool? keep, bool direct, Func<TResult> body)
    {
        var saved = EngineOptions.Default;
        EngineOptions.Default = saved with { Layout = layout, KeepForward = keep, DirectGradient = direct };
        try { return body(); }
        finally { EngineOptions.Default = saved; }
    }

    /// <summary>
    /// Runs <paramref name="warmup"/> + <paramref name="iterations"/> meta-iterations of (method, backend) and returns the peak
    /// resident memory of the process in MiB (Linux; NaN elsewhere). Meant for a fresh process
    /// (also a convenient target for a profiler: nothing else runs).
    /// </summary>
    public static double PeakMemoryOfOneIteration(string method, Backend backend, int warmup = 1, int iterations = 1)
    {
        var context = TaskContext.Cpu;
        Time(method, backend, new EngineBenchmarkOptions { Iterations = iterations, Warmup = warmup }, context, null);
        long peak = ProcessMemory.PeakResidentBytes();
        return peak > 0 ? peak / (1024.0 * 1024.0) : double.NaN;
    }

    /// <summary>
    /// Evaluates <paramref name="method"/> (untrained) on <paramref name="task"/> for <paramref name="steps"/> steps, one run, and
    /// returns the peak resident memory of the process in MiB (Linux; NaN elsewhere). Meant for a fresh process.
    /// </summary>
    public static double PeakMemoryOfEvaluation(string method, Backend backend, string task, int steps)
    {
        var context = TaskContext.Cpu;
        var t = TaskRegistry.Create(task, context);
        var rule = OptimizerRegistry.Create(method, BuildContext.Cpu with { Backend = backend });
        Evaluator.Evaluate(t, rule, new EvalSettings { Steps = steps, Runs = 1, TestMetrics = false, DivergenceThreshold = double.PositiveInfinity });
        long peak = ProcessMemory.PeakResidentBytes();
        return peak > 0 ? peak / (1024.0 * 1024.0) : double.NaN;
    }

    private static (double Seconds, int Coordinates, string Backend) Time(string method, Backend backend, EngineBenchmarkOptions o, TaskContext context, Action<string>? log)
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
            trainer.Train(new SyncProgress<IterationStats>(s =>
            {
                if (s.Iteration > o.Warmup) seconds.Add(s.Seconds);
                log?.Invoke($"{method} {trainer.BackendDescription}: iteration {s.Iteration}/{s.Iterations} {s.Seconds.ToString("0.000", CultureInfo.InvariantCulture)} s");
            }));
            int coords = 15910 + (options.Tricks.ConvexCombination ? options.Tricks.ConvexDimension : 0);
            return (Summary.Of(seconds).Median, coords, trainer.BackendDescription);
        }
        finally
        {
            try { Directory.Delete(folder, true); } catch (IOException) { }
        }
    }

    /// <param name="peakMemory">
    /// Peak resident memory (MiB) of evaluating (method, backend, layout) on a task, measured in a fresh process; null skips memory.
    /// </param>
    public static IReadOnlyList<EvalTiming> Evaluation(EngineBenchmarkOptions o, Action<string>? log = null,
        Func<string, Backend, CellLayout?, string, double>? peakMemory = null)
    {
        o.Validate();
        var rows = new List<EvalTiming>();
        var context = TaskContext.Cpu;
        var settings = TimingSettings(o);
        foreach (var spec in o.EvalTasks)
        {
            var task = TaskRegistry.Create(spec, context);
            double Ms(IUpdateRule rule)
            {
                // Warm-up long enough for tiered compilation to reach optimised code (and the allocator its steady state).
                Evaluator.Evaluate(task, rule, settings with { Steps = 60 });
                var r = Evaluator.Evaluate(task, rule, settings);
                log?.Invoke($"{spec}: {rule.Name} {r.MillisecondsPerUpdate.ToString("0.000", CultureInfo.InvariantCulture)} ms/update");
                return r.MillisecondsPerUpdate;
            }
            double adam = Ms(OptimizerRegistry.Create("adam:lr=0.001"));
            foreach (var method in o.EvalMethods)
            {
                double reference = Ms(OptimizerRegistry.Create(method, BuildContext.Cpu with { Backend = Backend.Reference }));
                double flops;
                using (var learned = LearnedRegistry.Create(method)) flops = (double)FlopModel.ForwardFlopsPerCoordinate(learned) * task.Dimension;
                double refMem = peakMemory?.Invoke(method, Backend.Reference, o.Layouts[0], spec) ?? double.NaN;
                foreach (var layout in o.LayoutsOf(method))
                {
                    double engine = WithLayout(layout, () => Ms(OptimizerRegistry.Create(method, BuildContext.Cpu with { Backend = Backend.Engine })));
                    string label = o.LayoutsOf(method).Count > 1 ? $"{spec} ({EngineBenchmarkOptions.LayoutName(layout)})" : spec;
                    double engMem = peakMemory?.Invoke(method, Backend.Engine, layout, spec) ?? double.NaN;
                    rows.Add(new EvalTiming(method, label, task.Dimension, adam, reference, engine, flops, refMem, engMem));
                }
            }
        }
        return rows;
    }

    /// <summary>One run of <see cref="EngineBenchmarkOptions.EvalSteps"/> steps, no test metrics, never stopped as diverged: what the evaluation timings run.</summary>
    private static EvalSettings TimingSettings(EngineBenchmarkOptions o) =>
        new() { Steps = o.EvalSteps, Runs = 1, TestMetrics = false, DivergenceThreshold = double.PositiveInfinity };

    /// <summary>
    /// Adam's whole evaluation step on each of <see cref="EngineBenchmarkOptions.EvalTasks"/> with
    /// <see cref="EvalSettings.DirectGradient"/> on and off, alternating (after a warm-up of each), the median of five.
    /// Tasks the engine has no kernel for run autograd both times.
    /// </summary>
    public static IReadOnlyList<OptimizeeStepTiming> OptimizeeSteps(EngineBenchmarkOptions o, Action<string>? log = null)
    {
        o.Validate();
        var rows = new List<OptimizeeStepTiming>();
        var context = TaskContext.Cpu;
        var settings = TimingSettings(o);
        foreach (var spec in o.EvalTasks)
        {
            var task = TaskRegistry.Create(spec, context);
            var adam = OptimizerRegistry.Create("adam:lr=0.001");
            double Ms(bool direct) => Evaluator.Evaluate(task, adam, settings with { DirectGradient = direct }).MillisecondsPerStep;
            Ms(true); Ms(false);
            var direct = new List<double>();
            var autograd = new List<double>();
            for (int i = 0; i < 5; i++) { direct.Add(Ms(true)); autograd.Add(Ms(false)); }
            var row = new OptimizeeStepTiming(spec, task.Dimension, Summary.Of(direct).Median, Summary.Of(autograd).Median);
            log?.Invoke($"{spec}: adam step (loss, gradient, update) {row.DirectMs.ToString("0.000", CultureInfo.InvariantCulture)} ms direct, " +
                        $"{row.AutogradMs.ToString("0.000", CultureInfo.InvariantCulture)} ms autograd");
            rows.Add(row);
        }
        return rows;
    }
}

/// <summary>Milliseconds per evaluation step of Adam (loss, gradient and update) with the optimizee's gradient from the engine's kernels and from autograd.</summary>
public sealed record OptimizeeStepTiming(string Task, int Parameters, double DirectMs, double AutogradMs);

/// <summary>Resident memory of this process (Linux /proc; zero elsewhere).</summary>
internal static class ProcessMemory
{
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
