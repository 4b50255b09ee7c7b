"""The prefetch benchmark's report (bench/prefetch, issue 20): medians of its samples,
the speed-up the start-up trace gives, the published figures beside them, and the
`prefetch` key of bench/results/latest.json (the rest of that file is bench/run's and is
kept as it is).

    python3 bench/prefetchlib.py SAMPLES.tsv LATEST.json [META_JSON]

SAMPLES lines: IMAGE<TAB>RTT_MS<TAB>CONDITION<TAB>METRIC<TAB>REP<TAB>VALUE, CONDITION one
of CONDITIONS (RTT_MS is the delay the proxy was set to; "link"/"rtt_ms" is what it gave). Pure functions are unit-tested by bench/test_prefetchlib.py.
"""

import json
import os
import sys

from benchlib import median

CONDITIONS = ("slacker", "slacker+trace", "overlay2", "link")
METRICS = ("run_ms", "read_bytes", "rtt_ms")  # rtt_ms: of "link", the measured round trip

# What the seeds (shared/seeds/001*, 002*) publish, quoted beside our figures.
PUBLISHED = {
    "dadi_trace_prefetch": {
        "source": "Alibaba DADI / overlaybd (USENIX ATC'20; open-source announcement 2021-04)",
        "claim": "recording a container's I/O after start and replaying it as prefetch at later "
        "starts of the same image cuts cold start time by more than half again",
        "cold_start_reduction": ">50%",
        "other": "pull+start 5x faster than plain images, p99 17x; FaaS container start -50% to -80%",
    },
    "estargz_prioritized_files": {
        "source": "eStargz (containerd/stargz-snapshotter), seed 002",
        "claim": "files needed at start are put in a prioritized zone of the layer and fetched "
        "first, which recovers the run-time cost of lazy pulling",
        "figures": "published as a chart only (no numbers in the text of the seed)",
    },
}


def parse_samples(lines):
    """Rows of SAMPLES -> {(image, rtt, condition, metric): [values by rep]}."""
    out = {}
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 6:
            raise ValueError(f"line {n}: want 6 tab-separated fields, got {len(parts)}")
        image, rtt, cond, metric, rep, value = parts
        if cond not in CONDITIONS or metric not in METRICS:
            raise ValueError(f"line {n}: unknown condition {cond!r} or metric {metric!r}")
        float(rtt)
        out.setdefault((image, rtt, cond, metric), []).append((int(rep), float(value)))
    return {k: [v for _, v in sorted(vs)] for k, vs in out.items()}


def build_report(samples, meta=None):
    """The `prefetch` object: per image, per RTT, per condition the medians and n, and
    the trace's speed-up (run_ms without / with) and read ratio (bytes with / without)."""
    images = {}
    for (image, rtt, cond, metric), values in sorted(samples.items()):
        c = images.setdefault(image, {}).setdefault(f"rtt_{rtt}ms", {}).setdefault(cond, {})
        c[metric] = median(values)
        c["n"] = len(values)
    for rtts in images.values():
        for r in rtts.values():
            without, with_trace = r.get("slacker", {}), r.get("slacker+trace", {})
            if without.get("run_ms") and with_trace.get("run_ms"):
                r["trace_speedup"] = round(without["run_ms"] / with_trace["run_ms"], 3)
            if without.get("read_bytes") and "read_bytes" in with_trace:
                r["trace_read_ratio"] = round(with_trace["read_bytes"] / without["read_bytes"], 3)
            if r.get("overlay2", {}).get("run_ms") and with_trace.get("run_ms"):
                r["trace_vs_overlay2"] = round(with_trace["run_ms"] / r["overlay2"]["run_ms"], 3)
    return {"meta": meta or {}, "images": images, "published": PUBLISHED}


def format_table(report):
    rows = [f"{'image':8} {'RTT':>6} {'condition':14} {'run ms':>8} {'read':>10} {'n':>3}"]
    for image, rtts in report["images"].items():
        for rtt, r in rtts.items():
            if "link" in r:
                rows.append(f"{image:8} {rtt[4:]:>6} measured round trip {r['link']['rtt_ms']:.2f} ms")
            for cond in CONDITIONS[:3]:
                c = r.get(cond)
                if not c:
                    continue
                read = c.get("read_bytes", 0) / (1 << 20)
                rows.append(f"{image:8} {rtt[4:]:>6} {cond:14} {c.get('run_ms', 0):8.0f} "
                            f"{read:8.1f}Mi {c.get('n', 0):3}")
            if "trace_speedup" in r:
                rows.append(f"{'':8} {'':6} trace speed-up {r['trace_speedup']:.2f}x, "
                            f"bytes read with/without {r.get('trace_read_ratio', 0):.2f}")
    return "\n".join(rows)


def merge_into(latest_path, prefetch):
    """Writes `prefetch` as the `prefetch` key of the JSON at latest_path (created if
    missing), keeping every other key; atomically."""
    data = {}
    if os.path.exists(latest_path):
        with open(latest_path) as f:
            data = json.load(f)
    data["prefetch"] = prefetch
    tmp = latest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, latest_path)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        samples = parse_samples(f)
    report = build_report(samples, json.loads(argv[3]) if len(argv) > 3 else None)
    merge_into(argv[2], report)
    print(format_table(report))
    print(f"\nwrote the prefetch key of {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
