#!/usr/bin/env bash
# build-rootfs.sh OUTDIR [SLACKERD]
#
# Builds the slacker managed plugin from this machine's own files, without Docker Hub
# or any base image:
#   OUTDIR/config.json   (deploy/plugin/config.json)
#   OUTDIR/rootfs/       slackerd, the entrypoint script, the tools slackerd runs
#                        (mkfs.xfs, resize2fs, GNU cp, busybox-static for /bin/sh) and
#                        every shared library they load, plus the loader.
# Then: docker plugin create NAME OUTDIR && docker plugin enable NAME.
#
# SLACKERD defaults to $REPO/build/cmd/slackerd. OUTDIR/rootfs is rebuilt from scratch
# on every run (idempotent); OUTDIR itself must be empty or a previous output of this
# script.
#
# Host packages: xfsprogs (mkfs.xfs), e2fsprogs (resize2fs), coreutils (cp; GNU cp is
# needed for `cp -a` with reflink), busybox-static.
set -euo pipefail

die() {
  echo "build-rootfs.sh: $*" >&2
  exit 1
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  die "usage: build-rootfs.sh OUTDIR [SLACKERD]"
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$1
SLACKERD=${2:-$REPO/build/cmd/slackerd}

if [ ! -f "$SLACKERD" ] || [ ! -x "$SLACKERD" ]; then
  die "slackerd binary $SLACKERD not found (build it: cmake --build build --target slackerd, or pass its path)"
fi
[ -f "$HERE/config.json" ] || die "$HERE/config.json missing"
[ -f "$HERE/slacker-entrypoint" ] || die "$HERE/slacker-entrypoint missing"
command -v ldd >/dev/null || die "ldd not found (libc-bin)"
if command -v python3 >/dev/null; then
  python3 -m json.tool "$HERE/config.json" >/dev/null || die "$HERE/config.json is not valid JSON"
fi

# tool -> where it goes in the rootfs (the path slackerd's PATH lookup finds)
find_tool() {
  local name=$1 pkg=$2 p
  for p in "/usr/sbin/$name" "/sbin/$name" "/usr/bin/$name" "/bin/$name"; do
    [ -x "$p" ] && {
      readlink -f "$p"
      return
    }
  done
  die "$name not found on this machine (apt-get install $pkg)"
}
MKFS_XFS=$(find_tool mkfs.xfs xfsprogs)
RESIZE2FS=$(find_tool resize2fs e2fsprogs)
CP=$(find_tool cp coreutils)
BUSYBOX=
for p in /bin/busybox /usr/bin/busybox; do
  [ -x "$p" ] && BUSYBOX=$(readlink -f "$p") && break
done
[ -n "$BUSYBOX" ] || die "busybox not found (apt-get install busybox-static)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked (apt-get install busybox-static, not busybox)"
fi

# Refuse to wipe something that is not ours.
if [ -e "$OUT" ]; then
  [ -d "$OUT" ] || die "$OUT exists and is not a directory"
  for f in "$OUT"/* "$OUT"/.[!.]*; do
    [ -e "$f" ] || continue
    case "${f##*/}" in config.json | rootfs | .slacker-plugin) ;;
    *) die "$OUT holds $f: not an output of this script; give an empty or new directory" ;;
    esac
  done
fi
mkdir -p "$OUT"
touch "$OUT/.slacker-plugin"
R=$OUT/rootfs
rm -rf "$R" "$R.tmp"
R_FINAL=$R
R=$R.tmp
trap 'rm -rf "$R_FINAL.tmp"' EXIT

mkdir -p "$R"/{usr/bin,usr/sbin,bin,sbin,etc,tmp,run/docker/plugins,data,store,dev,proc,sys,root}
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"

# copy_with_libs SRC DEST: SRC to DEST in the rootfs, and each library ldd names
# (plus the loader) at the same absolute path it has here.
copy_with_libs() {
  local src=$1 dest=$2 line lib
  install -D -m 0755 "$src" "$R$dest"
  # "libx.so => /path (0x..)", "/lib64/ld-linux-x86-64.so.2 (0x..)", "linux-vdso.so.1 (..)"
  ldd "$src" 2>/dev/null | while read -r line; do
    case "$line" in
    *"=> not found"*) die "$src needs ${line%% *}, which is not installed" ;;
    *"=> /"*) lib=${line#*=> } ;;
    /*) lib=$line ;;
    *) continue ;;
    esac
    lib=${lib%% (*}
    [ -e "$R$lib" ] && continue
    install -D -m 0755 "$(readlink -f "$lib")" "$R$lib"
  done
  # A static binary: ldd fails; nothing to copy. A dynamic one must have listed libs.
}

copy_with_libs "$SLACKERD" /usr/bin/slackerd
copy_with_libs "$MKFS_XFS" /usr/sbin/mkfs.xfs
copy_with_libs "$RESIZE2FS" /usr/sbin/resize2fs
copy_with_libs "$CP" /usr/bin/cp
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
install -m 0755 "$HERE/slacker-entrypoint" "$R/usr/bin/slacker-entrypoint"

# Every library must be loadable from inside the rootfs: ask its own loader.
for f in "$R/usr/bin/slackerd" "$R/usr/sbin/mkfs.xfs" "$R/usr/sbin/resize2fs" "$R/usr/bin/cp"; do
  interp=$(readelf -l "$f" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  [ -n "$interp" ] || continue
  [ -e "$R$interp" ] || die "loader $interp of $f was not copied"
done

cat >"$R/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat >"$R/etc/group" <<'GR'
root:x:0:
nogroup:x:65534:
GR
# Network "host" bind-mounts these over the placeholders.
: >"$R/etc/hosts"
: >"$R/etc/resolv.conf"

mv "$R" "$R_FINAL"
trap - EXIT
install -m 0644 "$HERE/config.json" "$OUT/config.json"
echo "build-rootfs.sh: $OUT (config.json, rootfs/ $(du -sh "$R_FINAL" | cut -f1))"
