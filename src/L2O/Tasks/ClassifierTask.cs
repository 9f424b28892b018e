using L2O.Data;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace L2O.Tasks;

/// <summary>
/// Minibatch cross-entropy of a classifier on an image dataset (the papers' MNIST MLPs and CNNs).
/// The loss is the mean cross-entropy over a batch of <c>batchSize</c> training images; batches are
/// drawn without replacement within an epoch (a fresh permutation per epoch, per instance).
/// </summary>
public sealed class ClassifierTask : ITask
{
    private readonly Tensor _trainX, _trainY, _testX, _testY;
    private readonly Initializer _initializer;
    private readonly int _batchSize;
    private readonly ScalarType _dtype;

    public ClassifierTask(string name, ImageDataset dataset, IClassifierModel model, int batchSize, Initializer initializer, Device device, ScalarType dtype)
    {
        if (batchSize > dataset.Train.Count)
            throw new L2OException($"{name}: batch size {batchSize} exceeds the {dataset.Train.Count} training images of {dataset.Name}");
        Name = name;
        Dataset = dataset;
        Model = model;
        Device = device;
        _dtype = dtype;
        _batchSize = batchSize;
        _initializer = initializer;
        // The task owns its copies of the data, whatever scope it is built in.
        using var scope = NewDisposeScope();
        _trainX = dataset.Train.Images.to(dtype).to(device).DetachFromDisposeScope();
        _trainY = dataset.Train.Labels.to(device).DetachFromDisposeScope();
        _testX = dataset.Test.Images.to(dtype).to(device).DetachFromDisposeScope();
        _testY = dataset.Test.Labels.to(device).DetachFromDisposeScope();
    }

    public string Name { get; }
    public ImageDataset Dataset { get; }
    public IClassifierModel Model { get; }
    public Device Device { get; }
    public int Dimension => Model.Layout.Count;

    /// <summary>The authors' HyperAdam code counted MNIST runs above a loss of 100 as failed.</summary>
    public double DefaultDivergenceThreshold => 100;

    public IOptimizee Sample(long seed)
    {
        using var initGen = new Generator((ulong)Seeds.Derive(seed, Seeds.InitStream));
        var w0 = Model.Layout.Initialize(_initializer, initGen, _dtype, Device);
        return new Instance(this, w0, Seeds.Derive(seed, Seeds.BatchStream), Seeds.Derive(seed, Seeds.NoiseStream));
    }

    private Tensor CrossEntropy(Tensor parameters, Tensor x, Tensor y, bool training, Generator? noise) =>
        F.cross_entropy(Model.Logits(parameters, x, training, noise), y);

    private TestMetrics Evaluate(Tensor parameters)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        long n = _testY.shape[0];
        double loss = 0, top1 = 0, top2 = 0;
        const int chunk = 1000;
        for (long start = 0; start < n; start += chunk)
        {
            long len = Math.Min(chunk, n - start);
            var x = _testX.narrow(0, start, len);
            var y = _testY.narrow(0, start, len);
            var logits = Model.Logits(parameters, x, training: false, noise: null);
            loss += F.cross_entropy(logits, y, reduction: nn.Reduction.Sum).ToDouble();
            var top = logits.topk(2, dim: 1).indexes;                // (len, 2)
            var hit = top.eq(y.unsqueeze(1));
            top1 += hit.select(1, 0).sum().ToInt64();
            top2 += hit.any(1).sum().ToInt64();
        }
        return new TestMetrics(loss / n, top1 / n, top2 / n);
    }

    private sealed class Instance : IOptimizee
    {
        private readonly ClassifierTask _task;
        private readonly Generator _batchGen;
        private readonly Generator _noiseGen;
        private Tensor? _permutation;
        private long _cursor;

        public Instance(ClassifierTask task, Tensor w0, long batchSeed, long noiseSeed)
        {
            _task = task;
            InitialParameters = w0;
            _batchGen = new Generator((ulong)batchSeed);
            _noiseGen = new Generator((ulong)noiseSeed);
        }

        public int Dimension => _task.Dimension;
        public Tensor InitialParameters { get; }

        public Batch NextBatch()
        {
            long n = _task._trainY.shape[0];
            int b = _task._batchSize;
            if (_permutation is null || _cursor + b > n)
            {
                _permutation?.Dispose();
                _permutation = randperm(n, generator: _batchGen).DetachFromDisposeScope();
                _cursor = 0;
            }
            var idx = _permutation.narrow(0, _cursor, b).to(_task.Device);
            _cursor += b;
            long noiseSeed = randint(long.MaxValue, [1], generator: _noiseGen).ToInt64();
            return new Batch(_task._trainX.index_select(0, idx), _task._trainY.index_select(0, idx), noiseSeed);
        }

        public Tensor Loss(Tensor parameters, Batch batch)
        {
            using var noise = new Generator((ulong)batch.NoiseSeed);
            return _task.CrossEntropy(parameters, batch.Inputs!, batch.Targets!, training: true, noise);
        }

        public TestMetrics? Test(Tensor parameters) => _task.Evaluate(parameters);

        public double LossAndGradient(Tensor parameters, Batch batch, Tensor gradient, IGradientExecutor? executor = null) =>
            executor?.CrossEntropy(_task.Model, parameters, batch, gradient) ?? Autodiff.LossAndGradientInto(this, parameters, batch, gradient);

        public void Dispose()
        {
            _permutation?.Dispose();
            InitialParameters.Dispose();
            _batchGen.Dispose();
            _noiseGen.Dispose();
        }
    }
}
