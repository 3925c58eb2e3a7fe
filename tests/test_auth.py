"""Request signing on the Firehose API (`--auth-file`): unmodified boto3 clients sign with
SigV4 and pass; unsigned, forged, unknown-key, expired and replayed-with-another-body
requests are refused with AWS's error codes, as are keys without the permission; and a
listener beyond loopback without keys does not start."""

from __future__ import annotations

import http.client
import json
from datetime import datetime, timedelta, timezone

import boto3
import botocore.auth
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import b64, free_port, native_config, read_delivered, run_sluice, wait_until, write_config

KEYS = """
[[key]]
access_key_id = "AKIDPRODUCER"
secret_access_key = "producer-secret-0123456789"
streams = ["orders-*"]

[[key]]
access_key_id = "AKIDADMIN"
secret_access_key = "admin-secret-0123456789"
allow = "all"
"""
PRODUCER = ("AKIDPRODUCER", "producer-secret-0123456789")
ADMIN = ("AKIDADMIN", "admin-secret-0123456789")
TARGET = "Firehose_20150804."


def client(daemon, key: tuple[str, str]):
    return boto3.client(
        "firehose", endpoint_url=daemon.endpoint, region_name="us-east-1",
        aws_access_key_id=key[0], aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}),
    )


def code(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def send(daemon, headers: dict, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def signed_headers(daemon, key, body: bytes, operation: str, at: datetime | None = None) -> dict:
    """What botocore's own SigV4 signer sends, optionally as if signed at `at`."""
    request = AWSRequest(method="POST", url=daemon.endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation})
    signer = botocore.auth.SigV4Auth(Credentials(*key), "firehose", "us-east-1")
    if at is None:
        signer.add_auth(request)
    else:
        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: at
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    return dict(request.headers.items())


@pytest.fixture
def daemon(tmp_path, start_daemon):
    keys = tmp_path / "keys.toml"
    keys.write_text(KEYS)
    configs = [write_config(tmp_path / f"{name}.toml", native_config(name, tmp_path / name, interval_secs=1))
               for name in ("orders-eu", "billing")]
    return start_daemon(configs, extra_args=["--auth-file", str(keys)])


def test_signed_requests_pass_and_keys_are_held_to_their_permissions(daemon, tmp_path):
    producer, admin = client(daemon, PRODUCER), client(daemon, ADMIN)
    answer = producer.put_record_batch(DeliveryStreamName="orders-eu",
                                       Records=[{"Data": f"r{i}".encode()} for i in range(20)])
    assert answer["FailedPutCount"] == 0
    assert producer.put_record(DeliveryStreamName="orders-eu", Record={"Data": b"one more"})["RecordId"]
    # A producer key: its streams only, and no control-plane operation.
    assert code(lambda: producer.put_record(DeliveryStreamName="billing", Record={"Data": b"x"})) == "AccessDeniedException"
    assert code(lambda: producer.describe_delivery_stream(DeliveryStreamName="orders-eu")) == "AccessDeniedException"
    assert admin.describe_delivery_stream(DeliveryStreamName="billing")["DeliveryStreamDescription"]["DeliveryStreamName"] == "billing"
    assert sorted(admin.list_delivery_streams()["DeliveryStreamNames"]) == ["billing", "orders-eu"]
    assert admin.put_record(DeliveryStreamName="billing", Record={"Data": b"admin"})["RecordId"]
    wait_until(lambda: len(read_delivered(tmp_path / "orders-eu", json_lines=False).records) == 21, 20, "orders delivered")
    wait_until(lambda: len(read_delivered(tmp_path / "billing", json_lines=False).records) == 1, 20, "billing delivered")
    # /healthz and /metrics stay unsigned for probes and scrapers.
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    daemon.stop_ok()
    assert sorted(read_delivered(tmp_path / "billing", json_lines=False).records) == [b"admin"]


def test_unsigned_forged_unknown_expired_and_replayed_requests_are_refused(daemon, tmp_path):
    body = json.dumps({"DeliveryStreamName": "orders-eu", "Record": {"Data": b64(b"sneaky")}}).encode()
    # Unsigned.
    status, answer = send(daemon, {"Content-Type": "application/x-amz-json-1.1",
                                   "X-Amz-Target": TARGET + "PutRecord"}, body)
    assert (status, answer["__type"]) == (403, "MissingAuthenticationToken"), answer
    # A wrong secret, an unknown key id (boto3 signs; the server disagrees).
    forged = client(daemon, ("AKIDPRODUCER", "not-the-secret-0123456789"))
    assert code(lambda: forged.put_record(DeliveryStreamName="orders-eu", Record={"Data": b"x"})) == "InvalidSignatureException"
    stranger = client(daemon, ("AKIDSTRANGER", "producer-secret-0123456789"))
    assert code(lambda: stranger.put_record(DeliveryStreamName="orders-eu", Record={"Data": b"x"})) == "UnrecognizedClientException"
    # Signed 20 minutes ago: expired (AWS allows 15 either way).
    old = signed_headers(daemon, PRODUCER, body, "PutRecord", datetime.now(timezone.utc) - timedelta(minutes=20))
    status, answer = send(daemon, old, body)
    assert (status, answer["__type"]) == (400, "InvalidSignatureException") and "expired" in answer["message"], answer
    # A valid signature replayed with another body.
    good = signed_headers(daemon, PRODUCER, body, "PutRecord")
    other = body.replace(b64(b"sneaky").encode(), b64(b"changed").encode())
    status, answer = send(daemon, good, other)
    assert (status, answer["__type"]) == (400, "InvalidSignatureException"), answer
    # A signature without its parts.
    status, answer = send(daemon, dict(good, Authorization="AWS4-HMAC-SHA256 Credential=AKIDPRODUCER/x"), body)
    assert (status, answer["__type"]) == (400, "IncompleteSignature"), answer
    # The same signed request as sent: accepted, and the only record delivered.
    status, answer = send(daemon, good, body)
    assert status == 200 and answer["RecordId"], answer
    daemon.stop_ok()
    assert sorted(read_delivered(tmp_path / "orders-eu", json_lines=False).records) == [b"sneaky"]


def test_a_listener_beyond_loopback_needs_keys_or_an_explicit_opt_out(tmp_path):
    cfg = write_config(tmp_path / "s.toml", native_config("s", tmp_path / "out"))
    # Refused before it binds anything (so 0.0.0.0 is never opened here).
    p = run_sluice(["run", "--config", str(cfg), "--listen", f"0.0.0.0:{free_port()}",
                    "--state-dir", str(tmp_path / "state")], timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2 and "without request signing" in err and "--allow-unauthenticated" in err, err
    bad = tmp_path / "keys.toml"
    bad.write_text('[[key]]\naccess_key_id = "AKID"\nsecret_access_key = "short"\n')
    p = run_sluice(["run", "--config", str(cfg), "--auth-file", str(bad), "--state-dir", str(tmp_path / "state")], timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2 and str(bad) in err and "at least 16 characters" in err, err


def test_sluice_put_signs_with_the_environment_credentials(daemon, tmp_path, monkeypatch):
    """`sluice put` signs as an SDK does when AWS credentials are in its environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", PRODUCER[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PRODUCER[1])
    p = run_sluice(["put", "--endpoint", daemon.endpoint, "--stream", "orders-eu", "-"], input=b"a\nb\nc\n", timeout=60)
    assert p.returncode == 0 and "sent 3 records" in p.stderr.decode(), p.stderr
    # A key without the stream, and no credentials at all: refused, nothing sent.
    p = run_sluice(["put", "--endpoint", daemon.endpoint, "--stream", "billing", "-"], input=b"x\n", timeout=60)
    assert p.returncode != 0 and "AccessDeniedException" in p.stderr.decode(), p.stderr
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    p = run_sluice(["put", "--endpoint", daemon.endpoint, "--stream", "orders-eu", "-"], input=b"y\n", timeout=60)
    assert p.returncode != 0 and "MissingAuthenticationToken" in p.stderr.decode(), p.stderr
    daemon.stop_ok()
    assert sorted(read_delivered(tmp_path / "orders-eu", json_lines=False).records) == [b"a", b"b", b"c"]
    assert not read_delivered(tmp_path / "billing", json_lines=False).records
