"""Statistics, the results JSON, the terminal table and the plot for bench/run.

bench/run (bash) measures and appends one line per sample to a TSV file:
    IMAGE<TAB>DRIVER<TAB>METRIC<TAB>REP<TAB>VALUE
(METRIC ends in _ms for times, _bytes for sizes). `python3 bench/benchlib.py report
SAMPLES OUTDIR [--meta JSON]` turns that into OUTDIR/latest.json (the DESIGN.md §8
format plus p95s and extra phases), prints the table, and draws OUTDIR/latest.png
with gnuplot. Pure functions here are unit-tested by bench/test_benchlib.py.
"""

import json
import math
import os
import shutil
import subprocess
import sys

DRIVERS = ("overlay2", "slacker")

# Times reported per image, in table order: (metric, label).
TIME_METRICS = (
    ("push_ms", "push"),
    ("pull_ms", "pull"),
    ("create_ms", "create"),
    ("run_ms", "run-to-ready (cold)"),
    ("deploy_ms", "deploy = pull+run"),
    ("dev_cycle_ms", "dev cycle"),
    ("dev_fresh_cycle_ms", "dev cycle, fresh worker"),
    ("warm_run_ms", "run-to-ready (warm)"),
    # a container's own life cycle, warm (bench/lifecycle; run_rm_ms also in bench/run)
    ("run_rm_ms", "docker run --rm"),
    ("start_ms", "start"),
    ("restart_ms", "start, stopped container"),
    ("stop_ms", "stop"),
    ("rm_ms", "rm"),
    ("commit_ms", "commit of a one-file change"),
    # issue 21: the floors (what docker costs when nothing moves) and the big change
    ("floor_push_ms", "push, registry has it (floor)"),
    ("floor_pull_ms", "pull, worker has it (floor)"),
    ("big_write_ms", "big change: write"),
    ("big_commit_ms", "big change: commit"),
    ("big_push_ms", "big change: push"),
    ("big_pull_ms", "big change: pull"),
    ("big_run_ms", "big change: run"),
    ("big_dev_cycle_ms", "big-change dev cycle"),
)

# Round trips per phase, counted (bench/run: the registry's access log; on the NFS
# topologies the store link's proxy): (metric, label). Medians, shown per driver.
COUNT_METRICS = (
    ("pull_registry_requests", "round trips: registry requests of a pull"),
    ("create_nfs_calls", "round trips: NFS calls of a create"),
    ("create_storaged_requests", "round trips: storaged requests of a create"),
    ("start_nfs_calls", "round trips: NFS calls of a cold start"),
    ("start_storaged_requests", "round trips: storaged requests of a cold start"),
    ("warm_run_nfs_calls", "round trips: NFS calls of a warm run"),
    ("dev_commit_nfs_calls", "round trips: NFS calls of a one-file commit"),
    ("dev_commit_storaged_requests", "round trips: storaged requests of a commit"),
)

# Headline ratios (overlay2 time / slacker time) and the targets of issue 6.
RATIO_METRICS = (
    ("push", "push_ms", 100.0),
    ("pull", "pull_ms", 50.0),
    ("deploy", "deploy_ms", 5.0),
    ("dev_cycle", "dev_cycle_ms", 20.0),
    ("dev_cycle_fresh", "dev_fresh_cycle_ms", 20.0),
    ("run", "run_ms", None),
    ("create", "create_ms", None),
    ("warm_run", "warm_run_ms", 1 / 1.3),
    # issue 17: within 1.1x of overlay2
    ("run_rm", "run_rm_ms", 1 / 1.1),
    ("start", "start_ms", None),
    ("restart", "restart_ms", 1 / 1.1),
    ("stop", "stop_ms", 1 / 1.1),
    ("rm", "rm_ms", 1 / 1.1),
    ("commit", "commit_ms", None),
    ("big_dev_cycle", "big_dev_cycle_ms", None),
    ("big_push", "big_push_ms", None),
    ("big_pull", "big_pull_ms", None),
    ("floor_push", "floor_push_ms", None),
    ("floor_pull", "floor_pull_ms", None),
)

# Each phase's floor (issue 21 item 2): the same docker calls when nothing has to move (a
# push whose blobs the registry has, a pull of an image the worker has) and a warm run
# for a start; a phase's floor is the sum of the medians named here. A commit or a write
# has no floor of its own (the work is the point), so a cycle's multiple counts them.
_CYCLE_FLOOR = ("floor_push_ms", "floor_pull_ms", "warm_run_ms")
FLOORS = {
    "push_ms": ("floor_push_ms",),
    "pull_ms": ("floor_pull_ms",),
    "deploy_ms": ("floor_pull_ms", "warm_run_ms"),
    "run_ms": ("warm_run_ms",),
    "run_after_pull_ms": ("warm_run_ms",),
    "dev_push_ms": ("floor_push_ms",),
    "dev_pull_ms": ("floor_pull_ms",),
    "dev_cycle_ms": _CYCLE_FLOOR,
    "dev_fresh_push_ms": ("floor_push_ms",),
    "dev_fresh_pull_ms": ("floor_pull_ms",),
    "dev_fresh_cycle_ms": _CYCLE_FLOOR,
    "big_push_ms": ("floor_push_ms",),
    "big_pull_ms": ("floor_pull_ms",),
    "big_dev_cycle_ms": _CYCLE_FLOOR,
}

# The paper's development cycle pushes and pulls whole images (an empty registry, a
# fresh worker): our dev_cycle_fresh. dev_cycle (the other worker has the base image) has
# no counterpart there; the paper's 20x is shown beside both.
PAPER = {"push": 153, "pull": 72, "deploy": 5, "dev_cycle": 20, "dev_cycle_fresh": 20}

READ_FRACTION_TARGET = 0.10


def median(xs):
    """The median; the mean of the two middle values for an even count."""
    if not xs:
        raise ValueError("median of no samples")
    s = sorted(xs)
    n = len(s)
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def percentile(xs, p):
    """The p-th percentile (0..100) by linear interpolation between closest ranks
    (numpy's default): with few samples p95 lies between the two largest."""
    if not xs:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    s = sorted(xs)
    pos = (len(s) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def ratio(overlay2, slacker):
    """overlay2 time / slacker time (higher is better for slacker); None when either
    is missing or slacker's is not positive."""
    if overlay2 is None or slacker is None or slacker <= 0:
        return None
    return overlay2 / slacker


def geomean(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    if any(x <= 0 for x in xs):
        raise ValueError("geometric mean of a non-positive value")
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def tsv_rows(lines, fields):
    """(line number, line, its tab-separated fields) of each line but blank ones and '#'
    comments; a line without exactly `fields` fields raises ValueError naming it."""
    for i, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != fields:
            raise ValueError(f"samples line {i}: expected {fields} tab-separated fields: {line!r}")
        yield i, line, parts


def parse_samples(lines):
    """TSV lines -> {image: {driver: {metric: [values in rep order]}}}, images in
    first-seen order. Blank lines and '#' comments are skipped; a malformed line
    raises ValueError naming it."""
    out = {}
    for i, line, parts in tsv_rows(lines, 5):
        image, driver, metric, rep, value = parts
        if driver not in DRIVERS:
            raise ValueError(f"samples line {i}: unknown driver {driver!r}")
        try:
            rep_n, v = int(rep), float(value)
        except ValueError:
            raise ValueError(f"samples line {i}: bad rep or value: {line!r}") from None
        reps = out.setdefault(image, {}).setdefault(driver, {}).setdefault(metric, {})
        if rep_n in reps:
            raise ValueError(f"samples line {i}: duplicate {image}/{driver}/{metric} rep {rep}")
        reps[rep_n] = v
    return {img: {d: {m: [r[k] for k in sorted(r)] for m, r in ms.items()}
                  for d, ms in ds.items()} for img, ds in out.items()}


def floor_multiples(medians):
    """{phase: its median / its floor (FLOORS)} for the phases of one driver's medians
    whose floor metrics were all measured and positive."""
    out = {}
    for metric, floors in FLOORS.items():
        if metric not in medians or any(medians.get(f) is None for f in floors):
            continue
        floor = sum(medians[f] for f in floors)
        if floor > 0:
            out[metric] = medians[metric] / floor
    return out


def build_report(samples, meta=None):
    """The results dict (DESIGN.md §8): images.NAME.DRIVER.{metric: median}, plus
    `p95` and `n` per driver, `read_fraction`, per-image `ratios`, and the headline
    `ratios` (geometric mean over images of the per-image ratios of medians),
    `ratios_total` (sum of medians over images, overlay2 / slacker) and `targets`."""
    report = {"images": {}, "ratios": {}, "ratios_total": {}, "targets": {}}
    if meta:
        report["meta"] = meta
    for image, by_driver in samples.items():
        entry = {}
        for driver, metrics in by_driver.items():
            d = {"p95": {}, "n": {}}
            for metric, values in sorted(metrics.items()):
                d[metric] = median(values)
                d["p95"][metric] = percentile(values, 95)
                d["n"][metric] = len(values)
            entry[driver] = d
        for d in entry.values():
            multiples = floor_multiples(d)
            if multiples:
                d["floor_multiple"] = multiples
        # One denominator for both drivers: the image's size as overlay2 reports it (the
        # files' bytes). slacker reports its layers' file-system blocks, metadata
        # included (~10% more), which would flatter its fraction.
        size = entry.get("overlay2", {}).get("image_bytes")
        for d in entry.values():
            denom = size or d.get("image_bytes")
            if denom and "read_bytes" in d:
                d["read_fraction"] = d["read_bytes"] / denom
        ratios = {}
        for name, metric, _ in RATIO_METRICS:
            r = ratio(entry.get("overlay2", {}).get(metric), entry.get("slacker", {}).get(metric))
            if r is not None:
                ratios[name] = r
        entry["ratios"] = ratios
        report["images"][image] = entry
    for name, metric, target in RATIO_METRICS:
        per_image = [e["ratios"].get(name) for e in report["images"].values()]
        per_image = [r for r in per_image if r is not None]
        if per_image:
            report["ratios"][name] = geomean(per_image)
        tot = {}
        for driver in DRIVERS:
            vals = [e.get(driver, {}).get(metric) for e in report["images"].values()
                    if name in e["ratios"]]
            tot[driver] = sum(vals) if vals else None
        r = ratio(tot["overlay2"], tot["slacker"])
        if r is not None:
            report["ratios_total"][name] = r
        if target is not None and name in report["ratios"]:
            report["targets"][name] = {"target": target, "value": report["ratios"][name],
                                       "met": report["ratios"][name] >= target}
    fractions = [e["slacker"]["read_fraction"] for e in report["images"].values()
                 if "read_fraction" in e.get("slacker", {})]
    if fractions:
        worst = max(fractions)
        report["targets"]["startup_read_fraction"] = {
            "target": READ_FRACTION_TARGET, "value": worst, "met": worst <= READ_FRACTION_TARGET}
    return report


def _fmt_ms(v):
    if v is None:
        return "-"
    if v >= 10000:
        return f"{v / 1000:.1f}s"
    return f"{v:.0f}"


def _fmt_bytes(v):
    if v is None:
        return "-"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= div:
            return f"{v / div:.1f}{unit}"
    return f"{v:.0f}B"


def _fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def format_table(report):
    """The terminal table: per image and phase, median (p95) per driver, ratio."""
    rows = [("image", "phase", "overlay2 ms med (p95)", "slacker ms med (p95)", "o2/slk")]
    for image, e in report["images"].items():
        ov, sk = e.get("overlay2", {}), e.get("slacker", {})
        for metric, label in TIME_METRICS:
            if metric not in ov and metric not in sk:
                continue
            cells = []
            for d in (ov, sk):
                if metric in d:
                    cells.append(f"{_fmt_ms(d[metric])} ({_fmt_ms(d['p95'][metric])})")
                else:
                    cells.append("-")
            rows.append((image, label, cells[0], cells[1],
                         _fmt_ratio(ratio(ov.get(metric), sk.get(metric)))))
        if "read_bytes" in ov or "read_bytes" in sk:
            cells = []
            for d in (ov, sk):
                if "read_bytes" in d:
                    frac = d.get("read_fraction")
                    pct = f" {100 * frac:.1f}%" if frac is not None else ""
                    cells.append(f"{_fmt_bytes(d['read_bytes'])}{pct}")
                else:
                    cells.append("-")
            size = ov.get("image_bytes") or sk.get("image_bytes")
            rows.append((image, f"startup read of {_fmt_bytes(size)}", cells[0], cells[1], ""))
        if "warm_read_bytes" in ov or "warm_read_bytes" in sk:
            rows.append((image, "warm run read", *(_fmt_bytes(d.get("warm_read_bytes")) for d in (ov, sk)), ""))
        for metric, label in COUNT_METRICS:
            if metric in ov or metric in sk:
                rows.append((image, label, *(f"{d[metric]:.0f}" if metric in d else "-" for d in (ov, sk)), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[j]) if j < 2 else c.rjust(widths[j])
                               for j, c in enumerate(r)))
        if i == 0:
            lines.append("-" * len(lines[0]))
    lines.append("")
    lines.append("ratios overlay2/slacker (geometric mean over images; total = sum of medians):")
    for name, _, target in RATIO_METRICS:
        if name not in report["ratios"]:
            continue
        line = f"  {name:<15} {_fmt_ratio(report['ratios'][name]):>7}"
        line += f"  total {_fmt_ratio(report['ratios_total'].get(name)):>7}"
        if name in PAPER:
            line += f"  paper {PAPER[name]}x"
        t = report["targets"].get(name)
        if t:
            line += f"  target >= {_fmt_ratio(t['target'])}: {'MET' if t['met'] else 'NOT MET'}"
        lines.append(line)
    t = report["targets"].get("startup_read_fraction")
    if t:
        lines.append(f"  slacker startup read, worst image: {100 * t['value']:.1f}% of the image"
                     f"  target <= {100 * t['target']:.0f}%: {'MET' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)


PLOT_PANELS = [(m, label) for m, label in TIME_METRICS] + [("read_bytes", "startup read (MiB)")]


def plot_data(report, metric):
    """Rows 'image overlay2 slacker' for one panel (times in ms, bytes in MiB);
    a missing value is '?', which gnuplot skips."""
    rows = []
    for image, e in report["images"].items():
        vals = []
        for d in DRIVERS:
            v = e.get(d, {}).get(metric)
            if v is not None and metric == "read_bytes":
                v = v / (1 << 20)
            # log scale: a zero would vanish; show it at the bottom of the axis.
            vals.append("?" if v is None else f"{max(v, 0.01):.3f}")
        rows.append(f'"{image}" {vals[0]} {vals[1]}')
    return "\n".join(rows) + "\n"


def plot_panels(report):
    """The panels of PLOT_PANELS some image has a value for: bench/lifecycle measures
    other phases than bench/run, and gnuplot fails on a panel without a point."""
    return [(m, label) for m, label in PLOT_PANELS
            if any(e.get(d, {}).get(m) is not None for e in report["images"].values() for d in DRIVERS)]


def gnuplot_script(report, datadir, png, panels=None):
    cols = 2
    if panels is None:
        panels = plot_panels(report)
    n = len(panels)
    nrows = (n + cols - 1) // cols
    title = "slacker vs overlay2 (medians, log scale)"
    meta = report.get("meta", {})
    if meta.get("date"):
        title += f" - {meta['date']}"
    if meta.get("mode"):
        title += f" - {meta['mode']}"
    s = [f"set terminal pngcairo size 1400,{360 * nrows} font 'DejaVu Sans,10'",
         f"set output '{png}'",
         f"set multiplot layout {nrows},{cols} title '{title}'",
         "set style data histograms", "set style histogram clustered gap 1",
         "set style fill solid 0.9 border -1", "set boxwidth 0.9",
         "set logscale y", "set grid ytics", "set key tmargin horizontal",
         "set xtics scale 0", "set yrange [0.5:*]"]
    for metric, label in panels:
        unit = "MiB" if metric == "read_bytes" else "ms"
        s.append(f"set title '{label}'")
        s.append(f"set ylabel '{unit}'")
        if metric == "read_bytes":
            s.append("set yrange [0.01:*]")
        s.append(f"plot '{datadir}/{metric}.dat' using 2:xtic(1) title 'overlay2' lc rgb '#d95f02', "
                 f"'' using 3 title 'slacker' lc rgb '#1b9e77'")
    s.append("unset multiplot")
    return "\n".join(s) + "\n"


def draw_plot(report, outdir, name="latest.png"):
    png = os.path.join(outdir, name)
    if not shutil.which("gnuplot"):
        print("bench: gnuplot missing (apt-get install gnuplot-nox); no plot drawn", file=sys.stderr)
        return None
    if not plot_panels(report):
        print("bench: no phase with a value; no plot drawn", file=sys.stderr)
        return None
    datadir = os.path.join(outdir, "plotdata-" + name[:-len(".png")])
    os.makedirs(datadir, exist_ok=True)
    for metric, _ in plot_panels(report):
        with open(os.path.join(datadir, f"{metric}.dat"), "w") as f:
            f.write(plot_data(report, metric))
    script = os.path.join(datadir, "plot.gp")
    with open(script, "w") as f:
        f.write(gnuplot_script(report, datadir, png))
    subprocess.run(["gnuplot", script], check=True)
    return png


# --- per-call plugin latency from slackerd's metrics ---------------------------

HISTOGRAM = "slacker_request_duration_seconds"


def parse_histograms(text, name=HISTOGRAM):
    """Prometheus text of `GET /metrics` -> {method: [(le_seconds, cumulative count)]}
    for histogram NAME, buckets in ascending order (+Inf as math.inf). Lines of other
    metrics are ignored; a malformed bucket line raises ValueError naming it."""
    out = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        try:
            labels, value = line[len(prefix):].rsplit("} ", 1)
            kv = dict(part.split("=", 1) for part in labels.split(","))
            method = kv["method"].strip('"')
            le = kv["le"].strip('"')
            bound = math.inf if le == "+Inf" else float(le)
            out.setdefault(method, []).append((bound, float(value)))
        except (ValueError, KeyError):
            raise ValueError(f"bad histogram line: {line!r}") from None
    return {m: sorted(b) for m, b in out.items()}


def histogram_delta(before, after):
    """Bucket counts of the requests between two scrapes: after - before, per method.
    A method missing before counts from zero; a counter that went down (the daemon
    restarted) raises ValueError."""
    out = {}
    for method, buckets in after.items():
        prev = dict(before.get(method, []))
        delta = []
        for bound, count in buckets:
            d = count - prev.get(bound, 0.0)
            if d < 0:
                raise ValueError(f"{method}: bucket le={bound} went down ({prev[bound]} -> {count})")
            delta.append((bound, d))
        if delta and delta[-1][1] > 0:
            out[method] = delta
    return out


def histogram_quantile(buckets, q):
    """The q-quantile (0..1) of cumulative buckets [(le, count)], interpolated linearly
    inside the bucket that holds it, as Prometheus' histogram_quantile does; a quantile
    in the +Inf bucket is reported as the largest finite bound."""
    total = buckets[-1][1]
    if total <= 0:
        raise ValueError("quantile of an empty histogram")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def plugin_latency(before_text, after_text):
    """{method: {count, p50_ms, p95_ms, p99_ms}} of the plugin calls between two scrapes."""
    delta = histogram_delta(parse_histograms(before_text), parse_histograms(after_text))
    out = {}
    for method, buckets in sorted(delta.items()):
        out[method] = {"count": int(buckets[-1][1])}
        for label, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            out[method][label] = round(histogram_quantile(buckets, q) * 1000.0, 3)
    return out


def format_plugin_latency(latency, title="plugin calls (slackerd metrics)"):
    lines = [title, f"{'method':<16}{'calls':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"]
    for method, v in latency.items():
        lines.append(f"{method:<16}{v['count']:>8}{v['p50_ms']:>10.1f}{v['p95_ms']:>10.1f}{v['p99_ms']:>10.1f}")
    return "\n".join(lines)


# Keys of latest.json that other scripts write (bench/prefetch: "prefetch"): a new run of
# bench/run keeps them.
KEPT_KEYS = ("prefetch",)

# --- topologies (issue 21 item 3) ----------------------------------------------------

# A topology's entry in latest.json: the keys a report of one run has. The top level of
# latest.json holds the loopback topology's (the format before topologies existed).
TOPOLOGY_KEYS = ("images", "ratios", "ratios_total", "targets", "meta", "plugin_latency",
                 "samples")
TOPOLOGY_ORDER = ("loopback", "lan-10g", "lan-1g", "remote-registry")


def load_results(path):
    """The JSON at path ({} if it is missing or unreadable)."""
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) else {}


def kept_keys(path):
    """The KEPT_KEYS of the JSON at path ({} if it is missing or unreadable)."""
    old = load_results(path)
    return {k: old[k] for k in KEPT_KEYS if k in old}


def merge_topology(old, topology, report):
    """latest.json after a run of TOPOLOGY: OLD's other topologies and KEPT_KEYS kept,
    TOPOLOGY's entry replaced by REPORT's TOPOLOGY_KEYS, and for loopback the top level
    too. A file from before topologies (images at the top, no "topologies") has its top
    level taken as the loopback topology."""
    topologies = dict(old.get("topologies", {}))
    if "topologies" not in old and "images" in old:
        topologies["loopback"] = {k: old[k] for k in TOPOLOGY_KEYS if k in old}
    topologies[topology] = {k: report[k] for k in TOPOLOGY_KEYS if k in report}
    if topology == "loopback":
        doc = dict(report)
    else:
        doc = {k: old[k] for k in TOPOLOGY_KEYS if k in old}
        if "loopback" in topologies:
            doc.update(topologies["loopback"])
    doc.update({k: old[k] for k in KEPT_KEYS if k in old})
    doc["topologies"] = {t: topologies[t] for t in ordered_topologies(topologies)}
    return doc


def ordered_topologies(topologies):
    """Topology names in TOPOLOGY_ORDER, others after them by name."""
    known = [t for t in TOPOLOGY_ORDER if t in topologies]
    return known + sorted(t for t in topologies if t not in TOPOLOGY_ORDER)


# (metric, label) of the cross-topology table and plot.
TOPOLOGY_METRICS = (
    ("push_ms", "push"),
    ("floor_push_ms", "push floor"),
    ("pull_ms", "pull"),
    ("floor_pull_ms", "pull floor"),
    ("run_ms", "run (cold)"),
    ("deploy_ms", "deploy"),
    ("dev_cycle_ms", "dev cycle"),
    ("dev_fresh_cycle_ms", "dev cycle, fresh"),
    ("big_dev_cycle_ms", "big-change dev cycle"),
)


def _link_label(entry):
    topo = entry.get("meta", {}).get("topology", {})
    parts = []
    for side in ("registry", "store"):
        link = topo.get(side, {})
        if "rtt_measured_ms" in link:
            parts.append(f"{side} {link['rate']} {link['rtt_measured_ms']:.2f}ms")
    return ", ".join(parts) or "loopback"


def format_topologies(doc):
    """Per image and phase, per topology: overlay2 / slacker medians (ratio), and
    slacker's multiple of its floor."""
    topologies = doc.get("topologies", {})
    names = ordered_topologies(topologies)
    lines = ["topologies (medians ms, overlay2 / slacker, o2/slk; slacker x its floor):"]
    for t in names:
        e = topologies[t]
        meta = e.get("meta", {})
        lines.append(f"  {t}: {_link_label(e)}; {meta.get('date', '?')}, reps {meta.get('reps', '?')}")
    images = []
    for t in names:
        images += [i for i in topologies[t].get("images", {}) if i not in images]
    rows = [("image", "phase", *names)]
    for image in images:
        for metric, label in TOPOLOGY_METRICS:
            cells = []
            for t in names:
                e = topologies[t].get("images", {}).get(image, {})
                ov, sk = e.get("overlay2", {}).get(metric), e.get("slacker", {}).get(metric)
                if ov is None and sk is None:
                    cells.append("-")
                    continue
                cell = f"{_fmt_ms(ov)} / {_fmt_ms(sk)} ({_fmt_ratio(ratio(ov, sk))})"
                mult = e.get("slacker", {}).get("floor_multiple", {}).get(metric)
                if mult is not None:
                    cell += f" {mult:.1f}xF"
                cells.append(cell)
            if any(c != "-" for c in cells):
                rows.append((image, label, *cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[j]) for j, c in enumerate(r)))
        if i == 0:
            lines.append("-" * len(lines[-1]))
    return "\n".join(lines)


def topology_plot_data(doc, metric):
    """Rows '"TOPOLOGY[/IMAGE]" overlay2 slacker' of one phase (ms), topologies in
    order; '?' for a missing value (gnuplot skips it). The image is named only when
    there is more than one."""
    topologies = doc.get("topologies", {})
    images = []
    for t in ordered_topologies(topologies):
        images += [i for i in topologies[t].get("images", {}) if i not in images]
    rows = []
    for t in ordered_topologies(topologies):
        for image in images:
            e = topologies[t].get("images", {}).get(image)
            if e is None:
                continue
            vals = []
            for d in DRIVERS:
                v = e.get(d, {}).get(metric)
                vals.append("?" if v is None else f"{max(v, 0.01):.3f}")
            label = t if len(images) == 1 else f"{t}/{image}"
            rows.append(f'"{label}" {vals[0]} {vals[1]}')
    return "\n".join(rows) + "\n"


def draw_topology_plot(doc, outdir):
    """OUTDIR/latest-topologies.png: per phase of TOPOLOGY_METRICS, overlay2 and
    slacker side by side for every topology (log scale)."""
    if not shutil.which("gnuplot") or len(doc.get("topologies", {})) == 0:
        return None
    panels = [(m, label) for m, label in TOPOLOGY_METRICS
              if topology_plot_data(doc, m).count("?") < 2 * len(topology_plot_data(doc, m).splitlines())]
    if not panels:
        return None
    datadir = os.path.join(outdir, "plotdata-topologies")
    os.makedirs(datadir, exist_ok=True)
    for metric, _ in panels:
        with open(os.path.join(datadir, f"{metric}.dat"), "w") as f:
            f.write(topology_plot_data(doc, metric))
    png = os.path.join(outdir, "latest-topologies.png")
    script = gnuplot_script({"images": {}, "meta": {"date": "per topology"}}, datadir, png, panels)
    path = os.path.join(datadir, "plot.gp")
    with open(path, "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", path], check=True)
    return png


def _write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


# bench/run's store-calls-TOPOLOGY.jsonl: the store link's counters at the bounds of the
# phases it counts (labels "IMAGE DRIVER rep N create-before", ...): the NFS calls of
# each phase by procedure.
CALL_PHASES = (("create", "create-before", "create-after=start-before"),
               ("cold start", "create-after=start-before", "start-after"),
               ("warm run", "warm-before", "warm-after"),
               ("one-file commit", "commit-before", "commit-after"))


def nfs_procedures(lines, port="2049"):
    """{"IMAGE DRIVER rep N": {phase: {procedure: calls}}} from store-calls JSON lines."""
    snaps = {}
    for line in lines:
        if line.strip():
            d = json.loads(line)
            key, label = d["label"].rsplit(" ", 1)
            snaps.setdefault(key, {})[label] = d["counters"]["ports"].get(port, {}).get("procedures", {})
    out = {}
    for key, s in snaps.items():
        for phase, a, b in CALL_PHASES:
            if a in s and b in s:
                delta = {p: n - s[a].get(p, 0) for p, n in s[b].items() if n - s[a].get(p, 0)}
                out.setdefault(key, {})[phase] = dict(sorted(delta.items(), key=lambda kv: -kv[1]))
    return out


def main(argv):
    args = list(argv[1:])
    topology = "loopback"
    if "--topology" in args:
        i = args.index("--topology")
        if i + 1 >= len(args):
            args = []
        else:
            topology = args[i + 1]
            del args[i:i + 2]
    if len(args) == 2 and args[0] == "topologies":
        doc = load_results(os.path.join(args[1], "latest.json"))
        print(format_topologies(doc))
        png = draw_topology_plot(doc, args[1])
        print(f"\nwrote {png}" if png else "")
        return 0
    if len(args) == 2 and args[0] == "calls":
        with open(args[1]) as f:
            for key, phases in nfs_procedures(f).items():
                for phase, procs in phases.items():
                    print(f"{key:<24} {phase:<16} {sum(procs.values()):>5}  "
                          + " ".join(f"{p} {n}" for p, n in procs.items()))
        return 0
    if len(args) < 3 or args[0] != "report":
        print("usage: benchlib.py report SAMPLES.tsv OUTDIR [META_JSON] [--topology NAME]\n"
              "       benchlib.py topologies OUTDIR\n"
              "       benchlib.py calls OUTDIR/store-calls-TOPOLOGY.jsonl", file=sys.stderr)
        return 2
    with open(args[1]) as f:
        samples = parse_samples(f)
    meta = json.loads(args[3]) if len(args) > 3 else None
    report = build_report(samples, meta)
    report["samples"] = samples
    # Optional: per-driver scrapes of slackerd's metrics before and after the run,
    # as META's "plugin_metrics": {"WORKER": [BEFORE_FILE, AFTER_FILE], ...}.
    for worker, (before, after) in sorted((meta or {}).pop("plugin_metrics", {}).items()):
        with open(before) as b, open(after) as a:
            report.setdefault("plugin_latency", {})[worker] = plugin_latency(b.read(), a.read())
    outdir = args[2]
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "latest.json")
    doc = merge_topology(load_results(path), topology, report)
    _write_json(path, doc)
    print(format_table(report))
    for worker, latency in report.get("plugin_latency", {}).items():
        print()
        print(format_plugin_latency(latency, f"plugin calls on {worker} (slackerd metrics)"))
    png = draw_plot(report, outdir, "latest.png" if topology == "loopback" else f"latest-{topology}.png")
    print()
    print(format_topologies(doc))
    tpng = draw_topology_plot(doc, outdir)
    print(f"\nwrote {path}" + "".join(f" and {p}" for p in (png, tpng) if p))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
