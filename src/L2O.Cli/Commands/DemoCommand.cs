using System.CommandLine;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Tasks;
using Spectre.Console;

namespace L2O.Cli.Commands;

internal static class DemoCommand
{
    /// <summary>
    /// Baselines on the base MLP with rates tuned by 'l2o sweep' (docs/evaluation.md records the sweeps).
    /// </summary>
    public static readonly string[] Baselines =
    [
        "adam:lr=0.03125",
        "rmsprop:lr=0.01105",
        "adagrad:lr=0.125",
        "momentum:lr=8",
        "sgd:lr=2.828",
        "mng:k=5,eta-min=0.0625",
    ];

    public static Command Create()
    {
        var runs = Cli.RunsOption(20);
        var outDir = Cli.OutOption();
        var threads = Cli.ThreadsOption();
        var backend = Cli.BackendOption();
        var force = Cli.ForceOption();
        var c = new Command("demo", "About a minute on the embedded MNIST digits: the papers' base MLP (784-20-10, sigmoid, batch 128) " +
                                    "for 100 steps × 20 runs (--runs 100 for the papers' protocol) with hand-tuned baselines and the meta-trained " +
                                    "HyperAdam, RNNprop and DMoptimizer shipped in pretrained/; prints a table and writes a plot.") { runs, outDir, threads, backend, force };
        c.SetAction(p =>
        {
            Cli.ApplyThreads(p.GetValue(threads));
            var task = TaskRegistry.Create("mlp");
            var specs = Baselines.Concat(Learned.Pretrained.DemoSpecs()).ToList();
            var context = BuildContext.Cpu with { Backend = Cli.ParseBackend(p.GetValue(backend)!) };
            var rules = specs.Select(s => (s, OptimizerRegistry.Create(s, context))).ToList();
            var settings = new EvalSettings { Steps = 100, Runs = p.GetValue(runs) };
            settings.Validate();
            using var folder = Cli.OpenOutput(p.GetValue(outDir), "demo", p.GetValue(force));
            AnsiConsole.MarkupLine($"[bold]L2O.NET demo[/]: {Markup.Escape(task.Name)} on {Markup.Escape(((ClassifierTask)task).Dataset.Source)}");
            var report = EvalCommand.Run(task, rules, settings, "cpu");
            Render.Results(report);
            Render.WriteReport(report, folder.Path);
            return Cli.Ok;
        });
        return c;
    }
}
