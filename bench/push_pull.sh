#!/usr/bin/env bash
# Push and pull of a Debian minbase image (~120 MB, debootstrap) on overlay2 vs slacker,
# in one run, through one stock registry, two workers per driver (worker 1 pushes,
# worker 2 pulls and runs). slacker's workers share one store; its image is first
# converted to an all-reference image (slackerctl convert), and a one-file commit
# (the dev cycle) is pushed and pulled too. Prints times and registry bytes.
#   bench/push_pull.sh [ROOTFS_TAR]   (default: debootstrap, cached in /var/tmp/slacker-bench-cache)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../test/e2e/lib.sh"
SLACKERCTL=${SLACKERCTL:-$REPO/build/ctl/slackerctl}
cache=/var/tmp/slacker-bench-cache
tarball=${1:-$cache/minbase.tar}
if [ ! -f "$tarball" ]; then
  mkdir -p "$cache"
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
  debootstrap --variant=minbase bookworm "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log"
  rm -rf "$cache"/rootfs/var/cache/apt/archives/*.deb "$cache"/rootfs/var/lib/apt/lists/*
  tar -C "$cache/rootfs" -cf "$tarball" .
fi
e2e_workdir
make_shared_store "$W/store" 32G
S1=slk$$p
S2=slk$$q
start_slackerd "$S1" --store "$W/store" >/dev/null
start_slackerd "$S2" --store "$W/store" >/dev/null
REG=$(start_registry)
start_dockerd o1 overlay2 --insecure-registry "$REG"
start_dockerd o2 overlay2 --insecure-registry "$REG"
start_dockerd s1 "$S1" --insecure-registry "$REG"
start_dockerd s2 "$S2" --insecure-registry "$REG"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
reg_bytes() { if [ -d "$W/registry" ]; then du -sb "$W/registry" | cut -f1; else echo 0; fi; }
# timed NAME CMD...: runs CMD, prints "NAME ms"
timed() {
  local name=$1 t0 t1
  shift
  t0=$(now_ms)
  "$@" >/dev/null
  t1=$(now_ms)
  echo "$name $((t1 - t0))"
}
results=$W/results
: >"$results"

# measure PREFIX W1 W2 IMAGE: push IMAGE from W1, pull and run it on W2, then the dev
# cycle (a one-file commit on W2, pushed, pulled back on W1). Appends to $results.
measure() {
  local p=$1 w1=$2 w2=$3 image=$4 b0
  b0=$(reg_bytes)
  timed "${p}_push" dk "$w1" push "$image" >>"$results"
  echo "${p}_registry_bytes $(($(reg_bytes) - b0))" >>"$results"
  timed "${p}_pull" dk "$w2" pull "$image" >>"$results"
  timed "${p}_run" dk "$w2" run --rm --network none "$image" true >>"$results"
  dk "$w2" run --name dev --network none "$image" sh -c 'echo change > /etc/dev-cycle' >/dev/null
  dk "$w2" commit dev "$image-dev" >/dev/null
  b0=$(reg_bytes)
  timed "${p}_dev_push" dk "$w2" push "$image-dev" >>"$results"
  echo "${p}_dev_registry_bytes $(($(reg_bytes) - b0))" >>"$results"
  timed "${p}_dev_pull" dk "$w1" pull "$image-dev" >>"$results"
}

dk o1 import "$tarball" "$REG/deb:std" >/dev/null
measure overlay2 o1 o2 "$REG/deb:std"
# slacker: the imported image is converted to references first (O(1) pulls anywhere).
dk s1 import "$tarball" deb:std >/dev/null
timed slacker_convert "$SLACKERCTL" --state "$(slackerd_state "$S1")" --store "$W/store" --host-id "$S1" \
  --docker-host "unix://$W/s1/docker.sock" convert deb:std "$REG/deb:ref" >>"$results"
measure slacker s1 s2 "$REG/deb:ref"
out=$(dk s1 run --rm --network none "$REG/deb:ref-dev" cat /etc/dev-cycle)
[ "$out" = change ] || fail "dev-cycle image content on worker 1: $out"

echo "image: $(du -b "$tarball" | cut -f1) bytes uncompressed tar"
python3 - "$results" <<'PY'
import sys
r = dict(l.split() for l in open(sys.argv[1]))
r = {k: int(v) for k, v in r.items()}
print(f"{'phase':<22}{'overlay2':>14}{'slacker':>14}{'ratio o/s':>11}")
for k, unit in [("push", "ms"), ("registry_bytes", "B"), ("pull", "ms"), ("run", "ms"),
                ("dev_push", "ms"), ("dev_registry_bytes", "B"), ("dev_pull", "ms")]:
    o, s = r[f"overlay2_{k}"], r[f"slacker_{k}"]
    print(f"{k + ' (' + unit + ')':<22}{o:>14}{s:>14}{o / max(s, 1):>11.1f}")
print(f"{'slacker convert (ms)':<22}{'':>14}{r['slacker_convert']:>14}")
PY
