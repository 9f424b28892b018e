using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace L2O.Runtime;

/// <summary>
/// Writes files so that readers never see a partial file: write a temporary sibling, flush, rename.
/// A failure is an <see cref="L2OException"/> naming the path and the cause, and leaves the previous
/// file (if any) in place. Temporary files left by a killed process are removed on the next write to
/// their folder.
/// </summary>
public static partial class AtomicFile
{
    private static readonly ConcurrentDictionary<string, bool> Swept = new();

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var data = bytes.ToArray();
        Write(path, s => s.Write(data));
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true); w.Write(text); });

    /// <summary>Runs <paramref name="write"/> on a temporary file in the target folder, flushes it to disk, then renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write) =>
        WriteFile(path, tmp =>
        {
            using var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            write(fs);
            fs.Flush(flushToDisk: true);
        });

    /// <summary>
    /// For writers that take a file name (chart libraries): <paramref name="writeTo"/> writes the
    /// temporary path, which keeps the extension of <paramref name="path"/>; it is then renamed into place.
    /// </summary>
    public static void WriteFile(string path, Action<string> writeTo)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        string tmp = TemporaryPath(full);
        try
        {
            Directory.CreateDirectory(dir);
            RemoveOrphans(dir);
            writeTo(tmp);
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (FileErrors.IsFileError(e))
        {
            throw FileErrors.Write(path, e);
        }
        finally
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); }
            catch (Exception e) when (FileErrors.IsFileError(e)) { }   // the write's own error is the one to report
        }
    }

    /// <summary><c>.NAME.PID.GUID.tmp.EXT</c> beside <paramref name="fullPath"/>: hidden, owned by this process, unique.</summary>
    internal static string TemporaryPath(string fullPath) =>
        Path.Combine(Path.GetDirectoryName(fullPath)!,
            $".{Path.GetFileName(fullPath)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp{Path.GetExtension(fullPath)}");

    [GeneratedRegex(@"^\..+\.(\d+)\.[0-9a-f]{32}\.tmp(\.[A-Za-z0-9]+)?$")]
    private static partial Regex TemporaryName();

    /// <summary>
    /// Deletes this project's temporary files in <paramref name="dir"/> whose writing process is gone
    /// (interrupted by a kill or a crash); once per folder and process, before the first write there.
    /// Files of a running process are left alone: it may still be writing them.
    /// </summary>
    public static int RemoveOrphans(string dir)
    {
        if (!Swept.TryAdd(Path.GetFullPath(dir), true)) return 0;
        int removed = 0;
        try
        {
            foreach (var file in Directory.EnumerateFiles(dir, ".*"))
            {
                var m = TemporaryName().Match(Path.GetFileName(file));
                if (!m.Success || !int.TryParse(m.Groups[1].Value, out int pid) || IsRunning(pid)) continue;
                File.Delete(file);
                removed++;
            }
        }
        catch (Exception e) when (FileErrors.IsFileError(e)) { }   // best effort: a failing folder reports itself on the write
        return removed;
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }
}
