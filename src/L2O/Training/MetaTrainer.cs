using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using L2O.Checkpoints;
using L2O.Engine;
using L2O.Evaluation;
using L2O.Learned;
using L2O.Runtime;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Training;

/// <summary>Measurements of one meta-iteration (one trajectory).</summary>
/// <param name="MetaLoss">Mean of the unrolls' meta-losses.</param>
/// <param name="FinalLoss">Training loss at the end of the trajectory.</param>
/// <param name="TrainAverage">Moving average (decay 0.9) of <paramref name="FinalLoss"/> (RNNprop §5).</param>
/// <param name="Diverged">The trajectory produced a non-finite loss and was abandoned.</param>
/// <param name="Skipped">Meta-updates skipped so far because the meta-gradient was not finite.</param>
/// <param name="Exploded">The trajectory ended finite but above the tasks' divergence threshold (counted, not abandoned).</param>
public sealed record IterationStats(int Iteration, int Iterations, double MetaLoss, double FinalLoss, double TrainAverage, bool Diverged,
    int Skipped, int DivergedTrajectories, double Seconds, double LearningRate, double? GradNorm, ValidationScore? Validation,
    bool Exploded = false, int ExplodedTrajectories = 0);

/// <summary>
/// A validation result: runs that diverged, then the mean loss of the others. Ordered
/// lexicographically, so an optimizer whose runs diverge never beats one whose runs do not.
/// </summary>
public sealed record ValidationScore(int Diverged, double Loss) : IComparable<ValidationScore>
{
    public int CompareTo(ValidationScore? other) =>
        other is null ? -1 : Diverged != other.Diverged ? Diverged.CompareTo(other.Diverged) : Loss.CompareTo(other.Loss);

    public override string ToString() => Diverged == 0 ? Loss.ToString("0.0000", CultureInfo.InvariantCulture) : $"{Loss.ToString("0.0000", CultureInfo.InvariantCulture)} ({Diverged} diverged)";
}

/// <summary>What a finished (or interrupted) run leaves behind.</summary>
/// <param name="Iterations">The iteration reached (and saved in <paramref name="LastCheckpoint"/>).</param>
/// <param name="IterationsRun">Iterations run by this call; <paramref name="SecondsPerIteration"/> is NaN when none ran.</param>
/// <param name="MetaUpdates">Meta-updates attempted over the whole run, of which <paramref name="SkippedUpdates"/> were skipped (non-finite meta-gradient).</param>
/// <param name="ExplodedTrajectories">Trajectories that ended finite but above the divergence threshold <paramref name="ExplodeAbove"/>.</param>
/// <param name="Interrupted">Cancelled before <see cref="MetaTrainOptions.Iterations"/>; resumable from <paramref name="LastCheckpoint"/>.</param>
public sealed record MetaTrainResult(int Iterations, string LastCheckpoint, string? BestValidationCheckpoint, string? BestTrainCheckpoint,
    ValidationScore? BestValidation, double? BestTrainAverage, int SkippedUpdates, int DivergedTrajectories, double SecondsPerIteration,
    int IterationsRun = 0, long MetaUpdates = 0, int ExplodedTrajectories = 0, double ExplodeAbove = double.PositiveInfinity, bool Interrupted = false);

/// <summary>
/// What may change when a run is resumed: how long it runs, the end of the meta-rate schedule, and how
/// often it validates and checkpoints. Everything else in <see cref="MetaTrainOptions"/> defines the
/// training distribution or the meta-optimizer and stays as saved, so that a resumed run continues
/// exactly as an uninterrupted one would. Null keeps the saved value.
/// </summary>
public sealed record ResumeChanges
{
    public int? Iterations { get; init; }
    public double? MetaLearningRateFinal { get; init; }
    public int? ValidateEvery { get; init; }
    public int? CheckpointEvery { get; init; }

    /// <summary>The command-line options that set these, for messages.</summary>
    public static IReadOnlyList<string> OptionNames { get; } = ["-n", "--meta-lr-final", "--validate-every", "--checkpoint-every"];

    public MetaTrainOptions Apply(MetaTrainOptions saved) => saved with
    {
        Iterations = Iterations ?? saved.Iterations,
        MetaLearningRateFinal = MetaLearningRateFinal ?? saved.MetaLearningRateFinal,
        ValidateEvery = ValidateEvery ?? saved.ValidateEvery,
        CheckpointEvery = CheckpointEvery ?? saved.CheckpointEvery,
    };
}

/// <summary>
/// Meta-trains a <see cref="LearnedOptimizer"/> by truncated BPTT (see <see cref="Unroll"/>): every
/// iteration draws one trajectory from the training distribution (a task mixture with the tricks),
/// splits its T steps into unrolls of U, and after each unroll takes one Adam step on Θ. Writes
/// <c>last.safetensors</c> (resumable), <c>best-validation.safetensors</c>,
/// <c>best-train.safetensors</c> and <c>log.csv</c> into its folder, all atomically, and holds the
/// folder's <see cref="RunFolder"/> lock from construction to <see cref="Dispose"/>.
/// </summary>
/// <remarks>
/// Every random draw of iteration i is a function of (seed, i), and the meta-optimizer's state is in
/// the checkpoint, so a resumed run continues exactly as an uninterrupted one.
/// </remarks>
public sealed class MetaTrainer : IDisposable
{
    public const string LastFile = "last.safetensors";
    public const string BestValidationFile = "best-validation.safetensors";
    public const string BestTrainFile = "best-train.safetensors";
    public const string LogFile = "log.csv";
    private const string LogHeader = "iteration,meta_loss,final_loss,train_average,diverged,learning_rate,grad_norm,seconds,validation_loss,validation_diverged";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly TrainingTask _training;
    private readonly ITask _validation;
    private readonly MetaOptimizer _metaOptimizer;
    private readonly string _command;
    private int _iteration;
    private double? _trainAverage;
    private ValidationScore? _bestValidation;
    private double? _bestTrain;
    private int _diverged;
    private int _exploded;
    private long _metaUpdates;
    private readonly double _explodeAbove;
    private readonly RunFolder _lease;
    private readonly FusedEngine? _engine;
    private readonly Optimizers.IUpdateRule _rule;

    /// <summary>Starts a new run in <paramref name="folder"/>, which must not hold one already.</summary>
    /// <param name="backend">Auto runs the fused CPU engine where it covers the method (<see cref="Backends"/>).</param>
    /// <exception cref="L2OException">Another process uses the folder, it holds a run, or it cannot be written.</exception>
    public MetaTrainer(LearnedOptimizer learned, MetaTrainOptions options, TaskContext context, string folder, string command = "", Backend backend = Backend.Auto)
        : this(learned, Validated(options), context, RunFolder.Acquire(folder, command), command, backend, resuming: false)
    {
    }

    private static MetaTrainOptions Validated(MetaTrainOptions options)
    {
        options.Validate();   // before the folder is locked (and perhaps created)
        return options;
    }

    private MetaTrainer(LearnedOptimizer learned, MetaTrainOptions options, TaskContext context, RunFolder lease, string command, Backend backend, bool resuming)
    {
        _lease = lease;
        string folder = lease.Path;
        try
        {
            options.Validate();
            if (!resuming && File.Exists(Path.Combine(folder, LastFile)))
                throw new L2OException($"{folder} already holds a run; continue it with --resume {folder} or choose another --out");
            Learned = learned;
            _engine = Backends.CreateEngine(learned, backend);
            _rule = _engine is null ? learned.Rule : new FusedRule(learned, _engine);
            Options = options;
            Folder = folder;
            _command = command;
            var tasks = options.Tasks.Select(t => ParseWeighted(t, context)).ToList();
            _training = new TrainingTask(tasks, options.Tricks, context);
            _validation = options.ValidationTask is null ? tasks[0].Task : TaskRegistry.Create(options.ValidationTask, context);
            _explodeAbove = tasks.Max(t => t.Task.DefaultDivergenceThreshold);
            _metaOptimizer = new MetaOptimizer(learned.Parameters.Select(p => p.Parameter).ToList(), options.MetaLearningRate, options.ClipNorm);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    public LearnedOptimizer Learned { get; } = null!;
    public MetaTrainOptions Options { get; } = null!;
    public string Folder { get; } = "";
    public int Iteration => _iteration;
    public int SkippedUpdates => _metaOptimizer.Skipped;

    /// <summary>What runs the unrolls, e.g. <c>engine (avx512, 2 threads)</c>.</summary>
    public string BackendDescription => Backends.Describe(_engine);

    /// <summary>
    /// Continues the run saved in <paramref name="folder"/>, with the saved options except those in
    /// <paramref name="changes"/> (<see cref="ResumeChanges"/> says which may change).
    /// </summary>
    /// <exception cref="L2OException">Nothing to resume, another process uses the folder, or the run is already past the requested iterations.</exception>
    public static MetaTrainer Resume(string folder, TaskContext context, ResumeChanges? changes = null, string command = "", Backend backend = Backend.Auto)
    {
        string path = Path.Combine(folder, LastFile);
        if (!File.Exists(path)) throw new L2OException($"nothing to resume: {path} does not exist");
        var lease = RunFolder.Acquire(folder, command);   // before reading: a second resume must not read state the first is replacing
        try
        {
            var contents = SafeTensors.Load(path);
            if (!contents.Metadata.TryGetValue("trainer", out var trainerJson))
                throw new L2OException($"{path}: has no trainer state (not written by l2o meta-train)");
            SavedTrainer saved;
            try
            {
                saved = JsonSerializer.Deserialize<SavedTrainer>(trainerJson, Json) ?? throw new L2OException($"{path}: trainer state is empty");
            }
            catch (JsonException e)
            {
                throw new L2OException($"{path}: trainer state is not valid JSON ({e.Message})");
            }
            var options = (changes ?? new ResumeChanges()).Apply(saved.Options);
            if (options.Iterations <= saved.Iteration)
                throw new L2OException($"{folder} is already at iteration {saved.Iteration}" +
                                       (saved.Iteration >= saved.Options.Iterations ? $" (finished its {saved.Options.Iterations} iterations)" : "") +
                                       $"; give -n above {saved.Iteration} to continue it");
            var learned = LearnedRegistry.Load(path, new Optimizers.BuildContext(context.Device, context.DType));
            var trainer = new MetaTrainer(learned, options, context, lease, string.IsNullOrEmpty(command) ? saved.Command : command, backend, resuming: true);
            trainer._iteration = saved.Iteration;
            trainer._trainAverage = saved.TrainAverage;
            trainer._bestValidation = saved.BestValidation;
            trainer._bestTrain = saved.BestTrainAverage;
            trainer._diverged = saved.DivergedTrajectories;
            trainer._exploded = saved.ExplodedTrajectories;
            trainer._metaUpdates = saved.MetaUpdates ?? saved.MetaSteps + saved.SkippedUpdates;
            trainer._metaOptimizer.Restore(contents["trainer.adam.m"], contents["trainer.adam.v"], saved.MetaSteps, saved.SkippedUpdates);
            foreach (var (_, t) in contents.Tensors) t.Dispose();
            trainer.TruncateLog();
            return trainer;
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    /// <summary>Runs until <see cref="MetaTrainOptions.Iterations"/> or cancellation (then saves and returns).</summary>
    public MetaTrainResult Train(IProgress<IterationStats>? progress = null, CancellationToken cancel = default)
    {
        AtomicFile.WriteAllText(Path.Combine(Folder, "options.json"), JsonSerializer.Serialize(Options, Json));
        if (_iteration == 0) AtomicFile.WriteAllText(Path.Combine(Folder, LogFile), LogHeader + "\n");
        var total = Stopwatch.StartNew();
        int start = _iteration;
        while (_iteration < Options.Iterations && !cancel.IsCancellationRequested)
        {
            var stats = RunIteration();
            _iteration++;
            ValidationScore? validation = null;
            if (Options.ValidateEvery > 0 && (_iteration % Options.ValidateEvery == 0 || _iteration == Options.Iterations))
            {
                validation = Validate();
                // A score of Infinity (every validation run diverged) is no "best": nothing is written for it.
                if (double.IsFinite(validation.Loss) && validation.CompareTo(_bestValidation) < 0)
                {
                    _bestValidation = validation;
                    Save(Path.Combine(Folder, BestValidationFile), includeTrainer: false);
                }
            }
            if (!stats.Diverged && !stats.Exploded && _trainAverage < (_bestTrain ?? double.PositiveInfinity) && _iteration >= Math.Min(10, Options.Iterations))
            {
                _bestTrain = _trainAverage;
                Save(Path.Combine(Folder, BestTrainFile), includeTrainer: false);
            }
            stats = stats with { Validation = validation };
            AppendLog(stats);
            if (_iteration % Options.CheckpointEvery == 0 || _iteration == Options.Iterations) Save(Path.Combine(Folder, LastFile), includeTrainer: true);
            progress?.Report(stats);
        }
        if (_iteration % Options.CheckpointEvery != 0 || _iteration == start) Save(Path.Combine(Folder, LastFile), includeTrainer: true);
        int done = _iteration - start;
        bool hasBest = _bestValidation is not null && double.IsFinite(_bestValidation.Loss);
        return new MetaTrainResult(_iteration, Path.Combine(Folder, LastFile),
            hasBest && File.Exists(Path.Combine(Folder, BestValidationFile)) ? Path.Combine(Folder, BestValidationFile) : null,
            File.Exists(Path.Combine(Folder, BestTrainFile)) ? Path.Combine(Folder, BestTrainFile) : null,
            hasBest ? _bestValidation : null, _bestTrain, _metaOptimizer.Skipped, _diverged, done == 0 ? double.NaN : total.Elapsed.TotalSeconds / done,
            done, _metaUpdates, _exploded, _explodeAbove, Interrupted: _iteration < Options.Iterations);
    }

    /// <summary>One trajectory: T steps in unrolls of U, one meta-update per unroll.</summary>
    private IterationStats RunIteration()
    {
        var watch = Stopwatch.StartNew();
        long seed = Seeds.Derive(Options.Seed, 1000 + _iteration);
        int length = Options.TrajectoryStepsMax is int max
            ? new Random(unchecked((int)Seeds.Derive(seed, 20))).Next(Options.TrajectorySteps, max + 1)
            : Options.TrajectorySteps;
        _metaOptimizer.LearningRate = LearningRateAt(_iteration);
        var metaLosses = new List<double>();
        double? gradNorm = null;
        bool diverged = false;
        using var trajectory = Backends.StartTrajectory(Learned, _training.Sample(seed), _engine);
        while (trajectory.StepsTaken < length)
        {
            int steps = Math.Min(Options.Unroll, length - trajectory.StepsTaken);
            using var outcome = trajectory.Unroll(steps, Options.MetaLoss);
            if (!outcome.Finite)
            {
                diverged = true;
                break;
            }
            _metaUpdates++;
            gradNorm = _metaOptimizer.Step(outcome.MetaGradient!) ?? gradNorm;
            metaLosses.Add(outcome.MetaLoss);
            if (Options.ResetOnExtremes && (trajectory.Loss < 1e-15 || trajectory.ParameterNorm > 1e4)) break;
        }
        bool exploded = !diverged && trajectory.Loss > _explodeAbove;
        if (diverged) _diverged++;
        else _trainAverage = _trainAverage is double a ? Options.AverageDecay * a + (1 - Options.AverageDecay) * trajectory.Loss : trajectory.Loss;
        if (exploded) _exploded++;
        return new IterationStats(_iteration + 1, Options.Iterations, metaLosses.Count > 0 ? metaLosses.Average() : double.NaN,
            diverged ? double.NaN : trajectory.Loss, _trainAverage ?? double.NaN, diverged, _metaOptimizer.Skipped, _diverged,
            watch.Elapsed.TotalSeconds, _metaOptimizer.LearningRate, gradNorm, null, exploded, _exploded);
    }

    private double LearningRateAt(int iteration)
    {
        if (Options.MetaLearningRateFinal is not double final || Options.Iterations <= 1) return Options.MetaLearningRate;
        double frac = (double)iteration / (Options.Iterations - 1);
        return Options.MetaLearningRate + (final - Options.MetaLearningRate) * frac;
    }

    /// <summary>
    /// Validation on the plain validation task with fixed seeds: diverged runs, then the mean loss over
    /// all steps (mean / mean-log meta-losses) or the final loss (last) of the other runs.
    /// </summary>
    public ValidationScore Validate()
    {
        var settings = new EvalSettings
        {
            Steps = Options.ValidationSteps ?? Options.TrajectorySteps,
            Runs = Options.ValidationRuns,
            Seed = 1_000_000_000L + Options.Seed,
            TestMetrics = false,
        };
        var result = Evaluator.Evaluate(_validation, _rule, settings);
        if (result.Completed == 0) return new ValidationScore(result.Diverged, double.PositiveInfinity);
        double loss = Options.MetaLoss == MetaLoss.Last ? result.FinalLoss.Mean : result.MeanCurve.Skip(1).Average();
        return new ValidationScore(result.Diverged, loss);
    }

    private void Save(string path, bool includeTrainer)
    {
        var meta = new Dictionary<string, string>
        {
            ["command"] = _command,
            ["seed"] = Options.Seed.ToString(CultureInfo.InvariantCulture),
            ["iteration"] = _iteration.ToString(CultureInfo.InvariantCulture),
            ["training_tasks"] = string.Join(";", Options.Tasks),
            ["meta_train_options"] = JsonSerializer.Serialize(Options, Json),
        };
        IEnumerable<(string, Tensor)>? extra = null;
        if (includeTrainer)
        {
            meta["trainer"] = JsonSerializer.Serialize(new SavedTrainer(Options, _iteration, _trainAverage, _bestValidation, _bestTrain,
                _diverged, _metaOptimizer.Skipped, _metaOptimizer.Steps, _command, _exploded, _metaUpdates), Json);
            var (m, v) = _metaOptimizer.Moments;
            extra = [("trainer.adam.m", m), ("trainer.adam.v", v)];
        }
        Learned.Save(path, meta, extra);
    }

    private void AppendLog(IterationStats s)
    {
        static string F(double? v) => v is double d && double.IsFinite(d) ? d.ToString("R", CultureInfo.InvariantCulture) : "";
        string line = string.Join(",", s.Iteration, F(s.MetaLoss), F(s.FinalLoss), F(s.TrainAverage), s.Diverged ? 1 : 0,
            F(s.LearningRate), F(s.GradNorm), F(s.Seconds), F(s.Validation?.Loss)) + "," + (s.Validation?.Diverged.ToString(CultureInfo.InvariantCulture) ?? "");
        string path = Path.Combine(Folder, LogFile);
        FileErrors.Writing(path, () => File.AppendAllText(path, line + "\n"));
    }

    /// <summary>After a resume, drops log rows written after the checkpoint's iteration, and any row cut short by a kill or a full disk.</summary>
    private void TruncateLog()
    {
        string path = Path.Combine(Folder, LogFile);
        int columns = LogHeader.Split(',').Length;
        var kept = new StringBuilder(LogHeader + "\n");
        FileErrors.Reading(path, () =>
        {
            if (!File.Exists(path)) return;
            foreach (var line in File.ReadLines(path).Skip(1))
            {
                var fields = line.Split(',');
                if (fields.Length == columns && int.TryParse(fields[0], CultureInfo.InvariantCulture, out int it) && it <= _iteration) kept.Append(line).Append('\n');
            }
        });
        AtomicFile.WriteAllText(path, kept.ToString());
    }

    private static (ITask Task, double Weight) ParseWeighted(string text, TaskContext context)
    {
        int at = text.LastIndexOf('@');
        double weight = 1;
        if (at > 0 && double.TryParse(text[(at + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var w))
        {
            weight = w;
            text = text[..at];
        }
        return (TaskRegistry.Create(text, context), weight);
    }

    /// <summary>Releases the meta-optimizer's state and the folder's lock.</summary>
    public void Dispose()
    {
        _metaOptimizer?.Dispose();
        _lease.Dispose();
    }

    /// <param name="ExplodedTrajectories">Null in checkpoints written before it was counted.</param>
    /// <param name="MetaUpdates">Null in checkpoints written before it was counted (then steps + skipped).</param>
    private sealed record SavedTrainer(MetaTrainOptions Options, int Iteration, double? TrainAverage, ValidationScore? BestValidation, double? BestTrainAverage,
        int DivergedTrajectories, int SkippedUpdates, long MetaSteps, string Command, int ExplodedTrajectories = 0, long? MetaUpdates = null);
}
