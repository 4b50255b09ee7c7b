#!/usr/bin/env python3
"""Writes the small seed corpora committed under test/fuzz/corpus/ (run once; the
files are in git). Usage: make_seeds.py [DIR] (default: corpus/ beside this script)."""
import io
import json
import os
import sys
import tarfile

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(sub, name, data):
    d = os.path.join(root, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar_of(members, fmt):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for ti, data in members:
            ti.size = len(data) if data is not None else 0
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return b.getvalue()


def ti(name, type=tarfile.REGTYPE, **kw):
    t = tarfile.TarInfo(name)
    t.type = type
    for k, v in kw.items():
        setattr(t, k, v)
    return t


# tar reader
write("tar_reader", "ustar_file_dir", tar_of([(ti("d/", tarfile.DIRTYPE, mode=0o755), None),
                                              (ti("d/f", mode=0o644), b"hello\n")], tarfile.USTAR_FORMAT))
write("tar_reader", "links", tar_of([(ti("f"), b"x"), (ti("s", tarfile.SYMTYPE, linkname="f"), None),
                                     (ti("h", tarfile.LNKTYPE, linkname="f"), None)], tarfile.USTAR_FORMAT))
write("tar_reader", "gnu_longname", tar_of([(ti("l" * 150), b"long")], tarfile.GNU_FORMAT))
write("tar_reader", "pax_xattr", tar_of([(ti("x", pax_headers={"SCHILY.xattr.user.a": "v", "path": "p" * 120}),
                                          b"pax")], tarfile.PAX_FORMAT))
write("tar_reader", "whiteouts", tar_of([(ti("a/.wh.b"), b""), (ti("a/.wh..wh..opq"), b"")], tarfile.USTAR_FORMAT))
write("tar_reader", "devices", tar_of([(ti("c", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
                                       (ti("p", tarfile.FIFOTYPE), None)], tarfile.GNU_FORMAT))
write("tar_reader", "empty", b"\0" * 1024)

# tar apply: the reader's seeds, and links, whiteouts and opaque markers aimed at the
# canaries beside the layer root (tar_apply_fuzz.cc: <scratch>/root and <scratch>/canary).
for name in os.listdir(os.path.join(root, "tar_reader")):
    with open(os.path.join(root, "tar_reader", name), "rb") as f:
        write("tar_apply", name, f.read())
for target, tail in (("../canary/secret", "file"), ("../canary/dir", "dir")):
    link = (ti("evil", tarfile.SYMTYPE, linkname=target), None)
    write("tar_apply", "under_link_to_" + tail, tar_of([link, (ti("evil/x", mode=0o777), b"pwned")],
                                                        tarfile.USTAR_FORMAT))
    write("tar_apply", "whiteout_under_link_to_" + tail, tar_of([link, (ti("evil/.wh.inner"), b"")],
                                                                 tarfile.USTAR_FORMAT))
    write("tar_apply", "opaque_under_link_to_" + tail, tar_of([link, (ti("evil/.wh..wh..opq"), b"")],
                                                               tarfile.USTAR_FORMAT))
    write("tar_apply", "replace_link_to_" + tail,
          tar_of([link, (ti("evil", tarfile.DIRTYPE, mode=0o777, uid=1, mtime=5), None),
                  (ti("evil/sub", tarfile.DIRTYPE, mode=0o777), None)], tarfile.USTAR_FORMAT))
    write("tar_apply", "hardlink_to_link_to_" + tail,
          tar_of([link, (ti("h", tarfile.LNKTYPE, linkname="evil", mode=0o777, uid=1, mtime=5), None),
                  (ti("h2", tarfile.LNKTYPE, linkname="evil/inner"), None)], tarfile.USTAR_FORMAT))
    write("tar_apply", "whiteout_of_link_to_" + tail, tar_of([link, (ti(".wh.evil"), b"")],
                                                              tarfile.USTAR_FORMAT))

# reference tar (registry_shim/FORMAT.md), built with the same rules as the encoder.


def ref_tar(body):
    b = bytearray(512)
    name = b".slacker/ref.json"
    b[0:len(name)] = name
    for off, val in ((100, b"0000644\0"), (108, b"0000000\0"), (116, b"0000000\0"),
                     (124, b"%011o\0" % len(body)), (136, b"00000000000\0"), (156, b"0"),
                     (257, b"ustar\x0000"), (329, b"0000000\0"), (337, b"0000000\0")):
        b[off:off + len(val)] = val
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b) + body + b"\0" * ((512 - len(body) % 512) % 512) + b"\0" * 1024


ref = {"format": 1, "store": "0123456789abcdef0123456789abcdef", "snapshot": "fedcba9876543210fedcba9876543210",
       "bytes": 4096}
write("reference", "valid_nokey", ref_tar(json.dumps(ref, separators=(",", ":")).encode()))
ref_mac = dict(ref, mac="00" * 32)
write("reference", "bad_mac", ref_tar(json.dumps(ref_mac, separators=(",", ":")).encode()))
write("reference", "unknown_key", ref_tar(b'{"format":1,"x":2}'))
write("reference", "not_json", ref_tar(b"{"))

# plugin requests: route byte, method byte, query line, body.
routes = ["/Plugin.Activate", "/GraphDriver.Init", "/GraphDriver.Create", "/GraphDriver.CreateReadWrite",
          "/GraphDriver.Remove", "/GraphDriver.Get", "/GraphDriver.Put", "/GraphDriver.Exists",
          "/GraphDriver.Status", "/GraphDriver.GetMetadata", "/GraphDriver.Cleanup", "/GraphDriver.Diff",
          "/GraphDriver.Changes", "/GraphDriver.ApplyDiff", "/GraphDriver.DiffSize", "/GraphDriver.Capabilities"]
bodies = {
    "/GraphDriver.Init": {"Home": "/h", "Opts": ["size=1G"], "UIDMaps": [], "GIDMaps": []},
    "/GraphDriver.Create": {"ID": "a1", "Parent": "", "MountLabel": "", "StorageOpt": {"size": "1G"}},
    "/GraphDriver.CreateReadWrite": {"ID": "a2", "Parent": "a1", "MountLabel": "", "StorageOpt": None},
    "/GraphDriver.Get": {"ID": "a1", "MountLabel": ""},
    "/GraphDriver.Changes": {"ID": "a2", "Parent": "a1"},
}
for i, r in enumerate(routes):
    if r in ("/GraphDriver.ApplyDiff", "/GraphDriver.Diff"):
        write("plugin_request", "r%02d" % i, bytes([i, 0]) + b"?id=a1&parent=\n" + ref_tar(b"{}"))
        continue
    body = bodies.get(r, {"ID": "a1", "Parent": ""})
    write("plugin_request", "r%02d" % i, bytes([i, 0]) + b"\n" + json.dumps(body).encode())
write("plugin_request", "error_id", bytes([5, 0]) + b"\n" + b'{"ID":"e1"}')


# Start-up traces (driver/prefetch_trace.h): a valid one of each extent kind, one whose
# checksum is wrong, one cut short.
def trace(image_bytes, extents):
    import hashlib
    import struct
    body = b"SLKTRACE" + struct.pack("<IIQQ", 1, len(extents), image_bytes, 0)
    for off, length, kind, ino, gen, foff in extents:
        body += struct.pack("<QIIIIQ", off, length, kind, ino, gen, foff)
    return body + hashlib.sha256(body).digest()


good = trace(1 << 26, [(0, 4096, 0, 0, 0, 0), (1 << 20, 65536, 1, 12, 7, 0), (8192, 4096, 0, 0, 0, 0)])
write("trace", "valid", good)
write("trace", "bad_checksum", good[:-1] + bytes([good[-1] ^ 1]))
write("trace", "truncated", good[:70])
write("trace", "empty", trace(1 << 26, []))
