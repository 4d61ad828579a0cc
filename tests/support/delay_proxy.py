#!/usr/bin/env python3
"""delay_proxy.py - a TCP proxy that adds latency, for benchmarks.

    delay_proxy.py --listen PORT --target HOST:PORT|unix:PATH --rtt-ms MS
                   [--port-file F]

Every connection to 127.0.0.1:PORT (0: any free port, written to --port-file)
is forwarded to HOST:PORT (or the Unix socket PATH: a plain tcp:// Docker
daemon made of the local socket); bytes in each direction are held back MS/2
milliseconds, so a request and its reply cost MS more than they would
directly: a network round trip of MS. Order is kept (each chunk is written
at its arrival time plus the delay, and chunks arrive in order). The bytes
are not looked at, so TLS passes through untouched. Runs until killed.
"""
import argparse
import asyncio
import os
import socket


async def pump(reader, writer, delay):
    loop = asyncio.get_running_loop()
    pending = 0
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            pending += 1

            def deliver(d=data):
                nonlocal pending
                pending -= 1
                if not writer.is_closing():
                    writer.write(d)

            loop.call_at(loop.time() + delay, deliver)
        # EOF after everything before it has been delivered.
        await asyncio.sleep(delay)
        while pending:
            await asyncio.sleep(0.001)
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def serve(args):
    delay = args.rtt_ms / 2000.0

    async def connect():
        if args.target.startswith("unix:"):
            return await asyncio.open_unix_connection(args.target[5:])
        thost, tport = args.target.rsplit(":", 1)
        return await asyncio.open_connection(thost, int(tport))

    async def handle(cr, cw):
        try:
            sr, sw = await connect()
        except OSError:
            cw.close()
            return
        for w in (cw, sw):
            s = w.get_extra_info("socket")
            if s is not None and s.family != socket.AF_UNIX:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(cr, sw, delay), pump(sr, cw, delay))
        cw.close()
        sw.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    lport = server.sockets[0].getsockname()[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % lport)
        os.rename(args.port_file + ".tmp", args.port_file)
    async with server:
        await server.serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, default=0)
    p.add_argument("--target", required=True)
    p.add_argument("--rtt-ms", type=float, default=0.0)
    p.add_argument("--port-file")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
