using System.CommandLine;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;
using TorchSharp;

namespace L2O.Cli.Commands;

internal static class EvalCommand
{
    public static Command Create()
    {
        var task = new Option<string>("--task", "-t") { Description = "task specification, e.g. mlp or mlp:activation=relu,layers=3 (see 'l2o list tasks')", Required = true };
        var optimizers = new Option<string[]>("--optimizer", "-o")
        {
            Description = "optimizer specification, repeatable, e.g. adam:lr=0.03 (see 'l2o list optimizers')",
            Required = true,
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "checkpoint for learned optimizers given without checkpoint=..." };
        var steps = Cli.StepsOption();
        var runs = Cli.RunsOption();
        var seed = Cli.SeedOption();
        var outDir = Cli.OutOption();
        var linear = new Option<bool>("--linear") { Description = "plot the loss on a linear instead of a log scale" };
        var diverge = new Option<double?>("--diverge-above") { Description = "loss above which a run counts as diverged (default: the task's; MNIST tasks 100, others 1e6)" };
        var trajectory = new Option<bool>("--trajectory") { Description = "record parameters at every step (tasks with at most 5000 parameters); 2-D tasks get a contour plot" };
        var noTest = new Option<bool>("--no-test") { Description = "skip test-set metrics" };
        var device = Cli.DeviceOption();
        var dataDir = Cli.DataDirOption();
        var threads = Cli.ThreadsOption();
        var backend = Cli.BackendOption();
        var force = Cli.ForceOption();

        var cmd = new Command("eval", "Evaluate optimizers on a task over seeded runs; writes report.json, curves.csv, runs.csv and loss.png.")
        {
            task, optimizers, checkpoint, steps, runs, seed, outDir, linear, diverge, trajectory, noTest, device, dataDir, threads, backend, force,
        };
        Cli.Examples[cmd] = "  l2o eval -t mlp -o adam:lr=0.03125 -o rmsprop:lr=0.01105 --runs 100\n" +
                            "  l2o eval -t rosenbrock -o adam:lr=0.05 -o mng:eta-min=0.01 --steps 300 --runs 10 --trajectory\n" +
                            "  l2o eval -t mlp:activation=relu -o adam:lr=0.03125 -o hyperadam:checkpoint=pretrained\n" +
                            "  l2o eval -t mlp:layers=5 -o hyperadam --checkpoint runs/hyperadam/best-validation.safetensors";
        cmd.SetAction(p =>
        {
            Cli.ApplyThreads(p.GetValue(threads));
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            var t = TaskRegistry.Create(p.GetValue(task)!, new TaskContext(dev, torch.ScalarType.Float32, p.GetValue(dataDir)));
            var context = new BuildContext(dev, torch.ScalarType.Float32) { Backend = Cli.ParseBackend(p.GetValue(backend)!) };
            var specs = p.GetValue(optimizers)!;
            if (p.GetValue(checkpoint) is string file && !specs.Any(s => TakesCheckpoint(Spec.Parse(s))))
                throw new L2OException($"--checkpoint {file} applies to learned optimizers given without checkpoint=...; none of {string.Join(", ", specs)} is one");
            var settings = new EvalSettings
            {
                Steps = p.GetValue(steps), Runs = p.GetValue(runs), Seed = p.GetValue(seed),
                DivergenceThreshold = p.GetValue(diverge), RecordTrajectory = p.GetValue(trajectory), TestMetrics = !p.GetValue(noTest),
            };
            settings.Validate(t);
            var rules = specs.Select(s => (Spec: s, Rule: Cli.BuildOptimizer(s, context, p.GetValue(checkpoint)))).ToList();
            using var folder = Cli.OpenOutput(p.GetValue(outDir), "eval", p.GetValue(force));
            var report = Run(t, rules, settings, dev.ToString());
            Render.Results(report);
            Render.WriteReport(report, folder.Path, logScale: !p.GetValue(linear));
            return Cli.Ok;
        });
        return cmd;
    }

    private static bool TakesCheckpoint(Spec spec) =>
        OptimizerRegistry.Find(spec.Name).Learned && !spec.Arguments.ContainsKey("checkpoint");

    /// <summary>Evaluates each rule with progress and collects the report.</summary>
    public static EvaluationReport Run(ITask task, IReadOnlyList<(string Spec, IUpdateRule Rule)> rules, EvalSettings settings, string device)
    {
        var results = Cli.WithProgress($"evaluating {rules.Count} optimizer(s) on {task.Name}", rules.Select(r => r.Rule.Name).ToList(),
            settings.Runs * settings.Steps,
            progressFor => rules.Select((r, i) => Evaluator.Evaluate(task, r.Rule, settings, Spec.Parse(r.Spec).ToString(), progressFor(i), Cli.Cancellation.Token)).ToList());
        return new EvaluationReport(task.Name, settings, results, Cli.CommandLine(), device);
    }
}
