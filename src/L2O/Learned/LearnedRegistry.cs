using System.Text.Json;
using L2O.Checkpoints;
using L2O.Optimizers;
using L2O.Specs;

namespace L2O.Learned;

/// <summary>
/// The definition of a learned method: its name, options record, meta-parameter schema, recommended
/// meta-training and constructor. It is the single source of the checkpoint names and shapes (the
/// reference registers <see cref="Schema"/>, the fused cells read and write exactly those names), of
/// <c>l2o list</c>, and of the test cases (<see cref="Examples"/>).
/// </summary>
/// <param name="Name">Registry name, stored in checkpoints.</param>
/// <param name="Aliases">Other accepted names.</param>
/// <param name="Description">One line for listings.</param>
/// <param name="OptionsType">The options record (properties with <see cref="OptionAttribute"/>).</param>
/// <param name="Schema">The meta-parameters for bound options, in initialisation order.</param>
/// <param name="Training">The method's own meta-training settings for bound options (its paper's).</param>
/// <param name="Create">Builds a fresh optimizer from bound options.</param>
/// <param name="Examples">Small configurations (specifications) that together set every option but
/// <c>checkpoint</c> and <c>init-seed</c> away from its default (a test holds them to it); the test suites run
/// each (finite differences, engine equivalence in both layouts, checkpoints).</param>
public sealed record LearnedMethod(string Name, string[] Aliases, string Description, Type OptionsType,
    Func<object, IReadOnlyList<MetaParameter>> Schema, Func<object, TrainingDefaults> Training,
    Func<object, BuildContext, LearnedOptimizer> Create, string[] Examples)
{
    /// <summary>A definition from typed parts.</summary>
    public static LearnedMethod Of<TOptions>(string name, string[] aliases, string description,
        Func<TOptions, IReadOnlyList<MetaParameter>> schema, Func<TOptions, TrainingDefaults> training,
        Func<TOptions, BuildContext, LearnedOptimizer> create, params string[] examples) where TOptions : ILearnedOptions =>
        new(name, aliases, description, typeof(TOptions), o => schema((TOptions)o), o => training((TOptions)o), (o, c) => create((TOptions)o, c), examples);

    /// <summary>The schema of the default options.</summary>
    public IReadOnlyList<MetaParameter> DefaultSchema => Schema(Activator.CreateInstance(OptionsType)!);
}

/// <summary>
/// The learned optimizers by name, and their checkpoints. The library's composition root
/// (<c>L2O.Catalog</c>) adds each to <see cref="OptimizerRegistry"/>, so
/// <c>l2o eval -o hyperadam:checkpoint=FILE</c> works like any baseline.
/// </summary>
public static class LearnedRegistry
{
    public static IReadOnlyList<LearnedMethod> Methods { get; } =
    [
        LearnedMethod.Of<HyperAdamOptions>("hyperadam", [], "HyperAdam: J Adam candidates with learned decay rates and ELU weights (Wang et al. 2019)",
            HyperAdam.SchemaOf, HyperAdam.Training, (o, c) => new HyperAdam(o, c),
            "hyperadam:j=3", "hyperadam:j=1", "hyperadam:j=3,lstm=false", "hyperadam:j=3,preprocess=false",
            "hyperadam:j=3,lstm=false,preprocess=false", "hyperadam:j=3,coupled=true,input-norm=rms", "hyperadam:j=3,state-norm=true",
            "hyperadam:j=3,lr=0.01,eps=1e-8,gamma-min=0.9,field-clip=0.7"),
        LearnedMethod.Of<RnnPropOptions>("rnnprop", [], "RNNprop: 2-layer coordinatewise LSTM on Adam-normalised inputs (Lv et al. 2017)",
            RnnProp.SchemaOf, RnnProp.Training, (o, c) => new RnnProp(o, c),
            "rnnprop:hidden=4", "rnnprop:hidden=3,layers=1", "rnnprop:hidden=4,lr=0.05,beta1=0.9,beta2=0.99,eps=1e-6"),
        LearnedMethod.Of<DmOptimizerOptions>("dmoptimizer", ["dm", "l2l"], "DMoptimizer: 2-layer coordinatewise LSTM on the gradient (Andrychowicz et al. 2016)",
            DmOptimizer.SchemaOf, DmOptimizer.Training, (o, c) => new DmOptimizer(o, c),
            "dmoptimizer:hidden=4", "dmoptimizer:hidden=4,preprocess=false", "dmoptimizer:hidden=3,layers=1", "dmoptimizer:hidden=4,scale=0.05,k=3"),
        LearnedMethod.Of<KTimestepsOptions>("k-timesteps", [], "learned step from the last k normalised gradients (Shahid 2017, §3.4)",
            NormalizedHistoryOptimizer.SchemaOf, NormalizedHistoryOptimizer.Training, (o, c) => new NormalizedHistoryOptimizer("k-timesteps", o, c),
            "k-timesteps:k=3,hidden=5,eta-min=0.01", "k-timesteps:k=2,hidden=5,eta-min=0.01,reference=current",
            "k-timesteps:k=3,hidden=5,history=momentums,min-timescale=0.5,max-timescale=0.9,eta-min=0.1"),
        LearnedMethod.Of<KMomentumsOptions>("k-momentums", [], "learned step from k normalised momentums (Shahid 2017, §3.5)",
            NormalizedHistoryOptimizer.SchemaOf, NormalizedHistoryOptimizer.Training, (o, c) => new NormalizedHistoryOptimizer("k-momentums", o, c),
            "k-momentums:k=4,hidden=5,min-timescale=0.5,max-timescale=0.95,eta-min=0.01", "k-momentums:k=3,hidden=5,history=timesteps,reference=midpoint,eta-min=0.01"),
        LearnedMethod.Of<MultiscaleAdamOptions>("multiscale-adam", ["msadam"], "learned average of Adam at k timescales: LA / MLP / 'RNN' (Shahid 2017, ch. 4)",
            MultiscaleAdam.SchemaOf, MultiscaleAdam.Training, (o, c) => new MultiscaleAdam(o, c),
            "multiscale-adam:combiner=la-a,k=5", "multiscale-adam:combiner=la-b", "multiscale-adam:combiner=la-c",
            "multiscale-adam:combiner=mlp,hidden=6,hidden-layers=2,k=11", "multiscale-adam:combiner=mlp,hidden=5,lr=0.05", "multiscale-adam:combiner=la-a,k=5,lr=0.05,eps=1e-6"),
    ];

    public static LearnedMethod Find(string name)
    {
        return NameLookup.Find(Methods, name, m => m.Name, m => m.Aliases, "learned optimizer");
    }

    /// <summary>A fresh (untrained) learned optimizer from a specification such as <c>hyperadam:j=5</c>.</summary>
    public static LearnedOptimizer Create(string spec, BuildContext? context = null)
    {
        var s = Spec.Parse(spec);
        var method = Find(s.Name);
        return Build(method, OptionsBinder.Bind(method.OptionsType, method.Name, s.Arguments), context ?? BuildContext.Cpu);
    }

    /// <summary>
    /// Builds from bound options: with a checkpoint, the architecture comes from the file and any
    /// architecture option given as well must agree with it.
    /// </summary>
    public static LearnedOptimizer Build(LearnedMethod method, object options, BuildContext context)
    {
        string? checkpoint = ((ILearnedOptions)options).Checkpoint;
        if (checkpoint is null) return method.Create(options, context);

        var loaded = Load(checkpoint, context, expectedMethod: method.Name);
        var given = OptionsBinder.ToArguments(options);
        var defaults = OptionsBinder.ToArguments(Activator.CreateInstance(method.OptionsType)!);
        var stored = loaded.StoredOptions();
        var explicitKeys = OptionsBinder.Given(options);
        foreach (var (key, value) in given)
        {
            // An option counts as given when it was written in the spec, even at its default value; for a
            // record built in code, when it differs from the default.
            bool isGiven = explicitKeys?.Contains(key) ?? value != defaults[key];
            if (key is "checkpoint" or "init-seed" || !isGiven) continue;
            // A checkpoint written before an option existed was trained with its default.
            string fromFile = stored.GetValueOrDefault(key, defaults[key]);
            if (fromFile != value)
                throw new L2OException($"{checkpoint}: option '{key}={value}' conflicts with the checkpoint's '{key}={fromFile}'; leave it out");
        }
        return loaded;
    }

    /// <summary>
    /// Writes a copy of the checkpoint <paramref name="source"/> with some options changed, keeping its
    /// meta-parameters: e.g. <c>gamma-min=0.99</c> on a checkpoint trained without the floor. Only options
    /// that leave the meta-parameters' names and shapes as they are may change (not <c>j</c>, <c>lstm</c>, …);
    /// the copy keeps the source's training metadata and records <c>derived_from</c> and <c>derived_set</c>,
    /// since its rule was not meta-trained with the new values.
    /// </summary>
    public static void Derive(string source, IReadOnlyDictionary<string, string> set, string destination)
    {
        if (set.Count == 0) throw new L2OException("derive: give at least one option to set (KEY=VALUE)");
        var contents = SafeTensors.Parse(Pretrained.ReadCheckpoint(source), source);
        try { Derive(contents, source, set, destination); }
        finally
        {
            foreach (var (_, t) in contents.Tensors) t.Dispose();
        }
    }

    private static void Derive(SafeTensors.Contents contents, string source, IReadOnlyDictionary<string, string> set, string destination)
    {
        using var original = FromContents(contents, source, null, null);
        var method = Find(original.Method);
        var args = new Dictionary<string, string>(original.StoredOptions());
        foreach (var (key, value) in set)
        {
            if (key is "checkpoint" or "init-seed") throw new L2OException($"derive: option '{key}' cannot be set on a checkpoint");
            args[key] = value;
        }
        var options = OptionsBinder.Bind(method.OptionsType, method.Name, args);
        using var derived = method.Create(options, BuildContext.Cpu);
        var before = original.Parameters.Select(p => (p.Name, Shape: string.Join("×", p.Parameter.shape))).ToList();
        var after = derived.Parameters.Select(p => (p.Name, Shape: string.Join("×", p.Parameter.shape))).ToList();
        if (!before.SequenceEqual(after))
            throw new L2OException($"derive: {string.Join(", ", set.Select(kv => $"{kv.Key}={kv.Value}"))} changes {method.Name}'s meta-parameters; only options that keep them can be set on a checkpoint");
        derived.CopyValuesFrom(original);
        var metadata = contents.Metadata.Where(kv => kv.Key is not ("format" or "method" or "options" or "l2o_version" or "created_utc" or "derived_from" or "derived_set"))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        string previous = contents.Metadata.GetValueOrDefault("derived_set", "");
        metadata["derived_from"] = contents.Metadata.GetValueOrDefault("derived_from", source);
        metadata["derived_set"] = string.Join(",", new[] { previous }.Where(x => x.Length > 0).Concat(set.Select(kv => $"{kv.Key}={kv.Value}")));
        derived.Save(destination, metadata);
    }

    /// <summary>
    /// A second optimizer of the same method and architecture holding a copy of <paramref name="learned"/>'s
    /// meta-parameters. Meta-training workers each use one: autograd accumulates into a parameter's
    /// gradient, so two threads must not backpropagate into the same parameters.
    /// </summary>
    internal static LearnedOptimizer Replicate(LearnedOptimizer learned)
    {
        var replica = Find(learned.Method).Create(learned.Options, learned.Context);
        replica.CopyValuesFrom(learned);
        return replica;
    }

    /// <summary>
    /// Loads a checkpoint written by <see cref="LearnedOptimizer.Save"/>; the path <c>pretrained</c>
    /// (or <c>pretrained-NAME</c>) selects a checkpoint shipped for <paramref name="expectedMethod"/>.
    /// </summary>
    public static LearnedOptimizer Load(string path, BuildContext? context = null, string? expectedMethod = null) =>
        Load(Pretrained.ReadCheckpoint(path, expectedMethod), path, context, expectedMethod);

    /// <summary>Loads a checkpoint from its bytes, already read (<see cref="Pretrained.ReadCheckpoint"/>); <paramref name="path"/> names it in errors and in the options.</summary>
    public static LearnedOptimizer Load(byte[] bytes, string path, BuildContext? context = null, string? expectedMethod = null)
    {
        var contents = SafeTensors.Parse(bytes, path);
        try { return FromContents(contents, path, context, expectedMethod); }
        finally
        {
            foreach (var (_, t) in contents.Tensors) t.Dispose();
        }
    }

    private static LearnedOptimizer FromContents(SafeTensors.Contents contents, string path, BuildContext? context, string? expectedMethod)
    {
        string? format = contents.Metadata.GetValueOrDefault("format");
        if (format != LearnedOptimizer.CheckpointFormat)
            throw new L2OException($"{path}: not an L2O learned-optimizer checkpoint (metadata 'format' is {(format is null ? "missing" : $"'{format}'")}, expected '{LearnedOptimizer.CheckpointFormat}')");
        if (!contents.Metadata.TryGetValue("method", out var methodName))
            throw new L2OException($"{path}: not an L2O learned-optimizer checkpoint (no 'method' in its metadata)");
        var method = Find(methodName);
        if (expectedMethod is not null && method.Name != expectedMethod)
            throw new L2OException($"{path}: holds a {method.Name} optimizer, not {expectedMethod}");
        Dictionary<string, string> args;
        try
        {
            args = JsonSerializer.Deserialize<Dictionary<string, string>>(contents.Metadata.GetValueOrDefault("options", "{}")) ?? [];
        }
        catch (JsonException e)
        {
            throw new L2OException($"{path}: metadata 'options' is not valid JSON ({e.Message})");
        }
        args["checkpoint"] = path;
        var options = OptionsBinder.Bind(method.OptionsType, method.Name, args);
        var learned = method.Create(options, context ?? BuildContext.Cpu);
        learned.LoadValues(contents, path);
        return learned;
    }
}
