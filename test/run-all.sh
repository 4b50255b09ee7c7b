#!/usr/bin/env bash
# Builds slacker twice and runs every test label:
#   build/       RelWithDebInfo: unit, root and e2e tests (e2e drives real dockerds,
#                so it runs against the normal build only)
#   build-asan/  -DSLACKER_SANITIZE=ON (ASan + UBSan): unit and root tests
#   build-fuzz/  -DSLACKER_FUZZ=ON (clang, libFuzzer + ASan + UBSan): test/fuzz/run.sh
#   build-tsa/   -DSLACKER_THREAD_SAFETY=ON (clang -Wthread-safety as errors): builds the
#                annotated libraries (driver, loopdev, common), runs nothing
# Root is needed for the root and e2e labels. Runs everything even after a failure,
# prints each ctest summary at the end, and exits non-zero if anything failed.
#   test/run-all.sh
# Environment: JOBS (build parallelism, default nproc).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
jobs=${JOBS:-$(nproc)}
# ccache keyed on paths relative to the checkout. With -g ccache also hashes the working
# directory (hash_dir), so only a clone at the same path (CI cloning afresh into one
# directory) reuses the previous build's objects; a clone elsewhere compiles everything
# (CCACHE_NOHASHDIR with -fdebug-prefix-map would change that; not set).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$repo}
logs=$(mktemp -d /tmp/slacker-run-all.XXXXXX)
failed=()
summaries=()

# step NAME CMD...: run CMD, keep going on failure, remember it.
step() {
  local name=$1
  shift
  echo "==> $name: $*"
  if "$@"; then
    echo "==> $name: ok"
  else
    echo "==> $name: FAILED (status $?)"
    failed+=("$name")
    return 1
  fi
}

# run_ctest NAME DIR LABELS: ctest with its output also kept for the final summary.
run_ctest() {
  local name=$1 dir=$2 labels=$3 rc=0
  echo "==> $name: ctest --test-dir $dir -L '$labels'"
  ctest --test-dir "$dir" -L "$labels" --output-on-failure 2>&1 | tee "$logs/$name.log" || rc=$?
  # ctest's own summary: "N% tests passed, N tests failed out of N" and the failures.
  summaries+=("$name ($dir, -L '$labels'):"$'\n'"$(sed -n '/tests passed/,$p' "$logs/$name.log")")
  if [ "$rc" != 0 ]; then
    echo "==> $name: FAILED (status $rc)"
    failed+=("$name")
  fi
}

if step configure cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
  step build cmake --build build -j"$jobs"; then
  built=1
else
  built=0
fi
if step configure-asan cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLACKER_SANITIZE=ON &&
  step build-asan cmake --build build-asan -j"$jobs"; then
  built_asan=1
else
  built_asan=0
fi

# The lock rules (common/thread_annotations.h): clang -Wthread-safety as errors over the
# annotated libraries and what they include.
tsa_targets=(slacker_common slacker_http slacker_loopdev slacker_driver slacker_snapshotter)
if step configure-thread-safety cmake -S . -B build-tsa -DCMAKE_BUILD_TYPE=Debug -DSLACKER_THREAD_SAFETY=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14; then
  step thread-safety cmake --build build-tsa -j"$jobs" --target "${tsa_targets[@]}" || true
fi

if [ "$(id -u)" != 0 ]; then
  echo "run-all: not root: the root and e2e tests will fail" >&2
fi
[ "$built_asan" = 0 ] || run_ctest asan build-asan 'unit|root'
[ "$built" = 0 ] || run_ctest release build 'unit|root|e2e'
# libFuzzer targets, FUZZ_SECONDS each (default 60): builds build-fuzz/ with clang.
step fuzz bash test/fuzz/run.sh || true

echo
echo "==================== summary ===================="
for s in "${summaries[@]}"; do
  echo "$s"
  echo
done
rm -rf "$logs"
if [ ${#failed[@]} -ne 0 ]; then
  echo "run-all: FAILED: ${failed[*]}"
  exit 1
fi
echo "run-all: everything passed"
