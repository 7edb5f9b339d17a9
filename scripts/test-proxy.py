#!/usr/bin/env python3
"""A small forwarding proxy on 127.0.0.1 for the channel tests: HTTP (CONNECT, optionally
with Basic authentication) or SOCKS5 (no authentication). Prints `PORT <n>` once listening,
then `TUNNEL <host>:<port>` for every connection it forwards, so a test can see that a bot's
calls went through it. Loopback only; standard library only."""
import argparse
import asyncio
import base64
import os
import struct
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def forward(client_reader, client_writer, host, port):
    print(f"TUNNEL {host}:{port}", flush=True)
    upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
    await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


def http_handler(credentials):
    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
        if credentials and headers.get("proxy-authorization") != "Basic " + base64.b64encode(credentials.encode()).decode():
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await forward(reader, writer, host, int(port))
    return handle


async def socks5(reader, writer):
    version, count = struct.unpack("!BB", await reader.readexactly(2))
    methods = await reader.readexactly(count)
    if version != 5 or 0 not in methods:
        writer.write(b"\x05\xff")
        writer.close()
        return
    writer.write(b"\x05\x00")
    _, command, _, kind = struct.unpack("!BBBB", await reader.readexactly(4))
    if kind == 1:
        host = ".".join(str(b) for b in await reader.readexactly(4))
    elif kind == 3:
        host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
    else:
        writer.close()
        return
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    writer.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    await writer.drain()
    await forward(reader, writer, host, port)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["http", "socks5"], default="http")
    parser.add_argument("--credentials", help="user:password required by the HTTP proxy")
    arguments = parser.parse_args()
    handler = http_handler(arguments.credentials) if arguments.kind == "http" else socks5
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    asyncio.create_task(exit_with_parent(os.getppid()))
    async with server:
        await server.serve_forever()


async def exit_with_parent(parent):
    """A test process that crashed cannot stop its proxy: it stops itself when its parent is gone."""
    while os.getppid() == parent:
        await asyncio.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
