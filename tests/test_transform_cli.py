"""`sluice transform test` and `sluice transform new`, end to end.

`transform test` runs the real binary on the example components that
transforms/build.sh puts in transforms/target/components/ (scripts/test.sh runs it before
pytest) and on the host's hostile test guest (tests/wasm-fixtures, SLUICE_WASM_FIXTURE or
built here), and checks each record's printed result, data and partition keys, the exit
code and the error shown for a failed call.

`transform new` scaffolds a project in each language, builds it with the same toolchains
build.sh installs (the rustup target wasm32-wasip2; componentize-py in .venv;
componentize-js in .cache/componentize-js), runs the project's own tests through its
build.sh, then runs the component with `transform test`. A language is skipped, with a
warning saying why, only when its toolchain is missing, and never on CI (CI=true).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, wasm_component, wasm_fixture

IN_CI = os.environ.get("CI") == "true"
# Compiling an 18 MB Python component with a debug build of sluice takes a while.
RUN_TIMEOUT = 300


def run(sluice_bin, *args, input: bytes | None = None, cwd=None):
    return subprocess.run(
        [str(sluice_bin), *map(str, args)],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=RUN_TIMEOUT,
        cwd=cwd,
    )


def transform_test(sluice_bin, module, lines: list[bytes], *config: str, extra=()):
    """Runs `transform test` with `lines` on stdin; returns (process, parsed JSON lines)."""
    args = ["transform", "test", "--module", module, *extra]
    for c in config:
        args += ["--config", c]
    p = run(sluice_bin, *args, input=b"".join(line + b"\n" for line in lines))
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    return p, out


def ok_stderr(p) -> str:
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, err
    return err


# --- transform test on the example components -----------------------------------------------


def test_identity_echoes_every_line_with_ids_and_base64_for_binary(sluice_bin, tmp_path):
    lines = [b'{"a":1}', b"", b"plain text", b"\xff\x00"]
    records = tmp_path / "records.jsonl"
    records.write_bytes(b"\n".join(lines))  # no final newline: the last line still counts
    p = run(sluice_bin, "transform", "test", "--module", wasm_component("identity"), "--input", records)
    err = ok_stderr(p)
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert out == [
        {"recordId": "0", "result": "Ok", "data": '{"a":1}'},
        {"recordId": "1", "result": "Ok", "data": ""},
        {"recordId": "2", "result": "Ok", "data": "plain text"},
        {"recordId": "3", "result": "Ok", "dataBase64": "/wA="},
    ]
    assert "4 records: 4 Ok, 0 Dropped, 0 ProcessingFailed" in err, err


def test_filter_drops_keeps_and_fails(sluice_bin):
    p, out = transform_test(
        sluice_bin,
        wasm_component("filter"),
        [b'{"level":"debug","m":1}', b'{"level":"info","m":2}', b"not json"],
        "drop_if_field=level",
        "equals=debug",
    )
    ok_stderr(p)
    assert out[0] == {"recordId": "0", "result": "Dropped"}
    assert out[1] == {"recordId": "1", "result": "Ok", "data": '{"level":"info","m":2}'}
    assert out[2]["result"] == "ProcessingFailed"
    assert out[2]["errorCode"] == "Lambda.ProcessingFailed"
    assert out[2]["errorMessage"].startswith("record is not JSON"), out[2]
    assert len(out) == 3


def test_enrich_partition_keys(sluice_bin):
    good = b'{"customer_id":"c1","region":"eu","n":3}'
    p, out = transform_test(
        sluice_bin, wasm_component("enrich"), [good, b'{"customer_id":7}'], "keys=customer_id,region"
    )
    ok_stderr(p)
    assert out[0] == {
        "recordId": "0",
        "result": "Ok",
        "data": good.decode(),
        "metadata": {"partitionKeys": {"customer_id": "c1", "region": "eu"}},
    }
    assert out[1]["result"] == "ProcessingFailed"
    assert '"region"' in out[1]["errorMessage"], out[1]


def test_redact_rewrites_the_data(sluice_bin):
    p, out = transform_test(
        sluice_bin,
        wasm_component("redact"),
        [b'{"user":"ann","password":"hunter2","ip":"10.0.0.1"}', b"[1]"],
        "redact=password",
        "rename=ip:client_ip",
    )
    ok_stderr(p)
    assert out[0]["result"] == "Ok"
    assert json.loads(out[0]["data"]) == {"user": "ann", "password": "[REDACTED]", "client_ip": "10.0.0.1"}
    assert out[1]["result"] == "ProcessingFailed"


def test_init_refusing_the_config_exits_1(sluice_bin):
    p, out = transform_test(sluice_bin, wasm_component("identity"), [b"x"], "colour=blue")
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert out == []
    assert "refused its configuration in init: takes no options, got colour" in err, err
    assert "[Lambda.InitError]" in err, err


def test_usage_errors_exit_2(sluice_bin, tmp_path):
    not_wasm = tmp_path / "not.wasm"
    not_wasm.write_text("hello")
    cases = [
        (["--module", tmp_path / "absent.wasm"], b"x\n", "cannot read"),
        (["--module", not_wasm], b"x\n", "does not compile"),
        (["--module", wasm_component("identity"), "--input", tmp_path / "absent.jsonl"], b"", "cannot read --input"),
        (["--module", wasm_component("identity")], b"", "no records"),
        (["--module", wasm_component("identity"), "--config", "novalue"], b"x\n", "is not KEY=VALUE"),
    ]
    for args, stdin, message in cases:
        p = run(sluice_bin, "transform", "test", *args, input=stdin)
        err = p.stderr.decode()
        assert p.returncode == 2, (args, err)
        assert message in err, (args, err)
        assert p.stdout == b"", args


# --- transform test on the hostile guest -------------------------------------------------------


@pytest.fixture(scope="module")
def hostile() -> Path:
    return wasm_fixture()


@pytest.mark.parametrize(
    "mode, extra, code, message",
    [
        ("panic", [], "Lambda.FunctionError", "trapped: "),
        ("dup", [], "Lambda.DuplicatedRecordId", 'returned record id "0" more than once'),
        ("missing", [], "Lambda.MissingRecordId", "returned no answer for 1 of 2 records"),
        ("loop", ["--deadline-secs", "1"], "Lambda.Timeout", "ran past its deadline of 1000 ms"),
        ("alloc", ["--memory-mib", "16"], "Lambda.OutOfMemory", "exceeded its memory limit of 16777216 bytes"),
    ],
)
def test_a_failed_invocation_exits_1_with_its_code(sluice_bin, hostile, mode, extra, code, message):
    p, out = transform_test(sluice_bin, hostile, [b"a", b"b"], f"mode={mode}", extra=extra)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert out == [], "nothing is printed for a failed call"
    assert message in err, err
    assert f"[{code}]" in err, err
    if mode == "panic":
        # The guest's panic message (its stderr) is part of the error.
        assert "panic mode: the guest gives up" in err, err


def test_guest_stdout_and_stderr_reach_the_log_rate_limited(sluice_bin, hostile):
    """The chatty guest writes 1,000 `log` messages, stdout lines and stderr lines in one
    call: the first ones reach the log with the module's name and stream, the rest are
    held back by the instance's one rate limit and counted, and the records pass."""
    p, out = transform_test(sluice_bin, hostile, [b"a"], "mode=chatty")
    err = ok_stderr(p)
    assert [r["result"] for r in out] == ["Ok"]
    lines = err.splitlines()
    stdout = [line for line in lines if 'stream="stdout"' in line]
    stderr = [line for line in lines if 'stream="stderr"' in line]
    assert stdout and "INFO" in stdout[0] and "stdout line 0" in stdout[0], err
    assert stderr and "WARN" in stderr[0] and "stderr line 0" in stderr[0], err
    assert all('module="fixture_guest"' in line for line in stdout + stderr), err
    logged = [line for line in lines if "chatty line" in line] + stdout + stderr
    assert 50 <= len(logged) <= 150, f"{len(logged)} guest lines logged of 3,000"
    # Usually one report at the end; on a slow machine the bucket refills during the
    # call, a line passes and the count so far is reported then. Every line is either
    # logged or counted.
    suppressed = [line for line in lines if "suppressed by the rate limit" in line]
    assert suppressed, err
    counted = sum(int(re.search(r"suppressed=(\d+)", line)[1]) for line in suppressed)
    assert counted == 3000 - len(logged), suppressed


# --- transform new, built and run ----------------------------------------------------------------


def skip_or_fail(why: str):
    if IN_CI:
        pytest.fail(f"{why} (CI=true: toolchains must be present)")
    warnings.warn(why)
    pytest.skip(why)


def toolchain(lang: str) -> tuple[dict, str | None]:
    """Extra environment for the scaffold's build.sh, or (_, why it cannot build)."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    if lang == "rust":
        if shutil.which("cargo") is None:
            return env, "cargo not found"
        targets = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True)
        if "wasm32-wasip2" not in targets.stdout.split():
            return env, "the rustup target wasm32-wasip2 is not installed (transforms/build.sh adds it)"
        # Shares the examples' build directory: wit-bindgen and serde_json are built there.
        env["CARGO_TARGET_DIR"] = str(REPO / "transforms" / "target")
    elif lang == "python":
        cpy = REPO / ".venv" / "bin" / "componentize-py"
        if not cpy.is_file():
            return env, f"{cpy} not found (transforms/build.sh installs componentize-py)"
        env["COMPONENTIZE_PY"] = str(cpy)
        env["PYTHON"] = str(REPO / ".venv" / "bin" / "python")
    elif lang == "js":
        cli = REPO / ".cache/componentize-js/node_modules/@bytecodealliance/componentize-js/src/cli.js"
        if shutil.which("node") is None:
            return env, "node not found"
        if not cli.is_file():
            return env, f"{cli} not found (transforms/build.sh installs componentize-js)"
        env["COMPONENTIZE_JS"] = str(cli)
    return env, None


LANGS = ["rust", "python", "js"]
# Sample records for the scaffolds' example: a JSON object, a blank line, not JSON, JSON
# that is not an object, an object with spaces around it.
SCAFFOLD_INPUT = [b'{"a":1}', b"", b"not json", b"[1]", b' {"b":[true]} ']


def build_and_try(sluice_bin, root: Path, lang: str) -> dict:
    """Builds a scaffold with its build.sh, then runs `transform test` on the component."""
    env, why = toolchain(lang)
    if why is not None:
        return {"why": why}
    build = subprocess.run(
        ["bash", "build.sh"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT
    )
    result = {"why": None, "build": build, "log": build.stdout.decode(errors="replace")}
    module = root / f"{root.name}.wasm"
    if build.returncode == 0 and module.is_file():
        result["test"] = transform_test(sluice_bin, module, SCAFFOLD_INPUT, "value=eu-1")
    return result


@pytest.fixture(scope="module")
def scaffolds(sluice_bin, tmp_path_factory):
    """Scaffolds every language, then builds and runs each at once, since most of the time
    is one core's (componentize-py and -js, ~15 s; sluice compiling their ~15 MB
    components, ~25 s): lang -> (project dir, future of build_and_try's result)."""
    parent = tmp_path_factory.mktemp("scaffolds")
    roots = {}
    for lang in LANGS:
        name = f"my-{lang}-t"
        p = run(sluice_bin, "transform", "new", "--lang", lang, name, "--dir", parent)
        assert p.returncode == 0, p.stderr.decode()
        printed = p.stdout.decode()
        assert f"in {parent / name}" in printed, printed
        assert "wit/transform.wit" in printed and "./build.sh" in printed, printed
        assert f"--module {name}.wasm" in printed, printed
        roots[lang] = parent / name
    with ThreadPoolExecutor(max_workers=len(LANGS)) as pool:
        yield {lang: (root, pool.submit(build_and_try, sluice_bin, root, lang)) for lang, root in roots.items()}


@pytest.mark.parametrize("lang", LANGS)
def test_new_project_builds_passes_its_tests_and_runs(sluice_bin, scaffolds, lang):
    root, future = scaffolds[lang]
    name = root.name
    assert (root / "wit" / "transform.wit").read_text() == (REPO / "transforms/wit/transform.wit").read_text()
    result = future.result(timeout=2 * RUN_TIMEOUT)
    if result["why"] is not None:
        skip_or_fail(f"{lang} scaffold not built: {result['why']}")
    log = result["log"]
    assert result["build"].returncode == 0, log
    # Its own tests ran (3 in each template) and passed.
    assert {"rust": "3 passed", "python": "Ran 3 tests", "js": "# pass 3"}[lang] in log, log
    assert "test" in result, f"build.sh did not write {name}.wasm:\n{log}"

    p, out = result["test"]
    ok_stderr(p)
    assert [o["result"] for o in out] == ["Ok", "Dropped", "ProcessingFailed", "ProcessingFailed", "Ok"], out
    assert json.loads(out[0]["data"]) == {"a": 1, "transformed_by": "eu-1"}
    assert json.loads(out[4]["data"]) == {"b": [True], "transformed_by": "eu-1"}
    assert out[2]["errorMessage"].startswith("record is not JSON"), out[2]
    assert out[3]["errorMessage"] == "record is JSON but not an object", out[3]

    if lang == "rust":
        # The default value is the project's name; a misspelt option is refused by init.
        module = root / f"{name}.wasm"
        p, out = transform_test(sluice_bin, module, [b"{}"])
        ok_stderr(p)
        assert json.loads(out[0]["data"]) == {"transformed_by": name}
        p, _ = transform_test(sluice_bin, module, [b"{}"], "feild=x")
        assert p.returncode == 1 and b"[Lambda.InitError]" in p.stderr, p.stderr


def test_new_refuses_an_existing_directory_and_bad_names(sluice_bin, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    p = run(sluice_bin, "transform", "new", "--lang", "rust", "taken", "--dir", tmp_path)
    assert p.returncode == 2 and b"already exists" in p.stderr, p.stderr
    assert [f.name for f in (tmp_path / "taken").iterdir()] == ["mine.txt"]
    p = run(sluice_bin, "transform", "new", "--lang", "js", "Bad Name", "--dir", tmp_path)
    assert p.returncode == 2 and b"lowercase letters" in p.stderr, p.stderr
    # NAME alone, from the working directory.
    p = run(sluice_bin, "transform", "new", "--lang", "python", "here", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "here" / "src" / "app.py").is_file()
