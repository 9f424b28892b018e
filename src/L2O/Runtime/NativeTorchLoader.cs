using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace L2O.Runtime;

/// <summary>
/// Makes TorchSharp's native bridge load on systems whose libstdc++ is older than the one it was
/// linked against (Debian 12: GLIBCXX_3.4.30 available, 3.4.32 requested).
/// </summary>
/// <remarks>
/// A DllImport resolver is registered on the TorchSharp assembly. For <c>LibTorchSharp</c> it first
/// loads the shipped library unchanged. Only when the dynamic loader reports a missing symbol
/// version required by that very library does it write a copy with those version needs marked
/// weak (see <see cref="ElfVersionPatcher"/>) into L2O's cache folder and load the copy. Files of
/// the build output or the NuGet cache are never modified.
/// </remarks>
internal static partial class NativeTorchLoader
{
    private const string BridgeName = "LibTorchSharp";
    private const string BridgeFile = "libLibTorchSharp.so";
    private static readonly Lock Gate = new();
    private static int _registered;
    private static IntPtr _handle;

    /// <summary>What the loader did, for diagnostics (<c>l2o info</c>).</summary>
    public static string Status { get; private set; } = "not loaded yet";

    [GeneratedRegex(@"version [`'](?<version>[^`']+)' not found \(required by (?<by>[^)]+)\)")]
    private static partial Regex MissingVersion();

    public static void Register()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref _registered, 1) == 1) return;
        var torchAssembly = typeof(TorchSharp.torch).Assembly;
        // TorchSharp probes with NativeLibrary.TryLoad(name, assembly, ...), which skips per-assembly
        // resolvers but raises ResolvingUnmanagedDll when default probing fails; its P/Invokes
        // consult the per-assembly resolver. Both routes end in the same cached handle.
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += (assembly, name) =>
            assembly == torchAssembly ? Resolve(name, assembly, null) : IntPtr.Zero;
        try
        {
            NativeLibrary.SetDllImportResolver(torchAssembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // Another component registered a resolver first; the ResolvingUnmanagedDll route still applies.
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != BridgeName) return IntPtr.Zero;
        lock (Gate)
        {
            if (_handle != IntPtr.Zero) return _handle;
            string? original = FindShippedBridge(assembly);
            if (original is null)
            {
                Status = "shipped libLibTorchSharp.so not found next to the application; default probing used";
                return IntPtr.Zero;
            }
            _handle = LoadWithFix(original);
            return _handle;
        }
    }

    private static string? FindShippedBridge(Assembly torchAssembly)
    {
        string rid = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64";
        var roots = new[] { AppContext.BaseDirectory, Path.GetDirectoryName(torchAssembly.Location) ?? "" }
            .Where(r => r.Length > 0).Distinct();
        foreach (var root in roots)
        {
            foreach (var candidate in new[] { Path.Combine(root, "runtimes", rid, "native", BridgeFile), Path.Combine(root, BridgeFile) })
                if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static IntPtr LoadWithFix(string original)
    {
        string? error = TryLoad(original, out var handle);
        if (error is null)
        {
            Status = $"loaded {original} unchanged";
            return handle;
        }

        var weak = new HashSet<string>(StringComparer.Ordinal);
        string current = original;
        for (int attempt = 0; attempt < 8; attempt++)
        {
            var m = MissingVersion().Match(error!);
            if (!m.Success || !SameFile(m.Groups["by"].Value.Trim(), current))
            {
                Status = $"could not load {original}: {error}";
                return IntPtr.Zero;
            }
            if (!weak.Add(m.Groups["version"].Value))
            {
                Status = $"could not load {original} even with weak version needs: {error}";
                return IntPtr.Zero;
            }
            current = WritePatchedCopy(original, weak);
            PreloadDependencies(original);
            error = TryLoad(current, out handle);
            if (error is null)
            {
                Status = $"loaded patched copy {current} (weak version needs: {string.Join(", ", weak)})";
                return handle;
            }
        }
        Status = $"could not load {original}: {error}";
        return IntPtr.Zero;
    }

    private static string? TryLoad(string path, out IntPtr handle)
    {
        handle = IntPtr.Zero;
        try
        {
            handle = NativeLibrary.Load(path);
            return null;
        }
        catch (DllNotFoundException e)
        {
            return e.Message;
        }
        catch (BadImageFormatException e)
        {
            return e.Message;
        }
    }

    private static bool SameFile(string reported, string path) =>
        string.Equals(Path.GetFullPath(reported), Path.GetFullPath(path), StringComparison.Ordinal)
        || Path.GetFileName(reported).StartsWith("libLibTorchSharp", StringComparison.Ordinal);

    /// <summary>
    /// The copy lives outside the libtorch folder, so its <c>$ORIGIN</c> run path no longer finds
    /// libtorch; loading libtorch from the original folder first satisfies the copy's needs by soname.
    /// </summary>
    private static void PreloadDependencies(string original)
    {
        string dir = Path.GetDirectoryName(original)!;
        foreach (var dep in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
        {
            string path = Path.Combine(dir, dep);
            if (File.Exists(path)) NativeLibrary.TryLoad(path, out _);
        }
    }

    private static string WritePatchedCopy(string original, IReadOnlySet<string> weak)
    {
        byte[] image = File.ReadAllBytes(original);
        string tag = Convert.ToHexString(SHA256.HashData(image))[..16].ToLowerInvariant();
        string weakTag = Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join(";", weak.Order()))))[..8].ToLowerInvariant();
        int changed = ElfVersionPatcher.MarkWeak(image, weak, original);
        if (changed == 0) throw new InvalidOperationException($"{original}: none of the versions {string.Join(", ", weak)} appear in .gnu.version_r.");
        // The cache folder first; a temporary folder when the home directory is read-only.
        foreach (var root in new[] { L2OPaths.CacheDirectory, Path.Combine(Path.GetTempPath(), $"l2o-{Environment.UserName}") })
        {
            string target = Path.Combine(root, "native", $"{tag}-{weakTag}", BridgeFile);
            try
            {
                if (!File.Exists(target)) AtomicFile.WriteAllBytes(target, image);
                return target;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Status = $"cannot write {target}: {e.Message}";
            }
        }
        throw new IOException($"no writable folder for the patched copy of {original} ({Status})");
    }
}
