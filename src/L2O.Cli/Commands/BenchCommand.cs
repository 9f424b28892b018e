using System.CommandLine;
using System.Globalization;
using System.Text;
using L2O.Evaluation;
using L2O.Performance;
using L2O.Runtime;
using Spectre.Console;

namespace L2O.Cli.Commands;

/// <summary><c>l2o bench</c>: the fused engine against the TorchSharp reference on the same work.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var optimizers = new Option<string[]>("--optimizer", "-o")
        {
            Description = $"learned optimizers to time (the fused engine covers {L2O.Engine.Backends.FusedMethods}); the evaluation timing runs hyperadam unless -o is given, then each named",
            DefaultValueFactory = _ => ["hyperadam", "rnnprop", "dmoptimizer"],
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var iterations = new Option<int>("--iterations", "-n") { Description = "timed meta-iterations per backend (the median is reported)", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "untimed meta-iterations first", DefaultValueFactory = _ => 1 };
        var evalTasks = new Option<string[]>("--eval-task")
        {
            Description = "tasks for the evaluation (no-grad) timing",
            DefaultValueFactory = _ => ["mlp:layers=9", "cnn2"],
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var evalSteps = new Option<int>("--eval-steps") { Description = "steps per evaluation timing", DefaultValueFactory = _ => 30 };
        var noMeta = new Option<bool>("--no-meta") { Description = "skip the meta-iteration timing" };
        var noEval = new Option<bool>("--no-eval") { Description = "skip the evaluation timing" };
        var noMemory = new Option<bool>("--no-memory") { Description = "skip the peak-memory measurement (it runs each case in a child process)" };
        var layouts = new Option<string[]>("--engine-layout")
        {
            Description = "engine block layouts to time in this run: rows (one coordinate per row), lanes (coordinates along the vector lanes, docs/engine.md) " +
                          "and/or auto (the engine's choice: lanes)",
            DefaultValueFactory = _ => [EngineBenchmarkOptions.LayoutName(Engine.EngineOptions.Default.Layout)],
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var forwardOutputs = new Option<string[]>("--forward-outputs")
        {
            Description = "how each backward step of a meta-iteration gets the forward's outputs, each timed in this run: recompute (from the stored input state) " +
                          "and/or keep (stored by the forward: more memory, no recomputation; rows cells)",
            DefaultValueFactory = _ => [Engine.EngineOptions.Default.KeepForward == false ? "recompute" : "keep"],
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var optimizeeGradient = new Option<string[]>("--optimizee-gradient")
        {
            Description = "how a meta-iteration computes the optimizee's loss and gradient, each timed in this run: direct (the engine's own kernel, " +
                          "where it has one: the MLP tasks) and/or autograd (TorchSharp); both on one thread",
            DefaultValueFactory = _ => [Engine.EngineOptions.Default.DirectGradient ? "direct" : "autograd"],
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var blockRows = new Option<int>("--block-rows")
        {
            Description = "coordinates per engine block for every engine of this run (a multiple of 4; 0: each layout's default, 128 rows or 512 lanes)",
        };
        var probe = new Option<string?>("--probe") { Description = "internal: METHOD:BACKEND, run one meta-iteration and print the peak memory", Hidden = true };
        var probeTask = new Option<string?>("--probe-task") { Description = "internal: with --probe, evaluate on this task instead (--eval-steps steps)", Hidden = true };
        var cluster = new Option<bool>("--cluster")
        {
            Description = "instead: meta-training throughput with the meta-batch on in-process workers and on local worker silos (started and stopped here), " +
                          "and the messaging overhead per unroll",
        };
        var silos = new Option<int[]>("--silos")
        {
            Description = "with --cluster: the worker and silo counts to measure",
            DefaultValueFactory = _ => [1, 2],
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var metaBatch = new Option<int>("--meta-batch") { Description = "with --cluster: trajectories per meta-iteration", DefaultValueFactory = _ => 4 };
        var clusterTask = new Option<string>("--cluster-task") { Description = "with --cluster: the training task", DefaultValueFactory = _ => "mlp" };
        var clusterSteps = new Option<int>("--cluster-steps") { Description = "with --cluster: trajectory length (unrolls of the method's length)", DefaultValueFactory = _ => 40 };
        var outDir = Cli.OutOption();
        var threads = Cli.ThreadsOption();
        var cmd = new Command("bench", "Time the fused CPU engine against the TorchSharp reference on the same work: 100-step meta-iterations " +
                                       "(base MLP, each method's paper settings), evaluation update time next to Adam, and peak memory; writes bench.md")
        {
            optimizers, iterations, warmup, evalTasks, evalSteps, noMeta, noEval, noMemory, layouts, forwardOutputs, optimizeeGradient, blockRows, cluster, silos, metaBatch, clusterTask, clusterSteps, probe, probeTask, outDir, threads,
        };
        Cli.Examples[cmd] = "  l2o bench\n  l2o bench -o hyperadam -n 5 --no-eval\n  l2o bench --no-meta --eval-task mlp:layers=9\n  l2o bench -o hyperadam --engine-layout rows lanes\n  l2o bench -o hyperadam --no-eval --forward-outputs recompute keep\n  l2o bench -o hyperadam --no-eval --optimizee-gradient direct autograd\n  l2o bench --cluster --silos 1 2 4 8 16 --meta-batch 16";
        cmd.SetAction(p =>
        {
            Cli.ApplyThreads(p.GetValue(threads));
            if (p.GetResult(blockRows) is { Implicit: false })
            {
                int br = p.GetValue(blockRows);
                if (Engine.EngineOptions.BlockRowsProblem(br) is string problem) throw new L2OException("--block-rows " + problem);
                Engine.EngineOptions.Default = Engine.EngineOptions.Default with { BlockRows = br };
            }
            L2ORuntime.EnsureTorch();
            var chosenLayouts = p.GetValue(layouts)!.Select(ParseLayout).ToList();
            var chosenKeep = p.GetValue(forwardOutputs)!.Select(ParseForwardOutputs).ToList();
            var chosenGradient = p.GetValue(optimizeeGradient)!.Select(ParseOptimizeeGradient).ToList();
            if (p.GetValue(probe) is string what)
            {
                Engine.EngineOptions.Default = Engine.EngineOptions.Default with { Layout = chosenLayouts[0], KeepForward = chosenKeep[0] };
                var parts = what.Split(':');
                // The parent passes no -n: one warm-up and one measured iteration. With -n it is a profiling target.
                double mib = p.GetValue(probeTask) is string probed
                    ? EngineBenchmark.PeakMemoryOfEvaluation(parts[0], Engine.Backends.Parse(parts[1]), probed, p.GetValue(evalSteps))
                    : EngineBenchmark.PeakMemoryOfOneIteration(parts[0], Engine.Backends.Parse(parts[1]), p.GetValue(warmup), p.GetResult(iterations) is null ? 1 : p.GetValue(iterations));
                Console.WriteLine($"peak-mib {mib.ToString("R", CultureInfo.InvariantCulture)}");
                return Cli.Ok;
            }
            if (p.GetValue(cluster))
            {
                foreach (var o in new Option[] { evalTasks, evalSteps, noMeta, noEval, noMemory, layouts, forwardOutputs, optimizeeGradient, blockRows })
                    if (p.GetResult(o) is { Implicit: false }) throw new L2OException($"{o.Name} is for the engine benchmark; leave it out with --cluster");
                var named = p.GetResult(optimizers) is { Implicit: false } ? p.GetValue(optimizers)! : ["hyperadam"];
                if (named.Length != 1) throw new L2OException($"bench --cluster times one learned optimizer; give one -o (got {named.Length})");
                return Cluster(new ClusterBench.Settings
                {
                    Optimizer = named[0],
                    Task = p.GetValue(clusterTask)!, Steps = p.GetValue(clusterSteps), MetaBatch = p.GetValue(metaBatch),
                    Counts = p.GetValue(silos)!.Distinct().ToArray(), Iterations = p.GetValue(iterations), Warmup = p.GetValue(warmup),
                }, p.GetValue(outDir));
            }
            foreach (var o in new Option[] { silos, metaBatch, clusterTask, clusterSteps })
                if (p.GetResult(o) is { Implicit: false }) throw new L2OException($"{o.Name} is for --cluster; add --cluster or leave it out");
            var options = new EngineBenchmarkOptions
            {
                Methods = p.GetValue(optimizers)!, Iterations = p.GetValue(iterations), Warmup = p.GetValue(warmup),
                EvalTasks = p.GetValue(evalTasks)!, EvalSteps = p.GetValue(evalSteps), Layouts = chosenLayouts, KeepForward = chosenKeep,
                DirectGradient = chosenGradient,
                // The evaluation timing runs HyperAdam unless -o names methods, then each of them.
                EvalMethods = p.GetResult(optimizers) is { Implicit: false } ? p.GetValue(optimizers)! : ["hyperadam"],
            };
            options.Validate();
            foreach (var m in options.Methods.Concat(p.GetValue(noEval) ? [] : options.EvalMethods).Distinct())   // fail before any timing
            {
                using var learned = Learned.LearnedRegistry.Create(m);
                if (Engine.Backends.Unsupported(learned, learned.Context.Device, learned.Context.DType) is string why) throw new L2OException(why);
            }
            var md = new StringBuilder();
            md.AppendLine($"# l2o bench, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC").AppendLine();
            md.AppendLine($"Machine: {Machine()}").AppendLine();
            md.AppendLine($"Command: `{Cli.CommandLine()}`").AppendLine();
            void Log(string line) => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(line)}[/]");
            AnsiConsole.MarkupLine($"machine: {Markup.Escape(Machine())}");

            // The bound beside each timing: the method's products (FlopModel) at the FMA rate this machine reaches in registers.
            int engineThreads = Engine.EngineOptions.Default.ResolvedThreads;
            double peak = PeakFlops.Measure(engineThreads);
            string peakLine = $"FMA peak, {engineThreads} thread{(engineThreads == 1 ? "" : "s")}, registers only: {F(peak / 1e9, "0.0")} GFLOP/s; " +
                              "a bound is the method's matrix products (Learned.FlopModel: forward 2·out·in per weight matrix per coordinate; a meta-iteration 4× that, over 100 steps) at that rate";
            AnsiConsole.MarkupLine(Markup.Escape(peakLine));
            md.AppendLine(peakLine + ".").AppendLine();

            if (!p.GetValue(noMeta))
            {
                var rows = EngineBenchmark.MetaIterations(options, Log, p.GetValue(noMemory) ? null : (m, b, l, k) => ProbeMemory(m, b, l, k, p.GetValue(threads), Log));
                md.AppendLine("## Meta-iteration (100 steps in unrolls of each method's length: 20 for HyperAdam, RNNprop and DMoptimizer, 1 for the thesis's rules; base MLP, first-order; median seconds)").AppendLine();
                var table = new ReportTable(md, "[bold]meta-iteration[/]: 100 steps in unrolls of each method's length (HyperAdam, RNNprop, DMoptimizer: 20; the thesis's rules: 1), base MLP, first-order (median s)",
                    "optimizer", "coordinates", "reference s", "engine s", "speed-up", "bound s", "engine / bound", "reference peak MiB", "engine peak MiB");
                foreach (var r in rows)
                {
                    double bound = r.Flops / peak;
                    string[] cells = [r.Method, r.Coordinates.ToString(CultureInfo.InvariantCulture), F(r.ReferenceSeconds, "0.000"), F(r.EngineSeconds, "0.000"),
                        F(r.Speedup, "0.0") + "×", F(bound, "0.000"), F(r.EngineSeconds / bound, "0.0") + "×", F(r.ReferencePeakMiB, "0"), F(r.EnginePeakMiB, "0")];
                    table.Add(cells);
                }
                md.AppendLine().AppendLine("Engine time per iteration (mean over all its iterations, warm-up included): forward / backward / optimizee: " +
                    string.Join("; ", rows.Select(r => $"{r.Method} {F(r.EngineParts.Forward, "0.000")} / {F(r.EngineParts.Backward, "0.000")} / {F(r.EngineParts.Optimizee, "0.000")} s")) + ".");
                md.AppendLine().AppendLine($"Engine: {rows.FirstOrDefault()?.Engine}. Peak memory: the peak resident memory (VmHWM) of a fresh process running one warm-up and one measured meta-iteration of that case; it includes the runtime, libtorch and the MNIST data, which the two backends share.").AppendLine();
                table.Show();
            }
            if (!p.GetValue(noEval))
            {
                var rows = EngineBenchmark.Evaluation(options, Log, p.GetValue(noMemory) ? null : (m, b, l, t) => ProbeMemory(m, b, l, false, p.GetValue(threads), Log, t, options.EvalSteps));
                foreach (var method in options.EvalMethods)
                {
                    md.AppendLine($"## Evaluation: milliseconds per update ({method})").AppendLine();
                    var table = new ReportTable(md, $"[bold]evaluation[/]: ms per update ({method}, untrained; Adam for scale)",
                        "task", "parameters", "adam ms", "reference ms", "engine ms", "speed-up", "bound ms", "engine / bound", "reference peak MiB", "engine peak MiB");
                    foreach (var r in rows.Where(r => r.Method == method))
                    {
                        double boundMs = r.Flops / peak * 1000;
                        string[] cells = [r.Task, r.Parameters.ToString(CultureInfo.InvariantCulture), F(r.AdamMs, "0.000"), F(r.ReferenceMs, "0.000"), F(r.EngineMs, "0.000"),
                            F(r.ReferenceMs / r.EngineMs, "0.0") + "×", F(boundMs, "0.000"), F(r.EngineMs / boundMs, "0.0") + "×", F(r.ReferencePeakMiB, "0"), F(r.EnginePeakMiB, "0")];
                        table.Add(cells);
                    }
                    md.AppendLine();
                    table.Show();
                }
                var steps = EngineBenchmark.OptimizeeSteps(options, Log);
                md.AppendLine("## Evaluation: milliseconds per Adam step, the optimizee's gradient by the engine's kernels (direct) or by autograd").AppendLine();
                var stepTable = new ReportTable(md, "[bold]evaluation[/]: ms per Adam step (loss, gradient and update), the optimizee's gradient two ways",
                    "task", "parameters", "direct ms", "autograd ms", "autograd / direct");
                foreach (var r in steps)
                    stepTable.Add([r.Task, r.Parameters.ToString(CultureInfo.InvariantCulture), F(r.DirectMs, "0.000"), F(r.AutogradMs, "0.000"), F(r.AutogradMs / r.DirectMs, "0.00") + "×"]);
                md.AppendLine().AppendLine("Medians of five alternating timings of each; the engine has kernels for the MLP tasks only, so other tasks run autograd both times.").AppendLine();
                stepTable.Show();
                if (!p.GetValue(noMemory))
                    md.AppendLine($"Peak memory: the peak resident memory (VmHWM) of a fresh process evaluating the untrained method on the task for {options.EvalSteps} steps (one run, no test metrics); it includes the runtime, libtorch and the data.").AppendLine();
            }
            string folder = Cli.OutputFolder(p.GetValue(outDir), "bench");
            Directory.CreateDirectory(folder);
            AtomicFile.WriteAllText(Path.Combine(folder, "bench.md"), md.ToString());
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(Path.Combine(folder, "bench.md"))}");
            return Cli.Ok;
        });
        return cmd;
    }

    private static int Cluster(ClusterBench.Settings settings, string? outDir)
    {
        settings.Validate();
        string folder = Cli.OutputFolder(outDir, "bench");
        Directory.CreateDirectory(folder);
        void Log(string line) => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(line)}[/]");
        AnsiConsole.MarkupLine($"machine: {Markup.Escape(Machine())}");
        using var bench = new ClusterBench(settings, Path.Combine(folder, "cases"), Log);
        var (rows, local, cluster) = bench.Run();
        var md = new StringBuilder();
        md.AppendLine($"# l2o bench --cluster, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC").AppendLine();
        md.AppendLine($"Machine: {Machine()}").AppendLine();
        md.AppendLine($"Command: `{Cli.CommandLine()}`").AppendLine();
        string what = $"{settings.Optimizer} on {settings.Task}, {settings.Steps} steps per trajectory, meta-batch {settings.MetaBatch}, " +
                      $"median seconds per iteration over {settings.Iterations} after {settings.Warmup} warm-up";
        md.AppendLine($"## Trajectories per second ({what})").AppendLine();
        md.AppendLine("Each case is a child `l2o meta-train`; the silos run on this machine with one thread each. " +
                      "Same Θ: the case's last.safetensors (Θ and the Adam moments) equals the one-worker in-process run's, bit for bit.").AppendLine();
        var table = new ReportTable(md, $"[bold]meta-training throughput[/]: {Markup.Escape(what)}",
            "runs the meta-batch", "count", "s / iteration", "trajectories / s", "speed-up", "same Θ");
        foreach (var r in rows)
            table.Add([r.Runner, r.Parallelism.ToString(CultureInfo.InvariantCulture), F(r.SecondsPerIteration, "0.000"), F(r.TrajectoriesPerSecond, "0.00"),
                F(r.Speedup, "0.00") + "×", r.SameTheta switch { null => "(reference)", true => "yes", false => "NO" }]);
        table.Show();
        string overhead = $"messaging overhead per unroll: {F((cluster - local) * 1000, "0.0")} ms (in-process {F(local * 1000, "0.0")} ms, 1 silo {F(cluster * 1000, "0.0")} ms per unroll)";
        md.AppendLine().AppendLine("## Overhead per unroll").AppendLine();
        md.AppendLine("A run whose unrolls cost almost nothing (`-o rnnprop:hidden=3 -t quadratic --steps 6 --unroll 3 --meta-batch 1`, 2 unrolls per iteration), " +
                      "median seconds per iteration halved: the difference is one grain call with Θ out and the meta-gradient back.").AppendLine();
        md.AppendLine($"| runs the unrolls | ms / unroll |").AppendLine("|---|---|");
        md.AppendLine($"| in-process | {F(local * 1000, "0.0")} |").AppendLine($"| 1 silo | {F(cluster * 1000, "0.0")} |").AppendLine();
        md.AppendLine($"Overhead: {F((cluster - local) * 1000, "0.0")} ms per unroll.");
        AnsiConsole.MarkupLine(Markup.Escape(overhead));
        AtomicFile.WriteAllText(Path.Combine(folder, "bench.md"), md.ToString());
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(Path.Combine(folder, "bench.md"))}");
        if (rows.Any(r => r.SameTheta == false))
            throw new L2OException("bench --cluster: a case ended with another Θ than the in-process run (see bench.md); the runs should agree bit for bit");
        return Cli.Ok;
    }

    /// <summary>Runs <c>l2o bench --probe METHOD:BACKEND</c> in a child process and reads its peak memory.</summary>
    private static double ProbeMemory(string method, Optimizers.Backend backend, Engine.CellLayout? layout, bool keep, int? threads, Action<string> log,
        string? task = null, int evalSteps = 0)
    {
        var args = new List<string> { "bench", "--probe", $"{method}:{backend.ToString().ToLowerInvariant()}", "--engine-layout", EngineBenchmarkOptions.LayoutName(layout),
            "--forward-outputs", keep ? "keep" : "recompute" };
        if (task is not null) args.AddRange(["--probe-task", task, "--eval-steps", evalSteps.ToString(CultureInfo.InvariantCulture)]);
        if (threads is int t) args.AddRange(["--threads", t.ToString(CultureInfo.InvariantCulture)]);
        if (Engine.EngineOptions.Default.BlockRows > 0) args.AddRange(["--block-rows", Engine.EngineOptions.Default.BlockRows.ToString(CultureInfo.InvariantCulture)]);
        var (_, output) = SelfProcess.Run(args);
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("peak-mib ", StringComparison.Ordinal));
        double mib = line is null ? double.NaN : double.Parse(line["peak-mib ".Length..], CultureInfo.InvariantCulture);
        log($"{method} {backend} ({EngineBenchmarkOptions.LayoutName(layout)} layout{(keep ? ", forward kept" : "")}{(task is null ? "" : $", evaluating {task}")}): peak resident memory {F(mib, "0")} MiB (child process)");
        return mib;
    }

    /// <summary>A table shown on the console and written into bench.md with the same columns and cells: the header when made, a row per <see cref="Add"/>.</summary>
    private sealed class ReportTable
    {
        private readonly Table _console;
        private readonly StringBuilder _md;

        public ReportTable(StringBuilder md, string consoleTitle, params string[] columns)
        {
            _md = md;
            _console = new Table().RoundedBorder().Title(consoleTitle);
            foreach (var c in columns) _console.AddColumn(new TableColumn(c).RightAligned());
            md.AppendLine("| " + string.Join(" | ", columns) + " |");
            md.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", columns.Length)));
        }

        public void Add(string[] cells)
        {
            _console.AddRow(cells.Select(Markup.Escape).ToArray());
            _md.AppendLine("| " + string.Join(" | ", cells) + " |");
        }

        public void Show() => AnsiConsole.Write(_console);
    }

    private static bool ParseOptimizeeGradient(string name) => name.ToLowerInvariant() switch
    {
        "direct" => true,
        "autograd" => false,
        _ => throw new L2OException($"unknown --optimizee-gradient '{name}'; valid: direct, autograd"),
    };

    private static bool ParseForwardOutputs(string name) => name.ToLowerInvariant() switch
    {
        "recompute" => false,
        "keep" => true,
        _ => throw new L2OException($"unknown --forward-outputs '{name}'; valid: recompute, keep"),
    };

    private static Engine.CellLayout? ParseLayout(string name) => name.ToLowerInvariant() switch
    {
        "rows" => Engine.CellLayout.Rows,
        "lanes" => Engine.CellLayout.Lanes,
        "auto" => null,
        _ => throw new L2OException($"unknown --engine-layout '{name}'; valid: rows, lanes, auto"),
    };

    private static string F(double v, string format) => double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "n/a";

    private static string Machine()
    {
        string cpu = "unknown CPU";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException) { }
        string simd = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512" : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "AVX2" : "no wide SIMD";
        return $"{cpu}, {Environment.ProcessorCount} cores, {simd}, .NET {Environment.Version}, libtorch {TorchSharp.torch.__version__}";
    }
}
