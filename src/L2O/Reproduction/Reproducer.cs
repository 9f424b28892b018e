using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Runtime;
using L2O.Specs;
using L2O.Tasks;

namespace L2O.Reproduction;

/// <summary>How to run a reproduction. Defaults are the paper's protocol (100 runs).</summary>
public sealed record ReproduceSettings
{
    /// <summary>Evaluation runs per optimizer and row; run r uses seed <see cref="Seed"/> + r.</summary>
    public int Runs { get; init; } = 100;
    public long Seed { get; init; }
    /// <summary>Runs per learning rate when tuning a hand-designed baseline.</summary>
    public int SweepRuns { get; init; } = 10;
    /// <summary>Base seed of the tuning runs; must keep them disjoint from the evaluation seeds.</summary>
    public long SweepSeed { get; init; } = 100_000;
    /// <summary>Tuning runs are at most this long (the rate chosen there is used for the full horizon).</summary>
    public int SweepStepsLimit { get; init; } = 2000;
    /// <summary>
    /// The smoke-test protocol, stated in every output: <see cref="QuickRuns"/> runs (1 beyond 100 steps),
    /// horizons cut to <see cref="QuickLongSteps"/>, and rates tuned by one run of at most
    /// <see cref="QuickSweepSteps"/> steps on every fourth point of the √2 grid (a factor of 4 apart).
    /// Sized so that <c>l2o reproduce hyperadam --quick</c> runs in about 15 minutes on 2 cores (docs/reproduce.md).
    /// </summary>
    public bool Quick { get; init; }
    public int QuickRuns { get; init; } = 3;
    public int QuickLongSteps { get; init; } = 200;
    public int QuickSweepSteps { get; init; } = 50;

    /// <summary>One sentence stating the quick protocol, for the reports.</summary>
    public string QuickDescription =>
        $"**Quick mode**: {QuickRuns} runs (1 beyond 100 steps), horizons above 100 steps cut to {QuickLongSteps}, rates tuned by one run of at most " +
        $"{QuickSweepSteps} steps on a grid a factor of 4 apart; a smoke test of the protocol, not the paper's numbers.";
    public string? DataDir { get; init; }
    /// <summary>Replaces the checkpoint of a learned optimizer key, e.g. hyperadam → a file; default: the shipped one.</summary>
    public IReadOnlyDictionary<string, string> Checkpoints { get; init; } = new Dictionary<string, string>();
    public BuildContext Build { get; init; } = BuildContext.Cpu;

    public void Validate()
    {
        if (Runs < 1) throw new L2OException($"--runs must be >= 1 (got {Runs})");
        if (SweepRuns < 1) throw new L2OException($"sweep runs must be >= 1 (got {SweepRuns})");
        bool overlap = SweepSeed < Seed + Runs && Seed < SweepSeed + SweepRuns;
        if (overlap) throw new L2OException($"tuning seeds {SweepSeed}..{SweepSeed + SweepRuns - 1} overlap the evaluation seeds {Seed}..{Seed + Runs - 1}");
    }

    /// <summary>Every row's horizon replaced by this (smoke tests); null: the protocol's.</summary>
    public int? StepsOverride { get; init; }

    /// <summary>The horizon of a row: the paper's, or in quick mode at most <see cref="QuickLongSteps"/>.</summary>
    public int StepsFor(PaperRow row) => StepsOverride ?? (Quick && row.Steps > 100 ? Math.Min(row.Steps, QuickLongSteps) : row.Steps);

    /// <summary>Runs of a row: <see cref="Runs"/>, at most 10 beyond 2 000 steps; in quick mode at most <see cref="QuickRuns"/> (1 beyond 100 steps).</summary>
    public int RunsFor(PaperRow row) => Quick ? Math.Min(Runs, row.Steps > 100 ? 1 : QuickRuns) : (row.Steps > 2000 ? Math.Min(Runs, 10) : Runs);

    /// <summary>Tuning runs per grid point: <see cref="SweepRuns"/>, at most 3 beyond 2 000 steps; 1 in quick mode.</summary>
    public int SweepRunsFor(PaperRow row) => Quick ? 1 : row.Steps > 2000 ? Math.Min(SweepRuns, 3) : SweepRuns;

    /// <summary>Steps of a tuning run: the row's horizon, at most <see cref="SweepStepsLimit"/> (<see cref="QuickSweepSteps"/> in quick mode).</summary>
    public int SweepStepsFor(PaperRow row) => Math.Min(StepsFor(row), Quick ? QuickSweepSteps : SweepStepsLimit);
}

/// <summary>One optimizer on one task and horizon: every metric a row may read, with its standard error.</summary>
public sealed record UnitResult(string Key, string Spec, double? LearningRate, int Runs, int Diverged,
    double FinalLoss, double FinalLossSe, double? TestLoss, double? Top1, double? Top2, double MsPerUpdate, int[] CurveSteps, double[] MeanCurve)
{
    public (double Value, double Se) Read(Metric metric) => metric switch
    {
        Metric.FinalLoss => (FinalLoss, FinalLossSe),
        Metric.TestLoss => (TestLoss ?? double.NaN, double.NaN),
        Metric.Top1 => ((Top1 ?? double.NaN) * 100, double.NaN),
        Metric.Top2 => ((Top2 ?? double.NaN) * 100, double.NaN),
        _ => (MsPerUpdate, double.NaN),
    };
}

/// <summary>A row's outcome: ours beside the paper's for each optimizer, and the verdict.</summary>
public sealed record RowResult(PaperRow Row, int Steps, int Runs, IReadOnlyDictionary<string, UnitResult> Ours, IReadOnlyDictionary<string, string> Missing,
    bool? Reproduced, string Verdict);

/// <summary>Where a planned unit or its tuning stands: to run, in the folder's cache, computed by an earlier unit of the plan, not needed, or impossible.</summary>
public enum PlanState { ToRun, Cached, Shared, None, NotRunnable }

/// <summary>
/// One unit of a reproduction plan (<see cref="Reproducer.Plan"/>): its evaluation (runs × steps) and,
/// for a tuned baseline, its sweep (points × runs × steps), with what is already done.
/// </summary>
/// <param name="Spec">What runs: a learned optimizer's specification with its checkpoint, or a baseline's name (its rate is tuned).</param>
/// <param name="Why">For <see cref="PlanState.NotRunnable"/>: the reason (no data, no checkpoint).</param>
public sealed record PlannedUnit(string Experiment, string Row, string Key, string Task, string Spec, int Runs, int Steps,
    int TuningPoints, int TuningRuns, int TuningSteps, PlanState Evaluation, PlanState Tuning, string? Why)
{
    /// <summary>Optimizer steps still to take for this unit: its evaluation and its sweep, each unless cached or shared.</summary>
    public long RemainingSteps =>
        (Evaluation == PlanState.ToRun ? (long)Runs * Steps : 0) + (Tuning == PlanState.ToRun ? (long)TuningPoints * TuningRuns * TuningSteps : 0);
}

/// <summary>Progress of a reproduction: unit <see cref="Done"/> of <see cref="Total"/>, and what runs now.</summary>
public readonly record struct ReproduceProgress(int Done, int Total, string What);

/// <summary>
/// Runs a paper's experiments and compares them with its numbers. Every unit (task × horizon ×
/// optimizer) and every learning-rate sweep is cached as JSON in the output folder, so an
/// interrupted reproduction continues where it stopped and experiments share their units.
/// </summary>
public sealed class Reproducer(string folder, ReproduceSettings settings)
{
    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public string Folder { get; } = folder;
    public ReproduceSettings Settings { get; } = settings;

    /// <summary>Number of units an experiment needs (for progress).</summary>
    public static int Units(Experiment e) => e.Rows.Count * (e.Optimizers.Count + e.Variants.Count);

    public IReadOnlyList<RowResult> Run(Experiment experiment, IProgress<ReproduceProgress>? progress = null, CancellationToken cancel = default)
    {
        Settings.Validate();
        var rows = new List<RowResult>();
        int done = 0, total = Units(experiment);
        foreach (var row in experiment.Rows)
        {
            var ours = new Dictionary<string, UnitResult>();
            var missing = new Dictionary<string, string>();
            var (task, taskError) = CreateTask(row);
            foreach (var (key, spec) in Keys(experiment))
            {
                cancel.ThrowIfCancellationRequested();
                progress?.Report(new ReproduceProgress(done, total, $"{experiment.Name} · {row.Label} · {key}"));
                if (task is null) missing[key] = taskError!;
                else
                {
                    try { ours[key] = Unit(task, row, key, spec, cancel); }
                    catch (L2OException e) { missing[key] = e.Message; }
                }
                done++;
            }
            progress?.Report(new ReproduceProgress(done, total, $"{experiment.Name} · {row.Label}"));
            var (ok, verdict) = Verdicts.Judge(row, ours, missing);
            rows.Add(new RowResult(row, Settings.StepsFor(row), Settings.RunsFor(row), ours, missing, ok, verdict));
        }
        return rows;
    }

    /// <summary>The row's task, or why it cannot be built (CIFAR-10 rows without the data say so).</summary>
    private (ITask? Task, string? Error) CreateTask(PaperRow row)
    {
        try { return (TaskRegistry.Create(row.Task, new TaskContext(Settings.Build.Device, Settings.Build.DType, Settings.DataDir)), null); }
        catch (L2OException e) { return (null, row.NeedsCifar ? "no CIFAR-10 data (give --data-dir)" : e.Message); }
    }

    /// <summary>Every optimizer key of an experiment with the specification it runs: the compared optimizers, then the variants.</summary>
    private IEnumerable<(string Key, string Spec)> Keys(Experiment experiment) =>
        experiment.Optimizers.Select(k => (k, SpecFor(k))).Concat(experiment.Variants.Select(v => (v.Key, v.Value)));

    private string SpecFor(string key)
    {
        var info = OptimizerRegistry.Find(key);
        if (!info.Learned) return info.Name;
        return $"{info.Name}:checkpoint={Settings.Checkpoints.GetValueOrDefault(info.Name, Learned.Pretrained.Keyword)}";
    }

    /// <summary>Evaluates one optimizer on one row's task and horizon (cached); hand-designed rules are tuned first.</summary>
    private UnitResult Unit(ITask task, PaperRow row, string key, string spec, CancellationToken cancel)
    {
        int steps = Settings.StepsFor(row), runs = Settings.RunsFor(row);
        string path = UnitPath(task, row, key, spec);
        if (File.Exists(path)) return JsonSerializer.Deserialize<UnitResult>(File.ReadAllText(path), Json)!;

        var info = OptimizerRegistry.Find(Spec.Parse(spec).Name);
        double? lr = null;
        string full = spec;
        if (!info.Learned && info.HasLearningRate)
        {
            lr = Tune(task, row, info, cancel);
            full = $"{info.Name}:lr={Spec.Short(lr.Value)}";
        }
        var rule = OptimizerRegistry.Create(full, Settings.Build);
        var result = Evaluator.Evaluate(task, rule, new EvalSettings { Steps = steps, Runs = runs, Seed = Settings.Seed }, full, cancel: cancel);
        var n = Math.Max(1, result.Completed);
        int stride = Math.Max(1, steps / 500);
        var curveSteps = Enumerable.Range(0, steps + 1).Where(t => t % stride == 0 || t == steps).ToArray();
        var unit = new UnitResult(key, full, lr, runs, result.Diverged, result.FinalLoss.Mean, result.FinalLoss.Std / Math.Sqrt(n),
            result.TestLoss?.Mean, result.TestTop1?.Mean, result.TestTop2?.Mean, result.MillisecondsPerUpdate, curveSteps,
            curveSteps.Select(t => result.MeanCurve[t]).ToArray());
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(unit, Json));
        return unit;
    }

    /// <summary>The best rate on the √2 grid (coarser in quick mode), on tuning seeds disjoint from the evaluation seeds (cached).</summary>
    private double Tune(ITask task, PaperRow row, OptimizerInfo info, CancellationToken cancel)
    {
        int steps = Settings.SweepStepsFor(row), runs = Settings.SweepRunsFor(row);
        string path = SweepPath(task, row, info);
        if (File.Exists(path)) return JsonSerializer.Deserialize<SweepRecord>(File.ReadAllText(path), Json)!.Best;
        var grid = Grid(info);
        var sweep = LearningRateSweep.Run(task, Spec.Parse(info.Name), grid, new EvalSettings { Steps = steps, Runs = runs, Seed = Settings.SweepSeed, TestMetrics = false },
            Settings.Build, cancel: cancel);
        var record = new SweepRecord(task.Name, info.Name, steps, runs, Settings.SweepSeed, sweep.Best.LearningRate,
            sweep.Points.Select(p => new SweepRecordPoint(p.LearningRate, p.Result.FinalLoss.Mean, p.Result.Diverged)).ToList());
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(record, Json));
        return record.Best;
    }

    /// <summary>The tuning grid of a baseline: the √2 grid over its family's range, every fourth point in quick mode.</summary>
    private IReadOnlyList<double> Grid(OptimizerInfo info)
    {
        var (lo, hi) = info.Name switch { "sgd" or "momentum" or "heavy-ball" or "nesterov" => (1e-3, 8.0), "adadelta" => (1e-2, 64.0), _ => (1e-4, 1.0) };
        var grid = LearningRateSweep.Grid(lo, hi);
        return Settings.Quick ? grid.Where((_, i) => i % 4 == 0).ToList() : grid;
    }

    private string UnitPath(ITask task, PaperRow row, string key, string spec)
    {
        string id = Hash($"{task.Name}|{Settings.StepsFor(row)}|{Settings.RunsFor(row)}|{Settings.Seed}|{spec}|{CheckpointDigest(spec)}|{Settings.Quick}|{Settings.SweepRunsFor(row)}|{Settings.SweepSeed}");
        return Path.Combine(Folder, "cache", $"{Safe(key)}-{id}.json");
    }

    private string SweepPath(ITask task, PaperRow row, OptimizerInfo info) =>
        Path.Combine(Folder, "sweeps", $"{Safe(info.Name)}-{Hash($"{task.Name}|{Settings.SweepStepsFor(row)}|{Settings.SweepRunsFor(row)}|{Settings.SweepSeed}|{Settings.Quick}")}.json");

    /// <summary>
    /// What running <paramref name="experiments"/> in this folder would compute: one entry per unit,
    /// with its evaluation and tuning work, and whether the folder's cache (or an earlier unit of the
    /// same plan, e.g. Table 3 sharing Fig. 6's CNN-2 units) already has it. Computes nothing.
    /// </summary>
    public IReadOnlyList<PlannedUnit> Plan(IEnumerable<Experiment> experiments)
    {
        Settings.Validate();
        var seen = new HashSet<string>();
        var plan = new List<PlannedUnit>();
        foreach (var experiment in experiments)
            foreach (var row in experiment.Rows)
            {
                var (task, taskError) = CreateTask(row);
                foreach (var (key, spec) in Keys(experiment))
                {
                    int steps = Settings.StepsFor(row), runs = Settings.RunsFor(row);
                    if (task is null)
                    {
                        plan.Add(new PlannedUnit(experiment.Name, row.Label, key, row.Task, spec, runs, steps, 0, 0, 0, PlanState.NotRunnable, PlanState.NotRunnable, taskError));
                        continue;
                    }
                    var info = OptimizerRegistry.Find(Spec.Parse(spec).Name);
                    if (MissingCheckpoint(spec) is string missing)
                    {
                        plan.Add(new PlannedUnit(experiment.Name, row.Label, key, task.Name, spec, runs, steps, 0, 0, 0, PlanState.NotRunnable, PlanState.NotRunnable, missing));
                        continue;
                    }
                    string unitPath = UnitPath(task, row, key, spec);
                    var unitState = State(unitPath, seen);
                    bool tuned = !info.Learned && info.HasLearningRate;
                    var tuningState = !tuned ? PlanState.None
                        : unitState is PlanState.Cached or PlanState.Shared ? PlanState.None
                        : State(SweepPath(task, row, info), seen);
                    plan.Add(new PlannedUnit(experiment.Name, row.Label, key, task.Name, tuned ? info.Name : spec, runs, steps,
                        tuned ? Grid(info).Count : 0, tuned ? Settings.SweepRunsFor(row) : 0, tuned ? Settings.SweepStepsFor(row) : 0, unitState, tuningState, null));
                }
            }
        return plan;
    }

    private static PlanState State(string path, HashSet<string> seen) =>
        File.Exists(path) ? PlanState.Cached : seen.Add(path) ? PlanState.ToRun : PlanState.Shared;

    private sealed record SweepRecordPoint(double LearningRate, double FinalLoss, int Diverged);
    private sealed record SweepRecord(string Task, string Optimizer, int Steps, int Runs, long Seed, double Best, List<SweepRecordPoint> Points);

    /// <summary>
    /// A digest of the checkpoint a learned spec reads (empty for rules without one), so that a unit
    /// cached for one checkpoint is not reused after the file at the same path (or a shipped
    /// <c>pretrained</c> checkpoint) was replaced.
    /// </summary>
    private static string CheckpointDigest(string spec)
    {
        var parsed = Spec.Parse(spec);
        if (!parsed.Arguments.TryGetValue("checkpoint", out var checkpoint)) return "";
        byte[]? bytes = Learned.Pretrained.TryReadCheckpoint(checkpoint, parsed.Name);   // null for a missing file, which loading reports
        return bytes is null ? "" : Convert.ToHexString(SHA256.HashData(bytes))[..16];
    }

    /// <summary>The loader's message when a spec names a checkpoint that is neither shipped nor a file; null otherwise.</summary>
    private static string? MissingCheckpoint(string spec)
    {
        if (!Spec.Parse(spec).Arguments.TryGetValue("checkpoint", out var checkpoint) || Learned.Pretrained.IsKeyword(checkpoint)) return null;
        return File.Exists(checkpoint) || Learned.Pretrained.ShippedBytes(checkpoint) is not null ? null : $"checkpoint '{checkpoint}' does not exist";
    }

    private static string Hash(string text) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12].ToLowerInvariant();
    private static string Safe(string name) => new(name.Select(c => char.IsLetterOrDigit(c) || c == '-' ? c : '_').ToArray());
}

/// <summary>The verdict of a row: the same winner and the same ordering as the paper, or the paper's claim holding.</summary>
public static class Verdicts
{
    private static bool HigherIsBetter(Metric m) => m is Metric.Top1 or Metric.Top2;

    /// <summary>Whether optimizer a did better than b: fewer diverged runs first, then the metric.</summary>
    public static bool Better(UnitResult a, UnitResult b, Metric metric)
    {
        if (a.Diverged != b.Diverged) return a.Diverged < b.Diverged;
        double x = a.Read(metric).Value, y = b.Read(metric).Value;
        return HigherIsBetter(metric) ? x > y : x < y;
    }

    /// <summary>
    /// How far apart a and b are in combined standard errors, |mean_a − mean_b| / √(se_a² + se_b²); NaN where the metric has
    /// no standard error or the diverged counts differ (then those decide, not the means).
    /// </summary>
    public static double Separation(UnitResult a, UnitResult b, Metric metric)
    {
        if (a.Diverged != b.Diverged) return double.NaN;
        var (x, sx) = a.Read(metric);
        var (y, sy) = b.Read(metric);
        double se = Math.Sqrt(sx * sx + sy * sy);
        return se > 0 ? Math.Abs(x - y) / se : double.NaN;
    }

    /// <summary>A claim's clause with its separation, e.g. "hyperadam &lt; j5 (1.0 SE)", or the clause alone where there is none.</summary>
    private static string WithSeparation(string clause, double z) =>
        double.IsFinite(z) ? $"{clause} ({z.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)} SE)" : clause;

    /// <summary>Separations below this many combined standard errors are named in a claim's verdict as within noise.</summary>
    public const double ClearSeparation = 2;

    /// <summary>
    /// The verdict of a row: with the paper's numbers, the same winner and ordering; with a claim, every "a &lt; b" clause
    /// holding on the means (fewer diverged runs first). A claim's verdict also names each clause whose two means are
    /// within <see cref="ClearSeparation"/> combined standard errors, held or not, so a reader can tell an ordering
    /// from noise.
    /// </summary>
    public static (bool? Reproduced, string Verdict) Judge(PaperRow row, IReadOnlyDictionary<string, UnitResult> ours, IReadOnlyDictionary<string, string> missing)
    {
        if (row.Paper.Count > 0)
        {
            var keys = row.Paper.Keys.ToList();
            var absent = keys.Where(k => !ours.ContainsKey(k)).ToList();
            if (absent.Count > 0) return (null, $"not run: {string.Join(", ", absent.Select(k => $"{k} ({missing.GetValueOrDefault(k, "missing")})"))}");
            bool higher = HigherIsBetter(row.Metric);
            string paperBest = higher ? keys.MaxBy(k => row.Paper[k])! : keys.MinBy(k => row.Paper[k])!;
            string ourBest = keys.Aggregate((a, b) => Better(ours[b], ours[a], row.Metric) ? b : a);
            var flipped = new List<string>();
            for (int i = 0; i < keys.Count; i++)
                for (int j = i + 1; j < keys.Count; j++)
                {
                    string a = keys[i], b = keys[j];
                    if (row.Paper[a] == row.Paper[b]) continue;
                    bool paperA = higher ? row.Paper[a] > row.Paper[b] : row.Paper[a] < row.Paper[b];
                    if (paperA != Better(ours[a], ours[b], row.Metric)) flipped.Add($"{a} vs {b}");
                }
            if (paperBest == ourBest && flipped.Count == 0) return (true, "reproduced: same winner and ordering");
            var why = new List<string>();
            if (paperBest != ourBest) why.Add($"winner: paper {paperBest}, ours {ourBest}");
            if (flipped.Count > 0) why.Add($"order differs for {string.Join(", ", flipped)}");
            return (false, "not reproduced: " + string.Join("; ", why));
        }
        if (row.Claim is null) return (null, "no claim to check");
        var failed = new List<string>();
        var close = new List<string>();
        var unknown = new List<string>();
        var absentKeys = new List<string>();
        foreach (var clause in row.Claim.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = clause.Split('<', StringSplitOptions.TrimEntries);
            string a = parts[0], b = parts[1];
            if (!ours.TryGetValue(a, out var ua) || !ours.TryGetValue(b, out var ub))
            {
                unknown.Add(clause);
                absentKeys.AddRange(new[] { a, b }.Where(k => !ours.ContainsKey(k) && !absentKeys.Contains(k)));
                continue;
            }
            double z = Separation(ua, ub, row.Metric);
            if (!Better(ua, ub, row.Metric)) failed.Add(WithSeparation(clause, z));
            else if (z < ClearSeparation) close.Add(WithSeparation(clause, z));
        }
        string noise = close.Count > 0 ? $"; held within {ClearSeparation:0} combined SE: {string.Join("; ", close)}" : "";
        if (failed.Count > 0) return (false, $"not reproduced: {string.Join("; ", failed)} does not hold{noise}");
        // Name why the optimizers of the unchecked clauses are missing (not other rows' missing variants).
        if (unknown.Count > 0)
            return (null, $"not run: {string.Join("; ", unknown)} ({string.Join("; ", absentKeys.Take(2).Select(k => $"{k}: {missing.GetValueOrDefault(k, "missing")}"))})");
        return (true, $"reproduced: {row.Claim}{noise}");
    }
}

/// <summary>Measured cost of one optimizer step (the task's loss and gradient plus the update), for a plan's estimate.</summary>
public static class StepCost
{
    /// <summary>
    /// Seconds per step of one short run (seed 0), after a warm-up run of the same length that pays for
    /// the first allocations and the JIT's first tiers; on a busy machine the figure is what the machine
    /// gives now.
    /// </summary>
    public static double Measure(ITask task, IUpdateRule rule, int steps = 20)
    {
        if (steps < 1) throw new L2OException($"timing steps must be >= 1 (got {steps})");
        var settings = new EvalSettings { Steps = steps, Runs = 1, TestMetrics = false };
        Evaluator.RunOnce(task, rule, settings, 0, double.PositiveInfinity);
        var run = Evaluator.RunOnce(task, rule, settings, 0, double.PositiveInfinity);
        return run.StepSeconds / Math.Max(1, run.StepsTaken);
    }
}
