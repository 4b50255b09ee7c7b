#!/usr/bin/env bash
# slackerctl against a live worker: slackerd (embedded store) under a private dockerd,
# a local registry, and a private overlay2 dockerd as a host without slacker.
# status/verify --json fields; convert busybox to an all-reference image that runs and
# pushes only tiny blobs; export a committed image (a reference layer with adds,
# deletes and hardlinks) to standard tars that load and run under overlay2; gc keeps
# everything referenced and lists a snapshot once its image and registry tag are gone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
require_slackerctl
e2e_workdir

A=slk$$a
start_slackerd "$A"
REG=$(start_registry)
start_dockerd w1 "$A" --insecure-registry "$REG"
make_busybox_image w1 bb:1

# No --store: slackerctl finds the embedded store mounted under --state.
ctl() { "$SLACKERCTL" --state "$(slackerd_state "$A")" --host-id "$A" --docker-host "unix://$W/w1/docker.sock" "$@"; }
# jq-less JSON field access: jget JSON PYTHON-EXPR (the parsed document is `d`).
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

layer_sizes() {
  curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/$1/manifests/$2" | python3 -c \
    'import json,sys; print(" ".join(str(l["size"]) for l in json.load(sys.stdin)["layers"]))'
}

case_status_json() {
  local out
  out=$(ctl status --json)
  [[ $(jget "$out" 'd["store"]["uuid"]') =~ ^[0-9a-f]{32}$ ]] || fail "store uuid: $out"
  assert_eq "$(slackerd_state "$A")/store" "$(jget "$out" 'd["store"]["root"]')" "store root"
  [ "$(jget "$out" 'd["layers"]["by_origin"].get("tar", 0)')" -ge 1 ] || fail "no tar-origin layer: $out"
  [ "$(jget "$out" 'd["snapshots"]["count"]')" -ge 1 ] || fail "no snapshots: $out"
  [ "$(jget "$out" 'd["refs"]["count"]')" -ge 1 ] || fail "no refs: $out"
  [ "$(jget "$out" 'd["store"]["total_bytes"] > 0')" = True ] || fail "no statfs: $out"
  ctl status >"$W/status.txt"
  cat "$W/status.txt" >&2
  grep -q "^store " "$W/status.txt" || fail "human status output"
}

case_verify_json() {
  local out
  out=$(ctl verify --json) || fail "verify failed: $out"
  assert_eq True "$(jget "$out" 'd["ok"]')" "verify ok"
  [ "$(jget "$out" 'd["snapshots_mounted"]')" -ge 1 ] || fail "no snapshot mounted: $out"
  assert_eq "" "$(e2e_mounts_under "$(slackerd_state "$A")/views")" "views left mounted"
  assert_eq "" "$(e2e_mounts_under "$(slackerd_state "$A")/ctl-views")" "slackerctl views left mounted"
}

case_convert_runs_and_pushes_references() {
  ctl convert bb:1 "$REG/bbref:1" >/dev/null
  local out sizes s
  out=$(dk w1 run --rm --network none "$REG/bbref:1" sh -c 'head -1 /etc/passwd; ls /bin/busybox')
  assert_eq "root:x:0:0:root:/root:/bin/sh
/bin/busybox" "$out" "converted image content"
  dk w1 push "$REG/bbref:1" >/dev/null
  sizes=$(layer_sizes bbref 1)
  e2e_log "bbref:1 layer blob sizes: $sizes"
  for s in $sizes; do [ "$s" -lt 4096 ] || fail "pushed layer blob of $s bytes is not a reference tar"; done
}

case_export_loads_into_overlay2() {
  dk w1 run --name c1 --network none bb:1 sh -c \
    'echo payload > /data; ln /data /data-link; rm /etc/group; mkdir -p /srv/x; ln -s ../../data /srv/x/l' >/dev/null
  dk w1 commit c1 app:1 >/dev/null
  local out
  out=$(ctl export --json --output "$W/app.tar" app:1 app-std:1)
  jget "$out" 'd["layers"][1]["snapshot"]' >"$W/app-snapshot"
  assert_eq reference "$(jget "$out" 'd["layers"][1]["from"]')" "top layer was a reference"
  assert_eq standard "$(jget "$out" 'd["layers"][0]["from"]')" "base layer stays standard"
  # Also load it back into the slacker dockerd (no --output).
  ctl export app:1 app-std:1 >/dev/null
  assert_eq payload "$(dk w1 run --rm --network none app-std:1 cat /data-link)" "export on slacker"

  start_dockerd w2 overlay2
  dk w2 load -i "$W/app.tar" >/dev/null
  out=$(dk w2 run --rm --network none app-std:1 sh -c \
    'cat /data; [ /data -ef /data-link ] && echo linked; [ -e /etc/group ] || echo no-group; readlink /srv/x/l; cat /srv/x/l')
  assert_eq "payload
linked
no-group
../../data
payload" "$out" "exported image under overlay2"
}

case_gc_dry_run_keeps_referenced() {
  dk w1 tag app:1 "$REG/app:1"
  dk w1 push "$REG/app:1" >/dev/null
  local out used
  out=$(ctl gc --registry "http://$REG" --min-age 0 --json)
  assert_eq True "$(jget "$out" 'd["dry_run"]')" "dry run by default"
  assert_eq True "$(jget "$out" 'd["registry_checked"]')" "registry checked"
  [ "$(jget "$out" 'd["registry"]["reference_blobs"]')" -ge 2 ] || fail "registry references not found: $out"
  # Every snapshot a layer record of this host names must be kept.
  used=$(cat "$(slackerd_state "$A")"/layers/*.json | python3 -c \
    'import json,sys; print(" ".join(sorted({json.loads(l)["snapshot"] for l in sys.stdin if json.loads(l)["snapshot"]})))')
  for s in $used; do
    assert_not_contains "$(jget "$out" '[x["snapshot"] for x in d["deletable"]]')" "$s" "deletable set"
  done
  # Without a registry: a loud warning, and --delete is refused.
  ctl gc --min-age 0 2>&1 >/dev/null | grep -q 'REGISTRY REFERENCES WERE NOT CHECKED' || fail "no loud warning"
  local rc=0
  ctl gc --delete >/dev/null 2>&1 || rc=$?
  assert_eq 2 "$rc" "gc --delete without --registry"
}

case_gc_lists_snapshot_after_image_and_tag_go() {
  local snap digest out
  snap=$(cat "$W/app-snapshot")
  out=$(ctl gc --registry "http://$REG" --min-age 0 --json)
  assert_not_contains "$(jget "$out" '[x["snapshot"] for x in d["deletable"]]')" "$snap" "deletable before removal"
  dk w1 rm c1 >/dev/null
  dk w1 rmi app:1 "$REG/app:1" >/dev/null
  out=$(ctl gc --registry "http://$REG" --min-age 0 --json)
  assert_contains "$(jget "$out" 'd["kept_by_registry"]')" "$snap" "kept by the registry tag alone"
  digest=$(curl -fsS -o /dev/null -D - -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/app/manifests/1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  curl -fsS -X DELETE "http://$REG/v2/app/manifests/$digest" >/dev/null
  out=$(ctl gc --registry "http://$REG" --min-age 0)
  assert_contains "$out" "would delete snapshot $snap" "gc dry run output"
  ctl gc --registry "http://$REG" --min-age 0 --delete | grep -q "deleted snapshot $snap" || fail "gc --delete"
  [ ! -e "$(slackerd_state "$A")/store/snapshots/$snap.img" ] || fail "snapshot file still there"
  ctl verify >/dev/null || fail "verify after gc: $(ctl verify)"
}

run_case status_json case_status_json
run_case verify_json case_verify_json
run_case convert_runs_and_pushes_references case_convert_runs_and_pushes_references
run_case export_loads_into_overlay2 case_export_loads_into_overlay2
run_case gc_dry_run_keeps_referenced case_gc_dry_run_keeps_referenced
run_case gc_lists_snapshot_after_image_and_tag_go case_gc_lists_snapshot_after_image_and_tag_go
e2e_summary
