#!/usr/bin/env python3
"""Hostile layer corpus for test/e2e/hostile_e2e.sh.

  gen.py OUTDIR SENTINEL_DIR BASE_LAYER_TAR STORE_UUID

Writes OUTDIR/<case>.tar, each a `docker save`-format image (manifest.json, config,
layer tars) of two layers: BASE_LAYER_TAR (a busybox rootfs, so the result can run) and
one malicious layer, and OUTDIR/cases.tsv: one line per case,
  NAME <TAB> EXPECT <TAB> ARG
EXPECT `reject`: `docker load` must fail and its message contain ARG;
EXPECT `accept`: the load must succeed and `sh -c 'ARG'` in the image must print "ok".
Paths that try to escape aim at SENTINEL_DIR (absolute, and as ../ chains from the
layer's mount point <state>/mnt/<layer id>), which the test checks is untouched.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OUT, SENTINEL, BASE, STORE = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3], sys.argv[4]
os.makedirs(OUT, exist_ok=True)
CASES = []

# ---------------------------------------------------------------- raw tar building


def octal(n, width):
    return ("%0*o" % (width - 1, n)).encode() + b"\0"


def base256(n, width):
    return bytes([0x80]) + n.to_bytes(width - 1, "big")


def header(name, size=0, typeflag=b"0", linkname=b"", mode=0o644, uid=0, gid=0, mtime=0,
           size_field=None, devmajor=0, devminor=0, magic=b"ustar\x0000", extra=None):
    """One 512-byte ustar header. `size_field` overrides the encoded size; `extra` is a
    list of (offset, bytes) patched in before the checksum."""
    if isinstance(name, str):
        name = name.encode()
    if isinstance(linkname, str):
        linkname = linkname.encode()
    b = bytearray(512)
    b[0:len(name[:100])] = name[:100]
    b[100:108] = octal(mode, 8)
    b[108:116] = octal(uid, 8)
    b[116:124] = octal(gid, 8)
    b[124:136] = size_field if size_field is not None else octal(size, 12)
    b[136:148] = octal(mtime, 12)
    b[156:157] = typeflag
    b[157:157 + len(linkname[:100])] = linkname[:100]
    b[257:265] = magic
    b[265:269] = b"root"
    b[297:301] = b"root"
    b[329:337] = octal(devmajor, 8)
    b[337:345] = octal(devminor, 8)
    for off, data in extra or []:
        b[off:off + len(data)] = data
    b[148:156] = b" " * 8
    b[148:156] = ("%06o" % sum(b)).encode() + b"\0 "
    return bytes(b)


def pad(data):
    return data + b"\0" * ((512 - len(data) % 512) % 512)


def entry(name, data=b"", **kw):
    return header(name, size=len(data), **kw) + pad(data)


def pax(records, name="PaxHeaders/x"):
    body = b""
    for k, v in records:
        if isinstance(v, str):
            v = v.encode()
        rec = b" " + k.encode() + b"=" + v + b"\n"
        n = len(rec) + 1
        while len(str(n)) + len(rec) != n:
            n = len(str(n)) + len(rec)
        body += str(n).encode() + rec
    return header(name, size=len(body), typeflag=b"x") + pad(body)


END = b"\0" * 1024

# ---------------------------------------------------------------- docker save format


def save(name, layer, expect, arg, gzip_layer=False):
    """Writes OUT/<name>.tar: an image bb-hostile/<name>:1 of the base layer + `layer`."""
    with open(BASE, "rb") as f:
        base = f.read()
    layers = [base, layer]
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "base"}, {"created_by": "hostile " + name}],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    files = [(config_name, config)]
    layer_paths = []
    for i, l in enumerate(layers):
        blob = gzip.compress(l, compresslevel=1) if (gzip_layer and i == 1) else l
        path = "layer%d/layer.tar" % i
        layer_paths.append(path)
        files.append((path, blob))
    manifest = [{"Config": config_name, "RepoTags": ["bb-hostile/%s:1" % name.lower()],
                 "Layers": layer_paths}]
    files.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(os.path.join(OUT, name + ".tar"), "w", format=tarfile.USTAR_FORMAT) as t:
        for path, data in files:
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    CASES.append((name, expect, arg))


# Relative path from the layer's mount point (<W>/<plugin>-state/mnt/<id>) to the
# sentinel, and a deep ../ chain to the root of the host file system.
REL = "../../../" + os.path.basename(SENTINEL)
DEEP = "../" * 24 + SENTINEL.lstrip("/")
ESCAPE = "escapes the layer root"

save("dotdot", entry("ok", b"x") + entry(REL + "/dotdot", b"pwned") + END, "reject", ESCAPE)
save("dotdot_deep", entry(DEEP + "/deep", b"pwned") + END, "reject", ESCAPE)
save("dotdot_inner", entry("a/../../" + REL + "/inner", b"pwned") + END, "reject", ESCAPE)
save("absolute", entry(SENTINEL + "/absolute", b"pwned") + END, "reject", ESCAPE)
# A symlink to the host directory, then a file written "through" it: the symlink
# resolves inside the layer (RESOLVE_IN_ROOT), where SENTINEL does not exist.
save("symlink_abs_write_through",
     entry("evil", typeflag=b"2", linkname=SENTINEL) + entry("evil/through", b"pwned") + END,
     "reject", "evil/through")
save("symlink_rel_write_through",
     entry("evil", typeflag=b"2", linkname=DEEP) + entry("evil/through", b"pwned") + END,
     "reject", "evil/through")
# A symlink to a directory that does exist inside the layer: writing through it lands
# inside the layer, which is what the tar means.
save("symlink_inside_write_through",
     entry("tmp/", typeflag=b"5", mode=0o755) + entry("lnk", typeflag=b"2", linkname="/tmp")
     + entry("lnk/through", b"inside") + END,
     "accept", '[ "$(cat /tmp/through)" = inside ] && [ -L /lnk ] && echo ok')
# Links aimed at the restrictive canaries (SENTINEL/secret: a 0600 file, SENTINEL/private:
# a 0700 dir holding a 0600 file): a parent that is a symlink leading out of the layer is
# refused, never followed (the old fallback chmod-ed the host file or dir to 0755 through
# it); a final component that is such a symlink is replaced or removed, never followed.
REFUSED = "evil is a symlink"
TO_SECRET = entry("evil", typeflag=b"2", linkname=SENTINEL + "/secret")
TO_PRIVATE = entry("evil", typeflag=b"2", linkname=SENTINEL + "/private")
save("canary_file_under_link_to_0600_file", TO_SECRET + entry("evil/x", b"pwned", mode=0o777) + END,
     "reject", REFUSED)
save("canary_file_under_link_to_0700_dir", TO_PRIVATE + entry("evil/x", b"pwned", mode=0o777) + END,
     "reject", REFUSED)
save("canary_file_under_rel_link_to_0700_dir",
     entry("evil", typeflag=b"2", linkname=DEEP + "/private")
     + entry("evil/a/b/x", b"pwned", mode=0o777) + END, "reject", REFUSED)
save("canary_dir_under_link_to_0700_dir",
     TO_PRIVATE + entry("evil/sub/", typeflag=b"5", mode=0o777, uid=1234, mtime=2000000000) + END,
     "reject", REFUSED)
save("canary_hardlink_under_link_to_0700_dir",
     entry("f", b"x") + TO_PRIVATE + entry("evil/h", typeflag=b"1", linkname="f", mode=0o777) + END,
     "reject", REFUSED)
save("canary_whiteout_under_link_to_0700_dir", TO_PRIVATE + entry("evil/.wh.inner") + END,
     "reject", REFUSED)
save("canary_opaque_under_link_to_0700_dir", TO_PRIVATE + entry("evil/.wh..wh..opq") + END,
     "reject", REFUSED)
save("canary_dir_entry_over_link_to_0700_dir",
     TO_PRIVATE + entry("evil/", typeflag=b"5", mode=0o777, uid=1234, mtime=2000000000) + END,
     "accept", '[ -d /evil ] && [ ! -L /evil ] && [ "$(stat -c %a:%u /evil)" = 777:1234 ] && echo ok')
save("canary_whiteout_of_link_to_0600_file", TO_SECRET + entry(".wh.evil") + END,
     "accept", '[ ! -e /evil ] && [ ! -L /evil ] && echo ok')
save("canary_hardlink_to_link_to_0600_file",
     TO_SECRET + entry("h", typeflag=b"1", linkname="evil", mode=0o777, uid=1234, mtime=2000000000)
     + END, "accept", '[ -L /h ] && [ "$(readlink /h)" = "' + SENTINEL + '/secret" ] && echo ok')
save("canary_hardlink_target_under_link_to_0700_dir",
     TO_PRIVATE + entry("h", typeflag=b"1", linkname="evil/inner") + END,
     "reject", "hardlink target evil/inner")
# Hardlinks whose target is a host file.
save("hardlink_abs", entry("hl", typeflag=b"1", linkname=SENTINEL + "/host_file") + END,
     "reject", ESCAPE)
save("hardlink_dotdot", entry("hl", typeflag=b"1", linkname=REL + "/host_file") + END,
     "reject", ESCAPE)
# A hardlink to a symlink that points at the host file: links the symlink itself.
save("hardlink_via_symlink",
     entry("s", typeflag=b"2", linkname=SENTINEL + "/host_file")
     + entry("hl", typeflag=b"1", linkname="s") + entry("hl", b"overwrite") + END,
     "accept", '[ "$(cat /hl)" = overwrite ] && [ -L /s ] && echo ok')
# Device nodes are legitimate layer content (as overlay2 stores them); the container's
# device cgroup, not the layer, decides access: the nodes exist and cannot be opened.
save("devices",
     entry("devs/", typeflag=b"5", mode=0o755)
     + entry("devs/evil_mem", typeflag=b"3", mode=0o666, devmajor=1, devminor=1)
     + entry("devs/evil_sda", typeflag=b"4", mode=0o666, devmajor=8, devminor=0)
     + entry("devs/evil_fifo", typeflag=b"6", mode=0o666) + END,
     "accept", "[ -c /devs/evil_mem ] && [ -b /devs/evil_sda ] && [ -p /devs/evil_fifo ] && "
     "! head -c1 /devs/evil_mem >/dev/null 2>&1 && ! head -c1 /devs/evil_sda >/dev/null 2>&1 && echo ok")
# A size field of 60 GiB (base-256) with no body: a truncated stream.
save("huge_size_field", header("big", size_field=base256(60 << 30, 12)) + END, "reject", "truncated tar stream")
# A size field above the reader's 64 GiB limit.
save("oversize_field", header("big", size_field=base256(1 << 50, 12)) + END, "reject", "limit")
# uid/gid of 2^40, base-256.
save("huge_uid", entry("u", b"x", extra=[(108, base256(1 << 40, 8)), (116, base256(1 << 40, 8))]) + END,
     "reject", "uid/gid out of range")
# A name field with no NUL (100 bytes) and a prefix-less 100-byte linkname.
save("name_no_nul", entry("n" * 100, b"x") + END, "accept", '[ -f /' + "n" * 100 + ' ] && echo ok')
# PAX: a long path, xattrs, a path that escapes, an oversize record, a malformed one.
save("pax_long_path", pax([("path", "d/" + "p" * 250)]) + entry("placeholder", b"x") + END,
     "accept", "[ -f /d/" + "p" * 250 + " ] && echo ok")
save("pax_escape", pax([("path", REL + "/pax")]) + entry("placeholder", b"x") + END, "reject", ESCAPE)
save("pax_linkpath_escape",
     pax([("linkpath", SENTINEL + "/host_file")]) + entry("hl", typeflag=b"1", linkname="x") + END,
     "reject", ESCAPE)
save("pax_oversize", pax([("comment", "c" * (2 << 20))]) + entry("f", b"x") + END, "reject", "limit")
save("pax_malformed", header("PaxHeaders/x", size=12, typeflag=b"x") + pad(b"99 path=abc\n")
     + entry("f", b"x") + END, "reject", "malformed PAX record")
save("pax_xattr",
     pax([("SCHILY.xattr.user.slacker", "v1")]) + entry("xa", b"x") + END,
     "accept", '[ -f /xa ] && echo ok')
# Truncated in the middle of a body, and in the middle of a header.
save("truncated_body", header("t", size=100000) + b"y" * 3000, "reject", "truncated tar stream")
save("truncated_header", entry("ok", b"x") + header("t", size=5)[:200], "reject", "truncated tar stream")
# Many tiny entries (bounded: 20000 files in 200 dirs).
many = bytearray()
for d in range(200):
    many += entry("many/%03d/" % d, typeflag=b"5", mode=0o755)
    for f in range(100):
        many += entry("many/%03d/%03d" % (d, f), b"")
save("many_entries", bytes(many) + END, "accept",
     '[ "$(find /many -type f | wc -l)" = 20000 ] && echo ok')
# Bombs: a GNU sparse entry claiming 1 TiB from one byte (rejected: sparse entries are not
# supported), and a gzip layer of 256 MiB of zeros (~250 KiB compressed) that the
# extraction stores as holes.
sparse_extra = [(386, octal(0, 12)), (398, octal(1, 12)), (483, base256(1 << 40, 12))]
save("sparse_bomb", header("holes", size=1, typeflag=b"S", extra=sparse_extra, magic=b"ustar  \0")
     + pad(b"z") + END, "reject", "unsupported tar entry type 'S'")
zeros = header("zeros", size=256 << 20) + b"\0" * (256 << 20) + END
save("gzip_zero_bomb", zeros, "accept", '[ "$(stat -c %s /zeros)" = 268435456 ] && echo ok',
     gzip_layer=True)

# Reference tars (registry_shim/FORMAT.md): foreign store, a snapshot that does not
# exist, a snapshot id that is a path, extra members, unknown keys, oversize streams.


def ref_tar(body, tail=b""):
    if isinstance(body, dict):
        body = json.dumps(body, separators=(",", ":")).encode()
    h = header(".slacker/ref.json", size=len(body), magic=b"ustar\x0000", extra=[(265, b"\0" * 64)])
    return h + pad(body) + tail


FOREIGN = "0123456789abcdef0123456789abcdef"
MISSING = "fedcba9876543210fedcba9876543210"
# The chain id of the one base layer (its DiffID): format 2 references below are bound to
# the right parent, so what refuses them is the missing MAC, not the parent binding.
with open(BASE, "rb") as f:
    BASE_CHAIN = "sha256:" + hashlib.sha256(f.read()).hexdigest()
# Unsigned (as anyone who read a snapshot id can forge them): refused before anything
# else is looked at; format 1 (no parent binding) likewise.
save("ref_foreign_store", ref_tar({"format": 2, "store": FOREIGN, "snapshot": MISSING, "parent": BASE_CHAIN, "bytes": 1})
     + END, "reject", "refusing an unsigned reference")
save("ref_missing_snapshot",
     ref_tar({"format": 2, "store": STORE, "snapshot": MISSING, "parent": BASE_CHAIN, "bytes": 1}) + END,
     "reject", "refusing an unsigned reference")
save("ref_format1_unsigned", ref_tar({"format": 1, "store": STORE, "snapshot": MISSING, "bytes": 1}) + END,
     "reject", "refusing an unsigned reference")
save("ref_path_snapshot",
     ref_tar({"format": 1, "store": STORE, "snapshot": "../../../../etc/passwd", "bytes": 1}) + END,
     "reject", "snapshot")
save("ref_unknown_key",
     ref_tar({"format": 1, "store": STORE, "snapshot": MISSING, "bytes": 1, "x": 1}) + END, "reject", 'unknown key "x"')
save("ref_bad_json", ref_tar(b"{not json") + END, "reject", "is not a JSON object")
save("ref_extra_member",
     ref_tar({"format": 1, "store": STORE, "snapshot": MISSING, "bytes": 1}) + entry("evil", b"x") + END,
     "reject", "extra")
save("ref_oversized", ref_tar({"format": 1, "store": STORE, "snapshot": MISSING, "bytes": 1})
     + b"\x01" * (128 << 10) + END, "reject", "larger than")

with open(os.path.join(OUT, "cases.tsv"), "w") as f:
    for name, expect, arg in CASES:
        f.write("%s\t%s\t%s\n" % (name, expect, arg))
