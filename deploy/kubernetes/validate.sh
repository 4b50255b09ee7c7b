#!/usr/bin/env bash
# Offline validation of deploy/kubernetes/ (no cluster, no root):
#   1. every manifest decodes into its Kubernetes type with kubectl's own scheme
#      (`kubectl set image --local`: a wrong type fails), and no field is lost in that
#      decoding (a misspelt or misplaced field would be dropped silently by kubectl and
#      the API server alike);
#   2. the manifests, containerd-config.toml and the systemd unit agree: socket path,
#      RuntimeClass handler = a containerd runtime on overlayfs, the runtime-handler
#      annotation, Bidirectional propagation of the state dir, the image fs path;
#   3. containerd accepts containerd-config.toml (`containerd config dump`), when
#      containerd is installed.
# KUBECTL (default: kubectl on PATH; Debian: kubernetes-client), CONTAINERD (default
# /usr/bin/containerd).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KUBECTL=${KUBECTL:-$(command -v kubectl || true)}
CONTAINERD=${CONTAINERD:-/usr/bin/containerd}
PYTHON=${PYTHON:-/usr/bin/python3}
if [ -z "$KUBECTL" ] || [ ! -x "$KUBECTL" ]; then
  echo "#### NOT TESTED: kubectl missing (apt-get install kubernetes-client)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
manifest=$here/slacker-snapshotter.yaml
image=validate.invalid/slacker-snapshotter:check

# The manifests as JSON, unchanged (removing a label that is not there is a no-op edit).
"$KUBECTL" label --local -f "$manifest" no-such-label- -o json >"$tmp/input.json"
# Typed: the DaemonSet through kubectl's scheme (kubectl prints nothing for an unchanged object, so the image is set to another name);
# the other kinds are decoded too and refused as "not a pod" by their Go type's name.
if ! "$KUBECTL" set image --local -f "$manifest" "*=$image" -o json >"$tmp/typed.json" 2>"$tmp/typed.err"; then
  # Only the kinds without a pod template may fail, and only for that reason.
  if grep -v -e 'does not have a pod template' -e '^ *$' -e '^error: namespace/' -e '^error: runtimeclass' \
    "$tmp/typed.err" | grep -q .; then
    cat "$tmp/typed.err" >&2
    echo "FAIL: kubectl could not decode $manifest" >&2
    exit 1
  fi
fi
for t in v1.Namespace v1.RuntimeClass; do
  grep -q "\*$t" "$tmp/typed.err" || {
    cat "$tmp/typed.err" >&2
    echo "FAIL: no $t decoded from $manifest" >&2
    exit 1
  }
done

"$PYTHON" - "$tmp/input.json" "$tmp/typed.json" "$here/containerd-config.toml" \
  "$here/../systemd/slacker-snapshotter.service" <<'EOF'
import json, re, sys, tomllib

inp, typed_path, toml_path, unit_path = sys.argv[1:5]
def objects(path):
    """kubectl prints one JSON document per object, one after the other."""
    text, dec, pos, out = open(path).read(), json.JSONDecoder(), 0, []
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        obj, pos = dec.raw_decode(text, pos)
        out += obj["items"] if obj.get("kind") == "List" else [obj]
    return out

items = objects(inp)
by_kind = {o["kind"]: o for o in items}
errors = []

def lost(a, b, path):
    """Fields of a (the manifest) that b (after typed decoding) does not have."""
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return [path]
        out = []
        for k, v in a.items():
            if k not in b:
                if v not in (False, 0, "", [], {}, None):  # zero values are omitted
                    out.append(path + "." + k)
            else:
                out += lost(v, b[k], path + "." + k)
        return out
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return [path]
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in lost(x, y, "%s[%d]" % (path, i))]
    return []

typed = next(o for o in objects(typed_path) if o["kind"] == "DaemonSet")
ds = by_kind.get("DaemonSet")
if ds is None:
    sys.exit("FAIL: no DaemonSet in the manifest")
for p in lost(ds, typed, "DaemonSet"):
    errors.append("field unknown to Kubernetes (dropped by decoding): " + p)

cfg = tomllib.load(open(toml_path, "rb"))
address = cfg["proxy_plugins"]["slacker"]["address"]
cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
if cri.get("snapshotter") != "slacker":
    errors.append("containerd-config.toml: CRI snapshotter is not slacker")
if cri.get("disable_snapshot_annotations", True) is not False:
    errors.append("containerd-config.toml: disable_snapshot_annotations must be false")

rc = by_kind["RuntimeClass"]
handler = rc["handler"]
runtime = cri.get("runtimes", {}).get(handler)
if runtime is None or runtime.get("snapshotter") != "overlayfs":
    errors.append("RuntimeClass handler %s is not a containerd runtime on overlayfs" % handler)
pod = ds["spec"]["template"]
if pod["spec"].get("runtimeClassName") != rc["metadata"]["name"]:
    errors.append("the DaemonSet does not use RuntimeClass " + rc["metadata"]["name"])
if pod["metadata"].get("annotations", {}).get("io.containerd.cri.runtime-handler") != handler:
    errors.append("the DaemonSet's pods lack io.containerd.cri.runtime-handler: " + handler)
if ds["metadata"].get("namespace") != by_kind["Namespace"]["metadata"]["name"]:
    errors.append("the DaemonSet is not in the manifest's namespace")

vols = {v["name"]: v for v in pod["spec"]["volumes"]}
main = next(c for c in pod["spec"]["containers"] if c["name"] == "slacker-snapshotter")
mounts = {m["name"]: m for m in main["volumeMounts"]}
cmd = " ".join(main["command"])
sock_dir = address.rsplit("/", 1)[0]
if "--address " + address not in cmd:
    errors.append("the snapshotter does not listen on containerd's address " + address)
if vols["socket"]["hostPath"]["path"] != sock_dir or mounts["socket"]["mountPath"] != sock_dir:
    errors.append("the socket dir is not the host's " + sock_dir)
state = re.search(r"--state (\S+)", cmd).group(1)
if mounts["state"]["mountPath"] != state or mounts["state"].get("mountPropagation") != "Bidirectional":
    errors.append("the state dir %s must be mounted with Bidirectional propagation" % state)
if vols["state"]["hostPath"]["path"] != state:
    errors.append("the state dir is not the host's " + state)
if not main.get("securityContext", {}).get("privileged"):
    errors.append("the snapshotter container must be privileged (mount, loop devices)")
root = cfg.get("root", "/var/lib/containerd")
if vols["imagefs"]["hostPath"]["path"] != root + "/io.containerd.snapshotter.v1.slacker":
    errors.append("the image fs volume is not containerd's CRI image fs path")

unit = open(unit_path).read()
if "--address " + address not in unit:
    errors.append("the systemd unit does not listen on containerd's address " + address)

for e in errors:
    print("FAIL: " + e)
sys.exit(1 if errors else 0)
EOF

if [ -x "$CONTAINERD" ]; then
  "$CONTAINERD" --config "$here/containerd-config.toml" config dump >"$tmp/dump.toml" 2>"$tmp/dump.err" || {
    cat "$tmp/dump.err" >&2
    echo "FAIL: containerd refused containerd-config.toml" >&2
    exit 1
  }
  grep -q 'snapshotter = "slacker"' "$tmp/dump.toml" || {
    echo "FAIL: containerd's view of containerd-config.toml has no snapshotter = \"slacker\"" >&2
    exit 1
  }
else
  echo "#### NOT TESTED: $CONTAINERD missing: containerd-config.toml not parsed by containerd" >&2
  exit 1
fi
echo "deploy/kubernetes: valid (kubectl $("$KUBECTL" version --client 2>/dev/null | head -1))"
