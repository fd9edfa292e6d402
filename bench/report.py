#!/usr/bin/env python3
"""Turns the results of bench/run.sh into Markdown tables and an SVG plot.

    python3 bench/report.py bench/results/small.jsonl \
        [--markdown bench/results/small.md] [--svg bench/results/small.svg]

Input: one JSON object per line, as `collab-bench` printed it after `RESULT `, with the
fields bench/run.sh adds (bench_run, bench_size, bench_server, bench_database,
bench_clients, bench_rate, bench_peak, ...). Nested objects (`latency`, `server`) are
shown as `latency.p99_ms`, `server.rss_kib`, ...

Output:
  - a table per scenario with every field of every run;
  - fan-out against the raw relay, same load side by side, with collab's deliveries/s as
    a percentage of the relay's;
  - the yjs servers side by side at each load, and the most deliveries/s each reached
    within a p99 budget (the issue compares throughput "at equal p99");
  - an SVG (hand-written, no plotting library) of delivery latency p50 and p99 against
    deliveries per second, log-log, for the fanout, raw and yjs runs present.

Standard library only.
"""

import argparse
import datetime
import html
import json
import math
import os
import platform
import sys

# ---------------------------------------------------------------------------------------
# Reading and looking up fields.
# ---------------------------------------------------------------------------------------


def read_results(path):
    records = []
    with open(path, errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                print(f"report: {path}:{number}: skipped ({error})", file=sys.stderr)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def flatten(record, prefix=""):
    """{"latency": {"p99_ms": 1}} -> {"latency.p99_ms": 1}, in the record's order."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def first(flat, *names):
    """The first of these fields that the record has (and is not null)."""
    for name in names:
        if flat.get(name) is not None:
            return flat[name]
    return None


# The field names collab-bench uses, with fallbacks for variants.
def deliveries_per_second(flat):
    return first(flat, "deliveries_per_second", "deliveries_per_sec", "updates_per_second")


def latency(flat, percentile):
    return first(flat, f"latency.{percentile}_ms", f"{percentile}_ms",
                 f"delivery.{percentile}_ms", f"delivery_latency.{percentile}_ms")


def cpu_percent(flat):
    return first(flat, "server.cpu_percent", "cpu_percent")


def rss_kib(flat):
    return first(flat, "server.rss_kib", "rss_kib")


def rss_peak_kib(flat):
    return first(flat, "server.rss_peak_kib", "rss_peak_kib")


def server_name(flat):
    if flat.get("bench_server"):
        return str(flat["bench_server"])
    return "raw" if str(flat.get("scenario", "")).startswith("raw") else "collab"


def is_peak(flat):
    if flat.get("bench_peak") is not None:
        return bool(flat["bench_peak"])
    return bool(flat.get("peak")) or str(flat.get("scenario", "")).endswith("-peak")


def load_key(flat):
    """(clients, rate, peak) as bench/run.sh asked for it (or as the bench reported it)."""
    clients = first(flat, "bench_clients", "editors", "clients")
    rate = 0 if is_peak(flat) else first(flat, "bench_rate", "rate")
    return (clients, rate, is_peak(flat))


def load_label(key):
    clients, rate, peak = key
    return f"{clients} × peak" if peak else f"{clients} × {rate}/s"


def family(flat):
    """Which comparison a run belongs to: fanout, raw, yjs or something else."""
    scenario = str(flat.get("scenario", ""))
    if scenario.startswith("raw") or flat.get("bench_server") == "raw":
        return "raw"
    if scenario.startswith("fanout"):
        return "fanout"
    if scenario.startswith("yjs"):
        return "yjs"
    return scenario


# ---------------------------------------------------------------------------------------
# Markdown.
# ---------------------------------------------------------------------------------------


def fmt(value):
    """Numbers to a readable precision; null as a dash; text escaped for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        magnitude = abs(value)
        if magnitude >= 10_000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.0f}"
        return f"{value:.3g}"  # three significant digits: 42.5, 1.25, 0.375
    if isinstance(value, list):
        value = json.dumps(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(cell) if not isinstance(cell, str) else
                                       cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def ratio(numerator, denominator):
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def percent(value):
    return "–" if value is None else f"{100 * value:.0f} %"


def times(value):
    return "–" if value is None else f"{value:.2f}×"


def machine():
    """A line about the machine the report was written on (normally the one that ran)."""
    model = None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                    break
    except OSError:
        pass
    parts = [f"{os.cpu_count()} CPUs", model, memory,
             f"{platform.system()} {platform.release()}", f"Python {platform.python_version()}"]
    return ", ".join(part for part in parts if part)


def scenario_tables(flats):
    """One table per scenario, every field as a column, runs in the order they ran."""
    out = []
    scenarios = []
    for flat in flats:
        if flat.get("scenario", "?") not in scenarios:
            scenarios.append(flat.get("scenario", "?"))
    for scenario in scenarios:
        runs = [flat for flat in flats if flat.get("scenario", "?") == scenario]
        columns = ["bench_run"]
        for flat in runs:  # the bench's own fields first, then bench/run.sh's
            for key in flat:
                if key not in columns and not key.startswith("bench_"):
                    columns.append(key)
        for flat in runs:
            for key in flat:
                if key not in columns:
                    columns.append(key)
        out.append(f"### {scenario}\n")
        out.append(table([f"`{column}`" for column in columns],
                         [[flat.get(column) for column in columns] for flat in runs]))
        out.append("")
    return out


def fanout_vs_raw(flats):
    """Each fan-out run beside the raw relay's run at the same load."""
    raw = {load_key(flat): flat for flat in flats if family(flat) == "raw"}
    fanouts = [flat for flat in flats if family(flat) == "fanout"]
    if not fanouts or not raw:
        return []
    header = ["load (clients × rate)", "collab target", "collab deliveries/s",
              "collab p50 ms", "collab p99 ms", "raw deliveries/s", "raw p50 ms",
              "raw p99 ms", "collab / raw deliveries/s"]
    rows = []
    for flat in fanouts:
        key = load_key(flat)
        other = raw.get(key)
        ours = deliveries_per_second(flat)
        theirs = deliveries_per_second(other) if other else None
        rows.append([load_label(key), fmt(first(flat, "target", "bench_target")), fmt(ours),
                     fmt(latency(flat, "p50")), fmt(latency(flat, "p99")), fmt(theirs),
                     fmt(latency(other, "p50") if other else None),
                     fmt(latency(other, "p99") if other else None),
                     percent(ratio(ours, theirs))])
    return ["## Fan-out: collab against the raw relay\n",
            "Same clients, rate and duration; the peak rows send as fast as the server "
            "acknowledges.\n", table(header, rows), ""]


YJS_ORDER = ["collab", "y-websocket-server", "hocuspocus"]
P99_BUDGETS_MS = (5, 20, 50, 100, 200)


def yjs_side_by_side(flats):
    runs = [flat for flat in flats if family(flat) == "yjs"]
    if not runs:
        return []
    servers = sorted({server_name(flat) for flat in runs},
                     key=lambda s: (YJS_ORDER.index(s) if s in YJS_ORDER else 99, s))
    loads = []
    for flat in runs:
        if load_key(flat) not in loads:
            loads.append(load_key(flat))
    by = {(load_key(flat), server_name(flat)): flat for flat in runs}

    out = ["## Yjs: collab, @y/websocket-server and Hocuspocus\n",
           "The same y-websocket workload against each server. The ratio columns compare "
           "each baseline with collab at the same load: collab's deliveries/s over the "
           "baseline's, and collab's peak RSS over the baseline's.\n"]
    header = ["load (clients × rate)", "server", "deliveries/s", "p50 ms", "p95 ms",
              "p99 ms", "max ms", "server CPU %", "RSS KiB", "peak RSS KiB",
              "collab ÷ this, deliveries/s", "collab ÷ this, peak RSS"]
    rows = []
    for key in loads:
        ours = by.get((key, "collab"))
        for server in servers:
            flat = by.get((key, server))
            if flat is None:
                continue
            compare = ours is not None and server != "collab"
            rows.append([load_label(key), server, fmt(deliveries_per_second(flat)),
                         fmt(latency(flat, "p50")), fmt(latency(flat, "p95")),
                         fmt(latency(flat, "p99")), fmt(latency(flat, "max")),
                         fmt(cpu_percent(flat)), fmt(rss_kib(flat)), fmt(rss_peak_kib(flat)),
                         times(ratio(deliveries_per_second(ours), deliveries_per_second(flat)))
                         if compare else "–",
                         percent(ratio(rss_peak_kib(ours), rss_peak_kib(flat)))
                         if compare else "–"])
    out += [table(header, rows), ""]

    # Throughput at equal p99: the most deliveries/s each server reached in a run whose
    # p99 stayed within the budget.
    header = ["p99 budget"] + [f"{server} deliveries/s" for server in servers] + \
             [f"collab ÷ {server}" for server in servers if server != "collab"]
    rows = []
    for budget in P99_BUDGETS_MS:
        best = {}
        for server in servers:
            within = [deliveries_per_second(flat) for flat in runs
                      if server_name(flat) == server and latency(flat, "p99") is not None
                      and latency(flat, "p99") <= budget
                      and deliveries_per_second(flat) is not None]
            best[server] = max(within) if within else None
        rows.append([f"≤ {budget} ms"] + [fmt(best[server]) for server in servers] +
                    [times(ratio(best.get("collab"), best[server]))
                     for server in servers if server != "collab"])
    out += ["Most deliveries/s within a p99 budget (over the rates swept; – when no run "
            "stayed within it):\n", table(header, rows), ""]
    return out


def markdown(records, source, svg_name):
    flats = [flatten(record) for record in records]
    sizes = sorted({str(flat["bench_size"]) for flat in flats if flat.get("bench_size")})
    out = [f"# collab benchmarks{' (' + ', '.join(sizes) + ')' if sizes else ''}\n",
           f"From `{os.path.basename(source)}` ({len(records)} results), written "
           f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}.\n",
           f"Machine: {machine()}.\n",
           "Latencies in ms, rates per second, memory in KiB; server CPU is percent of "
           "one core over the run.\n"]
    if not records:
        out.append("No results.\n")
        return "\n".join(out)
    if svg_name:
        out += [f"![delivery latency against load]({svg_name})\n"]
    out += fanout_vs_raw(flats)
    out += yjs_side_by_side(flats)
    out += ["## Every run, by scenario\n"]
    out += scenario_tables(flats)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# SVG: delivery latency (p50 dashed, p99 solid) against deliveries/s, log-log.
# ---------------------------------------------------------------------------------------

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#7f7f7f", "#bcbd22"]


def series_name(flat):
    fam = family(flat)
    if fam == "raw":
        return "raw relay (fanout)"
    if fam == "fanout":
        target = first(flat, "target", "bench_target")
        return f"collab fanout ({target})" if target else "collab fanout"
    database = flat.get("bench_database")
    server = server_name(flat)
    return f"yjs: {server}" + (f" ({database})" if database and server == "collab" and
                               database != "sqlite" else "")


def collect_series(flats):
    series = {}
    for flat in flats:
        if family(flat) not in ("fanout", "raw", "yjs"):
            continue
        x = deliveries_per_second(flat)
        p50, p99 = latency(flat, "p50"), latency(flat, "p99")
        if not isinstance(x, (int, float)) or x <= 0:
            continue
        series.setdefault(series_name(flat), []).append((x, p50, p99, is_peak(flat)))
    for points in series.values():
        points.sort()
    return series


def decades(low, high):
    """Log10 bounds that hold [low, high], whole decades, at least one decade wide."""
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if hi <= lo:
        hi = lo + 1
    return lo, hi


def tick_label(exponent, unit=""):
    value = 10.0 ** exponent
    if value >= 1_000_000:
        text = f"{value / 1_000_000:g}M"
    elif value >= 1_000:
        text = f"{value / 1_000:g}k"
    else:
        text = f"{value:g}"
    return text + unit


def svg(records):
    flats = [flatten(record) for record in records]
    series = collect_series(flats)
    width, height = 960, 560
    left, right, top, bottom = 80, 300, 50, 70  # plot margins; the legend is on the right
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left + plot_w / 2}" y="25" text-anchor="middle" font-size="15">'
             'Delivery latency against load (p99 solid, p50 dashed)</text>']

    xs = [x for points in series.values() for x, _, _, _ in points]
    ys = [y for points in series.values() for _, p50, p99, _ in points
          for y in (p50, p99) if isinstance(y, (int, float)) and y > 0]
    if not xs or not ys:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     'no fanout, raw or yjs results with latencies</text></svg>')
        return "\n".join(parts) + "\n"

    x_lo, x_hi = decades(min(xs), max(xs))
    y_lo, y_hi = decades(min(ys), max(ys))

    def px(x):
        return left + (math.log10(x) - x_lo) / (x_hi - x_lo) * plot_w

    def py(y):
        return top + plot_h - (math.log10(y) - y_lo) / (y_hi - y_lo) * plot_h

    # Grid: decades (labelled) and 2, 5 within each decade (faint).
    for exponent in range(x_lo, x_hi + 1):
        for factor in (1, 2, 5):
            x = factor * 10.0 ** exponent
            if not (10.0 ** x_lo <= x <= 10.0 ** x_hi):
                continue
            shade = "#cccccc" if factor == 1 else "#eeeeee"
            parts.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" '
                         f'y2="{top + plot_h}" stroke="{shade}"/>')
        parts.append(f'<text x="{px(10.0 ** exponent):.1f}" y="{top + plot_h + 18}" '
                     f'text-anchor="middle">{tick_label(exponent)}</text>')
    for exponent in range(y_lo, y_hi + 1):
        for factor in (1, 2, 5):
            y = factor * 10.0 ** exponent
            if not (10.0 ** y_lo <= y <= 10.0 ** y_hi):
                continue
            shade = "#cccccc" if factor == 1 else "#eeeeee"
            parts.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{left + plot_w}" '
                         f'y2="{py(y):.1f}" stroke="{shade}"/>')
        parts.append(f'<text x="{left - 8}" y="{py(10.0 ** exponent) + 4:.1f}" '
                     f'text-anchor="end">{tick_label(exponent)}</text>')
    parts += [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
              'stroke="#333333"/>',
              f'<text x="{left + plot_w / 2}" y="{height - 25}" text-anchor="middle">'
              'deliveries per second (log)</text>',
              f'<text transform="translate(22 {top + plot_h / 2}) rotate(-90)" '
              'text-anchor="middle">delivery latency, ms (log)</text>']

    # The series: a polyline per percentile through the runs at a set rate, a marker per
    # run; peak runs are hollow markers off the line (their load is not a set rate).
    for index, (name, points) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        for column, dash in ((2, ""), (1, ' stroke-dasharray="5 4"')):
            plotted = [point for point in points
                       if isinstance(point[column], (int, float)) and point[column] > 0]
            line = [(px(point[0]), py(point[column])) for point in plotted if not point[3]]
            if len(line) > 1:
                coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in line)
                parts.append(f'<polyline points="{coordinates}" fill="none" '
                             f'stroke="{color}" stroke-width="2"{dash}/>')
            for point in plotted:
                x, y = px(point[0]), py(point[column])
                fill = "white" if point[3] else color
                title = (f"{name}: {fmt(point[0])} deliveries/s, "
                         f"p{'99' if column == 2 else '50'} {fmt(point[column])} ms"
                         + (" (peak run)" if point[3] else ""))
                radius = 4 if column == 2 else 3
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill}" '
                             f'stroke="{color}" stroke-width="1.5">'
                             f'<title>{html.escape(title)}</title></circle>')
        # Legend entry.
        legend_y = top + 10 + index * 22
        legend_x = left + plot_w + 20
        parts += [f'<line x1="{legend_x}" y1="{legend_y}" x2="{legend_x + 28}" '
                  f'y2="{legend_y}" stroke="{color}" stroke-width="2"/>',
                  f'<text x="{legend_x + 36}" y="{legend_y + 4}">{html.escape(name)}</text>']
    note_y = top + 10 + len(series) * 22 + 10
    parts += [f'<text x="{left + plot_w + 20}" y="{note_y}" fill="#555555">'
              'hollow markers: peak runs</text>', "</svg>"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a .jsonl written by bench/run.sh")
    parser.add_argument("--markdown", help="output (default: the results with .md)")
    parser.add_argument("--svg", help="output (default: the results with .svg)")
    args = parser.parse_args()
    stem = args.results[:-len(".jsonl")] if args.results.endswith(".jsonl") else args.results
    markdown_path = args.markdown or stem + ".md"
    svg_path = args.svg or stem + ".svg"

    records = read_results(args.results)
    # The Markdown links the plot by a path relative to itself.
    svg_link = os.path.relpath(svg_path, os.path.dirname(os.path.abspath(markdown_path)))
    with open(markdown_path, "w") as out:
        out.write(markdown(records, args.results, svg_link))
    with open(svg_path, "w") as out:
        out.write(svg(records))
    print(f"report: {len(records)} results -> {markdown_path}, {svg_path}")


if __name__ == "__main__":
    main()
