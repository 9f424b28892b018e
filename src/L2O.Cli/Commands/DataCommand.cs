using System.CommandLine;
using L2O.Data;
using Spectre.Console;

namespace L2O.Cli.Commands;

internal static class DataCommand
{
    public static Command Create()
    {
        var cmd = new Command("data", "List, inspect, check and download datasets");
        Cli.Examples[cmd] = "  l2o data list\n  l2o data info fashion-mnist\n  l2o data check data/mnist/train-images-idx3-ubyte.gz\n" +
                            "  l2o data download mnist --to ~/datasets";
        cmd.Add(List());
        cmd.Add(Info());
        cmd.Add(CheckFile());
        cmd.Add(Download());
        return cmd;
    }

    private static Command List()
    {
        var dataDir = Cli.DataDirOption();
        var c = new Command("list", "Show each dataset name and where it would be loaded from") { dataDir };
        c.SetAction(p =>
        {
            var table = new Table().RoundedBorder().AddColumn("dataset").AddColumn("source");
            foreach (var (name, source) in DatasetCatalog.Describe(p.GetValue(dataDir)))
                table.AddRow(name, source is null ? "[grey]not found[/] (l2o data download " + name + ")" : Markup.Escape(source));
            AnsiConsole.Write(table);
            return Cli.Ok;
        });
        return c;
    }

    private static Command Info()
    {
        var name = new Argument<string>("name") { Description = "dataset name: " + string.Join(", ", DatasetCatalog.Names) };
        var dataDir = Cli.DataDirOption();
        var c = new Command("info", "Load a dataset and print its size, shape and class balance") { name, dataDir };
        c.SetAction(p =>
        {
            var ds = DatasetCatalog.Load(p.GetValue(name)!, p.GetValue(dataDir));
            AnsiConsole.MarkupLine($"[bold]{ds.Name}[/] from {Markup.Escape(ds.Source)}");
            AnsiConsole.MarkupLine($"  images: {ds.Channels}×{ds.Height}×{ds.Width}, classes: {ds.Classes}");
            AnsiConsole.MarkupLine($"  train: {ds.Train.Count}, test: {ds.Test.Count}");
            var counts = ds.Train.Labels.bincount(null, ds.Classes).data<long>().ToArray();
            AnsiConsole.MarkupLine($"  train per class: {string.Join(" ", counts)}");
            return Cli.Ok;
        });
        return c;
    }

    private static Command CheckFile()
    {
        var files = new Argument<string[]>("files") { Description = "IDX (.gz or raw) or CIFAR-10 .bin files", Arity = ArgumentArity.OneOrMore };
        var c = new Command("check", "Validate data files; prints what is wrong with the first bad one and exits non-zero") { files };
        c.SetAction(p =>
        {
            foreach (var f in p.GetValue(files)!)
            {
                if (!File.Exists(f)) throw new DataFormatException(f, "does not exist");
                if (f.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
                {
                    var (_, labels) = Cifar10.ReadBatch(f);
                    AnsiConsole.MarkupLine($"[green]ok[/] {Markup.Escape(f)}: CIFAR-10 batch of {labels.Length} images");
                }
                else if (Path.GetFileName(f).Contains("labels", StringComparison.OrdinalIgnoreCase) || Path.GetFileName(f).Contains("idx1", StringComparison.OrdinalIgnoreCase))
                {
                    var labels = Idx.ReadLabels(f);
                    ImageDataset.CheckLabels(labels, 10, f);   // the IDX datasets L2O knows (MNIST, Fashion-MNIST) have 10 classes, as eval checks
                    AnsiConsole.MarkupLine($"[green]ok[/] {Markup.Escape(f)}: {labels.Length} labels");
                }
                else
                {
                    var images = Idx.ReadImages(f);
                    AnsiConsole.MarkupLine($"[green]ok[/] {Markup.Escape(f)}: {images.Count} images of {images.Rows}×{images.Columns}");
                }
            }
            return Cli.Ok;
        });
        return c;
    }

    private static Command Download()
    {
        var name = new Argument<string>("name") { Description = "dataset: " + string.Join(", ", DatasetDownloader.Sources.Keys) };
        var to = new Option<string?>("--to") { Description = $"folder to download into (default: {DatasetCatalog.DefaultDataDirectory})" };
        var baseUrl = new Option<string?>("--base-url") { Description = "mirror folder URL holding the dataset's files" };
        var c = new Command("download", "Download a dataset (needs internet access); files are validated, then moved into place") { name, to, baseUrl };
        c.SetAction(async (p, cancel) =>
        {
            var progress = new Progress<DatasetDownloader.DownloadProgress>(d =>
            {
                if (d.Total is long total && d.Bytes == total) Console.Error.WriteLine($"  {d.File}: {total / 1024.0 / 1024.0:0.0} MB");
            });
            string folder = await DatasetDownloader.DownloadAsync(p.GetValue(name)!, p.GetValue(to), p.GetValue(baseUrl), progress: progress, cancel: cancel);
            AnsiConsole.MarkupLine($"[green]downloaded[/] {Markup.Escape(p.GetValue(name)!)} into {Markup.Escape(folder)}");
            return Cli.Ok;
        });
        return c;
    }
}
