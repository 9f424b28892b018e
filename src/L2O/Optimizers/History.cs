using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Optimizers;

/// <summary>How the thesis's history matrices H_x and H_∇L (n×k) are kept (Shahid 2017, ch. 3).</summary>
public enum HistoryKind
{
    /// <summary>"k Timesteps" (§3.4): the last k values, a queue filled with copies of the first value.</summary>
    Timesteps,
    /// <summary>"k Momentums" (§3.5, Alg. 3): k moving averages H ← m·H + (1−m)·u at fixed timescales m.</summary>
    Momentums,
}

/// <summary>Where the thesis's update shoots from: x_ref in eqs. 3.4 / 3.5.</summary>
public enum ReferencePoint
{
    /// <summary>x_ref = (max H_x + min H_x)/2 (eq. 3.1, used with k Timesteps).</summary>
    Midpoint,
    /// <summary>x_ref = x_t (eq. 3.5, used with k Momentums).</summary>
    Current,
}

/// <summary>
/// Shared mathematics of the thesis's "learning to optimize with normalized inputs" family:
/// history updates, the ∞-norm row normalisation of H_∇L, and the reference-point update
/// x_{t+1} = x_ref − δ ⊙ (x_diff + η_min) (Alg. 1 line 22 / Alg. 2; x_diff = max H_x − min H_x).
/// Used by <see cref="Mng"/> and by the learned k-Timesteps / k-Momentums optimizers.
/// </summary>
public static class ThesisHistory
{
    /// <summary>Linearly spaced timescales as in §3.5.2 (e.g. k = 6 from 0.2 to 0.99).</summary>
    public static double[] LinearTimescales(int k, double lo, double hi) =>
        k == 1 ? [lo] : Enumerable.Range(0, k).Select(i => lo + (hi - lo) * i / (k - 1)).ToArray();

    /// <summary>History after seeing <paramref name="value"/> (shape (n)); <paramref name="history"/> is null at the first step.</summary>
    /// <param name="timescales">Momentum timescales m (length k); only used by <see cref="HistoryKind.Momentums"/>.</param>
    public static Tensor Push(Tensor? history, Tensor value, int k, HistoryKind kind, Tensor? timescales)
    {
        var column = value.unsqueeze(1);                      // (n, 1)
        if (history is null) return column.expand(-1, k).clone(); // populate(): k copies of the first value
        return kind switch
        {
            HistoryKind.Timesteps => cat([history.narrow(1, 1, k - 1), column], 1),   // pop oldest, push newest
            HistoryKind.Momentums => (history * timescales!).Plus(column * timescales!.SubtractedFrom(1)),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
    }

    /// <summary>The floor under a row's ∞-norm (the reference and the fused cell).</summary>
    internal const double RowFloor = 1e-30;

    /// <summary>
    /// Rows of <paramref name="gradHistory"/> divided by their ∞-norm (Alg. 2 lines 15–16); an all-zero row stays zero.
    /// </summary>
    public static Tensor Normalize(Tensor gradHistory)
    {
        var rowMax = gradHistory.abs().amax([1], keepdim: true);
        // A zero row would give 0/0; dividing by a tiny floor keeps it zero and its gradient finite.
        return gradHistory / rowMax.ClampMin(RowFloor);
    }

    /// <summary>x_{t+1} − x_t for the reference-point update with step δ (shape (n)).</summary>
    public static Tensor ReferenceUpdate(Tensor x, Tensor xHistory, Tensor delta, ReferencePoint reference, double etaMin)
    {
        var xMax = xHistory.amax([1]);
        var xMin = xHistory.amin([1]);
        var xRef = reference == ReferencePoint.Midpoint ? xMax.Plus(xMin).Times(0.5) : x;
        var next = xRef - delta * (xMax - xMin).Plus(etaMin);
        return next - x;
    }
}
