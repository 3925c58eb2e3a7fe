"""The Firehose control plane, driven by the AWS CLI and boto3 as they come from PyPI with
SigV4 credentials: create a stream, describe it, put records, update its destination (the
current version id, then a stale one), tag, list, restart the daemon and find the stream
again, delete it. Every response body is checked against botocore's own Firehose service
model (members, required members, types), not against our expectations. Streams from
config files are refused for update, delete and tags; bad definitions get `sluice validate`'s
message; an acknowledged create survives kill -9, and so do its records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import botocore.session
import pytest
from botocore.config import Config
from botocore.validate import ParamValidator

from conftest import json_records, native_config, read_delivered, run_sluice, wait_until, write_config
from s3_support import moto_server, read_s3_delivered, s3  # noqa: F401 - fixtures are used by name

KEYS = """
[[key]]
access_key_id = "AKIDADMIN"
secret_access_key = "admin-secret-0123456789"
allow = "all"

[[key]]
access_key_id = "AKIDPRODUCER"
secret_access_key = "producer-secret-0123456789"
"""
ADMIN = ("AKIDADMIN", "admin-secret-0123456789")
PRODUCER = ("AKIDPRODUCER", "producer-secret-0123456789")
MODEL = botocore.session.get_session().get_service_model("firehose")
AWS_CLI = Path(sys.executable).with_name("aws")
CHECKED: set[str] = set()  # operations whose answers were checked against the model


class Checked:
    """A boto3 Firehose client whose every raw response body is validated against the
    operation's output shape in botocore's model (unknown members are errors too)."""

    def __init__(self, endpoint: str, key: tuple[str, str]):
        self.client = boto3.client(
            "firehose", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=key[0], aws_secret_access_key=key[1],
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=120),
        )
        self.client.meta.events.register("before-parse.firehose.*", self._check)

    def _check(self, operation_model, response_dict, **_):
        if response_dict["status_code"] != 200:
            return
        body = json.loads(response_dict["body"] or b"{}")
        check_output(operation_model.name, body)
        CHECKED.add(operation_model.name)

    def __getattr__(self, name):
        return getattr(self.client, name)


def check_output(operation: str, body: dict) -> None:
    shape = MODEL.operation_model(operation).output_shape
    if shape is None:
        assert body == {}, f"{operation} has no output members, got {body}"
        return
    report = ParamValidator().validate(body, shape)
    assert not report.has_errors(), f"{operation} response does not fit botocore's model:\n{report.generate_report()}\n{body}"


def error_code(call) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def aws(endpoint: str, *args: str, key=ADMIN, check=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1],
               AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
    p = subprocess.run([str(AWS_CLI), "firehose", *args, "--endpoint-url", endpoint, "--output", "json"],
                       capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert p.returncode == 0, f"aws firehose {args[0]} failed ({p.returncode}): {p.stderr}"
    return p


def definition(name: str, prefix: str, bucket: str = "file://orders") -> dict:
    """A CreateDeliveryStreamInput as a Firehose user has it (the role is not used by sluice)."""
    return {
        "DeliveryStreamName": name,
        "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::123456789012:role/firehose-orders",
            "BucketARN": bucket,
            "Prefix": prefix,
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
            "CompressionFormat": "UNCOMPRESSED",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [
                {"Type": "AppendDelimiterToRecord", "Parameters": []}]},
        },
        "Tags": [{"Key": "team", "Value": "data"}],
    }


def put(client, stream: str, records: list[bytes]) -> None:
    out = client.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": r} for r in records])
    assert out["FailedPutCount"] == 0


def wait_active(client, stream: str) -> dict:
    def active():
        d = client.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]
        return d if d["DeliveryStreamStatus"] == "ACTIVE" else None
    return wait_until(active, 30, f"{stream} ACTIVE")


@pytest.fixture
def setup(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    keys = tmp_path / "keys.toml"
    keys.write_text(KEYS)
    from_file = write_config(tmp_path / "fromfile.toml", native_config("fromfile", tmp_path / "file-out"))
    args = ["--auth-file", str(keys), "--api-local-root", str(out)]
    return out, from_file, args


def test_create_describe_update_tag_list_restart_delete_with_the_cli_and_boto3(setup, tmp_path, start_daemon):
    out, from_file, args = setup
    state = tmp_path / "state"
    d = start_daemon(from_file, state_dir=state, extra_args=args)
    fh = Checked(d.endpoint, ADMIN)

    # Create with the AWS CLI from the document a Firehose user already has.
    doc = tmp_path / "create.json"
    doc.write_text(json.dumps(definition("orders", "v1/")))
    created = json.loads(aws(d.endpoint, "create-delivery-stream", "--cli-input-json", f"file://{doc}").stdout)
    check_output("CreateDeliveryStream", created)
    assert created["DeliveryStreamARN"].endswith(":deliverystream/orders")
    first = wait_active(fh, "orders")
    assert first["VersionId"] == "1"
    assert first["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "v1/"
    assert first["LastUpdateTimestamp"] >= first["CreateTimestamp"]
    described = json.loads(aws(d.endpoint, "describe-delivery-stream", "--delivery-stream-name", "orders").stdout)
    assert described["DeliveryStreamDescription"]["DeliveryStreamARN"] == created["DeliveryStreamARN"]

    # A producer key may put, not manage.
    producer = Checked(d.endpoint, PRODUCER)
    put(producer, "orders", json_records("v1", range(50)))
    assert error_code(lambda: producer.delete_delivery_stream(DeliveryStreamName="orders"))[0] == "AccessDeniedException"

    # Update: the current version id passes and bumps the version; a stale one is refused.
    update = {"Prefix": "v2/", "BufferingHints": {"SizeInMBs": 2, "IntervalInSeconds": 1}}
    fh.update_destination(DeliveryStreamName="orders", CurrentDeliveryStreamVersionId="1",
                          DestinationId=first["Destinations"][0]["DestinationId"], ExtendedS3DestinationUpdate=update)
    code, message = error_code(lambda: fh.update_destination(
        DeliveryStreamName="orders", CurrentDeliveryStreamVersionId="1",
        DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"Prefix": "v3/"}))
    assert code == "ConcurrentModificationException" and "(2)" in message, message
    second = wait_active(fh, "orders")
    assert second["VersionId"] == "2"
    es3 = second["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert (es3["Prefix"], es3["BufferingHints"]["SizeInMBs"], es3["CompressionFormat"]) == ("v2/", 2, "UNCOMPRESSED")
    assert second["CreateTimestamp"] == first["CreateTimestamp"]
    assert second["LastUpdateTimestamp"] > first["LastUpdateTimestamp"]
    put(producer, "orders", json_records("v2", range(50)))

    # Tags: set at create, added, paged by key, removed.
    fh.tag_delivery_stream(DeliveryStreamName="orders", Tags=[{"Key": "env", "Value": "prod"}, {"Key": "cost", "Value": "7"}])
    page = fh.list_tags_for_delivery_stream(DeliveryStreamName="orders", Limit=2)
    assert ([t["Key"] for t in page["Tags"]], page["HasMoreTags"]) == (["cost", "env"], True)
    page = fh.list_tags_for_delivery_stream(DeliveryStreamName="orders", ExclusiveStartTagKey="env")
    assert (page["Tags"], page["HasMoreTags"]) == ([{"Key": "team", "Value": "data"}], False)
    aws(d.endpoint, "untag-delivery-stream", "--delivery-stream-name", "orders", "--tag-keys", "cost")
    assert error_code(lambda: fh.tag_delivery_stream(
        DeliveryStreamName="orders", Tags=[{"Key": f"k{i}", "Value": ""} for i in range(49)]))[0] == "LimitExceededException"

    # Listing pages by name; config-file streams are listed, and refused for changes.
    names = fh.list_delivery_streams(Limit=1)
    assert (names["DeliveryStreamNames"], names["HasMoreDeliveryStreams"]) == (["fromfile"], True)
    names = fh.list_delivery_streams(ExclusiveStartDeliveryStreamName="fromfile")
    assert (names["DeliveryStreamNames"], names["HasMoreDeliveryStreams"]) == (["orders"], False)
    for call in (
        lambda: fh.delete_delivery_stream(DeliveryStreamName="fromfile"),
        lambda: fh.update_destination(DeliveryStreamName="fromfile", CurrentDeliveryStreamVersionId="1",
                                      DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"Prefix": "x/"}),
        lambda: fh.tag_delivery_stream(DeliveryStreamName="fromfile", Tags=[{"Key": "a", "Value": "b"}]),
    ):
        code, message = error_code(call)
        assert code == "InvalidArgumentException" and "--config file" in message, message

    # /readyz says where each stream is defined.
    ready = json.loads(urllib.request.urlopen(f"{d.endpoint}/readyz", timeout=10).read())
    assert {s["stream"]: s["origin"] for s in ready["streams"]} == {"fromfile": "config-file", "orders": "api"}

    # Restart: the API-created stream comes back as it was left.
    assert d.terminate() == 0
    d = start_daemon(from_file, state_dir=state, extra_args=args, log_name="sluice-2")
    fh = Checked(d.endpoint, ADMIN)
    again = wait_active(fh, "orders")
    assert (again["VersionId"], again["CreateTimestamp"]) == ("2", first["CreateTimestamp"])
    assert again["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "v2/"
    tags = fh.list_tags_for_delivery_stream(DeliveryStreamName="orders")["Tags"]
    assert tags == [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "data"}]

    # Delete with the CLI: it answers once the stream delivered what it held and is gone.
    put(Checked(d.endpoint, PRODUCER), "orders", json_records("v2b", range(10)))
    deleted = aws(d.endpoint, "delete-delivery-stream", "--delivery-stream-name", "orders")
    assert deleted.stdout.strip() in ("", "{}"), deleted.stdout
    assert error_code(lambda: fh.describe_delivery_stream(DeliveryStreamName="orders"))[0] == "ResourceNotFoundException"
    assert not (state / "orders").exists() and not (state / "api-streams" / "orders.json").exists()
    delivered = read_delivered(out / "orders")
    expected = json_records("v1", range(50)) + json_records("v2", range(50)) + json_records("v2b", range(10))
    assert sorted(delivered.records.elements()) == sorted(expected), "every acknowledged record exactly once"
    by_version = {k: {r.split(b'"')[3] for r in recs} for k, recs in delivered.per_key.items()}
    for key, tags_in in by_version.items():
        name = key.rsplit("/", 1)[-1]
        if key.startswith("v1/"):
            assert tags_in == {b"v1"} and name.startswith("orders-1-"), key
        else:
            assert key.startswith("v2/") and tags_in <= {b"v2", b"v2b"} and name.startswith("orders-2-"), key
    # Every boto3 answer was checked against the model (the CLI's by check_output).
    assert {"DescribeDeliveryStream", "UpdateDestination", "TagDeliveryStream", "ListTagsForDeliveryStream",
            "ListDeliveryStreams", "PutRecordBatch"} <= CHECKED
    assert d.terminate() == 0


def test_bad_definitions_are_refused_with_validate_s_message(setup, tmp_path, start_daemon):
    out, from_file, args = setup
    d = start_daemon(from_file, extra_args=args)
    fh = Checked(d.endpoint, ADMIN)
    bad = definition("bad", "p/")
    bad["ExtendedS3DestinationConfiguration"]["BufferingHints"]["SizeInMBs"] = 200
    code, message = error_code(lambda: fh.create_delivery_stream(**bad))
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad))
    validate = run_sluice(["validate", "--config", str(bad_file)])
    assert validate.returncode != 0
    reason = message.split(": ", 1)[1]
    assert code == "InvalidArgumentException" and reason in validate.stderr.decode(), (message, validate.stderr)
    assert "SizeInMBs" in reason

    code, message = error_code(lambda: fh.create_delivery_stream(**definition("away", "p/", "file:///tmp")))
    assert code == "InvalidArgumentException" and "outside --api-local-root" in message, message
    code, message = error_code(lambda: fh.create_delivery_stream(**definition("fromfile", "p/")))
    assert code == "ResourceInUseException" and "already exists" in message, message
    code, _ = error_code(lambda: fh.describe_delivery_stream(DeliveryStreamName="bad"))
    assert code == "ResourceNotFoundException", "a refused create leaves nothing behind"
    fh.create_delivery_stream(**definition("good", "p/"))
    wait_active(fh, "good")
    code, message = error_code(lambda: fh.update_destination(
        DeliveryStreamName="good", CurrentDeliveryStreamVersionId="1", DestinationId="destinationId-000000000001",
        ExtendedS3DestinationUpdate={"CompressionFormat": "RAR"}))
    assert code == "InvalidArgumentException" and "CompressionFormat" in message, message
    assert wait_active(fh, "good")["VersionId"] == "1", "a refused update changes nothing"
    assert d.terminate() == 0


def test_an_acknowledged_create_and_its_records_survive_kill9(setup, tmp_path, start_daemon):
    out, from_file, args = setup
    state = tmp_path / "state"
    d = start_daemon(from_file, state_dir=state, extra_args=args)
    fh = Checked(d.endpoint, ADMIN)
    fh.create_delivery_stream(**definition("orders", "k/"))
    wait_active(fh, "orders")
    records = json_records("k", range(40))
    put(fh, "orders", records)
    d.kill9()
    d = start_daemon(from_file, state_dir=state, extra_args=args, log_name="sluice-2")
    fh = Checked(d.endpoint, ADMIN)
    wait_active(fh, "orders")
    assert d.terminate() == 0
    delivered = read_delivered(out / "orders")
    assert sorted(delivered.records.elements()) == sorted(records)


def test_a_stream_that_cannot_deliver_is_not_deleted_unless_forced(setup, tmp_path, start_daemon, s3, monkeypatch):
    """Into moto's S3 with the bucket missing: a delete cannot deliver, so it is refused and
    the stream keeps its records, which it delivers once the bucket exists; then the delete
    goes through. AllowForceDelete deletes a stuck stream and drops what it held."""
    _, from_file, args = setup
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.url)
    state = tmp_path / "state"
    d = start_daemon(from_file, state_dir=state, extra_args=args + ["--drain-timeout-secs", "3", "--operator-retry-secs", "1"])
    fh = Checked(d.endpoint, ADMIN)
    for name in ("stuck", "forced"):
        fh.create_delivery_stream(**definition(name, f"{name}/", bucket=f"arn:aws:s3:::{name}-bucket"))
    records = json_records("s", range(30))
    for name in ("stuck", "forced"):
        wait_until(lambda: fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
                   ["DeliveryStreamStatus"] != "CREATING", 30, f"{name} recovered")
        put(fh, name, records)

    code, message = error_code(lambda: fh.delete_delivery_stream(DeliveryStreamName="stuck"))
    assert code == "ResourceInUseException" and "AllowForceDelete" in message, message
    assert fh.describe_delivery_stream(DeliveryStreamName="stuck")["DeliveryStreamDescription"]["VersionId"] == "1"
    s3.client.create_bucket(Bucket="stuck-bucket")
    wait_until(lambda: len(read_s3_delivered(s3.client, "stuck-bucket", "stuck/").records) == 30, 60, "held records delivered")
    fh.delete_delivery_stream(DeliveryStreamName="stuck")
    assert sorted(read_s3_delivered(s3.client, "stuck-bucket", "stuck/").records.elements()) == sorted(records)

    fh.delete_delivery_stream(DeliveryStreamName="forced", AllowForceDelete=True)
    assert error_code(lambda: fh.describe_delivery_stream(DeliveryStreamName="forced"))[0] == "ResourceNotFoundException"
    assert not (state / "forced").exists()
    assert "AllowForceDelete: deleting the stream with records it did not deliver" in d.log_path.read_text()
    assert d.terminate() == 0
