#!/usr/bin/env bash
# Hostile input. A corpus of docker-save images (hostile/gen.py), each a busybox layer
# plus one malicious layer (../ and absolute paths, symlink then write-through, hardlinks
# to a host file, symlinks, hardlinks, whiteouts and opaque markers aimed at a 0600 file
# and a 0700 directory, device nodes, huge and malformed header fields, PAX records,
# truncated streams, 20000 tiny entries, a sparse bomb and a gzip zero bomb) or a forged
# reference tar (foreign store, missing snapshot, path as snapshot id, extra members,
# oversize), loaded with `docker load` into a private dockerd on slackerd. After each:
# the load failed with the expected message (or, where the content is legitimate, the
# image runs and its content checks), the sentinel directory the paths aim at is
# untouched (names, types, sizes, modes, link counts, owners, mtimes, ctimes, content),
# slackerd is alive and serves a container, nothing stays mounted or attached, no spool
# or volume file is left behind.
# Then malformed HTTP/JSON (hostile/fuzz_socket.py) against a second slackerd's socket:
# it never dies and keeps answering /Plugin.Activate. And the socket is 0600 root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
HOSTILE=$E2E_LIB_DIR/hostile
FUZZ_REQUESTS=${FUZZ_REQUESTS:-4000}
e2e_workdir

A=slk$$h
start_slackerd "$A"
start_dockerd w1 "$A"
STATE=$(slackerd_state "$A")
make_busybox_image w1 bb:1

SENT=$W/sentinel
mkdir -p "$SENT/dir"
echo "host file" >"$SENT/host_file"
echo "host dir file" >"$SENT/dir/f"
# Restrictive canaries: a chmod, chown, utimes or xattr through a link changes their
# mode, owner, mtime or ctime (a 0755 directory would not show a chmod to 0755).
mkdir -m 0700 "$SENT/private"
(umask 077 && echo "private inner" >"$SENT/private/inner" && echo "host secret" >"$SENT/secret")
chown -R 4321:4322 "$SENT/private" "$SENT/secret"
touch -h -d @1000000000 "$SENT/private/inner" "$SENT/private" "$SENT/secret"
# name, type, size, mode, links, owner, mtime, ctime, link target, content.
sentinel_state() {
  find "$SENT" -printf '%p %y %s %m %n %U:%G %T@ %C@ %l\n' | sort
  find "$SENT" -type f -exec sha256sum {} + | sort
}
SENT_BEFORE=$(sentinel_state)

# The base layer: busybox as `docker save` gives it back (Diff of a standard layer).
dk w1 save bb:1 | tar -xO --wildcards '*/layer.tar' >"$W/base.tar"
STORE_UUID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$STATE/store/store.json")
e2e_log "generating the hostile corpus"
python3 "$HOSTILE/gen.py" "$W/corpus" "$SENT" "$W/base.tar" "$STORE_UUID"

# assert_host_and_plugin_fine: the sentinel is untouched, slackerd serves, nothing of
# the failed or finished load stays behind.
assert_host_and_plugin_fine() {
  assert_eq "$SENT_BEFORE" "$(sentinel_state)" "sentinel dir"
  [ ! -e /tmp/slacker-fuzz-pwned ] || fail "/tmp/slacker-fuzz-pwned was created"
  e2e_alive "$(cat "$W/.e2e/pid/slackerd-$A")" || fail "slackerd died"
  dk w1 run --rm --network none bb:1 true || fail "slackerd no longer serves a container"
  e2e_settle "$STATE"
  assert_eq "" "$(e2e_mounts_under "$STATE/mnt" | e2e_no_spares)" "mounts under $STATE/mnt"
  assert_eq "" "$(e2e_mounts_under "$STATE/views")" "mounts under $STATE/views"
  assert_eq "" "$(e2e_loops_under "$STATE/store" | e2e_no_spares)" "loop devices on store files"
  assert_eq "" "$(ls -A "$STATE/spool")" "spool files"
  assert_eq "" "$(e2e_entries "$STATE/store/volumes/$A" | e2e_no_spares)" "volume files"
}

# hostile_case NAME EXPECT ARG (a line of cases.tsv)
hostile_case() {
  local name=$1 expect=$2 arg=$3 out rc=0 tag got
  tag=bb-hostile/$(tr '[:upper:]' '[:lower:]' <<<"$name"):1
  out=$(dk w1 load -i "$W/corpus/$name.tar" 2>&1) || rc=$?
  e2e_log "load $name: status $rc: $(tail -c 300 <<<"$out")"
  if [ "$expect" = reject ]; then
    [ "$rc" != 0 ] || fail "docker load of $name succeeded; it must be refused"
    assert_contains "$out" "$arg" "docker load's error"
    [ -n "$out" ] || fail "no error message"
    if dk w1 image inspect "$tag" >/dev/null 2>&1; then fail "image $tag exists after a refused load"; fi
  else
    [ "$rc" = 0 ] || fail "docker load of $name failed: $out"
    got=$(dk w1 run --rm --network none "$tag" sh -c "$arg") || fail "image $tag does not run"
    assert_eq ok "$got" "content check of $tag"
    dk w1 rmi "$tag" >/dev/null
  fi
  assert_host_and_plugin_fine
}

while IFS=$'\t' read -r name expect arg; do
  run_case "load_$name" hostile_case "$name" "$expect" "$arg"
done <"$W/corpus/cases.tsv"

case_socket_permissions() {
  local sock=$W/plugins/$A.sock
  assert_eq "socket 600 root root" "$(stat -c '%F %a %U %G' "$sock")" "plugin socket"
}
run_case socket_permissions case_socket_permissions

# A second slackerd nobody else uses: fuzzed requests that look valid create, mount and
# remove layers there.
case_fuzz_socket() {
  local F=${A}f pid out
  E2E_PLUGIN_SPEC=0 start_slackerd "$F"
  pid=$(cat "$W/.e2e/pid/slackerd-$F")
  out=$(python3 "$HOSTILE/fuzz_socket.py" "$W/plugins/$F.sock" "$pid" "$FUZZ_REQUESTS" "$$") ||
    fail "socket fuzz: $out"
  echo "$out" >&2
  [ ! -e /tmp/slacker-fuzz-pwned ] || fail "/tmp/slacker-fuzz-pwned was created"
  assert_eq "" "$(find / -xdev -maxdepth 3 -name 'slacker-fuzz-pwned*' 2>/dev/null)" "files named by hostile ids"
  # Cleanup unmounts what the fuzzed Gets mounted; then a clean SIGTERM exit.
  curl -fsS --unix-socket "$W/plugins/$F.sock" -X POST -d '{}' http://plugin/GraphDriver.Cleanup >/dev/null
  assert_eq "" "$(e2e_mounts_under "$(slackerd_state "$F")/mnt")" "fuzz plugin mounts after Cleanup"
  stop_slackerd "$F" || fail "the fuzzed slackerd did not exit cleanly on SIGTERM"
  release_embedded_store "$F"
}
run_case fuzz_socket case_fuzz_socket
e2e_summary
