"""A fault-injecting file server for the pull tests, on 127.0.0.1 in a thread of its own.

It serves in-memory files with HTTP ranges (aiohttp parses the Range header) and can: drop
the connection after N bytes of each of the first K responses, serve one byte flipped, and
ignore ranges (answer 200 with the whole file). ``hits`` records each request's path and
Range header."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Faults:
    drop_after: int | None = None  # bytes per response, then the connection is cut
    drops: int = 0  # how many responses are cut
    corrupt_at: int | None = None  # this byte of the file is served flipped
    ignore_range: bool = False


@dataclass
class FileServer:
    files: dict[str, bytes]
    faults: Faults = field(default_factory=Faults)
    hits: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.hits.append((path, request.headers.get("Range")))
        data = self.files.get(path)
        if data is None:
            return web.Response(status=404, text="not found")
        f = self.faults
        if f.corrupt_at is not None and f.corrupt_at < len(data):
            data = (
                data[: f.corrupt_at] + bytes([data[f.corrupt_at] ^ 0xFF]) + data[f.corrupt_at + 1 :]
            )
        start = 0
        partial = "Range" in request.headers and not f.ignore_range
        if partial:
            rng = request.http_range  # aiohttp's parse of the header
            start = rng.start or 0
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        resp = web.StreamResponse(status=206 if partial else 200)
        resp.content_length = len(body)
        if partial:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await resp.prepare(request)
        if f.drop_after is not None and f.drops > 0:
            f.drops -= 1
            await resp.write(body[: f.drop_after])
            assert request.transport is not None
            request.transport.close()  # the connection drops mid-file
            return resp
        for i in range(0, len(body), 1 << 16):
            await resp.write(body[i : i + (1 << 16)])
        await resp.write_eof()
        return resp


@contextlib.contextmanager
def serve_files(server: FileServer) -> Iterator[FileServer]:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/{path:.+}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server.port = sock.getsockname()[1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the file server did not start")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
