using System.Runtime.InteropServices;

namespace L2O.Runtime;

/// <summary>
/// Shortens how long libtorch's OpenMP workers spin after each parallel region, set once at start-up
/// before libtorch (and with it libgomp) loads.
/// </summary>
/// <remarks>
/// Why: libgomp's idle workers busy-wait for <c>GOMP_SPINCOUNT</c> iterations (300 000 by default) of a
/// pause instruction before they sleep; on the AMD machine this project runs on that is milliseconds. The
/// fused engine runs its own threads right after libtorch computes the optimizee's gradient, so a worker
/// still spinning holds the core the engine's second thread needs: `perf` showed 29 % of a two-thread
/// evaluation's samples in libgomp's spin loop. 10 000 iterations keep back-to-back libtorch operations
/// fast (their workers are still awake) and give the core up within microseconds (docs/performance.md has
/// the measurements). Nothing is changed when the user set <c>GOMP_SPINCOUNT</c> or
/// <c>OMP_WAIT_POLICY</c>, or <c>L2O_OMP_TUNING=0</c>; libraries loaded before L2O's module initializer
/// are not affected (libgomp reads its environment once, when it loads).
/// </remarks>
internal static partial class OpenMpTuning
{
    /// <summary>The spin count L2O sets; measured best of 3 000 / 10 000 / 30 000 / default (docs/performance.md).</summary>
    public const string SpinCount = "10000";

    /// <summary>What happened at start-up, for <c>l2o info</c>: the value set, the user's own setting, or why nothing was set.</summary>
    public static string Status { get; private set; } = "not run";

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>Whether <c>L2O_OMP_TUNING</c> turns the tuning off (0, false or off).</summary>
    public static bool TurnedOff => Environment.GetEnvironmentVariable("L2O_OMP_TUNING") is "0" or "false" or "off";

    public static void Tune()
    {
        if (!OperatingSystem.IsLinux()) { Status = "not Linux"; return; }
        if (TurnedOff) { Status = "off (L2O_OMP_TUNING)"; return; }
        foreach (var name in new[] { "GOMP_SPINCOUNT", "OMP_WAIT_POLICY" })
            if (Environment.GetEnvironmentVariable(name) is string own) { Status = $"{name}={own} (yours)"; return; }
        try
        {
            // .NET's Environment.SetEnvironmentVariable does not reach native getenv on Unix; libc's setenv does.
            Status = SetEnv("GOMP_SPINCOUNT", SpinCount, 0) == 0 ? $"GOMP_SPINCOUNT={SpinCount}" : "setenv failed";
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            Status = "no libc setenv";
        }
    }
}
