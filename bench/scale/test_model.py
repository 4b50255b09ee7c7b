#!/usr/bin/env python3
"""Unit tests of the scale model (bench/scale/model.py, scale_sim.py): the queue against
closed forms, the fit against known parameters, edge cases, input validation. Runs in
ctest as bench_scale_model (label unit)."""

import copy
import math
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model  # noqa: E402
import scale_sim  # noqa: E402


def storaged(servers=1, service_ms=10.0, latency_ms=0.0, samples=None):
    r1 = (service_ms + latency_ms) / 1000
    return {"servers": servers, "service_s": service_ms / 1000, "latency_s": latency_ms / 1000, "contention": 0.0,
            "one_client_latency_s": r1, "think_s_per_op": 0.0,
            "samples_ms": samples if samples is not None else [1000 * r1]}


IMAGE = {"nfs_bytes": 0, "pull_ms": 0, "worker_start_ms": 0, "layers": 1}


class QueueClosedForms(unittest.TestCase):
    def test_mm1_mean_wait_matches_closed_form(self):
        # M/M/1, rho = 0.5: Wq = rho / (mu - lambda) = 0.5 / (100 - 50) = 10 ms.
        rng = random.Random(7)
        wq, w = scale_sim.open_queue(50.0, lambda: rng.expovariate(100.0), 1, 200000, seed=3)
        self.assertAlmostEqual(wq, 0.010, delta=0.0008)
        self.assertAlmostEqual(w, 0.020, delta=0.0008)

    def test_md1_mean_wait_matches_pollaczek_khinchine(self):
        # M/D/1, rho = 0.8, D = 10 ms: Wq = rho * D / (2 (1 - rho)) = 20 ms.
        wq, _ = scale_sim.open_queue(80.0, lambda: 0.010, 1, 200000, seed=5)
        self.assertAlmostEqual(wq, 0.020, delta=0.0015)

    def test_mm2_mean_wait_matches_erlang_c(self):
        # M/M/2, lambda = 150, mu = 100 per server: a = 1.5, rho = 0.75.
        lam, mu, c = 150.0, 100.0, 2
        a, rho = lam / mu, lam / (c * mu)
        p0 = 1 / (sum(a ** k / math.factorial(k) for k in range(c)) + a ** c / (math.factorial(c) * (1 - rho)))
        erlang_c = a ** c / (math.factorial(c) * (1 - rho)) * p0
        expected = erlang_c / (c * mu - lam)
        rng = random.Random(11)
        wq, _ = scale_sim.open_queue(lam, lambda: rng.expovariate(mu), c, 200000, seed=13)
        self.assertAlmostEqual(wq, expected, delta=0.1 * expected)

    def test_load_dependent_service_grows_with_jobs_present(self):
        sim = scale_sim.Sim()
        st = scale_sim.Station(sim, "s", 1)
        seen, ends = [], []
        for _ in range(3):  # three jobs at t=0: the first starts alone, the others queue
            st.submit(lambda n: seen.append(n) or 0.01 * n, lambda: ends.append(sim.now))
        sim.run()
        self.assertEqual(seen, [1, 2, 1])  # jobs present when each service began
        self.assertEqual([round(t, 6) for t in ends], [0.01, 0.03, 0.04])


class Fit(unittest.TestCase):
    @staticmethod
    def points(s1, beta, r1, cap=128, clients=(1, 2, 4, 8, 16, 32, 64)):
        return [(n, 1 / max(r1 / n, s1 * (1 + beta * (min(n, cap) - 1))), 0.0) for n in clients]

    def test_recovers_a_known_contended_server(self):
        fit = scale_sim.fit_storaged(self.points(0.004, 0.05, 0.005), 0.005, 128)
        self.assertAlmostEqual(fit["service_s"], 0.004, delta=0.0001)
        self.assertAlmostEqual(fit["contention"], 0.05, delta=0.006)
        self.assertAlmostEqual(fit["latency_s"], 0.001, delta=0.0001)
        self.assertLess(fit["mean_abs_log_error"], 0.02)

    def test_recovers_a_server_without_contention(self):
        fit = scale_sim.fit_storaged(self.points(0.010, 0.0, 0.010), 0.010, 128)
        self.assertEqual(fit["contention"], 0.0)
        self.assertAlmostEqual(fit["service_s"], 0.010, delta=0.0001)

    def test_rejects_empty_measurements(self):
        with self.assertRaises(ValueError):
            scale_sim.fit_storaged([], 0.01, 128)


class Edges(unittest.TestCase):
    def test_zero_containers_take_no_time(self):
        r = model.simulate(3, 0, storaged(), IMAGE, model.assumed())
        self.assertEqual(r["all_started_s"], 0.0)
        self.assertEqual(r["storaged_ops"], 0)
        self.assertEqual(r["storaged_ops_per_s"], 0.0)

    def test_one_start_without_load_is_its_own_latency(self):
        a = model.assumed({"rtt_ms": 0.0})
        r = model.simulate(1, 1, storaged(service_ms=10.0), IMAGE, a, with_pull=False)
        self.assertAlmostEqual(r["all_started_s"], 0.020)  # two storaged calls, no queue

    def test_serial_storaged_bounds_many_workers(self):
        a = model.assumed({"rtt_ms": 0.0})
        r = model.simulate(100, 1000, storaged(service_ms=10.0), IMAGE, a, with_pull=False)
        self.assertAlmostEqual(r["all_started_s"], 1000 * 2 * 0.010, delta=1e-6)
        self.assertEqual(r["saturates_first"], "storaged")
        self.assertAlmostEqual(r["stations"]["storaged"]["utilisation"], 1.0, places=6)

    def test_contention_slows_a_queue_of_waiting_requests(self):
        a = model.assumed({"rtt_ms": 0.0, "worker_concurrency": 1})
        st = dict(storaged(service_ms=10.0), contention=0.1, cap=128)
        alone = model.simulate(1, 10, st, IMAGE, a, with_pull=False)["all_started_s"]
        crowd = model.simulate(10, 10, st, IMAGE, a, with_pull=False)["all_started_s"]
        self.assertAlmostEqual(alone, 20 * 0.010, delta=1e-6)  # one at a time: no one waits
        self.assertGreater(crowd, 1.5 * alone)  # the same 20 calls, with others waiting

    def test_link_saturates_when_reads_dominate(self):
        a = model.assumed({"rtt_ms": 0.0, "link_gbit_s": 1.0, "disk_gbyte_s": 100.0})
        img = dict(IMAGE, nfs_bytes=125_000_000)  # 1 s of a 1 Gbit/s link per start
        r = model.simulate(10, 10, storaged(service_ms=0.001), img, a, with_pull=False)
        self.assertEqual(r["saturates_first"], "link")
        self.assertAlmostEqual(r["all_started_s"], 10.0, delta=0.01)

    def test_shared_reads_read_once_per_worker(self):
        a = model.assumed({"rtt_ms": 0.0, "link_gbit_s": 1.0})
        img = dict(IMAGE, nfs_bytes=125_000_000)
        r = model.simulate(2, 20, storaged(service_ms=0.001), img, a, with_pull=False, shared_reads=True)
        self.assertAlmostEqual(r["nfs_bytes_per_s"] * r["all_started_s"], 2 * 125_000_000, delta=1)

    def test_pull_happens_once_per_worker(self):
        r = model.simulate(4, 40, storaged(), dict(IMAGE, pull_ms=100, layers=2), model.assumed())
        self.assertEqual(r["registry_requests"], 4 * (3 + 2))


class CountedRoundTrips(unittest.TestCase):
    DOC = {"topologies": {
        "loopback": {"images": {"minbase": {"slacker": {"pull_registry_requests": 6}}}},
        "lan-10g": {"images": {"minbase": {"slacker": {
            "pull_registry_requests": 7, "create_nfs_calls": 40, "start_nfs_calls": 260,
            "create_storaged_requests": 2, "start_storaged_requests": 1}}}},
        "lan-1g": {"images": {"minbase": {"slacker": {
            "pull_registry_requests": 9, "create_nfs_calls": 1, "start_nfs_calls": 1,
            "create_storaged_requests": 1, "start_storaged_requests": 1}}}}}}

    def test_first_nfs_topology_with_counts_wins(self):
        rt = model.round_trip_inputs(self.DOC)
        self.assertEqual(rt, {"minbase": {"registry_round_trips": 7, "nfs_round_trips": 300, "storaged_calls": 3,
                                          "topology": "lan-10g"}})
        self.assertEqual(model.round_trip_inputs(None), {})

    def test_counted_round_trips_drive_the_simulation(self):
        bench = {"images": {"minbase": {"slacker": {"read_bytes": 0, "pull_ms": 0, "run_ms": 0}},
                            "gcc": {"slacker": {"read_bytes": 64 * 1024 * 10, "pull_ms": 0, "run_ms": 0}}}}
        rt = model.round_trip_inputs(self.DOC)
        a = model.assumed({"rtt_ms": 1.0, "nfs_inflight": 1, "worker_concurrency": 1})
        img = model.image_inputs(bench, "minbase", rt)
        r = model.simulate(2, 4, storaged(service_ms=0.001), img, a)
        self.assertEqual(r["registry_requests"], 2 * 7)  # counted, not 3 + layers
        self.assertEqual(r["storaged_ops"], 4 * 3)
        # 300 NFS round trips of 1 ms, one at a time, per start; 2 starts per worker in turn
        self.assertGreater(r["all_started_s"], 2 * 0.300)
        est = model.image_inputs(bench, "gcc", rt)  # no count: 3 + layers, 2 calls, bytes / 64 KiB
        self.assertNotIn("nfs_round_trips", est)
        r = model.simulate(1, 1, storaged(service_ms=0.001), est, a)
        self.assertEqual((r["registry_requests"], r["storaged_ops"]), (3 + 1, 2))
        self.assertLess(r["all_started_s"], 0.030)
        self.assertEqual(model.demand_for(1.0, 10, img)["storaged_ops_per_s"], 30)


class Validation(unittest.TestCase):
    def test_bad_parameters_are_refused(self):
        a = model.assumed()
        with self.assertRaises(ValueError):
            model.simulate(0, 10, storaged(), IMAGE, a)
        with self.assertRaises(ValueError):
            model.simulate(1, -1, storaged(), IMAGE, a)
        with self.assertRaises(ValueError):
            model.simulate(1, 1, storaged(), IMAGE, a, service_scale=0)
        with self.assertRaises(ValueError):
            model.simulate(1, 1, storaged(servers=0), IMAGE, a)
        with self.assertRaises(ValueError):
            model.assumed({"no_such_input": 1})
        with self.assertRaises(ValueError):
            scale_sim.fit_storaged([(1, 100.0, 0.0)], 0.01, 0)
        with self.assertRaises(ValueError):
            scale_sim.Sim().after(-1, lambda: None)

    def test_measured_json_without_one_client_run_is_refused(self):
        m = {"start": [{"clients": 2, "calls": {}, "storaged_calls_per_sequence": 2}]}
        with self.assertRaises(ValueError):
            model.storaged_inputs(m)

    def test_storaged_inputs_from_a_measured_json(self):
        def run(n, ops, ms):
            calls = {k: {"mean_ms": ms, "samples_ms": [ms] * 5 if n == 1 else []} for k in ("clone", "file_clone")}
            calls["start"] = {"mean_ms": 2 * ms}
            return {"clients": n, "sequences_per_s": ops / 2, "storaged_ops_per_s": ops, "sequences": ops,
                    "wall_s": 2.0, "storaged_calls_per_sequence": 2, "calls": calls}
        # A serial station of 5 ms: 200 ops/s at every N.
        m = {"start": [run(n, 200.0, 5.0 * n) for n in (1, 2, 4, 8)]}
        st = model.storaged_inputs(copy.deepcopy(m))
        self.assertEqual(st["servers"], 1)
        self.assertAlmostEqual(st["service_s"], 0.005, delta=0.0002)
        # A run in which no sequence ended (the machine stalled) is no measurement.
        stalled = run(64, 0.0, 5.0)
        stalled.update(sequences=0, sequences_per_s=0.0, calls={})
        m["start"].append(stalled)
        self.assertEqual(model.storaged_inputs(m)["servers"], 1)


if __name__ == "__main__":
    unittest.main()
