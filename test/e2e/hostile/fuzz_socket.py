#!/usr/bin/env python3
"""Malformed HTTP/JSON against a plugin socket (test/e2e/hostile_e2e.sh).

  fuzz_socket.py SOCKET PID ITERATIONS [SEED]

Sends ITERATIONS requests picked from: random bytes, truncated request lines and
headers, oversize headers, lying Content-Length, broken chunked bodies, bad JSON, JSON
of the wrong types to every GraphDriver route, hostile layer ids, and idle connections
left open. After every 50 requests (and at the end) it checks that PID is alive and
that POST /Plugin.Activate still answers 200 with "GraphDriver". Exits 1 (and says
which request came last) if the plugin died or stopped answering. Run it against a
slackerd that no dockerd uses: valid-looking requests do create and remove layers.
"""
import json
import os
import random
import socket
import sys
import time

SOCK, PID, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)

ROUTES = ["Create", "CreateReadWrite", "Remove", "Get", "Put", "Exists", "Status", "GetMetadata",
          "Cleanup", "Diff", "Changes", "ApplyDiff", "DiffSize", "Capabilities", "Init"]
HOSTILE_IDS = ["", ".", "..", "../../../../tmp/slacker-fuzz-pwned", "/etc/passwd", "a/b", "x" * 300,
               "\x00", "id\nwith-newline", "ünï", "fz-%d", "fz-%d-child"]
WRONG = [None, 1, -1, 1.5, True, [], [1, 2], {}, {"a": 1}, "s" * 70000, 2 ** 70]


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    return s


def send(raw, read=True):
    s = connect()
    try:
        s.sendall(raw)
        if read:
            s.shutdown(socket.SHUT_WR)
            data = b""
            while len(data) < 1 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        return b""
    finally:
        s.close()


def post(path, body, extra=b""):
    if not isinstance(body, bytes):
        body = body.encode()
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: plugin\r\n" + extra
            + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


def hostile_id(i):
    v = rng.choice(HOSTILE_IDS)
    return v % i if "%d" in v else v


def json_body(route, i):
    if route == "Init":  # never a string Home: it would create that directory
        return json.dumps({"Home": rng.choice([w for w in WRONG if not isinstance(w, str)]),
                           "Opts": rng.choice(WRONG)})
    keys = ["ID", "Parent", "MountLabel", "StorageOpt", "Opts"]
    body = {}
    for k in keys:
        if rng.random() < 0.6:
            body[k] = hostile_id(i) if (k in ("ID", "Parent") and rng.random() < 0.6) else rng.choice(WRONG)
    return json.dumps(body)


def one(i):
    kind = rng.randrange(12)
    route = "/GraphDriver." + rng.choice(ROUTES)
    if kind == 0:
        return "random bytes", send(os.urandom(rng.randrange(1, 4096)))
    if kind == 1:
        full = post(route, json_body(route.split(".")[1], i))
        return "truncated request", send(full[:rng.randrange(1, len(full))])
    if kind == 2:
        return "huge header", send(post(route, "{}", b"X-Big: " + b"a" * (rng.choice([9000, 70000, 1 << 20])) + b"\r\n"))
    if kind == 3:
        return "many headers", send(post(route, "{}", b"".join(b"X-%d: v\r\n" % k for k in range(5000))))
    if kind == 4:
        return "lying content-length", send(
            b"POST " + route.encode() + b" HTTP/1.1\r\nHost: p\r\nContent-Length: 99999999999\r\n\r\n{}")
    if kind == 5:
        return "bad chunked", send(
            b"POST " + route.encode() + b" HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    if kind == 6:
        bad = rng.choice([b"{", b"[1,2", b"nul", b"\xff\xfe", b'{"ID":"a"', b"{}" * 1000, b'"str"', b"123"])
        return "bad json", send(post(route, bad))
    if kind == 7:
        return "wrong types", send(post(route, json_body(route.split(".")[1], i)))
    if kind == 8:
        return "bad method/path", send(rng.choice([
            b"GET /GraphDriver.Create HTTP/1.1\r\nHost: p\r\n\r\n",
            b"POST /../../etc/passwd HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n\r\n",
            b"POST /GraphDriver.Create?x=" + b"%" * 1000 + b" HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\n\r\n{}",
            b"BREW /x HTCPCP/1.0\r\n\r\n",
            b"POST / HTTP/9.9\r\n\r\n"]))
    if kind == 9:
        q = rng.choice(["", "?id=", "?id=../../x", "?id=fz-%d&parent=../.." % i, "?id=%00", "?" + "a=b&" * 2000])
        path = rng.choice(["/GraphDriver.ApplyDiff", "/GraphDriver.Diff"]) + q
        return "query", send(post(path, os.urandom(rng.randrange(0, 2048))))
    if kind == 10:
        # Create then operate on a legitimate layer with garbage payloads.
        lid = "fz-%d" % i
        send(post("/GraphDriver.Create", json.dumps({"ID": lid, "Parent": ""})))
        return "apply garbage", send(post("/GraphDriver.ApplyDiff?id=" + lid, os.urandom(rng.randrange(0, 8192))))
    # Idle connections left half-open while the next requests run.
    idle = []
    for _ in range(rng.randrange(1, 8)):
        c = connect()
        c.sendall(b"POST /GraphDriver.Status HTTP/1.1\r\nHost: p\r\nContent-Len")
        idle.append(c)
    IDLE.extend(idle)
    return "idle connections", b""


IDLE = []


def alive():
    try:
        with open("/proc/%d/stat" % PID) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except FileNotFoundError:
        return False


def activate_ok():
    r = send(post("/Plugin.Activate", "{}"))
    return r.startswith(b"HTTP/1.1 200") and b"GraphDriver" in r


def check(last):
    deadline = time.time() + 10
    while time.time() < deadline:
        if not alive():
            print("FUZZ: plugin pid %d died; last request: %s" % (PID, last))
            sys.exit(1)
        if activate_ok():
            return
        time.sleep(0.2)
    print("FUZZ: plugin stopped answering /Plugin.Activate; last request: %s" % last)
    sys.exit(1)


counts = {}
last = "none"
for i in range(N):
    last, _ = one(i)
    counts[last] = counts.get(last, 0) + 1
    if i % 50 == 49:
        check(last)
        for c in IDLE[:-16]:  # keep a few open throughout, close the rest
            c.close()
        del IDLE[:-16]
check(last)
for c in IDLE:
    c.close()
print("FUZZ: %d requests, plugin alive and answering: %s" % (N, json.dumps(counts, sort_keys=True)))
