"""Unit tests of bench/crilib.py (ctest -L unit: bench_crilib)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crilib  # noqa: E402


def line(image, config, node, rep, pull, sandbox, create, start, ready, unpacked, resolved=None):
    if resolved is None:
        resolved = "-" if unpacked == "-" else 0
    return "\t".join(str(x) for x in (image, config, node, rep, pull, sandbox, create, start, ready, unpacked,
                                       resolved))


SAMPLES = [
    line("minbase", "slk-std-first", "s2", 0, 900, 50, 60, 70, 1300, 1),
    line("minbase", "overlayfs", "o1", 1, 1000, 100, 100, 100, 1500, "-"),
    line("minbase", "slk-std", "s2", 1, 200, 150, 150, 100, 900, 0),
    line("minbase", "slk-ref", "s1", 1, 100, 150, 150, 100, 800, 0, 1),
    line("minbase", "overlayfs", "o1", 2, 3000, 100, 100, 100, 3400, "-"),
    line("minbase", "slk-std", "s2", 2, 400, 150, 150, 100, 1000, 0),
    line("minbase", "slk-ref", "s1", 2, 300, 150, 150, 100, 1000, 0),
]
IMAGES = ["minbase\tbatch\t2048\t123456789"]


class ParseTest(unittest.TestCase):
    def test_parses_times_unpacked_and_start(self):
        s = crilib.parse_samples(SAMPLES)
        self.assertEqual(len(s), 7)
        self.assertEqual(s[1]["config"], "overlayfs")
        self.assertIsNone(s[1]["unpacked"])
        self.assertEqual(s[0]["unpacked"], 1)
        self.assertEqual(s[2]["start_to_ready_ms"], 700)
        self.assertEqual(s[3]["resolved"], 1)
        self.assertIsNone(s[1]["resolved"])

    def test_rejects_malformed_lines(self):
        for bad in ("minbase\toverlayfs\to1\t1\t2\t3", line("m", "zfs", "o1", 1, 1, 1, 1, 1, 1, "-"),
                    line("m", "overlayfs", "o1", 1, "x", 1, 1, 1, 1, "-")):
            with self.assertRaises(ValueError):
                crilib.parse_samples([bad])

    def test_images(self):
        im = crilib.parse_images(IMAGES)
        self.assertEqual(im["minbase"]["registry_layer_bytes"], {"reference": 2048, "standard": 123456789})


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.report = crilib.build_report(crilib.parse_samples(SAMPLES), crilib.parse_images(IMAGES),
                                          {"reps": 2})

    def test_medians_p95_and_counts(self):
        o = self.report["images"]["minbase"]["configs"]["overlayfs"]
        self.assertEqual(o["n"], 2)
        self.assertEqual(o["pull_ms"]["median"], 2000)
        self.assertAlmostEqual(o["pull_ms"]["p95"], 2900)
        self.assertEqual(o["start_to_ready_ms"]["median"], 450)
        self.assertEqual(o["unpacked"], [None, None])

    def test_ratios_are_overlayfs_over_slacker(self):
        r = self.report["images"]["minbase"]["ratios"]
        self.assertAlmostEqual(r["slk-ref"]["ready_ms"], 2450 / 900)
        self.assertAlmostEqual(r["slk-std"]["pull_ms"], 2000 / 300)
        # start after the pull: overlayfs 450, slacker 650: below 1 (slacker slower)
        self.assertAlmostEqual(r["slk-std"]["start_to_ready_ms"], 450 / 650)
        self.assertNotIn("overlayfs", r)

    def test_no_baseline_no_ratio(self):
        rep = crilib.build_report(crilib.parse_samples(SAMPLES[2:4]), {})
        self.assertEqual(rep["images"]["minbase"]["ratios"], {})

    def test_table_rows_in_config_order(self):
        rows = crilib.format_table(self.report).splitlines()
        self.assertEqual(len(rows), 2 + 4)
        self.assertIn("overlayfs, standard image", rows[2])
        self.assertIn("first on the store (unpack)", rows[3])
        self.assertIn("| 2.72x |", rows[5])


class CommandTest(unittest.TestCase):
    def test_report_writes_json(self):
        with tempfile.TemporaryDirectory() as d:
            sp, ip, fp, out = (os.path.join(d, n) for n in ("s.tsv", "i.tsv", "f.tsv", "cri.json"))
            with open(fp, "w") as f:
                f.write("http\tslk-std-first\ts2\t1\n")
            with open(sp, "w") as f:
                f.write("\n".join(SAMPLES) + "\n")
            with open(ip, "w") as f:
                f.write("\n".join(IMAGES) + "\n")
            r = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "crilib.py"),
                                "report", sp, ip, out, "--reps", "2", "--conditions", "test", "--failures", fp],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                data = json.load(f)
            self.assertEqual(data["reps"], 2)
            self.assertEqual(len(data["samples"]), 7)
            self.assertIn("| minbase |", r.stdout)
            self.assertEqual(data["failed_once"], [["http", "slk-std-first", "s2", "1"]])
            self.assertIn("failed once, then measured again: http slk-std-first s2 1", r.stdout)


if __name__ == "__main__":
    unittest.main()
