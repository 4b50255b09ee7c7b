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
truncate -s 32G "$W/store.img"
mkfs.xfs -q -m reflink=1 -s size=4096 "$W/store.img"
mkdir -p "$W/store"
mount -o loop,noatime "$W/store.img" "$W/store"
e2e_defer umount "$W/store"
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

# overlay2: import, push, pull on the other worker, run.
dk o1 import "$tarball" "$REG/deb:std" >/dev/null
b0=$(reg_bytes)
timed overlay2_push dk o1 push "$REG/deb:std" >>"$results"
echo "overlay2_registry_bytes $(($(reg_bytes) - b0))" >>"$results"
timed overlay2_pull dk o2 pull "$REG/deb:std" >>"$results"
timed overlay2_run dk o2 run --rm --network none "$REG/deb:std" true >>"$results"
dk o2 run --name dev --network none "$REG/deb:std" sh -c 'echo change > /etc/dev-cycle' >/dev/null
dk o2 commit dev "$REG/deb:dev" >/dev/null
b0=$(reg_bytes)
timed overlay2_dev_push dk o2 push "$REG/deb:dev" >>"$results"
echo "overlay2_dev_registry_bytes $(($(reg_bytes) - b0))" >>"$results"
timed overlay2_dev_pull dk o1 pull "$REG/deb:dev" >>"$results"

# slacker: import, convert to references, push, pull on the other worker, run.
dk s1 import "$tarball" deb:std >/dev/null
timed slacker_convert "$SLACKERCTL" --state "$(slackerd_state "$S1")" --store "$W/store" --host-id "$S1" \
  --docker-host "unix://$W/s1/docker.sock" convert deb:std "$REG/deb:ref" >>"$results"
b0=$(reg_bytes)
timed slacker_push dk s1 push "$REG/deb:ref" >>"$results"
echo "slacker_registry_bytes $(($(reg_bytes) - b0))" >>"$results"
timed slacker_pull dk s2 pull "$REG/deb:ref" >>"$results"
timed slacker_run dk s2 run --rm --network none "$REG/deb:ref" true >>"$results"
dk s2 run --name dev --network none "$REG/deb:ref" sh -c 'echo change > /etc/dev-cycle' >/dev/null
dk s2 commit dev "$REG/deb:sdev" >/dev/null
b0=$(reg_bytes)
timed slacker_dev_push dk s2 push "$REG/deb:sdev" >>"$results"
echo "slacker_dev_registry_bytes $(($(reg_bytes) - b0))" >>"$results"
timed slacker_dev_pull dk s1 pull "$REG/deb:sdev" >>"$results"
out=$(dk s1 run --rm --network none "$REG/deb:sdev" cat /etc/dev-cycle)
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
