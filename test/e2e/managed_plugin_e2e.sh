#!/usr/bin/env bash
# slacker as a *managed* plugin (docker plugin create/enable/push/install), on private
# dockerds (docker.io 20.10):
#   - deploy/plugin/build-rootfs.sh builds the plugin dir (config.json + rootfs) from
#     this machine's files, no Docker Hub;
#   - dockerd w1 on a built-in driver: `docker plugin create`, `docker plugin set`
#     (SLACKER_HOST_ID, SLACKER_LOG_LEVEL), `docker plugin enable`; restart w1 with
#     `-s <plugin>`; import busybox, run/commit/run; `docker info` shows slacker's rows;
#   - `docker plugin push` to a local registry; dockerd w2 `docker plugin install
#     --grant-all-permissions` it, with a shared store bound in through the settable
#     mount (store.source=HOSTDIR, SLACKER_STORE=/store); restart w2 on it; run.
#
# runc needs / to be a shared mount to start a plugin with a PropagatedMount
# (pivot_root). The host's propagation is not touched: the test re-executes itself in
# a new mount namespace (unshare -m --propagation unchanged) and makes / rshared only
# there; at the end it checks that the host's / still has the propagation it had.
#
# Run as root: test/e2e/managed_plugin_e2e.sh   (SLACKERD=path to test another build)
set -euo pipefail

if [ "${SLACKER_MP_E2E_IN_NS:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || {
    echo "e2e: must run as root (dockerd, mounts)" >&2
    exit 2
  }
  command -v unshare >/dev/null || {
    echo "e2e: unshare missing (util-linux)" >&2
    exit 2
  }
  before=$(findmnt -no PROPAGATION /)
  rc=0
  SLACKER_MP_E2E_IN_NS=1 unshare -m --propagation unchanged -- "$BASH" "$0" "$@" || rc=$?
  after=$(findmnt -no PROPAGATION /)
  if [ "$before" != "$after" ]; then
    echo "FAIL host_propagation_unchanged: the host's / was [$before], is now [$after]" >&2
    exit 1
  fi
  echo "(host / propagation unchanged: $after)"
  exit "$rc"
fi

# --- inside the private mount namespace from here on ---
mount --make-rshared /

. "$(dirname "$0")/lib.sh"
e2e_workdir

PLUGIN_DIR=$W/plugin

# The plugin's propagated mount holds the embedded store (a loop-mounted XFS image):
# slackerd leaves it mounted when it stops, by design (the next start reuses it), so a
# stopped dockerd leaves it behind under its data root. Unmount it (and everything else
# the plugin mounted there) quietly; stop_dockerd would report it as a leak.
release_plugin_mounts() {
  local d=$W/$1/data/plugins mp
  while read -r mp; do
    [ -n "$mp" ] || continue
    umount "$mp" 2>/dev/null || umount -l "$mp" || e2e_log "cannot unmount $mp"
  done < <(e2e_mounts_under "$d")
}

# stop_mp_dockerd NAME: stop dockerd NAME (which stops its plugins with SIGTERM), then
# release what its plugin left mounted. Fails if slackerd did not exit cleanly.
stop_mp_dockerd() {
  local name=$1
  e2e_stop "dockerd-$name" "dockerd $name" 60
  release_plugin_mounts "$name"
  stop_dockerd "$name"
}


# plugin_id DOCKERD NAME
plugin_id() { dk "$1" plugin inspect -f '{{.Id}}' "$2"; }

# assert_plugin_stopped_cleanly DOCKERD: at its last stop, dockerd SIGTERMed the
# plugin and it exited within dockerd's 30 s grace (no SIGKILL), and slackerd (PID 1
# of the plugin) recorded the end of a clean stop in its state directory's lock file
# (/data/lock in the plugin: the propagated mount's directory on the host). Its
# event=stopped log line is no evidence: dockerd copies a plugin's output to its log
# in goroutines it does not wait for, so its last lines are lost when dockerd exits
# first (CI run 11: "did not log event=stopped" after a clean stop).
assert_plugin_stopped_cleanly() {
  local log=$W/$1/dockerd.log lock n=0 line
  ! grep -q "Force shutdown plugin" "$log" || fail "dockerd $1 had to SIGKILL the plugin"
  tail -n 60 "$log" | grep -q "Clean shutdown of plugin" ||
    fail "dockerd $1 did not log a clean plugin shutdown at its last stop"
  for lock in "$W/$1"/data/plugins/*/propagated-mount/lock; do
    [ -f "$lock" ] || continue
    n=$((n + 1))
    line=$(cat "$lock")
    [[ $line =~ ^slackerd\ pid\ [0-9]+\ since\ [^\ ]+\ stopped\ [^\ ]+$ ]] ||
      fail "slackerd in dockerd $1 did not record a clean stop: $lock says '$line'"
  done
  assert_eq 1 "$n" "plugin state lock files under dockerd $1's data root"
}

case_build_rootfs() {
  "$REPO/deploy/plugin/build-rootfs.sh" "$PLUGIN_DIR" "$SLACKERD" >/dev/null
  # idempotent: a second run over the same dir works and gives the same tree
  local a b
  a=$(cd "$PLUGIN_DIR" && find . | sort | md5sum)
  "$REPO/deploy/plugin/build-rootfs.sh" "$PLUGIN_DIR" "$SLACKERD" >/dev/null
  b=$(cd "$PLUGIN_DIR" && find . | sort | md5sum)
  assert_eq "$a" "$b" "rootfs tree after a second build"
  [ -x "$PLUGIN_DIR/rootfs/usr/bin/slackerd" ] || fail "no slackerd in the rootfs"
  # every binary runs inside the rootfs alone
  chroot "$PLUGIN_DIR/rootfs" /usr/sbin/mkfs.xfs -V >/dev/null
  chroot "$PLUGIN_DIR/rootfs" /usr/bin/cp --version >/dev/null
  chroot "$PLUGIN_DIR/rootfs" /bin/sh -c 'exit 0'
  chroot "$PLUGIN_DIR/rootfs" /usr/bin/slackerd --help >/dev/null 2>&1 ||
    chroot "$PLUGIN_DIR/rootfs" /usr/bin/slackerd --help 2>&1 | grep -q usage
}

case_create_and_enable_on_builtin_driver() {
  start_dockerd w1 overlay2 "${REG_FLAGS[@]}"
  # Created under its registry name at once: plugins cannot be re-tagged for push, and
  # 20.10 refuses a second `plugin create` of the same dir ("content ... already exists").
  dk w1 plugin create "$PNAME" "$PLUGIN_DIR" >/dev/null
  dk w1 plugin set "$PNAME" SLACKER_HOST_ID=mp-w1 SLACKER_LOG_LEVEL=debug
  dk w1 plugin enable "$PNAME" >/dev/null
  local en
  en=$(dk w1 plugin inspect -f '{{.Enabled}}' "$PNAME")
  assert_eq true "$en" "plugin enabled"
  e2e_log "plugin $PNAME id $(plugin_id w1 "$PNAME")"
}

case_restart_dockerd_on_the_plugin() {
  stop_mp_dockerd w1
  assert_plugin_stopped_cleanly w1
  start_dockerd w1 "$PNAME" "${REG_FLAGS[@]}"
  local drv
  drv=$(dk w1 info -f '{{.Driver}}')
  assert_eq "$PNAME" "$drv" "w1 storage driver"
}

case_run_commit_run() {
  make_busybox_image w1 base:1
  local out
  out=$(dk w1 run --name c1 --network none base:1 sh -c 'echo managed > /hello; cat /hello')
  assert_eq managed "$out" "c1 output"
  dk w1 commit c1 app:v1 >/dev/null
  out=$(dk w1 run --rm --network none app:v1 cat /hello)
  assert_eq managed "$out" "content of the committed image"
  dk w1 rm c1 >/dev/null
}

case_docker_info_shows_status_rows() {
  local info
  info=$(dk w1 info 2>/dev/null)
  assert_contains "$info" "Storage Driver: $PNAME"
  assert_contains "$info" "Backing Store"
  assert_contains "$info" "Host ID: mp-w1" "docker info (SLACKER_HOST_ID set by docker plugin set)"
  e2e_log "docker info on w1: $(grep -A 14 'Storage Driver' <<<"$info")"
  # GetMetadata paths come back scoped to the plugin's propagated mount on the host
  local upper
  upper=$(dk w1 inspect -f '{{json .GraphDriver.Data}}' app:v1)
  e2e_log "app:v1 GraphDriver.Data: $upper"
}

case_push_plugin() {
  dk w1 plugin push "$PNAME" >/dev/null
  curl -fsS --cacert "$W/registry.crt" "https://$REG/v2/slacker-e2e/tags/list" | grep -q latest ||
    fail "registry has no slacker-e2e:latest"
}

case_install_on_second_dockerd_with_shared_store() {
  # a shared store: an XFS (reflink) image mounted in this namespace, bound into the
  # plugin through its settable mount
  truncate -s 4G "$W/store.img"
  mkfs.xfs -q -m reflink=1 -s size=4096 "$W/store.img"
  mkdir -p "$W/store"
  mount -o loop,noatime "$W/store.img" "$W/store"
  e2e_defer umount "$W/store"

  start_dockerd w2 overlay2 "${REG_FLAGS[@]}"
  # installed under a short alias: w2 runs with -s slacker-e2e
  dk w2 plugin install --grant-all-permissions --disable --alias slacker-e2e "$PNAME" >/dev/null
  dk w2 plugin set slacker-e2e store.source="$W/store" SLACKER_STORE=/store \
    SLACKER_HOST_ID=mp-w2
  dk w2 plugin enable slacker-e2e >/dev/null
  stop_mp_dockerd w2
  start_dockerd w2 slacker-e2e "${REG_FLAGS[@]}"
  local info out
  info=$(dk w2 info 2>/dev/null)
  assert_contains "$info" "Storage Driver: slacker-e2e"
  assert_contains "$info" "Host ID: mp-w2"
  make_busybox_image w2 base:2
  out=$(dk w2 run --rm --network none base:2 sh -c 'echo on-w2 > /f; cat /f')
  assert_eq on-w2 "$out" "w2 container output"
  # the layers live on the shared store, not in the plugin's propagated mount
  [ -n "$(find "$W/store" -mindepth 1 -print -quit)" ] || fail "nothing on the shared store"
}

case_stop_all_cleanly() {
  stop_mp_dockerd w1
  assert_plugin_stopped_cleanly w1
  stop_mp_dockerd w2
  assert_plugin_stopped_cleanly w2
  local left
  left=$(e2e_mounts_under "$W" | grep -v "^$W/store$" || true)
  [ -z "$left" ] || fail "mounts left under $W: $left"
  left=$(losetup -n -l -O NAME,BACK-FILE | grep "$W" | grep -v "$W/store.img" || true)
  [ -z "$left" ] || fail "loop devices left: $left"
}

# dockerd 20.10 installs plugins only over HTTPS (containerd's resolver never falls
# back to HTTP): a TLS registry with a self-signed certificate.
REG=$(start_tls_registry)
# The plugin w1 creates, runs on and pushes; -s takes the full reference.
PNAME=$REG/slacker-e2e:latest
REG_FLAGS=(--insecure-registry "$REG")
run_case build_rootfs case_build_rootfs
run_case create_and_enable_on_builtin_driver case_create_and_enable_on_builtin_driver
run_case restart_dockerd_on_the_plugin case_restart_dockerd_on_the_plugin
run_case run_commit_run case_run_commit_run
run_case docker_info_shows_status_rows case_docker_info_shows_status_rows
run_case push_plugin case_push_plugin
run_case install_on_second_dockerd_with_shared_store case_install_on_second_dockerd_with_shared_store
run_case stop_all_cleanly case_stop_all_cleanly
e2e_summary
