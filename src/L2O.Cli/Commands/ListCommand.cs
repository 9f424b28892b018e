using System.CommandLine;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;
using Spectre.Console;

namespace L2O.Cli.Commands;

internal static class ListCommand
{
    public static Command Create()
    {
        var what = new Argument<string>("what") { Description = "tasks, optimizers, all, or a learned method's name (its meta-parameters, training defaults and backends)", DefaultValueFactory = _ => "all" };
        var c = new Command("list", "List tasks and optimizers with their options and defaults") { what };
        Cli.Examples[c] = "  l2o list tasks\n  l2o list optimizers\n  l2o list hyperadam";
        c.SetAction(p =>
        {
            string w = p.GetValue(what)!;
            if (w is not ("tasks" or "optimizers" or "all"))
            {
                var info = OptimizerRegistry.Find(w);   // unknown names: one line listing the valid ones
                if (!info.Learned) throw new L2OException($"'{info.Name}' is hand-designed: its options are in 'l2o list optimizers'; a method's page is for learned optimizers ({string.Join(", ", LearnedRegistry.Methods.Select(m => m.Name))})");
                PrintMethod(LearnedRegistry.Find(info.Name));
                return Cli.Ok;
            }
            if (w is "tasks" or "all")
                Print("Tasks", TaskRegistry.All.Select(t => (t.Name, t.Aliases, t.Description, OptionsBinder.Describe(t.OptionsType))));
            if (w is "optimizers" or "all")
            {
                Print("Optimizers", OptimizerRegistry.All.Select(o => (o.Name, o.Aliases, o.Description, OptionsBinder.Describe(o.OptionsType))));
            }
            AnsiConsole.MarkupLine("[grey]Give options as NAME:key=value,key=value, e.g. adam:lr=0.01 or mlp:activation=relu,layers=3.[/]");
            return Cli.Ok;
        });
        return c;
    }

    /// <summary>One learned method's definition: options, meta-parameters of the default options, training defaults, backends.</summary>
    private static void PrintMethod(LearnedMethod m)
    {
        Print(m.Name, [(m.Name, m.Aliases, m.Description, OptionsBinder.Describe(m.OptionsType))]);
        var schema = m.DefaultSchema;
        var table = new Table().RoundedBorder().Title($"[bold]meta-parameters (default options): {schema.Sum(x => x.Count):N0}[/]")
            .AddColumn("checkpoint name").AddColumn("shape").AddColumn(new TableColumn("values").RightAligned()).AddColumn("initialisation");
        foreach (var x in schema) table.AddRow(Markup.Escape(x.Name), $"[[{string.Join(", ", x.Shape)}]]", x.Count.ToString("N0"), Markup.Escape(x.Init.Describe()));
        AnsiConsole.Write(table);
        var d = m.Training(Activator.CreateInstance(m.OptionsType)!);
        AnsiConsole.MarkupLine($"meta-training defaults: meta-loss {Markup.Escape(d.MetaLoss.ToString())}, unroll {d.Unroll}, meta-rate {d.MetaLearningRate:G3}, tricks {(d.Tricks ? "on" : "off")}");
        AnsiConsole.MarkupLine($"fused CPU engine: {(FusedCells.Find(m.Name) is null ? "no (reference only)" : "yes")}; shipped checkpoints: {(Pretrained.Keywords(m.Name) is { Count: > 0 } k ? string.Join(", ", k.Select(x => "checkpoint=" + x)) : "none")}");
        AnsiConsole.MarkupLine($"[grey]examples: {Markup.Escape(string.Join("  ", m.Examples))}[/]");
    }

    private static void Print(string title, IEnumerable<(string Name, string[] Aliases, string Description, IReadOnlyList<OptionInfo> Options)> items)
    {
        var table = new Table().RoundedBorder().Title($"[bold]{title}[/]").AddColumn("name").AddColumn("description").AddColumn("options (default)");
        foreach (var (name, aliases, description, options) in items)
        {
            string n = aliases.Length == 0 ? name : $"{name}\n[grey]{Markup.Escape(string.Join(", ", aliases))}[/]";
            string opts = string.Join("\n", options.Select(o => $"{o.Key}={Markup.Escape(o.Default.Length == 0 ? "none" : o.Default)} [grey]{Markup.Escape(o.Description)}[/]"));
            table.AddRow(n, Markup.Escape(description), opts);
        }
        AnsiConsole.Write(table);
    }
}
