"""Unit tests of bench/benchlib.py (ctest -L unit: bench_benchlib)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


class StatsTest(unittest.TestCase):
    def test_median_odd_even_unsorted(self):
        self.assertEqual(benchlib.median([5, 1, 3]), 3)
        self.assertEqual(benchlib.median([4, 1, 3, 2]), 2.5)
        self.assertEqual(benchlib.median([7]), 7)

    def test_median_empty_raises(self):
        with self.assertRaises(ValueError):
            benchlib.median([])

    def test_percentile_interpolates(self):
        xs = [10, 20, 30, 40, 50]
        self.assertEqual(benchlib.percentile(xs, 0), 10)
        self.assertEqual(benchlib.percentile(xs, 100), 50)
        self.assertEqual(benchlib.percentile(xs, 50), 30)
        # (5-1)*0.95 = 3.8: 40 + 0.8*10
        self.assertAlmostEqual(benchlib.percentile(xs, 95), 48.0)
        self.assertAlmostEqual(benchlib.percentile([1, 2], 95), 1.95)
        self.assertEqual(benchlib.percentile([3], 95), 3)

    def test_percentile_bad_input(self):
        with self.assertRaises(ValueError):
            benchlib.percentile([], 95)
        with self.assertRaises(ValueError):
            benchlib.percentile([1], 101)

    def test_ratio(self):
        self.assertEqual(benchlib.ratio(1000, 10), 100)
        self.assertIsNone(benchlib.ratio(1000, 0))
        self.assertIsNone(benchlib.ratio(None, 5))
        self.assertIsNone(benchlib.ratio(5, None))

    def test_geomean(self):
        self.assertAlmostEqual(benchlib.geomean([2, 8]), 4)
        self.assertAlmostEqual(benchlib.geomean([100, None, 1]), 10)
        self.assertIsNone(benchlib.geomean([]))
        with self.assertRaises(ValueError):
            benchlib.geomean([0, 1])


def tsv(rows):
    return ["\t".join(str(c) for c in r) + "\n" for r in rows]


class ParseTest(unittest.TestCase):
    def test_parse_orders_by_rep(self):
        s = benchlib.parse_samples(tsv([
            ("a", "slacker", "push_ms", 2, 20),
            ("a", "slacker", "push_ms", 1, 10),
            ("b", "overlay2", "pull_ms", 1, 5),
        ]) + ["# comment\n", "\n"])
        self.assertEqual(list(s), ["a", "b"])
        self.assertEqual(s["a"]["slacker"]["push_ms"], [10, 20])

    def test_parse_rejects_garbage(self):
        for bad in (["a\tslacker\tpush_ms\t1\n"],
                    ["a\taufs\tpush_ms\t1\t3\n"],
                    ["a\tslacker\tpush_ms\tone\t3\n"],
                    tsv([("a", "slacker", "push_ms", 1, 3), ("a", "slacker", "push_ms", 1, 4)])):
            with self.assertRaises(ValueError, msg=bad):
                benchlib.parse_samples(bad)


def sample_set():
    rows = []
    for rep, (o, s) in enumerate([(1000, 10), (3000, 30), (2000, 20), (9000, 10), (2500, 25)], 1):
        rows += [("img", "overlay2", "push_ms", rep, o), ("img", "slacker", "push_ms", rep, s)]
        rows += [("img", "overlay2", "pull_ms", rep, 500), ("img", "slacker", "pull_ms", rep, 100)]
        rows += [("img", "overlay2", "read_bytes", rep, 1000), ("img", "slacker", "read_bytes", rep, 50)]
        rows += [("img", "overlay2", "image_bytes", rep, 1000), ("img", "slacker", "image_bytes", rep, 1000)]
    rows += [("two", "overlay2", "push_ms", 1, 100), ("two", "slacker", "push_ms", 1, 100)]
    return benchlib.parse_samples(tsv(rows))


class ReportTest(unittest.TestCase):
    def test_medians_p95_and_ratios(self):
        r = benchlib.build_report(sample_set(), {"mode": "test"})
        img = r["images"]["img"]
        self.assertEqual(img["overlay2"]["push_ms"], 2500)
        self.assertEqual(img["slacker"]["push_ms"], 20)
        self.assertAlmostEqual(img["overlay2"]["p95"]["push_ms"], 3000 + 0.8 * 6000)
        self.assertEqual(img["overlay2"]["n"]["push_ms"], 5)
        self.assertEqual(img["ratios"]["push"], 125)
        self.assertEqual(img["ratios"]["pull"], 5)
        self.assertAlmostEqual(img["slacker"]["read_fraction"], 0.05)
        # headline: geometric mean over images (125 and 1) -> sqrt(125)
        self.assertAlmostEqual(r["ratios"]["push"], 125 ** 0.5)
        # total: (2500 + 100) / (20 + 100)
        self.assertAlmostEqual(r["ratios_total"]["push"], 2600 / 120)
        self.assertFalse(r["targets"]["push"]["met"])
        self.assertFalse(r["targets"]["pull"]["met"])
        self.assertTrue(r["targets"]["startup_read_fraction"]["met"])
        self.assertNotIn("deploy", r["ratios"])
        self.assertEqual(r["meta"]["mode"], "test")

    def test_read_fraction_is_of_overlay2s_image_size_for_both(self):
        rows = [("img", "overlay2", "read_bytes", 1, 10), ("img", "overlay2", "image_bytes", 1, 1000),
                ("img", "slacker", "read_bytes", 1, 20), ("img", "slacker", "image_bytes", 1, 2000),
                ("solo", "slacker", "read_bytes", 1, 30), ("solo", "slacker", "image_bytes", 1, 300)]
        r = benchlib.build_report(benchlib.parse_samples(tsv(rows)))
        self.assertAlmostEqual(r["images"]["img"]["overlay2"]["read_fraction"], 0.01)
        self.assertAlmostEqual(r["images"]["img"]["slacker"]["read_fraction"], 0.02)
        self.assertAlmostEqual(r["images"]["solo"]["slacker"]["read_fraction"], 0.1)

    def test_table_shows_the_warm_read(self):
        rows = [("img", "overlay2", "warm_read_bytes", 1, 0), ("img", "slacker", "warm_read_bytes", 1, 3 << 20)]
        t = benchlib.format_table(benchlib.build_report(benchlib.parse_samples(tsv(rows))))
        self.assertRegex(t, r"img +warm run read +0B +3.0MiB")

    def test_table_shows_round_trip_medians(self):
        rows = [("img", "overlay2", "pull_registry_requests", 1, 9), ("img", "slacker", "pull_registry_requests", 1, 7),
                ("img", "slacker", "pull_registry_requests", 2, 5), ("img", "slacker", "pull_registry_requests", 3, 6),
                ("img", "slacker", "create_nfs_calls", 1, 61)]
        t = benchlib.format_table(benchlib.build_report(benchlib.parse_samples(tsv(rows))))
        self.assertRegex(t, r"img +round trips: registry requests of a pull +9 +6 *\n")
        self.assertRegex(t, r"img +round trips: NFS calls of a create +- +61 *\n")
        self.assertNotIn("cold start", t)

    def test_nfs_procedures_per_phase(self):
        def line(label, procs):
            return json.dumps({"label": f"img slacker rep 1 {label}",
                               "counters": {"seq": 1, "ports": {"2049": {"procedures": procs}, "7010": {}}}})
        lines = [line("create-before", {"READ": 10, "GETATTR": 5}),
                 line("create-after=start-before", {"READ": 40, "GETATTR": 6, "LOOKUP": 2}),
                 line("start-after", {"READ": 41, "GETATTR": 6, "LOOKUP": 2}),
                 line("warm-before", {"READ": 50})]  # no warm-after: no warm run phase
        got = benchlib.nfs_procedures(lines)
        self.assertEqual(got, {"img slacker rep 1": {"create": {"READ": 30, "LOOKUP": 2, "GETATTR": 1},
                                                      "cold start": {"READ": 1}}})
        self.assertEqual(list(got["img slacker rep 1"]["create"]), ["READ", "LOOKUP", "GETATTR"])

    def test_design_contract_keys(self):
        r = benchlib.build_report(sample_set())
        for key in ("push_ms", "pull_ms", "read_bytes", "image_bytes"):
            self.assertIn(key, r["images"]["img"]["slacker"])
        json.dumps(r)  # serializable

    def test_table_mentions_ratio_and_target(self):
        t = benchlib.format_table(benchlib.build_report(sample_set()))
        self.assertIn("125x", t)
        self.assertIn("NOT MET", t)
        self.assertIn("paper 153x", t)

    def test_both_dev_cycles_are_rated_against_the_paper(self):
        rows = []
        for rep in (1, 2, 3):
            rows += [("img", "overlay2", "dev_cycle_ms", rep, 1000), ("img", "slacker", "dev_cycle_ms", rep, 800)]
            rows += [("img", "overlay2", "dev_fresh_cycle_ms", rep, 30000),
                     ("img", "slacker", "dev_fresh_cycle_ms", rep, 1000)]
        r = benchlib.build_report(benchlib.parse_samples(tsv(rows)))
        self.assertAlmostEqual(r["ratios"]["dev_cycle"], 1.25)
        self.assertAlmostEqual(r["ratios"]["dev_cycle_fresh"], 30)
        self.assertFalse(r["targets"]["dev_cycle"]["met"])
        self.assertTrue(r["targets"]["dev_cycle_fresh"]["met"])
        t = benchlib.format_table(r)
        self.assertIn("dev cycle, fresh worker", t)
        self.assertRegex(t, r"dev_cycle_fresh +30.0x .*paper 20x  target >= 20.0x: MET")
        self.assertRegex(t, r"dev_cycle +1.2x .*paper 20x  target >= 20.0x: NOT MET")

    def test_plot_data_marks_missing(self):
        r = benchlib.build_report(sample_set())
        d = benchlib.plot_data(r, "pull_ms")
        self.assertIn('"img" 500.000 100.000', d)
        self.assertIn('"two" ? ?', d)

    def test_plot_has_only_the_phases_measured(self):
        # bench/lifecycle measures none of bench/run's push/pull phases: gnuplot fails
        # on a panel without a single point.
        rows = [("busybox", drv, "create_ms", rep, 70 + rep) for drv in ("overlay2", "slacker") for rep in (1, 2)]
        r = benchlib.build_report(benchlib.parse_samples(tsv(rows)))
        self.assertEqual([m for m, _ in benchlib.plot_panels(r)], ["create_ms"])
        script = benchlib.gnuplot_script(r, "/d", "/d/x.png")
        self.assertIn("create_ms.dat", script)
        self.assertNotIn("push_ms.dat", script)
        self.assertIn("layout 1,2", script)


class CommandLineTest(unittest.TestCase):
    def test_report_writes_json(self):
        with tempfile.TemporaryDirectory() as d:
            samples = os.path.join(d, "s.tsv")
            with open(samples, "w") as f:
                f.writelines(tsv([("x", "overlay2", "push_ms", 1, 400),
                                  ("x", "slacker", "push_ms", 1, 4)]))
            env = dict(os.environ, PATH="/nonexistent")  # no gnuplot: JSON only
            p = subprocess.run([sys.executable, benchlib.__file__, "report", samples, d, '{"mode":"t"}'],
                               capture_output=True, text=True, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(d, "latest.json")) as f:
                r = json.load(f)
            self.assertAlmostEqual(r["ratios"]["push"], 100)
            self.assertEqual(r["samples"]["x"]["slacker"]["push_ms"], [4])
            self.assertIn("100x", p.stdout)

    def test_report_keeps_the_prefetch_key_of_the_previous_latest_json(self):
        with tempfile.TemporaryDirectory() as d:
            samples = os.path.join(d, "s.tsv")
            with open(samples, "w") as f:
                f.writelines(tsv([("x", "overlay2", "push_ms", 1, 400), ("x", "slacker", "push_ms", 1, 4)]))
            with open(os.path.join(d, "latest.json"), "w") as f:
                json.dump({"prefetch": {"images": {"x": 1}}, "ratios": {"push": 1}}, f)
            env = dict(os.environ, PATH="/nonexistent")
            p = subprocess.run([sys.executable, benchlib.__file__, "report", samples, d],
                               capture_output=True, text=True, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(d, "latest.json")) as f:
                r = json.load(f)
            self.assertEqual(r["prefetch"], {"images": {"x": 1}})
            self.assertAlmostEqual(r["ratios"]["push"], 100)  # the rest is the new run's

    def test_report_rejects_bad_samples(self):
        with tempfile.TemporaryDirectory() as d:
            samples = os.path.join(d, "s.tsv")
            with open(samples, "w") as f:
                f.write("not a sample\n")
            p = subprocess.run([sys.executable, benchlib.__file__, "report", samples, d],
                               capture_output=True, text=True)
            self.assertNotEqual(p.returncode, 0)
            self.assertFalse(os.path.exists(os.path.join(d, "latest.json")))



def _one_topology(push_o2, push_slk, floor_slk=100):
    rows = [("img", "overlay2", "push_ms", 1, push_o2), ("img", "slacker", "push_ms", 1, push_slk),
            ("img", "overlay2", "floor_push_ms", 1, 90), ("img", "slacker", "floor_push_ms", 1, floor_slk)]
    return benchlib.build_report(benchlib.parse_samples(tsv(rows)))


class FloorTest(unittest.TestCase):
    def test_a_phase_is_a_multiple_of_its_floor(self):
        r = _one_topology(5000, 250, floor_slk=100)
        self.assertAlmostEqual(r["images"]["img"]["slacker"]["floor_multiple"]["push_ms"], 2.5)
        self.assertAlmostEqual(r["images"]["img"]["overlay2"]["floor_multiple"]["push_ms"], 5000 / 90)

    def test_a_cycles_floor_is_the_sum_of_its_parts(self):
        m = {"dev_cycle_ms": 1200, "floor_push_ms": 100, "floor_pull_ms": 100, "warm_run_ms": 400}
        self.assertAlmostEqual(benchlib.floor_multiples(m)["dev_cycle_ms"], 2.0)

    def test_no_multiple_without_every_floor(self):
        self.assertEqual(benchlib.floor_multiples({"deploy_ms": 900, "floor_pull_ms": 100}), {})
        self.assertEqual(benchlib.floor_multiples({"push_ms": 900, "floor_push_ms": 0}), {})

    def test_big_change_and_floors_are_rated(self):
        rows = [("img", d, m, 1, v) for d, m, v in (
            ("overlay2", "big_dev_cycle_ms", 60000), ("slacker", "big_dev_cycle_ms", 12000))]
        r = benchlib.build_report(benchlib.parse_samples(tsv(rows)))
        self.assertAlmostEqual(r["ratios"]["big_dev_cycle"], 5)
        self.assertIn("big-change dev cycle", benchlib.format_table(r))


class TopologyTest(unittest.TestCase):
    def test_a_file_from_before_topologies_becomes_loopback(self):
        old = {"images": {"img": {}}, "ratios": {"push": 27}, "prefetch": {"p": 1}}
        doc = benchlib.merge_topology(old, "lan-1g", _one_topology(8000, 400))
        self.assertEqual(list(doc["topologies"]), ["loopback", "lan-1g"])
        self.assertEqual(doc["topologies"]["loopback"]["ratios"], {"push": 27})
        self.assertEqual(doc["ratios"], {"push": 27})  # the top level stays loopback's
        self.assertAlmostEqual(doc["topologies"]["lan-1g"]["ratios"]["push"], 20)
        self.assertEqual(doc["prefetch"], {"p": 1})

    def test_a_loopback_run_replaces_the_top_level_and_keeps_the_others(self):
        doc = benchlib.merge_topology({}, "remote-registry", _one_topology(9000, 300))
        doc = benchlib.merge_topology(doc, "loopback", _one_topology(5000, 250))
        self.assertEqual(list(doc["topologies"]), ["loopback", "remote-registry"])
        self.assertAlmostEqual(doc["ratios"]["push"], 20)
        self.assertAlmostEqual(doc["topologies"]["remote-registry"]["ratios"]["push"], 30)
        doc = benchlib.merge_topology(doc, "remote-registry", _one_topology(9000, 900))
        self.assertAlmostEqual(doc["topologies"]["remote-registry"]["ratios"]["push"], 10)
        self.assertAlmostEqual(doc["ratios"]["push"], 20)

    def test_table_and_plot_data_per_topology(self):
        doc = benchlib.merge_topology({}, "lan-1g", _one_topology(8000, 400))
        doc = benchlib.merge_topology(doc, "loopback", _one_topology(5000, 250))
        t = benchlib.format_topologies(doc)
        self.assertRegex(t, r"img +push +5000 / 250 \(20.0x\) 2.5xF +8000 / 400 \(20.0x\) 4.0xF")
        self.assertLess(t.index("loopback"), t.index("lan-1g"))
        d = benchlib.topology_plot_data(doc, "push_ms")
        self.assertEqual(d, '"loopback" 5000.000 250.000\n"lan-1g" 8000.000 400.000\n')
        self.assertEqual(benchlib.topology_plot_data(doc, "pull_ms"),
                         '"loopback" ? ?\n"lan-1g" ? ?\n')

    def test_command_line_writes_the_topology(self):
        with tempfile.TemporaryDirectory() as d:
            samples = os.path.join(d, "s.tsv")
            with open(samples, "w") as f:
                f.writelines(tsv([("x", "overlay2", "push_ms", 1, 400), ("x", "slacker", "push_ms", 1, 4)]))
            env = dict(os.environ, PATH="/nonexistent")
            p = subprocess.run([sys.executable, benchlib.__file__, "report", samples, d, '{"mode":"t"}',
                                "--topology", "lan-10g"], capture_output=True, text=True, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(d, "latest.json")) as f:
                r = json.load(f)
            self.assertAlmostEqual(r["topologies"]["lan-10g"]["ratios"]["push"], 100)
            self.assertNotIn("images", r)
            self.assertIn("lan-10g", p.stdout)


def _prom(method_counts):
    """Metrics text with one histogram per method: {method: [(le, cumulative)]}."""
    lines = ["# TYPE slacker_request_duration_seconds histogram",
             'slacker_requests_total{method="Get",status="200"} 3']
    for m, buckets in method_counts.items():
        for le, c in buckets:
            lines.append(f'slacker_request_duration_seconds_bucket{{method="{m}",le="{le}"}} {c}')
        lines.append(f'slacker_request_duration_seconds_count{{method="{m}"}} {buckets[-1][1]}')
    return "\n".join(lines) + "\n"


class PluginLatencyTest(unittest.TestCase):
    def test_parse_sorts_buckets_and_reads_inf(self):
        h = benchlib.parse_histograms(_prom({"Put": [("0.01", 1), ("0.005", 0), ("+Inf", 2)]}))
        self.assertEqual(h, {"Put": [(0.005, 0.0), (0.01, 1.0), (float("inf"), 2.0)]})

    def test_parse_rejects_malformed_bucket(self):
        with self.assertRaises(ValueError):
            benchlib.parse_histograms('slacker_request_duration_seconds_bucket{method="Get"} 1\n')

    def test_quantile_interpolates_inside_the_bucket(self):
        b = [(0.01, 0.0), (0.02, 10.0), (float("inf"), 10.0)]
        self.assertAlmostEqual(benchlib.histogram_quantile(b, 0.5), 0.015)
        self.assertAlmostEqual(benchlib.histogram_quantile(b, 1.0), 0.02)
        # everything above the last finite bound: reported as that bound
        self.assertEqual(benchlib.histogram_quantile([(0.01, 0.0), (float("inf"), 4.0)], 0.5), 0.01)
        with self.assertRaises(ValueError):
            benchlib.histogram_quantile([(float("inf"), 0.0)], 0.5)

    def test_latency_counts_only_the_calls_between_scrapes(self):
        before = _prom({"Put": [("0.01", 5), ("0.05", 5), ("+Inf", 5)],
                        "Get": [("0.01", 1), ("0.05", 1), ("+Inf", 1)]})
        after = _prom({"Put": [("0.01", 5), ("0.05", 9), ("+Inf", 9)],
                       "Get": [("0.01", 1), ("0.05", 1), ("+Inf", 1)],
                       "Remove": [("0.01", 2), ("0.05", 2), ("+Inf", 2)]})
        lat = benchlib.plugin_latency(before, after)
        self.assertEqual(sorted(lat), ["Put", "Remove"])  # Get had no call in between
        self.assertEqual(lat["Put"]["count"], 4)
        self.assertAlmostEqual(lat["Put"]["p50_ms"], 30.0)  # 10 + 40 * (2/4)
        self.assertEqual(lat["Remove"]["count"], 2)
        self.assertIn("Put", benchlib.format_plugin_latency(lat))

    def test_counter_going_down_is_an_error(self):
        before = _prom({"Put": [("0.01", 5), ("+Inf", 5)]})
        after = _prom({"Put": [("0.01", 1), ("+Inf", 1)]})
        with self.assertRaises(ValueError):
            benchlib.plugin_latency(before, after)

if __name__ == "__main__":
    unittest.main()
