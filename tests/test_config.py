"""`sluice validate`: bad configs are refused naming the option; the shipped ones pass."""

from __future__ import annotations

import json
import re

import pytest

from conftest import REPO, firehose_config, native_config, run_sluice, to_toml, write_config


def validate(path) -> tuple[int, str]:
    p = run_sluice(["validate", "--config", str(path)], timeout=30)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def nat(tmp_path, **kw) -> dict:
    return native_config("v", tmp_path / "out", **kw)


def with_(doc: dict, path: str, value) -> dict:
    """Set a dotted path in a nested dict (creating tables)."""
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    t = doc
    for p in parents:
        t = t.setdefault(p, {})
    t[last] = value
    return doc


def test_valid_native_and_firehose_configs(tmp_path, sluice_bin):
    for doc in [
        nat(tmp_path),
        nat(tmp_path, compression="gzip", prefix="a/!{timestamp:yyyy/MM}/", error_output_prefix="e/!{firehose:error-output-type}/"),
        nat(tmp_path, compression="zstd", time_zone="Asia/Tokyo", file_extension=".log.zst", size_bytes=128 << 20, interval_secs=900),
        nat(tmp_path, size_bytes=1 << 20, interval_secs=0, max_wal_bytes=64 << 20),
    ]:
        rc, err = validate(write_config(tmp_path / "ok.toml", doc))
        assert rc == 0, f"valid config refused: {to_toml(doc)}\nstderr: {err}"
    rc, err = validate(write_config(tmp_path / "ok.json", firehose_config("v", tmp_path / "out", compression="GZIP")))
    assert rc == 0, err


# (id, config doc builder, substring that must appear in stderr)
NATIVE_BAD = [
    ("size_bytes-0", lambda t: nat(t, size_bytes=0), "size_bytes"),
    ("size_bytes-under-1MiB", lambda t: nat(t, size_bytes=(1 << 20) - 1), "size_bytes"),
    ("size_bytes-over-128MiB", lambda t: nat(t, size_bytes=(128 << 20) + 1), "size_bytes"),
    ("interval_secs-901", lambda t: nat(t, interval_secs=901), "interval_secs"),
    ("interval_secs-negative", lambda t: nat(t, interval_secs=-1), "interval_secs"),
    ("bad-compression", lambda t: nat(t, compression="brotli"), "compression"),
    ("unknown-top-field", lambda t: with_(nat(t), "colour", "blue"), "colour"),
    ("unknown-destination-field", lambda t: with_(nat(t), "destination.bucket_name", "x"), "bucket_name"),
    ("unknown-buffering-field", lambda t: with_(nat(t), "destination.buffering.size_mb", 5), "size_mb"),
    ("bad-time_zone", lambda t: nat(t, time_zone="Mars/Olympus_Mons"), "time_zone"),
    ("bad-prefix-namespace", lambda t: nat(t, prefix="x/!{foo:bar}/"), "prefix"),
    ("unclosed-prefix-expression", lambda t: nat(t, prefix="x/!{timestamp:yyyy/"), "prefix"),
    (
        "error-output-type-in-prefix",
        lambda t: nat(t, prefix="x/!{firehose:error-output-type}/", error_output_prefix="e/!{firehose:error-output-type}/"),
        "prefix",
    ),
    (
        "error_output_prefix-without-error-output-type",
        lambda t: nat(t, prefix="x/!{timestamp:yyyy}/", error_output_prefix="errors/!{timestamp:yyyy}/"),
        "error_output_prefix",
    ),
    ("bad-file_extension", lambda t: nat(t, file_extension="json"), "file_extension"),
    ("bad-source-type", lambda t: with_(nat(t), "source.type", "carrier_pigeon"), "type"),
    ("bad-destination-type", lambda t: with_(nat(t), "destination.type", "ftp"), "type"),
    ("missing-name", lambda t: {k: v for k, v in nat(t).items() if k != "name"}, "name"),
    ("bad-name", lambda t: with_(nat(t), "name", "has space"), "name"),
    ("append_delimiter-not-bool", lambda t: with_(nat(t), "destination.append_delimiter", "yes"), "append_delimiter"),
    # Names and prefixes that would leave the output directory (or reach into staging).
    ("name-dot", lambda t: with_(nat(t), "name", "."), "invalid option `name`: \".\" is not allowed"),
    ("name-dotdot", lambda t: with_(nat(t), "name", ".."), "invalid option `name`: \"..\" is not allowed"),
    ("name-65-chars", lambda t: with_(nat(t), "name", "x" * 65), "invalid option `name`"),
    ("name-slash", lambda t: with_(nat(t), "name", "a/b"), "invalid option `name`"),
    ("prefix-parent", lambda t: nat(t, prefix="../"), "invalid option `destination.prefix`: it evaluates to e.g."),
    ("prefix-climbs-out", lambda t: nat(t, prefix="a/../../x/"), "has a `..` path segment"),
    ("prefix-absolute", lambda t: nat(t, prefix="/etc/x/"), "starts with `/`"),
    ("prefix-dot-segment", lambda t: nat(t, prefix="a/./b/"), "has a `.` path segment"),
    ("prefix-backslash", lambda t: nat(t, prefix="a\\..\\b/"), "contains `\\`"),
    ("prefix-staging", lambda t: nat(t, prefix=".sluice-staging/v/"), "staging directory"),
    ("prefix-quoted-dots", lambda t: nat(t, prefix="a/!{timestamp:'..'}/", error_output_prefix="e/!{firehose:error-output-type}/"), "has a `..` path segment"),
    (
        "error_output_prefix-parent",
        lambda t: nat(t, error_output_prefix="../errors/"),
        "invalid option `destination.error_output_prefix`: it evaluates to e.g.",
    ),
    (
        "backup-prefix-absolute",
        lambda t: with_(nat(t), "destination.backup.prefix", "/raw/"),
        "invalid option `destination.backup.prefix`: it evaluates to e.g.",
    ),
]


@pytest.mark.parametrize("build,needle", [(b, n) for _, b, n in NATIVE_BAD], ids=[i for i, _, _ in NATIVE_BAD])
def test_invalid_native(tmp_path, sluice_bin, build, needle):
    doc = build(tmp_path)
    path = write_config(tmp_path / "bad.toml", doc)
    rc, err = validate(path)
    assert rc != 0, f"invalid config accepted:\n{path.read_text()}"
    assert needle in err, f"stderr does not name {needle!r}:\n{err}"


def fh(tmp_path, **dest) -> dict:
    return firehose_config("v", tmp_path / "out", **dest)


def fh_dest(tmp_path, key, value) -> dict:
    doc = fh(tmp_path)
    doc["ExtendedS3DestinationConfiguration"][key] = value
    return doc


FIREHOSE_BAD = [
    (
        "DataFormatConversionConfiguration",
        lambda t: fh_dest(t, "DataFormatConversionConfiguration", {"Enabled": True, "InputFormatConfiguration": {}}),
        "DataFormatConversionConfiguration",
    ),
    ("SizeInMBs-0", lambda t: fh_dest(t, "BufferingHints", {"SizeInMBs": 0, "IntervalInSeconds": 60}), "SizeInMBs"),
    ("SizeInMBs-129", lambda t: fh_dest(t, "BufferingHints", {"SizeInMBs": 129, "IntervalInSeconds": 60}), "SizeInMBs"),
    (
        "IntervalInSeconds-901",
        lambda t: fh_dest(t, "BufferingHints", {"SizeInMBs": 5, "IntervalInSeconds": 901}),
        "IntervalInSeconds",
    ),
    ("bad-CompressionFormat", lambda t: fh_dest(t, "CompressionFormat", "LZ4"), "CompressionFormat"),
    ("bad-Prefix", lambda t: fh_dest(t, "Prefix", "p/!{foo:bar}/"), "Prefix"),
    (
        "ErrorOutputPrefix-without-type",
        lambda t: {
            **fh(t),
            "ExtendedS3DestinationConfiguration": {
                **fh(t)["ExtendedS3DestinationConfiguration"],
                "Prefix": "p/!{timestamp:yyyy}/",
                "ErrorOutputPrefix": "e/!{timestamp:yyyy}/",
            },
        },
        "ErrorOutputPrefix",
    ),
    ("bad-CustomTimeZone", lambda t: fh_dest(t, "CustomTimeZone", "Nowhere/Land"), "CustomTimeZone"),
    ("unknown-field", lambda t: fh_dest(t, "BucketNme", "x"), "BucketNme"),
    ("bad-BucketARN", lambda t: fh_dest(t, "BucketARN", "relative/path"), "BucketARN"),
    ("bad-stream-type", lambda t: {**fh(t), "DeliveryStreamType": "Telepathy"}, "DeliveryStreamType"),
    ("DeliveryStreamName-dotdot", lambda t: {**fh(t), "DeliveryStreamName": ".."}, "invalid option `DeliveryStreamName`: \"..\" is not allowed"),
    ("Prefix-parent", lambda t: fh_dest(t, "Prefix", "../"), "invalid option `ExtendedS3DestinationConfiguration.Prefix`: it evaluates"),
    ("Prefix-climbs-out", lambda t: fh_dest(t, "Prefix", "a/../../x/"), "has a `..` path segment"),
    ("Prefix-absolute", lambda t: fh_dest(t, "Prefix", "/etc/x"), "starts with `/`"),
    (
        "ErrorOutputPrefix-absolute",
        lambda t: fh_dest(t, "ErrorOutputPrefix", "/errors/"),
        "invalid option `ExtendedS3DestinationConfiguration.ErrorOutputPrefix`: it evaluates",
    ),
]


@pytest.mark.parametrize("build,needle", [(b, n) for _, b, n in FIREHOSE_BAD], ids=[i for i, _, _ in FIREHOSE_BAD])
def test_invalid_firehose(tmp_path, sluice_bin, build, needle):
    path = write_config(tmp_path / "bad.json", build(tmp_path))
    rc, err = validate(path)
    assert rc != 0, f"invalid config accepted:\n{path.read_text()}"
    assert needle in err, f"stderr does not name {needle!r}:\n{err}"


def test_unparseable_and_missing_files(tmp_path, sluice_bin):
    bad_toml = tmp_path / "broken.toml"
    bad_toml.write_text('name = "x"\n[destination\n')
    rc, err = validate(bad_toml)
    assert rc != 0 and err.strip()
    bad_json = tmp_path / "broken.json"
    bad_json.write_text('{"DeliveryStreamName": ')
    rc, err = validate(bad_json)
    assert rc != 0 and err.strip()
    rc, err = validate(tmp_path / "does-not-exist.toml")
    assert rc != 0 and "does-not-exist.toml" in err


def test_run_refuses_invalid_config(tmp_path, sluice_bin):
    """`sluice run` refuses to start on a bad config (non-zero exit, option named)."""
    path = write_config(tmp_path / "bad.toml", nat(tmp_path, interval_secs=901))
    p = run_sluice(
        ["run", "--config", str(path), "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state")], timeout=30
    )
    assert p.returncode != 0
    assert "interval_secs" in p.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("name", ["config/local.toml", "config/example.toml", "config/firehose-example.json", "config/s3-example.toml", "config/kinesis-parquet-example.toml"])
def test_shipped_configs_validate(sluice_bin, name):
    path = REPO / name
    assert path.exists(), f"{name} is missing from the repository"
    p = run_sluice(["validate", "--config", str(path)], timeout=30, cwd=REPO)
    assert p.returncode == 0, f"{name} does not validate:\n{p.stderr.decode('utf-8', 'replace')}"


def test_errors_name_file_line_column_and_suggestion(tmp_path, sluice_bin):
    """An unknown key is reported at its own line:column with the nearest option, a
    mistyped value at its key, and every such error of the file at once."""
    path = tmp_path / "typo.toml"
    path.write_text(
        'name = "v"\n'
        "[source]\n"
        'type = "direct_put"\n'
        "[destination]\n"
        'type = "local"\n'
        f"path = {json.dumps(str(tmp_path / 'out'))}\n"
        'append_delimiter = "yes"\n'
        "[destination.buffering]\n"
        "size_bytes = 5242880\n"
        "  interval_sec = 60\n"
    )
    rc, err = validate(path)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert lines == [
        f"error: {path}:7:1: invalid option `destination.append_delimiter`: must be true or false, got \"yes\"",
        f"error: {path}:10:3: unknown option `destination.buffering.interval_sec`: did you mean `interval_secs`?",
    ], err


def test_every_error_of_every_file_in_one_run(tmp_path, sluice_bin):
    """Two bad files (TOML and Firehose JSON) and a good one: both errors, one per line,
    for `validate` and for `run`, which refuses to start."""
    good = write_config(tmp_path / "good.toml", nat(tmp_path))
    bad_toml = write_config(tmp_path / "bad.toml", with_(nat(tmp_path), "destination.buffering.intreval_secs", 5))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps(fh_dest(tmp_path, "Prefx", "p/"), indent=2))
    args = ["--config", str(bad_toml), "--config", str(good), "--config", str(bad_json)]
    for command in (["validate"], ["run", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state")]):
        p = run_sluice([*command, *args], timeout=30)
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode == 2, err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 2, err
        assert re.fullmatch(
            rf"error: {re.escape(str(bad_toml))}:\d+:1: unknown option `destination\.buffering\.intreval_secs`: did you mean `interval_secs`\?",
            lines[0],
        ), lines[0]
        assert re.fullmatch(
            rf"error: {re.escape(str(bad_json))}:\d+:\d+: unknown field `Prefx`: did you mean `Prefix`\?", lines[1]
        ), lines[1]


def test_config_from_an_environment_variable(tmp_path, sluice_bin, monkeypatch):
    """`--config env:NAME`: a sidecar's stream config in an environment variable, TOML or
    Firehose JSON; a missing variable and a bad config are refused naming it."""
    monkeypatch.setenv("SLUICE_TEST_TOML", to_toml(nat(tmp_path)))
    monkeypatch.setenv("SLUICE_TEST_JSON", json.dumps(firehose_config("j", tmp_path / "out")))
    p = run_sluice(["validate", "--config", "env:SLUICE_TEST_TOML", "--config", "env:SLUICE_TEST_JSON"], timeout=30)
    assert p.returncode == 0, p.stderr
    monkeypatch.delenv("SLUICE_TEST_JSON")
    rc, err = validate("env:SLUICE_TEST_JSON")
    assert rc == 2 and "env:SLUICE_TEST_JSON" in err and "environment variable SLUICE_TEST_JSON is not set" in err, err
    monkeypatch.setenv("SLUICE_TEST_TOML", to_toml(nat(tmp_path, size_bytes=0)))
    rc, err = validate("env:SLUICE_TEST_TOML")
    assert rc == 2 and "env:SLUICE_TEST_TOML" in err and "size_bytes" in err, err


def test_an_empty_config_directory_is_refused(tmp_path):
    """`--config DIR` with no *.toml or *.json in it (a mount that did not happen, a typo'd
    extension) is an error naming the directory, not a daemon that runs nothing."""
    empty = tmp_path / "configs"
    empty.mkdir()
    (empty / "stream.yaml").write_text("name: x\n")
    rc, err = validate(str(empty))
    assert rc == 2 and str(empty) in err and "holds no stream config" in err, err


# ----------------------------------------------------------------------------------------
# Every field of botocore's Firehose model: known to the parser, accepted or refused by name
# ----------------------------------------------------------------------------------------

def _model_value(shape, depth: int = 0):
    """A value of `shape` built from botocore's model alone: the first enum value, the
    minimum, one list item, the required members of a structure."""
    t = shape.type_name
    if t == "structure":
        return {m: _model_value(shape.members[m], depth + 1) for m in shape.required_members} if depth < 6 else {}
    if t == "list":
        return [_model_value(shape.member, depth + 1)]
    if t == "map":
        return {"k": _model_value(shape.value, depth + 1)}
    if t == "string":
        return shape.enum[0] if shape.enum else "x" * max(1, shape.metadata.get("min", 1))
    if t in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if t == "boolean":
        return True
    if t in ("double", "float"):
        return 1.0
    if t == "timestamp":
        return 0
    raise AssertionError(f"shape type {t}")


def test_every_model_field_is_accepted_or_refused_by_name(tmp_path, sluice_bin):
    """Each member of CreateDeliveryStreamInput, ExtendedS3DestinationConfiguration (and the
    structures inside it) and KinesisStreamSourceConfiguration, set to a value built from
    botocore's model, is either accepted or refused with a message naming it: none is an
    unknown field, none is silently dropped into an error about something else."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("firehose")
    create = model.shape_for("CreateDeliveryStreamInput")
    base = {
        "DeliveryStreamName": "audit",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::123456789012:role/r",
            "BucketARN": f"file://{tmp_path / 'out'}",
        },
    }
    cases: list[tuple[str, dict]] = []

    def case(path: list[str], value, label: str | None = None, **top):
        doc = json.loads(json.dumps(base)) | top
        t = doc
        for p in path[:-1]:
            t = t.setdefault(p, {})
        t[path[-1]] = value
        cases.append((label or ".".join(path), doc))

    es3 = "ExtendedS3DestinationConfiguration"
    for name, member in create.members.items():
        if name not in ("DeliveryStreamName", es3, "KinesisStreamSourceConfiguration"):
            case([name], _model_value(member))
    def nested(path: list[str], shape, value_at) -> None:
        """Each optional member of the structure `shape` at `path`, next to the required
        ones, and so on down (lists: their item)."""
        for inner, inner_shape in shape.members.items():
            if inner in shape.required_members:
                continue
            value = _model_value(shape)
            value[inner] = _model_value(inner_shape)
            case(*value_at(value), f"{'.'.join(path)}.{inner}")
            item = inner_shape.member if inner_shape.type_name == "list" else inner_shape
            if item.type_name == "structure" and len(path) < 6:
                def deeper(v, inner=inner, wrap=inner_shape.type_name == "list", outer=value_at, base=value):
                    b = json.loads(json.dumps(base))
                    b[inner] = [v] if wrap else v
                    return outer(b)
                nested(path + [inner], item, deeper)

    for name, member in create.members[es3].members.items():
        if name in ("RoleARN", "BucketARN"):
            continue
        case([es3, name], _model_value(member))
        item = member.member if member.type_name == "list" else member
        if item.type_name == "structure":
            wrap = member.type_name == "list"
            nested([es3, name], item, lambda v, name=name, wrap=wrap: ([es3, name], [v] if wrap else v))
    ks = create.members["KinesisStreamSourceConfiguration"]
    for name, member in ks.members.items():
        value = {"KinesisStreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"}
        value.setdefault(name, _model_value(member))
        case(["KinesisStreamSourceConfiguration"], value, f"KinesisStreamSourceConfiguration.{name}",
             DeliveryStreamType="KinesisStreamAsSource")

    files = []
    for i, (_, doc) in enumerate(cases):
        path = tmp_path / f"case{i:03}.json"
        doc["DeliveryStreamName"] = f"audit{i}"
        path.write_text(json.dumps(doc))
        files.append(path)
    p = run_sluice(["validate", *sum((["--config", str(f)] for f in files), [])], timeout=60)
    out = p.stderr.decode()
    assert "unknown field" not in out, out
    accepted, refused = [], []
    for (path, _), f in zip(cases, files):
        lines = [line for line in out.splitlines() if f"{f}:" in line and "INFO" not in line]
        if not lines:
            accepted.append(path)
            continue
        # The member itself, or (for a member of a structure inside the destination)
        # that structure, when sluice needs members the model leaves optional.
        parts = path.split(".")
        names = {parts[-1]} | set(parts[1:-1] if parts[0] == es3 else [])
        # Rules that tie a member to another one say so in words.
        if "DynamicPartitioningConfiguration" in parts:
            names.add("dynamic partitioning is enabled")
        named = [line for line in lines if any(n in line for n in names)]
        assert named, f"{path} refused without naming it: {lines}"
        refused.append(path)
    # Sanity: the audit saw the model's breadth, and both outcomes occur.
    assert len(cases) > 80 and accepted and refused, (len(cases), accepted, refused)
    for must in ("ExtendedS3DestinationConfiguration.CompressionFormat",
                 "ExtendedS3DestinationConfiguration.BufferingHints",
                 "ExtendedS3DestinationConfiguration.CloudWatchLoggingOptions.Enabled",
                 "KinesisStreamSourceConfiguration.RoleARN"):
        assert must in accepted, (must, "\n".join(accepted))
    for must in ("RedshiftDestinationConfiguration", "MSKSourceConfiguration"):
        assert must in refused, must
