using L2O.Learned;

namespace L2O.Engine;

/// <summary>
/// What the two HyperAdam cells (<see cref="HyperAdamCell{T}"/>, rows layout, and
/// <see cref="HyperAdamLanesCell{T}"/>, lanes layout) share whatever their layout: the order of the
/// per-coordinate state fields and the step's global factors.
/// </summary>
internal readonly record struct HyperAdamFields(int H, int C, int M, int V, int BetaHat, int GammaHat, int[] Widths)
{
    /// <summary>State fields in the reference's order: (s, c) of the LSTM when it is used, then m, v, β̂, γ̂; each J wide.</summary>
    public static HyperAdamFields Of(HyperAdamOptions options)
    {
        int f = 0, h = -1, c = -1;
        if (options.UseLstm) { h = f++; c = f++; }
        int m = f++, v = f++, betaHat = f++, gammaHat = f++;
        return new HyperAdamFields(h, c, m, v, betaHat, gammaHat, Enumerable.Repeat(options.Candidates, f).ToArray());
    }

    /// <summary>
    /// Writes the step's globals: [1/‖g‖, 1/n, pad…, 1/‖m_j‖ per column from <paramref name="columnNormsOffset"/>].
    /// input-norm=rms divides the sums by n = p (<see cref="InputNorm.Rms"/>); the backward of m·c(m),
    /// c = (Σm²/n + ε)^−½, is c ā − m c³ R / n, so 1/n travels with the column factors.
    /// </summary>
    public static void Globals(HyperAdamOptions options, long p, double gradientSquaredNorm, ReadOnlySpan<double> columnSquaredNorms,
                               int columnNormsOffset, Span<float> globals)
    {
        globals.Clear();
        double n = options.InputNorm == InputNorm.Rms ? p : 1;
        globals[0] = (float)(1 / Math.Sqrt(gradientSquaredNorm / n + Cells.NormGuard));
        globals[1] = (float)(1 / n);
        ColumnFactors(options, p, columnSquaredNorms, globals[columnNormsOffset..]);
    }

    /// <summary>1/√(Σ_i x_ij² / n + guard) per column j from the column sums of squares (<c>Cells.SafeNormalize</c> along the coordinates).</summary>
    public static void ColumnFactors(HyperAdamOptions options, long p, ReadOnlySpan<double> columnSquaredNorms, Span<float> factors)
    {
        double n = options.InputNorm == InputNorm.Rms ? p : 1;
        for (int i = 0; i < options.Candidates; i++) factors[i] = (float)(1 / Math.Sqrt(columnSquaredNorms[i] / n + Cells.NormGuard));
    }
}
