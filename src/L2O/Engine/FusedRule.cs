using System.Runtime.InteropServices;
using L2O.Learned;
using L2O.Optimizers;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Engine;

/// <summary>Raw access to CPU tensors' storage (contiguous tensors only).</summary>
internal static unsafe class TensorMemory
{
    public static float* Floats(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float32 || !t.is_contiguous())
            throw new InvalidOperationException("expected a contiguous float32 CPU tensor");
        return (float*)Unsafe(t);
    }

    public static double* Doubles(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float64 || !t.is_contiguous())
            throw new InvalidOperationException("expected a contiguous float64 CPU tensor");
        return (double*)Unsafe(t);
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

/// <summary>State of a <see cref="FusedRule"/>: the cell's state fields in one float32 vector, and the reduction of that state.</summary>
public sealed record FusedState(long Step, Tensor Values, Tensor Reduction) : OptimizerState
{
    public override IEnumerable<Tensor> Tensors => [Values, Reduction];
    public override OptimizerState Map(Func<Tensor, Tensor> f) => this with { Values = f(Values), Reduction = f(Reduction) };
}

/// <summary>
/// A learned optimizer's update rule run by the fused engine (evaluation and the drop-in optimizer;
/// no autograd). It reads the current meta-parameters at every step, as the reference rule does.
/// Gradients on another device or dtype are converted to float32 on the CPU and the update converted back.
/// </summary>
internal sealed unsafe class FusedRule : IUpdateRule
{
    private readonly LearnedOptimizer _learned;
    private readonly FusedEngine _engine;
    private readonly object _gate = new();
    private AlignedBuffer? _globals;

    public FusedRule(LearnedOptimizer learned, FusedEngine engine)
    {
        _learned = learned;
        _engine = engine;
    }

    /// <summary>The engine that runs this rule.</summary>
    internal FusedEngine Engine => _engine;

    public string Name => _learned.Rule.Name;

    public OptimizerState Init(Tensor parameters)
    {
        long p = parameters.shape[0];
        return new FusedState(0, zeros(_engine.StateLength(p), ScalarType.Float32), zeros(Math.Max(1, _engine.Cell.ForwardReduction), ScalarType.Float64));
    }

    public StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state)
    {
        var s = (FusedState)state;
        long p = gradient.shape[0];
        if (s.Values.numel() != _engine.StateLength(p)) throw new ArgumentException($"state was made for another number of parameters than {p}");
        using var scope = NewDisposeScope();
        var g = gradient.detach().to(ScalarType.Float32).cpu().contiguous();
        var next = empty(_engine.StateLength(p), ScalarType.Float32);
        var update = empty(p, ScalarType.Float32);
        var reduction = zeros(Math.Max(1, _engine.Cell.ForwardReduction), ScalarType.Float64);
        lock (_gate)   // the cell's packed weights and the engine's buffers are shared
        {
            _engine.Load(_learned);
            var globals = AlignedBuffer.Ensure(ref _globals, _engine.Cell.GlobalsFloats);
            float* gp = TensorMemory.Floats(g);
            var inRed = new ReadOnlySpan<double>(TensorMemory.Doubles(s.Reduction), (int)s.Reduction.numel());
            _engine.Globals(s.Step + 1, gp, p, inRed, globals.Pointer);
            // Slack after the last field is read by vector loads but never used.
            new Span<float>(TensorMemory.Floats(next) + _engine.Cell.StateFloats * p, (int)(_engine.StateLength(p) - _engine.Cell.StateFloats * p)).Clear();
            _engine.Forward(p, gp, TensorMemory.Floats(s.Values), TensorMemory.Floats(next), TensorMemory.Floats(update), globals.Pointer,
                new Span<double>(TensorMemory.Doubles(reduction), (int)reduction.numel()));
        }
        var u = update.to(gradient.dtype).to(gradient.device);
        // (the state and update tensors are fresh: the rule stays pure)
        var result = new StepResult(u.MoveToOuterDisposeScope(), new FusedState(s.Step + 1, next.MoveToOuterDisposeScope(), reduction.MoveToOuterDisposeScope()));
        return result;
    }
}
