using System.Runtime.CompilerServices;
using L2O.Learned;
using L2O.Specs;

namespace L2O.Engine;

/// <summary>Settings of the fused CPU engine (defaults: widest SIMD, every core, 128 coordinates per block).</summary>
public sealed record EngineOptions : IValidatable
{
    /// <summary>Options used when none are given (the CLI's --threads sets the thread count here).</summary>
    public static EngineOptions Default { get; set; } = new();

    /// <summary>Vector width; <see cref="SimdWidth.Auto"/> picks the widest the CPU accelerates.</summary>
    public SimdWidth Width { get; init; } = SimdWidth.Auto;

    /// <summary>Worker threads; 0 = one per core.</summary>
    public int Threads { get; init; }

    /// <summary>
    /// Coordinates per block, so that one block's working set stays in the core's L2 cache; 0 (the default)
    /// takes the layout's own: 128 for <see cref="CellLayout.Rows"/>, 512 for <see cref="CellLayout.Lanes"/>
    /// (whose products and sums over coordinates gain from longer rows; docs/performance.md).
    /// </summary>
    public int BlockRows { get; init; }

    /// <summary><see cref="BlockRows"/>, or <paramref name="layout"/>'s default where it is 0.</summary>
    public int BlockRowsFor(CellLayout layout) => BlockRows > 0 ? BlockRows : layout == CellLayout.Lanes ? 512 : 128;

    /// <summary>
    /// How a cell lays a block out in its scratch: <see cref="CellLayout.Rows"/> (one coordinate per row) or
    /// <see cref="CellLayout.Lanes"/> (coordinates along the vector lanes).
    /// Null (the default) takes lanes for every use: it measured faster than rows both where only the forward runs
    /// (evaluation, validation, the drop-in optimizer) and in meta-training, where its recomputed forward beat the rows
    /// cell with its forward kept, for HyperAdam, RNNprop and DMoptimizer on one and two threads (docs/performance.md,
    /// 2026-12-07, night). Rows remains for comparison and for <see cref="KeepForward"/>. The thesis's rules, and HyperAdam
    /// with <c>state-norm=true</c>, have only a lanes cell, which they take whatever this says.
    /// </summary>
    public CellLayout? Layout { get; init; }

    /// <summary>
    /// Whether meta-training keeps each step's forward outputs (the cell's <see cref="FusedCell.KeptFloats"/> per block: about
    /// 353 floats per coordinate and step for HyperAdam J = 20, 0.45 GB per unroll of 20 steps on the base MLP) for the
    /// backward, instead of recomputing them from the stored input state. Keeping made the rows cells 5-13 % faster per
    /// meta-iteration, still slower than the lanes cells recomputing (docs/performance.md). Null (the default) keeps where
    /// the cell can (the rows cells, <see cref="Layout"/> = rows) and one unroll's kept outputs fit in
    /// <see cref="AutoKeepForwardBytes"/>, and recomputes otherwise; true keeps (an error for the lanes cells, whichever rule takes one); false recomputes.
    /// </summary>
    public bool? KeepForward { get; init; }

    /// <summary>The most memory that one trajectory's kept forward may take when <see cref="KeepForward"/> is null (1 GiB).</summary>
    public const long AutoKeepForwardBytes = 1L << 30;

    /// <summary>
    /// Whether meta-training computes the optimizee's loss and gradient with the engine's own kernel where it has one
    /// (<see cref="L2O.Tasks.MlpModel"/> tasks in float32, one thread) instead of TorchSharp's autograd on one libtorch
    /// thread; both give the same values to float rounding. On by default; off for comparison (docs/engine.md).
    /// </summary>
    public bool DirectGradient { get; init; } = true;

    /// <summary>The layout an engine gets: <see cref="Layout"/>, or lanes, the faster one (above).</summary>
    public CellLayout ResolvedLayout => Layout ?? CellLayout.Lanes;

    public int ResolvedThreads => Threads > 0 ? Threads : Environment.ProcessorCount;

    public void Validate()
    {
        Check.InRange(Threads, 0, 1024, "threads");
        if (BlockRowsProblem(BlockRows) is string problem) throw new L2OException("block-rows " + problem);
    }

    /// <summary>What is wrong with <paramref name="blockRows"/> as <see cref="BlockRows"/> (to follow the option's name), or null when it is valid.</summary>
    public static string? BlockRowsProblem(int blockRows) =>
        blockRows == 0 || (blockRows is >= 4 and <= 4096 && blockRows % 4 == 0)
            ? null
            : $"takes a multiple of 4 in 4..4096, or 0 for each layout's default (got {blockRows})";
}

/// <summary>How a fused cell lays out one block of coordinates (docs/engine.md).</summary>
public enum CellLayout
{
    /// <summary>One coordinate per row, features along the vector lanes (padded to whole vectors); products use register tiles of rows × output vectors.</summary>
    Rows,
    /// <summary>
    /// Feature-major, <c>[feature][coordinate]</c>: coordinates along the vector lanes, no padding lanes; products broadcast one
    /// weight over a vector of coordinates (HyperAdam, RNNprop and DMoptimizer).
    /// </summary>
    Lanes,
}

/// <summary>
/// Runs a <see cref="FusedCell"/> over all coordinates: blocks of <see cref="EngineOptions.BlockRows"/>
/// in parallel, each block's partial sums written to its own slot and added in block order in
/// double precision, so results do not depend on the number of threads.
/// </summary>
internal sealed unsafe class FusedEngine
{
    private readonly System.Collections.Concurrent.ConcurrentBag<AlignedBuffer> _scratch = [];
    private readonly ParallelOptions _parallel;
    private AlignedBuffer? _partials;

    public FusedEngine(FusedCell cell, EngineOptions options)
    {
        Cell = cell;
        Options = options;
        _parallel = new ParallelOptions { MaxDegreeOfParallelism = options.ResolvedThreads };
    }

    private readonly System.Collections.Concurrent.ConcurrentBag<FusedTrajectory.Workspace> _workspaces = [];

    internal FusedTrajectory.Workspace RentWorkspace() => _workspaces.TryTake(out var w) ? w : new FusedTrajectory.Workspace();

    internal void ReturnWorkspace(FusedTrajectory.Workspace w) => _workspaces.Add(w);

    private readonly System.Collections.Concurrent.ConcurrentBag<FusedTrajectory.Carried> _carried = [];

    internal FusedTrajectory.Carried RentCarried() => _carried.TryTake(out var c) ? c : new FusedTrajectory.Carried();

    internal void ReturnCarried(FusedTrajectory.Carried c) => _carried.Add(c);

    private float[]? _loaded;

    // One pass (or weight load) at a time per engine: passes share the partial-sum slots and the
    // packed weights (and their threads share the cores anyway).
    private readonly object _pass = new();

    /// <summary>
    /// Packs <paramref name="learned"/>'s current meta-parameters into the cell unless they equal the
    /// ones packed last (a meta-training step changes them; evaluation steps do not). Every user of
    /// this engine goes through here, so the cell always holds the current values.
    /// </summary>
    public void Load(LearnedOptimizer learned)
    {
        lock (_pass)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            var flat = learned.Flatten().to(TorchSharp.torch.ScalarType.Float32).cpu().contiguous();
            var values = new ReadOnlySpan<float>(TensorMemory.Floats(flat), (int)flat.numel());
            if (_loaded is not null && values.SequenceEqual(_loaded)) return;
            Cell.Load(TensorMemory.Reader(learned));
            _loaded = values.ToArray();
        }
    }

    public FusedCell Cell { get; }
    public EngineOptions Options { get; }

    public int Blocks(long p) => (int)((p + Cell.BlockRows - 1) / Cell.BlockRows);

    /// <summary>Floats a state vector of p coordinates needs, with room for one vector of over-read at the end.</summary>
    public long StateLength(long p) => Cell.StateFloats * p + 2 * Cell.Width + 16;

    /// <summary>Floats of a per-coordinate aux buffer.</summary>
    public long AuxLength(long p) => Math.Max(1, Cell.AuxWidth) * p + 2 * Cell.Width + 16;

    // A block's partial sums: the forward's, the state phase's, or the backward's followed by its state phase's.
    private int PartialStride => Layout.Pad(Math.Max(1, Math.Max(Cell.ForwardReduction, Cell.BackwardReduction + Cell.StatePhaseReduction)), 16);

    // The backward's hand-over from its main phase to its state phase (cells with a state phase only).
    private AlignedBuffer? _stateAux, _stateReduction;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SquaredNorm(float* g, long p)
    {
        double s = 0;
        for (long i = 0; i < p; i++) s += (double)g[i] * g[i];
        return s;
    }

    /// <summary>Step constants for step t from g and the input state's reduction.</summary>
    public void Globals(long t, float* g, long p, ReadOnlySpan<double> reduction, float* globals) =>
        Cell.Globals(t, p, SquaredNorm(g, p), reduction, new Span<float>(globals, Cell.GlobalsFloats));

    /// <summary>One step for all p coordinates; writes the output state, the update and the output state's reduction.</summary>
    /// <param name="w">The parameters w_t where the cell reads them (<see cref="FusedCell.ReadsParameters"/>), else null.</param>
    /// <param name="statePhaseDone">For a cell with a state phase (<see cref="FusedCell.HasStatePhase"/>): whether the caller has
    /// already run <see cref="ForwardStatePhase"/> over all coordinates and <see cref="CompleteGlobals"/> (a rule whose state
    /// comes in chunks); otherwise this runs both passes over these p coordinates.</param>
    public void Forward(long p, float* g, float* stateIn, float* stateOut, float* update, float* globals, Span<double> reductionOut, float* kept = null, float* w = null,
        bool statePhaseDone = false)
    {
        RequireParameters(w);
        if (Cell.HasStatePhase && !statePhaseDone)
        {
            Span<double> stateReduction = stackalloc double[Cell.StatePhaseReduction];
            ForwardStatePhase(p, g, stateIn, stateOut, globals, stateReduction, w);
            CompleteGlobals(p, stateReduction, globals);
        }
        lock (_pass)
        {
            var (blocks, partials) = Partials(p);
            nint pso = (nint)stateOut, pu = (nint)update;
            var common = Common(p, g, stateIn, globals, partials, kept, w);
            Run(blocks, (k, scratch) =>
            {
                var b = common.At(k, scratch);
                Cell.Forward(b with { StateOut = (float*)pso, Update = (float*)pu + b.Start });
            });
            Reduce(partials, blocks, 0, Cell.ForwardReduction, reductionOut);
        }
    }

    /// <summary>
    /// The first pass of a step of a cell with a state phase: writes its part of the output state and sums its partials into
    /// <paramref name="reductionOut"/> (<see cref="FusedCell.StatePhaseReduction"/> floats).
    /// </summary>
    public void ForwardStatePhase(long p, float* g, float* stateIn, float* stateOut, float* globals, Span<double> reductionOut, float* w = null)
    {
        RequireParameters(w);
        lock (_pass)
        {
            var (blocks, partials) = Partials(p);
            nint pso = (nint)stateOut;
            var common = Common(p, g, stateIn, globals, partials, null, w);
            Run(blocks, (k, scratch) =>
            {
                var b = common.At(k, scratch);
                Cell.ForwardState(b with { StateOut = (float*)pso });
            });
            Reduce(partials, blocks, 0, Cell.StatePhaseReduction, reductionOut);
        }
    }

    /// <summary>Adds the state phase's step constants to <paramref name="globals"/> (<paramref name="p"/>: every coordinate of the step).</summary>
    public void CompleteGlobals(long p, ReadOnlySpan<double> stateReduction, float* globals) =>
        Cell.CompleteGlobals(p, stateReduction, new Span<float>(globals, Cell.GlobalsFloats));

    /// <summary>
    /// The backward of one step: adjoints of the update and of the output state in, adjoint of the
    /// input state out (the output state itself is read where the forward was kept); meta-gradients added into each block's slot of <paramref name="gradBlocks"/>.
    /// A cell that reads the parameters <paramref name="w"/> also adds its part of their adjoint into <paramref name="aUpdate"/>.
    /// </summary>
    public void Backward(long p, float* g, float* stateIn, float* stateOut, float* globals, float* aUpdate, float* aStateOut, float* aStateIn,
        float* auxIn, float* auxOut, float* nextGlobals, float* nextReduction, float* gradBlocks, Span<double> reductionOut, float* kept = null, float* w = null)
    {
        RequireParameters(w);
        lock (_pass)
        {
            var (blocks, partials) = Partials(p);
            int gf = Cell.GradientFloats;
            nint pso = (nint)stateOut, pau = (nint)aUpdate, paso = (nint)aStateOut, pasi = (nint)aStateIn, pai = (nint)auxIn, pao = (nint)auxOut,
                png = (nint)nextGlobals, pnr = (nint)nextReduction, pgr = (nint)gradBlocks;
            var common = Common(p, g, stateIn, globals, partials, kept, w);
            bool twoPhases = Cell.HasStatePhase;
            nint psa = twoPhases ? (nint)AlignedBuffer.Ensure(ref _stateAux, Cell.StateAuxWidth * p + 2 * Cell.Width + 16).Pointer : 0;
            nint psr = twoPhases ? (nint)AlignedBuffer.Ensure(ref _stateReduction, Layout.Pad(Cell.StatePhaseReduction, 16)).Pointer : 0;
            Block At(int k, nint scratch)
            {
                var b = common.At(k, scratch);
                return b with
                {
                    StateOut = (float*)pso,
                    AUpdate = (float*)pau + b.Start,
                    AStateOut = (float*)paso,
                    AStateIn = (float*)pasi,
                    Grad = (float*)pgr + (long)k * gf,
                    AuxIn = (float*)pai,
                    AuxOut = (float*)pao,
                    NextGlobals = (float*)png,
                    NextReduction = (float*)pnr,
                    StateAux = (float*)psa,
                    StateReduction = (float*)psr,
                };
            }
            Run(blocks, (k, scratch) => Cell.Backward(At(k, scratch)));
            Reduce(partials, blocks, 0, Cell.BackwardReduction, reductionOut);
            if (!twoPhases) return;
            Span<double> stateReduction = stackalloc double[Cell.StatePhaseReduction];
            Reduce(partials, blocks, Cell.BackwardReduction, Cell.StatePhaseReduction, stateReduction);
            for (int i = 0; i < stateReduction.Length; i++) ((float*)psr)[i] = (float)stateReduction[i];
            Run(blocks, (k, scratch) => Cell.BackwardState(At(k, scratch)));
        }
    }

    private (int Blocks, AlignedBuffer Partials) Partials(long p)
    {
        int blocks = Blocks(p);
        return (blocks, AlignedBuffer.Ensure(ref _partials, (long)blocks * PartialStride));
    }

    /// <summary>Floats of one step's kept forward (<see cref="EngineOptions.KeepForward"/>) for p coordinates.</summary>
    public long KeptLength(long p) => Blocks(p) * Cell.KeptFloats;

    /// <summary>Whether an unroll of <paramref name="steps"/> over p coordinates keeps its forward (<see cref="EngineOptions.KeepForward"/>).</summary>
    public bool KeepsForward(long p, int steps) =>
        Options.KeepForward ?? (Cell.KeptFloats > 0 && steps * KeptLength(p) * sizeof(float) <= EngineOptions.AutoKeepForwardBytes);

    private void RequireParameters(float* w)
    {
        if (Cell.ReadsParameters && w is null) throw new InvalidOperationException($"fused engine: {Cell.GetType().Name} reads the parameters, and none were passed");
    }

    private BlockSource Common(long p, float* g, float* stateIn, float* globals, AlignedBuffer partials, float* kept, float* w) =>
        new(Cell.BlockRows, p, (nint)g, (nint)stateIn, (nint)globals, (nint)partials.Pointer, PartialStride, (nint)kept, Cell.KeptFloats, (nint)w);

    /// <summary>What every block of a pass shares (pointers as nint: lambdas cannot capture pointers).</summary>
    private readonly record struct BlockSource(int BlockRows, long P, nint G, nint StateIn, nint Globals, nint Partials, int Stride, nint Kept, long KeptStride, nint W)
    {
        public Block At(int k, nint scratch)
        {
            int start = k * BlockRows;
            return new Block
            {
                Start = start,
                Rows = (int)Math.Min(BlockRows, P - start),
                P = P,
                G = (float*)G + start,
                W = W == 0 ? null : (float*)W + start,
                StateIn = (float*)StateIn,
                Globals = (float*)Globals,
                Partial = (float*)Partials + (long)k * Stride,
                Scratch = (float*)scratch,
                Kept = Kept == 0 ? null : (float*)Kept + k * KeptStride,
            };
        }
    }

    /// <summary>Σ over blocks (in block order) of the per-block meta-gradients.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public double[] SumGradients(float* gradBlocks, long p)
    {
        int gf = Cell.GradientFloats, blocks = Blocks(p);
        var total = new double[gf];
        for (int k = 0; k < blocks; k++)
        {
            float* src = gradBlocks + (long)k * gf;
            for (int i = 0; i < gf; i++) total[i] += src[i];
        }
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Reduce(AlignedBuffer partials, int blocks, int offset, int width, Span<double> output)
    {
        output.Clear();
        int stride = PartialStride;
        for (int k = 0; k < blocks; k++)
            for (int i = 0; i < width; i++) output[i] += partials.Pointer[(long)k * stride + offset + i];
    }

    private void Run(int blocks, Action<int, nint> body)
    {
        void Body(int k, AlignedBuffer scratch) => body(k, (nint)scratch.Pointer);
        if (blocks == 1 || _parallel.MaxDegreeOfParallelism == 1)
        {
            var s = Rent();
            try { for (int k = 0; k < blocks; k++) Body(k, s); }
            finally { _scratch.Add(s); }
            CheckGuards();
            return;
        }
        Parallel.For(0, blocks, _parallel, Rent, (k, _, s) => { Body(k, s); return s; }, s => _scratch.Add(s));
        CheckGuards();
    }

    private const int Guard = 64;
    private const float GuardValue = -1.2345678e-37f;

    /// <summary>Per-worker scratch with a guard zone after the cell's layout, checked after every pass.</summary>
    private AlignedBuffer Rent()
    {
        if (_scratch.TryTake(out var s)) return s;
        s = new AlignedBuffer(Cell.ScratchFloats + Guard);
        s.Span[(int)Cell.ScratchFloats..].Fill(GuardValue);
        return s;
    }

    /// <summary>A cell that writes past its scratch layout is a bug; fail loudly instead of corrupting memory.</summary>
    private void CheckGuards()
    {
        foreach (var s in _scratch)
            foreach (var v in s.Span[(int)Cell.ScratchFloats..])
                if (BitConverter.SingleToInt32Bits(v) != BitConverter.SingleToInt32Bits(GuardValue))
                    throw new InvalidOperationException($"fused engine: {Cell.GetType().Name} wrote past its block scratch");
    }
}
