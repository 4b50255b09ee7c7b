#!/usr/bin/env bash
# Full store: slackerd on a small XFS store (FULL_STORE_SIZE, default 400M) that fills up
#  - during ApplyDiff (docker import of a layer bigger than the free space): the import
#    fails with slacker's ENOSPC message naming the store, nothing is left behind;
#  - through a container's writes (dd until the store is full): the writer fails, and a
#    new container (a clone) then either starts or fails with a message;
# and in every case the images that were complete still run with the same content
# (sha256 of a 20 MiB file), `slackerctl verify` is clean, and once the space is freed
# (the filling container removed) imports, clones and writes work again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_slackerctl
e2e_workdir

A=slk$$s
make_shared_store "$W/store" "${FULL_STORE_SIZE:-400M}"
start_slackerd "$A" --store "$W/store"
start_dockerd w1 "$A"
STATE=$(slackerd_state "$A")
ctl() { "$SLACKERCTL" --state "$STATE" --store "$W/store" --host-id "$A" --docker-host "unix://$W/w1/docker.sock" "$@"; }
make_busybox_image w1 bb:1
mkdir -p "$W/ctx"
head -c $((20 << 20)) /dev/urandom >"$W/ctx/blob"
SUM=$(sha256sum <"$W/ctx/blob" | cut -d' ' -f1)
printf 'FROM bb:1\nCOPY blob /blob\n' >"$W/ctx/Dockerfile"
dk w1 build -q --network none -t bb:blob "$W/ctx" >/dev/null
rm -f "$W/ctx/blob"

free_mb() { df -m --output=avail "$W/store" | tail -1 | tr -d ' '; }

# The complete images still run, with their content intact.
assert_images_intact() {
  dk w1 run --rm --network none bb:1 true || fail "bb:1 does not run"
  assert_eq "$SUM" "$(dk w1 run --rm --network none bb:blob sh -c 'sha256sum /blob | cut -d" " -f1')" \
    "content of bb:blob"
  local v
  v=$(ctl verify) || fail "slackerctl verify: $v"
}

# big_rootfs NAME MB: a rootfs tar with MB MiB of random data.
big_rootfs() {
  local r=$W/rootfs-$1
  mkdir -p "$r/bin"
  cp /bin/busybox "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  head -c $(($2 << 20)) /dev/urandom >"$r/data"
  tar -C "$r" -cf "$W/$1.tar" .
  rm -rf "$r"
}

case_apply_diff_fills_store() {
  local mb out rc=0
  mb=$(($(free_mb) + 50))
  e2e_log "store has $(free_mb) MiB free; importing a ${mb} MiB layer"
  big_rootfs big "$mb"
  out=$(dk w1 import "$W/big.tar" big:1 2>&1) || rc=$?
  rm -f "$W/big.tar"
  [ "$rc" != 0 ] || fail "an import larger than the store succeeded"
  assert_contains "$out" "is full" "import error"
  assert_contains "$out" "$W/store" "import error names the store"
  assert_eq "" "$(e2e_entries "$STATE/store/volumes/$A" | e2e_no_spares)$(e2e_entries "$W/store/volumes/$A" | e2e_no_spares)" "volume files"
  assert_eq "" "$(ls -A "$STATE/spool")" "spool files"
  assert_images_intact
  big_rootfs small 20
  dk w1 import "$W/small.tar" small:1 >/dev/null
  dk w1 run --rm --network none small:1 sh -c '[ -s /data ]' || fail "small import after the refusal"
}

case_container_fills_store() {
  local out rc=0
  dk w1 run -d --network none --name filler bb:1 sh -c \
    'dd if=/dev/urandom of=/fill bs=1M 2>/dev/null; sync; echo dd-done; sleep 600' >/dev/null
  for ((i = 0; i < 300; i++)); do
    [ "$(free_mb)" -lt 5 ] && break
    sleep 0.5
  done
  e2e_log "store free after the filler: $(free_mb) MiB"
  [ "$(free_mb)" -lt 5 ] || fail "the filler did not fill the store"
  # A clone on a full store: starts (reflinks need almost nothing) or fails with a message.
  out=$(timeout 120 "$DOCKER_BIN" -H "unix://$W/w1/docker.sock" run --rm --network none bb:1 echo started 2>&1) || rc=$?
  e2e_log "run on a full store: status $rc: $out"
  [ "$rc" = 0 ] || [ -n "$out" ] || fail "run on a full store failed without a message"
  [ "$rc" != 124 ] || fail "run on a full store hung"
  # Space freed.
  dk w1 rm -f filler >/dev/null
  for ((i = 0; i < 100; i++)); do
    [ "$(free_mb)" -gt 100 ] && break
    sleep 0.2
  done
  [ "$(free_mb)" -gt 100 ] || fail "space not freed after removing the filler ($(free_mb) MiB free)"
  assert_images_intact
  assert_eq "written" "$(dk w1 run --rm --network none bb:1 sh -c 'echo written >/w; sync; cat /w')" "write after freeing"
  e2e_settle "$STATE"
  assert_eq "" "$(e2e_mounts_under "$STATE/mnt" | e2e_no_spares)" "mounts under $STATE/mnt"
  assert_eq "" "$(e2e_loops_under "$W/store" | e2e_no_spares)" "loop devices on store files"
  assert_eq "" "$(e2e_entries "$W/store/volumes/$A" | e2e_no_spares)" "volume files"
}

run_case apply_diff_fills_store case_apply_diff_fills_store
run_case container_fills_store case_container_fills_store
e2e_summary
