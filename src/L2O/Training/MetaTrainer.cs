using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using L2O.Checkpoints;
using L2O.Engine;
using L2O.Evaluation;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Runtime;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Training;

/// <summary>
/// Measurements of one meta-iteration: its trajectory, or with a meta-batch of B &gt; 1 its B
/// trajectories, whose losses are then averaged over the trajectories that have them.
/// </summary>
/// <param name="MetaLoss">Mean of the unrolls' meta-losses (B &gt; 1: the mean over trajectories of that mean).</param>
/// <param name="FinalLoss">Training loss at the end of the trajectory (B &gt; 1: mean over the trajectories that did not diverge; NaN when all did).</param>
/// <param name="TrainAverage">Moving average (decay 0.9) of <paramref name="FinalLoss"/> (RNNprop §5).</param>
/// <param name="Diverged">A trajectory produced a non-finite loss and was abandoned (B &gt; 1: at least one; <paramref name="DivergedNow"/> says how many).</param>
/// <param name="Skipped">Meta-updates skipped so far because the meta-gradient was not finite.</param>
/// <param name="GradNorm">Norm of the last meta-gradient applied (B &gt; 1: of the mean).</param>
/// <param name="Exploded">A trajectory ended finite but above the tasks' divergence threshold (counted, not abandoned).</param>
/// <param name="DivergedNow">Trajectories of this iteration that diverged (0 or 1 when B = 1); the log's <c>diverged</c> column.</param>
/// <param name="DroppedGradients">Non-finite meta-gradients left out of a meta-batch's mean so far.</param>
public sealed record IterationStats(int Iteration, int Iterations, double MetaLoss, double FinalLoss, double TrainAverage, bool Diverged,
    int Skipped, int DivergedTrajectories, double Seconds, double LearningRate, double? GradNorm, ValidationScore? Validation,
    bool Exploded = false, int ExplodedTrajectories = 0, int DivergedNow = 0, long DroppedGradients = 0);

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
/// <param name="DroppedGradients">Non-finite meta-gradients of single trajectories left out of a meta-batch's mean (see <see cref="MetaTrainOptions.MetaBatch"/>).</param>
public sealed record MetaTrainResult(int Iterations, string LastCheckpoint, string? BestValidationCheckpoint, string? BestTrainCheckpoint,
    ValidationScore? BestValidation, double? BestTrainAverage, int SkippedUpdates, int DivergedTrajectories, double SecondsPerIteration,
    int IterationsRun = 0, long MetaUpdates = 0, int ExplodedTrajectories = 0, double ExplodeAbove = double.PositiveInfinity, bool Interrupted = false,
    long DroppedGradients = 0);

/// <summary>
/// What may change when a run is resumed: how long it runs, the end of the meta-rate schedule, how
/// often it validates and checkpoints, and how many workers run the meta-batch (Θ does not depend
/// on it). Everything else in <see cref="MetaTrainOptions"/> defines the training distribution or
/// the meta-optimizer and stays as saved, so that a resumed run continues exactly as an
/// uninterrupted one would. Null keeps the saved value.
/// </summary>
public sealed record ResumeChanges
{
    public int? Iterations { get; init; }
    public double? MetaLearningRateFinal { get; init; }
    public int? ValidateEvery { get; init; }
    public int? CheckpointEvery { get; init; }
    public int? Workers { get; init; }

    /// <summary>The command-line options that set these, for messages.</summary>
    public static IReadOnlyList<string> OptionNames { get; } = ["-n", "--meta-lr-final", "--validate-every", "--checkpoint-every", "--workers"];

    public MetaTrainOptions Apply(MetaTrainOptions saved) => saved with
    {
        Iterations = Iterations ?? saved.Iterations,
        MetaLearningRateFinal = MetaLearningRateFinal ?? saved.MetaLearningRateFinal,
        ValidateEvery = ValidateEvery ?? saved.ValidateEvery,
        CheckpointEvery = CheckpointEvery ?? saved.CheckpointEvery,
        Workers = Workers ?? saved.Workers,
    };
}

/// <summary>
/// Meta-trains a <see cref="LearnedOptimizer"/> by truncated BPTT (see <see cref="Unroll"/>): every
/// iteration draws one trajectory from the training distribution (a task mixture with the tricks),
/// or B of them (<see cref="MetaTrainOptions.MetaBatch"/>), splits their T steps into unrolls of U,
/// and after each unroll takes one Adam step on Θ (with B &gt; 1, on the mean of the trajectories'
/// meta-gradients). Writes
/// <c>last.safetensors</c> (resumable), <c>best-validation.safetensors</c>,
/// <c>best-train.safetensors</c> and <c>log.csv</c> into its folder, all atomically, and holds the
/// folder's <see cref="RunFolder"/> lock from construction to <see cref="Dispose"/>.
/// </summary>
/// <remarks>
/// Every random draw of iteration i is a function of (seed, i) (trajectory b of a meta-batch: of
/// (seed, i, b)), and the meta-optimizer's state is in the checkpoint, so a resumed run continues
/// exactly as an uninterrupted one.
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
    private long _dropped;
    private readonly double _explodeAbove;
    private readonly RunFolder _lease;
    private readonly FusedEngine? _engine;
    private readonly Optimizers.IUpdateRule _rule;
    private readonly ISlotRunner _runner = null!;

    /// <summary>Starts a new run in <paramref name="folder"/>, which must not hold one already.</summary>
    /// <param name="backend">Auto runs the fused CPU engine where it covers the method (<see cref="Backends"/>).</param>
    /// <param name="runner">Makes what runs the trajectories (e.g. an Orleans cluster, L2O.Cluster); null: the in-process workers of <see cref="MetaTrainOptions.Workers"/>.</param>
    /// <exception cref="L2OException">Another process uses the folder, it holds a run, or it cannot be written.</exception>
    public MetaTrainer(LearnedOptimizer learned, MetaTrainOptions options, TaskContext context, string folder, string command = "", Backend backend = Backend.Auto,
        Func<SlotRunnerContext, ISlotRunner>? runner = null)
        : this(learned, Validated(options), context, RunFolder.Acquire(folder, command), command, backend, resuming: false, runner)
    {
    }

    private static MetaTrainOptions Validated(MetaTrainOptions options)
    {
        options.Validate();   // before the folder is locked (and perhaps created)
        return options;
    }

    private MetaTrainer(LearnedOptimizer learned, MetaTrainOptions options, TaskContext context, RunFolder lease, string command, Backend backend, bool resuming,
        Func<SlotRunnerContext, ISlotRunner>? runner)
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
            // Validation only runs the forward, so it gets the forward's engine (its layout may differ from training's).
            _rule = Backends.Rule(learned, backend);
            Options = options;
            Folder = folder;
            _command = command;
            var tasks = ParseTasks(options, context);
            _training = new TrainingTask(tasks, options.Tricks, context);
            _validation = options.ValidationTask is null ? tasks[0].Task : TaskRegistry.Create(options.ValidationTask, context);
            _explodeAbove = tasks.Max(t => t.Task.DefaultDivergenceThreshold);
            _metaOptimizer = new MetaOptimizer(learned.Parameters.Select(p => p.Parameter).ToList(), options.MetaLearningRate, options.ClipNorm);
            _runner = runner is null
                ? new LocalSlotRunner(new MetaWorkers(learned, _engine, options.Workers), _training.Sample)
                : runner(new SlotRunnerContext(learned, options, context, _engine is null ? null : _engine.Options with { Width = _engine.Cell.Width switch { 16 => SimdWidth.Avx512, 8 => SimdWidth.Avx2, _ => SimdWidth.Scalar } }));
        }
        catch
        {
            _metaOptimizer?.Dispose();
            _runner?.Dispose();
            lease.Dispose();
            throw;
        }
    }

    public LearnedOptimizer Learned { get; } = null!;
    public MetaTrainOptions Options { get; } = null!;
    public string Folder { get; } = "";
    public int Iteration => _iteration;
    public int SkippedUpdates => _metaOptimizer.Skipped;

    /// <summary>What runs the unrolls, e.g. <c>engine (avx512, 2 threads)</c> or <c>engine (avx512, 2 workers × 1 thread)</c>.</summary>
    public string BackendDescription => _runner.Describe();

    /// <summary>
    /// The seed of trajectory <paramref name="slot"/> of iteration <paramref name="iteration"/> (0-based):
    /// slot 0 is the trajectory of a single-trajectory run, Derive(seed, 1000 + i); slot b &gt; 0 is
    /// Derive(that, 1 000 000 + b). Its instance, scalings, convex function, minibatches and length
    /// are all drawn from it, so a trajectory does not depend on where or in which order it runs.
    /// </summary>
    public static long TrajectorySeed(long seed, int iteration, int slot)
    {
        long first = Seeds.Derive(seed, 1000 + iteration);
        return slot == 0 ? first : Seeds.Derive(first, 1_000_000 + slot);
    }

    /// <summary>
    /// Continues the run saved in <paramref name="folder"/>, with the saved options except those in
    /// <paramref name="changes"/> (<see cref="ResumeChanges"/> says which may change).
    /// </summary>
    /// <exception cref="L2OException">Nothing to resume, another process uses the folder, or the run is already past the requested iterations.</exception>
    /// <param name="runner">As for a new run: what runs the trajectories (null: the in-process workers).</param>
    public static MetaTrainer Resume(string folder, TaskContext context, ResumeChanges? changes = null, string command = "", Backend backend = Backend.Auto,
        Func<SlotRunnerContext, ISlotRunner>? runner = null)
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
            var trainer = new MetaTrainer(learned, options, context, lease, string.IsNullOrEmpty(command) ? saved.Command : command, backend, resuming: true, runner);
            trainer._iteration = saved.Iteration;
            trainer._trainAverage = saved.TrainAverage;
            trainer._bestValidation = saved.BestValidation;
            trainer._bestTrain = saved.BestTrainAverage;
            trainer._diverged = saved.DivergedTrajectories;
            trainer._exploded = saved.ExplodedTrajectories;
            trainer._metaUpdates = saved.MetaUpdates ?? saved.MetaSteps + saved.SkippedUpdates;
            trainer._dropped = saved.DroppedGradients;
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
            done, _metaUpdates, _exploded, _explodeAbove, Interrupted: _iteration < Options.Iterations, _dropped);
    }

    /// <summary>
    /// One meta-iteration: B trajectories (slot b seeded by <see cref="TrajectorySeed"/>), each T steps
    /// in unrolls of U, advanced together; after each round of unrolls one meta-update from the mean
    /// of the finite meta-gradients, added in slot order. With B = 1 this is the single-trajectory
    /// trainer: the same draws, the same update, the same statistics.
    /// </summary>
    private IterationStats RunIteration()
    {
        var watch = Stopwatch.StartNew();
        int batch = Options.MetaBatch;
        _metaOptimizer.LearningRate = LearningRateAt(_iteration);
        // A meta-batch runs each trajectory's tensor work on one libtorch thread, on one worker or
        // many, so that results do not depend on --workers; parallelism comes from the workers.
        using var threads = batch > 1 ? new TorchThreads(1) : default;
        var slots = new Slot[batch];
        try
        {
            var plans = new SlotPlan[batch];
            for (int b = 0; b < batch; b++)
            {
                long seed = TrajectorySeed(Options.Seed, _iteration, b);
                int length = Options.TrajectoryStepsMax is int max
                    ? new Random(unchecked((int)Seeds.Derive(seed, 20))).Next(Options.TrajectorySteps, max + 1)
                    : Options.TrajectorySteps;
                plans[b] = new SlotPlan(b, seed, length);
                slots[b] = new Slot(length);
            }
            _runner.Start(_iteration, plans);
            double? gradNorm = null;
            while (slots.Any(s => s.Active))
            {
                var work = new List<SlotWork>(batch);
                for (int b = 0; b < batch; b++)
                    if (slots[b].Active) work.Add(new SlotWork(b, Math.Min(Options.Unroll, slots[b].Length - slots[b].StepsTaken)));
                var results = _runner.Unroll(work, Options.MetaLoss);
                for (int i = 0; i < work.Count; i++) slots[work[i].Slot].Receive(results[i], work[i].Steps);
                gradNorm = MetaUpdate(slots) ?? gradNorm;
                foreach (var slot in slots) slot.EndRound(Options.ResetOnExtremes);
            }
            var finished = slots.Where(s => !s.Diverged).ToList();
            int diverged = batch - finished.Count;
            int exploded = finished.Count(s => s.Loss > _explodeAbove);
            double finalLoss = finished.Count > 0 ? finished.Average(s => s.Loss) : double.NaN;
            _diverged += diverged;
            _exploded += exploded;
            if (finished.Count > 0)
                _trainAverage = _trainAverage is double a ? Options.AverageDecay * a + (1 - Options.AverageDecay) * finalLoss : finalLoss;
            var withLoss = slots.Where(s => s.MetaLosses.Count > 0).ToList();
            return new IterationStats(_iteration + 1, Options.Iterations, withLoss.Count > 0 ? withLoss.Average(s => s.MetaLosses.Average()) : double.NaN,
                finalLoss, _trainAverage ?? double.NaN, diverged > 0, _metaOptimizer.Skipped, _diverged,
                watch.Elapsed.TotalSeconds, _metaOptimizer.LearningRate, gradNorm, null, exploded > 0, _exploded, diverged, _dropped);
        }
        finally
        {
            foreach (var slot in slots) slot?.Dispose();
            _runner.End();
        }
    }

    /// <summary>The meta-update after one round of unrolls (see <see cref="CombineMetaGradients"/>); returns the applied gradient's norm.</summary>
    private double? MetaUpdate(Slot[] slots)
    {
        using var scope = NewDisposeScope();
        var round = CombineMetaGradients(slots.Select(s => s.Outcome).ToList());
        _dropped += round.Dropped;
        if (round.Finite == 0) return null;   // every trajectory of the round diverged: no update, as for one diverged trajectory
        _metaUpdates++;
        if (round.Mean is null)
        {
            _metaOptimizer.Skip();
            return null;
        }
        return _metaOptimizer.Step(round.Mean);
    }

    /// <summary>What one round of unrolls gives the meta-optimizer.</summary>
    /// <param name="Mean">Mean of the finite meta-gradients; null when there is none.</param>
    /// <param name="Finite">Unrolls whose losses were finite (the others' trajectories diverged).</param>
    /// <param name="Dropped">Of those, the ones whose meta-gradient was not finite (left out of the mean).</param>
    internal readonly record struct RoundGradient(Tensor? Mean, int Finite, int Dropped);

    /// <summary>
    /// The meta-gradient of one round of a meta-batch's unrolls (null: that trajectory had ended):
    /// the mean of the finite meta-gradients, added in slot order and divided by their number; with
    /// one, that gradient itself. The sum order is fixed, so the result does not depend on which
    /// worker computed which unroll. The mean belongs to the caller's dispose scope (or, with one
    /// gradient, to its outcome).
    /// </summary>
    internal static RoundGradient CombineMetaGradients(IReadOnlyList<UnrollOutcome?> outcomes)
    {
        Tensor? sum = null;
        int finite = 0, dropped = 0, count = 0;
        foreach (var outcome in outcomes)
        {
            if (outcome is not { Finite: true }) continue;
            finite++;
            // The same test as the meta-optimizer's: a gradient whose norm is not finite is never applied.
            if (!double.IsFinite(outcome.MetaGradient!.norm().ToDouble()))
            {
                dropped++;
                continue;
            }
            sum = sum is null ? outcome.MetaGradient : sum.Plus(outcome.MetaGradient);
            count++;
        }
        return new RoundGradient(count <= 1 ? sum : sum!.Over(count), finite, dropped);
    }

    /// <summary>The trainer's record of one trajectory of a meta-batch (the trajectory itself lives in the <see cref="ISlotRunner"/>).</summary>
    private sealed class Slot(int length) : IDisposable
    {
        public int Length { get; } = length;
        public int StepsTaken { get; private set; }
        /// <summary>Training loss after the last unroll.</summary>
        public double Loss { get; private set; } = double.NaN;
        private double _parameterNorm = double.NaN;
        /// <summary>The current round's unroll, or null when the trajectory sat it out (it had ended).</summary>
        public UnrollOutcome? Outcome { get; private set; }
        public List<double> MetaLosses { get; } = [];
        public bool Diverged { get; private set; }
        private bool _stopped;

        public bool Active => !Diverged && !_stopped && StepsTaken < Length;

        public void Receive(SlotUnroll result, int steps)
        {
            Outcome = result.Outcome;
            Loss = result.Loss;
            _parameterNorm = result.ParameterNorm;
            StepsTaken += steps;
        }

        /// <summary>After the meta-update: a non-finite loss abandons the trajectory; --reset-on-extremes may end it.</summary>
        public void EndRound(bool resetOnExtremes)
        {
            if (Outcome is null) return;
            if (!Outcome.Finite) Diverged = true;
            else
            {
                MetaLosses.Add(Outcome.MetaLoss);
                if (resetOnExtremes && (Loss < 1e-15 || _parameterNorm > 1e4)) _stopped = true;
            }
            Outcome.Dispose();
            Outcome = null;
        }

        public void Dispose() => Outcome?.Dispose();
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
        double loss = MetaLosses.Validation(Options.MetaLoss, result.MeanCurve, result.FinalLoss.Mean);
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
                _diverged, _metaOptimizer.Skipped, _metaOptimizer.Steps, _command, _exploded, _metaUpdates, _dropped), Json);
            var (m, v) = _metaOptimizer.Moments;
            extra = [("trainer.adam.m", m), ("trainer.adam.v", v)];
        }
        Learned.Save(path, meta, extra);
    }

    private void AppendLog(IterationStats s)
    {
        static string F(double? v) => v is double d && double.IsFinite(d) ? d.ToString("R", CultureInfo.InvariantCulture) : "";
        string line = string.Join(",", s.Iteration, F(s.MetaLoss), F(s.FinalLoss), F(s.TrainAverage), s.DivergedNow,
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

    private static List<(ITask Task, double Weight)> ParseTasks(MetaTrainOptions options, TaskContext context) =>
        options.Tasks.Select(t => ParseWeighted(t, context)).ToList();

    /// <summary>The training distribution of <paramref name="options"/>, built as the trainer builds its own (a remote worker draws the same trajectories from it).</summary>
    internal static TrainingTask CreateTrainingTask(MetaTrainOptions options, TaskContext context) => new(ParseTasks(options, context), options.Tricks, context);

    /// <summary><paramref name="options"/> as options.json holds them (a remote worker reads them back with <see cref="OptionsFromJson"/>).</summary>
    internal static string OptionsToJson(MetaTrainOptions options) => JsonSerializer.Serialize(options, Json);

    internal static MetaTrainOptions OptionsFromJson(string json) =>
        JsonSerializer.Deserialize<MetaTrainOptions>(json, Json) ?? throw new L2OException("meta-training options are empty");

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
        _runner?.Dispose();
        _metaOptimizer?.Dispose();
        _lease.Dispose();
    }

    /// <param name="Options">In checkpoints written before meta-batches, without <see cref="MetaTrainOptions.MetaBatch"/> and <see cref="MetaTrainOptions.Workers"/> (then 1 and 1).</param>
    /// <param name="ExplodedTrajectories">Null in checkpoints written before it was counted.</param>
    /// <param name="MetaUpdates">Null in checkpoints written before it was counted (then steps + skipped).</param>
    /// <param name="DroppedGradients">Absent in checkpoints written before meta-batches (then 0).</param>
    private sealed record SavedTrainer(MetaTrainOptions Options, int Iteration, double? TrainAverage, ValidationScore? BestValidation, double? BestTrainAverage,
        int DivergedTrajectories, int SkippedUpdates, long MetaSteps, string Command, int ExplodedTrajectories = 0, long? MetaUpdates = null, long DroppedGradients = 0);
}
