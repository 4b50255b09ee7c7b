#!/usr/bin/env bash
# Standard images keep working (issue 5 §3): an image built on an overlay2 dockerd
# (ordinary tar layers, pushed to a stock registry) is pulled by a slacker worker and
# runs; the slacker worker re-pushes it unchanged (identical layer digests, because Diff
# reproduces the applied tars byte for byte); `docker save | docker load` round trips
# between slacker and overlay2.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
e2e_workdir

S=slk$$i
start_slackerd "$S"
REG=$(start_registry)
start_dockerd ov overlay2 --insecure-registry "$REG"
start_dockerd sk "$S" --insecure-registry "$REG"
make_busybox_image ov "$REG/std:base"

accept='Accept: application/vnd.docker.distribution.manifest.v2+json'
layer_digests() {
  curl -fsS -H "$accept" "http://$REG/v2/$1/manifests/$2" | python3 -c \
    'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))'
}

case_overlay2_builds_and_pushes() {
  mkdir -p "$W/ctx"
  cat >"$W/ctx/Dockerfile" <<DF
FROM $REG/std:base
RUN mkdir -p /app && echo built-on-overlay2 > /app/msg && ln /app/msg /app/msg.link && chmod 4755 /app/msg
RUN rm -rf /etc/group && mkdir -p /opq && echo old > /opq/a
RUN rm -rf /opq && mkdir /opq && echo new > /opq/b
DF
  dk ov build --network none -q -t "$REG/std:app" "$W/ctx" >/dev/null
  dk ov push "$REG/std:app" >/dev/null
}

case_slacker_pulls_and_runs() {
  dk sk pull "$REG/std:app" >/dev/null
  local out
  out=$(dk sk run --rm --network none "$REG/std:app" sh -c \
    'cat /app/msg; stat -c "%a %h" /app/msg; ls /opq; [ -e /etc/group ] && echo group-present || echo group-gone')
  assert_eq "built-on-overlay2
4755 2
b
group-gone" "$out" "overlay2-built image on slacker"
}

case_slacker_repushes_identical_digests() {
  local before after
  before=$(layer_digests std app)
  dk sk tag "$REG/std:app" "$REG/std:again"
  dk sk push "$REG/std:again" >/dev/null
  after=$(layer_digests std again)
  assert_eq "$before" "$after" "layer digests after the slacker worker re-pushed"
}

case_save_load_round_trip() {
  dk sk save -o "$W/app.tar" "$REG/std:app"
  dk ov rmi -f "$REG/std:app" >/dev/null
  dk ov load -i "$W/app.tar" >/dev/null
  local out
  out=$(dk ov run --rm --network none "$REG/std:app" cat /app/msg)
  assert_eq "built-on-overlay2" "$out" "slacker save loaded into overlay2"
  dk ov save -o "$W/app2.tar" "$REG/std:app"
  dk sk rmi -f "$REG/std:app" "$REG/std:again" >/dev/null
  dk sk load -i "$W/app2.tar" >/dev/null
  out=$(dk sk run --rm --network none "$REG/std:app" cat /app/msg)
  assert_eq "built-on-overlay2" "$out" "overlay2 save loaded into slacker"
}

run_case overlay2_builds_and_pushes case_overlay2_builds_and_pushes
run_case slacker_pulls_and_runs case_slacker_pulls_and_runs
run_case slacker_repushes_identical_digests case_slacker_repushes_identical_digests
run_case save_load_round_trip case_save_load_round_trip
e2e_summary
