#!/usr/bin/env bash
# One holder per host id, and gc against busy workers (issue 16; storage_backend/STORE.md).
# Two slackerds (A, B) on one shared reflink store, two private dockerds, one registry.
# - A second slackerd with A's host id (another state dir), or on A's state dir, refuses
#   to start naming the holder; A's running container and its files survive.
# - slackerctl status/verify leave a clone temp file of A's volume dir alone.
# - gc --delete runs (min-age 0, a short grace) over and over while B pulls images whose
#   standard layers A unpacked (chains/ dedup), runs, commits, pushes and removes them,
#   and A drops and re-pulls the same layers: afterwards every image still runs with its
#   content, verify is clean on both workers, and gc deleted the garbage and pruned
#   chains/ entries of deleted snapshots.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_slackerctl
e2e_workdir

make_shared_store "$W/store"
A=slk$$a
B=slk$$b
start_slackerd "$A" --store "$W/store"
start_slackerd "$B" --store "$W/store"
REG=$(start_registry)
start_dockerd wa "$A" --insecure-registry "$REG"
start_dockerd wb "$B" --insecure-registry "$REG"
make_busybox_image wa "$REG/base:1"
dk wa push "$REG/base:1" >/dev/null

# jq-less JSON field access: jget JSON PYTHON-EXPR (the parsed document is `d`).
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
ctl() {
  local host=$1
  shift
  "$SLACKERCTL" --state "$(slackerd_state "$host")" --store "$W/store" --host-id "$host" "$@"
}

case_second_holder_of_a_host_id_refuses_to_start() {
  dk wa run -d --name keep --network none "$REG/base:1" sh -c 'echo kept > /kept; sleep 100000' >/dev/null
  local out rc=0
  out=$(timeout 60 "$SLACKERD" --socket "$W/dup.sock" --state "$W/dup-state" --store "$W/store" \
    --host-id "$A" 2>&1) || rc=$?
  assert_eq 1 "$rc" "exit status of a second slackerd with host id $A"
  assert_contains "$out" "is held by slackerd pid" "its error"
  assert_contains "$out" "since" "its error"
  rc=0
  out=$(timeout 60 "$SLACKERD" --socket "$W/dup2.sock" --state "$(slackerd_state "$A")" --store "$W/store" \
    --host-id "${A}x" 2>&1) || rc=$?
  assert_eq 1 "$rc" "exit status of a second slackerd on A's state dir"
  assert_contains "$out" "is in use by slackerd pid" "its error"
  [ ! -e "$W/dup.sock" ] || fail "the refused slackerd listened"
  assert_eq kept "$(dk wa exec keep cat /kept)" "A's running container after the refused starts"
  dk wa run --rm --network none "$REG/base:1" true || fail "A no longer serves new containers"
}

case_status_and_verify_leave_clone_temp_files_alone() {
  local tmp
  tmp="$W/store/volumes/$A/inflight.img.tmp-0123abcd"
  echo canary >"$tmp"
  chmod 0600 "$tmp"
  touch -d '2 hours ago' "$tmp"
  ctl "$A" status >/dev/null
  ctl "$A" verify >/dev/null || true
  ctl "$A" gc --registry "http://$REG" >/dev/null
  [ -e "$tmp" ] || fail "slackerctl deleted $tmp, a clone A may have in flight"
  assert_eq canary "$(cat "$tmp")" "its content"
  assert_eq 600 "$(stat -c %a "$tmp")" "its mode"
  ctl "$A" gc --registry "http://$REG" --delete --min-age 0 --grace 0 >/dev/null
  [ -e "$tmp" ] || fail "gc --delete removed a temp file of $A while A holds its lease"
  rm -f "$tmp"
}

# An image of one standard layer that no worker holds: its snapshot is known to the
# store only through chains/ (the registry has the tar itself), so gc may delete it
# whenever no worker has it, while the workers keep pulling it (dedup through chains/).
DEDUP_VALUE="dedup-$$-$RANDOM"
make_dedup_image() {
  local r
  r=$(mktemp -d "$W/dedup.XXXXXX")
  mkdir -p "$r/bin" "$r/tmp" "$r/proc" "$r/sys" "$r/dev" "$r/etc"
  cp /bin/busybox "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  ln -s busybox "$r/bin/cat"
  echo "$DEDUP_VALUE" >"$r/dedup"
  tar --numeric-owner -C "$r" -c . | dk wa import - "$REG/dedup:1" >/dev/null
  rm -rf "$r"
  dk wa push "$REG/dedup:1" >/dev/null
  dk wa rmi "$REG/dedup:1" >/dev/null
}

# B: pull (a chains/ dedup hit, or an unpack if gc took the snapshot), run, commit, push,
# remove; A: pull, run, remove. ITERATIONS rounds; a failure goes to $W/worker-failed.
worker_b() {
  local i
  for ((i = 0; i < ITERATIONS; i++)); do
    if ! { dk wb pull "$REG/dedup:1" >/dev/null &&
      dk wb run --name "b$i" --network none "$REG/dedup:1" sh -c "cat /dedup > /round; echo $i >> /round" >/dev/null &&
      dk wb commit "b$i" "$REG/b:$i" >/dev/null &&
      dk wb push "$REG/b:$i" >/dev/null &&
      dk wb rm "b$i" >/dev/null &&
      dk wb rmi "$REG/b:$i" "$REG/dedup:1" >/dev/null; }; then
      echo "B round $i" >>"$W/worker-failed"
      return
    fi
  done
}
worker_a() {
  local i
  for ((i = 0; i < ITERATIONS; i++)); do
    if ! { dk wa pull "$REG/dedup:1" >/dev/null &&
      [ "$(dk wa run --rm --network none "$REG/dedup:1" cat /dedup)" = "$DEDUP_VALUE" ] &&
      dk wa rmi "$REG/dedup:1" >/dev/null; }; then
      echo "A round $i" >>"$W/worker-failed"
      return
    fi
  done
}

case_gc_while_workers_pull_commit_and_reuse_layers_loses_nothing() {
  ITERATIONS=8
  rm -f "$W/worker-failed"
  make_dedup_image
  # Garbage: a committed image whose tag and container are gone.
  dk wa run --name junk --network none "$REG/base:1" sh -c 'echo junk > /junk' >/dev/null
  dk wa commit junk junk:1 >/dev/null
  dk wa rm junk >/dev/null
  dk wa rmi junk:1 >/dev/null
  worker_b &
  local pb=$!
  worker_a &
  local pa=$!
  local rounds=0 out deleted=0 claimed=0
  while kill -0 "$pb" 2>/dev/null || kill -0 "$pa" 2>/dev/null; do
    out=$(ctl "$A" gc --registry "http://$REG" --delete --min-age 0 --grace 1 --json) ||
      fail "gc failed: $out"
    deleted=$((deleted + $(jget "$out" 'len(d["deletable"])')))
    claimed=$((claimed + $(jget "$out" 'len(d["kept_claimed"])')))
    rounds=$((rounds + 1))
  done
  wait "$pb" "$pa"
  [ ! -e "$W/worker-failed" ] || fail "workers failed while gc ran: $(cat "$W/worker-failed")"
  e2e_log "$rounds gc runs while the workers ran: $deleted snapshots deleted, $claimed kept as claimed meanwhile"
  [ "$rounds" -ge 2 ] || fail "gc ran only $rounds times"
  [ "$deleted" -ge 1 ] || fail "gc deleted nothing (not even the junk commit)"
  # Everything still named runs with its content.
  local i
  for ((i = 0; i < ITERATIONS; i++)); do
    dk wa pull "$REG/b:$i" >/dev/null || fail "pull b:$i on A"
    assert_eq "$DEDUP_VALUE $i" "$(dk wa run --rm --network none "$REG/b:$i" cat /round | tr '\n' ' ' | sed 's/ $//')" \
      "image b:$i on A"
  done
  dk wb pull "$REG/dedup:1" >/dev/null
  assert_eq "$DEDUP_VALUE" "$(dk wb run --rm --network none "$REG/dedup:1" cat /dedup)" "dedup:1 on B"
  assert_eq kept "$(dk wa exec keep cat /kept)" "A's long-running container"
  out=$(ctl "$A" verify) || fail "verify on A: $out"
  out=$(ctl "$B" verify) || fail "verify on B: $out"
  # A last gc: no chains/ entry may name a deleted snapshot, no tombstone is left.
  ctl "$A" gc --registry "http://$REG" --delete --min-age 0 --grace 0 >/dev/null
  local key snap hidden
  for key in "$W/store/chains"/*; do
    [ -e "$key" ] || continue
    snap=$(head -c 32 "$key")
    [ -e "$W/store/snapshots/$snap.img" ] || fail "chains/$(basename "$key") names deleted snapshot $snap"
  done
  for hidden in "$W/store/snapshots"/*.gc; do
    [ ! -e "$hidden" ] || fail "a gc tombstone was left behind: $hidden"
  done
  assert_eq kept "$(dk wa exec keep cat /kept)" "A's long-running container after the last gc"
}

run_case second_holder_of_a_host_id_refuses_to_start case_second_holder_of_a_host_id_refuses_to_start
run_case status_and_verify_leave_clone_temp_files_alone case_status_and_verify_leave_clone_temp_files_alone
run_case gc_while_workers_pull_commit_and_reuse_layers_loses_nothing \
  case_gc_while_workers_pull_commit_and_reuse_layers_loses_nothing
e2e_summary
