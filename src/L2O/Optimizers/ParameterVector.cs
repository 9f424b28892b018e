using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;
using L2O.Runtime;

namespace L2O.Optimizers;

/// <summary>Views a list of parameter tensors as one flat vector (concatenated in order).</summary>
internal static class ParameterVector
{
    /// <summary>Concatenation of <paramref name="pick"/>(p) flattened, for every parameter.</summary>
    public static Tensor Concat(IReadOnlyList<Parameter> parameters, Func<Parameter, Tensor> pick) =>
        cat(parameters.Select(p => pick(p).flatten()).ToList(), 0);

    /// <summary>The parameters' values as one vector (a copy without graph).</summary>
    public static Tensor Values(IReadOnlyList<Parameter> parameters) => Concat(parameters, p => p.detach());

    /// <summary>The parameters' gradients as one vector; a missing gradient counts as zero.</summary>
    public static Tensor Gradients(IReadOnlyList<Parameter> parameters) => Concat(parameters, p => p.grad ?? zeros_like(p));

    /// <summary>Adds consecutive slices of <paramref name="update"/> to the parameters, in place (call under no_grad).</summary>
    public static void AddInPlace(IReadOnlyList<Parameter> parameters, Tensor update)
    {
        long offset = 0;
        foreach (var p in parameters)
        {
            p.PlusInPlace(update.narrow(0, offset, p.numel()).view(p.shape));
            offset += p.numel();
        }
    }
}
