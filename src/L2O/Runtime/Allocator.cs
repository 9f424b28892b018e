using System.Runtime.InteropServices;

namespace L2O.Runtime;

/// <summary>
/// glibc malloc tuning applied once at start-up.
/// </summary>
/// <remarks>
/// Why: by default glibc serves allocations above a (dynamic) threshold with fresh <c>mmap</c>s and
/// returns them to the OS on free. An eager unroll allocates and frees the same large tensors
/// thousands of times, so every step pays page faults and zeroing. Raising the mmap and trim
/// thresholds keeps those blocks in the heap for reuse. Disable with <c>L2O_MALLOC_TUNING=0</c>
/// (the allocator benchmark compares both settings).
/// </remarks>
internal static partial class Allocator
{
    private const int MTrimThreshold = -1;
    private const int MMmapThreshold = -3;

    /// <summary>glibc's upper bound for <c>M_MMAP_THRESHOLD</c> on 64-bit (HEAP_MAX_SIZE / 2).</summary>
    private const int MmapThresholdBytes = 32 * 1024 * 1024;
    private const int TrimThresholdBytes = int.MaxValue;

    public static bool Tuned { get; private set; }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int param, int value);

    public static void Tune()
    {
        if (!OperatingSystem.IsLinux()) return;
        if (Environment.GetEnvironmentVariable("L2O_MALLOC_TUNING") is "0" or "false" or "off") return;
        try
        {
            // mallopt returns 1 on success; musl's stub returns 0 and changes nothing.
            Tuned = MallOpt(MMmapThreshold, MmapThresholdBytes) == 1 & MallOpt(MTrimThreshold, TrimThresholdBytes) == 1;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            Tuned = false;
        }
    }
}
