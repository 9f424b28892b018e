using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using L2O.Runtime;

namespace L2O.Cli;

/// <summary>
/// Renders run folders into one self-contained HTML page (<c>l2o report DIR… --out page.html</c>): per
/// folder its command, versions and machine, a table of results and plots (inline SVG drawn by a few
/// lines of script, log/linear toggle); folders sit side by side. Evaluation folders (<c>eval</c>,
/// <c>sweep</c>, <c>demo</c>) are read from <c>report.json</c>, meta-training folders from <c>log.csv</c>
/// and <c>options.json</c>.
/// </summary>
public static class HtmlReport
{
    /// <summary>Writes the page for <paramref name="folders"/> to <paramref name="path"/> (atomically).</summary>
    public static void Write(IReadOnlyList<string> folders, string path)
    {
        if (folders.Count == 0) throw new L2OException("name at least one run folder");
        AtomicFile.WriteAllText(path, Render(folders));
    }

    public static string Render(IReadOnlyList<string> folders)
    {
        var plots = new JsonArray();
        var sections = new StringBuilder();
        foreach (var folder in folders)
        {
            if (!Directory.Exists(folder)) throw new L2OException($"run folder '{folder}' does not exist");
            if (File.Exists(Path.Combine(folder, "report.json"))) sections.Append(EvaluationSection(folder, plots));
            else if (File.Exists(Path.Combine(folder, Training.MetaTrainer.LogFile))) sections.Append(MetaTrainingSection(folder, plots));
            else throw new L2OException($"'{folder}' is not a run folder: it has neither report.json (eval, sweep, demo) nor {Training.MetaTrainer.LogFile} (meta-train)");
        }
        string data = new JsonObject { ["plots"] = plots }.ToJsonString().Replace("</", "<\\/", StringComparison.Ordinal);
        return Page.Replace("{{title}}", E($"L2O report: {string.Join(", ", folders.Select(Path.GetFileName))}"), StringComparison.Ordinal)
            .Replace("{{generated}}", E($"generated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by l2o {Runtime.L2ORuntime.Version}"), StringComparison.Ordinal)
            .Replace("{{sections}}", sections.ToString(), StringComparison.Ordinal)
            .Replace("{{data}}", data, StringComparison.Ordinal);
    }

    private static string EvaluationSection(string folder, JsonArray plots)
    {
        JsonNode root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "report.json")))!;
        }
        catch (JsonException e)
        {
            throw new L2OException($"{Path.Combine(folder, "report.json")}: not valid JSON ({e.Message})");
        }
        string command = Str(root["command"]);
        string kind = command.Contains(" sweep", StringComparison.Ordinal) ? "sweep" : command.Contains(" demo", StringComparison.Ordinal) ? "demo" : "evaluation";
        var sb = new StringBuilder();
        sb.Append($"<section><h2>{E(Path.GetFileName(Path.GetFullPath(folder)))} <small>{kind}</small></h2>");
        sb.Append(Facts([
            ("command", command), ("task", Str(root["task"])),
            ("protocol", $"{Str(root["steps"])} steps × {Str(root["runs"])} runs, seed {Str(root["seed"])}"),
            ("l2o", Str(root["l2o_version"])), ("libtorch", Str(root["libtorch"])), ("device", Str(root["device"])),
            ("machine", Str(root["machine"])), ("created", Str(root["created_utc"])),
        ]));

        var results = root["results"]?.AsArray() ?? [];
        bool test = results.Any(r => r?["test_top1"] is JsonObject);
        sb.Append("<table class=\"results\"><thead><tr><th>optimizer</th><th>final loss (mean ± std)</th><th>median</th><th>diverged</th>");
        if (test) sb.Append("<th>test top-1</th>");
        sb.Append("<th>ms/update</th></tr></thead><tbody>");
        var series = new JsonArray();
        foreach (var r in results.OfType<JsonNode>())
        {
            var final = r["final_loss"];
            sb.Append($"<tr><td>{E(Str(r["optimizer"]))}</td><td>{F(final?["mean"])} ± {F(final?["std"])}</td><td>{F(final?["median"])}</td>");
            sb.Append($"<td>{Str(r["runs_diverged"])} of {Num(r["runs_completed"]) + Num(r["runs_diverged"])}</td>");
            if (test) sb.Append($"<td>{(r["test_top1"]?["mean"] is JsonNode top1 ? (Num(top1) * 100).ToString("0.00", CultureInfo.InvariantCulture) + " %" : "—")}</td>");
            sb.Append($"<td>{F(r["ms_per_update"], "0.000")}</td></tr>");
            var mean = Values(r["curve"]?["mean"]);
            var std = Values(r["curve"]?["std"]);
            series.Add(new JsonObject
            {
                ["name"] = Str(r["optimizer"]),
                ["y"] = Array(mean),
                ["lo"] = Array(mean.Zip(std, (m, s) => m - s)),
                ["hi"] = Array(mean.Zip(std, (m, s) => m + s)),
            });
        }
        sb.Append("</tbody></table>");
        sb.Append(Plot(plots, "loss per step (mean over runs that did not diverge, band ± 1 std)", "step", "loss", series, log: true));
        return sb.Append("</section>").ToString();
    }

    private static string MetaTrainingSection(string folder, JsonArray plots)
    {
        var lines = File.ReadAllLines(Path.Combine(folder, Training.MetaTrainer.LogFile));
        if (lines.Length < 2) throw new L2OException($"{Path.Combine(folder, Training.MetaTrainer.LogFile)} has no iterations yet");
        var header = lines[0].Split(',');
        int Col(string name) => System.Array.IndexOf(header, name);
        var rows = lines.Skip(1).Select(l => l.Split(',')).Where(c => c.Length == header.Length).ToList();
        double Cell(string[] row, int col) => col >= 0 && double.TryParse(row[col], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN;
        int it = Col("iteration"), meta = Col("meta_loss"), final = Col("final_loss"), val = Col("validation_loss"), sec = Col("seconds");
        var x = rows.Select(r => Cell(r, it)).ToList();

        var options = new List<(string, string)>();
        string optionsPath = Path.Combine(folder, "options.json");
        if (File.Exists(optionsPath) && JsonNode.Parse(File.ReadAllText(optionsPath)) is JsonObject o)
            foreach (var (k, v) in o) options.Add((k, v is null ? "" : v is JsonValue ? v.ToString() : v.ToJsonString()));

        var validation = rows.Select(r => (It: Cell(r, it), Loss: Cell(r, val))).Where(p => double.IsFinite(p.Loss)).ToList();
        var best = validation.Count > 0 ? validation.MinBy(p => p.Loss) : (It: double.NaN, Loss: double.NaN);
        var sb = new StringBuilder();
        sb.Append($"<section><h2>{E(Path.GetFileName(Path.GetFullPath(folder)))} <small>meta-training</small></h2>");
        sb.Append("<table class=\"results\"><thead><tr><th>iterations</th><th>last meta-loss</th><th>last final loss</th><th>best validation loss</th><th>at iteration</th><th>seconds</th></tr></thead><tbody>");
        sb.Append($"<tr><td>{x[^1].ToString(CultureInfo.InvariantCulture)}</td><td>{F(Cell(rows[^1], meta))}</td><td>{F(Cell(rows[^1], final))}</td>");
        sb.Append($"<td>{F(best.Loss)}</td><td>{(double.IsFinite(best.It) ? best.It.ToString(CultureInfo.InvariantCulture) : "—")}</td>");
        sb.Append($"<td>{rows.Sum(r => double.IsFinite(Cell(r, sec)) ? Cell(r, sec) : 0).ToString("0", CultureInfo.InvariantCulture)}</td></tr></tbody></table>");
        if (options.Count > 0) sb.Append(Facts(options));
        var series = new JsonArray
        {
            new JsonObject { ["name"] = "meta-loss", ["x"] = Array(x), ["y"] = Array(rows.Select(r => Cell(r, meta))) },
            new JsonObject { ["name"] = "final loss", ["x"] = Array(x), ["y"] = Array(rows.Select(r => Cell(r, final))) },
        };
        if (validation.Count > 0)
            series.Add(new JsonObject { ["name"] = "validation loss", ["x"] = Array(validation.Select(p => p.It)), ["y"] = Array(validation.Select(p => p.Loss)), ["points"] = true });
        sb.Append(Plot(plots, "meta-training curves", "meta-iteration", "loss", series, log: true));
        return sb.Append("</section>").ToString();
    }

    private static string Plot(JsonArray plots, string title, string xLabel, string yLabel, JsonArray series, bool log)
    {
        int id = plots.Count;
        plots.Add(new JsonObject { ["title"] = title, ["x"] = xLabel, ["y"] = yLabel, ["log"] = log, ["series"] = series });
        return $"<figure><figcaption>{E(title)} <button type=\"button\" data-plot=\"{id}\">{(log ? "linear scale" : "log scale")}</button></figcaption><div class=\"plot\" id=\"plot-{id}\"></div></figure>";
    }

    private static string Facts(IEnumerable<(string Key, string Value)> facts)
    {
        var sb = new StringBuilder("<table class=\"facts\"><tbody>");
        foreach (var (k, v) in facts.Where(f => f.Value.Length > 0))
            sb.Append($"<tr><th>{E(k)}</th><td>{(k == "command" ? $"<code>{E(v)}</code>" : E(v))}</td></tr>");
        return sb.Append("</tbody></table>").ToString();
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);
    private static string Str(JsonNode? n) => n is null ? "" : n is JsonValue v && v.TryGetValue<string>(out var s) ? s : n.ToJsonString();
    private static double Num(JsonNode? n) => n is JsonValue v && v.TryGetValue<double>(out var d) ? d : double.NaN;

    /// <summary>The CLI's table format (<see cref="L2O.Cli.Render.F"/>), so page and terminal show the same digits.</summary>
    private static string F(JsonNode? n, string format = "0.0000") => L2O.Cli.Render.F(Num(n), format);
    private static string F(double v) => L2O.Cli.Render.F(v);

    private static List<double> Values(JsonNode? n) => n is JsonArray a ? a.Select(Num).ToList() : [];
    private static JsonArray Array(IEnumerable<double> values) => new(values.Select(v => double.IsFinite(v) ? (JsonNode?)JsonValue.Create(v) : null).ToArray());

    // One page, no external resources. The script draws each plot as SVG from the embedded data and
    // records errors on <body data-errors> (the browser test reads it with the rendered DOM).
    private const string Page = """
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
main{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
section{flex:1 1 34em;min-width:30em;border:1px solid #ddd;border-radius:6px;padding:0 1em 1em}
h2 small{font-weight:normal;color:#777;font-size:70%}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
td,th{padding:.15em .6em;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
.results td{white-space:nowrap}
td:first-child,th:first-child,.facts td{text-align:left}
.facts th{text-align:left;color:#666;font-weight:normal}
code{font-size:90%;word-break:break-all}
figure{margin:.5em 0}figcaption{color:#444}button{margin-left:.6em;font-size:85%}
.plot svg{width:100%;height:auto}
</style></head>
<body><h1>{{title}}</h1><p class="generated">{{generated}}</p>
<main>{{sections}}</main>
<script type="application/json" id="l2o-data">{{data}}</script>
<script>
window.addEventListener('error', e => { document.body.dataset.errors = (document.body.dataset.errors || '') + e.message + ';'; });
(function () {
  const palette = ['#1f77b4','#d62728','#2ca02c','#ff7f0e','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];
  const data = JSON.parse(document.getElementById('l2o-data').textContent);
  const W = 640, H = 360, L = 60, R = 150, T = 12, B = 40;
  const el = (name, attrs, text) => { const e = document.createElementNS('http://www.w3.org/2000/svg', name); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; };
  function draw(i) {
    const p = data.plots[i], box = document.getElementById('plot-' + i);
    const f = v => (v === null || !isFinite(v) || (p.log && v <= 0)) ? null : (p.log ? Math.log10(v) : v);
    let xs = [], ys = [];
    p.series.forEach(s => { s.y.forEach((v, k) => { const y = f(v); if (y !== null) { ys.push(y); xs.push(s.x ? s.x[k] : k); } }); });
    if (ys.length === 0) { box.textContent = 'no finite values to plot'; return; }
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const X = x => L + (x - x0) / (x1 - x0) * (W - L - R), Y = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
    svg.appendChild(el('rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: 'none', stroke: '#999' }));
    for (let k = 0; k <= 4; k++) {
      const y = y0 + (y1 - y0) * k / 4, x = x0 + (x1 - x0) * k / 4;
      svg.appendChild(el('line', { x1: L, x2: W - R, y1: Y(y), y2: Y(y), stroke: '#eee' }));
      svg.appendChild(el('text', { x: L - 4, y: Y(y) + 4, 'text-anchor': 'end', 'font-size': 11 }, (p.log ? Math.pow(10, y) : y).toPrecision(3)));
      svg.appendChild(el('text', { x: X(x), y: H - B + 14, 'text-anchor': 'middle', 'font-size': 11 }, Math.round(x)));
    }
    svg.appendChild(el('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 12 }, p.x));
    svg.appendChild(el('text', { x: 14, y: (T + H - B) / 2, 'text-anchor': 'middle', 'font-size': 12, transform: `rotate(-90 14 ${(T + H - B) / 2})` }, p.y + (p.log ? ' (log)' : '')));
    p.series.forEach((s, n) => {
      const c = palette[n % palette.length], at = k => s.x ? s.x[k] : k;
      if (s.lo && s.hi) {
        const up = [], down = [];
        s.hi.forEach((v, k) => { const a = f(v), b = f(s.lo[k]); if (a !== null) up.push(`${X(at(k))},${Y(Math.min(a, y1))}`); if (b !== null) down.unshift(`${X(at(k))},${Y(Math.max(b, y0))}`); });
        if (up.length && down.length) svg.appendChild(el('polygon', { points: up.concat(down).join(' '), fill: c, 'fill-opacity': 0.12, stroke: 'none' }));
      }
      const pts = []; s.y.forEach((v, k) => { const y = f(v); if (y !== null) pts.push([X(at(k)), Y(y)]); });
      if (s.points) pts.forEach(q => svg.appendChild(el('circle', { cx: q[0], cy: q[1], r: 2.5, fill: c })));
      else svg.appendChild(el('polyline', { points: pts.map(q => q.join(',')).join(' '), fill: 'none', stroke: c, 'stroke-width': 1.5 }));
      svg.appendChild(el('rect', { x: W - R + 10, y: T + 6 + n * 16, width: 12, height: 3, fill: c }));
      svg.appendChild(el('text', { x: W - R + 26, y: T + 10 + n * 16, 'font-size': 11 }, s.name));
    });
    box.replaceChildren(svg);
  }
  document.querySelectorAll('button[data-plot]').forEach(b => b.addEventListener('click', () => {
    const p = data.plots[b.dataset.plot]; p.log = !p.log; b.textContent = p.log ? 'linear scale' : 'log scale'; draw(b.dataset.plot);
  }));
  data.plots.forEach((_, i) => draw(i));
  document.body.dataset.rendered = String(data.plots.length);
})();
</script></body></html>
""";
}
