#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay in each direction: network latency for
the prefetch benchmark (bench/prefetch) on a kernel without sch_netem.

  delay_proxy.py --listen ADDR --target ADDR --rtt-ms MS PORT [PORT...]

Listens on ADDR:PORT for each PORT and forwards every connection to TARGET:PORT; every
chunk read on one side is written to the other RTT/2 ms later (order kept, so a stream's
bytes arrive as sent, shifted in time: what netem's delay does to a TCP flow, without
its loss or reordering). Requests in flight pipeline as they would on a real link.
SIGUSR1 re-reads the delay from --rtt-file if given. Runs until SIGTERM.
"""
import argparse
import asyncio
import signal
import socket

CHUNK = 1 << 20


class Link:
    def __init__(self, rtt_ms):
        self.one_way = rtt_ms / 2000.0


async def pump(reader, writer, link):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if link.one_way > 0:
                loop.call_later(link.one_way, writer.write, data)
            else:
                writer.write(data)
            if writer.transport.get_write_buffer_size() > 64 * CHUNK:
                await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # The close waits for the delayed writes scheduled before it.
        loop.call_later(link.one_way + 0.001, writer.close)


async def serve(listen, target, port, link):
    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(target, port)
        except OSError:
            writer.close()
            return
        for w in (writer, up_writer):
            s = w.get_extra_info("socket")
            if s is not None:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(reader, up_writer, link), pump(up_reader, writer, link))

    return await asyncio.start_server(handle, listen, port, reuse_address=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--rtt-file", default="")
    ap.add_argument("ports", type=int, nargs="+")
    a = ap.parse_args()
    link = Link(a.rtt_ms)
    loop = asyncio.get_running_loop()

    def reload():
        if a.rtt_file:
            with open(a.rtt_file) as f:
                link.one_way = float(f.read().strip()) / 2000.0

    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, reload)
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    loop.add_signal_handler(signal.SIGINT, lambda: stop.done() or stop.set_result(None))
    reload()
    servers = [await serve(a.listen, a.target, p, link) for p in a.ports]
    print("delay_proxy ready", flush=True)
    await stop
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
