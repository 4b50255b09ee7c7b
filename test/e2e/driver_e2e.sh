#!/usr/bin/env bash
# End-to-end scenarios for a Docker storage driver, through real private dockerds.
#
#   test/e2e/driver_e2e.sh            # slacker: slackerd ($SLACKERD) as a legacy plugin
#   test/e2e/driver_e2e.sh overlay2   # the same scenarios on dockerd's overlay2, to
#                                     # validate the test logic itself
#   test/e2e/driver_e2e.sh share      # slacker with --share-page-cache (overlay form),
#                                     # plus the shared page cache case
#
# Root only. Each run lives in /var/tmp/slacker-e2e.XXXXXX and leaves nothing behind.
# Output: one PASS/FAIL/SKIP line per case, then "N passed, N failed"; exit status 0
# only if nothing failed. Daemon logs are in the work dir (E2E_KEEP=1 keeps it).
#
# Environment:
#   SLACKERD            slackerd binary (default $REPO/build/cmd/slackerd)
#   E2E_STORE           slacker: a shared store (--store) for both workers; default: the
#                       first worker's embedded store, which the second worker shares
#   E2E_OVERLAY_XFS=1   overlay2: put worker 1's data root on a loop-mounted XFS with
#                       prjquota so the --storage-opt size case runs there too
#   E2E_KEEP=1          keep the work dir
#
# Two workers (w1, w2) and a local registry exercise push/pull. On slacker both
# workers need the same store: a pushed slacker layer is a reference to a snapshot on
# the store (DESIGN.md §5), which only a worker on that store can pull.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

MODE=${1:-slacker}
SLK_ARGS=() # slackerd arguments of both workers
case "$MODE" in
  slacker | overlay2) ;;
  share) SLK_ARGS=(--share-page-cache) ;;
  *)
    echo "usage: $0 [overlay2|share]" >&2
    exit 2
    ;;
esac

BASE=e2e/busybox:base
P1=slk$$a # plugin names: unique per run, as the spec dir is host-wide
P2=slk$$b

e2e_workdir
echo "driver_e2e: mode $MODE, work dir $W"

# is_slacker: slacker, in either form.
is_slacker() { [ "$MODE" != overlay2 ]; }

# ---------------------------------------------------------------------------
# setup

setup_w1() {
  if is_slacker; then
    local store=()
    [ -z "${E2E_STORE:-}" ] || store=(--store "$E2E_STORE")
    start_slackerd "$P1" "${store[@]}" "${SLK_ARGS[@]}"
    D1=$P1
  else
    D1=overlay2
    if [ "${E2E_OVERLAY_XFS:-0}" = 1 ]; then
      # overlay2 enforces --storage-opt size only on XFS mounted with prjquota.
      truncate -s 4G "$W/w1-xfs.img"
      mkfs.xfs -q "$W/w1-xfs.img"
      mkdir -p "$W/w1"
      mount -o loop,prjquota "$W/w1-xfs.img" "$W/w1" ||
        fail "cannot mount XFS with prjquota (no XFS quota in this kernel? see dmesg)" || return
      e2e_defer umount "$W/w1"
    fi
  fi
  echo "$D1" >"$W/d1"
  start_registry >/dev/null
  echo "$E2E_REGISTRY" >"$W/registry-addr"
  start_dockerd w1 "$D1" --insecure-registry "$E2E_REGISTRY"
}

d1() { cat "$W/d1"; }
registry() { cat "$W/registry-addr"; }

# ---------------------------------------------------------------------------
# cases

case_import() {
  make_busybox_image w1 "$BASE"
  assert_eq hello "$(dk w1 run --rm --network none "$BASE" echo hello)" "echo in a fresh image"
  assert_eq "$(d1)" "$(dk w1 info -f '{{.Driver}}')" "docker info Driver"
  assert_eq "$(d1)" "$(dk w1 image inspect -f '{{.GraphDriver.Name}}' "$BASE")" "image GraphDriver"
}

case_run_write_read() {
  local out
  out=$(dk w1 run --name c1 --network none "$BASE" \
    sh -c 'echo data1 > /file1 && echo data2 > /file2 && cat /file1')
  assert_eq data1 "$out" "file read back in the same container"
}

case_commit() {
  dk w1 commit c1 e2e/busybox:c1 >/dev/null
  assert_eq 2 "$(dk w1 image inspect -f '{{len .RootFS.Layers}}' e2e/busybox:c1)" "layers of the commit"
}

case_run_from_commit() {
  assert_eq data1 "$(dk w1 run --rm --network none e2e/busybox:c1 cat /file1)" "committed file"
  assert_eq data2 "$(dk w1 run --rm --network none e2e/busybox:c1 cat /file2)" "committed file"
}

case_diff() {
  dk w1 run --name c2 --network none e2e/busybox:c1 \
    sh -c 'echo more >> /file1 && rm /file2 && echo new > /added && mkdir -p /newdir && : > /newdir/x'
  local got want
  got=$(dk w1 diff c2 | sort)
  want=$(printf '%s\n' "A /added" "A /newdir" "A /newdir/x" "C /file1" "D /file2" | sort)
  assert_eq "$want" "$got" "docker diff c2"
}

# size_in_bytes "3.15MB": docker's human size (decimal units) in bytes.
size_in_bytes() {
  awk -v s="$1" 'BEGIN {
    n = s + 0; u = s; sub(/^[0-9.]+/, "", u)
    m["B"] = 1; m["kB"] = 1e3; m["MB"] = 1e6; m["GB"] = 1e9
    if (!(u in m)) { print -1; exit }
    printf "%d\n", n * m[u] }'
}

case_ps_size() {
  dk w1 run -d --name c3 --network none e2e/busybox:c1 sleep 100000 >/dev/null
  dk w1 exec c3 sh -c 'dd if=/dev/zero of=/big bs=1M count=3 2>/dev/null && echo keep > /keep'
  local size bytes
  size=$(dk w1 ps -s --filter name=c3 --format '{{.Size}}')
  bytes=$(size_in_bytes "${size%% *}")
  echo "  docker ps -s: $size"
  if [ "$bytes" -lt 3000000 ] || [ "$bytes" -gt 4500000 ]; then
    fail "docker ps -s size of c3 is [$size]; expected about 3.15MB (3 MiB written)"
  fi
}

case_stop_start() {
  dk w1 stop -t 1 c3 >/dev/null
  assert_eq exited "$(dk w1 inspect -f '{{.State.Status}}' c3)" "c3 state after stop"
  dk w1 start c3 >/dev/null
  assert_eq keep "$(dk w1 exec c3 cat /keep)" "data after stop/start"
  assert_eq 3145728 "$(dk w1 exec c3 stat -c %s /big)" "size of /big after stop/start"
}

case_rm() {
  dk w1 rm -f c1 c2 c3 >/dev/null
  assert_eq "" "$(dk w1 ps -aq)" "containers left after rm"
}

# Concurrent calls into the driver: dockerd serves each client request on its own
# goroutine, so parallel runs and a multi-container rm reach the plugin at once
# (CreateReadWrite/Get/Put/Remove of different layers interleaved).
case_concurrent() {
  local i pids=() bad=0 n=8
  for ((i = 1; i <= n; i++)); do
    dk w1 run -d --name "par$i" --network none "$BASE" sh -c "echo $i > /id; exec sleep 100000" \
      >/dev/null &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || bad=1; done
  [ "$bad" = 0 ] || fail "a parallel docker run failed"
  for ((i = 1; i <= n; i++)); do
    assert_eq "$i" "$(dk w1 exec "par$i" cat /id)" "/id in par$i"
  done
  local names=()
  for ((i = 1; i <= n; i++)); do names+=("par$i"); done
  dk w1 rm -f "${names[@]}" >/dev/null || fail "docker rm -f of $n running containers failed"
  assert_eq "" "$(dk w1 ps -aq)" "containers left after the parallel rm"
}

case_rmi() {
  dk w1 rmi e2e/busybox:c1 >/dev/null
  if dk w1 image inspect e2e/busybox:c1 >/dev/null 2>&1; then
    fail "e2e/busybox:c1 still exists after rmi"
  fi
  assert_eq hello "$(dk w1 run --rm --network none "$BASE" echo hello)" "base image after rmi"
}

# The build: each step a layer with one kind of change; check_build_image checks them
# all in the result. xattrs: busybox has no setfattr, so the host's setfattr/getfattr
# and the libraries they need are copied in (COPY step). Docker's tar code carries
# only security.capability through a commit (moby pkg/archive), so that is the xattr
# checked; a user.* xattr is reported, not required.
make_build_context() {
  local ctx=$1 f lib
  mkdir -p "$ctx/attr"
  if command -v setfattr >/dev/null && command -v getfattr >/dev/null; then
    for f in "$(command -v setfattr)" "$(command -v getfattr)"; do
      mkdir -p "$ctx/attr/usr/bin"
      cp "$f" "$ctx/attr/usr/bin/"
      for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
        mkdir -p "$ctx/attr$(dirname "$lib")"
        cp -L "$lib" "$ctx/attr$lib"
      done
    done
  fi
  cat >"$ctx/Dockerfile" <<'EOF'
FROM e2e/busybox:base
# 1: the lower files the later steps change
RUN mkdir -p /lower/dir/sub /lower/keepdir /lower/gonedir \
 && echo orig > /lower/modify && echo gone > /lower/delete \
 && echo old > /lower/dir/old && echo old2 > /lower/dir/sub/old2 \
 && echo keep > /lower/keepdir/keep && echo g > /lower/gonedir/g \
 && echo rename > /lower/renamefrom \
 && echo lowhl > /lower/hl-lower1 && ln /lower/hl-lower1 /lower/hl-lower2
# 2: modify, delete, delete a dir, rename, and an opaque dir (deleted, then recreated)
RUN echo changed > /lower/modify && rm /lower/delete && rm -rf /lower/gonedir \
 && mv /lower/renamefrom /lower/renameto \
 && rm -rf /lower/dir && mkdir /lower/dir && echo new > /lower/dir/new
# 3: a hard link, setuid + owner, sticky dir, symlink, fifo, empty file, old mtime
RUN echo hl > /lower/hl1 && ln /lower/hl1 /lower/hl2 \
 && echo su > /lower/setuid && chown 1234:5678 /lower/setuid && chmod 4750 /lower/setuid \
 && mkdir /lower/sticky && chmod 1777 /lower/sticky \
 && ln -s ../lower/keepdir/keep /lower/symlink \
 && mkfifo /lower/fifo && : > /lower/empty \
 && echo t > /lower/mtime && touch -d '2001-02-03 04:05:06' /lower/mtime
# 4: a step that changes nothing (an empty diff)
RUN true
# 5: xattr tools (may be empty), then xattrs
COPY attr/ /
RUN echo cap > /lower/cap && if command -v setfattr >/dev/null; then \
      setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 /lower/cap \
      && setfattr -n user.e2e -v hello /lower/cap; fi
ENV E2E=1
EOF
}

# The checks, run inside a container of the built image. Prints every failed check
# and "ALL OK" at the end if none failed.
BUILD_CHECKS=$(
  cat <<'EOF'
bad=0
t() { if ! eval "$1"; then echo "CHECK FAILED: $1"; bad=1; fi; }
t '[ "$(cat /lower/modify)" = changed ]'
t '[ ! -e /lower/delete ]'
t '[ ! -e /lower/gonedir ]'
t '[ ! -e /lower/renamefrom ] && [ "$(cat /lower/renameto)" = rename ]'
t '[ "$(ls -A /lower/dir)" = new ] && [ "$(cat /lower/dir/new)" = new ]'
t '[ "$(cat /lower/keepdir/keep)" = keep ]'
t '[ "$(stat -c %i /lower/hl1)" = "$(stat -c %i /lower/hl2)" ] && [ "$(stat -c %h /lower/hl1)" = 2 ]'
t '[ "$(stat -c %i /lower/hl-lower1)" = "$(stat -c %i /lower/hl-lower2)" ] && [ "$(cat /lower/hl-lower2)" = lowhl ]'
t '[ "$(stat -c "%a %u %g" /lower/setuid)" = "4750 1234 5678" ] && [ "$(cat /lower/setuid)" = su ]'
t '[ "$(stat -c %a /lower/sticky)" = 1777 ] && [ -d /lower/sticky ]'
t '[ "$(readlink /lower/symlink)" = ../lower/keepdir/keep ] && [ "$(cat /lower/symlink)" = keep ]'
t '[ -p /lower/fifo ]'
t '[ -f /lower/empty ] && [ ! -s /lower/empty ]'
t '[ "$(stat -c %Y /lower/mtime)" = 981173106 ]'
t '[ "$(stat -c %a /lower/dir)" = 755 ] && [ "$(stat -c %a /lower)" = 755 ]'
t '[ "$E2E" = 1 ]'
if command -v getfattr >/dev/null; then
  t 'getfattr -e hex -n security.capability /lower/cap 2>/dev/null | grep -q "=0x0100000200200000000000000000000000000000"'
  if getfattr -n user.e2e /lower/cap >/dev/null 2>&1; then echo "NOTE: user.e2e xattr kept"
  else echo "NOTE: user.e2e xattr not kept (expected with docker's tar code)"; fi
else
  echo "NOTE: no getfattr in the image; xattrs not checked"
fi
[ $bad = 0 ] && echo "ALL OK"
EOF
)

# check_build_image DOCKERD IMAGE
check_build_image() {
  local out
  out=$(dk "$1" run --rm --network none "$2" sh -c "$BUILD_CHECKS" 2>&1) || true
  printf '  %s\n' "${out//$'\n'/$'\n'  }"
  assert_contains "$out" "ALL OK" "checks in $2 on $1"
}

case_build() {
  local ctx=$W/build-ctx out
  make_build_context "$ctx"
  [ -x "$ctx/attr/usr/bin/setfattr" ] ||
    echo "  NOTE: no setfattr on the host; the build skips its xattr step"
  if ! out=$(dk w1 build --network none -t e2e/build:1 "$ctx" 2>&1); then
    echo "$out" | tail -n 30
    fail "docker build failed"
  fi
  check_build_image w1 e2e/build:1
}

case_save_load() {
  local id id2
  id=$(dk w1 image inspect -f '{{.Id}}' e2e/build:1)
  dk w1 save -o "$W/build.tar" e2e/build:1
  dk w1 rmi e2e/build:1 >/dev/null
  if dk w1 image inspect "$id" >/dev/null 2>&1; then fail "image $id still present after rmi"; fi
  assert_contains "$(dk w1 load -i "$W/build.tar")" "Loaded image: e2e/build:1" "docker load"
  id2=$(dk w1 image inspect -f '{{.Id}}' e2e/build:1)
  assert_eq "$id" "$id2" "image id after save/load"
  dk w1 tag e2e/build:1 e2e/loaded:1
  dk w1 rmi e2e/build:1 >/dev/null # untag; the image stays as e2e/loaded:1
  check_build_image w1 e2e/loaded:1
  dk w1 tag e2e/loaded:1 e2e/build:1
}

case_dockerd_restart() {
  local probe='if [ -e /persist ]; then cat /persist; else echo persist > /persist; echo first; fi'
  assert_eq first "$(dk w1 run --name cr --network none "$BASE" sh -c "$probe")" "first run of cr"
  restart_dockerd w1
  assert_eq persist "$(dk w1 start -a cr)" "cr's data after dockerd restart"
  check_build_image w1 e2e/build:1
}

# Slacker only: the plugin restarts while dockerd keeps running. dockerd does not send
# Init again, so slackerd must come back with what it persisted.
case_plugin_restart() {
  if ! is_slacker; then
    echo "  (slacker only)"
    return 77
  fi
  restart_slackerd "$P1"
  assert_eq persist "$(dk w1 start -a cr)" "cr's data after plugin restart"
  assert_eq hello "$(dk w1 run --rm --network none "$BASE" echo hello)" "run after plugin restart"
}

# Quota: the container's file system is limited to 64M, so a 100M write must fail
# with ENOSPC. overlay2 supports --storage-opt size only on XFS with prjquota.
case_storage_opt_size() {
  if [ "$MODE" = overlay2 ]; then
    local fs
    fs=$(findmnt -n -o FSTYPE,OPTIONS -T "$W/w1/data")
    case "$fs" in
      xfs*prjquota* | xfs*pquota*) ;;
      *)
        e2e_skip_loud "overlay2 enforces --storage-opt size only on XFS with prjquota; \
$W/w1/data is [$fs] (E2E_OVERLAY_XFS=1 runs it)"
        return 77
        ;;
    esac
  fi
  local out rc=0
  out=$(dk w1 run --rm --network none --storage-opt size=64M "$BASE" \
    sh -c 'dd if=/dev/zero of=/fill bs=1M count=100' 2>&1) || rc=$?
  printf '  %s\n' "${out//$'\n'/$'\n'  }"
  # 1 is dd's own failure inside the container; 125 would be docker refusing the run.
  assert_eq 1 "$rc" "exit status of the 100M dd in a 64M container"
  assert_contains "$out" "dd: error writing '/fill': No space left on device" "dd output"
}

case_push_pull() {
  local reg img w2drv
  reg=$(registry)
  img=$reg/e2e/build:1
  if is_slacker; then
    # Worker 2 shares worker 1's store (or E2E_STORE).
    local shared=${E2E_STORE:-$(slackerd_state "$P1")/store}
    mountpoint -q "$shared" || [ -n "${E2E_STORE:-}" ] ||
      fail "worker 1's store $shared is not a mount point; cannot share it with worker 2"
    start_slackerd "$P2" --store "$shared" "${SLK_ARGS[@]}"
    w2drv=$P2
  else
    w2drv=overlay2
  fi
  start_dockerd w2 "$w2drv" --insecure-registry "$reg"
  dk w1 tag e2e/build:1 "$img"
  dk w1 tag "$BASE" "$reg/e2e/busybox:base"
  dk w1 push "$img" >/dev/null
  dk w1 push "$reg/e2e/busybox:base" >/dev/null
  # A second push of the same image must find every layer already there.
  assert_not_contains "$(dk w1 push "$img")" "Pushed" "second push"
  dk w2 pull "$img" >/dev/null
  dk w2 pull "$reg/e2e/busybox:base" >/dev/null
  assert_eq "$(dk w1 image inspect -f '{{.Id}}' "$img")" "$(dk w2 image inspect -f '{{.Id}}' "$img")" \
    "image id on w2"
  check_build_image w2 "$img"
  assert_eq hello "$(dk w2 run --rm --network none "$reg/e2e/busybox:base" echo hello)" "base on w2"
}

# loop_reads: "DEVICE BACKING-FILE BYTES-READ" of every loop device ("-": detached).
# A device's counters survive a detach and its next attach: compare by device.
loop_reads() {
  local d file
  for d in /sys/block/loop*; do
    [ -e "$d/stat" ] || continue
    file=$(cat "$d/loop/backing_file" 2>/dev/null || echo -)
    echo "/dev/${d##*/} ${file// /_} $(awk '{printf "%d", $3 * 512}' "$d/stat")"
  done
}

# reads_between DIR BEFORE AFTER: bytes read between two loop_reads samples by the
# devices that back a file under DIR in AFTER. Those that read more than 1 MiB are
# listed on stderr.
reads_between() {
  awk -v dir="$1/" 'NR == FNR { before[$1] = $3; next }
       index($2, dir) == 1 { d = $3 - before[$1]; total += d
         if (d > 1048576) printf "    %s %s: %d MiB\n", $1, $2, d / 1048576 > "/dev/stderr" }
       END { printf "%d\n", total }' <(echo "$2") <(echo "$3")
}

cached_bytes() { awk '/^Cached:/ {printf "%d\n", $2 * 1024}' /proc/meminfo; }

# Issue 20: a second container of an image reads a 256 MiB file the first one read. In
# overlay form (share mode) both read it through the image snapshot's one read-only
# mount: the second reads nothing from the store and grows the page cache by less than
# a tenth of the file; so does a warm run after both are gone. The plain slacker mode
# prints its numbers (each container is its own clone: it reads the file again).
case_shared_page_cache() {
  if ! is_slacker; then
    echo "  (slacker only)"
    return 77
  fi
  local sdir=${E2E_STORE:-$(slackerd_state "$P1")/store} mib=256 limit r0 c0 sum_a sum_b sum_w read grown
  limit=$(((mib << 20) / 10))
  dk w1 run --name pc-mk --network none "$BASE" \
    sh -c "dd if=/dev/urandom of=/big bs=1M count=$mib 2>/dev/null" >/dev/null
  dk w1 commit pc-mk e2e/big:1 >/dev/null
  dk w1 rm pc-mk >/dev/null
  dk w1 run -d --name pc-a --network none e2e/big:1 sleep 100000 >/dev/null
  sum_a=$(dk w1 exec pc-a md5sum /big)
  if [ "$MODE" = share ]; then
    local overlays
    overlays=$(findmnt -rn -t overlay -o TARGET | grep -c "^$(slackerd_state "$P1")/root/" || true)
    [ "$overlays" -ge 1 ] || fail "no overlay mounted under $(slackerd_state "$P1")/root while pc-a runs"
  fi
  sync
  # Sampled while the container runs: a loop device's backing file is gone once it stops.
  dk w1 run -d --name pc-b --network none e2e/big:1 sleep 100000 >/dev/null
  r0=$(loop_reads)
  c0=$(cached_bytes)
  # The page cache the read brought in is charged to the container's memory cgroup.
  local out charged
  out=$(dk w1 exec pc-b sh -c 'md5sum /big; cat /sys/fs/cgroup/memory/memory.stat 2>/dev/null ||
    cat /sys/fs/cgroup/memory.stat')
  sum_b=$(echo "$out" | head -1)
  charged=$(echo "$out" | awk '$1 == "cache" || $1 == "file" {print $2; exit}')
  read=$(reads_between "$sdir" "$r0" "$(loop_reads)")
  grown=$(($(cached_bytes) - c0))
  [ -n "$charged" ] || fail "no page cache figure in pc-b's memory.stat: $out"
  assert_eq "${sum_a%% *}" "${sum_b%% *}" "md5 of /big in the second container"
  echo "  second container: read $((read >> 20)) MiB from the store, brought $((charged >> 20)) MiB into the page cache (charged to its cgroup; the host's grew $((grown >> 20)) MiB meanwhile) ($mib MiB file)"
  # slackerd restarts under running containers: it adopts their overlays and the shared
  # lower, and a commit of a running container still has what it wrote.
  restart_slackerd "$P1"
  dk w1 exec pc-a sh -c 'echo after-restart > /marker && rm /bin/true' >/dev/null
  dk w1 commit pc-a e2e/big:2 >/dev/null
  assert_eq after-restart "$(dk w1 run --rm --network none e2e/big:2 cat /marker)" "/marker in a commit after the restart"
  assert_eq gone "$(dk w1 run --rm --network none e2e/big:2 sh -c '[ -e /bin/true ] || echo gone')" \
    "/bin/true deleted in the commit"
  assert_eq "${sum_a%% *}" "$(dk w1 exec pc-b md5sum /big | cut -d' ' -f1)" "md5 of /big in pc-b after the restart"
  dk w1 rmi e2e/big:2 >/dev/null
  dk w1 rm -f pc-a pc-b >/dev/null
  dk w1 run -d --name pc-w --network none e2e/big:1 sleep 100000 >/dev/null
  r0=$(loop_reads)
  sum_w=$(dk w1 exec pc-w md5sum /big)
  local warm
  warm=$(reads_between "$sdir" "$r0" "$(loop_reads)")
  dk w1 rm -f pc-w >/dev/null
  assert_eq "${sum_a%% *}" "${sum_w%% *}" "md5 of /big in the warm run"
  echo "  warm run after both: read $((warm >> 20)) MiB from the store"
  dk w1 rmi e2e/big:1 >/dev/null
  if [ "$MODE" = share ]; then
    [ "$read" -lt "$limit" ] || fail "the second container read $read bytes from the store (limit $limit)"
    [ "$charged" -lt "$limit" ] || fail "the second container brought $charged bytes into the page cache (limit $limit)"
    [ "$warm" -lt "$limit" ] || fail "the warm run read $warm bytes from the store (limit $limit)"
  fi
}

# log_count PATTERN: lines of worker 1's slackerd log matching PATTERN (grep -E).
log_count() { grep -cE "$1" "$W/$P1-slackerd.log" || true; }

# Issue 20 item 2: the first container of an image records what it read at start
# (snapshots/<S>.trace on the store, written when its mount goes); a later start, with
# nothing of the image cached (slackerd restarted: in overlay form its idle lower goes
# with it), replays the trace before the container asks. The container's read of the
# recorded file then costs the store less than a tenth of it. In overlay form the
# replay fills the image's shared lower.
case_startup_prefetch() {
  if ! is_slacker; then
    echo "  (slacker only)"
    return 77
  fi
  local sdir=${E2E_STORE:-$(slackerd_state "$P1")/store} mib=32 limit snap n rec i line bytes r0 read
  limit=$(((mib << 20) / 10))
  dk w1 run --name pf-mk --network none "$BASE" \
    sh -c "dd if=/dev/urandom of=/pf bs=1M count=$mib 2>/dev/null" >/dev/null
  dk w1 commit pf-mk e2e/pf:1 >/dev/null
  dk w1 rm pf-mk >/dev/null
  snap=$(dk w1 image inspect -f '{{.GraphDriver.Data.Snapshot}}' e2e/pf:1)
  [[ $snap =~ ^[0-9a-f]{32}$ ]] || fail "no snapshot id for e2e/pf:1: '$snap'" || return
  [ ! -e "$sdir/snapshots/$snap.trace" ] || fail "a trace of $snap before any container of it ran"
  # Older than min_record_age (1 s) when it goes: recorded at its Remove.
  rec="event=prefetch_trace_recorded .*snapshot=$snap"
  n=$(log_count "$rec")
  dk w1 run --rm --network none e2e/pf:1 sh -c 'cat /pf >/dev/null; sleep 2'
  for ((i = 0; i < 100; i++)); do
    [ "$(log_count "$rec")" -gt "$n" ] && break
    sleep 0.1
  done
  line=$(grep -E "$rec" "$W/$P1-slackerd.log" | tail -1 || true)
  [ -n "$line" ] || fail "no trace of $snap recorded after its first container" || return
  bytes=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' <<<"$line")
  [ "${bytes:-0}" -ge $((mib << 20)) ] || fail "the trace of $snap holds ${bytes:-?} bytes, less than the $mib MiB read: $line"
  [ -s "$sdir/snapshots/$snap.trace" ] || fail "no $sdir/snapshots/$snap.trace"
  restart_slackerd "$P1"
  if [ "$MODE" = share ]; then
    [ ! -e "$(slackerd_state "$P1")/lower/$snap" ] || ! mountpoint -q "$(slackerd_state "$P1")/lower/$snap" ||
      fail "the idle lower of $snap is still mounted after the restart"
  fi
  rec="event=prefetch_replayed .*snapshot=$snap"
  n=$(log_count "$rec")
  dk w1 run -d --name pf-b --network none e2e/pf:1 sleep 100000 >/dev/null
  for ((i = 0; i < 200; i++)); do
    [ "$(log_count "$rec")" -gt "$n" ] && break
    sleep 0.1
  done
  [ "$(log_count "$rec")" -gt "$n" ] || fail "no replay of $snap's trace for pf-b within 20 s" || return
  r0=$(loop_reads)
  dk w1 exec pf-b cat /pf >/dev/null
  read=$(reads_between "$sdir" "$r0" "$(loop_reads)")
  dk w1 rm -f pf-b >/dev/null
  dk w1 rmi e2e/pf:1 >/dev/null
  echo "  after the replay the container's read of the $mib MiB file read $((read >> 10)) KiB from the store"
  [ "$read" -lt "$limit" ] || fail "pf-b read $read bytes of the replayed file from the store (limit $limit)"
}

case_buildkit() {
  e2e_skip_loud "BuildKit: Debian 12's docker CLI needs the buildx plugin, which Debian \
does not ship, so DOCKER_BUILDKIT=1 cannot run here (PROTOCOL.md, BuildKit sequence)"
  return 77
}

# Stop everything the test started and prove nothing is left: each daemon exits 0 on
# SIGTERM, and no mount, loop device or process refers to the work dir.
case_no_leaks() {
  local bad=0 m
  stop_dockerd w2 || bad=1
  dk w1 rm -f cr >/dev/null 2>&1 || true
  stop_dockerd w1 || bad=1
  if is_slacker; then
    stop_slackerd "$P2" || bad=1
    stop_slackerd "$P1" || bad=1
  fi
  stop_registry
  [ "$bad" = 0 ] || fail "a daemon did not stop cleanly (see the log lines above)"
  [ "${E2E_OVERLAY_XFS:-0}" != 1 ] || [ "$MODE" != overlay2 ] || umount "$W/w1"
  if is_slacker; then
    # The embedded store stays mounted by design (lib.sh release_embedded_store).
    m=$(e2e_mounts_under "$W" | grep -vxF "$(slackerd_state "$P1")/store" || true)
    assert_eq "" "$m" "mounts left under $W (besides the embedded store)"
    release_embedded_store "$P1" || fail "cannot release the embedded store"
  fi
  assert_eq "" "$(e2e_mounts_under "$W")" "mounts left under $W"
  assert_eq "" "$(e2e_loops_under "$W")" "loop devices left backed by files under $W"
  assert_eq "" "$(e2e_pids_under "$W")" "processes left running from $W"
}

# ---------------------------------------------------------------------------

run_case "setup ($MODE)" setup_w1
if [ "$E2E_FAILED" != 0 ]; then
  echo "setup failed; no scenario can run"
  e2e_summary || exit 1
fi
run_case "import" case_import
run_case "run: write and read back" case_run_write_read
run_case "commit" case_commit
run_case "run from the commit" case_run_from_commit
run_case "diff: A/C/D" case_diff
run_case "ps -s size" case_ps_size
run_case "stop/start keeps data" case_stop_start
run_case "rm" case_rm
run_case "concurrent run and rm" case_concurrent
run_case "rmi" case_rmi
run_case "classic build" case_build
run_case "save/load round trip" case_save_load
run_case "dockerd restart" case_dockerd_restart
run_case "plugin restart under dockerd" case_plugin_restart
run_case "storage-opt size=64M quota" case_storage_opt_size
run_case "shared page cache" case_shared_page_cache
run_case "start-up prefetch" case_startup_prefetch
run_case "push/pull between workers" case_push_pull
run_case "buildkit build" case_buildkit
run_case "stop all, no leaks" case_no_leaks
e2e_summary
