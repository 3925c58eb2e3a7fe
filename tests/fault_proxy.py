#!/usr/bin/env python3
"""A small HTTP/1.1 reverse proxy that injects S3 faults (stdlib only).

It sits between sluice and moto_server and forwards S3 API requests faithfully, except
that a bounded fraction of them (``--fault-rate``) gets one of these faults:

- ``internal_error``: ``500 InternalError`` with an S3 XML error body (request not forwarded);
- ``slow_down``: ``503 SlowDown`` with an S3 XML error body (request not forwarded);
- ``reset``: the connection is reset (RST) without any answer (request not forwarded);
- ``delay``: the request is forwarded and executed upstream, but its response is held
  for ``--delay-secs`` (past the client's attempt timeout) before it is written, so the
  client sees a timeout for a request that did take effect.

Fault kinds are chosen round-robin (from a seeded random start) so that every kind shows
up after a handful of faults; whether a request is faulted is a seeded coin flip.
Requests to ``/__faults`` (the proxy's own control path) are never faulted or forwarded:

- ``GET /__faults``: the counters as JSON;
- ``POST /__faults?rate=R&kinds=a,b``: change the fault rate (0 stops injecting) and/or
  the kinds injected.

At exit (SIGTERM/SIGINT) it prints the counters as one JSON line to stdout.

Usage::

    python tests/fault_proxy.py --listen-port P --upstream 127.0.0.1:MOTO \
        --fault-rate 0.15 --seed N --delay-secs 8

Framing: the proxy reads each request completely (headers, then a Content-Length body or a
``Transfer-Encoding: chunked`` body, trailers included, kept byte for byte - an
``aws-chunked`` content encoding is just a body to it), answers ``Expect: 100-continue``
itself, forwards the request verbatim (Host and signature untouched) on a fresh upstream
connection with ``Connection: close``, reads the whole response until the upstream closes,
and relays it. Client connections are kept alive when the response is self-delimiting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import sys
import time
import uuid
from collections import Counter
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("internal_error", "slow_down", "reset", "delay")
HEADER_LIMIT = 64 * 1024
BODY_LIMIT = 256 * 1024 * 1024
IDLE_TIMEOUT = 120.0  # seconds a client connection may sit idle between requests
IO_TIMEOUT = 60.0  # seconds for reading one request body / one upstream response
MAX_CHUNKS = 1_000_000  # bound on chunks in one chunked body


class BadRequest(Exception):
    pass


def s3_operation(method: str, target: str) -> str:
    """A best-effort S3 operation name for statistics."""
    parts = urlsplit(target)
    q = parse_qs(parts.query, keep_blank_values=True)
    path = parts.path.strip("/")
    has_key = "/" in path
    if method == "POST" and "uploads" in q:
        return "CreateMultipartUpload"
    if method == "PUT" and "partNumber" in q and "uploadId" in q:
        return "UploadPart"
    if method == "POST" and "uploadId" in q:
        return "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in q:
        return "AbortMultipartUpload"
    if method == "GET" and "uploadId" in q:
        return "ListParts"
    if method == "GET" and "uploads" in q:
        return "ListMultipartUploads"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        return "GetObject" if has_key else "ListObjects"
    if method == "PUT":
        return "PutObject" if has_key else "CreateBucket"
    if method == "DELETE":
        return "DeleteObject" if has_key else "DeleteBucket"
    return f"{method}"


def parse_kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; known: {', '.join(FAULT_KINDS)}")
    return kinds


def error_response(status: int, reason: str, code: str, message: str, head: bool) -> bytes:
    rid = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{rid}</RequestId><HostId>fault-proxy</HostId></Error>"
    ).encode()
    headers = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-amz-request-id: {rid}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n"
        f"\r\n"
    ).encode()
    return headers if head else headers + body


def parse_headers(block: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = block.decode("latin-1").split("\r\n")
    start = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        if ":" not in line:
            raise BadRequest(f"malformed header line {line!r}")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return start, headers


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    """The request body, byte for byte as sent (chunked framing kept)."""
    te = (header(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        out = bytearray()
        for _ in range(MAX_CHUNKS):
            line = await reader.readuntil(b"\r\n")
            out += line
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers, then an empty line
                for _ in range(1000):
                    t = await reader.readuntil(b"\r\n")
                    out += t
                    if t == b"\r\n":
                        return bytes(out)
                raise BadRequest("too many trailer lines")
            if len(out) + size > BODY_LIMIT:
                raise BadRequest("body too large")
            out += await reader.readexactly(size + 2)
        raise BadRequest("too many chunks")
    cl = header(headers, "content-length")
    if cl is None:
        return b""
    n = int(cl)
    if n < 0 or n > BODY_LIMIT:
        raise BadRequest(f"bad Content-Length {cl}")
    return await reader.readexactly(n)


class Proxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, rate: float, seed: int, delay: float, quiet: bool, kinds: list[str]
    ):
        self.up_host, self.up_port = upstream_host, upstream_port
        self.rate = rate
        self.kinds = list(kinds)
        self.rng = random.Random(seed)
        self.next_kind = self.rng.randrange(len(FAULT_KINDS))
        self.delay = delay
        self.quiet = quiet
        self.faults: Counter = Counter({k: 0 for k in FAULT_KINDS})
        self.faults_by_op: Counter = Counter()
        self.requests_by_op: Counter = Counter()
        self.requests = 0
        self.forwarded = 0
        self.upstream_errors = 0
        self.client_gone = 0
        self.started = time.time()

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "forwarded": self.forwarded,
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "faults_by_op": dict(self.faults_by_op),
            "requests_by_op": dict(self.requests_by_op),
            "upstream_errors": self.upstream_errors,
            "delayed_responses_client_gone": self.client_gone,
            "rate": self.rate,
            "kinds": self.kinds,
            "uptime_secs": round(time.time() - self.started, 1),
        }

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"{time.strftime('%H:%M:%S')} fault_proxy: {msg}", file=sys.stderr, flush=True)

    def pick_fault(self) -> str | None:
        if self.rate <= 0 or not self.kinds or self.rng.random() >= self.rate:
            return None
        kind = self.kinds[self.next_kind % len(self.kinds)]
        self.next_kind = (self.next_kind + 1) % len(self.kinds)
        return kind

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(100_000):  # requests on one keep-alive connection
                try:
                    block = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, asyncio.CancelledError):
                    return
                except asyncio.LimitOverrunError:
                    return
                keep_open = await self.one_request(block, reader, writer)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest, asyncio.TimeoutError, ValueError) as e:
            self.log(f"connection dropped: {e!r}")
        except asyncio.CancelledError:
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def one_request(self, block: bytes, reader, writer) -> bool:
        start, headers = parse_headers(block[:-4])
        try:
            method, target, version = start.split(" ", 2)
        except ValueError:
            raise BadRequest(f"bad request line {start!r}")
        if (header(headers, "expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await asyncio.wait_for(read_body(reader, headers), IO_TIMEOUT)
        client_close = (header(headers, "connection") or "").lower() == "close" or version == "HTTP/1.0"

        if urlsplit(target).path.startswith("/__faults"):
            if method == "POST":
                q = parse_qs(urlsplit(target).query)
                if "rate" in q:
                    self.rate = min(1.0, max(0.0, float(q["rate"][0])))
                if "kinds" in q:
                    self.kinds = parse_kinds(q["kinds"][0])
                self.log(f"fault rate set to {self.rate}, kinds {self.kinds}")
            payload = json.dumps(self.stats()).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
            await writer.drain()
            return not client_close

        op = s3_operation(method, target)
        self.requests += 1
        self.requests_by_op[op] += 1
        head = method == "HEAD"
        fault = self.pick_fault()
        if fault is not None:
            self.faults[fault] += 1
            self.faults_by_op[f"{op}:{fault}"] += 1
            self.log(f"inject {fault} into {op} {method} {target[:120]}")
        if fault == "internal_error":
            writer.write(error_response(500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again.", head))
            await writer.drain()
            return not client_close
        if fault == "slow_down":
            writer.write(error_response(503, "Slow Down", "SlowDown", "Please reduce your request rate.", head))
            await writer.drain()
            return not client_close
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort()
            return False

        # Forward.
        out_headers = [
            (k, v)
            for k, v in headers
            if k.lower() not in ("connection", "keep-alive", "proxy-connection", "expect")
        ]
        out_headers.append(("Connection", "close"))
        request = (
            f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
            + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in out_headers)
            + b"\r\n"
            + body
        )
        try:
            response = await asyncio.wait_for(self.upstream(request), IO_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            self.upstream_errors += 1
            self.log(f"upstream failed for {op}: {e!r}")
            writer.write(error_response(502, "Bad Gateway", "InternalError", f"fault proxy: upstream failed: {e!r}", head))
            await writer.drain()
            return False
        self.forwarded += 1
        relay, keep = self.reframe(response, head)
        if fault == "delay":
            await asyncio.sleep(self.delay)
            if writer.is_closing() or reader.at_eof():
                self.client_gone += 1
                return False
        writer.write(relay)
        await writer.drain()
        return keep and not client_close

    async def upstream(self, request: bytes) -> bytes:
        r, w = await asyncio.open_connection(self.up_host, self.up_port)
        try:
            w.write(request)
            await w.drain()
            chunks = []
            total = 0
            while True:
                data = await r.read(1 << 16)
                if not data:
                    break
                chunks.append(data)
                total += len(data)
                if total > BODY_LIMIT:
                    raise OSError("upstream response too large")
            return b"".join(chunks)
        finally:
            w.close()

    @staticmethod
    def reframe(response: bytes, head: bool) -> tuple[bytes, bool]:
        """Drop upstream hop-by-hop Connection headers; keep the client connection open when
        the response is self-delimiting."""
        end = response.find(b"\r\n\r\n")
        if end < 0:
            raise OSError("upstream response has no header end")
        start, headers = parse_headers(response[:end])
        body = response[end + 4 :]
        status = int(start.split(" ", 2)[1])
        headers = [(k, v) for k, v in headers if k.lower() not in ("connection", "keep-alive")]
        te = (header(headers, "transfer-encoding") or "").lower()
        cl = header(headers, "content-length")
        keep = True  # every relayed response is self-delimiting
        if head or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in te:
            pass
        elif cl is not None:
            body = body[: int(cl)]
        else:
            headers.append(("Content-Length", str(len(body))))
        out = (
            (start + "\r\n").encode("latin-1")
            + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
            + b"\r\n"
            + body
        )
        return out, keep


async def main_async(args) -> None:
    up_host, up_port = args.upstream.rsplit(":", 1)
    proxy = Proxy(up_host, int(up_port), args.fault_rate, args.seed, args.delay_secs, args.quiet, parse_kinds(args.kinds))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.listen_port, limit=HEADER_LIMIT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    proxy.log(f"listening on 127.0.0.1:{args.listen_port} -> {args.upstream}, rate {args.fault_rate}, seed {args.seed}")
    print(f"READY {args.listen_port}", flush=True)
    async with server:
        if args.max_lifetime_secs > 0:
            try:
                await asyncio.wait_for(stop.wait(), args.max_lifetime_secs)
            except asyncio.TimeoutError:
                proxy.log("max lifetime reached; exiting")
        else:
            await stop.wait()
    print(json.dumps({"fault_proxy_stats": proxy.stats()}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen-port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="host:port of the S3 endpoint (moto)")
    p.add_argument("--fault-rate", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--delay-secs", type=float, default=8.0)
    p.add_argument("--kinds", default=",".join(FAULT_KINDS), help="comma-separated fault kinds to inject (round-robin)")
    p.add_argument("--quiet", action="store_true", help="do not log injected faults to stderr")
    p.add_argument("--max-lifetime-secs", type=float, default=3600.0, help="exit after this long (0: never)")
    args = p.parse_args()
    if not 0.0 <= args.fault_rate <= 1.0:
        p.error("--fault-rate must be within [0, 1]")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
