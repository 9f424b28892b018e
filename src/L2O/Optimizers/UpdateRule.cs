using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Optimizers;

/// <summary>
/// Immutable per-run state of an update rule: the tensors it carries from step to step.
/// Concrete states are small records; <see cref="Tensors"/> and <see cref="Map"/> let generic code
/// detach, move, clone or dispose a state without knowing its type.
/// </summary>
public abstract record OptimizerState
{
    /// <summary>Every tensor the state holds (order fixed by the concrete type).</summary>
    public abstract IEnumerable<Tensor> Tensors { get; }

    /// <summary>A state of the same type with each tensor replaced by <c>f(tensor)</c>.</summary>
    public abstract OptimizerState Map(Func<Tensor, Tensor> f);
}

/// <summary>A state with no tensors (e.g. plain SGD).</summary>
public sealed record EmptyState : OptimizerState
{
    public static readonly EmptyState Instance = new();
    public override IEnumerable<Tensor> Tensors => [];
    public override OptimizerState Map(Func<Tensor, Tensor> f) => this;
}

/// <summary>The result of one step: the increment to add to the parameters, and the next state.</summary>
public readonly record struct StepResult(Tensor Update, OptimizerState State);

/// <summary>
/// A pure, out-of-place optimizer: <c>state = Init(w₀)</c>, then
/// <c>(Δ, state′) = Step(g, w, state)</c> and <c>w′ = w + Δ</c>.
/// </summary>
/// <remarks>
/// Nothing is modified in place, so the same rule runs inside a meta-training unroll (autograd
/// flows through <c>Δ</c> and the state), in evaluation under <c>no_grad</c>, and inside the
/// drop-in optimizer for TorchSharp modules. Parameters and gradients are one flat
/// vector; rules whose statistics are global (HyperAdam's norms) see the whole model at once.
/// A rule may return a tensor of the old state unchanged inside the new state; callers that
/// dispose old states must skip tensors that the new state still holds
/// (<see cref="OptimizerStateExtensions.DisposeReplaced"/>).
/// </remarks>
public interface IUpdateRule
{
    /// <summary>Short display name, e.g. <c>adam(lr=0.001)</c>.</summary>
    string Name { get; }

    /// <summary>Initial state for parameters <paramref name="parameters"/> (shape (n)).</summary>
    OptimizerState Init(Tensor parameters);

    /// <summary>One step from gradient <paramref name="gradient"/> at <paramref name="parameters"/>.</summary>
    StepResult Step(Tensor gradient, Tensor parameters, OptimizerState state);
}

public static class OptimizerStateExtensions
{
    public static T Detach<T>(this T state) where T : OptimizerState => (T)state.Map(t => t.detach());

    public static void MoveToOuterDisposeScope(this OptimizerState state)
    {
        foreach (var t in state.Tensors) t.MoveToOuterDisposeScope();
    }

    public static void DetachFromDisposeScope(this OptimizerState state)
    {
        foreach (var t in state.Tensors) t.DetachFromDisposeScope();
    }

    /// <summary>Disposes the tensors of <paramref name="old"/> that <paramref name="next"/> does not hold.</summary>
    public static void DisposeReplaced(this OptimizerState old, OptimizerState? next)
    {
        var keep = next is null ? [] : new HashSet<Tensor>(next.Tensors, ReferenceEqualityComparer.Instance);
        foreach (var t in old.Tensors)
            if (!keep.Contains(t)) t.Dispose();
    }

    /// <summary>True when every element of every state tensor is finite.</summary>
    public static bool IsFinite(this OptimizerState state)
    {
        foreach (var t in state.Tensors)
        {
            using var ok = t.isfinite().all();
            if (!ok.item<bool>()) return false;
        }
        return true;
    }
}
