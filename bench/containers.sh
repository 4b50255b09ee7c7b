# shellcheck shell=bash
# Containers of the bench images for bench/run: create, start to ready, run, remove, and
# wiping a worker. Needs dk (test/e2e/lib.sh), batch_cmd (bench/images.sh), W and fail.

# run_rm WORKER REF: one `docker run --rm` of a batch image's workload, to its exit and
# removal (what a user of a batch container waits for); checks its output.
run_rm() {
  local out
  batch_cmd "$2"
  out=$(dk "$1" run --rm --network none "$2" "${CMD[@]}")
  [ "$out" = bench-ok ] || fail "docker run --rm $2 on $1 printed [$out], not bench-ok"
}

# create_c WORKER NAME REF KIND: docker create the image's workload (not started).
declare -A C_PORT C_READY
create_c() {
  local w=$1 name=$2 ref=$3 kind=$4 port dir
  case "$kind" in
    batch)
      batch_cmd "$ref"
      dk "$w" create --name "$name" --network none "$ref" "${CMD[@]}" >/dev/null
      ;;
    http)
      port=$(e2e_free_port)
      C_PORT[$name]=$port
      dk "$w" create --name "$name" --network host "$ref" \
        python3 -m http.server "$port" --bind 127.0.0.1 --directory /srv >/dev/null
      ;;
    loop)
      dir=$W/ready/$name
      mkdir -p "$dir"
      C_READY[$name]=$dir/ready
      dk "$w" create --name "$name" --network none -v "$dir:/ready" "$ref" \
        /usr/local/bin/bench-loop.sh >/dev/null
      ;;
  esac
}

# start_ready WORKER NAME KIND: start it and return once it is ready (bounded).
start_ready() {
  local w=$1 name=$2 kind=$3 out i
  case "$kind" in
    batch)
      out=$(dk "$w" start -a "$name")
      [ "$out" = bench-ok ] || fail "$name on $w printed [$out], not bench-ok"
      ;;
    http)
      dk "$w" start "$name" >/dev/null
      for ((i = 0; i < 6000; i++)); do
        out=$(curl -fsS --max-time 2 "http://127.0.0.1:${C_PORT[$name]}/index.html" 2>/dev/null) || out=""
        [[ "$out" == *bench-ok* ]] && return 0
        sleep 0.01
      done
      fail "$name on $w: http.server not answering after 60 s"
      ;;
    loop)
      dk "$w" start "$name" >/dev/null
      for ((i = 0; i < 6000; i++)); do
        [ -s "${C_READY[$name]}" ] && return 0
        sleep 0.01
      done
      fail "$name on $w: no ready file after 60 s"
      ;;
  esac
}

# run_ready WORKER NAME REF KIND: create_c + start_ready.
run_ready() {
  create_c "$1" "$2" "$3" "$4"
  start_ready "$1" "$2" "$4"
}

rm_c() { dk "$1" rm -f "$2" >/dev/null; }

# wipe_worker WORKER: no containers, no images (a worker "without the image").
wipe_worker() {
  local w=$1 ids
  mapfile -t ids < <(dk "$w" ps -aq)
  [ ${#ids[@]} -eq 0 ] || dk "$w" rm -f "${ids[@]}" >/dev/null
  # prune -a: every image no container uses, children before parents
  dk "$w" image prune -a -f >/dev/null
  [ -z "$(dk "$w" images -aq)" ] || fail "$w still has images after rmi"
}
