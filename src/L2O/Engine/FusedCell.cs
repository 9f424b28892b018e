namespace L2O.Engine;

/// <summary>
/// Pointers one block of coordinates [Start, Start + Rows) works with. State vectors are
/// field-major and compact: field f of coordinate i lives at <c>base + P·offset_f + i·width_f</c>.
/// Per-coordinate buffers (<see cref="G"/>, <see cref="Update"/>, <see cref="AUpdate"/>) are already
/// offset to the block's first coordinate.
/// </summary>
internal readonly unsafe struct Block
{
    public int Start { get; init; }
    public int Rows { get; init; }
    public long P { get; init; }
    public float* G { get; init; }
    /// <summary>The parameters w_t of the block's coordinates (offset like <see cref="G"/>) for a cell that reads them (<see cref="FusedCell.ReadsParameters"/>), else null.</summary>
    public float* W { get; init; }
    public float* StateIn { get; init; }
    public float* StateOut { get; init; }
    public float* Update { get; init; }
    /// <summary>Step constants from <see cref="FusedCell.Globals"/>.</summary>
    public float* Globals { get; init; }
    /// <summary>This block's partial sums: forward (of the output state) or backward.</summary>
    public float* Partial { get; init; }
    public float* Scratch { get; init; }
    /// <summary>
    /// Where this block's kept forward lives (<see cref="FusedCell.KeptFloats"/> floats in the unroll's store), or null:
    /// the forward then writes it to the scratch and the backward recomputes it.
    /// </summary>
    public float* Kept { get; init; }

    // Backward only.
    /// <summary>The adjoint of the update; read-write for a cell that reads the parameters (<see cref="FusedCell.ReadsParameters"/>).</summary>
    public float* AUpdate { get; init; }
    public float* AStateOut { get; init; }
    public float* AStateIn { get; init; }
    /// <summary>This block's meta-gradient accumulator (packed layout of the cell).</summary>
    public float* Grad { get; init; }
    /// <summary>Per-coordinate values the next step's backward left for this one (global, not offset), or null.</summary>
    public float* AuxIn { get; init; }
    public float* AuxOut { get; init; }
    /// <summary>Globals and summed backward reduction of step s+1 (null at the end of an unroll).</summary>
    public float* NextGlobals { get; init; }
    public float* NextReduction { get; init; }

    // Cells with a state phase only (FusedCell.StatePhaseReduction > 0).
    /// <summary>Per-coordinate values (<see cref="FusedCell.StateAuxWidth"/> wide, global, not offset) that the backward's main phase leaves for its state phase.</summary>
    public float* StateAux { get; init; }
    /// <summary>The summed state-phase partials of the backward's main phase (<see cref="FusedCell.StatePhaseReduction"/> floats), for its state phase.</summary>
    public float* StateReduction { get; init; }
}

/// <summary>
/// One coordinatewise learned optimizer compiled for the engine: the forward step on a block of
/// coordinates, and the backward step that recomputes the block's forward from the stored input
/// state and propagates adjoints to the previous state and to the meta-parameters. Cross-coordinate
/// statistics enter only through <see cref="Globals"/> (forward) and the backward reduction, which
/// the engine sums over blocks in a fixed order.
/// </summary>
internal abstract unsafe class FusedCell
{
    protected FusedCell(int width, int blockRows)
    {
        Width = width;
        BlockRows = blockRows;
    }

    /// <summary>Floats per vector.</summary>
    public int Width { get; }

    /// <summary>
    /// Whether the update reads the parameters w_t, not only the gradient and the state (the thesis's reference-point
    /// rules). The engine then passes w_t in <see cref="Block.W"/>; the cell's backward adds w_t's share of its step's
    /// adjoints to <see cref="Block.AUpdate"/> in place, which the trajectory carries on as the adjoint of w_t:
    /// w_{t+1} = w_t + u_t(w_t, s_t) and s_{t+1}(w_t, s_t), so
    /// a_{w_t} = a_{w_{t+1}} + (∂u_t/∂w_t)ᵀ a_{w_{t+1}} + (∂s_{t+1}/∂w_t)ᵀ a_{s_{t+1}} + the loss terms; the cell adds the middle two.
    /// </summary>
    public virtual bool ReadsParameters => false;
    public int BlockRows { get; }

    /// <summary>Widths of the per-coordinate state fields, in order.</summary>
    public abstract int[] StateWidths { get; }

    /// <summary>
    /// Floats per block of the forward's outputs that the backward reads, the head of the cell's layout; 0 for a cell
    /// whose backward always recomputes its forward. A cell with a nonzero value can keep them in the unroll's
    /// store instead (<see cref="Block.Kept"/>, <see cref="EngineOptions.KeepForward"/>): the backward then skips the
    /// recomputation and reads them back from memory.
    /// </summary>
    public long KeptFloats
    {
        get
        {
            if (_keptFloats < 0)
            {
                var arena = new Arena(null);
                LayOutKept(ref arena);
                _keptFloats = arena.Used;
            }
            return _keptFloats;
        }
    }

    private long _keptFloats = -1;

    /// <summary>Lays out the head of the layout that a kept forward keeps (<see cref="KeptFloats"/>); nothing for a cell that always recomputes.</summary>
    protected virtual void LayOutKept(ref Arena arena) { }

    /// <summary>Floats per block of forward partial sums (taken over the block's output state).</summary>
    public virtual int ForwardReduction => 0;

    /// <summary>Floats per block of backward partial sums.</summary>
    public virtual int BackwardReduction => 0;

    /// <summary>Per-coordinate floats the backward of step s passes to the backward of step s−1.</summary>
    public virtual int AuxWidth => 0;

    /// <summary>
    /// Floats per block of a reduction in the middle of a step, 0 for the cells whose steps are one pass (all but HyperAdam's
    /// <c>state-norm=true</c>). A cell with a state phase runs each step as two passes over the blocks: <see cref="ForwardState"/>
    /// writes the part of the output state the rest of the step needs normalised, with its partial sums; the engine sums them and
    /// <see cref="CompleteGlobals"/> adds the step constants they give; then <see cref="Forward"/> finishes the step. The backward runs
    /// the other way: <see cref="Backward"/> writes its usual outputs, the per-coordinate <see cref="Block.StateAux"/> and, after
    /// its own <see cref="BackwardReduction"/> floats, this many partial sums; the engine sums them into
    /// <see cref="Block.StateReduction"/>, and <see cref="BackwardState"/> finishes the adjoints of the state phase.
    /// </summary>
    public virtual int StatePhaseReduction => 0;

    /// <summary>Whether steps run as two passes (<see cref="StatePhaseReduction"/>).</summary>
    public bool HasStatePhase => StatePhaseReduction > 0;

    /// <summary>Per-coordinate floats the backward's main phase passes to its state phase.</summary>
    public virtual int StateAuxWidth => 0;

    /// <summary>The forward's first pass of a cell with a state phase (<see cref="StatePhaseReduction"/>).</summary>
    public virtual void ForwardState(in Block b) => throw new NotSupportedException($"{GetType().Name} has no state phase");

    /// <summary>Adds to <paramref name="globals"/> the step constants that the summed state-phase partials give.</summary>
    public virtual void CompleteGlobals(long p, ReadOnlySpan<double> reduction, Span<float> globals) => throw new NotSupportedException($"{GetType().Name} has no state phase");

    /// <summary>The backward's second pass of a cell with a state phase (<see cref="StatePhaseReduction"/>).</summary>
    public virtual void BackwardState(in Block b) => throw new NotSupportedException($"{GetType().Name} has no state phase");

    /// <summary>Floats of step constants.</summary>
    public abstract int GlobalsFloats { get; }

    /// <summary>Floats of the packed meta-gradient.</summary>
    public abstract int GradientFloats { get; }

    private long _scratchFloats = -1;

    /// <summary>Scratch floats one worker needs for a block: the cell's layout measured once from a null start.</summary>
    public long ScratchFloats
    {
        get
        {
            if (_scratchFloats < 0)
            {
                var arena = new Arena(null);
                LayOut(ref arena);
                _scratchFloats = arena.Used + 64;
            }
            return _scratchFloats;
        }
    }

    /// <summary>Lays the block buffers out in <paramref name="arena"/> (the same calls the block passes make).</summary>
    protected abstract void LayOut(ref Arena arena);

    public int StateFloats => StateWidths.Sum();

    private int[]? _offsets;

    /// <summary>Start offset (in units of P) of each state field.</summary>
    public int FieldOffset(int field)
    {
        if (_offsets is null)
        {
            var w = StateWidths;
            var o = new int[w.Length];
            for (int i = 1; i < w.Length; i++) o[i] = o[i - 1] + w[i - 1];
            _offsets = o;
        }
        return _offsets[field];
    }

    /// <summary>Packs the meta-parameters read by name (PyTorch layouts, row-major).</summary>
    public abstract void Load(Func<string, float[]> read);

    /// <summary>Unpacks a summed packed meta-gradient into one array per meta-parameter.</summary>
    public abstract void Unpack(ReadOnlySpan<double> gradient, Action<string, float[]> write);

    /// <summary>Step constants of step <paramref name="t"/> (1-based) from Σg² and the summed forward reduction of the input state.</summary>
    public abstract void Globals(long t, long p, double gradientSquaredNorm, ReadOnlySpan<double> reduction, Span<float> globals);

    public abstract void Forward(in Block b);

    public abstract void Backward(in Block b);

    /// <summary>n values of a summed gradient from <paramref name="offset"/>, as floats (a bias or a vector weight).</summary>
    protected static float[] Floats(ReadOnlySpan<double> g, int offset, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)g[offset + i];
        return a;
    }

    /// <summary>Pointer to field <paramref name="field"/> of the block's first coordinate.</summary>
    protected float* Field(float* state, in Block b, int field) => state + b.P * FieldOffset(field) + (long)b.Start * StateWidths[field];

    /// <summary>Copies <paramref name="rows"/> rows of width n from a padded buffer to a compact one.</summary>
    /// <remarks>
    /// Rows are copied in order with whole 16-float chunks, each overrunning into the following
    /// rows, which are copied afterwards; the last rows, whose overrun would leave the block, are copied exactly.
    /// </remarks>
    protected static void CopyOut(float* padded, int ld, float* compact, int n, int rows)
    {
        int chunks = (n + 15) / 16, overrun = 16 * chunks - n;
        int exactFrom = Math.Max(0, rows - (overrun + n - 1) / n);   // rows whose overrun a later row of this block covers
        for (int r = 0; r < exactFrom; r++)
        {
            float* src = padded + r * ld, dst = compact + (long)r * n;
            for (int k = 0; k < chunks; k++)
                System.Runtime.Intrinsics.Vector512.Store(System.Runtime.Intrinsics.Vector512.Load(src + 16 * k), dst + 16 * k);
        }
        for (int r = exactFrom; r < rows; r++)
            new ReadOnlySpan<float>(padded + r * ld, n).CopyTo(new Span<float>(compact + (long)r * n, n));
    }
}
