using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Engine;

/// <summary>Chooses between the reference implementation and the fused engine.</summary>
public static class Backends
{
    public static IReadOnlyList<string> Names { get; } = ["auto", "engine", "reference"];

    /// <summary>The learned methods the fused engine has a cell for, as a phrase (e.g. for help texts).</summary>
    public static string FusedMethods => FusedCells.Covered;

    public static Backend Parse(string name) => name.ToLowerInvariant() switch
    {
        "auto" => Backend.Auto,
        "engine" or "fused" => Backend.Engine,
        "reference" or "torch" => Backend.Reference,
        _ => throw new L2OException($"unknown backend '{name}'; valid: {string.Join(", ", Names)}"),
    };

    /// <summary>Why the engine cannot run this, or null when it can.</summary>
    public static string? Unsupported(LearnedOptimizer learned, Device device, ScalarType dtype)
    {
        if (device.type != DeviceType.CPU) return $"the fused engine runs on the CPU only (device is {device})";
        if (dtype != ScalarType.Float32) return $"the fused engine computes in float32 (dtype is {dtype})";
        return FusedCells.Find(learned.Method) is null ? $"the fused engine covers {FusedCells.Covered}, not {learned.Method}" : null;
    }

    /// <summary>The engine for <paramref name="learned"/>, or null when <paramref name="backend"/> resolves to the reference.</summary>
    internal static FusedEngine? CreateEngine(LearnedOptimizer learned, Backend backend, EngineOptions? options = null)
    {
        if (backend == Backend.Reference) return null;
        var reason = Unsupported(learned, learned.Context.Device, learned.Context.DType);
        if (reason is not null)
        {
            if (backend == Backend.Engine) throw new L2OException(reason + "; use --backend reference or auto");
            return null;
        }
        options ??= EngineOptions.Default;
        options.Validate();
        var info = FusedCells.Find(learned.Method)!;
        var layout = info.LayoutFor(learned, options);
        var cell = info.Create(learned, SimdSelect.Resolve(options.Width), options.BlockRowsFor(layout), layout);
        return new FusedEngine(cell, options);
    }

    /// <summary>The update rule of <paramref name="learned"/> on the chosen backend.</summary>
    public static IUpdateRule Rule(LearnedOptimizer learned, Backend backend, EngineOptions? options = null) =>
        CreateEngine(learned, backend, options) is { } engine ? new FusedRule(learned, engine) : learned.Rule;

    /// <summary>Human-readable description of what runs, e.g. <c>engine (avx512, 2 threads)</c>.</summary>
    internal static string Describe(FusedEngine? engine) =>
        engine is null ? "reference (TorchSharp)" : $"engine ({WidthName(engine)}, {engine.Options.ResolvedThreads} thread{(engine.Options.ResolvedThreads == 1 ? "" : "s")})";

    /// <summary>avx512, avx2 or scalar.</summary>
    internal static string WidthName(FusedEngine engine) => engine.Cell.Width switch { 16 => "avx512", 8 => "avx2", _ => "scalar" };
}
