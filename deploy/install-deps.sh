#!/usr/bin/env bash
# Installs every Debian 12 package slacker needs to build, run and test.
# usage: deploy/install-deps.sh [--runtime-only | --with-tests | --with-bench]
# --with-bench: also what bench/run needs (tests + debootstrap, gnuplot-nox for the plot).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
build=(build-essential cmake pkg-config libboost-dev nlohmann-json3-dev libfmt-dev
       libext2fs-dev comerr-dev libssl-dev libgtest-dev libgmock-dev googletest)
runtime=(e2fsprogs xfsprogs util-linux kmod)
tests=(docker.io busybox-static docker-registry golang-go golang-github-docker-docker-dev
       golang-github-vbatts-tar-split-dev golang-github-gotestyourself-gotest.tools-dev
       attr curl iproute2 tar coreutils python3 openssl debootstrap)
bench=(debootstrap gnuplot-nox)
pkgs=("${build[@]}" "${runtime[@]}")
[ "${1:-}" = "--runtime-only" ] && pkgs=("${runtime[@]}")
[ "${1:-}" = "--with-tests" ] && pkgs+=("${tests[@]}")
[ "${1:-}" = "--with-bench" ] && pkgs+=("${tests[@]}" "${bench[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
