"""`sluice import`: a Firehose definition becomes a native TOML config that behaves the same.

The input is a realistic `aws firehose describe-delivery-stream` output (dynamic partitioning
with a jq MetadataExtraction query, Parquet conversion with a Glue table, a Lambda processor,
S3 backup, custom prefixes), checked against botocore's own `DescribeDeliveryStreamOutput`
shape first, so the test feeds sluice what AWS really prints. The imported TOML must pass
`sluice validate`, carry the comments that explain the mapping, and deliver, from the same
records, the same object keys and contents as the equivalent create-delivery-stream input
run directly (Parquet read back with pyarrow, backups with gzip, error documents as JSON).
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path

import boto3
import pyarrow.parquet as pq
from botocore.session import get_session
from botocore.validate import ParamValidator

from conftest import COMPONENTS, put_batch_ok, run_sluice, wasm_component, write_config
from s3_support import moto_server, reset_moto  # noqa: F401  (fixture)

ROLE = "arn:aws:iam::123456789012:role/firehose-orders"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:identity:live"
COLUMNS = [
    {"Name": "id", "Type": "bigint"},
    {"Name": "customer", "Type": "string"},
    {"Name": "note", "Type": "string"},
]
# <name>-1-yyyy-MM-dd-HH-mm-ss-<uuid><ext>: the part of an object name that is new each run.
NAME_TAIL = re.compile(r"-1-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}")


def destination(out: Path) -> dict:
    """The ExtendedS3 destination, as both the description and the create input spell it."""
    return {
        "RoleARN": ROLE,
        "BucketARN": out.as_uri(),
        "Prefix": "orders/customer=!{partitionKeyFromQuery:customer}/!{timestamp:yyyy/MM/dd}/",
        "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
        "CompressionFormat": "UNCOMPRESSED",
        "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
        "CloudWatchLoggingOptions": {
            "Enabled": True,
            "LogGroupName": "/aws/kinesisfirehose/orders",
            "LogStreamName": "DestinationDelivery",
        },
        "ProcessingConfiguration": {
            "Enabled": True,
            "Processors": [
                {
                    "Type": "Lambda",
                    "Parameters": [
                        {"ParameterName": "LambdaArn", "ParameterValue": LAMBDA},
                        {"ParameterName": "NumberOfRetries", "ParameterValue": "2"},
                        {"ParameterName": "RoleArn", "ParameterValue": ROLE},
                        {"ParameterName": "BufferSizeInMBs", "ParameterValue": "1"},
                        {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "60"},
                    ],
                },
                {
                    "Type": "MetadataExtraction",
                    "Parameters": [
                        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer: .customer}"},
                        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
                    ],
                },
            ],
        },
        "S3BackupMode": "Enabled",
        "DataFormatConversionConfiguration": {
            "Enabled": True,
            "SchemaConfiguration": {
                "RoleARN": ROLE,
                "DatabaseName": "shop",
                "TableName": "orders",
                "Region": "us-east-1",
                "VersionId": "LATEST",
            },
            "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {"CaseInsensitive": True}}},
            "OutputFormatConfiguration": {
                "Serializer": {"ParquetSerDe": {"Compression": "SNAPPY", "WriterVersion": "V1"}}
            },
        },
        "DynamicPartitioningConfiguration": {"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}},
        "FileExtension": ".parquet",
        "CustomTimeZone": "UTC",
    }


def backup(out: Path) -> dict:
    return {
        "RoleARN": ROLE,
        "BucketARN": out.as_uri(),
        "Prefix": "backup/!{timestamp:yyyy/MM/dd}/",
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
        "CompressionFormat": "GZIP",
        "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
    }


def describe_output(out: Path) -> dict:
    """What `aws firehose describe-delivery-stream --delivery-stream-name orders` prints."""
    d = destination(out)
    d["S3BackupDescription"] = backup(out)
    legacy = {k: d[k] for k in ("RoleARN", "BucketARN", "Prefix", "ErrorOutputPrefix", "BufferingHints",
                                "CompressionFormat", "EncryptionConfiguration", "CloudWatchLoggingOptions")}
    return {
        "DeliveryStreamDescription": {
            "DeliveryStreamName": "orders",
            "DeliveryStreamARN": "arn:aws:firehose:us-east-1:123456789012:deliverystream/orders",
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamEncryptionConfiguration": {"Status": "DISABLED"},
            "DeliveryStreamType": "DirectPut",
            "VersionId": "3",
            "CreateTimestamp": "2025-03-04T10:11:12.345000+00:00",
            "LastUpdateTimestamp": "2025-06-01T08:00:00+00:00",
            "Source": {"DirectPutSourceDescription": {"ThroughputHintInMBs": 5}},
            "Destinations": [
                {
                    "DestinationId": "destinationId-000000000001",
                    "S3DestinationDescription": legacy,
                    "ExtendedS3DestinationDescription": d,
                }
            ],
            "HasMoreDestinations": False,
        }
    }


def create_input(out: Path) -> dict:
    """The same stream as a create-delivery-stream input."""
    d = destination(out)
    d["S3BackupConfiguration"] = backup(out)
    return {
        "DeliveryStreamName": "orders",
        "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": d,
        "Tags": [{"Key": "team", "Value": "shop"}],
    }


def botocore_errors(doc: dict, shape_name: str) -> str | None:
    model = get_session().get_service_model("firehose")
    report = ParamValidator().validate(doc, model.shape_for(shape_name))
    return report.generate_report() if report.has_errors() else None


def normalized(key: str) -> str:
    return NAME_TAIL.sub("-1-<time>-<uuid>", key)


def delivered(out: Path) -> dict[str, object]:
    """Every visible object, by its key with the run-specific name part replaced, decoded:
    Parquet rows, backup records, error documents (without their run-specific times)."""
    got: dict[str, object] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        key = path.relative_to(out).as_posix()
        if any(part.startswith(".") for part in key.split("/")):
            continue  # staging and claim files
        if key.endswith(".parquet"):
            value: object = sorted(pq.read_table(path).to_pylist(), key=lambda r: r["id"])
        elif key.startswith("backup/"):
            value = sorted(gzip.decompress(path.read_bytes()).split(b"\n"))
        else:
            docs = [json.loads(line) for line in path.read_text().splitlines()]
            value = sorted((d["rawData"], d["errorCode"]) for d in docs)
        norm = normalized(key)
        assert norm not in got, f"two objects normalize to {norm}"
        got[norm] = value
    return got


def test_describe_output_imports_to_toml_that_behaves_the_same(start_daemon, tmp_path, moto_server, monkeypatch):  # noqa: F811
    identity = wasm_component("identity")
    assert identity.parent == COMPONENTS
    out_json, out_toml = tmp_path / "out-json", tmp_path / "out-toml"
    describe = describe_output(out_toml)
    create = create_input(out_json)
    # What we feed sluice is what AWS prints and takes.
    assert botocore_errors(describe, "DescribeDeliveryStreamOutput") is None, botocore_errors(
        describe, "DescribeDeliveryStreamOutput")
    assert botocore_errors(create, "CreateDeliveryStreamInput") is None, botocore_errors(
        create, "CreateDeliveryStreamInput")
    # A check that can fail: the shape does refuse a wrong member.
    broken = copy.deepcopy(describe)
    broken["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]["S3BackupConfiguration"] = {}
    assert "Unknown parameter" in (botocore_errors(broken, "DescribeDeliveryStreamOutput") or "")

    describe_path = write_config(tmp_path / "describe.json", describe)
    create_path = write_config(tmp_path / "create.json", create)
    toml_path = tmp_path / "orders.toml"
    r = run_sluice(["import", str(describe_path), "-o", str(toml_path)])
    assert r.returncode == 0, r.stderr.decode()
    toml = toml_path.read_text()
    comments = toml.replace("\n# ", " ")
    for says in [
        LAMBDA,
        'module = "identity.wasm"',
        "<transforms dir>/identity.wasm",
        "--transforms-dir",
        "standard AWS credential chain",
        f"RoleARN {ROLE} dropped",
        "Glue Data Catalog when the stream starts",
        "[destination.format.glue]",
        "CloudWatchLoggingOptions dropped",
        'VersionId "3"',
        "DeliveryStreamARN",
    ]:
        assert says in comments, f"{says!r} missing from:\n{toml}"

    # Stdin gives the same file; an existing output is kept unless --force.
    r = run_sluice(["import", "-"], input=describe_path.read_bytes())
    unwrap = lambda text: text.replace("\n# ", " ")  # noqa: E731 - wrapping follows the name's length
    assert r.returncode == 0, r.stderr.decode()
    assert unwrap(r.stdout.decode()).replace("<stdin>", "describe.json") == unwrap(toml)
    r = run_sluice(["import", str(create_path), "-o", str(toml_path)])
    assert r.returncode == 2 and "exists" in r.stderr.decode() and toml_path.read_text() == toml
    r = run_sluice(["import", str(create_path), "-o", str(toml_path), "--force"])
    assert r.returncode == 0, r.stderr.decode()
    assert "create-delivery-stream input" in toml_path.read_text()
    toml_path.write_text(toml)

    # An unsupported feature is refused by name, as `sluice validate` reports errors.
    unsupported = copy.deepcopy(describe)
    procs = unsupported["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"][
        "ProcessingConfiguration"]["Processors"]
    procs.append({"Type": "Decompression", "Parameters": []})
    r = run_sluice(["import", "-"], input=json.dumps(unsupported).encode())
    err = r.stderr.decode()
    assert r.returncode == 2 and "error: <stdin>: unsupported Firehose option(s)" in err and "Decompression" in err, err

    transforms = ["--transforms-dir", str(COMPONENTS)]
    r = run_sluice(["validate", "--config", str(toml_path), *transforms])
    assert r.returncode == 0 and "ok: delivery stream `orders`" in r.stdout.decode(), r.stderr.decode()

    # Behaviour: the same records through the JSON and through the imported TOML.
    reset_moto(moto_server)
    glue = boto3.client("glue", endpoint_url=moto_server, region_name="us-east-1")
    glue.create_database(DatabaseInput={"Name": "shop"})
    glue.create_table(DatabaseName="shop", TableInput={"Name": "orders", "StorageDescriptor": {"Columns": COLUMNS}})
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", moto_server)
    records = [json.dumps({"id": i, "customer": "ab"[i % 2], "note": f"n{i}"}).encode() for i in range(20)]
    records += [b'{"id": 100, "note": "no customer"}', b"not json"]
    for name, config in [("json", create_path), ("toml", toml_path)]:
        daemon = start_daemon(config, state_dir=tmp_path / f"state-{name}", log_name=name, extra_args=transforms)
        put_batch_ok(daemon.client(), "orders", records)
        daemon.stop_ok()
    from_json, from_toml = delivered(out_json), delivered(out_toml)
    assert from_toml == from_json
    # Guard against both being empty or missing a part.
    kinds = sorted({k.split("/")[0] for k in from_json})
    assert kinds == ["backup", "errors", "orders"], sorted(from_json)
    parquet = {k: v for k, v in from_json.items() if k.endswith(".parquet")}
    assert sorted(k.split("/")[1] for k in parquet) == ["customer=a", "customer=b"], sorted(parquet)
    assert sum(len(v) for v in parquet.values()) == 20
