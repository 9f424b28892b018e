using System.CommandLine;

namespace L2O.Cli.Commands;

internal static class CurvesCommand
{
    public static Command Create()
    {
        var folders = new Argument<string[]>("folders") { Description = "meta-train run folders (each with log.csv)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "the PNG file to write", DefaultValueFactory = _ => "training.png" };
        var cmd = new Command("curves", "Plot meta-training curves from run folders' log.csv as a PNG: one run's train average and validation loss, or several runs' validation losses on the same axes")
        {
            folders, output,
        };
        Cli.Examples[cmd] = "  l2o curves runs/hyperadam --out hyperadam.png\n  l2o curves runs/abl/full runs/abl/no-lstm runs/abl/no-preprocess --out structure.png";
        cmd.SetAction(p =>
        {
            string path = p.GetValue(output)!;
            Plots.TrainingCurves(p.GetValue(folders)!, path);
            Render.Written([path]);
            return Cli.Ok;
        });
        return cmd;
    }
}
