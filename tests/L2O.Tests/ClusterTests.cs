using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using L2O.Checkpoints;
using Xunit;
using Xunit.Abstractions;

namespace L2O.Tests;

/// <summary>
/// Worker silos (<c>l2o cluster silo</c>) and Redis started as processes of their own on loopback
/// with free ports; everything started is killed on dispose.
/// </summary>
internal sealed class LocalCluster : IDisposable
{
    private readonly List<Process> _processes = [];
    private readonly ITestOutputHelper _output;

    public LocalCluster(ITestOutputHelper output, string? clusterId = null)
    {
        _output = output;
        ClusterId = clusterId ?? "test-" + Guid.NewGuid().ToString("N")[..8];
    }

    public string ClusterId { get; }
    /// <summary>HOST:PORT of the Redis started by <see cref="StartRedis"/>; null without one.</summary>
    public string? Redis { get; private set; }
    /// <summary>Silo-to-silo port of the first silo (the primary without Redis).</summary>
    public int? PrimaryPort { get; private set; }
    public List<int> GatewayPorts { get; } = [];
    public List<Process> Silos { get; } = [];
    /// <summary>The cluster's shared TLS certificate (PKCS#12 file) given to every silo and to <see cref="ClientArgs"/>; null: plain TCP.</summary>
    public string? TlsCertificate { get; set; }

    public static int FreePort() => FreePorts(1)[0];

    /// <summary>
    /// <paramref name="count"/> distinct free ports, all held open until every one is chosen: ports asked for one at a
    /// time can repeat once released (a silo was once given the same port for its silo and gateway endpoints).
    /// </summary>
    public static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        try
        {
            foreach (var l in listeners) l.Start();
            return [.. listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var l in listeners) l.Stop();
        }
    }

    /// <summary>The path of redis-server on PATH, or null.</summary>
    public static string? RedisServer() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);

    /// <summary>Starts an in-memory Redis on a free port and waits until it accepts connections.</summary>
    public void StartRedis(string server)
    {
        int port = FreePort();
        var info = new ProcessStartInfo(server) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" }) info.ArgumentList.Add(a);
        var p = Process.Start(info)!;
        _processes.Add(p);
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                break;
            }
            catch (SocketException) when (watch.Elapsed < TimeSpan.FromSeconds(10) && !p.HasExited)
            {
                Thread.Sleep(50);
            }
        }
        Redis = $"127.0.0.1:{port}";
    }

    /// <summary>Starts a silo and waits until it has joined the cluster (its "joined cluster" line).</summary>
    public Process StartSilo()
    {
        var ports = FreePorts(2);
        int port = ports[0], gateway = ports[1];
        List<string> args = ["cluster", "silo", "--cluster-id", ClusterId, "--port", port.ToString(CultureInfo.InvariantCulture),
                             "--gateway-port", gateway.ToString(CultureInfo.InvariantCulture), "--threads", "1"];
        if (Redis is not null) args.AddRange(["--redis", Redis]);
        else args.AddRange(["--primary", $"127.0.0.1:{PrimaryPort ?? port}"]);
        if (TlsCertificate is not null) args.AddRange(["--tls-cert", TlsCertificate]);
        var p = CliProcess.Start([.. args]);
        _processes.Add(p);
        var joined = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            if (e.Data.Contains("joined cluster", StringComparison.Ordinal)) joined.TrySetResult(true);
        };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) _output.WriteLine($"silo {port}: {e.Data}");
        };
        p.Exited += (_, _) => joined.TrySetResult(false);
        p.EnableRaisingEvents = true;
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!joined.Task.Wait(TimeSpan.FromSeconds(40)) || !joined.Task.Result)
            throw new InvalidOperationException($"silo on port {port} did not join cluster {ClusterId}");
        PrimaryPort ??= port;
        GatewayPorts.Add(gateway);
        Silos.Add(p);
        return p;
    }

    /// <summary>The options that point <c>meta-train --cluster</c> at this cluster.</summary>
    public string[] ClientArgs() =>
        [.. Redis is not null
            ? ["--cluster", "--cluster-id", ClusterId, "--redis", Redis, "--cluster-timeout", "30"]
            : new[] { "--cluster", "--cluster-id", ClusterId, "--gateway", $"127.0.0.1:{GatewayPorts[0]}", "--cluster-timeout", "30" },
         .. TlsCertificate is null ? [] : new[] { "--tls-cert", TlsCertificate }];

    /// <summary>A self-signed certificate with its key, for server and client authentication, as a PKCS#12 file without password.</summary>
    public static void WriteSelfSignedPfx(string path, string name)
    {
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={name}", rsa,
            System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509EnhancedKeyUsageExtension(
            [new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.1"), new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(2));
        File.WriteAllBytes(path, certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx));
    }

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
            p.Dispose();
        }
    }
}

/// <summary>
/// Distributed meta-training on real silo processes: the same Θ (bitwise) as the in-process run,
/// with localhost clustering, with Redis membership, and after a silo is killed mid-run.
/// </summary>
public class ClusterTests(ITestOutputHelper output)
{
    /// <summary>A tiny meta-batch run: 4 trajectories of 6 steps in unrolls of 3 (2 meta-updates per iteration).</summary>
    private static string[] Tiny(string folder, int iterations, int steps = 6) =>
        ["meta-train", "-o", "rnnprop:hidden=3", "-t", "quadratic", "--steps", steps.ToString(CultureInfo.InvariantCulture), "--unroll", "3", "--meta-batch", "4",
         "-n", iterations.ToString(CultureInfo.InvariantCulture), "--validate-every", "0", "--select", "train-average",
         "--checkpoint-every", "1", "--threads", "1", "--out", folder];

    /// <summary>The single-process run (in-process workers), the reference every cluster run must equal bit for bit.</summary>
    private static void Reference(string folder, int iterations, int steps = 6)
    {
        var (code, err) = CliRunner.Run(Tiny(folder, iterations, steps));
        Assert.True(code == 0, err);
    }

    private (string Out, string Err) Learner(string folder, int iterations, LocalCluster cluster, Action<Process>? during = null, int steps = 6)
    {
        using var p = CliProcess.Start([.. Tiny(folder, iterations, steps), .. cluster.ClientArgs()]);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        during?.Invoke(p);
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(90)), "the cluster meta-training did not finish");
        output.WriteLine(stdout.Result);
        Assert.True(p.ExitCode == 0, stderr.Result);
        return (stdout.Result, stderr.Result);
    }

    /// <summary>Every tensor of two checkpoints, Θ and the meta-optimizer's moments, byte for byte.</summary>
    private static void AssertSameTensors(string expected, string actual)
    {
        var a = SafeTensors.Load(expected);
        var b = SafeTensors.Load(actual);
        try
        {
            Assert.Equal(a.Tensors.Select(t => t.Name), b.Tensors.Select(t => t.Name));
            Assert.Contains(a.Tensors, t => t.Name == "trainer.adam.m");
            foreach (var ((name, x), (_, y)) in a.Tensors.Zip(b.Tensors))
                Assert.True(x.data<float>().ToArray().SequenceEqual(y.data<float>().ToArray()), $"tensor {name} differs");
            Assert.Equal(a.Metadata["iteration"], b.Metadata["iteration"]);
        }
        finally
        {
            foreach (var (_, t) in a.Tensors.Concat(b.Tensors)) t.Dispose();
        }
    }

    private static long Replays(string stdout)
    {
        var line = stdout.Split('\n').Single(l => l.StartsWith("cluster: ", StringComparison.Ordinal));
        return long.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture);
    }

    [Fact]
    public void Bench_cluster_measures_workers_and_silos_with_the_same_theta_and_the_overhead()
    {
        using var dir = new TempDir();
        var (code, err) = CliProcess.Run(["bench", "--cluster", "-o", "rnnprop:hidden=3", "--cluster-task", "quadratic", "--cluster-steps", "6",
                                          "--silos", "1", "2", "-n", "2", "--warmup", "1", "--meta-batch", "2", "--out", dir.File("bench")]);
        Assert.True(code == 0, err);
        var md = File.ReadAllLines(dir.File("bench/bench.md"));
        var rows = md.Where(l => l.StartsWith("| in-process workers", StringComparison.Ordinal) || l.StartsWith("| silos", StringComparison.Ordinal)).ToList();
        Assert.Equal(4, rows.Count);   // workers 1 and 2, silos 1 and 2
        Assert.Equal(3, rows.Count(r => r.EndsWith("| yes |", StringComparison.Ordinal)));
        foreach (var r in rows)
            Assert.True(double.Parse(r.Split('|')[4], CultureInfo.InvariantCulture) > 0, r);   // trajectories per second
        Assert.Contains(md, l => l.StartsWith("Overhead: ", StringComparison.Ordinal) && l.EndsWith(" ms per unroll.", StringComparison.Ordinal));
    }

    [Fact]
    public void Cluster_of_two_silos_gives_the_single_process_theta_bit_for_bit()
    {
        using var dir = new TempDir();
        using var cluster = new LocalCluster(output);
        cluster.StartSilo();
        cluster.StartSilo();
        var (stdout, _) = Learner(dir.File("cluster"), 3, cluster);
        Assert.Contains("(2 silos now", stdout);   // the description names the cluster; Spectre may wrap it before its id
        Assert.Equal(0, Replays(stdout));
        Reference(dir.File("single"), 3);
        AssertSameTensors(dir.File("single/last.safetensors"), dir.File("cluster/last.safetensors"));
        Assert.Equal(File.ReadAllLines(dir.File("single/log.csv")).Select(l => string.Join(',', l.Split(',').Take(7))),
                     File.ReadAllLines(dir.File("cluster/log.csv")).Select(l => string.Join(',', l.Split(',').Take(7))));
    }

    [Fact]
    public void Cluster_survives_a_silo_killed_mid_run_with_the_same_theta()
    {
        using var dir = new TempDir();
        using var cluster = new LocalCluster(output);
        cluster.StartSilo();
        var victim = cluster.StartSilo();   // not the primary: without Redis the primary holds the membership
        string run = dir.File("cluster");
        // 20 unrolls per trajectory: the kill must land inside an iteration, while the victim holds two of its
        // trajectories (at an iteration's end it might be declared dead before the next one is placed, and nothing
        // would need re-running). A fixed delay after a log row missed that window under a loaded test run, so the
        // delay is half of the last iteration's measured length.
        var (stdout, _) = Learner(run, 20, cluster, learner =>
        {
            CliProcess.WaitForRows(run, 2, learner);
            var iteration = System.Diagnostics.Stopwatch.StartNew();
            CliProcess.WaitForRows(run, 3, learner);
            Thread.Sleep(iteration.Elapsed / 2);
            victim.Kill();   // SIGKILL: its trajectories are gone
        }, steps: 60);
        Assert.True(victim.HasExited);
        Assert.True(CliProcess.LogRows(run) == 20);
        Assert.True(Replays(stdout) >= 1, "no slot was re-run after the kill");
        Reference(dir.File("single"), 20, steps: 60);
        AssertSameTensors(dir.File("single/last.safetensors"), dir.File("cluster/last.safetensors"));
    }

    /// <summary>Unrolls by silo port, from the summary's "unrolls by silo: 127.0.0.1:P n, …".</summary>
    private static Dictionary<int, long> UnrollsBySilo(string stdout)
    {
        string text = string.Join(" ", stdout.Split('\n').Select(l => l.Trim()));   // Spectre may wrap the line
        string list = text[(text.IndexOf("unrolls by silo: ", StringComparison.Ordinal) + "unrolls by silo: ".Length)..];
        return System.Text.RegularExpressions.Regex.Matches(list, @"127\.0\.0\.1:(\d+) (\d+)")
            .ToDictionary(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m => long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Cluster_gives_work_to_a_silo_that_joins_mid_run()
    {
        using var dir = new TempDir();
        using var cluster = new LocalCluster(output);
        cluster.StartSilo();
        string run = dir.File("cluster");
        var (stdout, _) = Learner(run, 250, cluster, learner =>
        {
            CliProcess.WaitForRows(run, 3, learner);
            cluster.StartSilo();
        });
        var bySilo = UnrollsBySilo(stdout);
        Assert.Equal(2, bySilo.Count);
        Assert.All(bySilo.Values, n => Assert.True(n > 0));
        Assert.Equal(0, Replays(stdout));
        Assert.Equal(250 * 4 * 2, bySilo.Values.Sum());   // every slot's two unrolls of every iteration, answered once
        Reference(dir.File("single"), 250);
        AssertSameTensors(dir.File("single/last.safetensors"), dir.File("cluster/last.safetensors"));
    }

    [Fact]
    public void Cluster_learner_killed_mid_run_resumes_on_the_cluster_with_the_same_theta()
    {
        using var dir = new TempDir();
        using var cluster = new LocalCluster(output);
        cluster.StartSilo();
        cluster.StartSilo();
        string run = dir.File("cluster");
        using (var learner = CliProcess.Start([.. Tiny(run, 40), .. cluster.ClientArgs()]))
        {
            CliProcess.WaitForRows(run, 5, learner);
            learner.Kill();   // SIGKILL: Θ since the last checkpoint is lost, the silos keep running
            learner.WaitForExit();
        }
        int saved = CliProcess.LogRows(run);
        Assert.InRange(saved, 5, 39);
        var (code, err) = CliProcess.Run(["meta-train", "--resume", run, .. cluster.ClientArgs()]);
        Assert.True(code == 0, err);
        Reference(dir.File("single"), 40);
        AssertSameTensors(dir.File("single/last.safetensors"), dir.File("cluster/last.safetensors"));
    }

    [Fact]
    public void Cluster_with_redis_membership_gives_the_single_process_theta_bit_for_bit()
    {
        if (LocalCluster.RedisServer() is not string server)
        {
            output.WriteLine("redis-server is not on PATH (apt-get install redis-server): the Redis membership variant was not run");
            return;
        }
        using var dir = new TempDir();
        using var cluster = new LocalCluster(output);
        cluster.StartRedis(server);
        cluster.StartSilo();
        cluster.StartSilo();
        var (stdout, _) = Learner(dir.File("cluster"), 3, cluster);
        Assert.Contains("(2 silos now", stdout);
        Reference(dir.File("single"), 3);
        AssertSameTensors(dir.File("single/last.safetensors"), dir.File("cluster/last.safetensors"));
    }

    [Fact]
    public void Cluster_with_tls_gives_the_same_theta_and_refuses_a_learner_without_the_certificate()
    {
        using var dir = new TempDir();
        using var cluster = new LocalCluster(output) { TlsCertificate = dir.File("cluster.pfx") };
        LocalCluster.WriteSelfSignedPfx(cluster.TlsCertificate, "l2o-test-cluster");
        LocalCluster.WriteSelfSignedPfx(dir.File("other.pfx"), "someone-else");
        cluster.StartSilo();
        cluster.StartSilo();   // silo to silo over TLS too: slots 1 and 3 are placed on it through the first
        var (stdout, _) = Learner(dir.File("cluster"), 3, cluster);
        Assert.Equal(2, UnrollsBySilo(stdout).Count);
        Reference(dir.File("single"), 3);
        AssertSameTensors(dir.File("single/last.safetensors"), dir.File("cluster/last.safetensors"));

        string[] Client(params string[] tls) => [.. Tiny(dir.File("refused"), 2), "--cluster", "--cluster-id", cluster.ClusterId,
                                                 "--gateway", $"127.0.0.1:{cluster.GatewayPorts[0]}", "--cluster-timeout", "3", .. tls];
        foreach (var args in new[] { Client(), Client("--tls-cert", dir.File("other.pfx")) })
        {
            var (code, err) = CliRunner.Run(args);
            Assert.Equal(1, code);
            Assert.Single(err.Trim().Split('\n'));
            Assert.Contains("no silo of cluster", err);
            Assert.False(Directory.Exists(dir.File("refused")));
        }
    }

    [Fact]
    public void Cluster_eval_gives_the_in_process_records_also_after_a_silo_is_killed()
    {
        using var dir = new TempDir();
        using var cluster = new LocalCluster(output);
        cluster.StartSilo();
        var victim = cluster.StartSilo();
        string[] Eval(string folder) => ["eval", "-t", "quadratic", "-o", "adam:lr=0.05", "-o", "hyperadam:checkpoint=pretrained",
                                         "--steps", "15", "--runs", "6", "--threads", "1", "--out", dir.File(folder)];
        var (code, err) = CliRunner.Run(Eval("local"));
        Assert.True(code == 0, err);
        string[] OnCluster(string folder) => [.. Eval(folder), "--cluster", "--cluster-id", cluster.ClusterId, "--gateway", $"127.0.0.1:{cluster.GatewayPorts[0]}"];
        (code, err) = CliProcess.Run(OnCluster("cluster"));
        Assert.True(code == 0, err);
        // Every loss of every run, and the curves' statistics, as computed in-process.
        Assert.Equal(File.ReadAllBytes(dir.File("local/curves.csv")), File.ReadAllBytes(dir.File("cluster/curves.csv")));
        Assert.Equal(File.ReadAllBytes(dir.File("local/runs.csv")), File.ReadAllBytes(dir.File("cluster/runs.csv")));
        victim.Kill();   // chunks placed on it before it is declared dead are run again on the other
        (code, err) = CliProcess.Run(OnCluster("after-kill"));
        Assert.True(code == 0, err);
        Assert.Equal(File.ReadAllBytes(dir.File("local/runs.csv")), File.ReadAllBytes(dir.File("after-kill/runs.csv")));
    }

    [Fact]
    public void Cluster_options_errors_are_one_line_and_leave_no_folder()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        string[] Args(params string[] extra) => [.. Tiny(run, 2), .. extra];
        void Fails(string expected, params string[] extra)
        {
            var (code, err) = CliRunner.Run(Args(extra));
            Assert.Equal(1, code);
            Assert.Single(err.Trim().Split('\n'));
            Assert.Contains(expected, err);
            Assert.False(Directory.Exists(run));
        }
        Fails("--cluster and --workers exclude each other", "--cluster", "--workers", "2");
        Fails("--redis 'localhost' is not HOST:PORT", "--cluster", "--redis", "localhost");
        Fails("--gateway '127.0.0.1:99999' is not HOST:PORT", "--cluster", "--gateway", "127.0.0.1:99999");
        Fails("--redis is for --cluster", "--redis", "127.0.0.1:6379");
        Fails("--tls-cert '/nonexistent.pfx' does not exist", "--cluster", "--tls-cert", "/nonexistent.pfx");
        int nobody = LocalCluster.FreePort();
        Fails($"no silo of cluster 'nobody' reachable at 127.0.0.1:{nobody} within 2 s", "--cluster", "--cluster-id", "nobody",
              "--gateway", $"127.0.0.1:{nobody}", "--cluster-timeout", "2");
    }
}
