#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a Kinesis JSON API (moto, kinesis-local).

Kinesis speaks JSON over `POST /` with the operation in `X-Amz-Target`
(`Kinesis_20131202.GetRecords`, ...). For a bounded, seeded fraction of the calls the
proxy answers an error itself instead of forwarding (so the emulator never sees the call,
like a real throttled or expired call, which returns no data):

- GetRecords: `ProvisionedThroughputExceededException` (400), `ExpiredIteratorException`
  (400) or `InternalFailure` (500), cycling through the enabled kinds so each one is used;
- GetShardIterator: `LimitExceededException` (400).

Every other request is forwarded unchanged (one upstream connection per request, with
`Connection: close`), and the answer is relayed with a Content-Length so the client's
keep-alive connection stays usable.

The first call of each faulted operation always fails (so every enabled kind is injected
even in a short run). Control: `GET /__faults` -> JSON counters; `POST /__faults?rate=R[&iterator_rate=R]` changes
the fault rates (0 stops injecting). At most `--max-consecutive` faults in a row per
operation, so the client always makes progress. Listens on 127.0.0.1 only; exits by itself
after `--max-lifetime-secs`. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import urllib.parse

READ_LIMIT = 64 * 1024 * 1024  # biggest request/response accepted (GetRecords <= 10 MiB on AWS)
IO_TIMEOUT = 60.0

GET_RECORDS_FAULTS = {
    "throttle": (400, "ProvisionedThroughputExceededException", "Rate exceeded for shard"),
    "expired": (400, "ExpiredIteratorException", "Iterator expired"),
    "internal": (500, "InternalFailure", "Internal service failure"),
}
ITERATOR_FAULT = (400, "LimitExceededException", "Rate exceeded for GetShardIterator")


class State:
    def __init__(self, args):
        self.rng = random.Random(args.seed)
        self.rate = args.rate
        self.iterator_rate = args.iterator_rate
        self.kinds = [k for k in args.kinds.split(",") if k]
        for k in self.kinds:
            if k not in GET_RECORDS_FAULTS:
                raise SystemExit(f"unknown fault kind {k!r}; known: {sorted(GET_RECORDS_FAULTS)}")
        self.max_consecutive = args.max_consecutive
        self.next_kind = 0
        self.consecutive: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.forwarded = 0
        self.upstream_errors = 0

    def decide(self, op: str):
        """The fault to answer for this call, or None to forward it."""
        self.calls[op] = self.calls.get(op, 0) + 1
        # The first call of a faulted operation always fails, so every enabled fault shows
        # up even in a short run; later ones fail at random.
        first = self.calls[op] == 1
        fault = None
        if op == "GetRecords" and self.kinds and self.rate > 0:
            if self.consecutive.get(op, 0) < self.max_consecutive and (first or self.rng.random() < self.rate):
                fault = GET_RECORDS_FAULTS[self.kinds[self.next_kind % len(self.kinds)]]
                self.next_kind += 1
        elif op == "GetShardIterator" and self.iterator_rate > 0:
            if self.consecutive.get(op, 0) < self.max_consecutive and (first or self.rng.random() < self.iterator_rate):
                fault = ITERATOR_FAULT
        if fault is None:
            self.consecutive[op] = 0
        else:
            self.consecutive[op] = self.consecutive.get(op, 0) + 1
            self.faults[fault[1]] = self.faults.get(fault[1], 0) + 1
        return fault

    def snapshot(self) -> dict:
        return {
            "rate": self.rate,
            "iterator_rate": self.iterator_rate,
            "kinds": self.kinds,
            "calls": dict(self.calls),
            "faults": dict(self.faults),
            "forwarded": self.forwarded,
            "upstream_errors": self.upstream_errors,
        }


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.TimeoutError):
        return None
    return head


def parse_headers(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return first, headers


def header(headers, name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    for _ in range(1_000_000):
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), IO_TIMEOUT)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            # trailers until an empty line
            for _ in range(1000):
                t = await asyncio.wait_for(reader.readuntil(b"\r\n"), IO_TIMEOUT)
                if t == b"\r\n":
                    break
            return bytes(body)
        body += await asyncio.wait_for(reader.readexactly(size + 2), IO_TIMEOUT)
        del body[-2:]
        if len(body) > READ_LIMIT:
            raise ValueError("chunked body too large")
    raise ValueError("too many chunks")


async def read_body(reader: asyncio.StreamReader, headers) -> bytes:
    te = header(headers, "transfer-encoding")
    if te and "chunked" in te.lower():
        return await read_chunked(reader)
    n = int(header(headers, "content-length") or 0)
    if n > READ_LIMIT:
        raise ValueError("body too large")
    return await asyncio.wait_for(reader.readexactly(n), IO_TIMEOUT) if n else b""


def response(status: int, reason: str, headers: list[tuple[str, str]], body: bytes, keep_alive: bool = True) -> bytes:
    out = [f"HTTP/1.1 {status} {reason}"]
    for k, v in headers:
        if k.lower() in ("content-length", "transfer-encoding", "connection", "keep-alive"):
            continue
        out.append(f"{k}: {v}")
    out.append(f"Content-Length: {len(body)}")
    out.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body


def error_response(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"__type": code, "message": message}).encode()
    return response(
        status,
        "Bad Request" if status == 400 else "Internal Server Error",
        [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code), ("x-amzn-RequestId", "fault-proxy")],
        body,
    )


async def forward(upstream: tuple[str, int], first: str, headers, body: bytes) -> bytes:
    r, w = await asyncio.wait_for(asyncio.open_connection(*upstream), IO_TIMEOUT)
    try:
        out = [first]
        for k, v in headers:
            if k.lower() in ("connection", "keep-alive", "content-length", "transfer-encoding"):
                continue
            out.append(f"{k}: {v}")
        out.append(f"Content-Length: {len(body)}")
        out.append("Connection: close")
        w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
        await w.drain()
        head = await read_head(r)
        if head is None:
            raise ConnectionError("upstream closed without an answer")
        status_line, rheaders = parse_headers(head)
        te = header(rheaders, "transfer-encoding")
        if te and "chunked" in te.lower():
            rbody = await read_chunked(r)
        elif header(rheaders, "content-length") is not None:
            rbody = await read_body(r, rheaders)
        else:
            rbody = await asyncio.wait_for(r.read(READ_LIMIT), IO_TIMEOUT)
        parts = status_line.split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        return response(status, reason, rheaders, rbody)
    finally:
        w.close()
        try:
            await w.wait_closed()
        except (ConnectionError, OSError):
            pass


async def handle(state: State, upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        for _ in range(1_000_000):  # requests on one keep-alive connection
            head = await read_head(reader)
            if head is None:
                return
            first, headers = parse_headers(head)
            try:
                body = await read_body(reader, headers)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, ConnectionError):
                return
            method, _, rest = first.partition(" ")
            path = rest.rsplit(" ", 1)[0]
            if path.startswith("/__faults"):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
                if method == "POST":
                    if "rate" in query:
                        state.rate = float(query["rate"][0])
                    if "iterator_rate" in query:
                        state.iterator_rate = float(query["iterator_rate"][0])
                out = json.dumps(state.snapshot()).encode()
                writer.write(response(200, "OK", [("Content-Type", "application/json")], out))
                await writer.drain()
                continue
            target = header(headers, "x-amz-target") or ""
            op = target.rsplit(".", 1)[-1]
            fault = state.decide(op) if op else None
            if fault is not None:
                print(f"{time.strftime('%H:%M:%S')} fault {fault[1]} for {op}", file=sys.stderr, flush=True)
                writer.write(error_response(*fault))
                await writer.drain()
                continue
            try:
                answer = await forward(upstream, first, headers, body)
                state.forwarded += 1
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                state.upstream_errors += 1
                print(f"upstream error for {op or path}: {e!r}", file=sys.stderr, flush=True)
                writer.write(response(502, "Bad Gateway", [("Content-Type", "text/plain")], b"upstream error", keep_alive=False))
                await writer.drain()
                return
            writer.write(answer)
            await writer.drain()
    except (ConnectionError, OSError):
        return
    finally:
        writer.close()


async def main_async(args) -> None:
    state = State(args)
    host, _, port = args.upstream.rpartition(":")
    upstream = (host or "127.0.0.1", int(port))
    server = await asyncio.start_server(
        lambda r, w: handle(state, upstream, r, w), "127.0.0.1", args.listen_port, limit=READ_LIMIT
    )
    print(f"listening on 127.0.0.1:{args.listen_port}, upstream {upstream}", file=sys.stderr, flush=True)
    async with server:
        try:
            await asyncio.wait_for(server.serve_forever(), args.max_lifetime_secs)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
    print(json.dumps(state.snapshot()), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen-port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="host:port of the Kinesis endpoint")
    p.add_argument("--rate", type=float, default=0.2, help="fraction of GetRecords calls to fail")
    p.add_argument("--kinds", default="throttle,expired", help="GetRecords fault kinds: throttle,expired,internal")
    p.add_argument("--iterator-rate", type=float, default=0.0, help="fraction of GetShardIterator calls to throttle")
    p.add_argument("--max-consecutive", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-lifetime-secs", type=float, default=1800)
    args = p.parse_args()
    import signal

    loop = asyncio.new_event_loop()
    task = loop.create_task(main_async(args))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()


if __name__ == "__main__":
    main()
