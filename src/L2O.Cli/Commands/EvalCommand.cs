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
        var cluster = new ClusterCommand.ClientOptions("run the seeded runs on Orleans worker silos ('l2o cluster silo'), the same records as in-process (docs/distributed.md); checkpoint and data paths must exist on the silos");

        var cmd = new Command("eval", "Evaluate optimizers on a task over seeded runs; writes report.json, curves.csv, runs.csv and loss.png.")
        {
            task, optimizers, checkpoint, steps, runs, seed, outDir, linear, diverge, trajectory, noTest, device, dataDir, threads, backend, force,
        };
        foreach (var o in cluster.All) cmd.Add(o);
        Cli.Examples[cmd] = "  l2o eval -t mlp -o adam:lr=0.03125 -o rmsprop:lr=0.01105 --runs 100\n" +
                            "  l2o eval -t rosenbrock -o adam:lr=0.05 -o mng:eta-min=0.01 --steps 300 --runs 10 --trajectory\n" +
                            "  l2o eval -t mlp:activation=relu -o adam:lr=0.03125 -o hyperadam:checkpoint=pretrained\n" +
                            "  l2o eval -t mlp:layers=5 -o hyperadam --checkpoint runs/hyperadam/best-validation.safetensors\n" +
                            "  l2o eval -t mlp -o adam:lr=0.03125 -o hyperadam:checkpoint=pretrained --runs 100 --cluster   # silos: l2o cluster silo";
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
            bool Given(Option option) => p.GetResult(option) is { Implicit: false };
            if (p.GetValue(cluster.Cluster) && dev.type != DeviceType.CPU) throw new L2OException("--cluster runs on the silos' CPUs; leave --device out (or use cpu)");
            using var connection = cluster.Connect(p, Given);
            using var folder = Cli.OpenOutput(p.GetValue(outDir), "eval", p.GetValue(force));
            var report = connection is null
                ? Run(t, rules, settings, dev.ToString())
                : RunOnCluster(connection, p.GetValue(task)!, p.GetValue(dataDir), t, rules, p.GetValue(checkpoint), p.GetValue(backend)!, settings);
            Render.Results(report);
            Render.WriteReport(report, folder.Path, logScale: !p.GetValue(linear));
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>
    /// <see cref="Run"/> with the runs on a cluster: each silo builds the task and the optimizer from
    /// their specifications (a checkpoint given with --checkpoint goes into the spec, as an absolute path).
    /// </summary>
    private static EvaluationReport RunOnCluster(L2O.Cluster.ClusterConnection connection, string taskSpec, string? dataDir, ITask task,
        IReadOnlyList<(string Spec, IUpdateRule Rule)> rules, string? checkpoint, string backend, EvalSettings settings)
    {
        double threshold = settings.DivergenceThreshold ?? task.DefaultDivergenceThreshold;
        string? fullData = dataDir is null ? null : Path.GetFullPath(dataDir);
        var results = Cli.WithProgress($"evaluating {rules.Count} optimizer(s) on {task.Name} on cluster '{connection.Settings.ClusterId}'", rules.Select(r => r.Rule.Name).ToList(),
            settings.Runs * settings.Steps,
            progressFor => rules.Select((r, i) => L2O.Cluster.ClusterEvaluator.Evaluate(connection, taskSpec, fullData, ForSilos(r.Spec, checkpoint),
                r.Rule.Name, backend, settings, threshold, progressFor(i), Cli.Cancellation.Token) with { Spec = Spec.Parse(r.Spec).ToString() }).ToList());
        return new EvaluationReport(task.Name, settings, OptimizerResult.WithDistinctLabels(results), Cli.CommandLine(), "cpu (cluster)");
    }

    /// <summary>The spec a silo builds: --checkpoint merged in, checkpoint paths absolute (silos run in other folders).</summary>
    private static string ForSilos(string spec, string? checkpoint)
    {
        var parsed = Spec.Parse(spec);
        var args = new Dictionary<string, string>(parsed.Arguments);
        if (OptimizerRegistry.Find(parsed.Name).Learned && checkpoint is not null) args.TryAdd("checkpoint", checkpoint);
        if (args.TryGetValue("checkpoint", out var file) && !Learned.Pretrained.IsKeyword(file)) args["checkpoint"] = Path.GetFullPath(file);
        return (parsed with { Arguments = args }).ToString();
    }

    private static bool TakesCheckpoint(Spec spec) =>
        OptimizerRegistry.Find(spec.Name).Learned && !spec.Arguments.ContainsKey("checkpoint");

    /// <summary>Evaluates each rule with progress and collects the report.</summary>
    public static EvaluationReport Run(ITask task, IReadOnlyList<(string Spec, IUpdateRule Rule)> rules, EvalSettings settings, string device)
    {
        var results = Cli.WithProgress($"evaluating {rules.Count} optimizer(s) on {task.Name}", rules.Select(r => r.Rule.Name).ToList(),
            settings.Runs * settings.Steps,
            progressFor => rules.Select((r, i) => Evaluator.Evaluate(task, r.Rule, settings, Spec.Parse(r.Spec).ToString(), progressFor(i), Cli.Cancellation.Token)).ToList());
        return new EvaluationReport(task.Name, settings, OptimizerResult.WithDistinctLabels(results), Cli.CommandLine(), device);
    }
}
