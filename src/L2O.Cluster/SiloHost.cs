using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using StackExchange.Redis;

namespace L2O.Cluster;

/// <summary>A worker silo: hosts <see cref="ITrajectoryGrain"/>s for any learner of its cluster until cancelled.</summary>
public static class SiloHost
{
    /// <summary>
    /// Starts the silo, calls <paramref name="started"/> with a one-line description once it has
    /// joined the cluster, and runs until <paramref name="cancel"/>.
    /// </summary>
    /// <exception cref="L2OException">Bad settings, a port in use, or the cluster (Redis, the primary silo) cannot be reached.</exception>
    public static async Task RunAsync(SiloSettings settings, Action<string> started, CancellationToken cancel)
    {
        settings.Validate();
        using var certificate = settings.TlsCertificate is string cert ? ClusterTls.Load(cert) : null;
        var address = settings.Address ?? IPAddress.Loopback;
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        // Quiet until the silo has joined: a failed start is reported as one line (below), not as Orleans' stack traces.
        // Then warnings, except start-up notes about server GC and a watchdog's first check.
        var logLevel = LogLevel.None;
        builder.Logging.AddFilter((category, level) => level >= logLevel &&
            !(level < LogLevel.Error && category is "Orleans.Runtime.Silo" or "Orleans.Runtime.Watchdog"));
        string name = $"{address}:{settings.Port}";
        var workers = new SiloWorkers(settings.Threads, name);
        builder.UseOrleans(silo =>
        {
            if (settings.Redis is HostPort redis) silo.UseRedisClustering(o => o.ConfigurationOptions = RedisOptions(redis));
            else silo.UseDevelopmentClustering((settings.Primary ?? new HostPort("127.0.0.1", ClusterDefaults.SiloPort)).Resolve("--primary"));
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = settings.ClusterId;
                o.ServiceId = ClusterDefaults.ServiceId;
            });
            silo.Configure<EndpointOptions>(o =>
            {
                o.AdvertisedIPAddress = address;
                o.SiloPort = settings.Port;
                o.GatewayPort = settings.GatewayPort;
                o.SiloListeningEndpoint = new IPEndPoint(address, settings.Port);
                o.GatewayListeningEndpoint = new IPEndPoint(address, settings.GatewayPort);
            });
            if (certificate is not null) silo.UseTls(o => ClusterTls.Configure(o, certificate));
            ConfigureFailureDetection(silo.Services);
            silo.Services.AddSingleton(workers);
            silo.AddPlacementDirector<SlotPlacement, SlotPlacementDirector>();
        });
        using var host = builder.Build();
        try
        {
            await host.StartAsync(cancel);
        }
        catch (Exception e) when (e is not OperationCanceledException and not L2OException)
        {
            workers.Dispose();
            throw new L2OException($"silo {name} could not start: {OneLine(e, settings.Redis)}");
        }
        logLevel = LogLevel.Warning;
        started($"silo {name} (gateway {address}:{settings.GatewayPort}) joined cluster '{settings.ClusterId}' " +
                $"({(settings.Redis is HostPort r ? $"Redis {r}" : $"primary {settings.Primary?.ToString() ?? $"127.0.0.1:{ClusterDefaults.SiloPort}"}")}), " +
                $"{workers.Threads} trajector{(workers.Threads == 1 ? "y" : "ies")} at a time, {(certificate is null ? "plain TCP" : "TLS")}; Ctrl-C stops it");
        try
        {
            await Task.Delay(Timeout.Infinite, cancel);
        }
        catch (OperationCanceledException)
        {
        }
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await host.StopAsync(stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        workers.Dispose();
    }

    /// <summary>
    /// Failure detection tuned for a small cluster: a silo that stops answering is declared dead after
    /// about two missed 2-second probes, by one vote (Orleans' defaults, 3 probes of 5 s and 2 votes,
    /// suit large clusters; here a dead silo holds up a whole meta-iteration).
    /// </summary>
    private static void ConfigureFailureDetection(IServiceCollection services) =>
        services.Configure<ClusterMembershipOptions>(o =>
        {
            o.ProbeTimeout = TimeSpan.FromSeconds(2);
            o.NumMissedProbesLimit = 2;
            o.NumVotesForDeathDeclaration = 1;
            o.TableRefreshTimeout = TimeSpan.FromSeconds(2);
        });

    internal static ConfigurationOptions RedisOptions(HostPort redis)
    {
        var options = new ConfigurationOptions { AbortOnConnectFail = true, ConnectTimeout = 5000 };
        options.EndPoints.Add(redis.Host, redis.Port);
        return options;
    }

    /// <summary>An exception as one line; an unreachable <paramref name="redis"/> is said so plainly.</summary>
    internal static string OneLine(Exception e, HostPort? redis = null)
    {
        for (var x = e; x is not null; x = x.InnerException)
            if (x is RedisConnectionException) return $"Redis at {redis?.ToString() ?? "the given address"} is not reachable";
        var inner = e;
        while (inner.InnerException is not null && inner is AggregateException or OrleansException) inner = inner.InnerException;
        return inner.Message.ReplaceLineEndings(" ");
    }
}
