using System.CommandLine;
using L2O.Runtime;

namespace L2O.Cli.Commands;

internal static class InfoCommand
{
    public static Command Create()
    {
        var c = new Command("info", "Show the runtime: libtorch version, how its native bridge was loaded, threads, CUDA");
        c.SetAction(_ =>
        {
            L2ORuntime.EnsureTorch();
            Console.WriteLine($"L2O.NET {Runtime.L2ORuntime.Version}");
            Console.WriteLine(L2ORuntime.Describe());
            return Cli.Ok;
        });
        return c;
    }
}
