namespace L2O.Runtime;

/// <summary>
/// Lets the garbage collector free TorchSharp's finalizer-only native objects during long tensor loops.
/// </summary>
/// <remarks>
/// Why: TorchSharp frees the native part of a <c>Scalar</c> (one is made by every implicit number →
/// Scalar conversion: <c>1 - x</c>, <c>x * lr</c>, <c>clamp_min(eps)</c>, <c>addmm(…, 1, 1)</c>) only in
/// its finalizer, and dispose scopes do not track Scalars. A step of tensor work allocates almost
/// nothing managed, so the GC may not run for thousands of steps. Meanwhile those small native blocks
/// sit between the large tensor blocks freed every step and keep glibc from coalescing and reusing
/// them: the heap grows by megabytes per step while the live tensor count stays flat (HyperAdam and
/// RNNprop on the reference path; docs/reliability.md). A generation-0 collection every few steps
/// costs well under a millisecond (the managed heap is tiny) and hands them to the finalizer thread.
/// </remarks>
public static class NativeGarbage
{
    /// <summary>Steps between collections.</summary>
    public const int Interval = 8;

    /// <summary>Call once per step with the step's index: collects generation 0 every <see cref="Interval"/> steps.</summary>
    public static void AfterStep(long step)
    {
        if (step % Interval == Interval - 1) Collect();
    }

    /// <summary>
    /// Collects generation 0 now (after work of many steps, such as a meta-training unroll); inside a
    /// <see cref="Concurrent"/> section the collection waits for the section's end.
    /// </summary>
    public static void Collect()
    {
        if (Volatile.Read(ref s_concurrent) == 0) GC.Collect(0);
    }

    private static int s_concurrent;

    /// <summary>Managed allocation allowed without a collection inside a <see cref="Concurrent"/> section.</summary>
    private const long NoCollectionBytes = 64L << 20;

    /// <summary>
    /// Marks a section in which several threads run TorchSharp at once (meta-training workers); dispose it when they
    /// have all finished. Inside it no collection is started by <see cref="Collect"/>, and the runtime is asked for none
    /// at all (<see cref="GC.TryStartNoGCRegion(long)"/>, 64 MB of managed allocation); one generation-0 collection runs
    /// at the end.
    /// </summary>
    /// <remarks>
    /// Why: TorchSharp passes an implicit Scalar's handle to native code without keeping the Scalar alive
    /// (<c>a + b</c> is <c>add(b, 1)</c>), so a collection started on one thread can finalize a Scalar that another
    /// thread's native call is still reading; libtorch then fails with "Expected false to be true … toFloat". With one
    /// thread a collection never overlaps its own native calls. If the section allocates more than the budget the
    /// runtime collects anyway, so this makes the race rare rather than impossible.
    /// </remarks>
    public static IDisposable Concurrent()
    {
        Interlocked.Increment(ref s_concurrent);
        bool noCollection = false;
        try { noCollection = GC.TryStartNoGCRegion(NoCollectionBytes); }
        catch (InvalidOperationException) { }   // already in such a region (a nested section)
        return new Section(noCollection);
    }

    private sealed class Section(bool noCollection) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
            if (noCollection && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion)
            {
                try { GC.EndNoGCRegion(); }
                catch (InvalidOperationException) { }   // the budget was exceeded and the runtime already collected
            }
            Interlocked.Decrement(ref s_concurrent);
            Collect();
        }
    }
}
