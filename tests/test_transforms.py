"""WASM transforms in the running daemon: the example plugins (Rust, Python, JavaScript)
configured both ways (Firehose Lambda ARN, native module path), hostile components
against a daemon that keeps serving, a kill -9 loop with a transform, and `sluice
validate` on broken transforms. Every record is accounted for exactly once: delivered,
dropped on purpose, or in a processing-failed error object with Firehose's document."""

from __future__ import annotations

import base64
import json
import os
import random
from collections import Counter
from pathlib import Path


from conftest import (
    COMPONENTS,
    wait_until,
    wasm_component,
    wasm_fixture,
    firehose_client,
    firehose_config,
    json_records,
    list_objects,
    put_batch_ok,
    read_delivered,
    run_sluice,
    split_records,
    staged_files,
    write_config,
)
from test_crash import check_no_dup_no_foreign, kill9_cycles

def toml_stream(name: str, out: Path, transforms: list[dict], *, interval_secs: int = 1) -> str:
    """A native Direct PUT stream into `out` with `[[destination.transform]]` tables."""
    lines = [
        f'name = "{name}"',
        "[source]",
        'type = "direct_put"',
        "[destination]",
        'type = "local"',
        f"path = {json.dumps(str(out))}",
        "append_delimiter = true",
        'error_output_prefix = "errors/!{firehose:error-output-type}/"',
        "[destination.buffering]",
        f"interval_secs = {interval_secs}",
    ]
    for t in transforms:
        lines.append("[[destination.transform]]")
        for key, value in t.items():
            if isinstance(value, dict):
                pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {pairs} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def error_docs(out: Path) -> list[dict]:
    """Every processing-failed document under `out`."""
    docs = []
    for key in list_objects(out):
        if key.startswith("errors/processing-failed/"):
            for line in split_records(key, (out / key).read_bytes(), json_lines=True):
                docs.append(json.loads(line))
    return docs


def data_records(out: Path, json_lines: bool = True) -> Counter:
    """Delivered records outside the error outputs."""
    got = read_delivered(out, json_lines=json_lines)
    return Counter(
        {r: c for key, lines in got.per_key.items() if not key.startswith("errors/") for r, c in Counter(lines).items()}
    )


def test_example_plugins_run_in_the_daemon_from_both_config_shapes(tmp_path, start_daemon):
    """Firehose shape: Lambda ARNs resolved in --transforms-dir (access-log -> redact, a
    chain); native shape: module paths with init config (Python then JavaScript)."""
    for name in ("access-log", "redact", "python-upper", "js-tag", "filter"):
        wasm_component(name)
    lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:{}"
    logs_out, json_out = tmp_path / "logs-out", tmp_path / "json-out"
    logs_cfg = firehose_config(
        "logs",
        logs_out,
        ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
        ProcessingConfiguration={
            "Enabled": True,
            "Processors": [
                {"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": lambda_arn.format("access-log")},
                    {"ParameterName": "NumberOfRetries", "ParameterValue": "1"},
                    {"ParameterName": "BufferSizeInMBs", "ParameterValue": "0.2"},
                ]},
                {"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": lambda_arn.format("redact") + ":live"},
                ]},
                {"Type": "AppendDelimiterToRecord"},
            ],
        },
    )
    cfg_logs = write_config(tmp_path / "logs.json", logs_cfg)
    cfg_json = write_config(
        tmp_path / "json.toml",
        toml_stream("json", json_out, [
            {"module": "python-upper.wasm", "config": {"field": "msg"}},
            {"module": str(wasm_component("js-tag")), "config": {"field": "via", "value": "sluice"}},
            {"module": "filter.wasm", "config": {"drop_if_field": "level", "equals": "debug"}},
        ]),
    )
    # A debug build compiles the Python and JavaScript components for 10-20 s each.
    d = start_daemon([cfg_logs, cfg_json], extra_args=["--transforms-dir", str(COMPONENTS)], ready_timeout=240)
    client = firehose_client(d.endpoint)

    lines = [
        f'203.0.113.{i} - ann [10/Oct/2024:13:55:36 -0700] "GET /p/{i} HTTP/1.1" 200 {i} "-" "curl/8"'.encode()
        for i in range(200)
    ]
    put_batch_ok(client, "logs", lines + [b"not an access log line"])
    docs = [json.dumps({"msg": f"hello {i}", "level": "debug" if i % 4 == 0 else "info", "i": i}).encode() for i in range(100)]
    put_batch_ok(client, "json", docs + [b"[1, 2]"])

    wait_until(lambda: len(error_docs(logs_out)) == 1 and len(error_docs(json_out)) == 1, what="both error objects")
    d.stop_ok()

    # access-log parsed every line; redact (no options) passed them through.
    got = data_records(logs_out)
    assert sum(got.values()) == 200
    parsed = sorted((json.loads(r) for r in got), key=lambda o: o["bytes"])
    assert parsed[7] == {
        "agent": "curl/8", "bytes": 7, "ip": "203.0.113.7", "method": "GET", "path": "/p/7",
        "protocol": "HTTP/1.1", "referrer": None, "status": 200, "time": "2024-10-10T20:55:36Z", "user": "ann",
    }
    [bad] = error_docs(logs_out)
    assert base64.b64decode(bad["rawData"]) == b"not an access log line"
    assert bad["errorCode"] == "Lambda.ProcessingFailed"
    assert bad["lambdaArn"] == lambda_arn.format("access-log")
    assert bad["attemptsMade"] == 1

    # Python upper-cased `msg`, JavaScript tagged, the Rust filter dropped level=debug.
    got = data_records(json_out)
    expected = Counter(
        json.dumps({"msg": f"HELLO {i}", "level": "info", "i": i, "via": "sluice"}, separators=(",", ":")).encode()
        for i in range(100) if i % 4 != 0
    )
    assert got == expected
    [bad] = error_docs(json_out)
    assert base64.b64decode(bad["rawData"]) == b"[1, 2]"
    assert bad["errorCode"] == "Lambda.ProcessingFailed"
    assert "not an object" in bad["errorMessage"]
    assert bad["lambdaArn"] == "python-upper.wasm"
    assert not staged_files(logs_out) and not staged_files(json_out)


# (first record of a call, expected errorCode, attempts with retries = 1, words in the message)
HOSTILE = [
    (b"!loop", "Lambda.Timeout", 2, "deadline"),
    (b"!alloc", "Lambda.OutOfMemory", 2, "memory limit"),
    (b"!panic", "Lambda.FunctionError", 2, "panic mode"),
    (b"!huge", "Lambda.ResponseSizeTooLarge", 1, "more than"),
    (b"!dup", "Lambda.DuplicatedRecordId", 1, "more than once"),
    (b"!missing", "Lambda.MissingRecordId", 1, "no answer"),
    (b"!unknown", "Lambda.UnknownRecordId", 1, "not in the batch"),
]


def test_hostile_components_fail_their_records_and_the_daemon_keeps_serving(tmp_path, start_daemon):
    fixture = wasm_fixture()
    hostile_out, refused_out, plain_out = tmp_path / "hostile", tmp_path / "refused", tmp_path / "plain"
    # batch_size_bytes = 1: every record is its own call, so each hostile record fails
    # exactly its own call and the good ones around it are delivered.
    limits = {"retries": 1, "batch_size_bytes": 1, "deadline_ms": 500, "memory_bytes": 32 << 20}
    cfgs = [
        write_config(tmp_path / "hostile.toml", toml_stream("hostile", hostile_out, [
            {"module": str(fixture), "config": {"mode": "upper"}, **limits},
        ])),
        # init refuses its configuration: the stream starts (logged), its records fail.
        write_config(tmp_path / "refused.toml", toml_stream("refused", refused_out, [
            {"module": str(fixture), "config": {"mode": "init-fail"}, **limits},
        ])),
        write_config(tmp_path / "plain.toml", toml_stream("plain", plain_out, [])),
    ]
    d = start_daemon(cfgs, ready_timeout=120)
    client = firehose_client(d.endpoint)

    good = json_records("good", range(40))
    batch = []
    for i, (first, *_rest) in enumerate(HOSTILE):
        batch += good[i * 5 : i * 5 + 5] + [first]
    batch += good[35:]
    # The sandbox probes answer with what they saw.
    probes = [b"!file", b"!socket", b"!env"]
    put_batch_ok(client, "hostile", batch + probes)
    put_batch_ok(client, "refused", [b"r1", b"r2"])
    # While hostile calls time out and trap, the other stream is served.
    plain = json_records("plain", range(20))
    put_batch_ok(client, "plain", plain)

    wait_until(lambda: len(error_docs(hostile_out)) == len(HOSTILE), timeout=90, what="hostile error documents")
    wait_until(lambda: len(error_docs(refused_out)) == 2, what="init-fail error documents")
    # A good batch after all of that is still transformed.
    late = json_records("late", range(5))
    put_batch_ok(client, "hostile", late)
    d.stop_ok(timeout=60)

    delivered = data_records(hostile_out, json_lines=False)
    expected = Counter(r.upper() for r in good + late)
    expected.update([b"read=false write=false list=false", b'vars=0 args=0 cwd=Some("/")'])
    socket_answer = [r for r in delivered if r.startswith(b"denied")]
    assert len(socket_answer) == 1, delivered
    del delivered[socket_answer[0]]
    assert delivered == expected

    docs = {base64.b64decode(doc["rawData"]): doc for doc in error_docs(hostile_out)}
    assert len(docs) == len(HOSTILE)
    for first, code, attempts, words in HOSTILE:
        doc = docs[first]
        assert doc["errorCode"] == code, doc
        assert doc["attemptsMade"] == attempts, doc
        assert words in doc["errorMessage"], doc
        assert doc["lambdaArn"] == str(fixture)
        assert isinstance(doc["arrivalTimestamp"], int) and doc["attemptEndingTimestamp"] >= doc["arrivalTimestamp"]

    refused = error_docs(refused_out)
    assert sorted(base64.b64decode(doc["rawData"]) for doc in refused) == [b"r1", b"r2"]
    assert all(doc["errorCode"] == "Lambda.InitError" and doc["attemptsMade"] == 2 for doc in refused), refused
    assert "refusing to start" in refused[0]["errorMessage"]
    assert not data_records(refused_out, json_lines=False)

    assert data_records(plain_out) == Counter(plain)
    log = d.log_path.read_text()
    assert "refused its configuration in init" in log


def test_kill9_during_transforms_is_exactly_once(tmp_path, start_daemon):
    """Records are acknowledged, transformed and delivered while the daemon is killed."""
    seed = int(os.environ.get("SLUICE_TEST_SEED", random.randrange(1 << 30)))
    print(f"SLUICE_TEST_SEED={seed}")
    rng = random.Random(seed)
    fixture = wasm_fixture()
    out, state = tmp_path / "out", tmp_path / "state"
    cfg = write_config(tmp_path / "crash.toml", toml_stream("crash", out, [
        {"module": str(fixture), "config": {"mode": "upper"}, "batch_size_bytes": 20000},
    ]))
    acked, maybe = kill9_cycles(start_daemon, cfg, state, rng, 3, (0.5, 1.5), pad=100)
    d = start_daemon(cfg, state_dir=state)
    final = json_records("final", range(300))
    put_batch_ok(firehose_client(d.endpoint), "crash", final)
    acked += final
    d.stop_ok()

    got = data_records(out)
    upper_acked = {r.upper() for r in acked}
    check_no_dup_no_foreign(got, upper_acked, {r.upper() for r in maybe})
    missing = upper_acked - set(got)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost (seed {seed})"
    assert not error_docs(out)
    assert not staged_files(out)


def test_validate_names_the_transform_that_does_not_load(tmp_path):
    fixture = wasm_fixture()
    empty = tmp_path / "transforms"
    empty.mkdir()
    (empty / "broken.wasm").write_bytes(b"\0asm not really")
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:{}"
    cases = [
        ("missing", arn.format("nowhere"), ["nowhere.wasm", arn.format("nowhere"), "cannot read"]),
        ("broken", arn.format("broken"), ["broken.wasm", "does not compile"]),
    ]
    for name, lambda_arn, words in cases:
        cfg = write_config(tmp_path / f"{name}.json", firehose_config(
            name, tmp_path / "out",
            ProcessingConfiguration={"Enabled": True, "Processors": [
                {"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": lambda_arn}]},
            ]},
        ))
        res = run_sluice(["validate", "--config", str(cfg), "--transforms-dir", str(empty)])
        assert res.returncode == 2, res
        for word in words:
            assert word in res.stderr.decode(), (word, res.stderr)
    # A module that loads but refuses its init configuration.
    cfg = write_config(tmp_path / "init.toml", toml_stream("init", tmp_path / "out", [
        {"module": str(fixture), "config": {"mode": "init-fail"}},
    ]))
    res = run_sluice(["validate", "--config", str(cfg)], timeout=120)
    assert res.returncode == 2 and b"refusing to start" in res.stderr, res
    # And one that is fine.
    cfg = write_config(tmp_path / "fine.toml", toml_stream("fine", tmp_path / "out", [
        {"module": str(fixture), "config": {"mode": "upper"}},
    ]))
    res = run_sluice(["validate", "--config", str(cfg)], timeout=120)
    assert res.returncode == 0 and b"ok: delivery stream `fine`" in res.stdout, res
