using System.CommandLine;
using System.Globalization;
using L2O.Runtime;
using L2O.Checkpoints;
using L2O.Cluster;
using L2O.Evaluation;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using Spectre.Console;
using TorchSharp;

namespace L2O.Cli.Commands;

/// <summary>Commands of learned optimizers: meta-training and checkpoint inspection.</summary>
internal static class LearnedCommands
{
    public static IEnumerable<Command> Create() => [MetaTrain(), Checkpoint()];

    private static Command MetaTrain()
    {
        var optimizer = new Option<string?>("--optimizer", "-o") { Description = "learned optimizer and its options, e.g. hyperadam or rnnprop:hidden=20 (see 'l2o list optimizers')" };
        var tasks = new Option<string[]>("--task", "-t")
        {
            Description = "training task, repeatable for a mixture; weight with @, e.g. -t mlp -t quadratic@0.5",
            DefaultValueFactory = _ => ["mlp"],
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        var iterations = new Option<int?>("--iterations", "-n") { Description = "meta-iterations (trajectories) [default: 300]" };
        var outDir = Cli.OutOption();
        var resume = new Option<string?>("--resume") { Description = "continue the run in this folder from its last.safetensors" };
        var steps = new Option<int>("--steps") { Description = "trajectory length T", DefaultValueFactory = _ => 100 };
        var stepsMax = new Option<int?>("--steps-max") { Description = "draw T uniformly from [--steps, --steps-max] (the thesis's random problem resets)" };
        var unroll = new Option<int?>("--unroll") { Description = "steps per truncated unroll [default: the method's, 20 for the papers' RNNs]" };
        var metaLoss = new Option<string?>("--meta-loss") { Description = "mean (HyperAdam, DM), last (RNNprop), mean-log (thesis 'RNN') or mean-before (HyperAdam authors' code: the losses before each update) [default: the method's]" };
        var metaLr = new Option<double?>("--meta-lr") { Description = "Adam rate for the meta-parameters [default: the method's]" };
        var metaLrFinal = new Option<double?>("--meta-lr-final") { Description = "decay the meta rate linearly to this value" };
        var clip = new Option<double?>("--clip") { Description = "clip the meta-gradient to this L2 norm" };
        var tricks = new Option<bool?>("--tricks") { Description = "Random Scaling and Combination with Convex Functions on/off [default: the method's]" };
        var noScaling = new Option<bool>("--no-random-scaling") { Description = "keep the convex combination but drop Random Scaling (ablation)" };
        var noConvex = new Option<bool>("--no-convex") { Description = "keep Random Scaling but drop the convex combination (ablation)" };
        var scaleBound = new Option<double>("--scale-bound") { Description = "L of Random Scaling on the task, c = exp(U[-L, L])", DefaultValueFactory = _ => 3 };
        var convexScaleBound = new Option<double>("--convex-scale-bound") { Description = "L of Random Scaling on the convex function", DefaultValueFactory = _ => 1 };
        var convexDim = new Option<int>("--convex-dim") { Description = "dimension of the convex function", DefaultValueFactory = _ => 20 };
        var convexClip = new Option<double?>("--convex-clip") { Description = "clip each convex term to [0, value] (HyperAdam's code: 10)" };
        var convexInit = new Option<string?>("--convex-init") { Description = "initializer of the convex function's z: normal:STD or uniform:LO:HI [default: uniform:-1:1; HyperAdam's code: normal:0, i.e. z₀ = 0]" };
        var seed = new Option<long>("--seed") { Description = "seed of the training problems (the optimizer's own initialisation: init-seed=... in --optimizer)", DefaultValueFactory = _ => 0L };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "write last.safetensors every N iterations", DefaultValueFactory = _ => 25 };
        var validateEvery = new Option<int>("--validate-every") { Description = "validate every N iterations (0: never)", DefaultValueFactory = _ => 25 };
        var validationRuns = new Option<int>("--validation-runs") { Description = "runs per validation", DefaultValueFactory = _ => 10 };
        var validationSteps = new Option<int?>("--validation-steps") { Description = "steps per validation run [default: --steps]" };
        var validationTask = new Option<string?>("--validation-task") { Description = "validation task [default: the first training task, without tricks]" };
        var select = new Option<string>("--select") { Description = "which best checkpoint is reported: validation or train-average", DefaultValueFactory = _ => "validation" };
        var metaBatch = new Option<int>("--meta-batch") { Description = "trajectories per meta-iteration; after each unroll one meta-update from the mean of their meta-gradients", DefaultValueFactory = _ => 1 };
        var workers = new Option<int?>("--workers") { Description = "in-process workers that run the meta-batch, each with its own engine of threads/N threads; Θ does not depend on it [default: 1]" };
        var resetOnExtremes = new Option<bool>("--reset-on-extremes") { Description = "end a trajectory early when the loss < 1e-15 or |w| > 1e4 (thesis)" };
        var device = Cli.DeviceOption();
        var dataDir = Cli.DataDirOption();
        var threads = Cli.ThreadsOption();
        var backend = Cli.BackendOption();
        var cluster = new ClusterCommand.ClientOptions("run the meta-batch's trajectories on Orleans worker silos ('l2o cluster silo'); Θ is the in-process run's, bit for bit (docs/distributed.md)");

        var cmd = new Command("meta-train", "Meta-train a learned optimizer by truncated BPTT; writes last/best checkpoints (safetensors) and log.csv")
        {
            optimizer, tasks, iterations, outDir, resume, steps, stepsMax, unroll, metaLoss, metaLr, metaLrFinal, clip, tricks, noScaling, noConvex,
            scaleBound, convexScaleBound, convexDim, convexClip, convexInit, seed, checkpointEvery, validateEvery, validationRuns, validationSteps, validationTask, select,
            resetOnExtremes, metaBatch, workers, device, dataDir, threads, backend,
        };
        foreach (var o in cluster.All) cmd.Add(o);
        Cli.Examples[cmd] = "  l2o meta-train -o hyperadam -t mlp -n 300 --out runs/hyperadam\n" +
                            "  l2o meta-train -o rnnprop -t mlp -n 300 --out runs/rnnprop\n" +
                            "  l2o meta-train -o dmoptimizer -t mlp -n 300 --out runs/dm\n" +
                            "  l2o meta-train -o multiscale-adam:combiner=mlp,hidden-layers=2 --unroll 20 --meta-loss mean-log --tricks false\n" +
                            "  l2o meta-train -o hyperadam -t mlp -n 300 --meta-batch 8 --workers 2 --out runs/hyperadam-b8\n" +
                            "  l2o meta-train -o hyperadam -t mlp -n 300 --meta-batch 8 --cluster --out runs/hyperadam-b8   # silos: l2o cluster silo\n" +
                            "  l2o meta-train --resume runs/hyperadam -n 600\n" +
                            "  l2o eval -t mlp -o adam:lr=0.0283 -o hyperadam --checkpoint runs/hyperadam/best-validation.safetensors";
        cmd.SetAction(p =>
        {
            var cancel = Cli.Cancellation.Token;
            Cli.ApplyThreads(p.GetValue(threads));
            var dev = Cli.ParseDevice(p.GetValue(device)!);
            var context = new TaskContext(dev, torch.ScalarType.Float32, p.GetValue(dataDir));
            bool Given(Option option) => p.GetResult(option) is { Implicit: false };
            if (p.GetValue(cluster.Cluster) && Given(workers))
                throw new L2OException("--cluster and --workers exclude each other: with --cluster the silos run the meta-batch (each silo's --threads sets its parallelism)");
            using var connection = cluster.Connect(p, Given);
            ClusterSlotRunner? clusterRunner = null;
            Func<SlotRunnerContext, ISlotRunner>? runner = connection is null ? null : c => clusterRunner = new ClusterSlotRunner(connection, c);
            MetaTrainer trainer;
            if (p.GetValue(resume) is string folder)
            {
                if (Given(outDir) && Path.GetFullPath(p.GetValue(outDir)!) != Path.GetFullPath(folder))
                    throw new L2OException($"--resume continues in {folder}; leave --out out");
                var changes = new ResumeChanges
                {
                    Iterations = p.GetValue(iterations),
                    MetaLearningRateFinal = p.GetValue(metaLrFinal),
                    ValidateEvery = Given(validateEvery) ? p.GetValue(validateEvery) : null,
                    CheckpointEvery = Given(checkpointEvery) ? p.GetValue(checkpointEvery) : null,
                    Workers = p.GetValue(workers),
                };
                trainer = MetaTrainer.Resume(folder, context, changes, Cli.CommandLine(), Cli.ParseBackend(p.GetValue(backend)!), runner);
                try
                {
                    var o = trainer.Options;
                    // What the run was started with stays: a changed value would silently be ignored (or break exact resumption).
                    (Option Option, object? Saved, Func<object?> Given)[] fixedOptions =
                    [
                        (optimizer, trainer.Learned.Method, () => SameSpec(p.GetValue(optimizer)!, trainer.Learned)),
                        (tasks, string.Join(" ", o.Tasks), () => string.Join(" ", p.GetValue(tasks)!)),
                        (steps, o.TrajectorySteps, () => p.GetValue(steps)),
                        (stepsMax, o.TrajectoryStepsMax, () => p.GetValue(stepsMax)),
                        (unroll, o.Unroll, () => p.GetValue(unroll)),
                        (metaLoss, o.MetaLoss, () => Specs.OptionsBinder.ParseEnum<MetaLoss>(p.GetValue(metaLoss)!, "meta-train", "--meta-loss")),
                        (metaLr, o.MetaLearningRate, () => p.GetValue(metaLr)),
                        (clip, o.ClipNorm, () => p.GetValue(clip)),
                        (tricks, o.Tricks.RandomScaling || o.Tricks.ConvexCombination, () => p.GetValue(tricks)),
                        (noScaling, !o.Tricks.RandomScaling, () => p.GetValue(noScaling)),
                        (noConvex, !o.Tricks.ConvexCombination, () => p.GetValue(noConvex)),
                        (scaleBound, o.Tricks.TaskScaleBound, () => p.GetValue(scaleBound)),
                        (convexScaleBound, o.Tricks.ConvexScaleBound, () => p.GetValue(convexScaleBound)),
                        (convexDim, o.Tricks.ConvexDimension, () => p.GetValue(convexDim)),
                        (convexClip, o.Tricks.ConvexClip, () => p.GetValue(convexClip)),
                        (convexInit, o.Tricks.ConvexInit, () => p.GetValue(convexInit)),
                        (seed, o.Seed, () => p.GetValue(seed)),
                        (validationRuns, o.ValidationRuns, () => p.GetValue(validationRuns)),
                        (validationSteps, o.ValidationSteps, () => p.GetValue(validationSteps)),
                        (validationTask, o.ValidationTask, () => p.GetValue(validationTask)),
                        (select, o.Selection, () => Specs.OptionsBinder.ParseEnum<Selection>(p.GetValue(select)!, "meta-train", "--select")),
                        (resetOnExtremes, o.ResetOnExtremes, () => p.GetValue(resetOnExtremes)),
                        (metaBatch, o.MetaBatch, () => p.GetValue(metaBatch)),
                    ];
                    foreach (var (option, saved, given) in fixedOptions)
                        if (Given(option) && !Equals(saved, given()))
                            throw new L2OException($"{option.Name} cannot change on resume (the run has {Show(saved)}); what may change: " +
                                                   string.Join(", ", ResumeChanges.OptionNames.Concat(["--threads", "--backend", "--device", "--data-dir"])));
                }
                catch
                {
                    trainer.Dispose();
                    throw;
                }
                AnsiConsole.MarkupLine($"resuming [bold]{trainer.Learned.Method}[/] in {Markup.Escape(folder)} at iteration {trainer.Iteration} of {trainer.Options.Iterations} ({Markup.Escape(trainer.BackendDescription)})");
            }
            else
            {
                string spec = p.GetValue(optimizer) ?? throw new L2OException("give --optimizer (a learned optimizer) or --resume FOLDER");
                var learned = LearnedRegistry.Create(spec, new BuildContext(dev, torch.ScalarType.Float32));
                var d = learned.TrainingDefaults;
                bool useTricks = p.GetValue(tricks) ?? d.Tricks;
                if (!useTricks && (p.GetValue(noScaling) || p.GetValue(noConvex)))
                    throw new L2OException($"{(p.GetValue(noConvex) ? "--no-convex" : "--no-random-scaling")} drops one of the tricks, but they are off " +
                                           $"({(p.GetValue(tricks) is false ? "--tricks false" : $"{learned.Method}'s default")}); leave it out");
                var options = new MetaTrainOptions
                {
                    Tasks = p.GetValue(tasks)!,
                    ValidationTask = p.GetValue(validationTask),
                    Iterations = p.GetValue(iterations) ?? 300,
                    TrajectorySteps = p.GetValue(steps),
                    TrajectoryStepsMax = p.GetValue(stepsMax),
                    ResetOnExtremes = p.GetValue(resetOnExtremes),
                    Unroll = p.GetValue(unroll) ?? d.Unroll,
                    MetaLoss = p.GetValue(metaLoss) is string ml ? Specs.OptionsBinder.ParseEnum<MetaLoss>(ml, "meta-train", "--meta-loss") : d.MetaLoss,
                    MetaLearningRate = p.GetValue(metaLr) ?? d.MetaLearningRate,
                    MetaLearningRateFinal = p.GetValue(metaLrFinal),
                    ClipNorm = p.GetValue(clip),
                    Tricks = new TrickOptions
                    {
                        RandomScaling = useTricks && !p.GetValue(noScaling),
                        ConvexCombination = useTricks && !p.GetValue(noConvex),
                        TaskScaleBound = p.GetValue(scaleBound),
                        ConvexScaleBound = p.GetValue(convexScaleBound),
                        ConvexDimension = p.GetValue(convexDim),
                        ConvexClip = p.GetValue(convexClip),
                        ConvexInit = p.GetValue(convexInit),
                    },
                    Seed = p.GetValue(seed),
                    CheckpointEvery = p.GetValue(checkpointEvery),
                    ValidateEvery = p.GetValue(validateEvery),
                    ValidationRuns = p.GetValue(validationRuns),
                    ValidationSteps = p.GetValue(validationSteps),
                    Selection = Specs.OptionsBinder.ParseEnum<Selection>(p.GetValue(select)!, "meta-train", "--select"),
                    MetaBatch = p.GetValue(metaBatch),
                    Workers = p.GetValue(workers) ?? 1,
                };
                string outFolder = Cli.OutputFolder(p.GetValue(outDir), $"meta-train-{learned.Method}");
                trainer = new MetaTrainer(learned, options, context, outFolder, Cli.CommandLine(), Cli.ParseBackend(p.GetValue(backend)!), runner);
                AnsiConsole.MarkupLine($"meta-training [bold]{learned.Method}[/] ({learned.ParameterCount} meta-parameters) on {Markup.Escape(string.Join(" + ", options.Tasks))}: " +
                                       $"T={options.TrajectorySteps}, {(options.MetaBatch > 1 ? $"meta-batch {options.MetaBatch}, " : "")}unroll {options.Unroll}, meta-loss {options.MetaLoss}, meta-lr {options.MetaLearningRate.ToString("G3", CultureInfo.InvariantCulture)}, " +
                                       $"random scaling {(options.Tricks.RandomScaling ? "on" : "off")}, convex {(options.Tricks.ConvexCombination ? "on" : "off")}, {Markup.Escape(trainer.BackendDescription)} → {Markup.Escape(outFolder)}");
            }
            using (trainer)
            {
                var result = RunWithProgress(trainer, cancel);
                string speed = result.IterationsRun > 0 ? $", {result.SecondsPerIteration.ToString("0.00", CultureInfo.InvariantCulture)} s/iteration" : "";
                AnsiConsole.MarkupLine($"{(result.Interrupted ? "stopped" : "done")}: iteration {result.Iterations} of {trainer.Options.Iterations}{speed}; " +
                                       $"{result.SkippedUpdates} of {result.MetaUpdates} meta-updates skipped (non-finite meta-gradient), " +
                                       $"{result.DivergedTrajectories} trajectories diverged (non-finite loss), " +
                                       $"{result.ExplodedTrajectories} exploded (final loss above {result.ExplodeAbove.ToString("G3", CultureInfo.InvariantCulture)})" +
                                       (trainer.Options.MetaBatch > 1 ? $", {result.DroppedGradients} trajectory meta-gradients left out of the mean (non-finite)" : ""));
                if (clusterRunner is not null)
                    AnsiConsole.MarkupLine($"cluster: {clusterRunner.Replays} slot unroll{(clusterRunner.Replays == 1 ? "" : "s")} re-run from the start of its trajectory after a silo failed; " +
                                           $"unrolls by silo: {Markup.Escape(string.Join(", ", clusterRunner.UnrollsBySilo.Select(s => $"{s.Silo} {s.Unrolls}")))}");
                if (result.BestValidation is not null && result.BestValidationCheckpoint is not null) AnsiConsole.MarkupLine($"best validation {result.BestValidation}: {Markup.Escape(result.BestValidationCheckpoint!)}");
                else if (trainer.Options.ValidateEvery > 0) AnsiConsole.MarkupLine("[yellow]no finite validation score: no best-validation checkpoint written[/]");
                if (result.BestTrainAverage is double b && result.BestTrainCheckpoint is not null) AnsiConsole.MarkupLine($"best train average {b.ToString("0.0000", CultureInfo.InvariantCulture)}: {Markup.Escape(result.BestTrainCheckpoint!)}");
                AnsiConsole.MarkupLine($"resumable checkpoint: {Markup.Escape(result.LastCheckpoint)}; log: {Markup.Escape(Path.Combine(trainer.Folder, MetaTrainer.LogFile))}");
                WriteCurve(trainer.Folder);
                if (result.Interrupted)
                {
                    Console.Error.WriteLine($"interrupted at iteration {result.Iterations}, resume with: l2o meta-train --resume {Quote(trainer.Folder)}");
                    return Cli.Interrupted;
                }
            }
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>training.png beside log.csv; a chart that cannot be drawn (no native graphics library) is a warning, not a failed run.</summary>
    private static void WriteCurve(string folder)
    {
        string path = Path.Combine(folder, "training.png");
        try
        {
            Plots.TrainingCurves([folder], path);
            AnsiConsole.MarkupLine($"training curve: {Markup.Escape(path)}");
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            AnsiConsole.MarkupLine($"[yellow]training curve not drawn: the graphics library could not be loaded ({Markup.Escape(e.GetBaseException().Message)})[/]");
        }
    }

    /// <summary>The method, when <paramref name="spec"/> names the trained method and agrees with its options; else the spec (which then differs).</summary>
    private static string SameSpec(string spec, LearnedOptimizer learned)
    {
        var parsed = Specs.Spec.Parse(spec);
        if (LearnedRegistry.Find(parsed.Name).Name != learned.Method) return spec;
        var options = Specs.OptionsBinder.ToArguments(learned.Options);
        return parsed.Arguments.All(kv => options.TryGetValue(kv.Key, out var v) && v == kv.Value) ? learned.Method : spec;
    }

    private static string Show(object? value) => value switch
    {
        null => "none",
        double d => d.ToString("G6", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        Enum e => Specs.OptionsBinder.EnumName(e),
        _ => value.ToString()!,
    };

    private static string Quote(string path) => path.Contains(' ') ? $"\"{path}\"" : path;

    private static MetaTrainResult RunWithProgress(MetaTrainer trainer, CancellationToken cancel)
    {
        string Describe(IterationStats s) =>
            $"it {s.Iteration}/{s.Iterations}  meta-loss {Render.F(s.MetaLoss)}  final {Render.F(s.FinalLoss)}  avg {Render.F(s.TrainAverage)}  " +
            $"{s.Seconds.ToString("0.00", CultureInfo.InvariantCulture)} s/it" + (s.Validation is null ? "" : $"  val {s.Validation}") +
            (s.Skipped + s.DivergedTrajectories + s.ExplodedTrajectories > 0 ? $"  skipped {s.Skipped} diverged {s.DivergedTrajectories} exploded {s.ExplodedTrajectories}" : "");

        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            var plain = new SyncProgress<IterationStats>(s =>
            {
                if (s.Iteration == 1 || s.Iteration % 10 == 0 || s.Validation is not null || s.Iteration == s.Iterations) Console.WriteLine(Describe(s));
            });
            return trainer.Train(plain, cancel);
        }
        MetaTrainResult result = null!;
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new TaskDescriptionColumn { Alignment = Justify.Left })
            .Start(ctx =>
            {
                var task = ctx.AddTask(trainer.Learned.Method, maxValue: trainer.Options.Iterations);
                task.Value = trainer.Iteration;
                result = trainer.Train(new SyncProgress<IterationStats>(s =>
                {
                    task.Value = s.Iteration;
                    task.Description = Markup.Escape(Describe(s));
                }), cancel);
            });
        return result;
    }

    /// <summary>The <c>checkpoint=</c> value of the shipped checkpoint of <paramref name="method"/> whose bytes are <paramref name="bytes"/>, or null.</summary>
    private static string? ShippedKeyword(byte[] bytes, string method)
    {
        return Pretrained.Keywords(method).FirstOrDefault(k => Pretrained.ReadBytes(method, k) is { } shipped && shipped.AsSpan().SequenceEqual(bytes));
    }

    private static Command Checkpoint()
    {
        var file = new Argument<string>("file") { Description = "a .safetensors checkpoint" };
        var set = new Option<string[]>("--set") { Description = "with --out: write a copy with an option changed (KEY=VALUE, repeatable), e.g. gamma-min=0.99; only options that keep the meta-parameters' shapes; the copy records derived_from and derived_set", AllowMultipleArgumentsPerToken = false };
        var output = new Option<string?>("--out") { Description = "with --set: the derived checkpoint to write" };
        var c = new Command("checkpoint", "Describe a learned-optimizer checkpoint: method, options, training metadata and tensors; or derive a copy with --set and --out") { file, set, output };
        c.SetAction(p =>
        {
            string path = p.GetValue(file)!;
            byte[] bytes = Pretrained.ReadCheckpoint(path);
            var sets = p.GetValue(set) ?? [];
            string? outPath = p.GetValue(output);
            if (sets.Length > 0 || outPath is not null)
            {
                if (sets.Length == 0 || outPath is null) throw new L2OException("checkpoint: --set and --out go together");
                if (Path.GetFullPath(outPath) == Path.GetFullPath(path)) throw new L2OException("checkpoint: --out must differ from the source file");
                var pairs = new Dictionary<string, string>();
                foreach (var kv in sets)
                {
                    int eq = kv.IndexOf('=');
                    if (eq <= 0 || eq == kv.Length - 1) throw new L2OException($"checkpoint: --set '{kv}' is not KEY=VALUE");
                    pairs[kv[..eq]] = kv[(eq + 1)..];
                }
                LearnedRegistry.Derive(path, pairs, outPath);
                AnsiConsole.MarkupLine($"wrote {Markup.Escape(outPath)} ({Markup.Escape(string.Join(", ", sets))}; not meta-trained with these values)");
                return Cli.Ok;
            }
            var contents = SafeTensors.Parse(bytes, path);
            var table = new Table().RoundedBorder().AddColumn("tensor").AddColumn("shape");
            foreach (var (name, t) in contents.Tensors) table.AddRow(Markup.Escape(name), string.Join("×", t.shape));
            foreach (var (k, v) in contents.Metadata.Where(kv => kv.Key is not ("trainer" or "meta_train_options")))
                AnsiConsole.MarkupLine($"[bold]{Markup.Escape(k)}[/]: {Markup.Escape(v)}");
            AnsiConsole.Write(table);
            using (var learned = LearnedRegistry.Load(bytes, path))   // validates that it loads
            {
                AnsiConsole.MarkupLine("[green]loads as a learned optimizer[/]");
                long floats = ModelCards.StateFloatsPerParameter(learned.Rule);
                AnsiConsole.MarkupLine($"[bold]memory[/]: {floats} floats of state per optimized parameter (Adam: 2), {learned.ParameterCount} meta-parameters");
                if (ShippedKeyword(bytes, learned.Method) is { } keyword && ModelCards.For(learned.Method, keyword) is { } card)
                {
                    AnsiConsole.MarkupLine($"[bold]shipped checkpoint[/] (checkpoint={keyword})");
                    AnsiConsole.MarkupLine($"[bold]trained on[/]: {Markup.Escape(card.TrainedOn)}");
                    AnsiConsole.MarkupLine($"[bold]training[/]: {Markup.Escape(card.Training)}");
                    AnsiConsole.MarkupLine($"[bold]works[/]: {Markup.Escape(card.Works)}");
                    AnsiConsole.MarkupLine($"[bold]does not work[/]: {Markup.Escape(card.Fails)}");
                }
            }
            return Cli.Ok;
        });
        return c;
    }
}
