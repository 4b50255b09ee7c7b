#!/usr/bin/env bash
# Load: LOAD_CONTAINERS (default 50) `docker run -d` from one image at once, all must
# start; their start latencies (p50/p95/max, seconds) are printed; then all are removed
# and nothing is left: no mount, no loop device on a store file, no volume file, the
# same layer records as before. Then LOAD_BUILDS (default 10) classic `docker build`s at
# once, each with its own content: all succeed, each image holds its own content, and
# after `docker rmi` nothing is left either.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${LOAD_CONTAINERS:-50}
B=${LOAD_BUILDS:-10}
e2e_workdir

A=slk$$l
start_slackerd "$A"
start_dockerd w1 "$A"
STATE=$(slackerd_state "$A")
make_busybox_image w1 bb:1

records() { find "$STATE/layers" -name '*.json' | sort; }

assert_nothing_left() {
  assert_eq "" "$(dk w1 ps -aq)" "containers"
  e2e_settle "$STATE"
  assert_eq "" "$(e2e_mounts_under "$STATE/mnt" | e2e_no_spares)" "mounts under $STATE/mnt"
  assert_eq "" "$(e2e_mounts_under "$STATE/views")" "mounts under $STATE/views"
  assert_eq "" "$(e2e_loops_under "$STATE/store" | e2e_no_spares)" "loop devices on store files"
  assert_eq "" "$(e2e_entries "$STATE/store/volumes/$A" | e2e_no_spares)" "volume files"
  assert_eq "$1" "$(records)" "layer records"
}

case_parallel_runs() {
  local before i ok p running
  before=$(records)
  mkdir -p "$W/lat"
  for ((i = 1; i <= N; i++)); do
    (
      s=$(date +%s.%N)
      if dk w1 run -d --network none --name "l$i" bb:1 sleep 600 >"$W/lat/$i.out" 2>&1; then
        e=$(date +%s.%N)
        echo "$s $e" >"$W/lat/$i.lat"
      fi
    ) &
  done
  wait
  ok=$(find "$W/lat" -name '*.lat' | wc -l)
  running=$(dk w1 ps -q | wc -l)
  if [ "$ok" != "$N" ] || [ "$running" != "$N" ]; then
    for ((i = 1; i <= N; i++)); do
      [ -e "$W/lat/$i.lat" ] || e2e_log "run l$i failed: $(cat "$W/lat/$i.out")"
    done
    mapfile -t ids < <(dk w1 ps -aq)
    [ "${#ids[@]}" -eq 0 ] || dk w1 rm -f "${ids[@]}" >/dev/null
    fail "$ok of $N containers started, $running running"
  fi
  p=$(cat "$W/lat"/*.lat | python3 -c '
import sys
d = sorted(float(e) - float(s) for s, e in (l.split() for l in sys.stdin))
q = lambda f: d[min(len(d) - 1, int(round(f * (len(d) - 1))))]
print("%d containers: start latency p50 %.2fs p95 %.2fs max %.2fs" % (len(d), q(0.5), q(0.95), d[-1]))')
  echo "LOAD: $p"
  echo "$p" >"$W/load-result.txt"
  mapfile -t ids < <(dk w1 ps -aq)
  dk w1 rm -f "${ids[@]}" >/dev/null
  assert_nothing_left "$before"
}

case_parallel_builds() {
  local before i ok
  before=$(records)
  for ((i = 1; i <= B; i++)); do
    mkdir -p "$W/ctx$i"
    printf 'FROM bb:1\nRUN echo build-%d >/b && mkdir -p /d%d\nRUN echo second >/d%d/s\n' "$i" "$i" "$i" \
      >"$W/ctx$i/Dockerfile"
    (dk w1 build -q --network none -t "lb$i" "$W/ctx$i" >"$W/build$i.out" 2>&1 && touch "$W/build$i.ok") &
  done
  wait
  ok=0
  for ((i = 1; i <= B; i++)); do
    if [ -e "$W/build$i.ok" ]; then ok=$((ok + 1)); else e2e_log "build $i failed: $(cat "$W/build$i.out")"; fi
  done
  assert_eq "$B" "$ok" "builds that succeeded"
  for ((i = 1; i <= B; i++)); do
    assert_eq "build-$i second" "$(dk w1 run --rm --network none "lb$i" sh -c "cat /b /d$i/s | tr '\n' ' ' | sed 's/ \$//'")" \
      "content of lb$i"
  done
  for ((i = 1; i <= B; i++)); do dk w1 rmi "lb$i" >/dev/null; done
  assert_nothing_left "$before"
}

run_case parallel_runs case_parallel_runs
run_case parallel_builds case_parallel_builds
e2e_summary
