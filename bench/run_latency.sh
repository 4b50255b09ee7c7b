#!/usr/bin/env bash
# docker run latency of a busybox image on slacker vs overlay2: the same dockerd build,
# two private daemons side by side, N runs each (default 10), medians and p90 printed.
#   bench/run_latency.sh [N]
# Not the full benchmark (bench/run, HelloBench-lite): one small image, warm caches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/e2e/lib.sh
. "$here/../test/e2e/lib.sh"
N=${1:-10}
e2e_workdir
S=slk$$r
start_slackerd "$S" >/dev/null
start_dockerd ov overlay2
start_dockerd sk "$S"
make_busybox_image ov bb:1
make_busybox_image sk bb:1
ms() { date +%s%N; }
stats() { sort -n | awk '{a[NR]=$1} END {printf "median_ms=%.1f p90_ms=%.1f min_ms=%.1f n=%d", a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[1], NR}'; }
for d in ov sk; do
  dk "$d" run --rm --network none bb:1 true  # warm-up
  for _ in $(seq "$N"); do
    t0=$(ms); dk "$d" run --rm --network none bb:1 true; t1=$(ms)
    echo $(((t1 - t0) / 100000)) | awk '{print $1/10}'
  done >"$W/$d.times"
done
echo "docker run --rm busybox true, $N runs each:"
echo "  overlay2: $(stats <"$W/ov.times")"
echo "  slacker:  $(stats <"$W/sk.times")"
paste "$W/ov.times" "$W/sk.times" | awk '{o+=$1; s+=$2} END {printf "  mean ratio slacker/overlay2 = %.2f\n", s/o}'
