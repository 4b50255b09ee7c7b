#!/usr/bin/env bash
# Builds the libFuzzer targets (ASan + UBSan) in build-fuzz/ and runs each for a bounded
# time from its committed seed corpus (test/fuzz/corpus/<target>/). New inputs go to a
# scratch corpus, not into the repo. A crash, leak, sanitizer report or timeout fails
# the run; the reproducer is kept in build-fuzz/artifacts/ and printed (add it to the
# seed corpus with the fix).
#   test/fuzz/run.sh                 # 60 s per target
#   FUZZ_SECONDS=600 test/fuzz/run.sh
# Environment: FUZZ_SECONDS (default 60), CC/CXX (default clang-14/clang++-14), JOBS.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${FUZZ_SECONDS:-60}
cc=${CC:-clang-14}
cxx=${CXX:-clang++-14}
command -v "$cxx" >/dev/null || {
  echo "fuzz: $cxx not installed (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
}
build=$repo/build-fuzz
targets=(tar_reader tar_apply reference plugin_request trace)
cmake -S "$repo" -B "$build" -DSLACKER_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$build" -j"${JOBS:-$(nproc)}" --target "${targets[@]/%/_fuzz}"

mkdir -p "$build/artifacts"
failed=()
for t in "${targets[@]}"; do
  work=$(mktemp -d "$build/corpus-$t.XXXXXX")
  echo "==> fuzz $t for ${seconds}s"
  if "$build/test/fuzz/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1 \
    "$work" "$repo/test/fuzz/corpus/$t" 2>"$build/$t.log"; then
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$build/$t.log" | sed "s/^/    $t /"
    echo "==> fuzz $t: ok"
  else
    tail -n 40 "$build/$t.log"
    echo "==> fuzz $t: FAILED; reproducer: $(find "$build/artifacts" -name "$t-*" | head -1)"
    failed+=("$t")
  fi
  rm -rf "$work"
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: every target ran ${seconds}s without a finding"
