using L2O.Learned;

namespace L2O.Engine;

/// <summary>
/// The engine's half of a method's definition: which learned methods have a fused cell, how the cell
/// is built from the method's options, and which of those options it reads. <see cref="L2O.Learned"/>
/// knows nothing of the engine; the engine registers its cells here.
/// </summary>
/// <param name="Method">The learned method's registry name.</param>
/// <param name="Options">The option keys the cell reads (every architecture and rule option of the
/// method; <c>checkpoint</c> and <c>init-seed</c> only choose Θ). A test holds this to the options
/// record, so an option added to a method without engine support fails the suite.</param>
/// <param name="Create">Builds the cell for a vector width, block size and block layout.</param>
/// <param name="LanesOnly">The cell has only the lanes layout: every use takes it, with its block size.</param>
/// <param name="LanesOnlyWhen">Option values that only the lanes cell runs (e.g. hyperadam's <c>state-norm=true</c>): a use with them takes the
/// lanes layout whatever <see cref="EngineOptions.Layout"/> says.</param>
internal sealed record FusedCellInfo(string Method, IReadOnlySet<string> Options, Func<LearnedOptimizer, SimdWidth, int, CellLayout, FusedCell> Create,
    bool LanesOnly = false, Func<LearnedOptimizer, bool>? LanesOnlyWhen = null)
{
    /// <summary>Whether <paramref name="learned"/> runs only on the lanes cell (<see cref="LanesOnly"/>, or its option values).</summary>
    public bool OnlyLanes(LearnedOptimizer learned) => LanesOnly || LanesOnlyWhen?.Invoke(learned) == true;

    /// <summary>The layout an engine runs <paramref name="learned"/>'s cell in under <paramref name="options"/>.</summary>
    public CellLayout LayoutFor(LearnedOptimizer learned, EngineOptions options) => OnlyLanes(learned) ? CellLayout.Lanes : options.ResolvedLayout;
}

internal static class FusedCells
{
    public static IReadOnlyList<FusedCellInfo> All { get; } =
    [
        new("hyperadam", new HashSet<string> { "j", "lr", "eps", "lstm", "preprocess", "input-norm", "coupled", "gamma-min", "field-clip", "state-norm" }, (l, width, rows, layout) =>
        {
            var o = (HyperAdamOptions)l.Options;
            return (layout, width) switch
            {
                (CellLayout.Lanes, SimdWidth.Avx512) => new HyperAdamLanesCell<V512>(o, rows),
                (CellLayout.Lanes, SimdWidth.Avx2) => new HyperAdamLanesCell<V256>(o, rows),
                (CellLayout.Lanes, _) => new HyperAdamLanesCell<V1>(o, rows),
                (_, SimdWidth.Avx512) => new HyperAdamCell<V512>(o, rows),
                (_, SimdWidth.Avx2) => new HyperAdamCell<V256>(o, rows),
                _ => new HyperAdamCell<V1>(o, rows),
            };
        },
        // s′ needs the column norms of s_t, which this step's own LSTM computes: two passes per step (FusedCell.StatePhaseReduction),
        // built in the lanes cell only (docs/engine.md).
        LanesOnlyWhen: l => ((HyperAdamOptions)l.Options).NormalizeState),
        new("rnnprop", new HashSet<string> { "hidden", "layers", "lr", "beta1", "beta2", "eps" }, (l, width, rows, layout) =>
        {
            var o = (RnnPropOptions)l.Options;
            var spec = new RecurrentSpec(o.Hidden, o.Layers, RecurrentInput.Moments, RnnProp.Layers.Preprocess, RnnProp.Layers.Output, TanhStep: true, o.StepSize, o.Beta1, o.Beta2, o.Epsilon);
            return RecurrentCells.Create(spec, width, rows, layout);
        }),
        new("dmoptimizer", new HashSet<string> { "hidden", "layers", "scale", "preprocess", "k" }, (l, width, rows, layout) =>
        {
            var o = (DmOptimizerOptions)l.Options;
            var spec = new RecurrentSpec(o.Hidden, o.Layers, o.Preprocess ? RecurrentInput.LogAndSign : RecurrentInput.Raw,
                PreLayer: null, DmOptimizer.Layers.Output, TanhStep: false, o.Scale, K: o.K);
            return RecurrentCells.Create(spec, width, rows, layout);
        }),
        HistoryCellInfo("k-timesteps"),
        HistoryCellInfo("k-momentums"),
        new("multiscale-adam", new HashSet<string> { "k", "combiner", "hidden", "hidden-layers", "lr", "eps" }, (l, width, rows, _) =>
        {
            var o = (MultiscaleAdamOptions)l.Options;
            return width switch
            {
                SimdWidth.Avx512 => new MultiscaleAdamCell<V512>(o, rows),
                SimdWidth.Avx2 => new MultiscaleAdamCell<V256>(o, rows),
                _ => new MultiscaleAdamCell<V1>(o, rows),
            };
        }, LanesOnly: true),
    ];

    /// <summary>The thesis's normalised-history rules: one lanes cell for every use (its MLP is small; no rows variant).</summary>
    private static FusedCellInfo HistoryCellInfo(string method) =>
        new(method, new HashSet<string> { "k", "eta-min", "hidden", "history", "reference", "min-timescale", "max-timescale" }, (l, width, rows, _) =>
        {
            var o = (NormalizedHistoryOptions)l.Options;
            return width switch
            {
                SimdWidth.Avx512 => new HistoryCell<V512>(o, rows),
                SimdWidth.Avx2 => new HistoryCell<V256>(o, rows),
                _ => new HistoryCell<V1>(o, rows),
            };
        }, LanesOnly: true);

    /// <summary>The covered methods as a phrase, e.g. "hyperadam, rnnprop and dmoptimizer".</summary>
    public static string Covered => All.Count == 1 ? All[0].Method : $"{string.Join(", ", All.SkipLast(1).Select(c => c.Method))} and {All[^1].Method}";

    /// <summary>The entry for <paramref name="method"/>, or null where the engine does not cover it.</summary>
    public static FusedCellInfo? Find(string method) => All.FirstOrDefault(c => c.Method == method);

    /// <summary>The cell of <paramref name="learned"/>, or null where the engine does not cover its method.</summary>
    public static FusedCell? Create(LearnedOptimizer learned, SimdWidth width, int blockRows, CellLayout layout = CellLayout.Rows)
    {
        if (Find(learned.Method) is not { } info) return null;
        return info.Create(learned, width, blockRows, info.OnlyLanes(learned) ? CellLayout.Lanes : layout);
    }
}
