using System.Runtime.InteropServices;
using L2O.Learned;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Cluster;

/// <summary>
/// Θ and meta-gradients on the wire: the raw bytes of a flat vector in its dtype, so that what a silo
/// computes with and what the learner adds up are the very values (no text, no rounding).
/// </summary>
internal static class ThetaCodec
{
    /// <summary>The values of a tensor, flattened, as raw bytes (float32 or float64).</summary>
    public static byte[] ToBytes(Tensor tensor)
    {
        using var flat = tensor.detach().cpu().contiguous().flatten();
        return flat.dtype switch
        {
            ScalarType.Float32 => MemoryMarshal.AsBytes(flat.data<float>().ToArray().AsSpan()).ToArray(),
            ScalarType.Float64 => MemoryMarshal.AsBytes(flat.data<double>().ToArray().AsSpan()).ToArray(),
            var other => throw new L2OException($"--cluster carries float32 or float64 meta-parameters, not {other}"),
        };
    }

    /// <summary>A flat tensor of <paramref name="dtype"/> holding <paramref name="bytes"/> (outside every dispose scope: the caller owns it).</summary>
    public static Tensor FromBytes(byte[] bytes, ScalarType dtype, Device device)
    {
        var t = dtype switch
        {
            ScalarType.Float32 => torch.tensor(MemoryMarshal.Cast<byte, float>(bytes).ToArray(), dtype: ScalarType.Float32),
            ScalarType.Float64 => torch.tensor(MemoryMarshal.Cast<byte, double>(bytes).ToArray(), dtype: ScalarType.Float64),
            _ => throw new L2OException($"--cluster carries float32 or float64 meta-parameters, not {dtype}"),
        };
        if (device.type != DeviceType.CPU)
        {
            var moved = t.to(device);
            t.Dispose();
            t = moved;
        }
        return t.DetachFromDisposeScope();
    }

    /// <summary>Θ of <paramref name="learned"/> as raw bytes, in the order of its parameters.</summary>
    public static byte[] Capture(LearnedOptimizer learned)
    {
        using var flat = learned.Flatten();
        return ToBytes(flat);
    }

    /// <summary>Writes <paramref name="theta"/> (from <see cref="Capture"/> of an optimizer of the same architecture) into <paramref name="learned"/>'s parameters.</summary>
    public static void Load(LearnedOptimizer learned, byte[] theta)
    {
        var parameters = learned.Parameters.Select(p => p.Parameter).ToList();
        using var flat = FromBytes(theta, parameters[0].dtype, parameters[0].device);
        using var scope = NewDisposeScope();   // the slices' views
        using var _ = no_grad();
        long total = parameters.Sum(p => p.numel());
        if (flat.numel() != total) throw new L2OException($"Θ has {flat.numel()} values, the optimizer {total}: learner and silo disagree on the architecture");
        long offset = 0;
        foreach (var p in parameters)
        {
            p.copy_(flat.narrow(0, offset, p.numel()).view(p.shape));
            offset += p.numel();
        }
    }
}
