using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Tasks;

/// <summary>How one slot of the flat vector starts: drawn by the task's initializer, or a constant.</summary>
public enum SlotInit { Random, Zeros, Ones }

/// <summary>One named tensor inside a flat parameter vector.</summary>
public sealed record ParameterSlot(string Name, long[] Shape, long Offset, SlotInit Init)
{
    public long Size => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Named tensors packed into one flat vector (TorchSharp has no <c>functional_call</c>, so tasks
/// read their weights as views of an explicit vector; autograd flows through the views).
/// </summary>
public sealed class ParameterLayout
{
    private readonly List<ParameterSlot> _slots = [];

    public IReadOnlyList<ParameterSlot> Slots => _slots;
    public int Count { get; private set; }

    /// <summary>Appends a slot; returns its index for <see cref="View"/>.</summary>
    public int Add(string name, long[] shape, SlotInit init = SlotInit.Random)
    {
        var slot = new ParameterSlot(name, shape, Count, init);
        _slots.Add(slot);
        Count = checked((int)(Count + slot.Size));
        return _slots.Count - 1;
    }

    /// <summary>The slot's tensor as a view of <paramref name="flat"/> (shape (n)).</summary>
    public Tensor View(Tensor flat, int slot)
    {
        var s = _slots[slot];
        return flat.narrow(0, s.Offset, s.Size).view(s.Shape);
    }

    /// <summary>
    /// Initial vector (owned by the caller, outside every dispose scope): slots marked <see cref="SlotInit.Random"/> drawn in order by
    /// <paramref name="initializer"/> from <paramref name="generator"/>; constant slots filled.
    /// </summary>
    public Tensor Initialize(Initializer initializer, Generator generator, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        foreach (var s in _slots)
        {
            parts.Add(s.Init switch
            {
                SlotInit.Zeros => zeros([s.Size], dtype),
                SlotInit.Ones => ones([s.Size], dtype),
                _ => initializer.Sample(s.Size, generator, dtype),
            });
        }
        return cat(parts, 0).to(device).detach().clone().DetachFromDisposeScope();
    }
}
