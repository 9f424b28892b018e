using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Optimizers;

/// <summary>
/// Writes an <see cref="OptimizerState"/> record to a stream and reads it back exactly (tensors byte for
/// byte), so that an optimizer saved mid-training continues bitwise.
/// </summary>
/// <remarks>
/// States are positional records; the codec walks the primary constructor's parameters, so a new state
/// type needs no code here as long as its members are <c>long</c>, <c>int</c>, <c>double</c>, <c>bool</c>,
/// <see cref="Tensor"/> (nullable) or <c>IReadOnlyList&lt;Tensor&gt;</c>. Anything else is refused
/// when saving, and <c>RuleOptimizerResumeTests</c> round-trips every registered rule.
/// </remarks>
internal static class StateCodec
{
    private const int Version = 1;

    public static void Write(BinaryWriter writer, OptimizerState state)
    {
        var type = state.GetType();
        writer.Write(Version);
        writer.Write(type.FullName!);
        foreach (var p in Constructor(type).GetParameters())
        {
            object? value = type.GetProperty(p.Name!)!.GetValue(state);
            switch (value)
            {
                case long l: writer.Write(l); break;
                case int i: writer.Write(i); break;
                case double d: writer.Write(d); break;
                case bool b: writer.Write(b); break;
                case Tensor t: writer.Write(true); WriteTensor(writer, t); break;
                case IReadOnlyList<Tensor> list:
                    writer.Write(list.Count);
                    foreach (var t in list) WriteTensor(writer, t);
                    break;
                case null when p.ParameterType == typeof(Tensor): writer.Write(false); break;
                default: throw new NotSupportedException($"{type.Name}.{p.Name}: a state member of type {p.ParameterType.Name} cannot be saved");
            }
        }
    }

    /// <summary>Reads a state of type <paramref name="expected"/>; its tensors are placed on <paramref name="device"/>.</summary>
    public static OptimizerState Read(BinaryReader reader, Type expected, Device device)
    {
        int version = reader.ReadInt32();
        if (version != Version) throw new L2OException($"optimizer state format {version} is not supported (expected {Version})");
        string name = reader.ReadString();
        if (name != expected.FullName)
            throw new L2OException($"the saved optimizer state is a {Short(name)}, but this optimizer's rule keeps a {expected.Name}: load it into the same optimizer (method, checkpoint and backend) that saved it");
        var parameters = Constructor(expected).GetParameters();
        var args = new object?[parameters.Length];
        for (int k = 0; k < parameters.Length; k++)
        {
            var t = parameters[k].ParameterType;
            args[k] = t == typeof(long) ? reader.ReadInt64()
                : t == typeof(int) ? reader.ReadInt32()
                : t == typeof(double) ? reader.ReadDouble()
                : t == typeof(bool) ? reader.ReadBoolean()
                : t == typeof(Tensor) ? (reader.ReadBoolean() ? ReadTensor(reader, device) : null)
                : t == typeof(IReadOnlyList<Tensor>) ? Enumerable.Range(0, reader.ReadInt32()).Select(_ => ReadTensor(reader, device)).ToArray()
                : throw new NotSupportedException($"{expected.Name}.{parameters[k].Name}: unsupported state member type {t.Name}");
        }
        return (OptimizerState)Constructor(expected).Invoke(args);
    }

    private static string Short(string fullName) => fullName[(fullName.LastIndexOf('.') + 1)..];

    /// <summary>The primary constructor: every parameter names a public property (the record copy constructor does not).</summary>
    private static ConstructorInfo Constructor(Type type) =>
        type.GetConstructors().Where(c => c.GetParameters().All(p => type.GetProperty(p.Name!) is not null))
            .OrderByDescending(c => c.GetParameters().Length).FirstOrDefault()
        ?? throw new NotSupportedException($"{type.Name} has no constructor whose parameters are its properties");

    // dtype, rank, shape, then the raw bytes of a contiguous CPU copy: exact for every dtype.
    private static void WriteTensor(BinaryWriter writer, Tensor t)
    {
        using var scope = NewDisposeScope();
        var c = t.detach().cpu().contiguous();
        writer.Write((int)c.dtype);
        writer.Write(c.shape.Length);
        foreach (long d in c.shape) writer.Write(d);
        writer.Write(c.bytes);
    }

    private static Tensor ReadTensor(BinaryReader reader, Device device)
    {
        var dtype = (ScalarType)reader.ReadInt32();
        var shape = new long[reader.ReadInt32()];
        for (int k = 0; k < shape.Length; k++) shape[k] = reader.ReadInt64();
        using var scope = NewDisposeScope();
        var t = empty(shape, dtype);
        int length = checked((int)(t.numel() * t.ElementSize));
        byte[] bytes = reader.ReadBytes(length);
        if (bytes.Length != length) throw new L2OException("the optimizer state file ends early");
        t.bytes = bytes;
        return t.to(device).MoveToOuterDisposeScope();
    }
}
