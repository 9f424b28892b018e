using System.Globalization;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;
using L2O.Training;
using TorchSharp;

namespace L2O.Cluster;

/// <summary>
/// A silo's compute for the runs it serves: per run, <see cref="SiloWorkers.Threads"/> workers, each
/// an optimizer of the run's architecture (Θ is written into it before every unroll) with its own
/// one-thread engine, used by one trajectory at a time, exactly like the learner's in-process
/// workers; and the run's training distribution, from which trajectories are drawn by seed.
/// </summary>
internal sealed class SiloWorkers(int threads, string name) : IDisposable
{
    private readonly Dictionary<string, RunWorkers> _runs = [];
    private static readonly TimeSpan IdleRelease = TimeSpan.FromMinutes(2);

    /// <summary>Workers per run (trajectories that compute at the same time on this silo).</summary>
    public int Threads { get; } = Math.Max(1, threads);

    /// <summary>How replies name this silo (its address).</summary>
    public string Name { get; } = name;

    /// <summary>The run's workers, made on first use; the caller releases them with <see cref="Release"/>.</summary>
    public RunWorkers Acquire(RunSpec spec)
    {
        lock (_runs)
        {
            // Runs whose trajectories are all gone and that have been idle a while give their memory back.
            foreach (var (id, idle) in _runs.Where(r => r.Value.Users == 0 && DateTime.UtcNow - r.Value.LastUsed > IdleRelease).ToList())
            {
                idle.Dispose();
                _runs.Remove(id);
            }
            if (!_runs.TryGetValue(spec.RunId, out var run))
            {
                run = new RunWorkers(spec, Threads);   // throws before anything is registered
                _runs[spec.RunId] = run;
            }
            run.Users++;
            return run;
        }
    }

    public void Release(RunWorkers run)
    {
        lock (_runs)
        {
            run.Users--;
            run.LastUsed = DateTime.UtcNow;
        }
    }

    public void Dispose()
    {
        lock (_runs)
        {
            foreach (var run in _runs.Values) run.Dispose();
            _runs.Clear();
        }
    }
}

/// <summary>One run's workers on one silo (see <see cref="SiloWorkers"/>).</summary>
internal sealed class RunWorkers : IDisposable
{
    private readonly TrainingTask _training;
    private readonly object _sampling = new();
    private readonly Worker[] _workers;

    /// <summary>One optimizer and engine; <see cref="Gate"/> admits one trajectory's unroll at a time.</summary>
    internal sealed class Worker(LearnedOptimizer learned, FusedEngine? engine) : IDisposable
    {
        public LearnedOptimizer Learned { get; } = learned;
        public FusedEngine? Engine { get; } = engine;
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public int Trajectories;

        public void Dispose()
        {
            Learned.Dispose();
            Gate.Dispose();
        }
    }

    public RunWorkers(RunSpec spec, int threads)
    {
        var dtype = spec.DType switch
        {
            "Float32" => torch.ScalarType.Float32,
            "Float64" => torch.ScalarType.Float64,
            _ => throw new L2OException($"--cluster runs float32 or float64 meta-parameters, not {spec.DType}"),
        };
        var context = new TaskContext(torch.CPU, dtype, spec.DataDir);
        Options = MetaTrainer.OptionsFromJson(spec.OptionsJson);
        _training = MetaTrainer.CreateTrainingTask(Options, context);
        var method = LearnedRegistry.Find(spec.Method);
        var build = new BuildContext(torch.CPU, dtype);
        _workers = new Worker[threads];
        try
        {
            for (int i = 0; i < threads; i++)
            {
                var learned = method.Create(OptionsBinder.Bind(method.OptionsType, method.Name, new Dictionary<string, string>(spec.LearnedOptions)), build);
                // One engine thread per worker: the silo's parallelism is its workers, as with the learner's in-process workers.
                var engine = spec.Engine is SimdWidth width
                    ? Backends.CreateEngine(learned, Backend.Engine, new EngineOptions { Width = width, Threads = 1, BlockRows = spec.BlockRows })
                    : null;
                _workers[i] = new Worker(learned, engine);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        LastUsed = DateTime.UtcNow;
    }

    public MetaTrainOptions Options { get; }
    public int Users { get; set; }
    public DateTime LastUsed { get; set; }

    /// <summary>The trajectory seeded by <paramref name="seed"/>, as the learner's trainer would draw it.</summary>
    public IOptimizee Sample(long seed)
    {
        lock (_sampling) return _training.Sample(seed);   // tasks are not known to be thread-safe; draws are cheap
    }

    /// <summary>The worker with the fewest trajectories (ties: the first), for a new trajectory.</summary>
    public Worker Assign()
    {
        lock (_workers)
        {
            var w = _workers.OrderBy(x => x.Trajectories).First();
            w.Trajectories++;
            return w;
        }
    }

    public void Unassign(Worker worker)
    {
        lock (_workers) worker.Trajectories--;
    }

    public void Dispose()
    {
        foreach (var w in _workers) w?.Dispose();
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{_workers.Length} workers");
}
