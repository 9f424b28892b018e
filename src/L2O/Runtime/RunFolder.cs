using System.Globalization;

namespace L2O.Runtime;

/// <summary>
/// Exclusive use of an output folder for the lifetime of a run, so that two processes never write
/// the same folder (meta-train, resume, eval, sweep, demo). Taking it also checks, before any
/// compute, that the folder can be written.
/// </summary>
/// <remarks>
/// The lock is an operating-system lock on <c>.l2o.lock</c> (<c>flock</c>, which .NET takes for
/// <see cref="FileShare.None"/>), held open until <see cref="Dispose"/>. The kernel drops it when the
/// process ends, however it ends, so the lock of a killed run is stale by construction and the next
/// run simply takes it. The holder writes its PID and command to <c>.l2o.owner</c>, because the
/// locked file itself cannot be opened by another process, not even to read it.
/// </remarks>
public sealed class RunFolder : IDisposable
{
    public const string LockFile = ".l2o.lock";
    public const string OwnerFile = ".l2o.owner";

    /// <summary>Bytes written and flushed by the writability probe: a full disk fails here rather than after the compute.</summary>
    private const int ProbeBytes = 64 * 1024;

    /// <summary>Files that mark a folder as holding a run's outputs.</summary>
    public static IReadOnlyList<string> OutputFiles { get; } = ["report.json", "curves.csv", "runs.csv", "last.safetensors", "log.csv"];

    private FileStream? _lock;

    private RunFolder(string path, FileStream lockStream)
    {
        Path = path;
        _lock = lockStream;
    }

    /// <summary>The folder as given.</summary>
    public string Path { get; }

    /// <summary>
    /// Creates <paramref name="folder"/> if needed, takes its lock, records this process as the owner
    /// and checks that data can be written there.
    /// </summary>
    /// <exception cref="L2OException">Another process holds the folder (the message names its PID), or the folder cannot be written.</exception>
    public static RunFolder Acquire(string folder, string command = "")
    {
        string lockPath = System.IO.Path.Combine(folder, LockFile);
        FileStream stream;
        try
        {
            Directory.CreateDirectory(folder);
            stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (IsHeldElsewhere(e))
        {
            throw new L2OException($"{folder} is in use by another l2o process ({Owner(folder)}); wait for it to finish or choose another --out");
        }
        catch (Exception e) when (FileErrors.IsFileError(e))
        {
            throw FileErrors.Write(lockPath, e);
        }
        var run = new RunFolder(folder, stream);
        try
        {
            AtomicFile.WriteAllText(System.IO.Path.Combine(folder, OwnerFile),
                $"{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}\n{command}\n");
            Probe(folder);
            return run;
        }
        catch
        {
            run.Dispose();
            throw;
        }
    }

    /// <summary>The first of <see cref="OutputFiles"/> present in <paramref name="folder"/>, or null.</summary>
    public static string? ExistingOutput(string folder) =>
        OutputFiles.FirstOrDefault(f => File.Exists(System.IO.Path.Combine(folder, f)));

    /// <summary>Writes, flushes and deletes a temporary file (named like <see cref="AtomicFile"/>'s, so a kill leaves nothing that lasts).</summary>
    private static void Probe(string folder)
    {
        string probe = AtomicFile.TemporaryPath(System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, "probe")));
        try
        {
            using (var fs = new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(new byte[ProbeBytes]);
                fs.Flush(flushToDisk: true);
            }
            File.Delete(probe);
        }
        catch (Exception e) when (FileErrors.IsFileError(e))
        {
            try { File.Delete(probe); } catch (Exception d) when (FileErrors.IsFileError(d)) { }
            throw new L2OException($"cannot write {folder}: {FileErrors.Cause(e)}", e);
        }
    }

    /// <summary>EWOULDBLOCK from flock (Linux 11, macOS 35), or a Windows sharing violation.</summary>
    private static bool IsHeldElsewhere(IOException e) => e.HResult is 11 or 35 or unchecked((int)0x80070020);

    /// <summary>"PID 1234: l2o meta-train ..." from the owner file; it is written just after the lock is taken, so wait briefly for it.</summary>
    private static string Owner(string folder)
    {
        string path = System.IO.Path.Combine(folder, OwnerFile);
        for (int attempt = 0; attempt < 20; attempt++)
        {
            try
            {
                var lines = File.ReadAllLines(path);
                if (lines.Length > 0 && int.TryParse(lines[0], CultureInfo.InvariantCulture, out int pid))
                    return lines.Length > 1 && lines[1].Length > 0 ? $"PID {pid}: {lines[1]}" : $"PID {pid}";
            }
            catch (Exception e) when (FileErrors.IsFileError(e)) { }
            Thread.Sleep(25);
        }
        return "PID unknown";
    }

    /// <summary>Releases the lock (the lock file stays: deleting it would race with a process about to lock it).</summary>
    public void Dispose()
    {
        if (_lock is null) return;
        try { File.Delete(System.IO.Path.Combine(Path, OwnerFile)); }
        catch (Exception e) when (FileErrors.IsFileError(e)) { }
        _lock.Dispose();
        _lock = null;
    }
}
