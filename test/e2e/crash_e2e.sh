#!/usr/bin/env bash
# Crash recovery: slackerd is killed with SIGKILL at named points inside Create,
# ApplyDiff (mid-spool, mid-extraction, before the record), Get (after the clone, after
# the loop attach, after the mount), Diff (while the container's file system is frozen,
# after the snapshot), Remove (after the volume, after the record) and the store's clone
# (before the rename) — fault points armed by SLACKER_FAULT (common/fault.h) — while a
# private dockerd drives the operation. slackerd is started again on the same socket and
# state; then: dockerd works, every complete image still runs with its content, the
# interrupted operation either succeeded through dockerd's retry or fails cleanly and
# succeeds when done again, nothing is leaked (mounts, loop devices, volume files,
# clone temp files, spool files) and `slackerctl verify` is clean.
# Last: dockerd itself killed with SIGKILL while containers run, then started again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_slackerctl
e2e_workdir

A=slk$$c
start_slackerd "$A"
start_dockerd w1 "$A"
STATE=$(slackerd_state "$A")
make_busybox_image w1 bb:1
ctl() { "$SLACKERCTL" --state "$STATE" --host-id "$A" --docker-host "unix://$W/w1/docker.sock" "$@"; }

# Images that must keep running, with the output a command in them must print:
# lines "TAG<TAB>COMMAND<TAB>EXPECTED".
: >"$W/images.tsv"
expect_image() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$W/images.tsv"; }
expect_image bb:1 'head -1 /etc/passwd' 'root:x:0:0:root:/root:/bin/sh'

mkdir -p "$W/ctx"
printf 'FROM bb:1\nRUN echo built >/built && mkdir -p /d && echo x >/d/f\n' >"$W/ctx/Dockerfile"
dk w1 build -q --network none -t bb:2 "$W/ctx" >/dev/null
expect_image bb:2 'cat /built /d/f' 'built\nx'

# rootfs_tar NAME: a rootfs (busybox + 1 MiB of random bytes + a marker) as a tar, so
# that an import streams well past the mid-extraction fault point (64 KiB).
rootfs_tar() {
  local r=$W/rootfs-$1
  mkdir -p "$r/bin"
  cp /bin/busybox "$r/bin/busybox"
  ln -sf busybox "$r/bin/sh"
  ln -sf busybox "$r/bin/cat"
  head -c 1048576 /dev/urandom >"$r/random"
  echo "$1" >"$r/marker"
  tar --numeric-owner -C "$r" -cf "$W/$1.tar" .
  rm -rf "$r"
}

slackerd_pid() { cat "$W/.e2e/pid/slackerd-$A"; }

# crash_during POINT CMD...: restart slackerd with SLACKER_FAULT=POINT, run CMD (a docker
# command) in the background, wait until slackerd has killed itself at POINT (exit by
# SIGKILL, the fault line in its log), start it again without the fault on the same
# socket and state, and wait for CMD. Sets OP_RC to CMD's exit status: dockerd retries a
# plugin call whose connection broke for up to 30 s, so CMD may well succeed.
crash_during() {
  local point=$1 pid op i log=$W/$A-slackerd.log unclean
  shift
  stop_slackerd "$A"
  SLACKER_FAULT=$point start_slackerd "$A"
  # <state>/lock tells each start how the previous run ended: a clean stop here
  unclean=$(grep -c "event=previous_run_unclean" "$log" || true)
  [ "$unclean" = "$(cat "$W/unclean.count" 2>/dev/null || echo 0)" ] ||
    fail "slackerd warned of an unclean previous run after a clean stop"
  pid=$(slackerd_pid)
  ("$@" >"$W/op.out" 2>&1) &
  op=$!
  for ((i = 0; i < 600; i++)); do
    e2e_alive "$pid" || break
    sleep 0.1
  done
  if e2e_alive "$pid"; then
    wait "$op" || true
    fail "slackerd never reached fault point $point; op output: $(cat "$W/op.out")"
  fi
  for ((i = 0; i < 50; i++)); do
    [ -s "$W/.e2e/rc/slackerd-$A" ] && break
    sleep 0.1
  done
  assert_eq 137 "$(cat "$W/.e2e/rc/slackerd-$A")" "slackerd exit status (SIGKILL)"
  grep -q "event=fault_point point=$point " "$log" || fail "no fault_point line for $point in $log"
  e2e_log "slackerd died at $point; starting it again"
  start_slackerd "$A"
  assert_eq $((unclean + 1)) "$(grep -c "event=previous_run_unclean" "$log")" \
    "previous_run_unclean warnings in $log after the SIGKILL at $point"
  echo $((unclean + 1)) >"$W/unclean.count"
  OP_RC=0
  wait "$op" || OP_RC=$?
  e2e_log "interrupted op exited $OP_RC: $(tail -c 400 "$W/op.out")"
  if [ "$OP_RC" != 0 ]; then
    # A failure must say what failed, not hang or report success.
    [ -s "$W/op.out" ] || fail "the interrupted op failed without a message"
  fi
}

# run_images: every image in images.tsv runs and prints what it must.
run_images() {
  local tag cmd want got
  while IFS=$'\t' read -r tag cmd want; do
    want=$(printf '%b' "$want")
    got=$(dk w1 run --rm --network none "$tag" sh -c "$cmd") || fail "image $tag does not run"
    assert_eq "$want" "$got" "content of $tag"
  done <"$W/images.tsv"
}

# assert_no_leaks: with no containers left, slackerd holds no mount, no loop device and
# no volume or temp file, and slackerctl verify finds nothing.
assert_no_leaks() {
  local left
  mapfile -t left < <(dk w1 ps -aq)
  [ "${#left[@]}" -eq 0 ] || dk w1 rm -f "${left[@]}" >/dev/null
  e2e_settle "$STATE"
  if [ -n "${SHARED_LOWERS:-}" ]; then
    # Overlay form: the image snapshots' read-only lowers stay mounted (a warm page cache)
    # until dockerd's Cleanup; nothing else may be left.
    restart_dockerd w1
    assert_eq "" "$(e2e_mounts_under "$STATE/lower")" "shared lowers after dockerd's Cleanup"
    assert_eq "" "$(e2e_mounts_under "$STATE/root")" "overlays"
  fi
  assert_eq "" "$(e2e_mounts_under "$STATE/mnt" | e2e_no_spares)" "mounts under $STATE/mnt"
  assert_eq "" "$(e2e_mounts_under "$STATE/views")" "mounts under $STATE/views"
  assert_eq "" "$(e2e_loops_under "$STATE/store" | e2e_no_spares)" "loop devices backed by store files"
  assert_eq "" "$(e2e_entries "$STATE/store/volumes/$A" | e2e_no_spares)" "volume files"
  assert_eq "" "$(ls -A "$STATE/spool")" "spool files"
  assert_eq "" "$(find "$STATE/layers" -name '*.tmp-*')" "record temp files"
  local v
  v=$(ctl verify) || fail "slackerctl verify: $v"
}

# after_crash: what every case checks once slackerd is back.
after_crash() {
  dk w1 run --rm --network none bb:1 true || fail "dockerd cannot run a container after the crash"
  run_images
  assert_no_leaks
}

case_create() {
  crash_during create.after_record dk w1 create --network none --name cc bb:1 true
  if [ "$OP_RC" = 0 ]; then dk w1 rm cc >/dev/null; fi
  dk w1 create --network none --name cc2 bb:1 true >/dev/null
  dk w1 rm cc2 >/dev/null
  after_crash
}

# spare_case POINT: an init layer's Get that takes a spare volume (driver/spares.cc): the
# first run makes the spare, a later one takes it and meets the fault (the spare is made
# asynchronously, so the runs go on until one does; after the crash the rest just run).
spare_case() {
  crash_during "$1" runs_until_a_spare_is_taken
  after_crash
}
runs_until_a_spare_is_taken() {
  local i
  for ((i = 0; i < 20; i++)); do
    dk w1 run --rm --network none bb:1 true || return
  done
}

# get_case POINT: the first rw mount of `docker run` (the init layer's Get).
get_case() {
  crash_during "$1" dk w1 run --rm --network none bb:1 true
  after_crash
}

# apply_case POINT: docker import of a fresh 1 MiB rootfs.
apply_case() {
  local point=$1 tag out
  tag=imp-${point//./-}:1
  rootfs_tar "imp-$$-${point//./-}"
  crash_during "$point" dk w1 import "$W/imp-$$-${point//./-}.tar" "$tag"
  if [ "$OP_RC" != 0 ]; then
    e2e_log "import failed after the crash (clean error); importing again"
    dk w1 import "$W/imp-$$-${point//./-}.tar" "$tag" >/dev/null
  fi
  out=$(dk w1 run --rm --network none "$tag" /bin/cat /marker)
  assert_eq "imp-$$-${point//./-}" "$out" "imported marker"
  expect_image "$tag" 'cat /marker' "imp-$$-${point//./-}"
  after_crash
}

# diff_case POINT: docker commit of a running container that wrote a file.
diff_case() {
  local point=$1 tag out
  tag=commit-${point//./-}:1
  dk w1 run -d --network none --name dc bb:1 sh -c "echo $point >/committed; sleep 600" >/dev/null
  dk w1 exec dc cat /committed >/dev/null
  crash_during "$point" dk w1 commit dc "$tag"
  # The container must still be writable (a file system left frozen hangs here).
  out=$(timeout 20 "$DOCKER_BIN" -H "unix://$W/w1/docker.sock" exec dc sh -c 'echo ok >/after; cat /after') ||
    fail "container dc cannot write after the crash (frozen file system?)"
  assert_eq ok "$out" "write after the crash"
  if [ "$OP_RC" != 0 ]; then dk w1 commit dc "$tag" >/dev/null; fi
  out=$(dk w1 run --rm --network none "$tag" cat /committed)
  assert_eq "$point" "$out" "committed content"
  expect_image "$tag" 'cat /committed' "$point"
  dk w1 rm -f dc >/dev/null
  after_crash
}

# share_diff_case POINT: diff_case for a container in overlay form (driver/README.md
# "Shared page cache"): slackerd runs with --share-page-cache until the crash and comes
# back without it (a layer keeps its form whatever the option says).
share_diff_case() {
  stop_slackerd "$A"
  start_slackerd "$A" --share-page-cache
  SHARED_LOWERS=1 diff_case "$1"
}

# remove_case POINT: docker rm of a stopped container.
remove_case() {
  dk w1 run --network none --name rc bb:1 sh -c 'echo x >/y' >/dev/null
  crash_during "$1" dk w1 rm rc
  if dk w1 inspect rc >/dev/null 2>&1; then dk w1 rm -f rc >/dev/null; fi
  if dk w1 inspect rc >/dev/null 2>&1; then fail "container rc still exists after rm -f"; fi
  after_crash
}

# dockerd killed with SIGKILL while two containers run (its containerd and the shims
# live on), then started again: the containers start again and are removed, nothing
# leaks.
case_dockerd_kill9() {
  local pid i
  dk w1 run -d --network none --name k1 bb:1 sh -c 'echo 1 >/one; sleep 600' >/dev/null
  dk w1 run -d --network none --name k2 bb:2 sh -c 'sleep 600' >/dev/null
  pid=$(cat "$W/.e2e/pid/dockerd-w1")
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do
    e2e_alive "$pid" || break
    sleep 0.1
  done
  e2e_alive "$pid" && fail "dockerd survived SIGKILL"
  for ((i = 0; i < 50; i++)); do
    [ -s "$W/.e2e/rc/dockerd-w1" ] && break
    sleep 0.1
  done
  rm -f "$W/.e2e/pid/dockerd-w1"
  start_dockerd w1 "$A"
  dk w1 start k1 >/dev/null 2>&1 || dk w1 restart k1 >/dev/null
  assert_eq 1 "$(dk w1 exec k1 cat /one)" "k1's file after dockerd's crash"
  dk w1 start k2 >/dev/null 2>&1 || dk w1 restart k2 >/dev/null
  assert_eq built "$(dk w1 exec k2 cat /built)" "k2's image content"
  dk w1 rm -f k1 k2 >/dev/null
  after_crash
}

run_case create.after_record case_create
for p in get.after_clone get.after_attach get.after_mount clone.before_rename handover.after_rename handover.after_files; do
  run_case "$p" get_case "$p"
done
for p in spare.after_rename spare.after_record; do
  run_case "$p" spare_case "$p"
done
for p in apply.mid_spool apply.mid_extract apply.before_record; do
  run_case "$p" apply_case "$p"
done
for p in diff.while_frozen diff.after_snapshot; do
  run_case "$p" diff_case "$p"
done
for p in fold.after_fold diff.while_frozen; do
  run_case "share $p" share_diff_case "$p"
done
for p in remove.after_volume remove.after_record; do
  run_case "$p" remove_case "$p"
done
run_case dockerd_kill9 case_dockerd_kill9
e2e_summary
