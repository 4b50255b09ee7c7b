"""The results JSON and the table of bench/run_cri.sh (CRI pull + start-to-ready).

bench/run_cri.sh appends one line per sample to a TSV file:
    IMAGE CONFIG NODE REP PULL_MS SANDBOX_MS CREATE_MS START_MS READY_MS UNPACKED RESOLVED
(tab-separated; READY counts from the start of the pull; UNPACKED and RESOLVED are the
layers the node's slacker snapshotter unpacked from standard tars and the reference
layers it resolved during the sample, "-" on overlayfs) and
one line per image to a second file:
    IMAGE KIND REFERENCE_LAYER_BYTES STANDARD_LAYER_BYTES
`python3 bench/crilib.py report SAMPLES IMAGES OUT.json [--reps N] [--fat-mib M]
[--conditions TEXT] [--failures FILE]` writes OUT.json and prints the table (markdown). Medians and p95
are benchlib's; ratios are overlayfs's median / the slacker configuration's median in
the same run (above 1: slacker is faster). Unit tests: bench/test_crilib.py.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import median, percentile, ratio, tsv_rows  # noqa: E402

# Configurations in table order: (name, what the table calls it).
CONFIGS = (
    ("overlayfs", "overlayfs, standard image"),
    ("slk-std-first", "slacker, standard image, first on the store (unpack)"),
    ("slk-std", "slacker, standard image, the store has it"),
    ("slk-ref", "slacker, slacker-pushed image (references), first on the store"),
)
BASELINE = "overlayfs"
# Per-sample times, in the samples file's column order.
TIMES = ("pull_ms", "sandbox_ms", "create_ms", "start_ms", "ready_ms")


def parse_samples(lines):
    """TSV lines -> list of sample dicts (image, config, node, rep, the TIMES, unpacked
    and resolved: int or None, start_to_ready_ms = ready - pull). A malformed line raises ValueError
    naming it."""
    out = []
    known = {c for c, _ in CONFIGS}
    for i, line, parts in tsv_rows(lines, 11):
        image, config, node, rep = parts[:4]
        if config not in known:
            raise ValueError(f"samples line {i}: unknown configuration {config!r}")
        try:
            s = {"image": image, "config": config, "node": node, "rep": int(rep)}
            for name, v in zip(TIMES, parts[4:9]):
                s[name] = int(v)
            for name, v in (("unpacked", parts[9]), ("resolved", parts[10])):
                s[name] = None if v == "-" else int(v)
        except ValueError:
            raise ValueError(f"samples line {i}: a field is not a number: {line!r}") from None
        s["start_to_ready_ms"] = s["ready_ms"] - s["pull_ms"]
        out.append(s)
    return out


def parse_images(lines):
    """IMAGE KIND REF_BYTES STD_BYTES lines -> {image: {kind, registry_layer_bytes}}."""
    out = {}
    for i, line in enumerate(lines, 1):
        parts = line.rstrip("\n").split("\t")
        if parts == [""]:
            continue
        if len(parts) != 4:
            raise ValueError(f"images line {i}: expected 4 tab-separated fields: {line!r}")
        out[parts[0]] = {"kind": parts[1],
                         "registry_layer_bytes": {"reference": int(parts[2]), "standard": int(parts[3])}}
    return out


def summarize(values):
    return {"median": median(values), "p95": percentile(values, 95), "n": len(values)}


def build_report(samples, images, meta=None):
    """{meta..., images: {IMAGE: {kind, registry_layer_bytes, configs: {CONFIG: {n, node,
    METRIC: {median, p95, n}, unpacked: [...]}}, ratios: {CONFIG: {METRIC: x}}}}, order}.
    Images and configurations appear in the order of the samples."""
    report = dict(meta or {})
    report["images"] = {}
    metrics = TIMES + ("start_to_ready_ms",)
    for s in samples:
        img = report["images"].setdefault(s["image"], dict(images.get(s["image"], {})))
        cfg = img.setdefault("configs", {}).setdefault(s["config"], {"node": s["node"], "_s": []})
        cfg["_s"].append(s)
    for img in report["images"].values():
        for cfg in img["configs"].values():
            ss = cfg.pop("_s")
            cfg["n"] = len(ss)
            for m in metrics:
                cfg[m] = summarize([s[m] for s in ss])
            cfg["unpacked"] = [s["unpacked"] for s in ss]
            cfg["resolved"] = [s["resolved"] for s in ss]
        base = img["configs"].get(BASELINE)
        img["ratios"] = {}
        for name, cfg in img["configs"].items():
            if name == BASELINE or base is None:
                continue
            img["ratios"][name] = {m: ratio(base[m]["median"], cfg[m]["median"])
                                   for m in ("pull_ms", "start_to_ready_ms", "ready_ms")}
    return report


def _ms(v):
    return f"{v:.0f}"


def _x(r):
    return "-" if r is None else f"{r:.2f}x"


def format_table(report):
    """Markdown: one row per image and configuration; ratios = overlayfs / this."""
    rows = ["| image | configuration | n | pull median | pull p95 | start median | ready median "
            "| ready p95 | ready ratio | pull ratio | start ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, img in report["images"].items():
        for cfg_name, label in CONFIGS:
            cfg = img["configs"].get(cfg_name)
            if cfg is None:
                continue
            r = img["ratios"].get(cfg_name, {})
            rows.append(
                f"| {name} | {label} | {cfg['n']} | {_ms(cfg['pull_ms']['median'])} | "
                f"{_ms(cfg['pull_ms']['p95'])} | {_ms(cfg['start_to_ready_ms']['median'])} | "
                f"{_ms(cfg['ready_ms']['median'])} | {_ms(cfg['ready_ms']['p95'])} | "
                f"{_x(r.get('ready_ms'))} | {_x(r.get('pull_ms'))} | {_x(r.get('start_to_ready_ms'))} |")
    return "\n".join(rows)


def main(argv):
    p = argparse.ArgumentParser(prog="crilib.py")
    p.add_argument("command", choices=["report"])
    p.add_argument("samples")
    p.add_argument("images")
    p.add_argument("out")
    p.add_argument("--reps", type=int)
    p.add_argument("--fat-mib", type=int)
    p.add_argument("--conditions", default="")
    p.add_argument("--failures", help="IMAGE CONFIG NODE REP lines: samples that failed once (retried)")
    a = p.parse_args(argv[1:])
    with open(a.samples) as f:
        samples = parse_samples(f)
    with open(a.images) as f:
        images = parse_images(f)
    meta = {"reps": a.reps, "fat_mib": a.fat_mib, "conditions": a.conditions,
            "ratio": "overlayfs median / this configuration's median (above 1: slacker faster)"}
    report = build_report(samples, images, meta)
    report["samples"] = samples
    report["failed_once"] = []
    if a.failures:
        with open(a.failures) as f:
            report["failed_once"] = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, a.out)
    print(f"CRI pull + start-to-ready (ms; start = ready - pull), {a.conditions}")
    print(format_table(report))
    for fl in report["failed_once"]:
        print("failed once, then measured again: " + " ".join(fl))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
