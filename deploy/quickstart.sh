#!/usr/bin/env bash
# One command on a fresh Debian 12 machine (as root): install what slacker needs, build
# it, and run slackerd in the foreground on its embedded store (a sparse XFS image with
# reflink=1 at $STATE/store.img, created on first start, reused afterwards).
#   deploy/quickstart.sh [slackerd options...]       (Ctrl-C stops it)
# Then, in another shell:  dockerd --experimental -s slacker
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "quickstart: run as root (slackerd mounts and attaches loop devices)" >&2; exit 1; }
"$repo/deploy/install-deps.sh"
cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$repo/build" -j"$(nproc)" --target slackerd
mkdir -p /run/docker/plugins
echo "quickstart: starting slackerd --socket /run/docker/plugins/slacker.sock --state /var/lib/slacker $* (later options win)"
echo "quickstart: point Docker at it with: dockerd --experimental -s slacker"
exec "$repo/build/cmd/slackerd" --socket /run/docker/plugins/slacker.sock --state /var/lib/slacker "$@"
