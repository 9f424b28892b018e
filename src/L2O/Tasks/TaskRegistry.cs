using L2O.Data;
using L2O.Specs;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Tasks;

/// <summary>What a task needs to be built: where it runs, its dtype and where datasets live.</summary>
public sealed record TaskContext(Device Device, ScalarType DType, string? DataDir = null)
{
    public static TaskContext Cpu { get; } = new(CPU, ScalarType.Float32);
}

/// <summary>Options of the <c>mlp</c> task (the base MLP and its variants).</summary>
public sealed record MlpTaskOptions : IValidatable
{
    [Option("dataset", "mnist, fashion-mnist or cifar10")] public string Dataset { get; init; } = DatasetCatalog.Mnist;
    [Option("activation", "hidden activation")] public Activation Activation { get; init; } = Activation.Sigmoid;
    [Option("layers", "number of hidden layers")] public int Layers { get; init; } = 1;
    [Option("hidden", "units per hidden layer")] public int Hidden { get; init; } = 20;
    [Option("batch", "minibatch size")] public int Batch { get; init; } = 128;
    [Option("init", "initializer: normal:STD or uniform:LO:HI")] public string Init { get; init; } = "normal:0.1";

    public void Validate()
    {
        Check.InRange(Layers, 0, 100, "layers");
        Check.InRange(Hidden, 1, 100_000, "hidden");
        Check.InRange(Batch, 1, 1_000_000, "batch");
        Initializer.Parse(Init);
    }
}

/// <summary>Options of the <c>cnn1</c> / <c>cnn2</c> tasks.</summary>
public sealed record CnnTaskOptions : IValidatable
{
    [Option("dataset", "mnist, fashion-mnist or cifar10")] public string Dataset { get; init; } = DatasetCatalog.Mnist;
    [Option("c1", "channels of the first convolution block")] public int C1 { get; init; } = 16;
    [Option("c2", "channels of the second convolution block (cnn2)")] public int C2 { get; init; } = 32;
    [Option("fc", "units of the hidden fully connected layer (cnn2)")] public int Fc { get; init; } = 64;
    [Option("batch-norm", "batch normalisation after every convolution")] public bool BatchNorm { get; init; }
    [Option("dropout", "dropout probability before fully connected layers")] public double Dropout { get; init; }
    [Option("batch", "minibatch size")] public int Batch { get; init; } = 128;
    [Option("init", "initializer: normal:STD or uniform:LO:HI")] public string Init { get; init; } = "normal:0.1";

    public void Validate()
    {
        Check.InRange(C1, 1, 4096, "c1");
        Check.InRange(C2, 1, 4096, "c2");
        Check.InRange(Fc, 1, 100_000, "fc");
        Check.InRange(Dropout, 0, 1, "dropout", openHigh: true);
        Check.InRange(Batch, 1, 1_000_000, "batch");
        Initializer.Parse(Init);
    }
}

/// <summary>Options of the <c>lstm</c> task.</summary>
public sealed record LstmTaskOptions : IValidatable
{
    [Option("layers", "stacked LSTM layers")] public int Layers { get; init; } = 1;
    [Option("hidden", "hidden units")] public int Hidden { get; init; } = 20;
    [Option("noise", "standard deviation of the input noise (0.1 baseline, 0.01 'small noise')")] public double Noise { get; init; } = 0.1;
    [Option("batch", "sequences per minibatch")] public int Batch { get; init; } = 128;
    [Option("length", "observed steps f(0..L-1); the target is f(L)")] public int Length { get; init; } = 10;
    [Option("init", "initializer: normal:STD or uniform:LO:HI")] public string Init { get; init; } = "normal:0.1";

    public void Validate()
    {
        Check.InRange(Layers, 1, 10, "layers");
        Check.InRange(Hidden, 1, 10_000, "hidden");
        Check.NonNegative(Noise, "noise");
        Check.InRange(Batch, 1, 1_000_000, "batch");
        Check.InRange(Length, 1, 10_000, "length");
        Initializer.Parse(Init);
    }
}

/// <summary>Options of the <c>sum-of-squares</c> task.</summary>
public sealed record SumOfSquaresOptions : IValidatable
{
    [Option("dim", "dimension n")] public int Dim { get; init; } = 1000;
    [Option("init", "initializer (thesis: uniform on [-10, 10])")] public string Init { get; init; } = "uniform:-10:10";
    public void Validate() { Check.InRange(Dim, 1, 100_000_000, "dim"); Initializer.Parse(Init); }
}

/// <summary>Options of the <c>rosenbrock</c> task.</summary>
public sealed record RosenbrockOptions : IValidatable
{
    [Option("a", "parameter a (minimum at (a, a²))")] public double A { get; init; } = 1;
    [Option("b", "parameter b (valley steepness)")] public double B { get; init; } = 100;
    [Option("init", "initializer of (x, y)")] public string Init { get; init; } = "uniform:-2:2";
    public void Validate() { Check.Positive(B, "b"); Initializer.Parse(Init); }
}

/// <summary>Options of the <c>quadratic</c> task family.</summary>
public sealed record QuadraticOptions : IValidatable
{
    [Option("dim", "dimension n of W (n×n) and y")] public int Dim { get; init; } = 10;
    [Option("init", "initializer of x")] public string Init { get; init; } = "normal:0.1";
    public void Validate() { Check.InRange(Dim, 1, 100_000, "dim"); Initializer.Parse(Init); }
}

/// <summary>Options of the <c>convex</c> task (the CC trick's function on its own).</summary>
public sealed record ConvexOptions : IValidatable
{
    [Option("dim", "dimension n")] public int Dim { get; init; } = 20;
    [Option("clip", "clip each squared term to [0, clip] (HyperAdam code: 10); none = no clipping")] public double? Clip { get; init; }
    [Option("init", "initializer of z (RNNprop: uniform on [-1, 1])")] public string Init { get; init; } = "uniform:-1:1";
    public void Validate() { if (Clip is double c) Check.Positive(c, "clip"); Check.InRange(Dim, 1, 100_000_000, "dim"); Initializer.Parse(Init); }
}

/// <summary>A named task the CLI and the harness can build from a specification.</summary>
public sealed record TaskInfo(string Name, string[] Aliases, string Description, Type OptionsType, Func<object, TaskContext, string, ITask> Create);

/// <summary>The optimizee zoo of the papers, by name.</summary>
public static class TaskRegistry
{
    public static IReadOnlyList<TaskInfo> All { get; } =
    [
        new("mlp", ["mnist-mlp", "base-mlp"], "MLP 784-20-10 (sigmoid) and variants: activation, depth, dataset (papers' base MLP)",
            typeof(MlpTaskOptions), (o, c, name) => Mlp((MlpTaskOptions)o, c, name)),
        new("cnn1", ["cnn-1"], "CNN c-c-p-f, 3×3 convs, 2×2 max-pool; batch-norm / dropout variants",
            typeof(CnnTaskOptions), (o, c, name) => Cnn(CnnKind.Cnn1, (CnnTaskOptions)o, c, name)),
        new("cnn2", ["cnn-2"], "CNN c-c-p-c-c-p-f-f; batch-norm / dropout variants",
            typeof(CnnTaskOptions), (o, c, name) => Cnn(CnnKind.Cnn2, (CnnTaskOptions)o, c, name)),
        new("lstm", ["lstm-sine", "sine-lstm"], "LSTM (hidden 20) predicting f(10) of a noisy sine, MSE",
            typeof(LstmTaskOptions), (o, c, name) => Lstm((LstmTaskOptions)o, c, name)),
        new("sum-of-squares", ["squares"], "Σ x², n = 1000, init U(-10, 10) (thesis §2.3.1)",
            typeof(SumOfSquaresOptions), (o, c, name) => SumOfSquares((SumOfSquaresOptions)o, c, name)),
        new("rosenbrock", [], "2-D Rosenbrock, a = 1, b = 100 (thesis §2.3.2)",
            typeof(RosenbrockOptions), (o, c, name) => Rosenbrock((RosenbrockOptions)o, c, name)),
        new("quadratic", [], "random quadratics ‖Wx − y‖², W, y ~ N(0, 1) per instance",
            typeof(QuadraticOptions), (o, c, name) => Quadratic((QuadraticOptions)o, c, name)),
        new("convex", [], "h(z) = mean((z − a)²), a ~ U[-1, 1] per instance (RNNprop §4.2)",
            typeof(ConvexOptions), (o, c, name) => Convex((ConvexOptions)o, c, name)),
    ];

    public static TaskInfo Find(string name)
    {
        return NameLookup.Find(All, name, t => t.Name, t => t.Aliases, "task");
    }

    /// <summary>Builds a task from text such as <c>mlp:activation=relu,layers=3</c>.</summary>
    public static ITask Create(string spec, TaskContext? context = null) => Create(Spec.Parse(spec), context);

    public static ITask Create(Spec spec, TaskContext? context = null)
    {
        var info = Find(spec.Name);
        var options = OptionsBinder.Bind(info.OptionsType, info.Name, spec.Arguments);
        var canonical = new Spec(info.Name, spec.Arguments).ToString();
        return info.Create(options, context ?? TaskContext.Cpu, canonical);
    }

    private static ITask Mlp(MlpTaskOptions o, TaskContext c, string name)
    {
        var data = DatasetCatalog.Load(o.Dataset, c.DataDir);
        var model = new MlpModel(data.InputSize, o.Layers, o.Hidden, data.Classes, o.Activation);
        return new ClassifierTask(name, data, model, o.Batch, Initializer.Parse(o.Init), c.Device, c.DType);
    }

    private static ITask Cnn(CnnKind kind, CnnTaskOptions o, TaskContext c, string name)
    {
        var data = DatasetCatalog.Load(o.Dataset, c.DataDir);
        var model = new CnnModel(kind, data.Channels, data.Height, data.Width, data.Classes, o.C1, o.C2, o.Fc, o.BatchNorm, o.Dropout);
        return new ClassifierTask(name, data, model, o.Batch, Initializer.Parse(o.Init), c.Device, c.DType);
    }

    private static ITask Lstm(LstmTaskOptions o, TaskContext c, string name) =>
        new SineLstmTask(name, o.Layers, o.Hidden, o.Noise, o.Batch, o.Length, Initializer.Parse(o.Init), c.Device, c.DType);

    private static ITask SumOfSquares(SumOfSquaresOptions o, TaskContext c, string name) =>
        new FunctionTask(name, o.Dim, Initializer.Parse(o.Init), FunctionTask.SumOfSquares(), c.Device, c.DType, knownMinimum: 0);

    private static ITask Rosenbrock(RosenbrockOptions o, TaskContext c, string name) =>
        new FunctionTask(name, 2, Initializer.Parse(o.Init), FunctionTask.Rosenbrock(o.A, o.B), c.Device, c.DType,
            knownMinimum: 0, knownMinimizer: [o.A, o.A * o.A]);

    private static ITask Quadratic(QuadraticOptions o, TaskContext c, string name) =>
        new FunctionTask(name, o.Dim, Initializer.Parse(o.Init), FunctionTask.Quadratic(o.Dim), c.Device, c.DType);

    private static ITask Convex(ConvexOptions o, TaskContext c, string name) =>
        new FunctionTask(name, o.Dim, Initializer.Parse(o.Init), FunctionTask.Convex(o.Dim, o.Clip), c.Device, c.DType, knownMinimum: 0);
}
