#!/usr/bin/env bash
# CRI pull + start-to-ready (issue 19): what kubelet waits for when a pod lands on a node,
# slacker against containerd's overlayfs snapshotter in the same run.
#
#   sudo bench/run_cri.sh [REPS]        (default 5; build slackerd, slacker-snapshotter,
#                                        slacker-cri and slackerctl first)
#
# One private registry, one slacker dockerd worker on a shared reflink store (it builds the
# images), and three private containerd 1.6 with CRI (test/e2e/cri_lib.sh): s1 and s2 on
# slacker (own snapshotters, the same store), o1 on overlayfs. Images:
#   fat:1  a standard image: busybox + FAT_MIB MiB of random data in one layer (imported)
#   app:v1 the same data committed and pushed by the slacker worker: a reference layer
# Each sample, on a node that has the pause image: PullImage, RunPodSandbox,
# CreateContainer, StartContainer, until ContainerStatus says running; then the pod and
# the image are removed and containerd collects (content and snapshots), so the next
# sample pulls again. s1 pulls fat:1 once first (a store that has never seen it); after
# that every slacker node takes its layer from the store.
set -euo pipefail
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/../test/e2e/lib.sh"
REPS=${1:-5}
FAT_MIB=${FAT_MIB:-64}
SNAPSHOTTER=${SNAPSHOTTER:-$REPO/build/snapshotter/slacker-snapshotter}
SLACKER_CRI=${SLACKER_CRI:-$REPO/build/test/cri/slacker-cri}
# shellcheck disable=SC2034 # used by cri_lib.sh
CTR_BIN=/usr/bin/ctr
e2e_workdir
for b in "$SNAPSHOTTER" "$SLACKER_CRI" "$SLACKERD"; do
  [ -x "$b" ] || { echo "bench: $b not built" >&2; exit 2; }
done
# shellcheck source=test/e2e/cri_lib.sh
. "$(dirname "$0")/../test/e2e/cri_lib.sh"

make_shared_store "$W/store"
e2e_defer remove_cgroups
SLK=slk$$b
start_slackerd "$SLK" --store "$W/store"
REG=$(start_registry)
start_dockerd wa "$SLK" --insecure-registry "$REG"
make_busybox_image wa "$REG/base:1"
printf 'FROM %s\nENTRYPOINT ["/bin/sleep", "2147483647"]\n' "$REG/base:1" |
  dk wa build -q -t "$REG/pause:1" - >/dev/null
dk wa push "$REG/pause:1" >/dev/null
# fat:1: one standard layer (an import is never a reference).
r=$(mktemp -d "$W/fat.XXXXXX")
dk wa save "$REG/base:1" | tar -xO --wildcards '*/layer.tar' | tar -x -C "$r"
head -c $((FAT_MIB << 20)) /dev/urandom >"$r/big"
tar --numeric-owner -C "$r" -c . | dk wa import - "$REG/fat:1" >/dev/null
rm -rf "$r"
dk wa push "$REG/fat:1" >/dev/null
# app:v1: the same amount of data committed by the slacker worker (a reference layer).
dk wa run --name mk --network none "$REG/base:1" sh -c "head -c $((FAT_MIB << 20)) /dev/urandom > /big; sync" >/dev/null
dk wa commit mk "$REG/app:v1" >/dev/null
dk wa push "$REG/app:v1" >/dev/null

start_snapshotter S1 --store "$W/store"
start_snapshotter S2 --store "$W/store"
start_cri_ctrd s1 S1
start_cri_ctrd s2 S2
start_cri_ctrd o1 none overlayfs # no proxy snapshotter at that socket: never used
for n in s1 s2 o1; do cri "$n" pull "$REG/pause:1" >/dev/null; done

# sample NODE IMAGE POD: prints "pull_ms ready_ms" (ready = pull + pod + container
# running); nothing if a step failed.
sample() {
  local node=$1 image=$2 pod=$3 t0 t1 t2 ids pod_id cid i lease
  t0=$(now_ms)
  cri "$node" pull "$image" >/dev/null
  t1=$(now_ms)
  ids=$(run_pod_container "$node" "$pod" "$image" c sh -c 'sleep 600') || return 1
  read -r pod_id cid <<<"$ids"
  [ -n "$cid" ] || return 1
  for ((i = 0; i < 3000; i++)); do
    [ "$(cri "$node" inspect "$cid" | field state)" = running ] && break
    sleep 0.01
  done
  t2=$(now_ms)
  remove_pod "$node" "$pod_id" "$cid" >/dev/null
  cri "$node" rmi "$image"
  lease=$(c "$node" leases create | awk '{print $1}')
  c "$node" leases delete --sync "$lease" >/dev/null
  echo "$((t1 - t0)) $((t2 - t0))"
}

out=$W/samples.tsv
: >"$out"
first=$(sample s1 "$REG/fat:1" first)
[ -n "$first" ] || { echo "bench: the first sample failed" >&2; exit 1; }
echo "s1 fat:1 (first pull on the store) $first" | tee "$W/first.txt" >&2
for ((rep = 1; rep <= REPS; rep++)); do
  for cfg in "o1 fat:1 overlayfs" "s2 fat:1 slacker" "s1 app:v1 slacker"; do
    read -r node image snap <<<"$cfg"
    read -r pull ready <<<"$(sample "$node" "$REG/$image" "p$rep-$node")" || true
    [ -n "${ready:-}" ] || { echo "bench: sample $rep on $node ($image) failed" >&2; exit 1; }
    printf '%s\t%s\t%s\t%s\t%s\n' "$snap" "$image" "$node" "$pull" "$ready" | tee -a "$out" >&2
  done
done
python3 - "$out" "$FAT_MIB" "$(cat "$W/first.txt")" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
def p95(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]
print(f"CRI pull + start-to-ready, {len(rows) // 3} samples each, {sys.argv[2]} MiB of layer data (ms)")
print("| snapshotter | image | node | pull median | pull p95 | ready median | ready p95 |")
print("|---|---|---|---|---|---|---|")
seen = []
for r in rows:
    if tuple(r[:3]) not in seen:
        seen.append(tuple(r[:3]))
for key in seen:
    pulls = [int(r[3]) for r in rows if tuple(r[:3]) == key]
    ready = [int(r[4]) for r in rows if tuple(r[:3]) == key]
    print(f"| {key[0]} | {key[1]} | {key[2]} | {statistics.median(pulls):.0f} | {p95(pulls)} | "
          f"{statistics.median(ready):.0f} | {p95(ready)} |")
print("first pull of fat:1 on the store (s1, one sample, pull and ready ms): " + sys.argv[3].split(")")[-1].strip())
EOF
