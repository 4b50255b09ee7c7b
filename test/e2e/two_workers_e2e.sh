#!/usr/bin/env bash
# Two workers, one store (issue 5): two slackerds with their own --host-id on one
# shared reflink store, two private dockerds, one stock registry (docker-registry 2.8).
# Worker A commits and pushes; worker B pulls (O(1): a reference layer copies no data)
# and runs it, modifies, pushes a new tag; A pulls and runs that. Also checks that the
# pushed committed layers are reference tars of a few KiB, and that an image whose
# layers came in as ordinary tars goes out as ordinary tars with identical digests.
# And that a registry user gets nothing out of the store (issue 15): a forged unsigned
# reference to a private image's snapshot, and a signed reference grafted onto another
# parent, pushed as images, are refused at pull by a default install (no --cluster-key).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
e2e_workdir

# The shared store: an XFS image with reflink, as an NFSv4.2/XFS share would be.
make_shared_store "$W/store"

A=slk$$a
B=slk$$b
start_slackerd "$A" --store "$W/store"
start_slackerd "$B" --store "$W/store"
REG=$(start_registry)
start_dockerd wa "$A" --insecure-registry "$REG"
start_dockerd wb "$B" --insecure-registry "$REG"
make_busybox_image wa "$REG/base:1"

layer_digests() {
  curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/$1/manifests/$2" | python3 -c \
    'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))'
}

store_used_kib() { sync -f "$W/store"; df -k --output=used "$W/store" | tail -1 | tr -d ' '; }

# The compressed size of each layer blob of REPO:TAG, from the registry's manifest.
layer_sizes() {
  curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/$1/manifests/$2" | python3 -c \
    'import json,sys; print(" ".join(str(l["size"]) for l in json.load(sys.stdin)["layers"]))'
}

case_push_base_as_standard_tar() {
  dk wa push "$REG/base:1" >/dev/null
  local sizes
  sizes=$(layer_sizes base 1)
  e2e_log "base layer blob sizes: $sizes"
  [ "$sizes" -gt 100000 ] || fail "the imported (standard) layer should go out as a real tar, got $sizes bytes"
}

case_a_commits_and_pushes_a_reference() {
  dk wa run --name c1 --network none "$REG/base:1" sh -c \
    'echo from-a > /data-a; mkdir -p /srv; echo v1 > /srv/app; dd if=/dev/urandom of=/blob bs=1M count=2 2>/dev/null' >/dev/null
  dk wa commit c1 "$REG/app:v1" >/dev/null
  dk wa push "$REG/app:v1" >/dev/null
  local sizes top
  sizes=$(layer_sizes app v1)
  top=${sizes##* }
  e2e_log "app:v1 layer blob sizes: $sizes"
  [ "$top" -lt 4096 ] || fail "the committed layer should be a reference tar of a few KiB, got $top bytes"
  expect_top_layer_size wa "$REG/app:v1"
}

# expect_top_layer_size WORKER IMAGE: the committed layer (2 MiB written, a few small
# files) is reported with about its size: the driver derives it from the snapshot's
# superblock, and a worker applying the reference takes it from the reference.
expect_top_layer_size() {
  local size
  size=$(dk "$1" history --human=false --format '{{.Size}}' "$2" | head -1)
  e2e_log "$1: size of the top layer of $2: $size bytes"
  [ "$size" -ge 2097152 ] && [ "$size" -le 2621440 ] ||
    fail "$1 reports the top layer of $2 as $size bytes; 2 MiB and a few small files were written"
}

case_b_pulls_without_copying_and_runs() {
  local before after out
  before=$(store_used_kib)
  dk wb pull "$REG/base:1" >/dev/null  # an ordinary layer A already applied: deduplicated
  after=$(store_used_kib)
  e2e_log "store used before/after pulling the standard base on B: ${before} KiB / ${after} KiB"
  grep -q "event=apply_tar_dedup" "$W/$B-slackerd.log" ||
    fail "B unpacked the standard layer again instead of reusing A's snapshot"
  [ $((after - before)) -lt 1024 ] || fail "the deduplicated standard layer copied data: $((after - before)) KiB"
  before=$(store_used_kib)
  dk wb pull "$REG/app:v1" >/dev/null
  after=$(store_used_kib)
  e2e_log "store used before/after pulling app:v1 on B: ${before} KiB / ${after} KiB"
  [ $((after - before)) -lt 1024 ] || fail "pulling a reference layer copied data: $((after - before)) KiB"
  expect_top_layer_size wb "$REG/app:v1"
  out=$(dk wb run --rm --network none "$REG/app:v1" cat /data-a /srv/app)
  assert_eq "from-a
v1" "$out" "content on worker B"
  grep -q "event=apply_reference" "$W/$B-slackerd.log" ||
    fail "B's slackerd did not apply a reference"
}

case_b_modifies_and_pushes_a_new_tag() {
  dk wb run --name c2 --network none "$REG/app:v1" sh -c 'echo from-b > /data-b; echo v2 > /srv/app' >/dev/null
  dk wb commit c2 "$REG/app:v2" >/dev/null
  dk wb push "$REG/app:v2" >/dev/null
  local sizes
  sizes=$(layer_sizes app v2)
  e2e_log "app:v2 layer blob sizes: $sizes"
  [ "${sizes##* }" -lt 4096 ] || fail "B's committed layer should be a reference tar"
}

case_a_pulls_and_runs_b_s_tag() {
  dk wa pull "$REG/app:v2" >/dev/null
  local out
  out=$(dk wa run --rm --network none "$REG/app:v2" cat /data-a /data-b /srv/app)
  assert_eq "from-a
from-b
v2" "$out" "content on worker A"
}

case_b_repushes_the_standard_base_unchanged() {
  dk wb tag "$REG/base:1" "$REG/base:again"
  dk wb push "$REG/base:again" >/dev/null
  local l1 l2
  l1=$(layer_digests base 1)
  l2=$(layer_digests base again)
  assert_eq "$l1" "$l2" "layer digests after B re-pushed A's standard image"
}

# A private image on A, never pushed. Its snapshot id is no secret (a container reads it
# from /sys/block/loop*/loop/backing_file); here `docker save` on A hands it over. Forged
# unsigned references to it (format 1, and format 2 bound to the right parent), pushed as
# images on top of the base layer, must not let B read it; nor may a validly signed
# reference (app:v2's top, made on top of app:v1) grafted directly onto the base layer.
case_forged_and_grafted_references_are_refused() {
  local forge="python3 $E2E_LIB_DIR/forge_image.py" snap store base_chain out f
  dk wa run --name cs --network none "$REG/base:1" sh -c 'echo top-secret > /secret' >/dev/null
  dk wa commit cs private:1 >/dev/null
  snap=$(dk wa save private:1 | $forge saved-snapshot)
  store=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$W/store/store.json")
  [ -e "$W/store/snapshots/$snap.img" ] || fail "private:1's snapshot $snap is not on the store"
  $forge layer "$REG" base 1 0 "$W/base-layer.tar"
  base_chain=sha256:$(sha256sum "$W/base-layer.tar" | cut -d' ' -f1)
  $forge ref-tar "$W/forged1.tar" "$store" "$snap" 1
  $forge ref-tar "$W/forged2.tar" "$store" "$snap" 2 "$base_chain"
  for f in 1 2; do
    $forge push "$REG" forged "v$f" "$W/base-layer.tar" "$W/forged$f.tar"
    if out=$(dk wb pull "$REG/forged:v$f" 2>&1); then
      fail "B pulled forged:v$f, an unsigned format $f reference to private:1's snapshot"
    fi
    e2e_log "pull forged:v$f: $(tail -c 300 <<<"$out")"
    assert_contains "$out" "unsigned reference" "pull of forged:v$f"
    if out=$(dk wb run --rm --network none "$REG/forged:v$f" cat /secret 2>&1); then
      fail "B ran forged:v$f: $out"
    fi
    assert_not_contains "$out" "top-secret" "run of forged:v$f"
  done
  $forge layer "$REG" app v2 -1 "$W/app-v2-top.tar"
  $forge push "$REG" grafted 1 "$W/base-layer.tar" "$W/app-v2-top.tar"
  if out=$(dk wb pull "$REG/grafted:1" 2>&1); then
    fail "B pulled a signed reference grafted onto another parent"
  fi
  e2e_log "pull grafted:1: $(tail -c 300 <<<"$out")"
  assert_contains "$out" "another parent" "pull of grafted:1"
  if dk wb image inspect "$REG/grafted:1" >/dev/null 2>&1; then fail "grafted:1 exists on B"; fi
}

run_case push_base_as_standard_tar case_push_base_as_standard_tar
run_case a_commits_and_pushes_a_reference case_a_commits_and_pushes_a_reference
run_case b_pulls_without_copying_and_runs case_b_pulls_without_copying_and_runs
run_case b_modifies_and_pushes_a_new_tag case_b_modifies_and_pushes_a_new_tag
run_case a_pulls_and_runs_b_s_tag case_a_pulls_and_runs_b_s_tag
run_case b_repushes_the_standard_base_unchanged case_b_repushes_the_standard_base_unchanged
run_case forged_and_grafted_references_are_refused case_forged_and_grafted_references_are_refused
e2e_summary
