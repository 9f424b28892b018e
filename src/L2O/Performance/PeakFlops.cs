using System.Diagnostics;
using System.Runtime.Intrinsics;

namespace L2O.Performance;

/// <summary>
/// The float32 fused-multiply-add rate this machine reaches with everything in registers, measured:
/// the denominator of the FLOP bounds that <c>l2o bench</c> prints beside its timings
/// (<see cref="Learned.FlopModel"/>). It is an upper limit no kernel with loads reaches.
/// </summary>
public static class PeakFlops
{
    /// <summary>Independent accumulators per thread: enough to hide the FMA latency (4 cycles) on two ports.</summary>
    private const int Chains = 12;

    /// <summary>Operations per second (an FMA counts 2) on <paramref name="threads"/> threads, the best of three timings of about <paramref name="seconds"/> each.</summary>
    public static double Measure(int threads, double seconds = 0.1)
    {
        if (threads < 1) throw new L2OException($"threads must be >= 1 (got {threads})");
        long iterations = 1 << 16;
        // Calibrate on one thread so that a timing lasts about the requested time.
        while (Time(1, iterations).Elapsed < seconds / 4 && iterations < 1L << 40) iterations *= 2;
        iterations = (long)(iterations * (seconds / Math.Max(1e-6, Time(1, iterations).Elapsed)));
        double best = 0;
        for (int k = 0; k < 3; k++)
        {
            var (elapsed, flopsPerIteration) = Time(threads, iterations);
            best = Math.Max(best, threads * iterations * flopsPerIteration / elapsed);
        }
        return best;
    }

    private static (double Elapsed, double FlopsPerIteration) Time(int threads, long iterations)
    {
        var sink = new float[threads];
        double lanes = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;
        var watch = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            sink[t] = Vector512.IsHardwareAccelerated ? Run512(iterations) : Vector256.IsHardwareAccelerated ? Run256(iterations) : Run128(iterations));
        double elapsed = watch.Elapsed.TotalSeconds;
        GC.KeepAlive(sink);
        return (elapsed, 2 * Chains * lanes);
    }

    private static float Run512(long n)
    {
        var a = Vector512.Create(0.999f);
        var b = Vector512.Create(1e-3f);
        Vector512<float> c0 = b, c1 = b, c2 = b, c3 = b, c4 = b, c5 = b, c6 = b, c7 = b, c8 = b, c9 = b, c10 = b, c11 = b;
        for (long i = 0; i < n; i++)
        {
            c0 = Vector512.FusedMultiplyAdd(c0, a, b); c1 = Vector512.FusedMultiplyAdd(c1, a, b); c2 = Vector512.FusedMultiplyAdd(c2, a, b);
            c3 = Vector512.FusedMultiplyAdd(c3, a, b); c4 = Vector512.FusedMultiplyAdd(c4, a, b); c5 = Vector512.FusedMultiplyAdd(c5, a, b);
            c6 = Vector512.FusedMultiplyAdd(c6, a, b); c7 = Vector512.FusedMultiplyAdd(c7, a, b); c8 = Vector512.FusedMultiplyAdd(c8, a, b);
            c9 = Vector512.FusedMultiplyAdd(c9, a, b); c10 = Vector512.FusedMultiplyAdd(c10, a, b); c11 = Vector512.FusedMultiplyAdd(c11, a, b);
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    private static float Run256(long n)
    {
        var a = Vector256.Create(0.999f);
        var b = Vector256.Create(1e-3f);
        Vector256<float> c0 = b, c1 = b, c2 = b, c3 = b, c4 = b, c5 = b, c6 = b, c7 = b, c8 = b, c9 = b, c10 = b, c11 = b;
        for (long i = 0; i < n; i++)
        {
            c0 = Vector256.FusedMultiplyAdd(c0, a, b); c1 = Vector256.FusedMultiplyAdd(c1, a, b); c2 = Vector256.FusedMultiplyAdd(c2, a, b);
            c3 = Vector256.FusedMultiplyAdd(c3, a, b); c4 = Vector256.FusedMultiplyAdd(c4, a, b); c5 = Vector256.FusedMultiplyAdd(c5, a, b);
            c6 = Vector256.FusedMultiplyAdd(c6, a, b); c7 = Vector256.FusedMultiplyAdd(c7, a, b); c8 = Vector256.FusedMultiplyAdd(c8, a, b);
            c9 = Vector256.FusedMultiplyAdd(c9, a, b); c10 = Vector256.FusedMultiplyAdd(c10, a, b); c11 = Vector256.FusedMultiplyAdd(c11, a, b);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    private static float Run128(long n)
    {
        var a = Vector128.Create(0.999f);
        var b = Vector128.Create(1e-3f);
        Vector128<float> c0 = b, c1 = b, c2 = b, c3 = b, c4 = b, c5 = b, c6 = b, c7 = b, c8 = b, c9 = b, c10 = b, c11 = b;
        for (long i = 0; i < n; i++)
        {
            c0 = Vector128.FusedMultiplyAdd(c0, a, b); c1 = Vector128.FusedMultiplyAdd(c1, a, b); c2 = Vector128.FusedMultiplyAdd(c2, a, b);
            c3 = Vector128.FusedMultiplyAdd(c3, a, b); c4 = Vector128.FusedMultiplyAdd(c4, a, b); c5 = Vector128.FusedMultiplyAdd(c5, a, b);
            c6 = Vector128.FusedMultiplyAdd(c6, a, b); c7 = Vector128.FusedMultiplyAdd(c7, a, b); c8 = Vector128.FusedMultiplyAdd(c8, a, b);
            c9 = Vector128.FusedMultiplyAdd(c9, a, b); c10 = Vector128.FusedMultiplyAdd(c10, a, b); c11 = Vector128.FusedMultiplyAdd(c11, a, b);
        }
        return Vector128.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }
}
