using System.CommandLine;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Reproduction;
using L2O.Runtime;
using Spectre.Console;

namespace L2O.Cli.Commands;

/// <summary><c>l2o reproduce</c>: the HyperAdam paper's experiments beside its numbers.</summary>
internal static class ReproduceCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("experiment") { Description = "an experiment (see 'l2o reproduce list'), 'hyperadam' for all of them, or 'list'" };
        var runs = Cli.RunsOption();
        var quick = new Option<bool>("--quick") { Description = "the smoke-test protocol: 3 runs (1 beyond 100 steps), horizons cut to 200 steps, rates tuned by one 50-step run on a coarser grid (stated in every output)" };
        var seed = Cli.SeedOption();
        var outDir = Cli.OutOption();
        var dataDir = Cli.DataDirOption();
        var threads = Cli.ThreadsOption();
        var backend = Cli.BackendOption();
        var hyperadam = new Option<string?>("--hyperadam") { Description = "HyperAdam checkpoint to reproduce with (default: the shipped one)" };
        var cmd = new Command("reproduce", "Run the HyperAdam paper's experiments (Tables 1-3, Figs. 5-8, §5.5) and compare with its numbers; resumable")
        {
            name, runs, quick, seed, outDir, dataDir, threads, backend, hyperadam,
        };
        Cli.Examples[cmd] = "  l2o reproduce list\n  l2o reproduce table1 --runs 100\n  l2o reproduce hyperadam --quick --out runs/repro-quick\n" +
                            "  l2o reproduce hyperadam --out runs/repro        # interrupted? the same command continues";
        cmd.SetAction(p =>
        {
            string which = p.GetValue(name)!;
            if (which == "list")
            {
                var table = new Table().AddColumns("name", "experiment", "rows", "optimizers");
                foreach (var e in HyperAdamPaper.Experiments)
                    table.AddRow(e.Name, Markup.Escape(e.Title), e.Rows.Count.ToString(), Markup.Escape(string.Join(", ", e.Optimizers.Concat(e.Variants.Keys))));
                AnsiConsole.Write(table);
                return Cli.Ok;
            }
            var experiments = which == "hyperadam" ? HyperAdamPaper.Experiments : [HyperAdamPaper.Find(which)];
            Cli.ApplyThreads(p.GetValue(threads));
            var settings = new ReproduceSettings
            {
                Runs = p.GetValue(runs), Quick = p.GetValue(quick), Seed = p.GetValue(seed), DataDir = p.GetValue(dataDir),
                Build = new BuildContext(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32) { Backend = Cli.ParseBackend(p.GetValue(backend)!) },
                Checkpoints = p.GetValue(hyperadam) is string h ? new Dictionary<string, string> { ["hyperadam"] = h } : new Dictionary<string, string>(),
            };
            settings.Validate();
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
}
