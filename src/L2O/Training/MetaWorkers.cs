using System.Runtime.ExceptionServices;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using TorchSharp;

namespace L2O.Training;

/// <summary>
/// The in-process workers that run the trajectories of a meta-batch (<see cref="MetaTrainOptions.Workers"/>).
/// Slot b always runs on worker b mod N, and each worker runs its slots in slot order, so which
/// worker holds a trajectory is fixed for its whole life (its state lives in that worker's engine).
/// </summary>
/// <remarks>
/// One worker runs on the calling thread with the trainer's own optimizer and engine. With N &gt; 1,
/// every worker has its own copy of Θ (autograd accumulates into a parameter's gradient, so threads
/// must not backpropagate into shared parameters; the copies are refreshed from Θ before every
/// round) and its own engine with ⌊threads / N⌋ threads (at least 1), and runs on a thread-pool
/// thread with one libtorch thread and gradients enabled (both are per-thread settings in libtorch).
/// TorchSharp's dispose scopes are per thread as well, so each worker's temporaries stay in its own scopes.
/// </remarks>
internal sealed class MetaWorkers : IDisposable
{
    private readonly LearnedOptimizer _learned;
    private readonly Worker[] _workers;

    /// <summary>What one worker computes with: its optimizer (Θ or a copy) and its engine (null: the reference).</summary>
    internal sealed record Worker(LearnedOptimizer Learned, FusedEngine? Engine);

    public MetaWorkers(LearnedOptimizer learned, FusedEngine? engine, int workers)
    {
        _learned = learned;
        if (workers == 1)
        {
            _workers = [new Worker(learned, engine)];
            return;
        }
        _workers = new Worker[workers];
        try
        {
            for (int i = 0; i < workers; i++)
            {
                var replica = LearnedRegistry.Replicate(learned);
                _workers[i] = new Worker(replica, engine is null ? null
                    : Backends.CreateEngine(replica, Backend.Engine, engine.Options with { Threads = ThreadsPerWorker(engine.Options.ResolvedThreads, workers) }));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Count => _workers.Length;

    /// <summary>Engine threads each of <paramref name="workers"/> workers gets out of <paramref name="threads"/>: ⌊threads / workers⌋, at least 1.</summary>
    public static int ThreadsPerWorker(int threads, int workers) => Math.Max(1, threads / workers);

    /// <summary>
    /// Calls <paramref name="work"/>(b, worker of b) for every slot b in [0, <paramref name="slots"/>),
    /// the workers in parallel, each on its slots in ascending order; returns when all are done.
    /// <paramref name="work"/> must touch only slot b's own data.
    /// </summary>
    public void ForEachSlot(int slots, Action<int, Worker> work)
    {
        if (_workers.Length == 1)
        {
            for (int b = 0; b < slots; b++) work(b, _workers[0]);
            return;
        }
        foreach (var w in _workers) w.Learned.CopyValuesFrom(_learned);
        try
        {
            Parallel.For(0, _workers.Length, new ParallelOptions { MaxDegreeOfParallelism = _workers.Length }, i =>
            {
                using var threads = new TorchThreads(1);
                using var grad = torch.enable_grad();
                for (int b = i; b < slots; b += _workers.Length) work(b, _workers[i]);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();   // the CLI reports an L2OException as one line
        }
    }

    /// <summary>What runs the unrolls, e.g. <c>engine (avx512, 2 workers × 1 thread)</c>.</summary>
    public string Describe()
    {
        if (_workers.Length == 1) return Backends.Describe(_workers[0].Engine);
        var engine = _workers[0].Engine;
        return engine is null ? $"reference (TorchSharp, {_workers.Length} workers)"
            : $"engine ({Backends.WidthName(engine)}, {_workers.Length} workers × {engine.Options.ResolvedThreads} thread{(engine.Options.ResolvedThreads == 1 ? "" : "s")})";
    }

    /// <summary>Releases the copies of Θ (the trainer's own optimizer and engine are not this object's).</summary>
    public void Dispose()
    {
        if (_workers.Length == 1 && ReferenceEquals(_workers[0]?.Learned, _learned)) return;
        foreach (var w in _workers) w?.Learned.Dispose();
    }
}

/// <summary>
/// Sets libtorch's intra-op threads to a count until disposed, then restores the previous one. Under
/// libtorch's OpenMP build the count belongs to the calling thread (a new thread starts from the
/// last count set anywhere), so each worker thread sets its own.
/// </summary>
internal readonly struct TorchThreads : IDisposable
{
    private readonly int _previous;

    public TorchThreads(int threads)
    {
        _previous = torch.get_num_threads();
        torch.set_num_threads(threads);
    }

    public void Dispose()
    {
        if (_previous > 0) torch.set_num_threads(_previous);
    }
}
