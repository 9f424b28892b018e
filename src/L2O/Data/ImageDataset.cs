using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Data;

/// <summary>One split of an image classification dataset, held as tensors on the CPU.</summary>
/// <param name="Images">Pixels scaled to [0, 1], shape (N, C, H, W), float32.</param>
/// <param name="Labels">Class indices, shape (N), int64.</param>
public sealed record DataSplit(Tensor Images, Tensor Labels)
{
    public int Count => (int)Labels.shape[0];
}

/// <summary>
/// An image classification dataset (train and test split) with the place it was loaded from.
/// Tensors live on the CPU; tasks copy them to their device once.
/// </summary>
public sealed class ImageDataset
{
    public ImageDataset(string name, string source, int channels, int height, int width, int classes, DataSplit train, DataSplit test)
    {
        Name = name; Source = source; Channels = channels; Height = height; Width = width; Classes = classes; Train = train; Test = test;
    }

    public string Name { get; }
    /// <summary>Where the files came from (a folder, or "embedded").</summary>
    public string Source { get; }
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }
    public int Classes { get; }
    public int InputSize => Channels * Height * Width;
    public DataSplit Train { get; }
    public DataSplit Test { get; }

    /// <summary>Builds a dataset from IDX-style byte arrays (one channel) after checking that they agree.</summary>
    public static ImageDataset FromIdx(string name, string source,
        Idx.Images trainImages, byte[] trainLabels, Idx.Images testImages, byte[] testLabels,
        string trainImagesName, string trainLabelsName, string testImagesName, string testLabelsName, int classes = 10)
    {
        CheckPair(trainImages, trainLabels, trainImagesName, trainLabelsName, classes);
        CheckPair(testImages, testLabels, testImagesName, testLabelsName, classes);
        if (trainImages.Rows != testImages.Rows || trainImages.Columns != testImages.Columns)
            throw new DataFormatException(testImagesName, $"has {testImages.Rows}x{testImages.Columns} images but {trainImagesName} has {trainImages.Rows}x{trainImages.Columns}");
        return new ImageDataset(name, source, 1, trainImages.Rows, trainImages.Columns, classes,
            ToSplit(trainImages.Pixels, trainLabels, 1, trainImages.Rows, trainImages.Columns),
            ToSplit(testImages.Pixels, testLabels, 1, testImages.Rows, testImages.Columns));
    }

    private static void CheckPair(Idx.Images images, byte[] labels, string imagesName, string labelsName, int classes)
    {
        if (images.Count != labels.Length)
            throw new DataFormatException(labelsName, $"has {labels.Length} labels but {imagesName} has {images.Count} images");
        CheckLabels(labels, classes, labelsName);
    }

    /// <summary>Every label must name one of <paramref name="classes"/> classes (0 … classes − 1).</summary>
    public static void CheckLabels(byte[] labels, int classes, string labelsName)
    {
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= classes)
                throw new DataFormatException(labelsName, $"label {labels[i]} at index {i} is outside 0..{classes - 1}");
    }

    internal static DataSplit ToSplit(byte[] pixels, byte[] labels, int channels, int height, int width)
    {
        int n = labels.Length;
        var floats = new float[pixels.Length];
        for (int i = 0; i < pixels.Length; i++) floats[i] = pixels[i] / 255f;
        // Datasets are cached for the whole process: keep them out of any caller's dispose scope.
        var x = tensor(floats, [n, channels, height, width]).DetachFromDisposeScope();
        var y = tensor(labels.Select(b => (long)b).ToArray(), [n]).DetachFromDisposeScope();
        return new DataSplit(x, y);
    }
}
