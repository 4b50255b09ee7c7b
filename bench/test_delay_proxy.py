"""Unit tests of bench/delay_proxy.py's counters (ctest -L unit: bench_delay_proxy): the
RPC calls counted from record marks, whatever the chunking, and a real proxy process."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import delay_proxy  # noqa: E402


def record(payload, fragments=1):
    """One RPC record of `payload`, split into `fragments` fragments with their marks."""
    out, step = b"", max(1, len(payload) // fragments)
    parts = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
    for i, p in enumerate(parts):
        last = 0x80000000 if i == len(parts) - 1 else 0
        out += (last | len(p)).to_bytes(4, "big") + p
    return out


def call(prog, vers, proc, body=b"", xid=7):
    """An RPC call message: xid, CALL (0), rpcvers 2, prog, vers, proc, then `body`."""
    return b"".join(x.to_bytes(4, "big") for x in (xid, 0, 2, prog, vers, proc)) + body


def reply(xid=7):
    return xid.to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\0" * 16


class ProcedureNamesTest(unittest.TestCase):
    def stream(self):
        return (record(call(100003, 3, 6, b"r" * 100)) +  # READ
                record(call(100003, 3, 1), fragments=6) +  # GETATTR, its header split over fragments
                record(call(100005, 3, 1)) +  # mountd MNT
                record(reply()) +  # not a call
                record(b"short"))  # too short to name

    def test_names_whatever_the_chunking(self):
        want = ["READ", "GETATTR", "100005/1", None, None]
        data = self.stream()
        for size in (1, 3, 7, 24, 1000):
            m = delay_proxy.RecordMarks()
            n = sum(m.feed(data[i:i + size]) for i in range(0, len(data), size))
            self.assertEqual(n, 5, f"chunks of {size}")
            self.assertEqual(m.calls, want, f"chunks of {size}")

    def test_every_nfs3_procedure_has_its_name(self):
        self.assertEqual(delay_proxy.call_name(call(100003, 3, 21)), "COMMIT")
        self.assertEqual(delay_proxy.call_name(call(100003, 3, 17)), "READDIRPLUS")
        self.assertEqual(delay_proxy.call_name(call(100003, 4, 1)), "100003/1")  # NFSv4 COMPOUND: not v3's table


class RecordMarksTest(unittest.TestCase):
    def stream(self):
        # 3 calls: one plain, one in 3 fragments, one empty record (a mark alone)
        return record(b"a" * 100) + record(b"b" * 300, fragments=3) + record(b"")

    def test_whole_stream(self):
        self.assertEqual(delay_proxy.RecordMarks().feed(self.stream()), 3)

    def test_every_split_point_counts_the_same(self):
        data = self.stream()
        for cut in range(len(data) + 1):
            m = delay_proxy.RecordMarks()
            self.assertEqual(m.feed(data[:cut]) + m.feed(data[cut:]), 3, f"cut at {cut}")

    def test_byte_by_byte(self):
        m = delay_proxy.RecordMarks()
        self.assertEqual(sum(m.feed(bytes([b])) for b in self.stream()), 3)

    def test_a_fragment_that_is_not_last_is_not_a_call(self):
        m = delay_proxy.RecordMarks()
        self.assertEqual(m.feed((5).to_bytes(4, "big") + b"xxxxx"), 0)
        self.assertEqual(m.feed((0x80000000 | 2).to_bytes(4, "big") + b"yy"), 1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ProxyProcessTest(unittest.TestCase):
    def test_counts_calls_connections_and_bytes(self):
        target = socket.socket()
        target.bind(("127.0.0.1", 0))
        target.listen(4)
        port = target.getsockname()[1]
        got = []

        def server():  # answers each connection's bytes with one byte, counts them
            for _ in range(2):
                c, _ = target.accept()
                n = 0
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    n += len(d)
                    c.sendall(b"k")
                got.append(n)
                c.close()

        threading.Thread(target=server, daemon=True).start()
        # The proxy listens on another address of loopback at the target's port.
        with tempfile.TemporaryDirectory() as d:
            stats = os.path.join(d, "stats.json")
            p = subprocess.Popen([sys.executable, os.path.join(HERE, "delay_proxy.py"), "--listen", "127.0.0.2",
                                  "--target", "127.0.0.1", "--stats-file", stats, "--rpc-ports", str(port), str(port)],
                                 stdout=subprocess.PIPE, text=True)
            try:
                self.assertIn("ready", p.stdout.readline())
                payload = record(call(100003, 3, 6, b"x" * 5000)) + record(call(100003, 3, 7, b"y" * 70000), fragments=4)
                for _ in range(2):
                    c = socket.create_connection(("127.0.0.2", port))
                    c.sendall(payload)
                    c.shutdown(socket.SHUT_WR)
                    while c.recv(65536):
                        pass
                    c.close()
                deadline = time.monotonic() + 10
                while len(got) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.assertEqual(got, [len(payload)] * 2)
                p.send_signal(signal.SIGUSR2)
                while time.monotonic() < deadline:
                    s = json.load(open(stats))
                    if s["seq"] >= 2:
                        break
                    time.sleep(0.01)
                c = s["ports"][str(port)]
                self.assertEqual(s["seq"], 2)
                self.assertEqual(c["connections"], 2)
                self.assertEqual(c["rpc_calls"], 4)
                self.assertEqual(c["procedures"], {"READ": 2, "WRITE": 2})
                self.assertEqual(c["bytes_up"], 2 * len(payload))
                self.assertGreaterEqual(c["bytes_down"], 2)
            finally:
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(10), 0)
                target.close()


if __name__ == "__main__":
    unittest.main()
