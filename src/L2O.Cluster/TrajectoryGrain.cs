using L2O.Engine;
using L2O.Learned;
using L2O.Training;
using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Cluster;

/// <summary>
/// Holds one trajectory (its optimizee, parameters and optimizer state) between unrolls and runs
/// its unrolls on one of the silo's workers with the same code as the learner's in-process
/// workers: <see cref="MetaTrajectories.Start"/>, then <see cref="IMetaTrajectory.Unroll"/>, each
/// on one libtorch thread with gradients on. Nothing of it is persisted: a lost activation is
/// rebuilt by the learner's replay (<see cref="SlotRequest.Spec"/>).
/// </summary>
[SlotPlacement]
[CollectionAgeLimit(Minutes = 10)]   // rounds of one iteration follow each other closely; a learner that died leaves nothing behind for long
internal sealed class TrajectoryGrain(SiloWorkers silo) : Grain, ITrajectoryGrain
{
    private RunWorkers? _run;
    private RunWorkers.Worker? _worker;
    private IMetaTrajectory? _trajectory;
    private int _round;

    public async Task<SlotReply> Unroll(SlotRequest request)
    {
        if (request.Spec is null && (_trajectory is null || _round != request.Round)) return SlotReply.NotHeld(silo.Name);
        try
        {
            if (request.Spec is not null && _run is null)
            {
                _run = silo.Acquire(request.Spec);   // may refuse: an architecture, task or vector width this silo cannot run
                _worker = _run.Assign();
            }
        }
        catch (L2OException e)
        {
            return Refused(e);
        }
        await _worker!.Gate.WaitAsync();
        try
        {
            // Synchronous from here: libtorch's thread count and grad mode are per thread.
            return Compute(request);
        }
        catch (L2OException e)
        {
            _trajectory?.Dispose();
            _trajectory = null;
            return Refused(e);
        }
        finally
        {
            _worker.Gate.Release();
        }
    }

    private SlotReply Refused(L2OException e) => SlotReply.NotHeld(silo.Name) with { Missing = false, Error = e.Message };

    private SlotReply Compute(SlotRequest request)
    {
        using var threads = new TorchThreads(1);
        using var grad = enable_grad();
        var worker = _worker!;
        if (request.Spec is not null)
        {
            // (Re)start from the first step and replay the earlier rounds with the Θ each of them used.
            _trajectory?.Dispose();
            _trajectory = null;
            ThetaCodec.Load(worker.Learned, request.Thetas[0]);
            var optimizee = _run!.Sample(request.Seed);
            try
            {
                _trajectory = MetaTrajectories.Start(worker.Learned, optimizee, worker.Engine);
            }
            catch
            {
                optimizee.Dispose();
                throw;
            }
            _round = 0;
            for (int i = 0; i < request.Round; i++)
            {
                ThetaCodec.Load(worker.Learned, request.Thetas[i]);
                using var replayed = _trajectory.Unroll(request.Steps[i], request.Kind);
                _round++;
            }
        }
        ThetaCodec.Load(worker.Learned, request.Thetas[^1]);
        using var outcome = _trajectory!.Unroll(request.Steps[^1], request.Kind);
        _round++;
        double norm = double.NaN;
        if (outcome.Finite)
        {
            using var scope = NewDisposeScope();   // the engine's norm is a temporary tensor
            norm = _trajectory.ParameterNorm;
        }
        return new SlotReply(false, outcome.MetaLoss, outcome.Losses, outcome.Finite ? ThetaCodec.ToBytes(outcome.MetaGradient!) : null,
            _trajectory.Loss, norm, silo.Name);
    }

    public Task Release()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _trajectory?.Dispose();
        _trajectory = null;
        if (_run is not null)
        {
            _run.Unassign(_worker!);
            silo.Release(_run);
            _run = null;
        }
        return Task.CompletedTask;
    }
}

/// <summary>
/// Places slot b of an iteration on the b mod n-th of the n compatible silos (ordered by address),
/// so a meta-batch is spread evenly and a silo that joined gets slots from the next iteration on.
/// </summary>
[GenerateSerializer, Immutable]
public sealed class SlotPlacement : PlacementStrategy;

/// <summary>Marks a grain class for <see cref="SlotPlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SlotPlacementAttribute() : PlacementAttribute(new SlotPlacement());

internal sealed class SlotPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var silos = context.GetCompatibleSilos(target).OrderBy(s => s.ToParsableString(), StringComparer.Ordinal).ToArray();
        if (silos.Length == 0) throw new OrleansException("no silo can host trajectory grains");
        int slot = TrajectoryKey.SlotOf(target.GrainIdentity.Key.ToString()!);
        return Task.FromResult(silos[slot % silos.Length]);
    }
}
