using System.Runtime.CompilerServices;

namespace L2O.Engine;

/// <summary>
/// A float buffer on the pinned object heap, its start aligned to 64 bytes (one cache line, one
/// AVX-512 vector). The garbage collector owns it; the pointer is valid for the buffer's lifetime.
/// </summary>
internal sealed unsafe class AlignedBuffer
{
    private readonly float[] _array;

    public AlignedBuffer(long length)
    {
        if (length + 16 > Array.MaxLength)
            throw new L2OException($"the fused engine would need one buffer of {length:N0} floats ({length * 4.0 / (1L << 30):0.0} GiB), " +
                                   "more than a .NET array holds; use --backend reference, a shorter --unroll, or a smaller model");
        Length = length;
        _array = GC.AllocateArray<float>(checked((int)(length + 16)), pinned: true);
        float* p = (float*)Unsafe.AsPointer(ref _array[0]);
        Pointer = (float*)(((nint)p + 63) & ~(nint)63);
    }

    public long Length { get; }
    public float* Pointer { get; }
    public Span<float> Span => new(Pointer, checked((int)Length));

    public void Clear() => Span.Clear();

    /// <summary>Zeroes the buffer and copies <paramref name="values"/> to its start (a bias with its padding cleared).</summary>
    public void CopyFrom(ReadOnlySpan<float> values)
    {
        Clear();
        values.CopyTo(Span);
    }

    /// <summary><see cref="CopyFrom(ReadOnlySpan{float})"/> for meta-parameter <paramref name="name"/>, which must have <paramref name="expected"/> values.</summary>
    public void CopyFrom(ReadOnlySpan<float> values, int expected, string name)
    {
        Clear();
        CopyAt(values, 0, expected, name);
    }

    /// <summary>
    /// Copies meta-parameter <paramref name="name"/>, which must have <paramref name="expected"/> values, to
    /// <paramref name="offset"/> without clearing the rest (two tensors sharing one buffer, e.g. β's and γ's biases).
    /// </summary>
    public void CopyAt(ReadOnlySpan<float> values, int offset, int expected, string name)
    {
        if (values.Length != expected) throw new ArgumentException($"meta-parameter '{name}' has {values.Length} values, expected {expected}");
        values.CopyTo(Span[offset..]);
    }

    /// <summary>Reads meta-parameter <paramref name="name"/> through <paramref name="read"/> into the buffer (see <see cref="CopyFrom(ReadOnlySpan{float}, int, string)"/>).</summary>
    public void Read(Func<string, float[]> read, string name, int expected) => CopyFrom(read(name), expected, name);

    /// <summary>Returns <paramref name="buffer"/> when it holds at least <paramref name="length"/> floats, else a new one.</summary>
    public static AlignedBuffer Ensure(ref AlignedBuffer? buffer, long length)
    {
        if (buffer is null || buffer.Length < length) buffer = new AlignedBuffer(length);
        return buffer;
    }
}

/// <summary>Hands out consecutive, vector-aligned regions of a per-worker scratch buffer.</summary>
internal unsafe struct Arena
{
    private readonly float* _start;
    private float* _next;

    public Arena(float* start)
    {
        _start = start;
        _next = start;
    }

    /// <summary>Floats handed out so far (laying buffers out from a null start measures a layout).</summary>
    public readonly long Used => _next - _start;

    public float* Take(long floats)
    {
        float* p = _next;
        _next += (floats + 15) & ~15L;
        return p;
    }
}

/// <summary>Layout helpers.</summary>
internal static class Layout
{
    /// <summary>n rounded up to a multiple of the vector width.</summary>
    public static int Pad(int n, int width) => (n + width - 1) / width * width;
}

/// <summary>
/// A weight matrix W (out × in, PyTorch layout) packed twice for the block products:
/// <c>Forward</c> = Wᵀ as [in][outPad] for y = x Wᵀ, and <c>Backward</c> = W as [out][inPad] for dx = dy W.
/// Padding columns are zero.
/// </summary>
internal sealed unsafe class PackedMatrix
{
    private readonly AlignedBuffer _forward, _backward;

    public PackedMatrix(int rows, int cols, int width)
    {
        Out = rows; In = cols;
        OutPad = Layout.Pad(rows, width);
        InPad = Layout.Pad(cols, width);
        _forward = new AlignedBuffer((long)In * OutPad);
        _backward = new AlignedBuffer((long)Out * InPad);
    }

    public int Out { get; }
    public int In { get; }
    public int OutPad { get; }
    public int InPad { get; }
    public float* Forward => _forward.Pointer;
    public float* Backward => _backward.Pointer;

    /// <summary>
    /// A gradient accumulated in the forward packing ([in][outPad], at <paramref name="offset"/> of
    /// <paramref name="g"/>) back in W's layout, out × in.
    /// </summary>
    public float[] Unpack(ReadOnlySpan<double> g, int offset)
    {
        var w = new float[Out * In];
        for (int o = 0; o < Out; o++)
            for (int i = 0; i < In; i++) w[o * In + i] = (float)g[offset + i * OutPad + o];
        return w;
    }

    /// <summary>Packs W given row-major as out × in.</summary>
    public void Set(ReadOnlySpan<float> w)
    {
        _forward.Clear();
        _backward.Clear();
        for (int o = 0; o < Out; o++)
            for (int i = 0; i < In; i++)
            {
                Forward[i * OutPad + o] = w[o * In + i];
                Backward[o * InPad + i] = w[o * In + i];
            }
    }
}
