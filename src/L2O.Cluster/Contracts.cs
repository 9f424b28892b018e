using L2O.Engine;
using L2O.Learned;
using L2O.Training;

namespace L2O.Cluster;

/// <summary>
/// One trajectory of a meta-batch on a worker silo, keyed by <see cref="TrajectoryKey"/> (run,
/// iteration, slot). It holds the trajectory's optimizee and optimizer state between unrolls; Θ
/// comes with every request, and the meta-gradient goes back with every reply.
/// </summary>
public interface ITrajectoryGrain : IGrainWithStringKey
{
    /// <summary>
    /// Runs round <see cref="SlotRequest.Round"/> of the trajectory. With <see cref="SlotRequest.Spec"/>
    /// the trajectory is (re)started from its first step and the earlier rounds replayed with the Θ
    /// each of them used; without it the grain must hold the trajectory at that round, else it
    /// replies <see cref="SlotReply.Missing"/> (its silo was restarted, or the activation moved).
    /// </summary>
    Task<SlotReply> Unroll(SlotRequest request);

    /// <summary>Releases the trajectory and deactivates the grain (the end of its iteration).</summary>
    Task Release();
}

/// <summary>Everything a silo needs to draw and run the trajectories of one run exactly as the learner would.</summary>
/// <param name="RunId">Identifies the learner's run (a fresh one per process); silos share per-run workers under it.</param>
/// <param name="Method">The learned optimizer's method (e.g. rnnprop).</param>
/// <param name="LearnedOptions">Its architecture options, as a checkpoint stores them.</param>
/// <param name="DType">The meta-parameters' dtype (float32 or float64).</param>
/// <param name="DataDir">The tasks' data folder on the silo's machine (null: the embedded data).</param>
/// <param name="OptionsJson">The run's <see cref="MetaTrainOptions"/> as options.json holds them.</param>
/// <param name="Engine">Run on the fused engine with this vector width; null: the reference.</param>
[GenerateSerializer, Immutable]
public sealed record RunSpec(
    [property: Id(0)] string RunId,
    [property: Id(1)] string Method,
    [property: Id(2)] Dictionary<string, string> LearnedOptions,
    [property: Id(3)] string DType,
    [property: Id(4)] string? DataDir,
    [property: Id(5)] string OptionsJson,
    [property: Id(6)] SimdWidth? Engine,
    [property: Id(7)] int BlockRows);

/// <summary>One request to a <see cref="ITrajectoryGrain"/>.</summary>
/// <param name="Spec">Present: start the trajectory afresh and replay rounds 0 … Round−1 first; absent: continue it.</param>
/// <param name="Seed">The trajectory's seed (<see cref="MetaTrainer.TrajectorySeed"/>).</param>
/// <param name="Round">The round to run and reply for (0-based within the iteration).</param>
/// <param name="Thetas">Θ, flat, as raw bytes of its dtype: with a spec, Θ of rounds 0 … Round (round 0's also starts the trajectory); without, Θ of Round only.</param>
/// <param name="Steps">Steps of each round in <paramref name="Thetas"/>.</param>
/// <param name="Kind">The meta-loss.</param>
[GenerateSerializer, Immutable]
public sealed record SlotRequest(
    [property: Id(0)] RunSpec? Spec,
    [property: Id(1)] long Seed,
    [property: Id(2)] int Round,
    [property: Id(3)] byte[][] Thetas,
    [property: Id(4)] int[] Steps,
    [property: Id(5)] MetaLoss Kind);

/// <summary>What a trajectory grain replies: one unroll's results, or that it does not hold the trajectory.</summary>
/// <param name="Missing">The grain does not hold the trajectory at the requested round: the learner replays it.</param>
/// <param name="MetaGradient">∂meta-loss/∂Θ as raw bytes of Θ's dtype; null when the unroll diverged.</param>
/// <param name="Silo">The silo that ran it (for the learner's log of where slots ran).</param>
/// <param name="Error">The silo could not run it (e.g. a task it cannot build): the learner stops with this message rather than retrying.</param>
[GenerateSerializer, Immutable]
public sealed record SlotReply(
    [property: Id(0)] bool Missing,
    [property: Id(1)] double MetaLoss,
    [property: Id(2)] double[] Losses,
    [property: Id(3)] byte[]? MetaGradient,
    [property: Id(4)] double Loss,
    [property: Id(5)] double ParameterNorm,
    [property: Id(6)] string Silo,
    [property: Id(7)] string? Error = null)
{
    public static SlotReply NotHeld(string silo) => new(true, double.NaN, [], null, double.NaN, double.NaN, silo);
}

/// <summary>Keys of trajectory grains: <c>run/iteration/slot</c>. A new key per iteration lets every iteration's trajectories be placed on the silos present then.</summary>
public static class TrajectoryKey
{
    public static string Of(string runId, int iteration, int slot) => $"{runId}/{iteration}/{slot}";

    /// <summary>The slot of a key made by <see cref="Of"/> (placement spreads slots over the silos by it).</summary>
    public static int SlotOf(string key) => int.TryParse(key.AsSpan(key.LastIndexOf('/') + 1), out int slot) ? slot : 0;

    /// <summary>The run id of a key made by <see cref="Of"/>.</summary>
    public static string RunOf(string key) => key[..key.IndexOf('/')];
}
