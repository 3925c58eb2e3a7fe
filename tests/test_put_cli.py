"""`sluice put`: newline-separated records from a file or stdin, sent with PutRecordBatch."""

from __future__ import annotations

from conftest import (
    assert_exactly_once,
    native_config,
    read_delivered,
    run_sluice,
    write_config,
)


def lines(tag: str, n: int, width: int = 40) -> list[bytes]:
    return [f"{tag} line {i:06d} ".encode() + b"." * (width - 20) for i in range(n)]


def start(tmp_path, start_daemon, name="cli"):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cli.toml", native_config(name, out, size_bytes=8 << 20, interval_secs=60))
    return start_daemon(cfg), out


def put(d, stream, *args, input=None):
    p = run_sluice(["put", "--endpoint", d.endpoint, "--stream", stream, *args], input=input, timeout=120)
    assert p.returncode == 0, f"sluice put exited {p.returncode}:\n{p.stderr.decode('utf-8', 'replace')}"
    return p


def test_put_file_1200_lines(tmp_path, start_daemon):
    d, out = start(tmp_path, start_daemon)
    recs = lines("file", 1200)
    f = tmp_path / "records.txt"
    f.write_bytes(b"\n".join(recs) + b"\n")
    put(d, "cli", str(f))
    d.stop_ok()
    assert_exactly_once(read_delivered(out, stream="cli", json_lines=False).records, recs)


def test_put_stdin_and_file_without_trailing_newline(tmp_path, start_daemon):
    d, out = start(tmp_path, start_daemon)
    a = lines("stdin", 1200)
    put(d, "cli", "-", input=b"\n".join(a) + b"\n")
    b = lines("nonl", 7)
    f = tmp_path / "b.txt"
    f.write_bytes(b"\n".join(b))  # last line without a newline is still a record
    put(d, "cli", str(f))
    d.stop_ok()
    assert_exactly_once(read_delivered(out, stream="cli", json_lines=False).records, a + b)


def test_put_splits_by_4_mib(tmp_path, start_daemon):
    """1,200 lines of 8 KB (9.6 MB) need batches split by size, not only by count."""
    d, out = start(tmp_path, start_daemon)
    recs = lines("wide", 1200, width=8000)
    f = tmp_path / "wide.txt"
    f.write_bytes(b"\n".join(recs) + b"\n")
    put(d, "cli", str(f))
    d.stop_ok()
    assert_exactly_once(read_delivered(out, stream="cli", json_lines=False).records, recs)


def test_put_unknown_stream_fails(tmp_path, start_daemon):
    d, out = start(tmp_path, start_daemon)
    p = run_sluice(["put", "--endpoint", d.endpoint, "--stream", "nope", "-"], input=b"x\n", timeout=60)
    assert p.returncode != 0, "put to an unknown stream reported success"
    err = p.stderr.decode("utf-8", "replace")
    assert "ResourceNotFoundException" in err or "nope" in err, err
    d.stop_ok()
    assert read_delivered(out).keys == []


def test_put_says_what_it_sent_and_wants_a_url(tmp_path, start_daemon):
    d, out = start(tmp_path, start_daemon)
    p = put(d, "cli", "-", input=b"only one\n")
    assert "sent 1 record to `cli`" in p.stderr.decode(), p.stderr
    bare = d.endpoint.removeprefix("http://")
    p = run_sluice(["put", "--endpoint", bare, "--stream", "cli", "-"], input=b"x\n", timeout=60)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode != 0 and "must be a URL with a scheme" in err and f"http://{bare}" in err, err
    d.stop_ok()
    log = d.log_path.read_text()
    # One start-up summary per stream and one line per delivery.
    assert "Stream configured. stream=cli source=Direct PUT" in log, log[-2000:]
    assert "Delivered. stream=cli epoch=1 objects=1 records=1 " in log, log[-2000:]
    assert "Positions {" not in log, "an internal struct was logged"
