using System.Runtime.InteropServices;
using L2O.Runtime;

namespace L2O.Data;

/// <summary>
/// File access for readers of untrusted files: only regular files are opened (a FIFO would block the
/// open forever, a device would stream without end), sizes are bounded, and failures are
/// <see cref="DataFormatException"/>s naming the file.
/// </summary>
internal static partial class DataFiles
{
    /// <summary>Opens <paramref name="path"/> for reading after checking that it is an existing regular file.</summary>
    public static FileStream OpenRegular(string path)
    {
        CheckRegular(path);
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (FileErrors.IsFileError(e))
        {
            throw new DataFormatException(path, $"cannot be opened: {FileErrors.Cause(e)}");
        }
    }

    /// <summary>The whole file, refused when larger than <paramref name="maxBytes"/> (checked before reading).</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes = int.MaxValue)
    {
        using var fs = OpenRegular(path);
        try
        {
            if (fs.Length > maxBytes)
                throw new DataFormatException(path, $"is {fs.Length} bytes, more than the {maxBytes} this reader accepts");
            var bytes = new byte[fs.Length];
            fs.ReadExactly(bytes);
            return bytes;
        }
        catch (EndOfStreamException)
        {
            throw new DataFormatException(path, "became shorter while it was read");
        }
        catch (Exception e) when (FileErrors.IsFileError(e))
        {
            throw new DataFormatException(path, $"cannot be read: {FileErrors.Cause(e)}");
        }
    }

    /// <exception cref="DataFormatException">Missing, a directory, or not a regular file (FIFO, device, socket).</exception>
    public static void CheckRegular(string path)
    {
        if (Directory.Exists(path)) throw new DataFormatException(path, "is a directory, not a file");
        if (!File.Exists(path)) throw new DataFormatException(path, "does not exist");
        if (Kind(path) is string kind) throw new DataFormatException(path, $"is a {kind}, not a regular file");
    }

    /// <summary>What a non-regular file is ("FIFO", "character device", ...), or null for a regular file (or where this cannot be told).</summary>
    private static string? Kind(string path)
    {
        if (OperatingSystem.IsWindows()) return null;
        try
        {
            // .NET's public API cannot tell a FIFO from a file, so ask the runtime's own native shim (shipped with
            // every .NET runtime), whose portable stat record starts with flags and then st_mode.
            if (Stat(path, out var status) != 0) return null;
            return (status.Mode & 0xF000) switch
            {
                0x8000 => null,
                0x1000 => "FIFO",
                0x2000 => "character device",
                0x6000 => "block device",
                0xC000 => "socket",
                0x4000 => "directory",
                _ => "special file",
            };
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_Stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, out FileStatus status);

    /// <summary>The leading fields of System.Native's <c>FileStatus</c>; padded well beyond its real size.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    private struct FileStatus
    {
        public int Flags;
        public int Mode;
    }
}
