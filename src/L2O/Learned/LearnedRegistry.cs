namespace L2O.Learned;

/// <summary>Registers the learned optimizers with <see cref="L2O.Optimizers.OptimizerRegistry"/>.</summary>
public static class LearnedRegistry
{
    private static int _done;

    public static void EnsureRegistered()
    {
        if (Interlocked.Exchange(ref _done, 1) == 1) return;
    }
}
