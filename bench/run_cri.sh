#!/usr/bin/env bash
# CRI pull + start-to-ready of the benchmark images (issue 19): what kubelet waits for
# when a pod lands on a node, slacker against containerd's overlayfs snapshotter in the
# same run, interleaved.
#
#   sudo bench/run_cri.sh [--reps N] [--images minbase,python3,gcc,http,loop[,fat]]
#                         [--out DIR]
#
# Default: 5 samples of each, the five images without fat (add it with --images; its
# layer is BENCH_FAT_MIB MiB, 256 here by default); OUT/cri-latest.json (default
# bench/results). Build slackerd, slacker-snapshotter and slacker-cri first (build/).
#
# One private registry; two private dockerds that build every image (bench/images.sh,
# `docker build`, as bench/run does): wa on slacker (its layers push as reference tars:
# REG/bench-NAME:1) and wo on overlay2 (standard tars: REG/std-bench-NAME:1); three
# private containerd 1.6 with CRI (test/e2e/cri_lib.sh): s1 and s2 on slacker (own
# snapshotters, the store wa uses), o1 on overlayfs. Configurations, per image:
#   overlayfs      o1 pulls the standard image (download + unpack of every layer)
#   slk-std-first  s2 pulls the standard image as the first node on the store: download
#                  + unpack into slacker snapshots (what every overlayfs pull costs)
#   slk-std        s2 pulls the standard image that a node on the store has already
#                  pulled: every layer comes from the store's index (no download)
#   slk-ref        s1 pulls the image the slacker worker pushed (reference layers), as the
#                  first node on the store: ~1 KiB per layer, resolved to the snapshots
# "First node on the store": before the sample, the store's containerd name index
# (store/containerd/names) forgets the image's chain ids, as on a store that never had
# that image in containerd (the snapshots stay where they are).
# A sample, on a node that has the pause image: PullImage, RunPodSandbox,
# CreateContainer, StartContainer, until ready, then the pod and the image are removed
# and containerd collects (content and snapshots), so the next sample pulls again. Ready:
#   batch (minbase, python3, gcc, fat)  the container has exited with status 0 and its
#                                       CRI log has bench-ok (bench/run: output bench-ok)
#   http  the server in the pod (host network) answers GET /index.html with bench-ok
#   loop  the ready file appears in the host directory bound at /ready (an emptyDir)
# Each rep runs every image's three configurations in a rotating order. The page cache
# is not dropped (it is a shared machine); it is the same for every configuration.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() {
  sed -n '6,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
reps=5
images_arg=minbase,python3,gcc,http,loop
out=$here/results
while [ $# -gt 0 ]; do
  case "$1" in
    --reps | --images | --out)
      [ $# -ge 2 ] || usage
      case "$1" in
        --reps) reps=$2 ;;
        --images) images_arg=$2 ;;
        --out) out=$2 ;;
      esac
      shift
      ;;
    [0-9]*) reps=$1 ;; # the former `run_cri.sh REPS`
    -h | --help) usage ;;
    *)
      echo "bench: unknown argument $1" >&2
      usage
      ;;
  esac
  shift
done
case "$reps" in '' | *[!0-9]* | 0)
  echo "bench: --reps wants a positive number, got '$reps'" >&2
  exit 2
  ;;
esac

BENCH_FAT_MIB=${BENCH_FAT_MIB:-256}
# shellcheck source=bench/images.sh
. "$here/images.sh"
IFS=, read -r -a images <<<"$images_arg"
for i in "${images[@]}"; do
  case " ${BENCH_ALL_IMAGES[*]} " in *" $i "*) ;; *)
    echo "bench: unknown image '$i' (known: ${BENCH_ALL_IMAGES[*]})" >&2
    exit 2
    ;;
  esac
done

# shellcheck source=test/e2e/lib.sh
. "$here/../test/e2e/lib.sh"
SNAPSHOTTER=${SNAPSHOTTER:-$REPO/build/snapshotter/slacker-snapshotter}
SLACKER_CRI=${SLACKER_CRI:-$REPO/build/test/cri/slacker-cri}
# shellcheck disable=SC2034 # used by cri_lib.sh
CTR_BIN=/usr/bin/ctr
export E2E_DEADLINE=${E2E_DEADLINE:-7200} E2E_CMD_TIMEOUT=${E2E_CMD_TIMEOUT:-900}
for b in "$SNAPSHOTTER" "$SLACKER_CRI" "$SLACKERD"; do
  [ -x "$b" ] || { echo "bench: $b not built" >&2; exit 2; }
done
e2e_workdir
# shellcheck source=test/e2e/cri_lib.sh
. "$here/../test/e2e/cri_lib.sh"
log() { echo "[bench $(date +%T)] $*" >&2; }

make_shared_store "$W/store" 64G
e2e_defer remove_cgroups
SLK=slk$$b
start_slackerd "$SLK" --store "$W/store"
REG=$(start_registry)
start_dockerd wa "$SLK" --insecure-registry "$REG"
start_dockerd wo overlay2 --insecure-registry "$REG"
make_busybox_image wa "$REG/base:1"
printf 'FROM %s\nENTRYPOINT ["/bin/sleep", "2147483647"]\n' "$REG/base:1" |
  dk wa build -q -t "$REG/pause:1" - >/dev/null
dk wa push "$REG/pause:1" >/dev/null

# build_on WORKER NAME: docker build bench image NAME (and its base first) on WORKER as
# REG/bench-NAME:1 (the name its children's FROM lines use).
build_on() {
  local w=$1 name=$2 base ctx
  base=$(bench_image_base "$name")
  if [ -n "$base" ]; then build_on "$w" "$base"; fi
  [ -z "$(dk "$w" images -q "$REG/bench-$name:1")" ] || return 0
  ctx=$W/ctx/$name
  [ -d "$ctx" ] || bench_build_context "$name" "$ctx" "$REG"
  log "building $name on $w"
  dk "$w" build -q --network none -t "$REG/bench-$name:1" "$ctx" >/dev/null
}
# layer_bytes REPO TAG: the sum of the image's layer blob sizes in the registry.
layer_bytes() {
  curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/$1/manifests/$2" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))'
}
meta=$W/images.tsv
: >"$meta"
for img in "${images[@]}"; do
  build_on wa "$img"
  dk wa push "$REG/bench-$img:1" >/dev/null
  build_on wo "$img"
  dk wo tag "$REG/bench-$img:1" "$REG/std-bench-$img:1"
  dk wo push "$REG/std-bench-$img:1" >/dev/null
  ref_b=$(layer_bytes "bench-$img" 1)
  std_b=$(layer_bytes "std-bench-$img" 1)
  log "$img: layers in the registry: reference image $ref_b bytes, standard image $std_b bytes"
  # The reference image must not carry the data: a standard tar of it would be as large.
  [ "$((ref_b * 100))" -lt "$std_b" ] ||
    fail "bench-$img:1 from the slacker worker has $ref_b bytes of layers (standard: $std_b): not references"
  printf '%s\t%s\t%s\t%s\n' "$img" "$(bench_image_kind "$img")" "$ref_b" "$std_b" >>"$meta"
done

SNAP_S1=s1$$b
SNAP_S2=s2$$b
# CRI_SNAPSHOTTER_LOG_LEVEL=debug: the snapshotters log each call's latency (event=rpc).
start_snapshotter "$SNAP_S1" --store "$W/store" --log-level "${CRI_SNAPSHOTTER_LOG_LEVEL:-info}"
start_snapshotter "$SNAP_S2" --store "$W/store" --log-level "${CRI_SNAPSHOTTER_LOG_LEVEL:-info}"
start_cri_ctrd s1 "$SNAP_S1"
start_cri_ctrd s2 "$SNAP_S2"
start_cri_ctrd o1 none overlayfs # no proxy snapshotter at that socket: never used
for n in s1 s2 o1; do cri "$n" pull "$REG/pause:1" >/dev/null; done

# wait_ready NODE CID NAME POD PORT: until the container of bench image NAME is ready
# (see the header); fails after 60 s or on a wrong output.
wait_ready() {
  local node=$1 cid=$2 name=$3 pod=$4 port=$5 kind deadline st body i=0
  kind=$(bench_image_kind "$name")
  deadline=$(($(now_ms) + 60000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    case "$kind" in
      batch)
        st=$(cri "$node" inspect "$cid")
        if [ "$(field state <<<"$st")" = exited ]; then
          [ "$(field exit_code <<<"$st")" = 0 ] || fail "$name on $node exited with $(field exit_code <<<"$st")" || return
          [ "$(log_lines "$W/pods/$pod/c/0.log" stdout)" = bench-ok ] ||
            fail "$name on $node printed [$(log_lines "$W/pods/$pod/c/0.log")], not bench-ok" || return
          return 0
        fi
        ;;
      http)
        body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/index.html" 2>/dev/null) || body=""
        [[ "$body" != *bench-ok* ]] || return 0
        ;;
      loop) [ ! -s "$W/ready/$pod/ready" ] || return 0 ;;
    esac
    # A service that exited will never be ready.
    if [ "$kind" != batch ] && [ $((++i % 50)) = 0 ] && [ "$(cri "$node" inspect "$cid" | field state)" = exited ]; then
      break
    fi
    sleep 0.01
  done
  fail "$name on $node not ready after 60 s: $(cri "$node" inspect "$cid" | tr '\n' ' ')" \
    "log: $(tail -5 "$W/pods/$pod/c/0.log" 2>/dev/null | tr '\n' ' ')"
}

# node_reset NODE REF: after a failed sample, remove NODE's pods (every pod there is the
# bench's) and REF, and collect, so that the next sample starts as the others do.
node_reset() {
  local id lease
  for id in $(cri "$1" pods | sed -n 's/^pod=\([^ ]*\).*/\1/p'); do
    cri "$1" stopp "$id" || true
    cri "$1" rmp "$id" || true
  done
  cri "$1" rmi "$2" 2>/dev/null || true
  lease=$(c "$1" leases create | awk '{print $1}')
  c "$1" leases delete --sync "$lease" >/dev/null || true
}

# forget_image REF: remove the image's chain ids from the store's containerd name index.
forget_image() {
  local repo=${1#*/} c f
  for c in $(chain_ids "${repo%:*}" "${repo##*:}"); do
    for f in "$W"/store/containerd/names/*.json; do
      [ -e "$f" ] || continue
      ! grep -q "\"name\":\"$c\"" "$f" || rm -f "$f"
    done
  done
}

# layer_events NODE: "UNPACKED RESOLVED": layers NODE's snapshotter has unpacked from
# standard tars and reference layers it has resolved, so far ("- -" on overlayfs).
layer_events() {
  local log c r
  case "$1" in
    s1) log=$W/$SNAP_S1-snapshotter.log ;;
    s2) log=$W/$SNAP_S2-snapshotter.log ;;
    *)
      echo - -
      return
      ;;
  esac
  c=$(grep -c 'event=commit ' "$log" || true)
  r=$(grep -c 'event=commit_reference ' "$log" || true)
  echo "$((c - r)) $r"
}

# sample NODE REF NAME POD: one pull + start-to-ready of bench image NAME as REF; prints
# "PULL SANDBOX CREATE START READY UNPACKED RESOLVED" (ms; READY counts from the pull's start;
# UNPACKED RESOLVED: layers the node's snapshotter unpacked and references it resolved
# meanwhile, - on overlayfs).
sample() {
  local node=$1 ref=$2 name=$3 pod=$4 port="" mount="" u0 r0 u1 r1 t0 t1 t2 ids pod_id cid lease steps
  local cmd=()
  case "$(bench_image_kind "$name")" in
    batch)
      bench_batch_cmd "$name"
      cmd=("${BENCH_CMD[@]}")
      ;;
    http)
      port=$(e2e_free_port)
      cmd=(python3 -m http.server "$port" --bind 127.0.0.1 --directory /srv)
      ;;
    loop)
      mkdir -p "$W/ready/$pod"
      mount=$W/ready/$pod:/ready
      cmd=(/usr/local/bin/bench-loop.sh)
      ;;
  esac
  read -r u0 r0 <<<"$(layer_events "$node")"
  t0=$(now_ms)
  cri "$node" pull "$ref" >/dev/null || fail "PullImage $ref on $node" || return
  t1=$(now_ms)
  ids=$(CRI_MOUNT=$mount CRI_STEP_MS=$W/steps run_pod_container "$node" "$pod" "$ref" c "${cmd[@]}") || return
  read -r pod_id cid <<<"$ids"
  wait_ready "$node" "$cid" "$name" "$pod" "$port" || return
  t2=$(now_ms)
  steps=$(cat "$W/steps")
  remove_pod "$node" "$pod_id" "$cid" >/dev/null
  cri "$node" rmi "$ref"
  lease=$(c "$node" leases create | awk '{print $1}')
  c "$node" leases delete --sync "$lease" >/dev/null
  read -r u1 r1 <<<"$(layer_events "$node")"
  if [ "$u0" != - ]; then
    u1=$((u1 - u0))
    r1=$((r1 - r0))
  fi
  echo "$((t1 - t0)) $steps $((t2 - t0)) $u1 $r1"
}

samples=$W/cri-samples.tsv
: >"$samples"
# record CONFIG NODE IMAGE REP POD: one sample, appended to the samples file as
# IMAGE CONFIG NODE REP PULL SANDBOX CREATE START READY UNPACKED RESOLVED.
record() {
  local cfg=$1 node=$2 img=$3 rep=$4 pod=$5 ref r f
  case "$cfg" in
    slk-ref) ref=$REG/bench-$img:1 ;;
    *) ref=$REG/std-bench-$img:1 ;;
  esac
  case "$cfg" in *-first | slk-ref) forget_image "$ref" ;; esac
  # A failed sample is reported (failures file, and the JSON) and tried once more; a
  # second failure ends the run.
  if ! r=$(sample "$node" "$ref" "$img" "$pod"); then
    log "sample $rep of $img on $node ($cfg) failed; once more"
    printf '%s\t%s\t%s\t%s\n' "$img" "$cfg" "$node" "$rep" >>"$W/failures.tsv"
    node_reset "$node" "$ref"
    case "$cfg" in *-first | slk-ref) forget_image "$ref" ;; esac
    r=$(sample "$node" "$ref" "$img" "$pod-again") || { log "sample $rep of $img on $node ($cfg) failed again"; exit 1; }
  fi
  # What each configuration claims to measure, checked from the snapshotter's log.
  read -r -a f <<<"$r"
  case "$cfg" in
    slk-std-first) [ "${f[5]}" -gt 0 ] || fail "$cfg $img: s2 unpacked no layer: the index still had it" ;;
    slk-std) [ "${f[5]}" = 0 ] || fail "$cfg $img: s2 unpacked ${f[5]} layers the store has" ;;
    slk-ref) [ "${f[5]}" = 0 ] && [ "${f[6]}" -gt 0 ] || fail "$cfg $img: s1 unpacked ${f[5]}, resolved ${f[6]} references" ;;
  esac || exit 1
  printf '%s\t%s\t%s\t%s\t%s\n' "$img" "$cfg" "$node" "$rep" "${r// /$'\t'}" | tee -a "$samples" >&2
}

# Warm-up (not recorded): s2 pulls each standard image once, so that slk-std finds it
# in the store's index from the first rep on, and the registry's blobs are in the page
# cache for every configuration alike.
for img in "${images[@]}"; do
  sample s2 "$REG/std-bench-$img:1" "$img" "warm-$img" >/dev/null || fail "warm-up pull of $img on s2" || exit 1
done
configs=("o1 overlayfs" "s2 slk-std-first" "s2 slk-std" "s1 slk-ref")
for ((rep = 1; rep <= reps; rep++)); do
  log "rep $rep of $reps"
  for img in "${images[@]}"; do
    for ((k = 0; k < ${#configs[@]}; k++)); do
      read -r node cfg <<<"${configs[$(((rep + k) % ${#configs[@]}))]}"
      record "$cfg" "$node" "$img" "$rep" "p$rep-$node-$cfg-$img"
    done
  done
done

conditions="$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(date -u +%FT%TZ)"
mkdir -p "$out"
cp "$samples" "$out/cri-latest-samples.tsv"
touch "$W/failures.tsv"
python3 "$here/crilib.py" report "$samples" "$meta" "$out/cri-latest.json" \
  --reps "$reps" --fat-mib "$BENCH_FAT_MIB" --conditions "$conditions" --failures "$W/failures.tsv"
