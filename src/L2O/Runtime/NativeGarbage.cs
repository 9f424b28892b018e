namespace L2O.Runtime;

/// <summary>
/// Lets the garbage collector free TorchSharp's finalizer-only native objects during long tensor loops.
/// </summary>
/// <remarks>
/// Why: TorchSharp frees the native part of a <c>Scalar</c> (one is made by every implicit number →
/// Scalar conversion: <c>1 - x</c>, <c>x * lr</c>, <c>clamp_min(eps)</c>) only in its finalizer, and
/// dispose scopes do not track Scalars. The library's own Scalars are disposed after their call
/// (<see cref="KeptScalars"/>); a caller's code and TorchSharp's modules still leave theirs to the finalizer. A step of tensor work allocates almost
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

    /// <summary>Collects generation 0 now (after work of many steps, such as a meta-training unroll).</summary>
    /// <remarks>Safe while other threads run TorchSharp: every Scalar the library makes outlives its call (<see cref="KeptScalars"/>).</remarks>
    public static void Collect() => GC.Collect(0);
}
