"""The scale model's discrete-event engine (bench/scale/README.md "The model").

Stdlib only. Three pieces:
  Sim      an event list (time, then insertion order) and a clock, in seconds.
  Station  c identical servers in front of one FIFO queue (a multi-server queue); it
           keeps the numbers a bottleneck analysis needs (busy time, jobs, waits).
  mva_*    the closed-network mean value analysis used to fit a station's service time
           and parallelism to throughput measured with 1..64 closed-loop clients.
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
        if service < 0 or math.isnan(service):
            raise ValueError(f"station {self.name}: bad service time {service}")
        self.jobs += 1
        if self.busy < self.servers:
            self._start(service, done, self.sim.now)
        else:
            self.queue.append((service, done, self.sim.now))
            self.max_queue = max(self.max_queue, len(self.queue))

    def _start(self, service, done, arrived):
        self.busy += 1
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


def mva_closed(n, service, servers, delay):
    """Throughput (jobs/s) and mean response time (s, excluding `delay`) of n customers
    cycling through a delay station (`delay` s, no queueing: the clients' own time and
    the parallel part of a request) and a `servers`-server station of mean service
    `service` s. Exact MVA for one server; Seidmann's approximation for more (a queue
    of service service/servers plus a pure delay of service*(servers-1)/servers)."""
    if n < 1 or service <= 0 or servers < 1 or delay < 0:
        raise ValueError("need n >= 1, service > 0, servers >= 1, delay >= 0")
    d_queue = service / servers
    d_fixed = service * (servers - 1) / servers
    queue_len = 0.0
    x = r = 0.0
    for k in range(1, n + 1):
        r_queue = d_queue * (1 + queue_len)
        r = d_fixed + r_queue
        x = k / (delay + r)
        queue_len = x * r_queue
    return x, r


def fit_station(points, r1, max_servers=64):
    """Fits (servers, service, latency) of one storaged operation to closed-loop
    measurements. points: [(clients, ops_per_s, think_s)], think_s the client's own time
    per operation outside the request; r1: the mean request latency at one client (s).
    A request = latency (parallel: connect, HTTP, the client's CPU) + service at a
    `servers`-server station. The service time is searched up to 2 * r1: under load it
    can exceed the one-client latency (CPU and fsync contention on the storage host);
    the latency is r1 - service, at least 0. Minimises the squared log error of the
    throughput over all points. Returns a dict with the fit and its residuals.
    Identifiable: the capacity servers/service and the one-client latency. Under
    Seidmann's approximation c servers of S are the same network as one server of S/c
    plus a delay, so among equal fits the fewest servers win (storaged serialises its
    mutations under one lock: one server is also what the code says)."""
    if not points or r1 <= 0:
        raise ValueError("need measurements and a positive one-client latency")
    best = None
    for servers in range(1, max_servers + 1):
        for step in range(1, 201):
            service = r1 * step / 100
            latency = max(0.0, r1 - service)
            err = 0.0
            for n, x_meas, think in points:
                x, _ = mva_closed(n, service, servers, latency + think)
                err += math.log(x / x_meas) ** 2
            if best is None or err < best[0] - 1e-12:
                best = (err, servers, service, latency)
    err, servers, service, latency = best
    residuals = []
    for n, x_meas, think in points:
        x, _ = mva_closed(n, service, servers, latency + think)
        residuals.append({"clients": n, "measured_ops_per_s": x_meas, "fitted_ops_per_s": x,
                          "relative_error": x / x_meas - 1})
    return {"servers": servers, "service_s": service, "latency_s": latency,
            "rms_log_error": math.sqrt(err / len(points)), "residuals": residuals}
