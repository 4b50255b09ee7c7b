#!/usr/bin/env bash
# moby's graphdriver conformance suite (graphtest) against slackerd.
#
#   test/e2e/conformance.sh [go test args, e.g. -run CreateSnap]
#   CONFORMANCE_SLACKERD_ARGS=--share-page-cache test/e2e/conformance.sh
#
# Starts slackerd ($SLACKERD, default build/cmd/slackerd) with a private state dir and
# its own embedded store under /var/tmp/slacker-e2e.XXXXXX, runs the repository's
# harness test/conformance/run.sh against its socket (-timeout 30m: a stalled
# plugin costs ~30 s per call), stops slackerd, and checks that nothing stays mounted
# or attached. Root only.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

RUN_SH=$REPO/test/conformance/run.sh
NAME=slk$$gt
# go test runs with -timeout 30m; stop and clean up before ctest's TIMEOUT (2400 s).
export E2E_DEADLINE=${E2E_DEADLINE:-2300}
# run.sh talks to the socket directly: no plugin spec file for dockerd needed.
export E2E_PLUGIN_SPEC=0

e2e_workdir
echo "conformance: work dir $W, slackerd $SLACKERD"

# CONFORMANCE_SLACKERD_ARGS: more slackerd options (e.g. --share-page-cache), split on
# spaces.
setup() {
  local extra=()
  read -r -a extra <<<"${CONFORMANCE_SLACKERD_ARGS:-}"
  start_slackerd "$NAME" "${extra[@]}"
}

graphtest() {
  local out=$W/graphtest.out rc=0
  GRAPHTEST_NAME=$NAME bash "$RUN_SH" "$W/plugins/$NAME.sock" -timeout 30m "$@" 2>&1 |
    tee "$out" || rc=$?
  # run.sh keeps its temp dir, and says so, if the suite left something mounted there.
  if grep -q 'mounts left under' "$out"; then fail "graphtest left mounts behind"; fi
  [ "$rc" = 0 ] || fail "graphtest failed (status $rc)"
}

stop_clean() {
  stop_slackerd "$NAME" || fail "slackerd did not exit 0 on SIGTERM (log: $W/$NAME-slackerd.log)"
}

# slackerd keeps its embedded store mounted when it stops (by design, see lib.sh
# release_embedded_store); anything else still mounted, attached or running is a leak.
no_leaks() {
  assert_eq "" "$(e2e_mounts_under "$W" | grep -vxF "$(slackerd_state "$NAME")/store")" \
    "mounts left under $W after slackerd stopped (besides its embedded store)"
  release_embedded_store "$NAME" || fail "cannot release the embedded store"
  assert_eq "" "$(e2e_mounts_under "$W")" "mounts left under $W"
  assert_eq "" "$(e2e_loops_under "$W")" "loop devices left backed by files under $W"
  assert_eq "" "$(e2e_pids_under "$W")" "processes left running from $W"
}

run_case "start slackerd" setup
if [ "$E2E_FAILED" = 0 ]; then
  run_case "graphtest suite" graphtest "$@"
fi
run_case "slackerd stops cleanly" stop_clean
run_case "no mounts, loops or processes left" no_leaks
e2e_summary
