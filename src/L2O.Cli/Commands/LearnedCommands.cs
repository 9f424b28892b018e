using System.CommandLine;

namespace L2O.Cli.Commands;

/// <summary>Commands of learned optimizers: meta-training and checkpoint inspection.</summary>
internal static class LearnedCommands
{
    public static IEnumerable<Command> Create() => [];
}
