using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Tasks;

/// <summary>Loss and gradient of an optimizee at an explicit parameter vector.</summary>
public static class Autodiff
{
    /// <summary>
    /// Loss (detached scalar) and gradient (detached, shape (n)) at <paramref name="parameters"/>.
    /// The parameters are detached first, so this never builds a graph to whatever produced them.
    /// </summary>
    public static (Tensor Loss, Tensor Gradient) LossAndGradient(IOptimizee optimizee, Tensor parameters, Batch batch)
    {
        using var _ = enable_grad();
        var w = parameters.detach().requires_grad_(true);
        var loss = optimizee.Loss(w, batch);
        var grad = torch.autograd.grad([loss], [w])[0];
        return (loss.detach(), grad);
    }

    /// <summary><see cref="LossAndGradient"/> with the gradient copied into <paramref name="gradient"/>; returns the loss.</summary>
    public static double LossAndGradientInto(IOptimizee optimizee, Tensor parameters, Batch batch, Tensor gradient)
    {
        using var scope = NewDisposeScope();
        var (loss, grad) = LossAndGradient(optimizee, parameters, batch);
        gradient.copy_(grad);
        return loss.ToDouble();
    }
}
