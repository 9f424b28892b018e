namespace L2O.Learned;

/// <summary>
/// The arithmetic a coordinatewise learned rule needs, counted from its definition (the meta-parameter
/// schema), as the bound against which the fused engine is measured (issue #11).
/// </summary>
/// <remarks>
/// Every two-dimensional meta-parameter of the coordinatewise methods (HyperAdam, RNNprop,
/// DMoptimizer and the thesis's combiners) is a weight matrix W (out × in) that each coordinate's
/// network applies once per step: 2·out·in floating-point operations (a multiply and an add per
/// entry). Biases and the elementwise work (gates, σ, tanh, e^x − 1, the Adam recursions) are left
/// out, so the count is a lower bound: for HyperAdam with J = 20 it is 10 440 per coordinate per step
/// (the pre-layer 20 × 1, the LSTM's 80 × 20 twice, the two 20 × 40 decay layers and the 20 × 20
/// weight layer), for RNNprop 12 920, for DMoptimizer 9 960. A first-order meta-gradient costs about
/// three forwards more: the forward recomputed in the backward (docs/engine.md) and, per product,
/// one for the input's adjoint and one for the weight's gradient.
/// </remarks>
public static class FlopModel
{
    /// <summary>Operations per product pass (forward) per coordinate per step: Σ over matrices 2·out·in.</summary>
    public static long ForwardFlopsPerCoordinate(IEnumerable<MetaParameter> schema) =>
        schema.Where(m => m.Shape.Length == 2).Sum(m => 2 * m.Shape[0] * m.Shape[1]);

    /// <inheritdoc cref="ForwardFlopsPerCoordinate(IEnumerable{MetaParameter})"/>
    public static long ForwardFlopsPerCoordinate(LearnedOptimizer learned) => ForwardFlopsPerCoordinate(learned.Schema);

    /// <summary>Forward, recomputed forward and the two backward products: 4 × <see cref="ForwardFlopsPerCoordinate(IEnumerable{MetaParameter})"/>.</summary>
    public static long MetaGradientFlopsPerCoordinate(IEnumerable<MetaParameter> schema) => 4 * ForwardFlopsPerCoordinate(schema);
}
