"""The scale model's discrete-event engine (bench/scale/README.md "The model").

Stdlib only. Three pieces:
  Sim      an event list (time, then insertion order) and a clock, in seconds.
  Station  c identical servers in front of one FIFO queue (a multi-server queue), with
           an optionally load-dependent service time; it keeps the numbers a bottleneck
           analysis needs (busy time, jobs, waits).
  fit_storaged  one server with a load-dependent service time, fitted to throughput
           measured with 1..64 closed-loop clients.
"""

import collections
import heapq
import math
import random


class Sim:
    """Events run in time order; events at the same time in the order they were added."""

    def __init__(self):
        self.now = 0.0
        self._events = []
        self._seq = 0

    def at(self, t, fn):
        if t < self.now:
            raise ValueError(f"event at {t} is before now ({self.now})")
        heapq.heappush(self._events, (t, self._seq, fn))
        self._seq += 1

    def after(self, delay, fn):
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        self.at(self.now + delay, fn)

    def run(self):
        while self._events:
            t, _, fn = heapq.heappop(self._events)
            self.now = t
            fn()


class Station:
    """`servers` identical servers, one FIFO queue. submit(service, done): done() runs
    when the job's service ends. Utilisation = busy_time / (servers * span)."""

    def __init__(self, sim, name, servers):
        if not isinstance(servers, int) or servers < 1:
            raise ValueError(f"station {name}: servers must be an integer >= 1, not {servers!r}")
        self.sim, self.name, self.servers = sim, name, servers
        self.busy = 0
        self.queue = collections.deque()
        self.busy_time = 0.0
        self.jobs = 0
        self.wait_total = 0.0
        self.max_queue = 0

    def submit(self, service, done):
        """service: seconds, or a function of the jobs present when its service begins
        (itself included), for a load-dependent station."""
        if not callable(service) and (service < 0 or math.isnan(service)):
            raise ValueError(f"station {self.name}: bad service time {service}")
        self.jobs += 1
        if self.busy < self.servers:
            self._start(service, done, self.sim.now)
        else:
            self.queue.append((service, done, self.sim.now))
            self.max_queue = max(self.max_queue, len(self.queue))

    def _start(self, service, done, arrived):
        self.busy += 1
        if callable(service):
            service = service(self.busy + len(self.queue))
            if service < 0 or math.isnan(service):
                raise ValueError(f"station {self.name}: bad service time {service}")
        self.busy_time += service
        self.wait_total += self.sim.now - arrived

        def finish():
            self.busy -= 1
            if self.queue:
                self._start(*self.queue.popleft())
            done()

        self.sim.after(service, finish)

    def utilisation(self, span):
        return self.busy_time / (self.servers * span) if span > 0 else 0.0

    def summary(self, span):
        return {"servers": self.servers, "jobs": self.jobs, "busy_s": self.busy_time,
                "utilisation": self.utilisation(span), "max_queue": self.max_queue,
                "mean_wait_ms": 1000 * self.wait_total / self.jobs if self.jobs else 0.0}


def open_queue(arrival_rate, service, servers, jobs, seed=1):
    """Poisson arrivals (rate per second) into a Station; `service()` draws a service time.
    Returns (mean wait in queue, mean time in system), seconds. For the closed forms
    (M/M/1, M/D/1) the unit tests compare it with."""
    if arrival_rate <= 0 or jobs < 1:
        raise ValueError("arrival_rate must be > 0 and jobs >= 1")
    rng = random.Random(seed)
    sim = Sim()
    st = Station(sim, "q", servers)
    sojourn = []

    def arrive(i):
        t0 = sim.now
        st.submit(service(), lambda: sojourn.append(sim.now - t0))
        if i + 1 < jobs:
            sim.after(rng.expovariate(arrival_rate), lambda: arrive(i + 1))

    sim.at(0.0, lambda: arrive(0))
    sim.run()
    return st.wait_total / st.jobs, sum(sojourn) / len(sojourn)


def fit_storaged(points, r1, cap, contention=True):
    """Fits storaged as one server whose service time grows with the requests present:
    S(n) = S1 * (1 + beta * (min(n, cap) - 1)). One server: storaged/service.cc holds one
    mutex across every mutation. beta: what each waiting request costs the one in service
    (lock hand-over, thread wake-ups, CPU shared with the clients on a small machine); at
    most `cap` requests are inside (its --max-connections; more are refused and retry).
    points: [(clients, ops_per_s, think_s)] from closed-loop runs; r1: the mean request
    latency at one client (s), of which r1 - S1 is parallel (connect, HTTP, the client).
    contention=False fits beta = 0: a server of fixed mean service time S1.
    The closed loop of N clients is taken at its bounds, X(N) = 1 / max((r1 + think) / N,
    S(N)): the clients' own time is small beside a request (0.05 ms of 2-20 ms), so all N
    wait at the server once N > 1. Least absolute deviations of log X over all points (a
    stalled run on a shared machine moves it less than least squares)."""
    if not points or r1 <= 0 or cap < 1:
        raise ValueError("need measurements, a positive one-client latency and cap >= 1")

    def predict(n, think, s1, beta):
        return 1 / max((r1 + think) / n, s1 * (1 + beta * (min(n, cap) - 1)))

    best = None
    # Without contention, S1 may exceed the one-client latency: the server is slower
    # under load than alone, and S1 is then its mean service time under load.
    for step in range(1, 101 if contention else 201):
        s1 = r1 * step / 100
        for b in range(0, 601 if contention else 1):
            beta = b / 200
            err = sum(abs(math.log(predict(n, think, s1, beta) / x)) for n, x, think in points)
            if best is None or err < best[0] - 1e-12:
                best = (err, s1, beta)
    err, s1, beta = best
    residuals = [{"clients": n, "measured_ops_per_s": x, "fitted_ops_per_s": predict(n, think, s1, beta),
                  "relative_error": predict(n, think, s1, beta) / x - 1} for n, x, think in points]
    return {"servers": 1, "service_s": s1, "contention": beta, "cap": cap, "latency_s": max(0.0, r1 - s1),
            "mean_abs_log_error": err / len(points), "residuals": residuals}
