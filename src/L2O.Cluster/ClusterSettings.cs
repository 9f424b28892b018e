using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace L2O.Cluster;

/// <summary>A HOST:PORT given on the command line (Redis, a gateway, the primary silo).</summary>
public sealed record HostPort(string Host, int Port)
{
    /// <summary>Parses <c>HOST:PORT</c> (<c>[v6]:PORT</c> for IPv6); <paramref name="option"/> names it in the error.</summary>
    /// <exception cref="L2OException">Not HOST:PORT, or the port is not in 1–65535.</exception>
    public static HostPort Parse(string text, string option)
    {
        text = text.Trim();
        int colon = text.LastIndexOf(':');
        string host = colon > 0 ? text[..colon].Trim('[', ']') : "";
        if (colon <= 0 || host.Length == 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
            throw new L2OException($"{option} '{text}' is not HOST:PORT with a port in 1-65535 (e.g. 127.0.0.1:6379)");
        return new HostPort(host, port);
    }

    /// <summary>The endpoint, resolving a host name (IPv4 first).</summary>
    /// <exception cref="L2OException">The name does not resolve.</exception>
    public IPEndPoint Resolve(string option)
    {
        if (IPAddress.TryParse(Host, out var ip)) return new IPEndPoint(ip, Port);
        try
        {
            var addresses = Dns.GetHostAddresses(Host);
            var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
                         ?? throw new L2OException($"{option} '{this}': host '{Host}' has no address");
            return new IPEndPoint(chosen, Port);
        }
        catch (SocketException e)
        {
            throw new L2OException($"{option} '{this}': cannot resolve host '{Host}' ({e.Message})");
        }
    }

    public override string ToString() => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>How a worker silo joins its cluster (<c>l2o cluster silo</c>).</summary>
public sealed record SiloSettings
{
    /// <summary>Redis holding the membership table; null: development clustering with <see cref="Primary"/> as the primary silo (one machine, or a fixed primary).</summary>
    public HostPort? Redis { get; init; }
    /// <summary>Silos and learners of one cluster share this id (several clusters may share one Redis).</summary>
    public string ClusterId { get; init; } = ClusterDefaults.ClusterId;
    /// <summary>Silo-to-silo port.</summary>
    public int Port { get; init; } = ClusterDefaults.SiloPort;
    /// <summary>Port the learner (an Orleans client) connects to.</summary>
    public int GatewayPort { get; init; } = ClusterDefaults.GatewayPort;
    /// <summary>Address to listen on and advertise; null: loopback only (this machine).</summary>
    public IPAddress? Address { get; init; }
    /// <summary>Without Redis: the primary silo's silo-to-silo endpoint (default: loopback at the default silo port, i.e. the first silo).</summary>
    public HostPort? Primary { get; init; }
    /// <summary>Trajectories this silo computes at once (each on one thread); default: one per core.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>PKCS#12 file of the cluster's shared certificate: TLS between all members (<see cref="ClusterTls"/>); null: plain TCP.</summary>
    public string? TlsCertificate { get; init; }

    /// <exception cref="L2OException">A port outside 1–65535, equal ports, fewer than one thread, an empty cluster id, or a primary with Redis.</exception>
    public void Validate()
    {
        ClusterDefaults.CheckPort(Port, "--port");
        ClusterDefaults.CheckPort(GatewayPort, "--gateway-port");
        if (Port == GatewayPort) throw new L2OException($"--port and --gateway-port must differ (both {Port})");
        if (Threads < 1) throw new L2OException($"--threads must be >= 1 (got {Threads})");
        ClusterDefaults.CheckClusterId(ClusterId);
        if (Redis is not null && Primary is not null) throw new L2OException("--primary is for clustering without Redis; with --redis every silo finds the others there");
    }
}

/// <summary>How the learner (<c>l2o meta-train --cluster</c>) reaches the cluster.</summary>
public sealed record ClusterClientSettings
{
    /// <summary>Redis holding the membership table; null: the silos' <see cref="Gateways"/> directly.</summary>
    public HostPort? Redis { get; init; }
    public string ClusterId { get; init; } = ClusterDefaults.ClusterId;
    /// <summary>Without Redis: the gateways to connect to (default: loopback at the default gateway port).</summary>
    public IReadOnlyList<HostPort> Gateways { get; init; } = [new("127.0.0.1", ClusterDefaults.GatewayPort)];
    /// <summary>How long to wait for a silo: to connect at the start, and to re-run a slot after its silo failed.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long one unroll may take on a silo before its call counts as failed (and the slot is re-run elsewhere).</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromMinutes(5);
    /// <summary>PKCS#12 file of the cluster's shared certificate (the silos' <see cref="SiloSettings.TlsCertificate"/>); null: plain TCP.</summary>
    public string? TlsCertificate { get; init; }

    /// <exception cref="L2OException">Timeouts not positive, no gateway, or an empty cluster id.</exception>
    public void Validate()
    {
        if (!(Timeout > TimeSpan.Zero)) throw new L2OException($"--cluster-timeout must be > 0 (got {Timeout.TotalSeconds} s)");
        if (!(CallTimeout > TimeSpan.Zero)) throw new L2OException($"--call-timeout must be > 0 (got {CallTimeout.TotalSeconds} s)");
        if (Redis is null && Gateways.Count == 0) throw new L2OException("give --redis HOST:PORT or at least one --gateway HOST:PORT");
        ClusterDefaults.CheckClusterId(ClusterId);
    }
}

/// <summary>Defaults shared by silos and learners.</summary>
public static class ClusterDefaults
{
    public const string ClusterId = "l2o";
    /// <summary>Orleans' service id: the same for every L2O cluster (the cluster id tells them apart).</summary>
    public const string ServiceId = "l2o";
    public const int SiloPort = 11111;
    public const int GatewayPort = 30000;

    internal static void CheckPort(int port, string option)
    {
        if (port is < 1 or > 65535) throw new L2OException($"{option} must be in 1-65535 (got {port})");
    }

    internal static void CheckClusterId(string id)
    {
        if (string.IsNullOrWhiteSpace(id) || id.Any(c => char.IsWhiteSpace(c) || c == '/'))
            throw new L2OException($"--cluster-id '{id}' must be a non-empty word without spaces or '/'");
    }
}
