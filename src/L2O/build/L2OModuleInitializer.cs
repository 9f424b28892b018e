// Added to C# projects by the L2O.NET package (buildTransitive/L2O.NET.targets); opt out with
// <L2OAutoInitialize>false</L2OAutoInitialize>. Runs before Main, so TorchSharp's native library is
// loaded with L2O's libstdc++ fix even when the program uses torch before any L2O type.
#pragma warning disable CA2255
namespace L2O.Generated
{
    internal static class L2OModuleInitializer
    {
        [global::System.Runtime.CompilerServices.ModuleInitializer]
        internal static void Initialize() => global::L2O.Runtime.L2ORuntime.Initialize();
    }
}
