using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using L2O.Checkpoints;

namespace L2O.Cli.Commands;

/// <summary>
/// <c>l2o bench --cluster</c>: meta-training throughput (trajectories per second) with the meta-batch run by
/// in-process workers and by k local worker silos, and the messaging overhead per unroll. Every case is a
/// child <c>l2o meta-train</c> (the learner is its own process on a real cluster too) on silos this command
/// starts on loopback with free ports and a fresh cluster id, and stops at the end.
/// </summary>
internal sealed class ClusterBench : IDisposable
{
    /// <summary>What one bench run measures.</summary>
    public sealed record Settings
    {
        public string Optimizer { get; init; } = "hyperadam";
        public string Task { get; init; } = "mlp";
        public int Steps { get; init; } = 40;
        public int MetaBatch { get; init; } = 4;
        public IReadOnlyList<int> Counts { get; init; } = [1, 2];
        public int Iterations { get; init; } = 3;
        public int Warmup { get; init; } = 1;
        /// <summary>Meta-iterations of the tiny run that isolates the per-unroll messaging cost.</summary>
        public int OverheadIterations { get; init; } = 60;

        public void Validate()
        {
            if (Steps < 1) throw new L2OException($"--cluster-steps must be at least 1 (got {Steps})");
            if (MetaBatch < 1) throw new L2OException($"--meta-batch must be at least 1 (got {MetaBatch})");
            if (Counts.Count == 0 || Counts.Any(c => c is < 1 or > 256)) throw new L2OException("--silos takes counts in 1..256, e.g. --silos 1 2 4");
            if (Iterations < 1) throw new L2OException($"--iterations must be at least 1 (got {Iterations})");
            if (Warmup < 0) throw new L2OException($"--warmup must be 0 or more (got {Warmup})");
            if (OverheadIterations < 2) throw new L2OException($"the overhead run needs at least 2 iterations (got {OverheadIterations})");
        }
    }

    /// <summary>One measured configuration.</summary>
    public sealed record Row(string Runner, int Parallelism, double SecondsPerIteration, double TrajectoriesPerSecond, double Speedup, bool? SameTheta);

    private readonly Settings _settings;
    private readonly string _folder;
    private readonly Action<string> _log;
    private readonly string _clusterId = "bench-" + Guid.NewGuid().ToString("N")[..8];
    private readonly List<Process> _silos = [];
    private readonly List<int> _gateways = [];
    private int? _primary;

    public ClusterBench(Settings settings, string folder, Action<string> log)
    {
        settings.Validate();
        _settings = settings;
        _folder = folder;
        _log = log;
    }

    /// <summary>Throughput rows (in-process 1 worker first, then N workers, then k silos) and the overhead per unroll in seconds.</summary>
    public (List<Row> Rows, double LocalUnrollSeconds, double ClusterUnrollSeconds) Run()
    {
        var s = _settings;
        int total = s.Iterations + s.Warmup;
        string[] Work(string name) =>
            ["meta-train", "-o", s.Optimizer, "-t", s.Task, "--steps", Str(s.Steps), "-n", Str(total), "--meta-batch", Str(s.MetaBatch),
             "--validate-every", "0", "--select", "train-average", "--checkpoint-every", Str(total), "--seed", "0", "--out", Path.Combine(_folder, name)];
        var rows = new List<Row>();
        double baseline = Measure("local-1", [.. Work("local-1"), "--workers", "1", "--threads", "1"], s.Warmup);
        rows.Add(new Row("in-process workers", 1, baseline, s.MetaBatch / baseline, 1, null));
        foreach (int n in s.Counts.Where(n => n > 1))
        {
            double t = Measure($"local-{n}", [.. Work($"local-{n}"), "--workers", Str(n), "--threads", Str(n)], s.Warmup);
            rows.Add(new Row("in-process workers", n, t, s.MetaBatch / t, baseline / t, SameTheta("local-1", $"local-{n}")));
        }
        foreach (int k in s.Counts.Order())
        {
            while (_silos.Count < k) StartSilo();
            double t = Measure($"silos-{k}", [.. Work($"silos-{k}"), "--threads", "1", .. ClientArgs()], s.Warmup);
            rows.Add(new Row("silos × 1 thread", k, t, s.MetaBatch / t, baseline / t, SameTheta("local-1", $"silos-{k}")));
        }
        // A run whose unrolls cost almost nothing: the difference per unroll is the messaging.
        while (_silos.Count > 1) StopSilo();
        string[] Tiny(string name) =>
            ["meta-train", "-o", "rnnprop:hidden=3", "-t", "quadratic", "--steps", "6", "--unroll", "3", "-n", Str(s.OverheadIterations),
             "--meta-batch", "1", "--validate-every", "0", "--select", "train-average", "--checkpoint-every", Str(s.OverheadIterations), "--seed", "0", "--threads", "1",
             "--out", Path.Combine(_folder, name)];
        double local = Measure("overhead-local", Tiny("overhead-local"), 1) / 2;
        double cluster = Measure("overhead-cluster", [.. Tiny("overhead-cluster"), .. ClientArgs()], 1) / 2;
        return (rows, local, cluster);
    }

    /// <summary>Runs one child meta-train and returns the median seconds per iteration after the warm-up ones.</summary>
    private double Measure(string name, string[] args, int warmup)
    {
        _log($"{name}: l2o {string.Join(' ', args)}");
        var (code, output) = SelfProcess.Run(args);
        if (code != 0)
            throw new L2OException($"bench --cluster: case {name} failed (exit {code}): {output.Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim()}");
        var seconds = ReadSeconds(Path.Combine(_folder, name, "log.csv")).Skip(warmup).ToArray();
        if (seconds.Length == 0) throw new L2OException($"bench --cluster: case {name} logged no timed iteration");
        Array.Sort(seconds);
        double median = seconds.Length % 2 == 1 ? seconds[seconds.Length / 2] : (seconds[seconds.Length / 2 - 1] + seconds[seconds.Length / 2]) / 2;
        _log($"{name}: {median.ToString("0.0000", CultureInfo.InvariantCulture)} s per iteration (median of {seconds.Length})");
        return median;
    }

    private static IEnumerable<double> ReadSeconds(string log)
    {
        var lines = File.ReadAllLines(log);
        int column = Array.IndexOf(lines[0].Split(','), "seconds");
        if (column < 0) throw new L2OException($"{log} has no seconds column");
        return lines.Skip(1).Where(l => l.Length > 0).Select(l => double.Parse(l.Split(',')[column], CultureInfo.InvariantCulture));
    }

    /// <summary>Whether two cases ended with the same Θ and meta-optimizer moments, bit for bit.</summary>
    private bool SameTheta(string a, string b)
    {
        var x = SafeTensors.Load(Path.Combine(_folder, a, "last.safetensors"));
        var y = SafeTensors.Load(Path.Combine(_folder, b, "last.safetensors"));
        try
        {
            return x.Tensors.Count == y.Tensors.Count && x.Tensors.Zip(y.Tensors).All(p =>
                p.First.Name == p.Second.Name && p.First.Tensor.data<float>().ToArray().AsSpan().SequenceEqual(p.Second.Tensor.data<float>().ToArray()));
        }
        finally
        {
            foreach (var (_, t) in x.Tensors.Concat(y.Tensors)) t.Dispose();
        }
    }

    private string[] ClientArgs() => ["--cluster", "--cluster-id", _clusterId, "--gateway", $"127.0.0.1:{_gateways[0]}", "--cluster-timeout", "60"];

    private void StartSilo()
    {
        int port = FreePort(), gateway = FreePort();
        var p = SelfProcess.Start(["cluster", "silo", "--cluster-id", _clusterId, "--port", Str(port), "--gateway-port", Str(gateway), "--threads", "1",
                                   "--primary", $"127.0.0.1:{_primary ?? port}"]);
        _silos.Add(p);
        var joined = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var errors = new StringBuilder();
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data?.Contains("joined cluster", StringComparison.Ordinal) == true) joined.TrySetResult(true);
        };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (errors) errors.AppendLine(e.Data);
        };
        p.Exited += (_, _) => joined.TrySetResult(false);
        p.EnableRaisingEvents = true;
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!joined.Task.Wait(TimeSpan.FromSeconds(60)) || !joined.Task.Result)
        {
            string why;
            lock (errors) why = errors.ToString().Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "no output";
            throw new L2OException($"bench --cluster: the silo on port {port} did not join cluster {_clusterId} within 60 s ({why})");
        }
        _primary ??= port;
        _gateways.Add(gateway);
        _log($"silo {_silos.Count} up (port {port}, gateway {gateway})");
    }

    /// <summary>Stops the newest silo (never the primary, which holds the development membership).</summary>
    private void StopSilo()
    {
        var p = _silos[^1];
        _silos.RemoveAt(_silos.Count - 1);
        _gateways.RemoveAt(_gateways.Count - 1);
        Kill(p);
        // Let the others declare it dead before the next learner places work (two missed 2-second probes).
        Thread.Sleep(TimeSpan.FromSeconds(8));
    }

    private static void Kill(Process p)
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

    public void Dispose()
    {
        foreach (var p in _silos) Kill(p);
        _silos.Clear();
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);
}

/// <summary>Starts this same <c>l2o</c> (the apphost, or <c>dotnet L2O.Cli.dll</c>) as a child process.</summary>
internal static class SelfProcess
{
    public static ProcessStartInfo Info(IEnumerable<string> args)
    {
        string host = Environment.ProcessPath ?? "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(typeof(SelfProcess).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    public static Process Start(IEnumerable<string> args) =>
        Process.Start(Info(args)) ?? throw new L2OException($"could not start {Environment.ProcessPath ?? "dotnet"}");

    /// <summary>Runs to the end; returns the exit code and stdout followed by stderr.</summary>
    public static (int Code, string Output) Run(IEnumerable<string> args)
    {
        using var p = Start(args);
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout + stderr.Result);
    }
}
