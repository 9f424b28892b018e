namespace L2O.Data;

/// <summary>
/// Reader for the CIFAR-10 binary version (<c>data_batch_1.bin</c> … <c>data_batch_5.bin</c>,
/// <c>test_batch.bin</c>): records of one label byte followed by 3 072 pixel bytes (1 024 red,
/// 1 024 green, 1 024 blue, each 32×32 row-major).
/// </summary>
public static class Cifar10
{
    public const int Side = 32;
    public const int Channels = 3;
    public const int RecordBytes = 1 + Channels * Side * Side;
    public static readonly string[] TrainFiles = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
    public const string TestFile = "test_batch.bin";
    public static readonly string[] ClassNames = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    /// <summary>Reads one batch file into pixels (N×3×32×32 bytes, channel-major as stored) and labels.</summary>
    public static (byte[] Pixels, byte[] Labels) ReadBatch(string path)
    {
        return Parse(DataFiles.ReadAllBytes(path), path);
    }

    public static (byte[] Pixels, byte[] Labels) Parse(ReadOnlySpan<byte> raw, string name)
    {
        if (raw.Length == 0) throw new DataFormatException(name, "is empty");
        if (raw.Length % RecordBytes != 0)
            throw new DataFormatException(name, $"has {raw.Length} bytes, not a whole number of {RecordBytes}-byte CIFAR-10 records (truncated or not CIFAR-10 binary)");
        int n = raw.Length / RecordBytes;
        var labels = new byte[n];
        var pixels = new byte[n * (RecordBytes - 1)];
        for (int i = 0; i < n; i++)
        {
            var rec = raw.Slice(i * RecordBytes, RecordBytes);
            if (rec[0] >= 10) throw new DataFormatException(name, $"record {i} has label {rec[0]}; CIFAR-10 labels are 0..9");
            labels[i] = rec[0];
            rec[1..].CopyTo(pixels.AsSpan(i * (RecordBytes - 1)));
        }
        return (pixels, labels);
    }
}
