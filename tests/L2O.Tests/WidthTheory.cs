using L2O.Engine;
using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace L2O.Tests;

/// <summary>
/// A theory whose rows name a <see cref="SimdWidth"/>: a row whose width this CPU does not accelerate is reported as
/// skipped, with the reason, instead of returning early and counting as a pass. Rows are split at discovery (xunit's
/// pre-enumeration, on by default); where it is off, or a row cannot be serialised, xunit runs all rows as one test,
/// and a row with an unaccelerated width then fails in the engine's width check rather than passing.
/// </summary>
[XunitTestCaseDiscoverer("L2O.Tests.WidthTheoryDiscoverer", "L2O.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class WidthTheoryAttribute : TheoryAttribute
{
    /// <summary>Why a row with <paramref name="width"/> cannot run here (the engine's own check), or null where it can.</summary>
    public static string? Unavailable(SimdWidth width) => SimdSelect.Unavailable(width) is { } why ? $"{why}: not run here" : null;
}

/// <summary>Discovers <see cref="WidthTheoryAttribute"/> rows, turning each row with an unaccelerated width into a skipped case.</summary>
public sealed class WidthTheoryDiscoverer(IMessageSink diagnosticMessageSink) : TheoryDiscoverer(diagnosticMessageSink)
{
    protected override IEnumerable<IXunitTestCase> CreateTestCasesForDataRow(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod,
        IAttributeInfo theoryAttribute, object[] dataRow)
    {
        string? reason = dataRow.OfType<SimdWidth>().Select(WidthTheoryAttribute.Unavailable).FirstOrDefault(r => r is not null);
        return reason is null
            ? base.CreateTestCasesForDataRow(discoveryOptions, testMethod, theoryAttribute, dataRow)
            : CreateTestCasesForSkippedDataRow(discoveryOptions, testMethod, theoryAttribute, dataRow, reason);
    }
}

/// <summary>A fact about one <see cref="SimdWidth"/>: skipped, with the reason, where this CPU does not accelerate it.</summary>
public sealed class WidthFactAttribute : FactAttribute
{
    public WidthFactAttribute(SimdWidth width) => Skip = WidthTheoryAttribute.Unavailable(width);
}
