using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Training;

/// <summary>
/// One optimizee trajectory being optimized by a learned rule, carried across truncated unrolls:
/// parameters w, optimizer state, and the gradient (and loss) at w, all detached from any graph.
/// </summary>
public sealed class Trajectory : IDisposable
{
    private Trajectory(IOptimizee optimizee, Tensor w, OptimizerState state, Tensor gradient, double loss)
    {
        Optimizee = optimizee; W = w; State = state; Gradient = gradient; Loss = loss;
    }

    public IOptimizee Optimizee { get; }
    public Tensor W { get; private set; }
    public OptimizerState State { get; private set; }
    public Tensor Gradient { get; private set; }
    public double Loss { get; private set; }
    public int StepsTaken { get; private set; }

    /// <summary>Starts at w₀ with the rule's initial state and the gradient at w₀.</summary>
    public static Trajectory Start(IOptimizee optimizee, IUpdateRule rule)
    {
        using var scope = NewDisposeScope();
        var w = optimizee.InitialParameters.detach().clone();
        var (loss, grad) = Autodiff.LossAndGradient(optimizee, w, optimizee.NextBatch());
        OptimizerState state;
        using (no_grad()) state = rule.Init(w);
        // The trajectory owns its tensors: they leave every dispose scope, Dispose releases them.
        state.DetachFromDisposeScope();
        return new Trajectory(optimizee, w.DetachFromDisposeScope(), state, grad.DetachFromDisposeScope(), loss.ToDouble());
    }

    /// <summary>Continues from the end of an unroll: the graph is cut here (truncated BPTT).</summary>
    public void Advance(UnrollResult result)
    {
        var w = result.W.detach().DetachFromDisposeScope();
        var state = result.State.Detach();
        state.DetachFromDisposeScope();
        var grad = result.Gradient.DetachFromDisposeScope();
        W.Dispose();
        Gradient.Dispose();
        State.DisposeReplaced(null);
        (W, State, Gradient, Loss) = (w, state, grad, result.Losses[^1]);
        StepsTaken += result.Losses.Length;
    }

    public void Dispose()
    {
        W.Dispose();
        Gradient.Dispose();
        State.DisposeReplaced(null);
        Optimizee.Dispose();
    }
}

/// <summary>What one unroll produced.</summary>
/// <param name="MetaLoss">Scalar with a graph to the meta-parameters.</param>
/// <param name="Losses">f(w_1) … f(w_U).</param>
/// <param name="W">w_U (attached to the graph).</param>
/// <param name="State">State after the last step (attached).</param>
/// <param name="Gradient">Detached gradient at w_U, for the next unroll.</param>
/// <param name="Gradients">Detached gradients used by each step, g(w_0) … g(w_{U−1}).</param>
public sealed record UnrollResult(Tensor MetaLoss, double[] Losses, Tensor W, OptimizerState State, Tensor Gradient, IReadOnlyList<Tensor> Gradients);

/// <summary>
/// Truncated backpropagation through time over a learned rule (the meta-training of all three
/// papers): U steps w_s = w_{s−1} + Δ(g_{s−1}, state; Θ), each loss f(w_s) kept with its graph,
/// combined into the meta-loss. First-order: the optimizee's gradients g_s are constants (∂g/∂Θ
/// is dropped, as in Andrychowicz et al. 2016 §2.1, RNNprop and HyperAdam), so each step needs
/// only the first derivative of f; Θ's gradient flows through the updates and through f(w_s).
/// </summary>
public static class Unroll
{
    /// <summary>Runs <paramref name="steps"/> steps of <paramref name="trajectory"/> with graph to Θ.</summary>
    /// <param name="fixedGradients">Use these gradients instead of computing them (finite-difference checks of the first-order meta-gradient).</param>
    public static UnrollResult Run(IUpdateRule rule, Trajectory trajectory, int steps, MetaLoss kind, IReadOnlyList<Tensor>? fixedGradients = null)
    {
        var f = trajectory.Optimizee;
        var w = trajectory.W;
        var state = trajectory.State;
        var g = trajectory.Gradient;
        var terms = new List<Tensor>(steps);
        var values = new double[steps];
        var used = new List<Tensor>(steps);
        for (int s = 0; s < steps; s++)
        {
            if (fixedGradients is not null) g = fixedGradients[s];
            used.Add(g);
            var step = rule.Step(g, w, state);
            w = w.Plus(step.Update);
            state = step.State;
            var loss = f.Loss(w, f.NextBatch());
            values[s] = loss.ToDouble();
            // Gradient for the next step: keep the graph of f (the meta-loss still needs it), no second order.
            g = torch.autograd.grad([loss], [w], retain_graph: true)[0].detach();
            terms.Add(loss);
        }
        // The meta-loss from its one definition (MetaLosses, as the engine and validation read it): the gradient is
        // Σ_s Weight_s ∇f(w_s), the weights taken at this unroll's losses (first order, as MeanLog's 1/(f + 1e-15) needs),
        // and the value is MetaLosses.Value; subtracting the detached weighted sum changes the value, not the gradient.
        // Terms of weight zero (Last, MeanBefore) stay out of the graph: no backward through them, and no 0·∞.
        Tensor? weighted = null;
        for (int s = 0; s < steps; s++)
        {
            double weight = MetaLosses.Weight(kind, s + 1, steps, values[s]);
            if (weight == 0) continue;
            var term = terms[s].reshape([]).Times(weight);
            weighted = weighted is null ? term : weighted.Plus(term);
        }
        // A one-step MeanBefore unroll has no term; it keeps a graph (with a zero gradient) for the caller's backward.
        weighted ??= terms[^1].reshape([]).Times(0.0);
        var metaLoss = (weighted - weighted.detach()).Plus(MetaLosses.Value(kind, trajectory.Loss, values));
        return new UnrollResult(metaLoss, values, w, state, g, used);
    }
}
