using System.Runtime.InteropServices;
using L2O.Learned;
using L2O.Optimizers;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Engine;

/// <summary>Raw access to CPU tensors' storage (contiguous tensors only).</summary>
internal static unsafe class TensorMemory
{
    public static float* Floats(Tensor t) => (float*)Checked(t, ScalarType.Float32, "float32");

    public static long* Longs(Tensor t) => (long*)Checked(t, ScalarType.Int64, "int64");

    public static double* Doubles(Tensor t) => (double*)Checked(t, ScalarType.Float64, "float64");

    private static void* Checked(Tensor t, ScalarType dtype, string name)
    {
        if (t.device_type != DeviceType.CPU || t.dtype != dtype || !t.is_contiguous())
            throw new InvalidOperationException($"expected a contiguous {name} CPU tensor");
        return Unsafe(t);
    }

    private static void* Unsafe(Tensor t) => System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    /// <summary>A learned optimizer's meta-parameters by name, as float32 arrays in PyTorch layout.</summary>
    public static Func<string, float[]> Reader(LearnedOptimizer learned)
    {
        var map = learned.Parameters.ToDictionary(p => p.Name, p => p.Parameter);
        return name =>
        {
            if (!map.TryGetValue(name, out var p)) throw new InvalidOperationException($"{learned.Method} has no meta-parameter '{name}'");
            using var scope = NewDisposeScope();
            return p.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        };
    }
}

/// <summary>
/// State of a <see cref="FusedRule"/>: the cell's state fields in float32 vectors, one per chunk of coordinates
/// (<see cref="FusedRule.ChunkCoordinates"/>), and the reduction of that state.
/// </summary>
public sealed record FusedState(long Step, IReadOnlyList<Tensor> Values, Tensor Reduction) : OptimizerState
{
    public override IEnumerable<Tensor> Tensors => [.. Values, Reduction];
    public override OptimizerState Map(Func<Tensor, Tensor> f) => this with { Values = Values.Select(f).ToArray(), Reduction = f(Reduction) };
}

/// <summary>
/// A learned optimizer's update rule run by the fused engine (evaluation and the drop-in optimizer;
/// no autograd). It reads the current meta-parameters at every step, as the reference rule does.
/// Gradients on another device or dtype are converted to float32 on the CPU and the update converted back.
/// </summary>
internal sealed unsafe class FusedRule : IUpdateRule
{
    /// <summary>Largest state chunk, in floats (16 MiB).</summary>
    internal const long DefaultChunkFloats = 4L << 20;

    private readonly LearnedOptimizer _learned;
    private readonly FusedEngine _engine;
    private readonly object _gate = new();
    private AlignedBuffer? _globals;

    /// <param name="chunkFloats">Largest state chunk in floats; tests make it small to split small vectors.</param>
    public FusedRule(LearnedOptimizer learned, FusedEngine engine, long chunkFloats = DefaultChunkFloats)
    {
        _learned = learned;
        _engine = engine;
        long blocks = Math.Max(1, (chunkFloats - (_engine.StateLength(0))) / ((long)_engine.Cell.StateFloats * _engine.Cell.BlockRows));
        ChunkCoordinates = blocks * _engine.Cell.BlockRows;
    }

    /// <summary>The engine that runs this rule.</summary>
    internal FusedEngine Engine => _engine;

    /// <summary>
    /// Coordinates per state chunk, a whole number of the cell's blocks. Why chunks: a fresh state is made at every
    /// step (the rule is pure), and glibc maps any block above 32 MiB anew on each allocation (120 floats per
    /// parameter reach that at about 70 000 parameters), which cost a page fault per 4 KiB stored: 7-12x slower
    /// updates on CNN-2 (docs/performance.md). Chunks of at most 16 MiB come from the heap and are reused.
    /// </summary>
    internal long ChunkCoordinates { get; }

    public string Name => _learned.Rule.Name;

    private IEnumerable<(long Start, long Count)> Chunks(long p)
    {
        for (long start = 0; start < p || start == 0; start += ChunkCoordinates)
            yield return (start, Math.Min(ChunkCoordinates, p - start));
    }

    public OptimizerState Init(Tensor parameters)
    {
        long p = parameters.shape[0];
        var values = Chunks(p).Select(c => zeros(_engine.StateLength(c.Count), ScalarType.Float32)).ToArray();
        return new FusedState(0, values, zeros(Math.Max(1, _engine.Cell.ForwardReduction), ScalarType.Float64));
    }

    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (FusedState)state;
        long p = gradient.shape[0];
        var chunks = Chunks(p).ToArray();
        if (s.Values.Count != chunks.Length || chunks.Where((c, k) => s.Values[k].numel() != _engine.StateLength(c.Count)).Any())
            throw new ArgumentException($"state was made for another number of parameters than {p}");
        using var scope = NewDisposeScope();
        var g = gradient.detach().to(ScalarType.Float32).cpu().contiguous();
        var w = _engine.Cell.ReadsParameters ? parameters.detach().to(ScalarType.Float32).cpu().contiguous() : null;
        if (w is not null && w.numel() != p) throw new ArgumentException($"{p} gradients for {w.numel()} parameters");
        var next = chunks.Select(c => empty(_engine.StateLength(c.Count), ScalarType.Float32)).ToArray();
        var update = empty(p, ScalarType.Float32);
        int width = Math.Max(1, _engine.Cell.ForwardReduction);
        var reduction = zeros(width, ScalarType.Float64);
        lock (_gate)   // the cell's packed weights and the engine's buffers are shared
        {
            _engine.Load(_learned);
            var globals = AlignedBuffer.Ensure(ref _globals, _engine.Cell.GlobalsFloats);
            float* gp = TensorMemory.Floats(g), up = TensorMemory.Floats(update), wp = w is null ? null : TensorMemory.Floats(w);
            var inRed = new ReadOnlySpan<double>(TensorMemory.Doubles(s.Reduction), (int)s.Reduction.numel());
            _engine.Globals(s.Step + 1, gp, p, inRed, globals.Pointer);
            var total = new Span<double>(TensorMemory.Doubles(reduction), width);
            Span<double> partial = stackalloc double[width];
            for (int k = 0; k < chunks.Length; k++)
            {
                var (_, count) = chunks[k];
                float* outState = TensorMemory.Floats(next[k]);
                // Slack after the last field is read by vector loads but never used.
                new Span<float>(outState + _engine.Cell.StateFloats * count, (int)(_engine.StateLength(count) - _engine.Cell.StateFloats * count)).Clear();
            }
            if (_engine.Cell.HasStatePhase)
            {
                // The state phase's sums run over every coordinate, so every chunk's first pass comes before any second pass.
                int stateWidth = _engine.Cell.StatePhaseReduction;
                Span<double> stateTotal = stackalloc double[stateWidth], statePartial = stackalloc double[stateWidth];
                stateTotal.Clear();
                for (int k = 0; k < chunks.Length; k++)
                {
                    var (start, count) = chunks[k];
                    _engine.ForwardStatePhase(count, gp + start, TensorMemory.Floats(s.Values[k]), TensorMemory.Floats(next[k]), globals.Pointer, statePartial, wp is null ? null : wp + start);
                    for (int i = 0; i < stateWidth; i++) stateTotal[i] += statePartial[i];
                }
                _engine.CompleteGlobals(p, stateTotal, globals.Pointer);
            }
            for (int k = 0; k < chunks.Length; k++)
            {
                var (start, count) = chunks[k];
                _engine.Forward(count, gp + start, TensorMemory.Floats(s.Values[k]), TensorMemory.Floats(next[k]), up + start, globals.Pointer, partial,
                    w: wp is null ? null : wp + start, statePhaseDone: true);
                for (int i = 0; i < width; i++) total[i] += partial[i];
            }
        }
        var u = update.to(gradient.dtype).to(gradient.device);
        // (the state and update tensors are fresh: the rule stays pure)
        foreach (var t in next) t.MoveToOuterDisposeScope();
        return new StepResult(u.MoveToOuterDisposeScope(), new FusedState(s.Step + 1, next, reduction.MoveToOuterDisposeScope()));
    }
}
