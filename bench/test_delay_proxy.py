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
                payload = record(b"x" * 5000) + record(b"y" * 70000, fragments=4)
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
                self.assertEqual(c["bytes_up"], 2 * len(payload))
                self.assertGreaterEqual(c["bytes_down"], 2)
            finally:
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(10), 0)
                target.close()


if __name__ == "__main__":
    unittest.main()
