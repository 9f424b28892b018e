// A small CNN on Fashion-MNIST (Debian's dataset-fashion-mnist; the embedded MNIST digits when it is
// absent), trained with the pretrained HyperAdam (the mixture checkpoint, which trains CNNs it never saw;
// the paper-protocol one does not reliably) next to torch.optim.Adam, both under StepLR, with a
// save and resume half-way that continues bitwise.   dotnet run -c Release -- [steps]
using L2O;
using L2O.Data;
using TorchSharp;
using static TorchSharp.torch;

// torch is used before any L2O type: the package's module initializer has already made it loadable.
manual_seed(0);
int steps = args.Length > 0 ? int.Parse(args[0]) : 200;

ImageDataset data;
try { data = DatasetCatalog.Load("fashion-mnist"); }
catch (L2OException) { data = DatasetCatalog.Load("mnist"); }
Console.WriteLine($"data: {data.Name} ({data.Train.Count} train, {data.Test.Count} test images) from {data.Source}");

nn.Module<Tensor, Tensor> Cnn()
{
    manual_seed(1);   // both optimizers start from the same weights
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),      // (B, 8, 13, 13)
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),     // (B, 16, 5, 5)
        nn.Flatten(), nn.Linear(16 * 5 * 5, 10));
}

// Mini-batch k is the same for every run: drawn from a generator seeded with k.
(Tensor X, Tensor Y) Batch(int k)
{
    using var g = new Generator((ulong)(1000 + k));
    var idx = randint(data.Train.Count, [128], generator: g);
    return (data.Train.Images.index_select(0, idx), data.Train.Labels.index_select(0, idx));
}

double Train(nn.Module<Tensor, Tensor> model, optim.Optimizer opt, optim.lr_scheduler.LRScheduler schedule, int from, int to)
{
    double loss = 0;
    for (int k = from; k < to; k++)
    {
        using var scope = NewDisposeScope();
        var (x, y) = Batch(k);
        opt.zero_grad();
        var l = nn.functional.cross_entropy(model.forward(x), y);
        l.backward();
        opt.step();
        schedule.step();
        loss = l.ToDouble();
    }
    return loss;
}

double Accuracy(nn.Module<Tensor, Tensor> model)
{
    using var scope = NewDisposeScope();
    using var _ = no_grad();
    var x = data.Test.Images.narrow(0, 0, 2000);
    var y = data.Test.Labels.narrow(0, 0, 2000);
    return model.forward(x).argmax(1).eq(y).to(ScalarType.Float32).mean().ToDouble();
}

// torch.optim.Adam.
var adamModel = Cnn();
var adam = optim.Adam(adamModel.parameters(), lr: 1e-3);
var adamLoss = Train(adamModel, adam, optim.lr_scheduler.StepLR(adam, steps / 2, 0.5), 0, steps);
Console.WriteLine($"torch.optim.Adam(lr=1e-3):       loss {adamLoss:F4}, test accuracy {Accuracy(adamModel):P1}");

// Pretrained HyperAdam, uninterrupted.
const string Checkpoint = "pretrained-mix";
var model = Cnn();
using var hyper = Optim.HyperAdam(model.parameters(), checkpoint: Checkpoint);   // lr = 1: the learned step as meta-trained
var hyperLoss = Train(model, hyper, optim.lr_scheduler.StepLR(hyper, steps / 2, 0.5), 0, steps);
Console.WriteLine($"L2O.Optim.HyperAdam (pretrained-mix): loss {hyperLoss:F4}, test accuracy {Accuracy(model):P1}");

// The same run, saved half-way and resumed in a fresh model and optimizer.
string dir = Path.Combine(Path.GetTempPath(), $"l2o-example-{Environment.ProcessId}");
Directory.CreateDirectory(dir);
var first = Cnn();
using (var opt = Optim.HyperAdam(first.parameters(), checkpoint: Checkpoint))
{
    Train(first, opt, optim.lr_scheduler.StepLR(opt, steps / 2, 0.5), 0, steps / 2);
    first.save(Path.Combine(dir, "model.bin"));
    opt.save_state_dict(Path.Combine(dir, "optimizer.bin"));
}
var resumed = Cnn();
resumed.load(Path.Combine(dir, "model.bin"));
using var resumedOpt = Optim.HyperAdam(resumed.parameters(), checkpoint: Checkpoint);
var resumedSchedule = optim.lr_scheduler.StepLR(resumedOpt, steps / 2, 0.5);
for (int k = 0; k < steps / 2; k++) resumedSchedule.step();   // the schedule's own position
resumedOpt.load_state_dict(Path.Combine(dir, "optimizer.bin"));
Train(resumed, resumedOpt, resumedSchedule, steps / 2, steps);
Directory.Delete(dir, true);

bool same = model.parameters().Zip(resumed.parameters()).All(p => p.First.eq(p.Second).all().item<bool>());
Console.WriteLine($"saved at step {steps / 2} and resumed: identical to the uninterrupted run: {same}");
return same ? 0 : 1;
