"""Unit tests of bench/prefetchlib.py (ctest -L unit: bench_prefetchlib)."""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prefetchlib  # noqa: E402


def tsv(rows):
    return ["\t".join(str(x) for x in r) + "\n" for r in rows]


ROWS = [
    ("py", "2", "slacker", "run_ms", 1, 3000), ("py", "2", "slacker", "run_ms", 2, 2000),
    ("py", "2", "slacker", "run_ms", 3, 2800),
    ("py", "2", "slacker+trace", "run_ms", 1, 1000), ("py", "2", "slacker+trace", "run_ms", 2, 1400),
    ("py", "2", "slacker+trace", "run_ms", 3, 1200),
    ("py", "2", "slacker", "read_bytes", 1, 100), ("py", "2", "slacker+trace", "read_bytes", 1, 120),
    ("py", "2", "overlay2", "run_ms", 1, 600), ("py", "2", "link", "rtt_ms", 1, 2.4),
]


class PrefetchReportTest(unittest.TestCase):
    def test_medians_speedup_and_read_ratio(self):
        r = prefetchlib.build_report(prefetchlib.parse_samples(tsv(ROWS)), {"reps": 3})
        c = r["images"]["py"]["rtt_2ms"]
        self.assertEqual(c["slacker"]["run_ms"], 2800)
        self.assertEqual(c["slacker+trace"]["run_ms"], 1200)
        self.assertEqual(c["slacker+trace"]["n"], 3)
        self.assertAlmostEqual(c["trace_speedup"], 2800 / 1200, places=3)
        self.assertAlmostEqual(c["trace_read_ratio"], 1.2)
        self.assertAlmostEqual(c["trace_vs_overlay2"], 2.0)
        self.assertIn("dadi_trace_prefetch", r["published"])
        self.assertEqual(c["link"]["rtt_ms"], 2.4)
        self.assertIn("speed-up 2.33x", prefetchlib.format_table(r))
        self.assertIn("measured round trip 2.40 ms", prefetchlib.format_table(r))

    def test_garbage_is_refused(self):
        for bad in ["py\t2\tslacker\trun_ms\t1\n", "py\t2\tzfs\trun_ms\t1\t5\n", "py\tx\tslacker\trun_ms\t1\t5\n"]:
            with self.assertRaises(ValueError):
                prefetchlib.parse_samples([bad])

    def test_merge_keeps_the_other_keys(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "latest.json")
            with open(path, "w") as f:
                json.dump({"images": {"gcc": 1}, "ratios": {"push": 27}}, f)
            prefetchlib.merge_into(path, {"images": {}})
            with open(path) as f:
                r = json.load(f)
            self.assertEqual(r["ratios"], {"push": 27})
            self.assertEqual(r["images"], {"gcc": 1})
            self.assertEqual(r["prefetch"], {"images": {}})


if __name__ == "__main__":
    unittest.main()
