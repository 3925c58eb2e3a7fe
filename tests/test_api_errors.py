"""Direct PUT API: every limit and malformed request gets the AWS JSON 1.1 error a real
Firehose returns, and never costs an acknowledged record (good records sent before and
after each bad request are delivered exactly once; the rejected ones never)."""

from __future__ import annotations

import json

import botocore.exceptions
import pytest

from conftest import (
    assert_exactly_once,
    b64,
    firehose_client,
    json_records,
    native_config,
    put_batch_ok,
    put_record_ok,
    raw_call,
    read_delivered,
    write_config,
)

T = "Firehose_20150804."
MAX_RECORD = 1_024_000
MAX_BATCH_BYTES = 4_194_304
STREAM = "api"


class Api:
    def __init__(self, daemon, out):
        self.d = daemon
        self.out = out
        self.port = daemon.port
        self.client = firehose_client(daemon.endpoint)
        self.expected: list[bytes] = []
        self.n = 0

    def good(self, n: int = 3) -> None:
        recs = json_records("good", range(self.n, self.n + n))
        self.n += n
        put_batch_ok(self.client, STREAM, recs)
        self.expected += recs

    def accepted(self, records: list[bytes]) -> None:
        self.expected += records

    def finish(self) -> None:
        self.d.stop_ok()
        got = read_delivered(self.out, stream=STREAM, json_lines=False)
        assert_exactly_once(got.records, self.expected)


@pytest.fixture
def api(tmp_path, start_daemon):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "api.toml", native_config(STREAM, out, size_bytes=16 << 20, interval_secs=60))
    a = Api(start_daemon(cfg), out)
    a.good()
    return a


def assert_error(resp, status: int, types) -> None:
    code, headers, body = resp
    if isinstance(types, str):
        types = {types}
    assert code == status, f"HTTP {code}, expected {status}: {body!r}"[:500]
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"[:300]
    t = body.get("__type")
    assert t in types, f"__type {t!r}, expected one of {sorted(types)}: {body!r}"[:500]
    msg = body.get("message", body.get("Message"))
    assert isinstance(msg, str) and msg, f"error without a message: {body!r}"
    if "x-amzn-errortype" in headers:
        assert headers["x-amzn-errortype"].split(":")[0] == t, headers


def put_record_body(data: bytes | str, stream: str = STREAM) -> str:
    return json.dumps({"DeliveryStreamName": stream, "Record": {"Data": data if isinstance(data, str) else b64(data)}})


def put_batch_body(records: list[bytes], stream: str = STREAM) -> str:
    return json.dumps({"DeliveryStreamName": stream, "Records": [{"Data": b64(r)} for r in records]})


def padded(tag: str, size: int) -> bytes:
    """A record of exactly `size` bytes."""
    head = f"{tag}:".encode()
    return head + b"z" * (size - len(head))


# --- size limits -------------------------------------------------------------------------


def test_record_over_1000_kib_rejected_exact_limit_accepted(api):
    assert_error(raw_call(api.port, T + "PutRecord", put_record_body(padded("big1", MAX_RECORD + 1))), 400, "InvalidArgumentException")
    api.good()
    ok = padded("max1", MAX_RECORD)
    code, _, body = raw_call(api.port, T + "PutRecord", put_record_body(ok))
    assert code == 200, body
    assert isinstance(body.get("RecordId"), str) and body["RecordId"]
    api.accepted([ok])
    # The same through the SDK.
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        api.client.put_record(DeliveryStreamName=STREAM, Record={"Data": padded("big2", MAX_RECORD + 1)})
    assert ei.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    ok2 = padded("max2", MAX_RECORD)
    put_record_ok(api.client, STREAM, ok2)
    api.accepted([ok2])
    api.good()
    api.finish()


def test_batch_with_oversize_record_rejected_whole(api):
    recs = [b"in-bad-batch-1", padded("big", MAX_RECORD + 1), b"in-bad-batch-2"]
    assert_error(raw_call(api.port, T + "PutRecordBatch", put_batch_body(recs)), 400, "InvalidArgumentException")
    ok = [padded("maxb", MAX_RECORD), b"small"]
    put_batch_ok(api.client, STREAM, ok)
    api.accepted(ok)
    api.good()
    api.finish()


def test_501_records_rejected_500_accepted(api):
    assert_error(
        raw_call(api.port, T + "PutRecordBatch", put_batch_body([f"r501-{i}".encode() for i in range(501)])),
        400,
        "InvalidArgumentException",
    )
    api.good()
    ok = [f"r500-{i}".encode() for i in range(500)]
    code, _, body = raw_call(api.port, T + "PutRecordBatch", put_batch_body(ok))
    assert code == 200, body
    assert body["FailedPutCount"] == 0 and len(body["RequestResponses"]) == 500
    assert len({r["RecordId"] for r in body["RequestResponses"]}) == 500
    api.accepted(ok)
    api.finish()


def test_batch_over_4_mib_rejected_exact_4_mib_accepted(api):
    # 4 records of 1,024,000 bytes + one of 98,305 = 4 MiB + 1 byte.
    over = [padded(f"o{i}", MAX_RECORD) for i in range(4)] + [padded("o4", MAX_BATCH_BYTES - 4 * MAX_RECORD + 1)]
    assert sum(map(len, over)) == MAX_BATCH_BYTES + 1
    assert_error(raw_call(api.port, T + "PutRecordBatch", put_batch_body(over)), 400, "InvalidArgumentException")
    # 5 records of 1,000,000 bytes: well over.
    assert_error(
        raw_call(api.port, T + "PutRecordBatch", put_batch_body([padded(f"m{i}", 1_000_000) for i in range(5)])),
        400,
        "InvalidArgumentException",
    )
    api.good()
    exact = [padded(f"e{i}", MAX_RECORD) for i in range(4)] + [padded("e4", MAX_BATCH_BYTES - 4 * MAX_RECORD)]
    assert sum(map(len, exact)) == MAX_BATCH_BYTES
    put_batch_ok(api.client, STREAM, exact)
    api.accepted(exact)
    api.good()
    api.finish()


def test_empty_records_list(api):
    # The service model says Records has 1..500 members: 0 is a limit violation like 501.
    assert_error(
        raw_call(api.port, T + "PutRecordBatch", json.dumps({"DeliveryStreamName": STREAM, "Records": []})),
        400,
        "InvalidArgumentException",
    )
    api.good()
    api.finish()


# --- unknown stream / operation ----------------------------------------------------------


@pytest.mark.parametrize(
    "target,body",
    [
        ("PutRecord", put_record_body(b"x", stream="nope")),
        ("PutRecordBatch", put_batch_body([b"x"], stream="nope")),
        ("DescribeDeliveryStream", json.dumps({"DeliveryStreamName": "nope"})),
    ],
)
def test_unknown_stream(api, target, body):
    assert_error(raw_call(api.port, T + target, body), 400, "ResourceNotFoundException")
    api.good()
    api.finish()


def test_unknown_stream_sdk(api):
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        api.client.put_record_batch(DeliveryStreamName="nope", Records=[{"Data": b"x"}])
    assert ei.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    api.good()
    api.finish()


@pytest.mark.parametrize(
    "target", [T + "NoSuchOperation", "Kinesis_20131202.PutRecord", "Firehose_20150804", T + "putrecord", None]
)
def test_unknown_target(api, target):
    assert_error(raw_call(api.port, target, put_record_body(b"never-delivered")), 400, "UnknownOperationException")
    api.good()
    api.finish()


# --- malformed requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "target,body",
    [
        ("PutRecord", '{"DeliveryStreamName": "api", "Record": {"Data": "aGVsbG8="'),  # truncated
        ("PutRecord", "not json at all"),
        ("PutRecordBatch", '{"DeliveryStreamName": "api", "Records": [{"Data": "aGVsbG8="},]}'),  # trailing comma
        ("PutRecord", put_record_body("not base64!!")),  # bad base64
        ("PutRecordBatch", json.dumps({"DeliveryStreamName": STREAM, "Records": [{"Data": b64(b"fine")}, {"Data": "%%%"}]})),
    ],
    ids=["truncated", "not-json", "trailing-comma", "bad-base64", "bad-base64-in-batch"],
)
def test_malformed_body(api, target, body):
    assert_error(raw_call(api.port, T + target, body), 400, "SerializationException")
    api.good()
    api.finish()


@pytest.mark.parametrize(
    "target,body",
    [
        ("PutRecord", {"Record": {"Data": b64(b"x")}}),
        ("PutRecord", {"DeliveryStreamName": STREAM}),
        ("PutRecord", {"DeliveryStreamName": STREAM, "Record": {}}),
        ("PutRecordBatch", {"Records": [{"Data": b64(b"x")}]}),
        ("PutRecordBatch", {"DeliveryStreamName": STREAM}),
        ("PutRecordBatch", {"DeliveryStreamName": STREAM, "Records": [{"Data": b64(b"x")}, {}]}),
        ("DescribeDeliveryStream", {}),
    ],
    ids=[
        "put-no-stream",
        "put-no-record",
        "put-no-data",
        "batch-no-stream",
        "batch-no-records",
        "batch-record-no-data",
        "describe-no-stream",
    ],
)
def test_missing_required_field(api, target, body):
    assert_error(raw_call(api.port, T + target, json.dumps(body)), 400, "ValidationException")
    api.good()
    api.finish()


def test_body_over_any_batch_limit(api):
    """A 12 MB body (9 x 1,000,000-byte records): refused with InvalidArgumentException, or
    the connection is cut while the client is still sending; the daemon keeps serving."""
    body = put_batch_body([padded(f"huge{i}", 1_000_000) for i in range(9)])
    try:
        resp = raw_call(api.port, T + "PutRecordBatch", body)
    except (ConnectionError, OSError):
        pass
    else:
        assert_error(resp, 400, "InvalidArgumentException")
    api.good()
    api.finish()


def test_wrong_types_are_client_errors(api):
    for target, body in [
        ("PutRecord", {"DeliveryStreamName": STREAM, "Record": {"Data": 12}}),
        ("PutRecordBatch", {"DeliveryStreamName": STREAM, "Records": {"Data": b64(b"x")}}),
        ("PutRecord", {"DeliveryStreamName": 7, "Record": {"Data": b64(b"x")}}),
    ]:
        # Valid JSON, but not of the operation's shape: a deserialization error.
        assert_error(raw_call(api.port, T + target, json.dumps(body)), 400, "SerializationException")
    api.good()
    api.finish()


# --- the happy path on the raw wire --------------------------------------------------------


def test_raw_requests_with_amz_json_content_type(api):
    code, headers, body = raw_call(api.port, T + "PutRecord", put_record_body(b"raw-one"))
    assert code == 200, body
    assert isinstance(body["RecordId"], str) and body["RecordId"]
    assert body.get("Encrypted", False) is False
    assert "json" in headers.get("content-type", ""), headers
    api.accepted([b"raw-one"])
    code, _, body = raw_call(api.port, T + "PutRecordBatch", put_batch_body([b"raw-two", b"raw-three", b""]))
    assert code == 200, body
    assert body["FailedPutCount"] == 0
    assert len(body["RequestResponses"]) == 3 and all(r.get("RecordId") for r in body["RequestResponses"])
    api.accepted([b"raw-two", b"raw-three", b""])
    code, _, body = raw_call(api.port, T + "ListDeliveryStreams", "{}")
    assert code == 200 and STREAM in body["DeliveryStreamNames"], body
    api.good()
    api.finish()


# --- backpressure: the WAL cap -------------------------------------------------------------


def test_wal_cap_answers_service_unavailable(tmp_path, start_daemon):
    """With max_wal_bytes = 5 MiB and nothing delivered (long interval), puts beyond the cap
    get ServiceUnavailableException (503, or per-record ErrorCode on a 200) and are not
    delivered; everything acknowledged is delivered on shutdown."""
    cap = 5 << 20
    out = tmp_path / "out"
    cfg = write_config(
        tmp_path / "api.toml",
        native_config(STREAM, out, size_bytes=128 << 20, interval_secs=900, max_wal_bytes=cap),
    )
    d = start_daemon(cfg)
    client = firehose_client(d.endpoint)
    acked: list[bytes] = []
    rejected: list[bytes] = []
    saw_503 = False
    for i in range(75):  # 75 x ~200 KB = 15 MB, 3x the cap
        batch = [padded(f"w{i}-{j}", 2000) for j in range(100)]
        try:
            resp = client.put_record_batch(DeliveryStreamName=STREAM, Records=[{"Data": r} for r in batch])
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "ServiceUnavailableException", e.response
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            rejected += batch
            saw_503 = True
            break
        for rec, r in zip(batch, resp["RequestResponses"]):
            if r.get("RecordId"):
                acked.append(rec)
            else:
                assert r.get("ErrorCode") == "ServiceUnavailableException", r
                rejected.append(rec)
                saw_503 = True
        if saw_503:
            break
    assert saw_503, f"no ServiceUnavailableException after {len(acked) * 2000} bytes with max_wal_bytes={cap}"
    assert len(acked) * 2000 <= cap, f"acknowledged {len(acked) * 2000} bytes, over the {cap} byte WAL cap"
    assert len(acked) * 2000 >= cap // 2, f"only {len(acked) * 2000} bytes accepted under a {cap} byte cap"
    # A PutRecord bigger than the headroom left (< one 200 KB batch) is refused too.
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        client.put_record(DeliveryStreamName=STREAM, Record={"Data": padded("refused", 1_000_000)})
    assert ei.value.response["Error"]["Code"] == "ServiceUnavailableException"
    d.stop_ok()
    got = read_delivered(out, stream=STREAM, json_lines=False)
    assert_exactly_once(got.records, acked)
