namespace L2O.Learned;

/// <summary>Learned optimizers whose meta-trained checkpoints ship in the repository's pretrained/ folder.</summary>
public static class Pretrained
{
    /// <summary>Specifications the demo adds to its baselines (empty until checkpoints ship).</summary>
    public static IEnumerable<string> DemoSpecs() => [];
}
