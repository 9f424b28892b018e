using System.Runtime.InteropServices;

namespace L2O.Runtime;

/// <summary>
/// Turns the exceptions of failed file operations into one-line <see cref="L2OException"/>s that name
/// the path and the cause ("No space left on device", "Read-only file system", "Permission denied").
/// </summary>
public static class FileErrors
{
    /// <summary>True for the exceptions the file system raises (as opposed to bugs).</summary>
    public static bool IsFileError(Exception e) => e is IOException or UnauthorizedAccessException;

    /// <summary>The operating system's reason, without .NET's restatement of the path.</summary>
    public static string Cause(Exception e)
    {
        // On Unix, .NET keeps errno as the HResult of the IOException (inner one for UnauthorizedAccessException).
        var io = e as IOException ?? e.InnerException as IOException;
        if (io is not null && io.HResult is > 0 and < 4096 && io is not FileNotFoundException and not DirectoryNotFoundException)
            return Marshal.GetPInvokeErrorMessage(io.HResult);
        return e switch
        {
            FileNotFoundException or DirectoryNotFoundException => "No such file or directory",
            UnauthorizedAccessException => "Permission denied",
            _ => e.Message,
        };
    }

    /// <summary>"cannot write PATH: cause".</summary>
    public static L2OException Write(string path, Exception e) => new($"cannot write {path}: {Cause(e)}", e);

    /// <summary>"cannot read PATH: cause".</summary>
    public static L2OException Read(string path, Exception e) => new($"cannot read {path}: {Cause(e)}", e);

    /// <summary>Runs a read, reporting a file-system failure as <see cref="Read(string, Exception)"/>.</summary>
    public static void Reading(string path, Action read)
    {
        try
        {
            read();
        }
        catch (Exception e) when (IsFileError(e))
        {
            throw Read(path, e);
        }
    }

    /// <summary>Runs a write, reporting a file-system failure as <see cref="Write(string, Exception)"/>.</summary>
    public static void Writing(string path, Action write)
    {
        try
        {
            write();
        }
        catch (Exception e) when (IsFileError(e))
        {
            throw Write(path, e);
        }
    }
}
