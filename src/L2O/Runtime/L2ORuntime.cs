using System.Runtime.CompilerServices;
using TorchSharp;

namespace L2O.Runtime;

/// <summary>
/// Process-wide set-up: makes TorchSharp loadable (see <see cref="NativeTorchLoader"/>), tunes
/// the allocator (see <see cref="Allocator"/>) and shortens libgomp's spin (see <see cref="OpenMpTuning"/>). Runs automatically when the L2O assembly is first
/// used; applications that call TorchSharp before touching L2O call <see cref="Initialize"/> first.
/// </summary>
public static class L2ORuntime
{
    private static int _initialized;

    // A library module initializer is deliberate: TorchSharp must not be touched before the resolver exists.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Must run before any TorchSharp P/Invoke.")]
    [ModuleInitializer]
    internal static void OnModuleLoad() => Initialize();

    /// <summary>The library's version (major.minor.patch), as written into checkpoints and reports.</summary>
    public static string Version => typeof(L2ORuntime).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>Idempotent; cheap after the first call.</summary>
    public static void Initialize()
    {
        if (Interlocked.Exchange(ref _initialized, 1) == 1) return;
        Allocator.Tune();
        OpenMpTuning.Tune();
        NativeTorchLoader.Register();
    }

    /// <summary>How the native bridge was loaded, whether malloc and OpenMP were tuned, libtorch version and threads.</summary>
    public static string Describe()
    {
        Initialize();
        return $"libtorch {torch.__version__}; native: {NativeTorchLoader.Status}; malloc tuned: {Allocator.Tuned}; OpenMP spin: {OpenMpTuning.Status}; " +
               $"threads: {torch.get_num_threads()}; CUDA available: {torch.cuda.is_available()}";
    }

    /// <summary>
    /// Loads libtorch now, turning a load failure into one clear message instead of TorchSharp's multi-page trace.
    /// </summary>
    public static void EnsureTorch()
    {
        Initialize();
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
        }
        catch (Exception e) when (e is NotSupportedException or DllNotFoundException or TypeInitializationException)
        {
            throw new L2OException($"TorchSharp could not load libtorch ({NativeTorchLoader.Status}).", e);
        }
    }
}
