using L2O.Engine;
using L2O.Learned;
using L2O.Tasks;

namespace L2O.Training;

/// <summary>Where trajectory <paramref name="Slot"/> of a meta-batch starts: its seed (<see cref="MetaTrainer.TrajectorySeed"/>) and length T.</summary>
public readonly record struct SlotPlan(int Slot, long Seed, int Length);

/// <summary>One slot's work in a round of unrolls: <paramref name="Steps"/> optimizee steps (the rest of the trajectory when shorter than U).</summary>
public readonly record struct SlotWork(int Slot, int Steps);

/// <summary>What one unroll of one slot gives the trainer.</summary>
/// <param name="Outcome">The meta-loss, losses and meta-gradient (owned by the caller, which disposes it).</param>
/// <param name="Loss">The trajectory's training loss after the unroll.</param>
/// <param name="ParameterNorm">‖w‖₂ after the unroll (for --reset-on-extremes).</param>
public sealed record SlotUnroll(UnrollOutcome Outcome, double Loss, double ParameterNorm);

/// <summary>
/// Runs the trajectories of a meta-batch for a <see cref="MetaTrainer"/>, which owns Θ, the
/// meta-optimizer, the log and the checkpoints. Every unroll runs at Θ as it is when
/// <see cref="Unroll"/> is called (the trainer's <see cref="SlotRunnerContext.Learned"/>);
/// the trainer adds the returned meta-gradients in slot order, so Θ depends only on what each slot
/// computes, never on where it ran. Implemented by the in-process workers and by the Orleans
/// cluster client (L2O.Cluster).
/// </summary>
public interface ISlotRunner : IDisposable
{
    /// <summary>What runs the unrolls, e.g. <c>engine (avx512, 2 workers × 1 thread)</c>.</summary>
    string Describe();

    /// <summary>Starts the trajectories of meta-iteration <paramref name="iteration"/> (0-based) at the current Θ, one per plan, in slot order.</summary>
    void Start(int iteration, IReadOnlyList<SlotPlan> plans);

    /// <summary>
    /// One round: the given slots (ascending; slots whose trajectory ended are left out) each run
    /// one unroll at the current Θ. Returns one result per item of <paramref name="work"/>, in its order.
    /// </summary>
    IReadOnlyList<SlotUnroll> Unroll(IReadOnlyList<SlotWork> work, MetaLoss kind);

    /// <summary>Ends the iteration: its trajectories are released.</summary>
    void End();
}

/// <summary>What a trainer gives an <see cref="ISlotRunner"/> factory.</summary>
/// <param name="Learned">Θ: the trainer's own optimizer, updated in place after every round.</param>
/// <param name="Options">The run's options (tasks, tricks, unroll, meta-batch: everything a remote worker needs to draw the same trajectories).</param>
/// <param name="Context">Device, dtype and data folder of the tasks.</param>
/// <param name="Engine">The trainer's engine options with the vector width resolved; null when the reference runs the unrolls.</param>
public sealed record SlotRunnerContext(LearnedOptimizer Learned, MetaTrainOptions Options, TaskContext Context, EngineOptions? Engine);

/// <summary>The in-process runner: <see cref="MetaWorkers"/> (slot b on worker b mod N), each trajectory held in its worker's engine.</summary>
internal sealed class LocalSlotRunner(MetaWorkers workers, Func<long, IOptimizee> sample) : ISlotRunner
{
    private IMetaTrajectory?[] _trajectories = [];

    public string Describe() => workers.Describe();

    public void Start(int iteration, IReadOnlyList<SlotPlan> plans)
    {
        End();
        _trajectories = new IMetaTrajectory?[plans.Count];
        var optimizees = new IOptimizee?[plans.Count];
        try
        {
            // Drawn in slot order on this thread; each draw depends only on its seed.
            for (int b = 0; b < plans.Count; b++) optimizees[b] = sample(plans[b].Seed);
            workers.ForEachSlot(plans.Count, (b, worker) =>
            {
                _trajectories[b] = MetaTrajectories.Start(worker.Learned, optimizees[b]!, worker.Engine);
                optimizees[b] = null;   // the trajectory owns it now
            });
        }
        finally
        {
            foreach (var f in optimizees) f?.Dispose();
        }
    }

    public IReadOnlyList<SlotUnroll> Unroll(IReadOnlyList<SlotWork> work, MetaLoss kind)
    {
        var steps = new int[_trajectories.Length];
        foreach (var w in work) steps[w.Slot] = w.Steps;
        var results = new SlotUnroll?[_trajectories.Length];
        // Over every slot, so that slot b stays on worker b mod N; slots without work return at once.
        workers.ForEachSlot(_trajectories.Length, (b, _) =>
        {
            if (steps[b] == 0) return;
            var t = _trajectories[b]!;
            var outcome = t.Unroll(steps[b], kind);
            double norm = double.NaN;
            if (outcome.Finite)
            {
                using var scope = TorchSharp.torch.NewDisposeScope();   // the engine's norm is a temporary tensor
                norm = t.ParameterNorm;
            }
            results[b] = new SlotUnroll(outcome, t.Loss, norm);
        });
        return work.Select(w => results[w.Slot]!).ToList();
    }

    public void End()
    {
        foreach (var t in _trajectories) t?.Dispose();
        _trajectories = [];
    }

    public void Dispose()
    {
        End();
        workers.Dispose();
    }
}
