#!/usr/bin/env bash
# The data-coherence check of the NFS path that found slacker-nfs-fuse's FUSE async-DIO
# write loss (nfs_bridge/README.md), without docker or slackerd: ganesha (nfs_lib.sh) exports an XFS
# image; the storage host reflinks base.img to vol<i>.img (as slacker-storaged does);
# this host attaches vol<i>.img through slacker-nfs-fuse to a loop device, writes files
# into its ext4 and unmounts; the storage host reflinks it to snap<i>.img; this host
# mounts snap<i>.img and compares. Prints "iter N ok" or "iter N MISMATCH ..." (with the
# md5 of each file read through the bridge and on the server), then "bad=K".
# Environment: N (iterations, default 15), CTX (bridge connections, default 4),
# BRIDGE_ARGS (extra slacker-nfs-fuse flags), SLEEP (pause after unmount, default 0.3), DIO
# (on|off: loop direct I/O), PRECREATE=1 (create vol/snap through NFS first, so the
# server-side clone writes into an inode ganesha already knows), CLIENT_COPY=1 (no
# server-side operation at all: vol and snap are plain copies made through the bridge),
# SIZE (base image size, default 256M).
# Not registered in ctest (a diagnostic, ~1 min): exits non-zero if any iteration is bad.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nfs_lib.sh"
e2e_workdir
nfs_server_start
CTX=${CTX:-4}
mkdir -p $W/mnt $W/m1
"$NFS_FUSE" --contexts $CTX ${BRIDGE_ARGS:-} "$NFS_URL" $W/mnt > $W/fuse.log 2>&1 &
FP=$!
e2e_defer kill "$FP"
sleep 1
truncate -s "${SIZE:-256M}" $W/mnt/base.img
mkfs.ext4 -q -E lazy_itable_init=1,lazy_journal_init=1 $W/mnt/base.img
bad=0
for i in $(seq 1 ${N:-15}); do
  # write a tree into vol$i (clone of base made on the server), check it via a clone
  [ "${PRECREATE:-0}" = 1 ] && : > $W/mnt/vol$i.img && : > $W/mnt/snap$i.img
  if [ "${CLIENT_COPY:-0}" = 1 ]; then cp "$W/mnt/base.img" "$W/mnt/vol$i.img"; else
  nfs_ns cp --reflink=always $NFS_EXPORT/base.img $NFS_EXPORT/vol$i.img; fi
  L=$(losetup --direct-io=${DIO:-on} -f --show $W/mnt/vol$i.img)
  mount $L $W/m1
  mkdir -p $W/m1/d$i; for f in 1 2 3 4 5; do head -c 300000 /dev/urandom > $W/m1/d$i/f$f; done
  echo "mark-$i" > $W/m1/mark
  sum1=$(cd $W/m1 && find . -type f ! -name '*.lost*' | sort | xargs md5sum | md5sum)
  umount $W/m1
  losetup -d $L
  sleep ${SLEEP:-0.3}
  if [ "${CLIENT_COPY:-0}" = 1 ]; then cp "$W/mnt/vol$i.img" "$W/mnt/snap$i.img"; else
  nfs_ns cp --reflink=always $NFS_EXPORT/vol$i.img $NFS_EXPORT/snap$i.img; fi
  L2=$(losetup --direct-io=${DIO:-on} -f --show $W/mnt/snap$i.img)
  mount -o ro,noload $L2 $W/m1
  sum2=$(cd $W/m1 && find . -type f | sort | xargs md5sum 2>&1 | md5sum)
  m=$(cat $W/m1/mark 2>&1 || true)
  umount $W/m1
  losetup -d $L2
  if [ "$sum1" != "$sum2" ]; then bad=$((bad+1)); echo "iter $i MISMATCH mark=$m loops $L $L2 server-vol-mark=$(nfs_ns debugfs -R 'cat /mark' $NFS_EXPORT/vol$i.img 2>&1 | tail -1) bridge-vol-md5=$(md5sum $W/mnt/vol$i.img | cut -c1-8) server-vol-md5=$(nfs_ns md5sum $NFS_EXPORT/vol$i.img | cut -c1-8) bridge-snap-md5=$(md5sum $W/mnt/snap$i.img | cut -c1-8) server-snap-md5=$(nfs_ns md5sum $NFS_EXPORT/snap$i.img | cut -c1-8)"; else echo "iter $i ok ($L $L2)"; fi
done
echo "bad=$bad"
fusermount3 -u "$W/mnt" || umount -l "$W/mnt"
[ "$bad" -eq 0 ]
