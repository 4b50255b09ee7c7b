#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay in each direction: network latency for
the prefetch benchmark (bench/prefetch) on a kernel without sch_netem.

  delay_proxy.py --listen ADDR --target ADDR [--rtt-ms MS] [--rtt-file F]
                 [--stats-file F] [--rpc-ports P,...] PORT [PORT...]
  delay_proxy.py --echo PORT             (an echo server, to measure the link with)
  delay_proxy.py --probe HOST PORT       (prints the mean round trip to an echo server, ms)

Listens on ADDR:PORT for each PORT and forwards every connection to TARGET:PORT; every
chunk read on one side is written to the other RTT/2 ms later (order kept, so a stream's
bytes arrive as sent, shifted in time: what netem's delay does to a TCP flow, without
its loss or reordering). Requests in flight pipeline as they would on a real link.
Threads and time.sleep, not an event loop: epoll's timeout is whole milliseconds, which
turned a 0.5 ms round trip into 2.6. SIGUSR1 re-reads the delay from --rtt-file.
Counters per port (--stats-file, written on SIGUSR2 with a sequence number that
increases each time): connections, bytes each way, and for --rpc-ports (ONC RPC over
TCP: NFS, mountd, portmap) the calls, counted from the record marks of the client's
stream (RFC 5531 section 11: a 4-byte mark per fragment, its top bit set on a record's
last fragment): a call is a round trip to the server, whatever the client library hides;
`procedures` counts them by name (NFSv3's READ, GETATTR, ... from the call header).
Runs until SIGTERM.
"""
import argparse
import collections
import json
import os
import signal
import socket
import sys
import threading
import time

CHUNK = 1 << 20


class Link:
    def __init__(self, rtt_ms):
        self.one_way = rtt_ms / 2000.0


class Counters:
    """Per port: connections, bytes client->server (up) and back (down), RPC calls."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ports = {}
        self.seq = 0

    def _port(self, port):
        return self.ports.setdefault(str(port), {"connections": 0, "bytes_up": 0, "bytes_down": 0, "rpc_calls": 0,
                                                 "procedures": {}})

    def add(self, port, key, n):
        with self.lock:
            self._port(port)[key] += n

    def add_call(self, port, name):
        with self.lock:
            procs = self._port(port)["procedures"]
            procs[name] = procs.get(name, 0) + 1

    def write(self, path):
        with self.lock:
            self.seq += 1
            text = json.dumps({"seq": self.seq, "ports": self.ports}, sort_keys=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)


# NFSv3's procedures (RFC 1813), by number: what the counters name a call of program
# 100003 by. Other programs (mountd 100005, portmap 100000) are named PROGRAM/PROC.
NFS3_PROCEDURES = ("NULL", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "READLINK", "READ", "WRITE", "CREATE",
                   "MKDIR", "SYMLINK", "MKNOD", "REMOVE", "RMDIR", "RENAME", "LINK", "READDIR", "READDIRPLUS",
                   "FSSTAT", "FSINFO", "PATHCONF", "COMMIT")


def call_name(head):
    """The procedure of an RPC call from its first 24 bytes (xid, CALL, rpcvers, prog,
    vers, proc; RFC 5531), or None for a reply or a record too short to say."""
    if len(head) < 24:
        return None
    _, mtype, _, prog, vers, proc = (int.from_bytes(head[i:i + 4], "big") for i in range(0, 24, 4))
    if mtype != 0:
        return None
    if prog == 100003 and vers == 3 and proc < len(NFS3_PROCEDURES):
        return NFS3_PROCEDURES[proc]
    return f"{prog}/{proc}"


class RecordMarks:
    """Counts the complete records (RPC calls) in one direction of an ONC RPC/TCP stream,
    and names each (call_name of its first bytes) in `calls` for the caller to take."""

    def __init__(self):
        self.header = b""  # a partial 4-byte mark
        self.left = 0  # bytes of the current fragment not yet seen
        self.last = False  # the current fragment ends its record
        self.head = b""  # the current record's first 24 bytes, as far as seen
        self.calls = []  # names of the records completed (None: not a call)

    def _end_record(self):
        self.calls.append(call_name(self.head))
        self.head = b""

    def feed(self, data):
        records, i, n = 0, 0, len(data)
        while i < n:
            if self.left:
                take = min(self.left, n - i)
                if len(self.head) < 24:
                    self.head += data[i:i + min(take, 24 - len(self.head))]
                self.left -= take
                i += take
                if not self.left and self.last:
                    records += 1
                    self._end_record()
                continue
            need = 4 - len(self.header)
            self.header += data[i:i + need]
            i += min(need, n - i)
            if len(self.header) == 4:
                mark = int.from_bytes(self.header, "big")
                self.header = b""
                self.last, self.left = bool(mark & 0x80000000), mark & 0x7FFFFFFF
                if not self.left and self.last:
                    records += 1
                    self._end_record()
        return records


def forward(src, dst, link, count=None):
    """Reads src, delivers each chunk to dst one_way seconds after it was read; count(data)
    sees every chunk."""
    queue = collections.deque()
    ready = threading.Condition()
    done = []

    def deliver():
        while True:
            with ready:
                while not queue and not done:
                    ready.wait()
                if not queue:
                    break
                due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                dst.sendall(data)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    writer = threading.Thread(target=deliver, daemon=True)
    writer.start()
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            if count:
                count(data)
            with ready:
                queue.append((time.monotonic() + link.one_way, data))
                ready.notify()
    except OSError:
        pass
    with ready:
        done.append(True)
        ready.notify()
    writer.join()


def handle(client, target, port, link, counters, rpc):
    try:
        upstream = socket.create_connection((target, port))
    except OSError:
        client.close()
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    counters.add(port, "connections", 1)
    marks = RecordMarks() if rpc else None

    def up(data):
        counters.add(port, "bytes_up", len(data))
        if marks:
            counters.add(port, "rpc_calls", marks.feed(data))
            for name in marks.calls:
                counters.add_call(port, name or "other")
            marks.calls.clear()

    t = threading.Thread(target=forward, args=(upstream, client, link,
                                               lambda d: counters.add(port, "bytes_down", len(d))), daemon=True)
    t.start()
    forward(client, upstream, link, up)
    t.join()
    client.close()
    upstream.close()


def serve(listen, target, port, link, counters, rpc):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((listen, port))
    s.listen(64)

    def accept():
        while True:
            client, _ = s.accept()
            threading.Thread(target=handle, args=(client, target, port, link, counters, rpc), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def echo(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(8)
    print("delay_proxy ready", flush=True)
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(CHUNK)
            if not d:
                break
            c.sendall(d)
        c.close()


def probe(host, port, n=200):
    c = socket.create_connection((host, port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    for _ in range(n):
        c.sendall(b"x" * 100)
        got = 0
        while got < 100:
            got += len(c.recv(CHUNK))
    print("%.3f" % ((time.perf_counter() - t0) / n * 1000))


def main():
    # SIGTERM is how the benchmarks stop it: a clean exit, not "killed by a signal".
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(sys.argv) == 3 and sys.argv[1] == "--echo":
        return echo(int(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "--probe":
        return probe(sys.argv[2], int(sys.argv[3]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--rtt-file", default="")
    ap.add_argument("--stats-file", default="")
    ap.add_argument("--rpc-ports", default="", help="comma-separated ports that speak ONC RPC over TCP")
    ap.add_argument("ports", type=int, nargs="+")
    a = ap.parse_args()
    link = Link(a.rtt_ms)

    def reload(*_):
        if a.rtt_file:
            with open(a.rtt_file) as f:
                link.one_way = float(f.read().strip()) / 2000.0

    signal.signal(signal.SIGUSR1, reload)
    counters = Counters()
    if a.stats_file:
        signal.signal(signal.SIGUSR2, lambda *_: counters.write(a.stats_file))
        counters.write(a.stats_file)
    rpc_ports = {int(p) for p in a.rpc_ports.split(",") if p}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    reload()
    for p in a.ports:
        serve(a.listen, a.target, p, link, counters, p in rpc_ports)
    print("delay_proxy ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
