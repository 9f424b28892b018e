using System.Runtime.InteropServices;

namespace L2O.Runtime;

/// <summary>
/// glibc malloc tuning applied once at start-up.
/// </summary>
/// <remarks>
/// Why: by default glibc serves allocations above a (dynamic) threshold with fresh <c>mmap</c>s and
/// returns them to the OS on free. An eager unroll allocates and frees the same large tensors
/// thousands of times, so every step pays page faults and zeroing. Raising the mmap and trim
/// thresholds keeps those blocks in the heap for reuse. The threshold cannot go above 32 MiB, and
/// larger blocks were still mapped and unmapped at every allocation, so mmap is switched off
/// (<c>M_MMAP_MAX = 0</c>; the reference update on CNN-2 got 15 % faster): the main arena serves every
/// block from its heap, another thread's arena those up to its 64 MiB heaps (glibc maps larger ones
/// there regardless, which is why the fused engine keeps its state in 16 MiB chunks). Disable all of
/// it with <c>L2O_MALLOC_TUNING=0</c> (the allocator benchmark compares both settings;
/// docs/runtime.md has the figures).
/// </remarks>
internal static partial class Allocator
{
    private const int MTrimThreshold = -1;
    private const int MMmapThreshold = -3;
    private const int MMmapMax = -4;

    /// <summary>glibc's upper bound for <c>M_MMAP_THRESHOLD</c> on 64-bit (HEAP_MAX_SIZE / 2).</summary>
    private const int MmapThresholdBytes = 32 * 1024 * 1024;
    private const int TrimThresholdBytes = int.MaxValue;

    public static bool Tuned { get; private set; }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int param, int value);

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo2 MallInfo();

    /// <summary>glibc's <c>struct mallinfo2</c> (glibc 2.33 and later).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    /// <summary>Bytes glibc holds in mmapped blocks now (<c>mallinfo2().hblkhd</c>); null off glibc.</summary>
    public static long? MappedBytes() => Info() is { } info ? (long)info.HBlkHd : null;

    /// <summary>
    /// Bytes the program holds from glibc now, over all arenas: blocks in use plus mmapped blocks
    /// (<c>mallinfo2().uordblks + hblkhd</c>); null off glibc. Unlike resident memory it does not count
    /// freed blocks an arena keeps for reuse, so it rises only with memory that is really held.
    /// </summary>
    public static long? InUseBytes() => Info() is { } info ? (long)(info.UordBlks + info.HBlkHd) : null;

    /// <summary><c>mallinfo2()</c>, or null off glibc.</summary>
    private static MallInfo2? Info()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try { return MallInfo(); }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException) { return null; }
    }

    /// <summary>Whether <c>L2O_MALLOC_TUNING</c> turns the tuning off (0, false or off).</summary>
    public static bool TurnedOff => Environment.GetEnvironmentVariable("L2O_MALLOC_TUNING") is "0" or "false" or "off";

    public static void Tune()
    {
        if (!OperatingSystem.IsLinux()) return;
        if (TurnedOff) return;
        try
        {
            // mallopt returns 1 on success; musl's stub returns 0 and changes nothing.
            Tuned = MallOpt(MMmapThreshold, MmapThresholdBytes) == 1 & MallOpt(MTrimThreshold, TrimThresholdBytes) == 1
                & MallOpt(MMmapMax, 0) == 1;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            Tuned = false;
        }
    }
}
