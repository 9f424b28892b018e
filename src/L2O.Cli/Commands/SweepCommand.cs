using System.CommandLine;
using System.Globalization;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;
using Spectre.Console;
using TorchSharp;

namespace L2O.Cli.Commands;

internal static class SweepCommand
{
    public static Command Create()
    {
        var task = new Option<string>("--task", "-t") { Description = "task specification", Required = true };
        var optimizer = new Option<string>("--optimizer", "-o") { Description = "optimizer specification without lr, e.g. adam or rmsprop:rho=0.9", Required = true };
        var lrMin = new Option<double>("--lr-min") { Description = "smallest rate of the sqrt(2) grid", DefaultValueFactory = _ => 1e-4 };
        var lrMax = new Option<double>("--lr-max") { Description = "largest rate of the sqrt(2) grid", DefaultValueFactory = _ => 1.0 };
        var steps = Cli.StepsOption();
        var runs = Cli.RunsOption(10);
        var seed = Cli.SeedOption();
        var outDir = Cli.OutOption();
        var device = Cli.DeviceOption();
        var dataDir = Cli.DataDirOption();
        var threads = Cli.ThreadsOption();
        var backend = Cli.BackendOption();
        var force = Cli.ForceOption();
        var cmd = new Command("sweep", "Tune a learning rate on the sqrt(2) grid 2^(k/2), as the papers tuned their baselines; reports the best rate.")
        {
            task, optimizer, lrMin, lrMax, steps, runs, seed, outDir, device, dataDir, threads, backend, force,
        };
        Cli.Examples[cmd] = "  l2o sweep -t mlp -o adam --lr-min 1e-3 --lr-max 0.2 --runs 10\n  l2o sweep -t lstm -o rmsprop --runs 5";
        cmd.SetAction(p =>
        {
            Cli.ApplyThreads(p.GetValue(threads));
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            var t = TaskRegistry.Create(p.GetValue(task)!, new TaskContext(dev, torch.ScalarType.Float32, p.GetValue(dataDir)));
            var spec = Spec.Parse(p.GetValue(optimizer)!);
            if (spec.Arguments.ContainsKey("lr")) throw new L2OException("leave 'lr' out of the optimizer specification: the sweep sets it");
            var grid = LearningRateSweep.Grid(p.GetValue(lrMin), p.GetValue(lrMax));
            var settings = new EvalSettings { Steps = p.GetValue(steps), Runs = p.GetValue(runs), Seed = p.GetValue(seed), TestMetrics = false };
            settings.Validate();
            var context = new BuildContext(dev, torch.ScalarType.Float32) { Backend = Cli.ParseBackend(p.GetValue(backend)!) };
            using var folder = Cli.OpenOutput(p.GetValue(outDir), "sweep", p.GetValue(force));
            var result = Cli.WithProgress($"sweeping {grid.Count} rates", grid.Select(lr => $"lr={lr:G4}").ToList(), settings.Runs * settings.Steps,
                progressFor =>
                {
                    int i = 0;
                    var prog = new ForwardingProgress(() => progressFor(i));
                    return LearningRateSweep.Run(t, spec, grid, settings, context, (_, _) => i++, prog, Cli.Cancellation.Token);
                });

            var table = new Table().RoundedBorder().Title($"[bold]{Markup.Escape(t.Name)}[/]: {Markup.Escape(spec.ToString())}, {settings.Steps} steps × {settings.Runs} runs");
            table.AddColumn(new TableColumn("lr").RightAligned());
            table.AddColumn(new TableColumn("final loss (mean ± std)").RightAligned());
            table.AddColumn(new TableColumn("median").RightAligned());
            table.AddColumn(new TableColumn("diverged").RightAligned());
            foreach (var pt in result.Points)
            {
                bool best = ReferenceEquals(pt, result.Best);
                string lr = pt.LearningRate.ToString("G4", CultureInfo.InvariantCulture);
                table.AddRow(best ? $"[bold green]{lr}[/]" : lr,
                    pt.Result.Completed == 0 ? "[red]all diverged[/]" : $"{Render.F(pt.Result.FinalLoss.Mean)} ± {Render.F(pt.Result.FinalLoss.Std)}",
                    Render.F(pt.Result.FinalLoss.Median), pt.Result.Diverged == 0 ? "0" : $"[red]{pt.Result.Diverged}[/]");
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"best: [bold]{Markup.Escape(result.Best.Result.Spec)}[/] (fewest diverged runs, then lowest mean final loss)");
            var report = new EvaluationReport(t.Name, settings, result.Points.Select(x => x.Result).ToList(), Cli.CommandLine(), dev.ToString());
            Render.WriteReport(report, folder.Path);
            return Cli.Ok;
        });
        return cmd;
    }

    private sealed class ForwardingProgress(Func<IProgress<EvalProgress>> current) : IProgress<EvalProgress>
    {
        public void Report(EvalProgress value) => current().Report(value);
    }
}
