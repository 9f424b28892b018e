using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Tasks;

/// <summary>
/// Sequence prediction with a small LSTM (RNNprop §5.4.2, HyperAdam §5): from f(0), …, f(L−1)
/// with additive Gaussian noise, predict f(L), where f(x) = A sin(ωx + φ), A ~ U(0, 10),
/// ω ~ U(0, π/2), φ ~ U(0, 2π). Loss: mean squared error over a batch of fresh sequences.
/// </summary>
/// <remarks>
/// Choices where the papers are silent (docs/tasks.md): the noise level is a standard deviation;
/// only the inputs are noisy, the target f(L) is exact; every sequence of every batch is new;
/// the LSTM reads one value per step, keeps one bias per gate, and a linear layer maps the last
/// hidden state to the prediction. Test loss uses 1 000 sequences drawn with a fixed seed.
/// </remarks>
public sealed class SineLstmTask : ITask
{
    private readonly int _layers, _hidden, _batchSize, _length;
    private readonly double _noise;
    private readonly Initializer _initializer;
    private readonly ScalarType _dtype;
    private readonly List<(int Wih, int Whh, int B)> _cells = [];
    private readonly int _outW, _outB;
    private readonly ParameterLayout _layout = new();
    private (Tensor X, Tensor Y)? _testSet;

    public SineLstmTask(string name, int layers, int hidden, double noise, int batchSize, int length, Initializer initializer, Device device, ScalarType dtype)
    {
        Name = name; Device = device;
        _layers = layers; _hidden = hidden; _noise = noise; _batchSize = batchSize; _length = length; _initializer = initializer; _dtype = dtype;
        int input = 1;
        for (int l = 0; l < layers; l++)
        {
            _cells.Add((_layout.Add($"lstm{l}.weight_ih", [4 * hidden, input]), _layout.Add($"lstm{l}.weight_hh", [4 * hidden, hidden]), _layout.Add($"lstm{l}.bias", [4 * hidden])));
            input = hidden;
        }
        _outW = _layout.Add("out.weight", [hidden, 1]);
        _outB = _layout.Add("out.bias", [1]);
    }

    public string Name { get; }
    public Device Device { get; }
    public int Dimension => _layout.Count;
    public ParameterLayout Layout => _layout;

    public IOptimizee Sample(long seed)
    {
        using var initGen = new Generator((ulong)Seeds.Derive(seed, Seeds.InitStream));
        var w0 = _layout.Initialize(_initializer, initGen, _dtype, Device);
        return new Instance(this, w0, Seeds.Derive(seed, Seeds.BatchStream));
    }

    /// <summary>Draws <paramref name="count"/> sequences: inputs (count, L, 1) and targets (count, 1).</summary>
    internal (Tensor X, Tensor Y) Draw(int count, Generator g)
    {
        using var scope = NewDisposeScope();
        var amplitude = rand([count, 1], dtype: _dtype, generator: g).Times(10.0);
        var omega = rand([count, 1], dtype: _dtype, generator: g).Times(Math.PI / 2);
        var phase = rand([count, 1], dtype: _dtype, generator: g).Times(2 * Math.PI);
        var steps = KeptScalars.Arange(_length + 1, _dtype).unsqueeze(0);      // (1, L+1)
        var f = amplitude * (omega * steps).Plus(phase).sin();                 // (count, L+1)
        var x = f.narrow(1, 0, _length).Plus(randn([count, _length], dtype: _dtype, generator: g).Times(_noise));
        var y = f.narrow(1, _length, 1);
        return (x.unsqueeze(2).to(Device).MoveToOuterDisposeScope(), y.to(Device).MoveToOuterDisposeScope());
    }

    internal Tensor Predict(Tensor parameters, Tensor x)
    {
        long batch = x.shape[0];
        var input = x;                                                          // (B, L, in)
        Tensor? last = null;
        for (int l = 0; l < _layers; l++)
        {
            var (wih, whh, bIdx) = _cells[l];
            var wIh = _layout.View(parameters, wih);                          // (4H, in)
            var wHh = _layout.View(parameters, whh);                          // (4H, H)
            var b = _layout.View(parameters, bIdx);                           // (4H)
            var h = zeros([batch, _hidden], dtype: x.dtype, device: x.device);
            var c = zeros([batch, _hidden], dtype: x.dtype, device: x.device);
            var xProj = input.matmul(wIh.t()).Plus(b);                       // (B, L, 4H)
            var outputs = new List<Tensor>();
            for (int t = 0; t < _length; t++)
            {
                var gates = xProj.select(1, t).Plus(h.matmul(wHh.t()));       // (B, 4H), order i, f, g, o
                var chunks = gates.chunk(4, 1);
                c = (chunks[1].sigmoid() * c).Plus(chunks[0].sigmoid() * chunks[2].tanh());
                h = chunks[3].sigmoid() * c.tanh();
                if (l < _layers - 1) outputs.Add(h);
            }
            last = h;
            if (l < _layers - 1) input = stack(outputs, 1);                    // (B, L, H)
        }
        return last!.matmul(_layout.View(parameters, _outW)).Plus(_layout.View(parameters, _outB));  // (B, 1)
    }

    private TestMetrics Evaluate(Tensor parameters)
    {
        using var _ = no_grad();
        if (_testSet is null)
        {
            using var g = new Generator(20170601UL);
            var (x, y) = Draw(1000, g);
            _testSet = (x.DetachFromDisposeScope(), y.DetachFromDisposeScope());
        }
        using var scope = NewDisposeScope();
        var (tx, ty) = _testSet.Value;
        return new TestMetrics((Predict(parameters, tx) - ty).Squared().mean().ToDouble());
    }

    private sealed class Instance(SineLstmTask task, Tensor w0, long batchSeed) : IOptimizee
    {
        private readonly Generator _gen = new((ulong)batchSeed);
        public int Dimension => task.Dimension;
        public Tensor InitialParameters { get; } = w0;

        public Batch NextBatch()
        {
            var (x, y) = task.Draw(task._batchSize, _gen);
            return new Batch(x, y);
        }

        public Tensor Loss(Tensor parameters, Batch batch) => (task.Predict(parameters, batch.Inputs!) - batch.Targets!).Squared().mean();

        public TestMetrics? Test(Tensor parameters) => task.Evaluate(parameters);

        public void Dispose()
        {
            InitialParameters.Dispose();
            _gen.Dispose();
        }
    }
}
