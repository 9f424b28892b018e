using System.Runtime.CompilerServices;
using L2O.Learned;

namespace L2O.Engine;

/// <summary>
/// One coordinatewise LSTM layer on a block of rows, the engine's version of <see cref="L2O.Learned.Cells.LstmStep"/>:
/// z = b + x W_ihᵀ + h W_hhᵀ (gates i, f, g, o side by side), c′ = σ(f) c + σ(i) tanh(g), h′ = σ(o) tanh(c′).
/// The forward keeps the gate activations and tanh(c′) in the block's scratch so the backward that
/// follows it needs no second recomputation.
/// </summary>
internal sealed unsafe class LstmBlock<T> where T : unmanaged, ISimd<T>
{
    public LstmBlock(int input, int hidden, ref int gradCursor)
    {
        int c = T.Count;
        Inputs = input; Hidden = hidden;
        HiddenPadded = Layout.Pad(hidden, c);
        GatesPadded = Layout.Pad(4 * hidden, c);
        GateStride = Layout.Pad(Math.Max(4 * hidden, 3 * hidden + HiddenPadded), c);
        Wx = new PackedMatrix(4 * hidden, input, c);
        Wh = new PackedMatrix(4 * hidden, hidden, c);
        Wxh = new PackedMatrix(4 * hidden, input + hidden, c);
        AdjointStride = Wxh.InPad;
        _bias = new AlignedBuffer(GatesPadded);
        _gateA = new AlignedBuffer(GateStride); _gateB = new AlignedBuffer(GateStride); _gateC = new AlignedBuffer(GateStride);
        for (int col = 0; col < GateStride; col++)
        {
            bool tanh = col / hidden == 2;   // gate g; i, f, o (and the padding) are sigmoids
            _gateA.Span[col] = tanh ? 1f : 0.5f;
            _gateB.Span[col] = tanh ? 1f : 0.5f;
            _gateC.Span[col] = tanh ? 0f : 0.5f;
        }
        GradWx = gradCursor; gradCursor += input * GatesPadded;
        GradWh = gradCursor; gradCursor += hidden * GatesPadded;
        GradB = gradCursor; gradCursor += GatesPadded;
    }

    private readonly AlignedBuffer _bias, _gateA, _gateB, _gateC;
    public int Inputs { get; }
    public int Hidden { get; }
    public int HiddenPadded { get; }
    public int GatesPadded { get; }
    /// <summary>Row stride of the gate buffers: unaligned reads of gate o run up to 3H + HiddenPadded.</summary>
    public int GateStride { get; }
    public PackedMatrix Wx { get; }
    public PackedMatrix Wh { get; }
    /// <summary>[W_ih | W_hh] for the backward: one product gives [dx | dh] (fewer padded columns than two).</summary>
    public PackedMatrix Wxh { get; }
    /// <summary>Row stride of the [dx | dh] buffer.</summary>
    public int AdjointStride { get; }
    public int GradWx { get; }
    public int GradWh { get; }
    public int GradB { get; }

    public void Load(float[] weightIh, float[] weightHh, float[] bias)
    {
        Wx.Set(weightIh);
        Wh.Set(weightHh);
        var both = new float[4 * Hidden * (Inputs + Hidden)];
        for (int o = 0; o < 4 * Hidden; o++)
        {
            Array.Copy(weightIh, o * Inputs, both, o * (Inputs + Hidden), Inputs);
            Array.Copy(weightHh, o * Hidden, both, o * (Inputs + Hidden) + Inputs, Hidden);
        }
        Wxh.Set(both);
        _bias.CopyFrom(bias);
    }

    public void Unpack(ReadOnlySpan<double> g, string prefix, Action<string, float[]> write)
    {
        write(MetaSchema.InputWeight(prefix), Wx.Unpack(g, GradWx));
        write(MetaSchema.HiddenWeight(prefix), Wh.Unpack(g, GradWh));
        var b = new float[4 * Hidden];
        for (int o = 0; o < 4 * Hidden; o++) b[o] = (float)g[GradB + o];
        write(MetaSchema.Bias(prefix), b);
    }


    /// <summary>
    /// Block buffers; padded rows (stride <see cref="HiddenPadded"/> unless said). Logits z and the gate activations have
    /// stride <see cref="GateStride"/>; h′, c′ are this step's outputs; the adjoints of x and of the previous h share rows
    /// of stride <see cref="AdjointStride"/>; <see cref="COutAdjoint"/> is the whole adjoint of c′ (from h′ and from later steps).
    /// </summary>
    public struct Buffers
    {
        public float* Logits, GateActivations, TanhC, HOut, COut, LogitsAdjoint, COutAdjoint, InputAdjoint, PreviousHiddenAdjoint, PreviousCAdjoint;
    }

    public Buffers Take(ref Arena arena, int rows)
    {
        var b = new Buffers();
        TakeKept(ref arena, rows, ref b);
        TakeWork(ref arena, rows, ref b);
        return b;
    }

    /// <summary>The forward's values that the backward reads (what a kept forward keeps): the gate activations and tanh c′.</summary>
    public void TakeKept(ref Arena arena, int rows, ref Buffers b)
    {
        b.GateActivations = arena.Take((long)rows * GateStride);
        b.TanhC = arena.Take((long)rows * HiddenPadded);
    }

    /// <summary>The forward's temporaries (gate logits; h′ and c′, which the output state holds) and the backward's own buffers.</summary>
    public void TakeWork(ref Arena arena, int rows, ref Buffers b)
    {
        b.Logits = arena.Take((long)rows * GateStride);
        b.HOut = arena.Take((long)rows * HiddenPadded);
        b.COut = arena.Take((long)rows * HiddenPadded);
        b.LogitsAdjoint = arena.Take((long)rows * GateStride);
        b.COutAdjoint = arena.Take((long)rows * HiddenPadded);
        b.InputAdjoint = arena.Take((long)rows * AdjointStride + 16);
        b.PreviousCAdjoint = arena.Take((long)rows * HiddenPadded);
        b.PreviousHiddenAdjoint = b.InputAdjoint + Inputs;
    }

    /// <summary>h′, c′ into <c>f.HOut</c>, <c>f.COut</c> from x (ldx), h (ldh) and c (ldc).</summary>
    public void Forward(in Buffers f, int rows, float* x, int ldx, float* h, int ldh, float* c, int ldc)
    {
        Gemm<T>.SetRows(f.Logits, GateStride, rows, GatesPadded, _bias.Pointer);
        Gemm<T>.MulAdd(x, ldx, rows, Inputs, Wx.Forward, Wx.OutPad, GatesPadded, f.Logits, GateStride);
        Gemm<T>.MulAdd(h, ldh, rows, Hidden, Wh.Forward, Wh.OutPad, GatesPadded, f.Logits, GateStride);
        GatesRows(rows, f.Logits, GateStride, f.GateActivations, c, ldc, f.TanhC, f.COut, f.HOut, Hidden, HiddenPadded);
    }

    // Each loop is its own small method so the JIT inlines every vector operation
    // (one large method exhausts its inlining budget and turns them into calls).
    /// <remarks>
    /// The gate activations are one pass over the contiguous row [z_i | z_f | z_g | z_o] (4H = 80
    /// floats is five whole vectors at H = 20, no padding): σ(x) = ½ + ½ tanh(x/2) and tanh(x) are
    /// both b·tanh(a·x) + c with per-column (a, b, c), so each lane needs one tanh whatever its gate.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void GatesRows(int rows, float* zs, int zStride, float* acts, float* cs, int ldc, float* tcs, float* cOuts, float* hOuts, int h, int hp)
    {
        float* ga = _gateA.Pointer, gb = _gateB.Pointer, gc = _gateC.Pointer;
        int n4 = GatesPadded;
        for (int r = 0; r < rows; r++)
        {
            float* z = zs + r * zStride, act = acts + r * zStride;
            for (int v = 0; v < n4; v += T.Count)
                T.Store(act + v, T.Fma(Act<T>.Tanh(T.Mul(T.Load(z + v), T.Load(ga + v))), T.Load(gb + v), T.Load(gc + v)));
        }
        for (int r = 0; r < rows; r++)
        {
            float* act = acts + r * zStride, c = cs + r * ldc, tcOut = tcs + r * hp, cOut = cOuts + r * hp, hOut = hOuts + r * hp;
            for (int v = 0; v < hp; v += T.Count)
            {
                T cn = T.Fma(T.Load(act + h + v), T.Load(c + v), T.Mul(T.Load(act + v), T.Load(act + 2 * h + v)));
                T tc = Act<T>.Tanh(cn);
                T.Store(tcOut + v, tc);
                T.Store(cOut + v, cn);
                T.Store(hOut + v, T.Mul(T.Load(act + 3 * h + v), tc));
            }
        }
    }

    /// <summary>
    /// Given the adjoints of h′ (dh, lddh) and of c′ from later steps (dcNext, lddc), writes the
    /// adjoints of x (<c>f.InputAdjoint</c>) and h (<c>f.PreviousHiddenAdjoint</c>), both of stride <see cref="AdjointStride"/>, and of c (<c>f.PreviousCAdjoint</c>), and adds the
    /// weight gradients into <paramref name="grad"/>. Needs the buffers of the matching forward.
    /// </summary>
    public void Backward(in Buffers f, int rows, float* x, int ldx, float* h, int ldh, float* c, int ldc,
        float* dh, int lddh, float* dcNext, int lddc, float* grad)
    {
        BackwardRows(rows, f.GateActivations, f.LogitsAdjoint, GateStride, f.COutAdjoint, f.TanhC, f.PreviousCAdjoint, c, ldc, dh, lddh, dcNext, lddc, Hidden, HiddenPadded);
        Gemm<T>.AccumulateXtY(x, ldx, rows, Inputs, f.LogitsAdjoint, GateStride, GatesPadded, grad + GradWx, GatesPadded);
        Gemm<T>.AccumulateXtY(h, ldh, rows, Hidden, f.LogitsAdjoint, GateStride, GatesPadded, grad + GradWh, GatesPadded);
        Gemm<T>.AccumulateColumns(f.LogitsAdjoint, GateStride, rows, GatesPadded, grad + GradB);
        Gemm<T>.Mul(f.LogitsAdjoint, GateStride, rows, 4 * Hidden, Wxh.Backward, AdjointStride, AdjointStride, f.InputAdjoint, AdjointStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRows(int rows, float* acts, float* dzs, int zStride, float* cOutAdjoints, float* tcs, float* previousCAdjoints, float* cs, int ldc,
        float* dhs, int lddh, float* dcNexts, int lddc, int h, int hp)
    {
        int w = T.Count;
        T one = T.Splat(1f);
        for (int r = 0; r < rows; r++)
        {
            float* act = acts + r * zStride, dz = dzs + r * zStride, cOutAdjoint = cOutAdjoints + r * hp, tcRow = tcs + r * hp, previousCAdjoint = previousCAdjoints + r * hp;
            float* c = cs + r * ldc, dh = dhs + r * lddh, dcNext = dcNexts + r * lddc;
            for (int v = 0; v < hp; v += w)
            {
                T o = T.Load(act + 3 * h + v), tc = T.Load(tcRow + v);
                T d = T.Fma(T.Load(dh + v), T.Mul(o, T.Sub(one, T.Mul(tc, tc))), T.Load(dcNext + v));
                T.Store(cOutAdjoint + v, d);
                T.Store(previousCAdjoint + v, T.Mul(d, T.Load(act + h + v)));
            }
            // Gates are written in increasing column order so each one's tail overrun is overwritten by the next.
            for (int v = 0; v < hp; v += w)
            {
                T i = T.Load(act + v);
                T.Store(dz + v, T.Mul(T.Mul(T.Load(cOutAdjoint + v), T.Load(act + 2 * h + v)), T.Mul(i, T.Sub(one, i))));
            }
            for (int v = 0; v < hp; v += w)
            {
                T fg = T.Load(act + h + v);
                T.Store(dz + h + v, T.Mul(T.Mul(T.Load(cOutAdjoint + v), T.Load(c + v)), T.Mul(fg, T.Sub(one, fg))));
            }
            for (int v = 0; v < hp; v += w)
            {
                T g = T.Load(act + 2 * h + v);
                T.Store(dz + 2 * h + v, T.Mul(T.Mul(T.Load(cOutAdjoint + v), T.Load(act + v)), T.Sub(one, T.Mul(g, g))));
            }
            for (int v = 0; v < hp; v += w)
            {
                T o = T.Load(act + 3 * h + v);
                T.Store(dz + 3 * h + v, T.Mul(T.Mul(T.Load(dh + v), T.Load(tcRow + v)), T.Mul(o, T.Sub(one, o))));
            }
        }
    }
}
