#!/usr/bin/python3
"""faultproxy — a small fault-injecting TCP proxy for the edge↔hub link tests.

This kernel has no netem qdisc, so what netem would do is done here, in user
space, between the edge and the hub:

  --delay MS        one-way latency added in each direction (RTT += 2×MS)
  --jitter MS       uniform extra latency 0..MS per chunk (order is kept)
  --rate-mbit R     serialise each direction at R Mbit/s (a bottleneck link)
  --loss P          per-segment (1448 bytes) probability of a loss.  A TCP
                    stream cannot lose bytes, so a loss is what it costs the
                    application on a real link with SACK: the data behind it
                    is held back (head-of-line) for one round trip (2×delay,
                    at least 20 ms) — and one in ten losses for a
                    retransmission timeout (≥ 200 ms) instead.  What it does
                    NOT model: the sender's congestion window halving.
  --drop-every S    mean seconds between random connection drops (each drop
                    resets one live connection, both sides, mid-stream)
  --drop-after A:B  reset each connection after a random number of bytes
                    (uniform in A..B, both directions counted)
  --stall-every S   mean seconds between stalls: all forwarding freezes ...
  --stall-for A:B   ... for A..B seconds (uniform), connections kept open
  --refuse P        refuse a new connection with probability P

Signals (sent by the test that started it, to this PID):
  SIGUSR1  toggle "cut": hold all data, forward nothing, until toggled back
  SIGUSR2  reset every live connection now
  SIGTERM  write the stats and leave

It prints "faultproxy: ready on HOST:PORT" once listening (--listen PORT 0
picks a free port) and keeps --stats FILE current (JSON: connections, drops,
stalls, losses, bytes each way).  Only the given --target is ever dialled.
"""
import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import struct
import sys
import time

SEG = 1448


def host_port(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def span(s):
    a, _, b = s.partition(":")
    return float(a), float(b or a)


class Proxy:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.delay = a.delay / 1000.0
        self.jitter = a.jitter / 1000.0
        self.rate = a.rate_mbit * 1e6 / 8 if a.rate_mbit else 0  # bytes per second
        self.conns = set()
        self.cut = False
        self.frozen_until = 0.0
        self.stats = {"connections": 0, "refused": 0, "drops": 0, "stalls": 0, "losses": 0, "bytes_up": 0,
                      "bytes_down": 0, "cut": False, "started": time.time()}
        # one serialisation clock per direction, shared by all connections (one link)
        self.link_free = {"up": 0.0, "down": 0.0}

    # -- helpers ------------------------------------------------------------
    def blocked(self):
        return self.cut or time.monotonic() < self.frozen_until

    async def wait_open(self):
        while self.blocked():
            await asyncio.sleep(0.01)

    def loss_penalty(self, n):
        if not self.a.loss:
            return 0.0
        pen = 0.0
        for _ in range(max(1, math.ceil(n / SEG))):
            if self.rng.random() < self.a.loss:
                self.stats["losses"] += 1
                rtt = max(2 * self.delay, 0.02)
                pen += max(0.2, 2 * rtt) if self.rng.random() < 0.1 else rtt
        return pen

    def write_stats(self):
        if not self.a.stats:
            return
        self.stats["cut"] = self.cut
        self.stats["live"] = len(self.conns)
        tmp = self.a.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.stats, f)
        os.replace(tmp, self.a.stats)

    # -- a connection ----------------------------------------------------------
    async def handle(self, cr, cw):
        if self.a.refuse and self.rng.random() < self.a.refuse:
            self.stats["refused"] += 1
            reset(cw)
            return
        try:
            sr, sw = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, asyncio.TimeoutError):
            reset(cw)
            return
        conn = Conn(self, cr, cw, sr, sw)
        self.conns.add(conn)
        self.stats["connections"] += 1
        try:
            await conn.run()
        finally:
            self.conns.discard(conn)

    async def chaos(self):
        """Random drops and stalls, as configured."""
        next_drop = self.next_event(self.a.drop_every)
        next_stall = self.next_event(self.a.stall_every)
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if now >= next_drop:
                next_drop = self.next_event(self.a.drop_every)
                live = [c for c in self.conns if not c.closed]
                if live:
                    self.rng.choice(live).drop("random drop")
            if now >= next_stall:
                a, b = span(self.a.stall_for)
                self.frozen_until = now + self.rng.uniform(a, b)
                self.stats["stalls"] += 1
                next_stall = self.frozen_until + (self.next_event(self.a.stall_every) - now)
            self.write_stats()

    def next_event(self, mean):
        return time.monotonic() + self.rng.expovariate(1.0 / mean) if mean else float("inf")

    def on_usr1(self):
        self.cut = not self.cut
        self.write_stats()

    def on_usr2(self):
        for c in list(self.conns):
            c.drop("SIGUSR2")

    async def main(self):
        self.target = host_port(self.a.target)
        host, port = host_port(self.a.listen)
        server = await asyncio.start_server(self.handle, host, port, reuse_address=True, backlog=64)
        sock = server.sockets[0].getsockname()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, self.on_usr1)
        loop.add_signal_handler(signal.SIGUSR2, self.on_usr2)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        print(f"faultproxy: ready on {sock[0]}:{sock[1]} → {self.a.target}", flush=True)
        chaos = asyncio.create_task(self.chaos())
        await stop.wait()
        chaos.cancel()
        server.close()
        for c in list(self.conns):
            c.drop("exit")
        self.write_stats()


def reset(writer):
    """Close with RST (SO_LINGER 0), as a broken link or a dying peer would."""
    try:
        s = writer.get_extra_info("socket")
        if s is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    except (OSError, AttributeError):
        pass


class Conn:
    def __init__(self, px, cr, cw, sr, sw):
        self.px, self.cr, self.cw, self.sr, self.sw = px, cr, cw, sr, sw
        self.closed = False
        self.moved = 0
        a = px.a.drop_after
        self.budget = px.rng.uniform(*span(a)) if a else float("inf")
        self.tasks = []

    def drop(self, why):
        if self.closed:
            return
        self.closed = True
        self.px.stats["drops"] += 1
        reset(self.cw)
        reset(self.sw)
        for t in self.tasks:
            t.cancel()

    async def run(self):
        self.tasks = [asyncio.create_task(self.pipe(self.cr, self.sw, "up")),
                      asyncio.create_task(self.pipe(self.sr, self.cw, "down"))]
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if not self.closed:
            self.closed = True
            for w in (self.cw, self.sw):
                try:
                    w.close()
                except OSError:
                    pass

    async def pipe(self, reader, writer, direction):
        px = self.px
        q = asyncio.Queue()
        room = asyncio.Semaphore(max(1, px.a.buffer // 16384))  # bounded: backpressure to the sender

        async def read_side():
            while True:
                await room.acquire()
                data = await reader.read(16384)
                if not data:
                    await q.put(None)
                    return
                now = time.monotonic()
                n = len(data)
                t = now
                if px.rate:
                    start = max(now, px.link_free[direction])
                    px.link_free[direction] = start + n / px.rate
                    t = px.link_free[direction]
                t += px.delay + (px.rng.uniform(0, px.jitter) if px.jitter else 0)
                t += px.loss_penalty(n)
                await q.put((t, data))

        rd = asyncio.create_task(read_side())
        last = 0.0
        try:
            while True:
                item = await q.get()
                if item is None:
                    break
                t, data = item
                t = max(t, last)  # a stream keeps its order
                last = t
                wait = t - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await px.wait_open()
                if self.closed:
                    return
                writer.write(data)
                await writer.drain()
                room.release()
                px.stats["bytes_" + direction] += len(data)
                self.moved += len(data)
                if self.moved >= self.budget:
                    self.drop("byte budget")
                    return
            # orderly end of one side: pass the FIN on
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, asyncio.CancelledError):
            self.drop("peer gone") if not self.closed else None
        finally:
            rd.cancel()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default 127.0.0.1:0)")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--rate-mbit", type=float, default=0.0)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--drop-every", type=float, default=0.0)
    ap.add_argument("--drop-after", default="")
    ap.add_argument("--stall-every", type=float, default=0.0)
    ap.add_argument("--stall-for", default="1:3")
    ap.add_argument("--refuse", type=float, default=0.0)
    ap.add_argument("--buffer", type=int, default=4 << 20, help="bytes held per direction (default 4 MiB)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--stats", default="", help="JSON file kept current with counters")
    a = ap.parse_args()
    host = host_port(a.target)[0]
    if not (host.startswith("127.") or host == "localhost" or host.startswith("198.18.")):
        sys.exit("faultproxy: refusing a target outside loopback and the test namespaces' 198.18.0.0/30")
    asyncio.run(Proxy(a).main())


if __name__ == "__main__":
    main()
