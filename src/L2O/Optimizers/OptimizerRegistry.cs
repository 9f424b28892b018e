using L2O.Specs;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Optimizers;

/// <summary>Which implementation runs a learned optimizer.</summary>
public enum Backend
{
    /// <summary>The fused engine where it covers the method (HyperAdam, RNNprop, DMoptimizer on the CPU in float32), else the reference.</summary>
    Auto,
    /// <summary>The fused CPU engine; an error where it does not cover the run.</summary>
    Engine,
    /// <summary>The TorchSharp implementation (the specification).</summary>
    Reference,
}

/// <summary>What an optimizer may need to be built: the device and dtype of the run, and which backend runs learned rules.</summary>
public sealed record BuildContext(Device Device, ScalarType DType)
{
    public static BuildContext Cpu { get; } = new(CPU, ScalarType.Float32);

    /// <summary>Auto: learned rules run on the fused CPU engine where it covers them (the engine's <c>Backends</c>).</summary>
    public Backend Backend { get; init; } = Backend.Auto;
}

/// <summary>A named optimizer the CLI and the harness can build from a specification.</summary>
/// <param name="Name">Canonical name, e.g. <c>adam</c>.</param>
/// <param name="Aliases">Other accepted names.</param>
/// <param name="Description">One line for listings.</param>
/// <param name="OptionsType">An options record whose properties carry <see cref="OptionAttribute"/>.</param>
/// <param name="Create">Builds the rule from bound options.</param>
/// <param name="Learned">True for learned optimizers (they take a checkpoint).</param>
public sealed record OptimizerInfo(string Name, string[] Aliases, string Description, Type OptionsType,
    Func<object, BuildContext, IUpdateRule> Create, bool Learned = false)
{
    public bool HasLearningRate => OptionsBinder.Describe(OptionsType).Any(o => o.Key == "lr");
}

/// <summary>
/// Every optimizer known by name: the hand-designed ones here, the learned ones added by the library's
/// composition root (<c>L2O.Catalog</c>, which runs when the assembly loads). One table drives the CLI,
/// the harness and the tests.
/// </summary>
public static class OptimizerRegistry
{
    private static readonly List<OptimizerInfo> Entries =
    [
        new("sgd", [], "plain SGD: Δ = −α g", typeof(SgdOptions), (o, _) => new Sgd((SgdOptions)o)),
        new("momentum", ["ema-momentum"], "momentum, EMA form of RNNprop Table 1", typeof(MomentumOptions), (o, _) => new Momentum((MomentumOptions)o)),
        new("heavy-ball", ["polyak"], "classic momentum b = μb + g (torch SGD momentum)", typeof(HeavyBallOptions), (o, _) => new HeavyBall((HeavyBallOptions)o)),
        new("nesterov", ["nag"], "Nesterov momentum (torch SGD nesterov)", typeof(HeavyBallOptions), (o, _) => new Nesterov((HeavyBallOptions)o)),
        new("adagrad", [], "Adagrad", typeof(AdagradOptions), (o, _) => new Adagrad((AdagradOptions)o)),
        new("adadelta", [], "Adadelta", typeof(AdadeltaOptions), (o, _) => new Adadelta((AdadeltaOptions)o)),
        new("rmsprop", [], "RMSprop", typeof(RmsPropOptions), (o, _) => new RmsProp((RmsPropOptions)o)),
        new("adam", [], "Adam", typeof(AdamOptions), (o, _) => new Adam((AdamOptions)o)),
        new("adamax", [], "Adamax", typeof(AdamOptions), (o, _) => new Adamax((AdamOptions)o)),
        new("mng", ["mean-normalized-gradient"], "Mean Normalized Gradient (Shahid 2017, Alg. 1)", typeof(MngOptions), (o, _) => new Mng((MngOptions)o)),
    ];

    public static IReadOnlyList<OptimizerInfo> All => Entries;

    /// <summary>Adds an entry (used by the learned-optimizer catalogue); names must be unique.</summary>
    public static void Register(OptimizerInfo info)
    {
        lock (Entries)
        {
            if (Entries.Any(e => e.Name == info.Name)) return;
            Entries.Add(info);
        }
    }

    public static OptimizerInfo Find(string name)
    {
        return NameLookup.Find(Entries, name, e => e.Name, e => e.Aliases, "optimizer");
    }

    /// <summary>Builds an optimizer from text such as <c>adam:lr=0.01</c>.</summary>
    public static IUpdateRule Create(string spec, BuildContext? context = null) => Create(Spec.Parse(spec), context);

    public static IUpdateRule Create(Spec spec, BuildContext? context = null)
    {
        var info = Find(spec.Name);
        var options = OptionsBinder.Bind(info.OptionsType, info.Name, spec.Arguments);
        return info.Create(options, context ?? BuildContext.Cpu);
    }
}
