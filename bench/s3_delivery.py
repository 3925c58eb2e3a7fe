#!/usr/bin/env python3
"""S3 delivery cost and speed against moto (a benchmark, not a test; CI does not run it).

Starts moto_server, the counting proxy (tests/fault_proxy.py with fault rate 0) in front of
it, and `sluice run` (release build) with a Direct PUT stream into an S3 bucket through the
proxy. Sends N MB of records with PutRecordBatch, then SIGTERM, and reports:
- S3 requests per delivered object (by operation), from the proxy's counters;
- delivered MB/s: record bytes over the time from the first put to the last object being
  visible, and the sluice CPU seconds spent.

    .venv/bin/python bench/s3_delivery.py [--mb 200] [--part-mb 8] [--buffer-mb 64]
"""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

REPO = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} did not open")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--part-mb", type=int, default=8)
    parser.add_argument("--buffer-mb", type=int, default=64)
    parser.add_argument("--binary", default=str(REPO / "target/release/sluice"))
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      AWS_DEFAULT_REGION="us-east-1")
    work = pathlib.Path(tempfile.mkdtemp(prefix="sluice-s3-bench-"))
    procs = []
    try:
        moto_port, proxy_port, port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sys.executable, str(REPO / "tests/fault_proxy.py"), "--listen-port", str(proxy_port),
                                       "--upstream", f"127.0.0.1:{moto_port}", "--fault-rate", "0"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(moto_port)
        wait_port(proxy_port)
        moto = f"http://127.0.0.1:{moto_port}"
        s3 = boto3.client("s3", endpoint_url=moto)
        s3.create_bucket(Bucket="bench")
        config = work / "s3.toml"
        config.write_text(f"""name = "bench"
[source]
type = "direct_put"
max_wal_bytes = {8 << 30}
[destination]
type = "s3"
bucket = "bench"
endpoint_url = "http://127.0.0.1:{proxy_port}"
part_size_bytes = {args.part_mb << 20}
[destination.buffering]
size_bytes = {args.buffer_mb << 20}
interval_secs = 900
""")
        log = open(work / "sluice.log", "w")
        daemon = subprocess.Popen([args.binary, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                                   "--state-dir", str(work / "state")], stderr=log)
        procs.append(daemon)
        wait_port(port)
        firehose = boto3.client("firehose", endpoint_url=f"http://127.0.0.1:{port}")
        record = b"x" * 999 + b"\n"
        batches = args.mb * 1_000_000 // (len(record) * 500)
        start = time.time()
        for _ in range(batches):
            reply = firehose.put_record_batch(DeliveryStreamName="bench", Records=[{"Data": record}] * 500)
            assert reply["FailedPutCount"] == 0
        daemon.send_signal(signal.SIGTERM)
        # wait4 gives the daemon's whole CPU use, including the final drain.
        _, status, usage = os.wait4(daemon.pid, 0)
        daemon.returncode = os.waitstatus_to_exitcode(status)
        code = daemon.returncode
        elapsed = time.time() - start
        cpu = usage.ru_utime + usage.ru_stime
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{proxy_port}/__faults"))
        objects = s3.list_objects_v2(Bucket="bench").get("KeyCount", 0)
        mb = batches * 500 * len(record) / 1e6
        by_op = stats["requests_by_op"]
        print(f"sent {mb:.0f} MB in {batches * 500} records; buffers {args.buffer_mb} MiB, parts {args.part_mb} MiB; exit {code}")
        print(f"objects: {objects}; S3 requests: {stats['requests']} = {stats['requests'] / max(objects, 1):.1f} per object; by operation: {by_op}")
        print(f"delivered {mb / elapsed:.1f} MB/s to moto (first put to last object visible, {elapsed:.1f} s); "
              f"sluice CPU {cpu:.1f} s = {cpu / mb * 1000:.1f} ms per MB")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


if __name__ == "__main__":
    main()
