using System.CommandLine;
using System.Net;
using L2O.Cluster;

namespace L2O.Cli.Commands;

/// <summary><c>l2o cluster silo</c>: a worker silo for distributed meta-training (docs/distributed.md).</summary>
internal static class ClusterCommand
{
    public static Command Create()
    {
        var cmd = new Command("cluster", "Distributed meta-training on Microsoft Orleans: run worker silos that 'l2o meta-train --cluster' farms trajectories to");
        cmd.Add(Silo());
        return cmd;
    }

    /// <summary>Options shared with <c>meta-train --cluster</c>.</summary>
    public static Option<string?> RedisOption() => new("--redis") { Description = "HOST:PORT of the Redis that holds the cluster's membership (several machines); without it: one machine, development clustering" };

    public static Option<string?> TlsOption() => new("--tls-cert") { Description = "PKCS#12 (.pfx) file of the cluster's shared certificate: TLS between silos and learners, which must all give the same file (password: L2O_TLS_PASSWORD)" };

    public static Option<string> ClusterIdOption() => new("--cluster-id") { Description = "silos and learners with the same id form one cluster", DefaultValueFactory = _ => ClusterDefaults.ClusterId };

    /// <summary>The options a command that farms work to a cluster takes (<c>meta-train --cluster</c>, <c>eval --cluster</c>).</summary>
    internal sealed class ClientOptions
    {
        public Option<bool> Cluster { get; }
        public Option<string?> Redis { get; } = RedisOption();
        public Option<string> ClusterId { get; } = ClusterIdOption();
        public Option<string[]> Gateways { get; } = new("--gateway")
        {
            Description = $"with --cluster and no --redis: HOST:PORT of a silo's gateway, repeatable [default: 127.0.0.1:{ClusterDefaults.GatewayPort}]",
            Arity = ArgumentArity.OneOrMore,
            AllowMultipleArgumentsPerToken = true,
        };
        public Option<double> Timeout { get; } = new("--cluster-timeout") { Description = "seconds to wait for a silo: to connect, and to re-run work whose silo failed", DefaultValueFactory = _ => 30 };
        public Option<double> CallTimeout { get; } = new("--call-timeout") { Description = "seconds one call may take on a silo before it counts as failed and is re-run elsewhere", DefaultValueFactory = _ => 300 };
        public Option<string?> Tls { get; } = TlsOption();

        public ClientOptions(string clusterDescription) => Cluster = new Option<bool>("--cluster") { Description = clusterDescription };

        public IEnumerable<Option> All => [Cluster, Redis, ClusterId, Gateways, Timeout, CallTimeout, Tls];

        /// <summary>With --cluster, the connection (made before any output folder, so an unreachable cluster leaves nothing behind); else null.</summary>
        public ClusterConnection? Connect(ParseResult p, Func<Option, bool> given)
        {
            if (!p.GetValue(Cluster))
            {
                foreach (var o in All.Skip(1))
                    if (given(o)) throw new L2OException($"{o.Name} is for --cluster; add --cluster or leave it out");
                return null;
            }
            var r = p.GetValue(Redis);
            if (r is not null && given(Gateways)) throw new L2OException("--gateway is for a cluster without Redis; with --redis the learner finds the silos there");
            var settings = new ClusterClientSettings
            {
                Redis = r is null ? null : HostPort.Parse(r, "--redis"),
                ClusterId = p.GetValue(ClusterId)!,
                Gateways = given(Gateways) ? p.GetValue(Gateways)!.Select(g => HostPort.Parse(g, "--gateway")).ToList() : new ClusterClientSettings().Gateways,
                Timeout = Seconds(p.GetValue(Timeout), "--cluster-timeout"),
                CallTimeout = Seconds(p.GetValue(CallTimeout), "--call-timeout"),
                TlsCertificate = p.GetValue(Tls),
            };
            return ClusterConnection.Connect(settings, Cli.Cancellation.Token);
        }

        private static TimeSpan Seconds(double value, string option) =>
            value is > 0 and <= 86_400 ? TimeSpan.FromSeconds(value) : throw new L2OException($"{option} must be in (0, 86400] seconds (got {value.ToString(System.Globalization.CultureInfo.InvariantCulture)})");
    }

    private static Command Silo()
    {
        var redis = RedisOption();
        var clusterId = ClusterIdOption();
        var port = new Option<int>("--port") { Description = "silo-to-silo port", DefaultValueFactory = _ => ClusterDefaults.SiloPort };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "port learners connect to", DefaultValueFactory = _ => ClusterDefaults.GatewayPort };
        var address = new Option<string?>("--address") { Description = "IP address to listen on and advertise to the cluster [default: 127.0.0.1, this machine only]" };
        var primary = new Option<string?>("--primary") { Description = $"without --redis: HOST:PORT of the primary silo (the one whose --port it is) [default: 127.0.0.1:{ClusterDefaults.SiloPort}]" };
        var threads = new Option<int?>("--threads") { Description = "trajectories computed at once, each on one thread [default: all cores]" };
        var tls = TlsOption();
        var cmd = new Command("silo", "Run a worker silo until Ctrl-C: it holds trajectories of meta-batches between unrolls and computes their meta-gradients")
        {
            redis, clusterId, port, gatewayPort, address, primary, threads, tls,
        };
        Cli.Examples[cmd] = "  l2o cluster silo                                        # first silo on this machine (the primary)\n" +
                            "  l2o cluster silo --port 11112 --gateway-port 30001      # a second one\n" +
                            "  l2o meta-train -o hyperadam -t mlp --meta-batch 8 --cluster --gateway 127.0.0.1:30000 --out runs/b8\n" +
                            "  l2o cluster silo --redis 10.0.0.5:6379 --address 10.0.0.7   # one per machine, Redis holds the membership";
        cmd.SetAction(p =>
        {
            IPAddress? ip = null;
            if (p.GetValue(address) is string a && !IPAddress.TryParse(a, out ip))
                throw new L2OException($"--address '{a}' is not an IP address (e.g. 10.0.0.7)");
            var settings = new SiloSettings
            {
                Redis = p.GetValue(redis) is string r ? HostPort.Parse(r, "--redis") : null,
                ClusterId = p.GetValue(clusterId)!,
                Port = p.GetValue(port),
                GatewayPort = p.GetValue(gatewayPort),
                Address = ip,
                Primary = p.GetValue(primary) is string pr ? HostPort.Parse(pr, "--primary") : null,
                Threads = p.GetValue(threads) ?? Environment.ProcessorCount,
                TlsCertificate = p.GetValue(tls),
            };
            SiloHost.RunAsync(settings, line => Console.WriteLine(line), Cli.Cancellation.Token).GetAwaiter().GetResult();
            return Cli.Ok;
        });
        return cmd;
    }
}
