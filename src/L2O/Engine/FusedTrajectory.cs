using System.Runtime.CompilerServices;
using L2O.Learned;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Engine;

/// <summary>
/// Truncated BPTT on the fused engine, the same first-order meta-gradient as <see cref="Unroll"/>:
/// with a_w the adjoint of the parameters, a_w(s+1) = Σ_{k&gt;s} c_k g_k (c_k the meta-loss weight
/// of f(w_k), g_k its gradient, both known after the forward), and the cell's backward carries the
/// state adjoints from step U−1 down to 0.
/// </summary>
/// <remarks>
/// Memory: the forward stores the U+1 input states and gradients of the unroll (U·S·p floats,
/// S the state width: 120 for HyperAdam J=20) and no intermediate activations; each block's
/// backward recomputes its forward step from the stored state while the block is in cache. That
/// costs one extra forward (about a third more arithmetic) and saves the 2–3× larger activations,
/// which would otherwise stream through memory twice.
/// </remarks>
internal sealed unsafe class FusedTrajectory : IMetaTrajectory
{
    /// <summary>
    /// Diagnostics for <c>l2o bench</c>: seconds spent by all fused trajectories of the process in the
    /// engine's forward, the engine's backward, and the optimizee (loss, gradient, copies). Not synchronised: approximate while meta-training workers run.
    /// </summary>
    internal static readonly double[] Profile = new double[3];

    private readonly LearnedOptimizer _learned;
    private readonly FusedEngine _engine;
    private readonly IOptimizee _f;
    private readonly long _p;
    private Tensor _w;
    private double[] _reduction;
    private readonly Carried _carried;
    private readonly AlignedBuffer _state, _grad;   // carried from one unroll to the next (in _carried)
    private readonly EngineGradients? _executor;     // the optimizee's loss and gradient without autograd, where the engine has it
    private readonly Tensor _gradient;               // ∇f at the current parameters, before it is copied into the unroll's buffer

    /// <summary>
    /// The unroll's large buffers (about 160 MB for HyperAdam J=20 on 15 930 coordinates), kept by the
    /// engine and reused by the next unroll: fresh ones would be page-faulted in and zeroed by the
    /// kernel every meta-iteration. Rented for one unroll only, so the trajectories of a meta-batch
    /// that take turns on one engine share one workspace.
    /// </summary>
    internal sealed class Workspace
    {
        public AlignedBuffer? States, Grads, Params, Globals, StateAdjointA, StateAdjointB, AuxA, AuxB, ParametersAdjoint, GradBlocks, Kept;
    }

    /// <summary>What a trajectory carries between its unrolls (state and gradient at w), rented from the engine for its lifetime.</summary>
    internal sealed class Carried
    {
        public AlignedBuffer? State, Grad;
    }

    public FusedTrajectory(LearnedOptimizer learned, FusedEngine engine, IOptimizee optimizee)
    {
        _learned = learned;
        _engine = engine;
        if (engine.Options.KeepForward == true && engine.Cell.KeptFloats == 0)
            throw new L2OException($"keep-forward: the fused {learned.Method} cell ({engine.Cell.GetType().Name.Split('`')[0]}) always recomputes its forward" +
                (FusedCells.Find(learned.Method)?.OnlyLanes(learned) == true ? "" : "; only the rows cells keep it (engine layout rows)"));
        _f = optimizee;
        _executor = EngineGradients.For(engine.Options);
        _carried = engine.RentCarried();
        try
        {
            using var scope = NewDisposeScope();
            _w = optimizee.InitialParameters.detach().clone();
            _p = _w.shape[0];
            _gradient = empty_like(_w);
            _state = AlignedBuffer.Ensure(ref _carried.State, engine.StateLength(_p));
            _state.Clear();   // the initial state: zeros
            _grad = AlignedBuffer.Ensure(ref _carried.Grad, _p + 16);
            Loss = LossAndGradient(_w, _grad.Pointer);
            // Kept past the scope only once the first loss and gradient succeeded; a throw above releases them.
            _w.DetachFromDisposeScope();
            _gradient.DetachFromDisposeScope();
        }
        catch
        {
            engine.ReturnCarried(_carried);
            throw;
        }
        _reduction = new double[Math.Max(1, engine.Cell.ForwardReduction)];
    }

    public int StepsTaken { get; private set; }
    public double Loss { get; private set; }
    public double ParameterNorm => _w.norm().ToDouble();

    /// <summary>Copies a vector of p values (a gradient or the parameters) into float32 storage.</summary>
    private void CopyVector(Tensor g, float* dst)
    {
        using var scope = NewDisposeScope();
        var c = g.detach().to(ScalarType.Float32).cpu().contiguous();
        new ReadOnlySpan<float>(TensorMemory.Floats(c), (int)_p).CopyTo(new Span<float>(dst, (int)_p));
    }

    /// <summary>f(w) on the optimizee's next minibatch; ∇f(w) written to <paramref name="gradient"/>.</summary>
    private double LossAndGradient(Tensor w, float* gradient)
    {
        double value = _f.LossAndGradient(w, _f.NextBatch(), _gradient, _executor);
        CopyVector(_gradient, gradient);
        return value;
    }

    public UnrollOutcome Unroll(int steps, MetaLoss kind)
    {
        // libtorch's OpenMP workers spin for a while after every operation; with the engine's own
        // threads on the same cores that spinning steals them (measured: about 15 % of an iteration
        // on 2 cores). The optimizee's small per-step TorchSharp work (its whole loss and gradient
        // where the engine has no kernel for it) runs on one libtorch thread instead.
        int torchThreads = torch.get_num_threads();
        torch.set_num_threads(1);
        try { return UnrollCore(steps, kind); }
        finally { torch.set_num_threads(torchThreads); }
    }

    private UnrollOutcome UnrollCore(int steps, MetaLoss kind)
    {
        var ws = _engine.RentWorkspace();
        try { return UnrollCore(steps, kind, ws); }
        finally { _engine.ReturnWorkspace(ws); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private UnrollOutcome UnrollCore(int steps, MetaLoss kind, Workspace ws)
    {
        var cell = _engine.Cell;
        _engine.Load(_learned);
        long p = _p, sl = _engine.StateLength(p), gl = Layout.Pad(cell.GlobalsFloats, 16);
        long sp = cell.StateFloats * p;
        var states = AlignedBuffer.Ensure(ref ws.States, (steps + 1) * sl);
        var grads = AlignedBuffer.Ensure(ref ws.Grads, (steps + 1) * (p + 16));
        // w_0 … w_{U−1}, for a cell whose update reads them (the forward and the backward of each step).
        var parameters = cell.ReadsParameters ? AlignedBuffer.Ensure(ref ws.Params, steps * (p + 16)) : null;
        var globals = AlignedBuffer.Ensure(ref ws.Globals, (steps + 1) * gl);
        // Kept forward outputs (EngineOptions.KeepForward): one slice per step, read back by the backward.
        long kl = _engine.KeepsForward(p, steps) ? _engine.KeptLength(p) : 0;
        var kept = kl > 0 ? AlignedBuffer.Ensure(ref ws.Kept, steps * kl) : null;
        var reductions = new double[steps + 1][];
        reductions[0] = _reduction;
        new Span<float>(_state.Pointer, (int)sl).CopyTo(new Span<float>(states.Pointer, (int)sl));
        new Span<float>(_grad.Pointer, (int)p).CopyTo(new Span<float>(grads.Pointer, (int)p));

        var losses = new List<double>(steps);
        var w = _w;
        using (var scope = NewDisposeScope())
        {
            for (int s = 0; s < steps; s++)
            {
                float* g = grads.Pointer + s * (p + 16);
                float* glob = globals.Pointer + s * gl;
                _engine.Globals(StepsTaken + s + 1, g, p, reductions[s], glob);
                reductions[s + 1] = new double[Math.Max(1, cell.ForwardReduction)];
                float* next = states.Pointer + (s + 1) * sl;
                new Span<float>(next + sp, (int)(sl - sp)).Clear();
                // The engine writes the update straight into a tensor.
                var u = empty(p, ScalarType.Float32);
                float* wNow = parameters is null ? null : parameters.Pointer + s * (p + 16);
                if (wNow is not null) CopyVector(w, wNow);
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                _engine.Forward(p, g, states.Pointer + s * sl, next, TensorMemory.Floats(u), glob, reductions[s + 1], kept is null ? null : kept.Pointer + s * kl, wNow);
                long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
                Profile[0] += (t1 - t0) / (double)System.Diagnostics.Stopwatch.Frequency;
                w = w.Plus(u.to(w.dtype).to(w.device));
                double value = LossAndGradient(w, grads.Pointer + (s + 1) * (p + 16));
                losses.Add(value);
                if (!double.IsFinite(value))
                    return new UnrollOutcome(double.NaN, [.. losses], null);
                Profile[2] += (System.Diagnostics.Stopwatch.GetTimestamp() - t1) / (double)System.Diagnostics.Stopwatch.Frequency;
            }
            w = w.DetachFromDisposeScope();
        }
        double metaLoss = MetaLosses.Value(kind, Loss, losses);
        if (!double.IsFinite(metaLoss)) { w.Dispose(); return new UnrollOutcome(metaLoss, [.. losses], null); }

        long tb = System.Diagnostics.Stopwatch.GetTimestamp();
        var gradient = Backward(ws, steps, kind, losses, states, grads, globals, gl, reductions, kept, kl, parameters);
        Profile[1] += (System.Diagnostics.Stopwatch.GetTimestamp() - tb) / (double)System.Diagnostics.Stopwatch.Frequency;

        // Continue from w_U, state_U, g_U (truncation: nothing flows back past here).
        _w.Dispose();
        _w = w;
        new Span<float>(states.Pointer + steps * sl, (int)sl).CopyTo(new Span<float>(_state.Pointer, (int)sl));
        new Span<float>(grads.Pointer + steps * (p + 16), (int)p).CopyTo(new Span<float>(_grad.Pointer, (int)p));
        _reduction = reductions[steps];
        StepsTaken += steps;
        Loss = losses[^1];
        return new UnrollOutcome(metaLoss, [.. losses], gradient);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Tensor Backward(Workspace ws, int steps, MetaLoss kind, List<double> losses, AlignedBuffer states, AlignedBuffer grads, AlignedBuffer globals, long gl, double[][] reductions, AlignedBuffer? kept, long kl,
        AlignedBuffer? parameters)
    {
        var cell = _engine.Cell;
        long p = _p, sl = _engine.StateLength(p), al = _engine.AuxLength(p);
        var aW = AlignedBuffer.Ensure(ref ws.ParametersAdjoint, p + 16);
        // Two state-adjoint and two aux buffers that swap roles (output/input side) after every backward step.
        var aOut = AlignedBuffer.Ensure(ref ws.StateAdjointA, sl);
        var aIn = AlignedBuffer.Ensure(ref ws.StateAdjointB, sl);
        var auxIn = AlignedBuffer.Ensure(ref ws.AuxA, al);
        var auxOut = AlignedBuffer.Ensure(ref ws.AuxB, al);
        var gradBlocks = AlignedBuffer.Ensure(ref ws.GradBlocks, (long)_engine.Blocks(p) * cell.GradientFloats);
        aW.Clear(); aOut.Clear(); aIn.Clear(); auxIn.Clear(); auxOut.Clear();
        new Span<float>(gradBlocks.Pointer, _engine.Blocks(p) * cell.GradientFloats).Clear();
        var backRed = new double[Math.Max(1, cell.BackwardReduction)];
        var nextRed = new AlignedBuffer(Layout.Pad(backRed.Length, 16));
        bool havePending = false;
        for (int s = steps - 1; s >= 0; s--)
        {
            // Weight of f(w_{s+1}) in the meta-loss; its gradient is g_{s+1} (first order).
            double c = MetaLosses.Weight(kind, s + 1, steps, losses[s]);
            float cf = (float)c;
            float* gNext = grads.Pointer + (s + 1) * (p + 16);
            for (long i = 0; i < p; i++) aW.Pointer[i] += cf * gNext[i];
            for (int i = 0; i < backRed.Length; i++) nextRed.Pointer[i] = (float)backRed[i];
            _engine.Backward(p, grads.Pointer + s * (p + 16), states.Pointer + s * sl, states.Pointer + (s + 1) * sl, globals.Pointer + s * gl, aW.Pointer,
                aOut.Pointer, aIn.Pointer, auxIn.Pointer, auxOut.Pointer,
                havePending ? globals.Pointer + (s + 1) * gl : null, havePending ? nextRed.Pointer : null, gradBlocks.Pointer, backRed,
                kept is null ? null : kept.Pointer + s * kl, parameters is null ? null : parameters.Pointer + s * (p + 16));
            havePending = cell.BackwardReduction > 0;
            (aOut, aIn) = (aIn, aOut);
            (auxIn, auxOut) = (auxOut, auxIn);
        }
        var total = _engine.SumGradients(gradBlocks.Pointer, p);
        var arrays = new Dictionary<string, float[]>();
        cell.Unpack(total, (name, values) => arrays[name] = values);
        var parts = new List<float>();
        foreach (var (name, parameter) in _learned.Parameters)
        {
            if (!arrays.TryGetValue(name, out var values) || values.Length != parameter.numel())
                throw new InvalidOperationException($"fused {_learned.Method}: no meta-gradient for '{name}'");
            parts.AddRange(values);
        }
        var first = _learned.Parameters[0].Parameter;
        return torch.tensor(parts.ToArray()).to(first.dtype).to(first.device);
    }

    public void Dispose()
    {
        _w.Dispose();
        _gradient.Dispose();
        _f.Dispose();
        _engine.ReturnCarried(_carried);
    }
}
