using System.CommandLine;
using System.Globalization;
using L2O.Specs;
using L2O.Tasks;
using TorchSharp;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Reproduction;
using L2O.Runtime;
using Spectre.Console;

namespace L2O.Cli.Commands;

/// <summary><c>l2o reproduce</c>: the HyperAdam and RNNprop papers' experiments beside their numbers.</summary>
internal static class ReproduceCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("experiment") { Description = "an experiment (see 'l2o reproduce list'), a paper ('hyperadam' or 'rnnprop') for all of its experiments, or 'list'" };
        var runs = Cli.RunsOption();
        var quick = new Option<bool>("--quick") { Description = "the smoke-test protocol: 3 runs (1 beyond 100 steps), horizons cut to 200 steps, rates tuned by one 50-step run on a coarser grid (stated in every output)" };
        var seed = Cli.SeedOption();
        var outDir = Cli.OutOption();
        var dataDir = Cli.DataDirOption();
        var threads = Cli.ThreadsOption();
        var backend = Cli.BackendOption();
        static Option<string?> CheckpointOption(string method) => new($"--{method}")
        {
            Description = $"{method} checkpoint to reproduce with: a file or a shipped one ({string.Join(", ", L2O.Learned.Pretrained.Keywords(method))}; default: {L2O.Learned.Pretrained.Keyword})",
        };
        var hyperadam = CheckpointOption("hyperadam");
        var rnnprop = CheckpointOption("rnnprop");
        var dmoptimizer = CheckpointOption("dmoptimizer");
        var plan = new Option<bool>("--plan") { Description = "print what the reproduction would compute (units, steps, what the --out folder has cached) and its time estimated from a 20-step timing of each task and optimizer; runs nothing else" };
        var cmd = new Command("reproduce", "Run a paper's experiments (HyperAdam: Tables 1-3, Figs. 5-8, §5.5; RNNprop: Tables 2-3, Figs. 2, 6, 7) and compare with its numbers; resumable")
        {
            name, runs, quick, seed, outDir, dataDir, threads, backend, hyperadam, rnnprop, dmoptimizer, plan,
        };
        Cli.Examples[cmd] = "  l2o reproduce list\n  l2o reproduce table1 --runs 100\n  l2o reproduce hyperadam --quick --out runs/repro-quick\n" +
                            "  l2o reproduce hyperadam --out runs/repro        # interrupted? the same command continues\n" +
                            "  l2o reproduce hyperadam --plan --out runs/repro # what is left there, and how long it would take\n" +
                            "  l2o reproduce rnnprop --quick";
        cmd.SetAction(p =>
        {
            string which = p.GetValue(name)!;
            if (which == "list")
            {
                var table = new Table().AddColumns("paper", "name", "experiment", "rows", "optimizers");
                foreach (var paper in Papers.All)
                    foreach (var e in paper.Experiments)
                        table.AddRow(paper.Name, e.Name, Markup.Escape(e.Title), e.Rows.Count.ToString(), Markup.Escape(string.Join(", ", e.Optimizers.Concat(e.Variants.Keys))));
                AnsiConsole.Write(table);
                return Cli.Ok;
            }
            var experiments = Papers.Find(which);
            Cli.ApplyThreads(p.GetValue(threads));
            var settings = new ReproduceSettings
            {
                Runs = p.GetValue(runs), Quick = p.GetValue(quick), Seed = p.GetValue(seed), DataDir = p.GetValue(dataDir),
                Build = new BuildContext(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32) { Backend = Cli.ParseBackend(p.GetValue(backend)!) },
                Checkpoints = new (string Key, string? File)[] { ("hyperadam", p.GetValue(hyperadam)), ("rnnprop", p.GetValue(rnnprop)), ("dmoptimizer", p.GetValue(dmoptimizer)) }
                    .Where(c => c.File is not null).ToDictionary(c => c.Key, c => c.File!),
            };
            settings.Validate();
            if (p.GetValue(plan))
            {
                // Reads the folder's cache if it exists; creates and locks nothing.
                string? given = p.GetValue(outDir);
                PrintPlan(new Reproducer(given ?? Path.Combine(Path.GetTempPath(), $"l2o-plan-{Guid.NewGuid():N}"), settings).Plan(experiments), settings, given);
                return Cli.Ok;
            }
            string folder = Cli.OutputFolder(p.GetValue(outDir), "reproduce");
            // One writer at a time; an existing reproduction folder is continued from its cache, not refused.
            using var lease = RunFolder.Acquire(folder, Cli.CommandLine());
            var reproducer = new Reproducer(folder, settings);
            var done = new List<(Experiment, IReadOnlyList<RowResult>)>();
            int total = experiments.Sum(Reproducer.Units), offset = 0;
            void RunAll(Action<ReproduceProgress> report)
            {
                foreach (var e in experiments)
                {
                    int start = offset;
                    var rows = reproducer.Run(e, new SyncProgress<ReproduceProgress>(pr => report(pr with { Done = start + pr.Done, Total = total })), Cli.Cancellation.Token);
                    offset += Reproducer.Units(e);
                    ReproductionReport.Write(e, rows, settings, Path.Combine(folder, e.Name));
                    foreach (var (file, title, lines) in ReproductionReport.Charts(rows))
                        Plots.Lines(title, "step", "loss", lines, Path.Combine(folder, e.Name, file), logScale: true);
                    done.Add((e, rows));
                    AtomicFile.WriteAllText(Path.Combine(folder, "summary.md"), ReproductionReport.Summary(done, settings, Cli.CommandLine()));
                }
            }
            if (AnsiConsole.Profile.Capabilities.Interactive)
                AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                    .Start(ctx =>
                    {
                        var bar = ctx.AddTask("reproduce", maxValue: total);
                        RunAll(pr => { bar.Value = pr.Done; bar.Description = Markup.Escape(pr.What); });
                    });
            else
            {
                string last = "";
                RunAll(pr => { if (pr.What != last) { Console.WriteLine($"[{pr.Done}/{pr.Total}] {pr.What}"); last = pr.What; } });
            }
            foreach (var (e, rows) in done)
                foreach (var r in rows)
                    AnsiConsole.MarkupLine($"{(r.Reproduced switch { true => "[green]✓[/]", false => "[red]✗[/]", _ => "[grey]–[/]" })} {Markup.Escape(e.Name)} · {Markup.Escape(r.Row.Label)}: {Markup.Escape(r.Verdict)}");
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(Path.Combine(folder, "summary.md"))}");
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>
    /// One line per row: its units, how many are done (in the folder's cache, or computed by an earlier
    /// row of the same run), steps left and their estimated time; totals per experiment and overall.
    /// </summary>
    private static void PrintPlan(IReadOnlyList<PlannedUnit> units, ReproduceSettings settings, string? folder)
    {
        var tasks = new Dictionary<string, ITask>();
        var cost = new Dictionary<(string, string), double>();
        double SecondsPerStep(PlannedUnit u)
        {
            if (cost.TryGetValue((u.Task, u.Spec), out var s)) return s;
            if (!tasks.TryGetValue(u.Task, out var task))
                tasks[u.Task] = task = TaskRegistry.Create(u.Task, new TaskContext(settings.Build.Device, settings.Build.DType, settings.DataDir));
            // A baseline's step costs the same at any rate; a small one keeps the timing run finite.
            var info = OptimizerRegistry.Find(Spec.Parse(u.Spec).Name);
            var rule = OptimizerRegistry.Create(info.Learned || !info.HasLearningRate ? u.Spec : $"{u.Spec}:lr=0.001", settings.Build);
            return cost[(u.Task, u.Spec)] = StepCost.Measure(task, rule);
        }

        var table = new Table().AddColumns("experiment", "row", "units", "done", "not runnable", "steps left", "estimate");
        double total = 0;
        long totalSteps = 0;
        foreach (var experiment in units.GroupBy(u => u.Experiment))
        {
            double experimentSeconds = 0;
            foreach (var row in experiment.GroupBy(u => u.Row))
            {
                double seconds = row.Where(u => u.RemainingSteps > 0).Sum(u => u.RemainingSteps * SecondsPerStep(u));
                long steps = row.Sum(u => u.RemainingSteps);
                experimentSeconds += seconds;
                totalSteps += steps;
                int cached = row.Count(u => u.Evaluation is PlanState.Cached or PlanState.Shared);
                var notRunnable = row.Where(u => u.Evaluation == PlanState.NotRunnable).ToList();
                table.AddRow(Markup.Escape(experiment.Key), Markup.Escape(row.Key), row.Count().ToString(), cached.ToString(),
                    notRunnable.Count == 0 ? "" : Markup.Escape($"{notRunnable.Count}: {notRunnable[0].Why}"), steps.ToString("N0", CultureInfo.InvariantCulture), Duration(seconds));
            }
            table.AddRow($"[bold]{Markup.Escape(experiment.Key)}[/]", "", "", "", "", "", $"[bold]{Duration(experimentSeconds)}[/]");
            total += experimentSeconds;
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(Markup.Escape($"in all: {totalSteps.ToString("N0", CultureInfo.InvariantCulture)} optimizer steps left, about {Duration(total)} " +
            $"at {torch.get_num_threads()} thread(s) on this machine as it is now (each step's cost timed over 20 steps; diverged runs stop early, so this is an upper bound)" +
            (folder is null ? "; no --out folder given, so nothing counts as cached" : $"; cache read from {folder}") +
            (settings.Quick ? "; quick protocol" : "")));
        foreach (var task in tasks.Values) (task as IDisposable)?.Dispose();
    }

    private static string Duration(double seconds) =>
        seconds < 90 ? $"{seconds:F0} s" : seconds < 5400 ? $"{seconds / 60:F0} min" : $"{seconds / 3600:F1} h";
}
