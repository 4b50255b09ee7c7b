# shellcheck shell=bash
# The benchmark's images (sourced by bench/run): their root file systems, built once
# with debootstrap and cached as tarballs in $BENCH_CACHE (default
# /var/tmp/slacker-bench-cache), and the Dockerfile that builds each image natively on
# a worker (`docker build`, the same on overlay2 and slacker).
#
#   minbase  Debian 12 --variant=minbase                    workload: sh -c 'echo'
#   python3  minbase + python3                             workload: python3 -c print
#   gcc      minbase + gcc + libc6-dev                      workload: compile and run hello.c
#   fat      minbase + a layer of BENCH_FAT_MIB (1024) MiB of random data the workload
#            never reads                                    workload: sh -c 'echo'
#   http     python3 + /srv/index.html                      service: http.server answers
#   loop     minbase + a shell loop writing /ready/ready    service: the ready file appears
#
# Every image is built FROM scratch (or FROM another bench image) with ADD/COPY, by
# `docker build` on the worker that pushes it: on slacker the layers are then native
# slacker layers (committed snapshots) and push out as reference tars, which is how a
# slacker cluster builds images. An image imported with `docker import` would keep its
# standard tar layers and push out as standard tars (by design); see bench/README.md.

BENCH_CACHE=${BENCH_CACHE:-/var/tmp/slacker-bench-cache}
BENCH_MIRROR=${BENCH_MIRROR:-http://deb.debian.org/debian}
BENCH_SUITE=${BENCH_SUITE:-bookworm}
BENCH_FAT_MIB=${BENCH_FAT_MIB:-1024}
# shellcheck disable=SC2034 # used by bench/run
BENCH_ALL_IMAGES=(minbase python3 gcc fat http loop)

# bench_image_base NAME: the bench image NAME is built FROM (empty: FROM scratch).
bench_image_base() {
  case "$1" in
    fat | loop) echo minbase ;;
    http) echo python3 ;;
    *) echo "" ;;
  esac
}

# bench_image_kind NAME: batch (runs to completion, prints bench-ok), http or loop.
bench_image_kind() {
  case "$1" in
    http | loop) echo "$1" ;;
    *) echo batch ;;
  esac
}

# bench_batch_cmd NAME: BENCH_CMD = the workload of batch image NAME (it prints bench-ok
# and exits).
# shellcheck disable=SC2034 # used by bench/run and bench/run_cri.sh
BENCH_CMD=()
# shellcheck disable=SC2034
bench_batch_cmd() {
  case "$1" in
    python3) BENCH_CMD=(python3 -c 'print("bench-ok")') ;;
    gcc) BENCH_CMD=(sh -c 'printf "#include <stdio.h>\nint main(void){puts(\"bench-ok\");return 0;}\n" >/tmp/h.c && gcc -o /tmp/h /tmp/h.c && /tmp/h') ;;
    *) BENCH_CMD=(sh -c 'echo bench-ok') ;;
  esac
}

# bench_rootfs_tar NAME: path of the cached rootfs tarball of a debootstrap image
# (minbase, python3, gcc), building it on first use.
bench_rootfs_tar() {
  local name=$1 include="" tar r
  case "$name" in
    minbase) ;;
    python3) include=python3 ;;
    gcc) include=gcc,libc6-dev ;;
    *)
      echo "bench: no rootfs for $name" >&2
      return 1
      ;;
  esac
  tar=$BENCH_CACHE/$name.tar
  if [ ! -s "$tar" ]; then
    mkdir -p "$BENCH_CACHE"
    r=$BENCH_CACHE/$name.rootfs.tmp
    rm -rf "$r"
    echo "[bench $(date +%T)] debootstrap $name (once; cached in $tar; a few minutes)" >&2
    debootstrap --variant=minbase ${include:+--include=$include} "$BENCH_SUITE" "$r" \
      "$BENCH_MIRROR" >"$BENCH_CACHE/$name.debootstrap.log" 2>&1 || {
      echo "bench: debootstrap $name failed; see $BENCH_CACHE/$name.debootstrap.log" >&2
      return 1
    }
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
    tar --numeric-owner -C "$r" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$r"
  fi
  echo "$tar"
}

# bench_fat_blob: path of the cached BENCH_FAT_MIB MiB file of random bytes.
bench_fat_blob() { bench_random_blob "$BENCH_FAT_MIB" fat; }

# bench_random_blob MIB NAME: path of the cached file of MIB MiB of random bytes
# NAME-MIBM.bin (written once; incompressible, as model weights are).
bench_random_blob() {
  local f=$BENCH_CACHE/$2-${1}M.bin
  if [ ! -s "$f" ]; then
    mkdir -p "$BENCH_CACHE"
    echo "[bench $(date +%T)] writing $1 MiB of random data to $f (once)" >&2
    head -c "$(($1 << 20))" /dev/urandom >"$f.tmp" && mv "$f.tmp" "$f"
  fi
  echo "$f"
}

# bench_build_context NAME CTXDIR REG: fill CTXDIR with NAME's Dockerfile and files.
# Large files are hard-linked from the cache (same file system: /var/tmp).
bench_build_context() {
  local name=$1 ctx=$2 reg=$3 base src
  mkdir -p "$ctx"
  base=$(bench_image_base "$name")
  case "$name" in
    minbase | python3 | gcc)
      src=$(bench_rootfs_tar "$name") || return
      ln "$src" "$ctx/rootfs.tar" 2>/dev/null || cp "$src" "$ctx/rootfs.tar"
      printf 'FROM scratch\nADD rootfs.tar /\n' >"$ctx/Dockerfile"
      ;;
    fat)
      src=$(bench_fat_blob) || return
      ln "$src" "$ctx/data.bin" 2>/dev/null || cp "$src" "$ctx/data.bin"
      printf 'FROM %s\nCOPY data.bin /opt/fat/data.bin\n' "$reg/bench-$base:1" >"$ctx/Dockerfile"
      ;;
    http)
      echo "<html><body>bench-ok</body></html>" >"$ctx/index.html"
      printf 'FROM %s\nCOPY index.html /srv/index.html\n' "$reg/bench-$base:1" >"$ctx/Dockerfile"
      ;;
    loop)
      cat >"$ctx/bench-loop.sh" <<'EOF'
#!/bin/sh
# Writes /ready/ready every 100 ms (atomically, by rename) until stopped.
i=0
while :; do
  i=$((i + 1))
  echo "$i" >/ready/ready.tmp && mv /ready/ready.tmp /ready/ready
  sleep 0.1
done
EOF
      chmod 0755 "$ctx/bench-loop.sh"
      printf 'FROM %s\nCOPY bench-loop.sh /usr/local/bin/bench-loop.sh\n' "$reg/bench-$base:1" >"$ctx/Dockerfile"
      ;;
    *)
      echo "bench: unknown image $name" >&2
      return 1
      ;;
  esac
}

# --- shared by the bench scripts that source this file (bench/run, bench/prefetch) ---
now_ns() { date +%s%N; }
# timed CMD...: run CMD in this shell; T = its wall time in ms.
T=0
timed() {
  local t0
  t0=$(now_ns)
  "$@"
  T=$((($(now_ns) - t0) / 1000000))
}
drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}
# dev_read_bytes DEV: bytes read from block device DEV since it was attached.
# (Bash arithmetic: mawk prints products over 2^31 as 2.1e+09.)
dev_read_bytes() {
  local _r _m sectors
  read -r _r _m sectors _ <"/sys/block/${1#/dev/}/stat"
  echo $((sectors * 512))
}
loop_of() { losetup -n -O NAME -j "$1" | head -n1 | tr -d ' '; }
# batch_cmd REF: CMD = the workload of a batch image (it prints bench-ok and exits).
# shellcheck disable=SC2034 # used by the scripts that source this file
CMD=()
# shellcheck disable=SC2034 # CMD: as above
batch_cmd() {
  case "$1" in
    */bench-python3:*) CMD=(python3 -c 'print("bench-ok")') ;;
    */bench-gcc:*) CMD=(sh -c 'printf "#include <stdio.h>\nint main(void){puts(\"bench-ok\");return 0;}\n" >/tmp/h.c && gcc -o /tmp/h /tmp/h.c && /tmp/h') ;;
    *) CMD=(sh -c 'echo bench-ok') ;;
  esac
}

# build_image WORKER NAME: `docker build` bench image NAME (and the one it is FROM) on
# WORKER as $REG/bench-NAME:1 unless it has it (not timed; logged). Needs dk, REG, W, log.
build_image() {
  local w=$1 name=$2 base ctx
  base=$(bench_image_base "$name")
  if [ -n "$base" ] && [ -z "$(dk "$w" images -q "$REG/bench-$base:1")" ]; then
    build_image "$w" "$base"
  fi
  [ -z "$(dk "$w" images -q "$REG/bench-$name:1")" ] || return 0
  ctx=$W/ctx/$name
  [ -d "$ctx" ] || bench_build_context "$name" "$ctx" "$REG"
  log "  building $name on $w"
  timed dk "$w" build -q --network none -t "$REG/bench-$name:1" "$ctx" >/dev/null
  log "  built $name on $w in $T ms"
}
