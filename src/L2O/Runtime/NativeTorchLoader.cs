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
                Status = "shipped libLibTorchSharp.so not found next to the application or in the NuGet cache; default probing used";
                return IntPtr.Zero;
            }
            // From the NuGet cache layout (F# scripts, notebooks) libtorch lives in its own package, not next
            // to the bridge, so the bridge's $ORIGIN run path cannot find it: load it by path first.
            string? libtorch = FindLibTorch(original, assembly);
            if (libtorch is null)
            {
                Status = $"found {original}, but no libtorch.so next to it, next to the application or in the NuGet cache";
                Report("no libtorch is installed", "add a libtorch package to the project, e.g. <PackageReference Include=\"libtorch-cpu-linux-x64\" Version=\"2.10.0\" /> (or TorchSharp-cpu / TorchSharp-cuda-linux)");
                return IntPtr.Zero;
            }
            string libtorchDir = Path.GetDirectoryName(libtorch)!;
            if (libtorchDir != Path.GetDirectoryName(original)) PreloadDependencies(libtorchDir);
            _handle = LoadWithFix(original, libtorchDir);
            if (_handle == IntPtr.Zero)
                Report(Status, "see docs/runtime.md of L2O.NET; set L2O_CACHE_DIR to a writable folder if the cache folder is read-only");
            return _handle;
        }
    }

    /// <summary>
    /// One line on standard error, ahead of TorchSharp's multi-page TypeInitializationException, naming the
    /// cause and the fix (<see cref="L2ORuntime.EnsureTorch"/> turns the same status into an L2OException).
    /// </summary>
    private static void Report(string cause, string fix) =>
        Console.Error.WriteLine($"L2O: TorchSharp's native library did not load: {cause}. Fix: {fix}.");

    /// <summary>The application folder, TorchSharp's folder, or TorchSharp's NuGet package (lib/TFM → runtimes/RID/native).</summary>
    private static string? FindShippedBridge(Assembly torchAssembly)
    {
        foreach (var root in Roots(torchAssembly))
        {
            foreach (var candidate in new[] { Path.Combine(root, "runtimes", Rid, "native", BridgeFile), Path.Combine(root, BridgeFile) })
                if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>libtorch.so next to the bridge or the application, else the newest libtorch package in the NuGet cache.</summary>
    private static string? FindLibTorch(string bridge, Assembly torchAssembly)
    {
        var near = new[] { Path.GetDirectoryName(bridge)! }
            .Concat(Roots(torchAssembly).SelectMany(r => new[] { Path.Combine(r, "runtimes", Rid, "native"), r }));
        foreach (var dir in near)
            if (File.Exists(Path.Combine(dir, "libtorch.so"))) return Path.Combine(dir, "libtorch.so");
        // NuGet cache: <packages>/torchsharp/<version>/lib/<tfm>/TorchSharp.dll next to <packages>/libtorch-*-linux-x64/<version>/runtimes/linux-x64/native.
        string torchDir = Path.GetDirectoryName(torchAssembly.Location) ?? "";
        if (torchDir.Length == 0) return null;
        string packages = Path.GetFullPath(Path.Combine(torchDir, "..", "..", "..", ".."));
        if (!Directory.Exists(packages)) return null;
        return Directory.EnumerateDirectories(packages, $"libtorch-*-{Rid}")
            .SelectMany(Directory.EnumerateDirectories)
            .Where(v => File.Exists(Path.Combine(v, "runtimes", Rid, "native", "libtorch.so")))
            .OrderByDescending(v => Version.TryParse(Path.GetFileName(v), out var version) ? version : new Version())
            .Select(v => Path.Combine(v, "runtimes", Rid, "native", "libtorch.so"))
            .FirstOrDefault();
    }

    private static string Rid => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64";

    private static IEnumerable<string> Roots(Assembly torchAssembly)
    {
        string torchDir = Path.GetDirectoryName(torchAssembly.Location) ?? "";
        string package = torchDir.Length > 0 ? Path.GetFullPath(Path.Combine(torchDir, "..", "..")) : "";
        return new[] { AppContext.BaseDirectory, torchDir, package }.Where(r => r.Length > 0).Distinct();
    }

    private static IntPtr LoadWithFix(string original, string libtorchDir)
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
            PreloadDependencies(libtorchDir);
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
    /// libtorch; loading libtorch from its folder first satisfies the copy's needs by soname.
    /// </summary>
    private static void PreloadDependencies(string dir)
    {
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
