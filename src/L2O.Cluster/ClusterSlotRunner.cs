using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Runtime;
using L2O.Optimizers;
using L2O.Learned;
using L2O.Training;
using TorchSharp;

namespace L2O.Cluster;

/// <summary>The learner's connection to a cluster of worker silos (an Orleans client).</summary>
public sealed class ClusterConnection : IDisposable
{
    private readonly IHost _host;
    private readonly System.Security.Cryptography.X509Certificates.X509Certificate2? _certificate;

    private ClusterConnection(IHost host, ClusterClientSettings settings, System.Security.Cryptography.X509Certificates.X509Certificate2? certificate)
    {
        _host = host;
        _certificate = certificate;
        Settings = settings;
        Client = host.Services.GetRequiredService<IClusterClient>();
    }

    public ClusterClientSettings Settings { get; }
    public IClusterClient Client { get; }

    /// <summary>Connects, retrying until <see cref="ClusterClientSettings.Timeout"/>.</summary>
    /// <exception cref="L2OException">No silo of the cluster could be reached in time.</exception>
    public static ClusterConnection Connect(ClusterClientSettings settings, CancellationToken cancel = default)
    {
        settings.Validate();
        var deadline = Stopwatch.StartNew();
        Exception? last = null;
        var certificate = settings.TlsCertificate is string cert ? ClusterTls.Load(cert) : null;
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();   // the learner's console is its progress; failures surface as its own errors
        builder.UseOrleansClient(client =>
        {
            if (settings.Redis is HostPort redis) client.UseRedisClustering(o => o.ConfigurationOptions = SiloHost.RedisOptions(redis));
            else client.UseStaticClustering(settings.Gateways.Select(g => g.Resolve("--gateway")).ToArray());
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = settings.ClusterId;
                o.ServiceId = ClusterDefaults.ServiceId;
            });
            client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = settings.CallTimeout);
            if (certificate is not null) client.UseTls(o => ClusterTls.Configure(o, certificate));
            client.UseConnectionRetryFilter(async (e, token) =>
            {
                last = e;
                if (deadline.Elapsed >= settings.Timeout) return false;
                await Task.Delay(250, token);
                return true;
            });
        });
        var host = builder.Build();
        try
        {
            host.StartAsync(cancel).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            host.Dispose();
            certificate?.Dispose();
            string where = settings.Redis is HostPort r ? $"via Redis {r}" : $"at {string.Join(", ", settings.Gateways)}";
            throw new L2OException($"no silo of cluster '{settings.ClusterId}' reachable {where} within {settings.Timeout.TotalSeconds:0.#} s " +
                                   $"({SiloHost.OneLine(last ?? e, settings.Redis)}); start one with: l2o cluster silo{(settings.Redis is HostPort rr ? $" --redis {rr}" : "")}" +
                                   (certificate is null ? " (a cluster with TLS needs --tls-cert)" : " (with TLS, silos and learner need the same --tls-cert)"));
        }
        return new ClusterConnection(host, settings, certificate);
    }

    /// <summary>The silos that are active now.</summary>
    public int ActiveSilos() => ActiveSiloEndpointsAsync().GetAwaiter().GetResult().Count;

    /// <summary>The endpoints (HOST:PORT, as a <see cref="SlotReply.Silo"/> names them) of the silos the cluster holds active now.</summary>
    public async Task<HashSet<string>> ActiveSiloEndpointsAsync()
    {
        var hosts = await Client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
        return hosts.Keys.Select(a => a.Endpoint.ToString()).ToHashSet();
    }

    private readonly SemaphoreSlim _aliveGate = new(1, 1);
    private HashSet<string> _alive = [];
    private long _aliveAt;   // 0: never asked

    /// <summary>
    /// The grain call, abandoned as soon as the silo it runs on (when known from an earlier reply;
    /// else any silo that was active when it began) has left the cluster. Orleans answers a call
    /// to a silo that was killed only at the response timeout, which must be long enough for a slow
    /// unroll; membership declares a dead silo within seconds.
    /// </summary>
    internal async Task<T> CallWatchingSilos<T>(Func<Task<T>> start, string? silo)
    {
        var before = await AliveSilos();
        var call = start();
        while (await Task.WhenAny(call, Task.Delay(1000)) != call)
        {
            var alive = await AliveSilos();
            string? gone = silo is not null ? (alive.Contains(silo) ? null : silo) : before.FirstOrDefault(s => !alive.Contains(s));
            if (gone is not null)
            {
                _ = call.ContinueWith(t => t.Exception, TaskContinuationOptions.OnlyOnFaulted);   // its failure, when it comes, is expected
                throw new SiloLostException($"silo {gone} left the cluster");
            }
        }
        return await call;
    }

    /// <summary>The active silos, asked of the cluster at most once a second whatever the number of slots waiting.</summary>
    private async Task<HashSet<string>> AliveSilos()
    {
        await _aliveGate.WaitAsync();
        try
        {
            if (Stopwatch.GetElapsedTime(_aliveAt) > TimeSpan.FromSeconds(1))
            {
                try
                {
                    _alive = await ActiveSiloEndpointsAsync();
                }
                catch (Exception e) when (e is not L2OException)
                {
                    // Membership could not be read just now (its gateway may be the silo that died): keep the last view.
                }
                _aliveAt = Stopwatch.GetTimestamp();
            }
            return _alive;
        }
        finally
        {
            _aliveGate.Release();
        }
    }


    public void Dispose()
    {
        _aliveGate.Dispose();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            _host.StopAsync(stop.Token).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OperationCanceledException or OrleansException or TimeoutException)
        {
            // A cluster that is gone cannot be told goodbye.
        }
        _host.Dispose();
        _certificate?.Dispose();
    }
}

/// <summary>A call abandoned because the silo it ran on left the cluster (the caller runs its work again elsewhere).</summary>
internal sealed class SiloLostException(string message) : Exception(message);

/// <summary>
/// Runs a meta-batch's trajectories on a cluster: slot b of iteration i is the grain
/// <see cref="TrajectoryKey.Of"/>(run, i, b) on some worker silo, which keeps the trajectory between
/// unrolls. Each round sends every active slot's grain the current Θ and gets back its
/// meta-gradient; the trainer adds them in slot order, so Θ is the in-process run's, bit for bit.
/// </summary>
/// <remarks>
/// Faults: a call that fails (its silo died, timed out, or the grain no longer holds the
/// trajectory) is re-run from the start of the trajectory: the grain is sent Θ of every round of
/// the iteration so far (this runner keeps them, one flat copy per round) and replays them before
/// the current one. Nothing of the trainer's state changes until every slot of the round has
/// answered, so no meta-update is applied twice or lost.
/// </remarks>
public sealed class ClusterSlotRunner : ISlotRunner
{
    private readonly ClusterConnection _connection;
    private readonly SlotRunnerContext _context;
    private readonly RunSpec _spec;
    private readonly List<byte[]> _thetas = [];
    private int _iteration;
    private SlotPlan[] _plans = [];
    private List<int>[] _steps = [];
    private string?[] _silos = [];
    private long _replays;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _bySilo = new();

    public ClusterSlotRunner(ClusterConnection connection, SlotRunnerContext context)
    {
        if (context.Learned.Context.Device.type != DeviceType.CPU)
            throw new L2OException("--cluster runs the trajectories on the silos' CPUs; leave --device out (or use cpu)");
        _connection = connection;
        _context = context;
        RunId = Guid.NewGuid().ToString("N")[..16];
        _spec = new RunSpec(RunId, context.Learned.Method, context.Learned.StoredOptions(), context.Learned.Context.DType.ToString(),
            context.Context.DataDir, MetaTrainer.OptionsToJson(context.Options), context.Engine?.Width, context.Engine?.BlockRows ?? 128);
    }

    /// <summary>Identifies this learner's grains (a fresh id per process, so a resumed run never meets an old run's trajectories).</summary>
    public string RunId { get; }

    /// <summary>Slot unrolls that had to be re-run from the start of their trajectory (a silo failed, or lost the trajectory).</summary>
    public long Replays => Interlocked.Read(ref _replays);

    /// <summary>Unrolls answered so far, by the silo (HOST:PORT) that ran them, ordered by silo.</summary>
    public IReadOnlyList<(string Silo, long Unrolls)> UnrollsBySilo => [.. _bySilo.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value))];

    public string Describe()
    {
        int silos = _connection.ActiveSilos();
        string compute = _context.Engine is { } e ? $"engine ({e.Width.ToString().ToLowerInvariant()})" : "reference (TorchSharp)";
        return $"cluster '{_connection.Settings.ClusterId}' ({silos} silo{(silos == 1 ? "" : "s")} now, {compute}, one thread per trajectory)";
    }

    public void Start(int iteration, IReadOnlyList<SlotPlan> plans)
    {
        _iteration = iteration;
        _plans = [.. plans];
        _thetas.Clear();
        _steps = plans.Select(_ => new List<int>()).ToArray();
        _silos = new string?[plans.Count];
    }

    public IReadOnlyList<SlotUnroll> Unroll(IReadOnlyList<SlotWork> work, MetaLoss kind)
    {
        _thetas.Add(ThetaCodec.Capture(_context.Learned));
        int round = _thetas.Count - 1;
        foreach (var w in work)
        {
            if (_steps[w.Slot].Count != round) throw new InvalidOperationException($"slot {w.Slot} skipped a round: trajectories run their rounds without gaps");
            _steps[w.Slot].Add(w.Steps);
        }
        var replies = Task.WhenAll(work.Select(w => RunSlot(w.Slot, round, kind))).GetAwaiter().GetResult();
        var dtype = _context.Learned.Context.DType;
        var device = _context.Learned.Context.Device;
        return replies.Select(r => new SlotUnroll(
            new UnrollOutcome(r.MetaLoss, r.Losses, r.MetaGradient is null ? null : ThetaCodec.FromBytes(r.MetaGradient, dtype, device)),
            r.Loss, r.ParameterNorm)).ToList();
    }

    private async Task<SlotReply> RunSlot(int slot, int round, MetaLoss kind)
    {
        var grain = _connection.Client.GetGrain<ITrajectoryGrain>(TrajectoryKey.Of(RunId, _iteration, slot));
        bool replay = round == 0;
        Stopwatch? failing = null;
        Exception? last = null;
        while (true)
        {
            var request = replay
                ? new SlotRequest(_spec, _plans[slot].Seed, round, [.. _thetas], [.. _steps[slot]], kind)
                : new SlotRequest(null, _plans[slot].Seed, round, [_thetas[round]], [_steps[slot][round]], kind);
            try
            {
                var reply = await _connection.CallWatchingSilos(() => grain.Unroll(request), _silos[slot]);
                _silos[slot] = reply.Silo;
                if (reply.Error is string error) throw new L2OException($"silo {reply.Silo}, slot {slot} of iteration {_iteration + 1}: {error}");
                if (!reply.Missing)
                {
                    _bySilo.AddOrUpdate(reply.Silo, 1, (_, n) => n + 1);
                    return reply;
                }
                last = new InvalidOperationException($"silo {reply.Silo} no longer held the trajectory");
            }
            catch (Exception e) when (e is not L2OException)
            {
                last = e;
            }
            // Its silo died, timed out or lost it: run the trajectory again from its start, on whichever silo takes the grain now.
            Interlocked.Increment(ref _replays);
            replay = true;
            failing ??= Stopwatch.StartNew();
            if (failing.Elapsed > _connection.Settings.Timeout)
                throw new L2OException($"slot {slot} of iteration {_iteration + 1}: no silo of cluster '{_connection.Settings.ClusterId}' ran it within " +
                                       $"{_connection.Settings.Timeout.TotalSeconds:0.#} s ({SiloHost.OneLine(last!)}); resume with --resume once silos are up");
            await Task.Delay(200);
        }
    }

    public void End()
    {
        if (_plans.Length == 0) return;
        // Frees the silos' memory now rather than at grain collection; a silo that is gone frees nothing and does not matter.
        var releases = _plans.Select(p => _connection.Client.GetGrain<ITrajectoryGrain>(TrajectoryKey.Of(RunId, _iteration, p.Slot)).Release());
        try
        {
            Task.WhenAll(releases).Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        _plans = [];
        _thetas.Clear();
    }

    public void Dispose() => End();
}
