using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using TorchSharp;

namespace L2O.Cluster;

/// <summary>Runs a chunk of an evaluation's seeded runs on a silo (<c>l2o eval --cluster</c>); holds nothing between calls.</summary>
public interface IEvalGrain : IGrainWithStringKey
{
    Task<EvalReply> Run(EvalRequest request);
}

/// <summary>Runs <paramref name="Runs"/> of one optimizer on one task, as <see cref="Evaluator.RunOnce"/> runs them in-process.</summary>
/// <param name="Optimizer">The optimizer's full specification (a checkpoint named in it must exist at that path on the silo).</param>
[GenerateSerializer, Immutable]
public sealed record EvalRequest(
    [property: Id(0)] string Task,
    [property: Id(1)] string? DataDir,
    [property: Id(2)] string Optimizer,
    [property: Id(3)] string Backend,
    [property: Id(4)] int Steps,
    [property: Id(5)] long Seed,
    [property: Id(6)] double? DivergenceThreshold,
    [property: Id(7)] bool TestMetrics,
    [property: Id(8)] bool RecordTrajectory,
    [property: Id(9)] int[] Runs);

/// <summary>The runs' records as JSON (NaN losses included), or the error that kept the silo from running them.</summary>
[GenerateSerializer, Immutable]
public sealed record EvalReply([property: Id(0)] string RunsJson, [property: Id(1)] string Silo, [property: Id(2)] string? Error = null);

[SlotPlacement]
internal sealed class EvalGrain(SiloWorkers silo) : Grain, IEvalGrain
{
    public Task<EvalReply> Run(EvalRequest request)
    {
        DeactivateOnIdle();   // one request per key
        try
        {
            // One libtorch thread per call: a silo's parallelism is its concurrent calls, as for trajectories.
            using var threads = new TorchThreads(1);
            var task = TaskRegistry.Create(request.Task, new TaskContext(torch.CPU, torch.ScalarType.Float32, request.DataDir));
            var rule = OptimizerRegistry.Create(request.Optimizer, new BuildContext(torch.CPU, torch.ScalarType.Float32) { Backend = Engine.Backends.Parse(request.Backend) });
            var settings = new EvalSettings
            {
                Steps = request.Steps, Runs = request.Runs.Max() + 1, Seed = request.Seed, DivergenceThreshold = request.DivergenceThreshold,
                TestMetrics = request.TestMetrics, RecordTrajectory = request.RecordTrajectory,
            };
            settings.Validate(task);
            double threshold = settings.DivergenceThreshold ?? task.DefaultDivergenceThreshold;
            var runs = request.Runs.Select(r => Evaluator.RunOnce(task, rule, settings, r, threshold)).ToList();
            return Task.FromResult(new EvalReply(JsonSerializer.Serialize(runs, ClusterEvaluator.Json), silo.Name));
        }
        catch (L2OException e)
        {
            return Task.FromResult(new EvalReply("", silo.Name, e.Message));
        }
    }
}

/// <summary>
/// An evaluation's runs spread over a cluster's silos: the R runs of each optimizer in contiguous
/// chunks, each chunk one grain call, reassembled in run order. A run is a function of its seed,
/// so the records are the in-process ones (timings aside), and a chunk whose silo fails is simply
/// run again on another.
/// </summary>
public static class ClusterEvaluator
{
    internal static readonly JsonSerializerOptions Json = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Evaluates <paramref name="optimizerSpec"/> (named <paramref name="name"/> in the result) on the cluster.</summary>
    /// <param name="progress">Reports completed runs (as run, 0 steps) as chunks come back.</param>
    /// <exception cref="L2OException">A silo could not build the task or optimizer, or no silo ran a chunk within the cluster timeout.</exception>
    public static OptimizerResult Evaluate(ClusterConnection connection, string taskSpec, string? dataDir, string optimizerSpec, string name, string backend,
        EvalSettings settings, double threshold, IProgress<EvalProgress>? progress = null, CancellationToken cancel = default)
    {
        int silos = Math.Max(1, connection.ActiveSilos());
        int chunks = Math.Min(settings.Runs, 4 * silos);   // a few per silo: balance without a call per run
        string id = Guid.NewGuid().ToString("N")[..16];
        var ranges = Enumerable.Range(0, chunks)
            .Select(c => Enumerable.Range(0, settings.Runs).Where(r => r * chunks / settings.Runs == c).ToArray()).ToList();
        int done = 0;
        var parts = Task.WhenAll(ranges.Select(async (runs, c) =>
        {
            var request = new EvalRequest(taskSpec, dataDir, optimizerSpec, backend, settings.Steps, settings.Seed, settings.DivergenceThreshold,
                settings.TestMetrics, settings.RecordTrajectory, runs);
            var records = await RunChunk(connection, TrajectoryKey.Of(id, 0, c), request, cancel);
            int now = Interlocked.Add(ref done, runs.Length);
            progress?.Report(new EvalProgress(name, now - 1, settings.Runs, settings.Steps, settings.Steps));
            return records;
        })).GetAwaiter().GetResult();
        var all = parts.SelectMany(p => p).OrderBy(r => r.Run).ToList();
        return OptimizerResult.From(name, optimizerSpec, all, threshold, settings.Steps);
    }

    private static async Task<List<RunRecord>> RunChunk(ClusterConnection connection, string key, EvalRequest request, CancellationToken cancel)
    {
        var grain = connection.Client.GetGrain<IEvalGrain>(key);
        Stopwatch? failing = null;
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            Exception last;
            try
            {
                var reply = await connection.CallWatchingSilos(() => grain.Run(request), silo: null);
                if (reply.Error is string error) throw new L2OException($"silo {reply.Silo}: {error}");
                return JsonSerializer.Deserialize<List<RunRecord>>(reply.RunsJson, Json)!;
            }
            catch (Exception e) when (e is not L2OException)
            {
                last = e;
            }
            failing ??= Stopwatch.StartNew();
            if (failing.Elapsed > connection.Settings.Timeout)
                throw new L2OException($"runs {request.Runs[0]}-{request.Runs[^1]}: no silo of cluster '{connection.Settings.ClusterId}' ran them within " +
                                       $"{connection.Settings.Timeout.TotalSeconds:0.#} s ({SiloHost.OneLine(last)})");
            await Task.Delay(200, cancel);
        }
    }
}
