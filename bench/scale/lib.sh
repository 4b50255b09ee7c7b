# shellcheck shell=bash
# The scale model's fixture (bench/scale/README.md): one private slacker-storaged on a
# private XFS (reflink=1) store, and one image snapshot to clone from, made the way the
# e2e tests make theirs (test/e2e/lib.sh: everything under $W, stopped by PID, the
# store unmounted and its loop device detached by the cleanup trap, ^C included).
#
#   . bench/scale/lib.sh
#   scale_fixture            # sets W, SCALE_URL, SCALE_TOKEN, SCALE_STORE, SCALE_SNAPSHOT
#   "$SCALE_LOAD" --url "$SCALE_URL" --token-file "$SCALE_TOKEN" --store "$SCALE_STORE" ...
#
# Environment: STORAGED, SCALE_LOAD (binaries; default $REPO/build/...), SCALE_SEED_TAR
# (the image's root file system, default bench/run's cached minbase.tar, else a tree of
# /usr/lib/python3.11), SCALE_STORE_SIZE (default 8G), SCALE_STORE_MEDIUM (disk or ram,
# below; the scripts' --store-medium).

SCALE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/e2e/lib.sh
. "$SCALE_DIR/../../test/e2e/lib.sh"
STORAGED=${STORAGED:-$REPO/build/storaged/slacker-storaged}
SCALE_LOAD=${SCALE_LOAD:-$REPO/build/bench/scale/slacker-scale-load}
SCALE_SEED_TAR=${SCALE_SEED_TAR:-/var/tmp/slacker-bench-cache/minbase.tar}

scale_require() {
  local b
  for b in "$STORAGED" "$SCALE_LOAD"; do
    [ -x "$b" ] || {
      echo "scale: $b not built (cmake --build build --target slacker-storaged slacker-scale-load)" >&2
      exit 2
    }
  done
  for b in mkfs.xfs mkfs.ext4 curl python3; do
    command -v "$b" >/dev/null || {
      echo "scale: $b missing" >&2
      exit 2
    }
  done
}

# The image: an ext4 file system (1 GiB, sparse) holding the seed tree, as a layer's
# volume on the store; then published as a snapshot through the service.
_scale_seed_volume() {
  local vol=$1 tree=$W/seed-root
  mkdir -p "$tree"
  if [ -f "$SCALE_SEED_TAR" ]; then
    tar -C "$tree" --numeric-owner -xf "$SCALE_SEED_TAR"
    SCALE_SEED_DESC="ext4 of $(basename "$SCALE_SEED_TAR") ($(du -sm "$tree" | cut -f1) MiB)"
  else
    cp -a /usr/lib/python3.11 "$tree/"
    SCALE_SEED_DESC="ext4 of /usr/lib/python3.11 ($(du -sm "$tree" | cut -f1) MiB)"
  fi
  truncate -s 1G "$vol"
  mkfs.ext4 -q -F -d "$tree" "$vol"
  chmod 0600 "$vol"
  rm -rf "$tree"
}

# The store: XFS reflink=1 on a loop device over a sparse image, on the VM's disk
# (SCALE_STORE_MEDIUM=disk, make_shared_store, as the e2e tests) or in RAM (=ram: the
# image in /dev/shm, so an fsync costs a memory copy instead of a host fsync on a disk
# other jobs share; the loop device is attached and detached here by its name).
_scale_make_store() {
  local dir=$1 size=${SCALE_STORE_SIZE:-8G} shm dev
  case "${SCALE_STORE_MEDIUM:-disk}" in
  disk)
    make_shared_store "$dir" "$size"
    SCALE_STORE_DESC="XFS reflink=1 on a loop device over a sparse image on the VM's disk"
    ;;
  ram)
    shm=$(mktemp -d /dev/shm/slacker-scale.XXXXXX)
    e2e_defer rm -rf "$shm"
    truncate -s "$size" "$shm/store.img"
    mkfs.xfs -q -m reflink=1 -s size=4096 "$shm/store.img"
    dev=$(losetup -f --show "$shm/store.img")
    e2e_defer losetup -d "$dev"
    mkdir -p "$dir"
    mount -o noatime "$dev" "$dir"
    e2e_defer umount "$dir"
    SCALE_STORE_DESC="XFS reflink=1 on a loop device over a sparse image in /dev/shm (RAM)"
    ;;
  *) echo "scale: SCALE_STORE_MEDIUM must be disk or ram" >&2; exit 2 ;;
  esac
}

scale_fixture() {
  scale_require
  e2e_workdir
  SCALE_STORE=$W/store
  _scale_make_store "$SCALE_STORE"
  SCALE_TOKEN=$W/token
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SCALE_TOKEN"
  chmod 0600 "$SCALE_TOKEN"
  local port=$((20000 + $$ % 20000))
  e2e_spawn storaged "$W/storaged.log" "$STORAGED" --listen "127.0.0.1:$port" --root "$SCALE_STORE" \
    --token-file "$SCALE_TOKEN" --max-connections 256
  e2e_defer e2e_stop storaged slacker-storaged 20
  e2e_wait_for storaged "$E2E_SPAWNED_PID" "$W/storaged.log" \
    curl -fsS -H "Authorization: Bearer $(cat "$SCALE_TOKEN")" "http://127.0.0.1:$port/v1/store"
  SCALE_URL=http://127.0.0.1:$port
  mkdir -p "$SCALE_STORE/volumes/scale-seed"
  chmod 0700 "$SCALE_STORE/volumes" "$SCALE_STORE/volumes/scale-seed"
  _scale_seed_volume "$SCALE_STORE/volumes/scale-seed/base.img"
  SCALE_SNAPSHOT=$("$SCALE_LOAD" --url "$SCALE_URL" --token-file "$SCALE_TOKEN" --store "$SCALE_STORE" \
    --mode publish --host scale-seed --layer base)
  e2e_log "storaged at $SCALE_URL (pid $E2E_SPAWNED_PID), store $SCALE_STORE, snapshot $SCALE_SNAPSHOT: $SCALE_SEED_DESC"
}

# scale_load ARGS...: the load client against the fixture.
scale_load() {
  "$SCALE_LOAD" --url "$SCALE_URL" --token-file "$SCALE_TOKEN" --store "$SCALE_STORE" "$@"
}

# scale_together N HOST_PREFIX OUT_PREFIX ARGS...: N load-client processes (one client
# each, host ids HOST_PREFIX<i>, reports OUT_PREFIX<i>.json) making starts with ARGS
# (--count K or --duration S), all beginning at the same instant once all are set up
# (--start-at, 2 s ahead). Waits for all; fails if any failed.
scale_together() {
  local n=$1 host=$2 out=$3 at i pids=() failed=0
  shift 3
  at=$(($(date +%s%3N) + 2000))
  for ((i = 0; i < n; i++)); do
    scale_load --mode start --snapshot "$SCALE_SNAPSHOT" --clients 1 --start-at "$at" \
      --host-prefix "$host$i" --out "$out$i.json" "$@" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  return "$failed"
}

# The machine, for the results' "meta".
scale_meta_json() {
  python3 - "$REPO" "$SCALE_SEED_DESC" "$SCALE_STORE_DESC" <<'EOF'
import json, os, platform, subprocess, sys, time
commit = subprocess.run(["git", "-C", sys.argv[1], "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
                  "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()[0], "commit": commit,
                  "store": sys.argv[3] + "; storaged and clients on loopback",
                  "image": sys.argv[2]}))
EOF
}

# scale_combine RUNS_DIR OUT META_JSON SECONDS: the load client's reports <mode>-<N>.json
# in RUNS_DIR as one measured.json (the model's input): per mode, the runs by N; the
# samples of each call kept for N=1 only (the model's service-time distribution).
scale_combine() {
  mkdir -p "$(dirname "$2")"
  python3 - "$@" <<'EOF'
import json, os, sys
runs_dir, out, meta, seconds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
result = {"meta": dict(meta, seconds_per_run=seconds,
                       client="build/bench/scale/slacker-scale-load (C++, storage_backend's rest backend)"),
          "start": [], "commit": []}
names = [n for n in os.listdir(runs_dir) if n.endswith(".json")]
for name in sorted(names, key=lambda n: (n.split("-")[0], int(n.split("-")[1].split(".")[0]), n)):
    r = json.load(open(os.path.join(runs_dir, name)))
    for c in r["calls"].values():
        if r["clients"] == 1:
            c["samples_ms"] = [round(x, 3) for x in c["samples_ms"]]
        else:
            c.pop("samples_ms", None)
    r.pop("per_client", None)
    result[r["mode"]].append(r)
with open(out, "w") as f:
    json.dump(result, f, indent=1, sort_keys=True)
    f.write("\n")
print("wrote", out)
EOF
}

# scale_merge OUT REPORT...: the reports of several load-client processes that ran at the
# same time (one client each, --duration) as one report of that many clients: sequences
# and operations summed over the common window, latencies pooled.
scale_merge() {
  python3 - "$@" <<'EOF'
import json, sys
out, reports = sys.argv[1], [json.load(open(f)) for f in sys.argv[2:]]
m = dict(reports[0])
m["clients"] = sum(r["clients"] for r in reports)
for k in ("sequences", "sequences_in_window", "errors"):
    m[k] = sum(r[k] for r in reports)
m["window_s"] = max(r["window_s"] for r in reports)
m["wall_s"] = max(r["wall_s"] for r in reports)
m["sequences_per_s"] = m["sequences_in_window"] / m["window_s"]
m["storaged_ops_per_s"] = m["sequences_per_s"] * m["storaged_calls_per_sequence"]
m["first_error"] = next((r["first_error"] for r in reports if r["first_error"]), "")
calls = {}
for name in {c for r in reports for c in r["calls"]}:
    parts = [r["calls"][name] for r in reports if name in r["calls"]]
    n = sum(p["n"] for p in parts)
    samples = sorted(x for p in parts for x in p.get("samples_ms", []))
    pct = lambda q: samples[min(len(samples) - 1, int(q / 100 * (len(samples) - 1) + 0.5))] if samples else 0
    calls[name] = {"n": n, "mean_ms": sum(p["mean_ms"] * p["n"] for p in parts) / n if n else 0,
                   "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "samples_ms": samples}
m["calls"] = calls
m["processes"] = len(reports)
m.pop("per_client", None)
json.dump(m, open(out, "w"), indent=1)
EOF
}
