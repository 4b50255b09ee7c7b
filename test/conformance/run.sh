#!/usr/bin/env bash
# moby's graphdriver conformance suite (graphtest) against a plugin socket.
#
#   run.sh SOCKET [go test args]    e.g. -run CreateSnap, or -run XXX -bench .
#   run.sh --self-test              the harness's own tests (no plugin, no root)
#
# Builds go/slackerconformance offline in GOPATH mode against Debian's Go sources
# and runs it with go test -v. Passes GRAPHTEST_NAME and GRAPHTEST_OPTS through
# (README.md). Exit status: go test's, and 1 if any test skipped (nothing in this
# suite may skip: a skipped test did not run).
set -euo pipefail
usage="usage: run.sh SOCKET [go test args] | run.sh --self-test"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }

self_test=0
if [ "$1" = --self-test ]; then
  self_test=1
else
  socket=$1
  [ -S "$socket" ] || { echo "run.sh: $socket is not a socket (start the plugin first)" >&2; exit 2; }
fi
shift

gosrc=/usr/share/gocode/src
need=()
command -v go >/dev/null || need+=(golang-go)
[ -d $gosrc/github.com/docker/docker/daemon/graphdriver/graphtest ] || need+=(golang-github-docker-docker-dev)
[ -d $gosrc/github.com/vbatts/tar-split/tar ] || need+=(golang-github-vbatts-tar-split-dev)
[ -d $gosrc/gotest.tools/assert ] || need+=(golang-github-gotestyourself-gotest.tools-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "run.sh: missing Debian packages: apt-get install -y ${need[*]}" >&2
  exit 2
fi
if [ $self_test = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "run.sh: warning: not root; the suite chowns files and the plugin mounts: expect failures" >&2
fi

# A private GOPATH in front of Debian's: our package, plus the import paths
# moby's sources use that Debian lays out differently (gotest.tools v3 without
# its /v3 suffix) or leaves out (plugin/v2, quota: go/stubs says why).
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/slacker-conformance.XXXXXX)
# shellcheck disable=SC2317  # run by the trap
remove_work() {
  # graphtest makes each driver's ROOT under $work/tmp: never delete into a mount.
  if grep -qF " $work/" /proc/self/mountinfo; then
    echo "run.sh: mounts left under $work; not deleting it" >&2
  else
    rm -rf "$work"
  fi
}
trap remove_work EXIT
gopath=$work/gopath
mkdir -p "$work/tmp" "$gopath/src/gotest.tools" "$gopath/src/github.com/docker/docker/plugin"
ln -s "$gosrc/gotest.tools" "$gopath/src/gotest.tools/v3"
ln -s "$here/go/slackerconformance" "$gopath/src/slackerconformance"
ln -s "$here/go/stubs/pluginv2" "$gopath/src/github.com/docker/docker/plugin/v2"
ln -s "$here/go/stubs/quota" "$gopath/src/github.com/docker/docker/quota"
export GO111MODULE=off GOFLAGS='' GOPATH="$gopath:/usr/share/gocode"
export GOCACHE="${GOCACHE:-/var/tmp/slacker-conformance-gocache}" TMPDIR="$work/tmp"
if [ $self_test = 1 ]; then
  set -- -run '^TestHarness' "$@"
else
  SLACKER_CONFORMANCE_SOCKET=$(readlink -f "$socket")
  export SLACKER_CONFORMANCE_SOCKET
fi

cd "$gopath/src/slackerconformance"
set +e
go test -count=1 -v "$@" . 2>&1 | tee "$work/out"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -c '^--- PASS' "$work/out" || true)
failed=$(grep -c '^--- FAIL' "$work/out" || true)
skipped=$(grep -c '^--- SKIP' "$work/out" || true)
echo "graphtest: $passed passed, $failed failed, $skipped skipped"
if [ "$rc" = 0 ] && [ "$skipped" != 0 ]; then
  echo "run.sh: $skipped test(s) skipped: the suite did not run in full" >&2
  rc=1
fi
exit "$rc"
