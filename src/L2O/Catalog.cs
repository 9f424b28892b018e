using System.Runtime.CompilerServices;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;

namespace L2O;

/// <summary>
/// The library's composition root: adds every learned method of <see cref="LearnedRegistry"/> to
/// <see cref="OptimizerRegistry"/>, built on the backend the <see cref="BuildContext"/> asks for
/// (<see cref="Backends.Rule"/>). It lives above the layers it joins, so <c>Optimizers</c> does not
/// depend on <c>Learned</c> and <c>Learned</c> does not depend on the engine.
/// </summary>
public static class Catalog
{
    // Registration runs when the assembly loads, so no lookup can see the table half-filled. It only
    // builds records (no TorchSharp call), which is safe before the runtime's own initializer.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Fills the optimizer table before any lookup.")]
    [ModuleInitializer]
    internal static void Register()
    {
        foreach (var m in LearnedRegistry.Methods)
            OptimizerRegistry.Register(new OptimizerInfo(m.Name, m.Aliases, m.Description, m.OptionsType,
                (o, c) => Backends.Rule(LearnedRegistry.Build(m, o, c), c.Backend), Learned: true));
    }
}
