using System.Diagnostics;
using System.Globalization;
using L2O.Checkpoints;
using L2O.Runtime;
using L2O.Training;
using Xunit;
using Xunit.Abstractions;

namespace L2O.Tests;

/// <summary>The l2o command in its own process (for locks between processes, kills and signals).</summary>
internal static class CliProcess
{
    public static Process Start(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "L2O.Cli.dll"));
        foreach (var a in args) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    /// <summary>Runs to the end; returns the exit code and stderr.</summary>
    public static (int Code, string Err) Run(params string[] args)
    {
        using var p = Start(args);
        var err = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, err.Result);
    }

    /// <summary>Meta-training small enough that an iteration takes milliseconds, with a checkpoint after every one.</summary>
    public static string[] MetaTrain(string folder, int iterations) =>
        ["meta-train", "-o", "rnnprop:hidden=3", "-t", "quadratic", "--steps", "8", "--unroll", "4", "-n", iterations.ToString(CultureInfo.InvariantCulture),
         "--checkpoint-every", "1", "--validate-every", "25", "--validation-runs", "1", "--threads", "1", "--out", folder];

    public static int LogRows(string folder)
    {
        string log = Path.Combine(folder, MetaTrainer.LogFile);
        try { return File.Exists(log) ? File.ReadAllLines(log).Length - 1 : 0; }
        catch (IOException) { return 0; }
    }

    public static void WaitForRows(string folder, int rows, Process p)
    {
        var watch = Stopwatch.StartNew();
        while (LogRows(folder) < rows && !p.HasExited && watch.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(10);
    }
}

/// <summary>Two writers, kills at random moments, Ctrl-C, and full or read-only disks.</summary>
public class CrashTests(ITestOutputHelper output)
{
    [Fact]
    public void Two_meta_trainings_into_one_folder_one_refused_with_the_holders_pid()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        // The holder's iterations (about 10 s here) must outlast the second process's start-up (1-3 s on a busy machine):
        // with 150 (1.6 s) it sometimes finished first, the lock was free, and the second run was not refused.
        const int iterations = 1000;
        using var a = CliProcess.Start(CliProcess.MetaTrain(run, iterations));
        CliProcess.WaitForRows(run, 1, a);
        var (code, err) = CliProcess.Run(CliProcess.MetaTrain(run, iterations));
        a.WaitForExit();
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(1, code);
        Assert.Contains($"{run} is in use by another l2o process (PID {a.Id}: l2o meta-train", err);
        var logged = File.ReadLines(Path.Combine(run, MetaTrainer.LogFile)).Skip(1).Select(l => int.Parse(l.Split(',')[0], CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(Enumerable.Range(1, iterations), logged);   // every iteration once: the second writer wrote nothing
    }

    [Fact]
    public void Killed_at_random_moments_and_resumed_the_run_ends_as_an_uninterrupted_one()
    {
        const int iterations = 120, kills = 6;
        using var dir = new TempDir();
        string straight = dir.File("straight"), killed = dir.File("killed");
        Assert.Equal(0, CliProcess.Run(CliProcess.MetaTrain(straight, iterations)).Code);

        var random = new Random(9);
        int survived = 0;
        for (int k = 0; k < kills; k++)
        {
            string[] args = File.Exists(Path.Combine(killed, MetaTrainer.LastFile)) ? ["meta-train", "--resume", killed] : CliProcess.MetaTrain(killed, iterations);
            using var p = CliProcess.Start(args);
            CliProcess.WaitForRows(killed, CliProcess.LogRows(killed) + 1, p);
            Thread.Sleep(random.Next(0, 60));   // somewhere inside an iteration, a log append or a checkpoint write
            if (p.HasExited) break;
            p.Kill();
            p.WaitForExit();
            survived++;
        }
        var (code, err) = CliProcess.Run(File.Exists(Path.Combine(killed, MetaTrainer.LastFile)) ? ["meta-train", "--resume", killed] : CliProcess.MetaTrain(killed, iterations));
        Assert.True(code == 0, err);
        output.WriteLine($"{survived} kills survived");

        // Nothing lost: the same meta-parameters and optimizer state, the same log (but for timings), no temporary file left.
        var a = SafeTensors.Load(Path.Combine(straight, MetaTrainer.LastFile));
        var b = SafeTensors.Load(Path.Combine(killed, MetaTrainer.LastFile));
        Assert.Equal(a.Tensors.Select(t => t.Name), b.Tensors.Select(t => t.Name));
        foreach (var (name, t) in a.Tensors) Assert.True(Numeric.MaxAbsDiff(t, b[name]) == 0, name);
        static IEnumerable<string> Log(string folder) => File.ReadLines(Path.Combine(folder, MetaTrainer.LogFile)).Select(l => string.Join(",", l.Split(',').Where((_, i) => i != 7)));
        Assert.Equal(Log(straight), Log(killed));
        Assert.Empty(Directory.GetFiles(killed, "*.tmp*"));
    }

    [SignalReachesChildrenFact(Posix.SigInt)]
    public Task Ctrl_c_saves_exits_130_and_says_how_to_resume() => StopsAtASafePoint(Posix.SigInt);

    [Fact]
    public Task Sigterm_saves_exits_130_and_says_how_to_resume() => StopsAtASafePoint(Posix.SigTerm);

    private static async Task StopsAtASafePoint(int signal)
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        using var p = CliProcess.Start(CliProcess.MetaTrain(run, 100_000));
        var err = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        CliProcess.WaitForRows(run, 3, p);
        Assert.Equal(0, Posix.Kill(p.Id, signal));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try { await p.WaitForExitAsync(timeout.Token); }
        finally
        {
            if (!p.HasExited) p.Kill();   // a child that missed the signal must not outlive the test (it would train for 100 000 iterations)
        }
        Assert.Equal(130, p.ExitCode);
        string saved = SafeTensors.Load(Path.Combine(run, MetaTrainer.LastFile)).Metadata["iteration"];
        Assert.Contains($"interrupted at iteration {saved}, resume with: l2o meta-train --resume {run}", await err);
        await stdout;
        Assert.Equal(int.Parse(saved, CultureInfo.InvariantCulture), CliProcess.LogRows(run));
    }

    [Fact]
    public void Orphan_temporary_files_of_dead_writers_are_removed_on_the_next_write()
    {
        using var dir = new TempDir();
        using var dead = CliProcess.Start("--version");
        dead.WaitForExit();
        string orphan = dir.File($".last.safetensors.{dead.Id}.{Guid.NewGuid():N}.tmp");
        string mine = dir.File($".log.csv.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        string other = dir.File(".notes.tmp");
        foreach (var f in new[] { orphan, mine, other }) File.WriteAllText(f, "x");
        AtomicFile.WriteAllText(dir.File("a.txt"), "a");
        Assert.False(File.Exists(orphan));
        Assert.True(File.Exists(mine));    // a live writer's (this process) may still be in use
        Assert.True(File.Exists(other));   // not this project's name pattern
    }

    [TmpfsFact]
    public void Full_and_read_only_disks_fail_before_compute_with_the_cause()
    {
        using var dir = new TempDir();
        string full = dir.File("full"), ro = dir.File("ro");
        Directory.CreateDirectory(full);
        Directory.CreateDirectory(ro);
        Assert.True(Mount(full, "size=128k") && Mount(ro, "ro,size=64k"), "mount failed although the probe succeeded");
        try
        {
            File.WriteAllBytes(Path.Combine(full, "filler"), new byte[100 * 1024]);   // leaves less than the 64 KiB probe
            var watch = Stopwatch.StartNew();
            var (code, err) = CliRunner.Run(["eval", "-t", "mlp", "-o", "adam", "--runs", "50", "--steps", "100", "--out", Path.Combine(full, "out")]);
            Assert.Equal(1, code);
            Assert.Single(err.Trim().Split('\n'));
            Assert.Contains($"cannot write {Path.Combine(full, "out")}: No space left on device", err);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), "the error came after the compute");

            var (code2, err2) = CliRunner.Run(["meta-train", "-o", "rnnprop", "-t", "quadratic", "-n", "1", "--out", Path.Combine(ro, "run")]);
            Assert.Equal(1, code2);
            Assert.Single(err2.Trim().Split('\n'));
            Assert.Contains("Read-only file system", err2);
            Assert.Contains(Path.Combine(ro, "run"), err2);
        }
        finally
        {
            Unmount(full);
            Unmount(ro);
        }
    }

    internal static bool Mount(string at, string options)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("mount", ["-t", "tmpfs", "-o", options, "tmpfs", at]) { RedirectStandardError = true })!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    internal static void Unmount(string at)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("umount", [at]) { RedirectStandardError = true })!;
            p.WaitForExit();
        }
        catch (System.ComponentModel.Win32Exception) { }
    }
}

/// <summary>A test that needs to mount a small tmpfs (root or CAP_SYS_ADMIN); skipped, with the reason, where that is not allowed.</summary>
public sealed class TmpfsFactAttribute : FactAttribute
{
    private static readonly Lazy<bool> CanMount = new(() =>
    {
        string at = Path.Combine(Path.GetTempPath(), "l2o-mount-probe-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(at);
        bool ok = CrashTests.Mount(at, "size=16k");
        if (ok) CrashTests.Unmount(at);
        Directory.Delete(at);
        return ok;
    });

    public TmpfsFactAttribute()
    {
        if (!CanMount.Value) Skip = "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): the ENOSPC and EROFS cases were not run";
    }
}

/// <summary>
/// A fact skipped, saying why, when this test process ignores <c>signal</c>: a process started in the
/// background by a non-interactive shell (<c>cmd &amp;</c>, nohup) ignores SIGINT, its children inherit
/// that, and an ignored signal never reaches the l2o child the test sends it to.
/// </summary>
public sealed class SignalReachesChildrenFactAttribute : FactAttribute
{
    public SignalReachesChildrenFactAttribute(int signal)
    {
        if (Posix.Ignores(signal)) Skip = $"signal {signal} is ignored by this test process (started in the background?), so its children ignore it too";
    }
}
