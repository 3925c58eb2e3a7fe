"""The container image: the repository's Dockerfile built with podman around the static
(musl) binary, then run as a sidecar would be. No registry is reachable, so the build
stage is replaced by an image of the binary scripts/test.sh built (`--build-arg BINARY`),
and `podman run` cannot set rlimits in this sandbox, so the image runs under
`buildah run --isolation chroot` (host network, the image's user, volumes).

Proves: the image's metadata (non-root user, state volume, HEALTHCHECK, loopback
listener), a stream config from an environment variable without mounted files, records
put through the Firehose API, the image's own health command, state on a volume across a
SIGKILL (what was acknowledged is delivered by the next container), and SIGTERM draining:
every record exactly once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    REPO,
    SLUICE_BIN,
    assert_exactly_once,
    firehose_client,
    free_port,
    json_records,
    put_batch_ok,
    read_delivered,
)

STATIC_BIN = os.environ.get("SLUICE_STATIC_BIN", "")
UID = 65532  # the image's USER


def _missing() -> str | None:
    for tool in ("podman", "buildah"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test.sh installs podman and buildah with apt-get)"
    if not STATIC_BIN or not Path(STATIC_BIN).is_file():
        return "SLUICE_STATIC_BIN is not set to a static sluice binary (scripts/test.sh builds one for musl)"
    return None


def _run(*argv: str, timeout: float = 120.0) -> str:
    p = subprocess.run(argv, capture_output=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(argv)} exited {p.returncode}:\n{p.stderr.decode(errors='replace')[-3000:]}"
    return p.stdout.decode().strip()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    why = _missing()
    if why:
        print(f"SKIP container tests: {why}")
        pytest.skip(why)
    tag = f"t{os.getpid()}"
    binary, built = f"localhost/sluice-binary-test:{tag}", f"localhost/sluice-test:{tag}"
    # The trees the Dockerfile's build stage makes under /out and /state.
    out = tmp_path_factory.mktemp("image") / "out"
    (out / "usr/bin").mkdir(parents=True)
    shutil.copy2(STATIC_BIN, out / "usr/bin/sluice")
    (out / "etc/ssl/certs").mkdir(parents=True)
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        shutil.copy2("/etc/ssl/certs/ca-certificates.crt", out / "etc/ssl/certs/")
    (out / "usr/share/zoneinfo").mkdir(parents=True)
    if Path("/usr/share/zoneinfo/UTC").exists():
        shutil.copy2("/usr/share/zoneinfo/UTC", out / "usr/share/zoneinfo/UTC")
    (out / "etc/sluice/transforms").mkdir(parents=True)
    (out / "var/lib").mkdir(parents=True)
    (out.parent / "state").mkdir()
    ctr = _run("buildah", "from", "scratch")
    try:
        _run("buildah", "copy", "--quiet", ctr, str(out), "/out")
        _run("buildah", "copy", "--quiet", ctr, str(out.parent / "state"), "/state")
        _run("buildah", "commit", "--quiet", ctr, binary)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
    try:
        # docker format: OCI images have no HEALTHCHECK.
        _run("podman", "build", "--quiet", "--format", "docker", "--build-arg", f"BINARY={binary}",
             "-t", built, "-f", str(REPO / "Dockerfile"), str(REPO), timeout=300)
        yield built
    finally:
        subprocess.run(["podman", "rmi", "--force", built, binary], capture_output=True)


def test_the_image_runs_unprivileged_with_a_state_volume_and_a_health_check(image):
    info = json.loads(_run("podman", "image", "inspect", image))[0]
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}", config
    assert "/var/lib/sluice" in config["Volumes"], config
    assert config["Entrypoint"] == ["/usr/bin/sluice"], config
    assert config["Cmd"] == ["run", "--config", "/etc/sluice"], config
    assert "SLUICE_LISTEN=127.0.0.1:4195" in config["Env"], config
    assert "SLUICE_STATE_DIR=/var/lib/sluice" in config["Env"], config
    assert config.get("StopSignal") == "SIGTERM", config
    health = info.get("Healthcheck")
    assert health and health["Test"] == ["CMD", "/usr/bin/sluice", "health"], info
    # Nothing but sluice and its data: no shell, no libc, no package manager.
    root = Path(_run("podman", "image", "mount", image))
    try:
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                       if p.is_file() and "zoneinfo" not in p.parts)
        owners = {d: (root / d).stat().st_uid for d in ("var/lib/sluice", "var/lib", "usr/bin/sluice")}
        transforms_dir = (root / "etc/sluice/transforms").is_dir()
    finally:
        subprocess.run(["podman", "image", "unmount", image], capture_output=True)
    assert files == ["etc/ssl/certs/ca-certificates.crt", "usr/bin/sluice"], files
    assert owners == {"var/lib/sluice": UID, "var/lib": 0, "usr/bin/sluice": 0}, owners
    assert transforms_dir


def _descendant(pid: int, name: str) -> int | None:
    """The first process named `name` below `pid` (buildah run forks the image's command)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        p = int(stat.parent.name)
        names[p] = text[text.index("(") + 1:text.rindex(")")]
        parents[p] = int(text[text.rindex(")") + 2:].split()[1])
    for p, n in names.items():
        if n != name:
            continue
        q = p
        while q in parents and q > 1:
            q = parents[q]
            if q == pid:
                return p
    return None


class Sidecar:
    """One `buildah run` of the image's daemon (a container's life)."""

    def __init__(self, ctr: str, port: int, env: dict[str, str], volumes: dict[Path, str], log: Path):
        argv = ["buildah", "run", "--isolation", "chroot", "--env", f"SLUICE_LISTEN=127.0.0.1:{port}"]
        for k, v in env.items():
            argv += ["--env", f"{k}={v}"]
        for host, inside in volumes.items():
            argv += ["-v", f"{host}:{inside}"]
        argv += [ctr, "/usr/bin/sluice", "run", "--config", "env:SLUICE_STREAM"]
        self.ctr, self.port, self.log = ctr, port, log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
        deadline = time.monotonic() + 60
        self.pid = None
        while self.pid is None:
            assert self.proc.poll() is None, f"buildah run exited {self.proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the image's sluice did not start"
            self.pid = _descendant(self.proc.pid, "sluice")
            time.sleep(0.1)

    def health(self, ready: bool = False) -> subprocess.CompletedProcess:
        """The image's HEALTHCHECK command, run inside the image."""
        argv = ["buildah", "run", "--isolation", "chroot", self.ctr,
                "/usr/bin/sluice", "health", "--listen", f"127.0.0.1:{self.port}"]
        return subprocess.run(argv + (["--ready"] if ready else []), capture_output=True, timeout=30)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while (p := self.health(ready=True)).returncode != 0:
            assert self.proc.poll() is None, f"exited:\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, p.stderr.decode()
            time.sleep(0.3)

    def signal(self, sig: int, timeout: float = 60.0) -> int:
        os.kill(self.pid, sig)
        return self.proc.wait(timeout=timeout)


def test_a_sidecar_from_an_environment_config_keeps_acknowledged_records_on_its_volume(image, tmp_path):
    state, out = tmp_path / "state", tmp_path / "out"
    for d in (state, out):
        d.mkdir()
        os.chown(d, UID, UID)
    # The sidecar's whole config in one variable (ECS/Kubernetes `env`), no file mounted.
    # A long interval: only a drain (or the next container's recovery) delivers.
    stream = "\n".join([
        'name = "side"', "[source]", 'type = "direct_put"', "[destination]", 'type = "local"',
        'path = "/out"', "append_delimiter = true", "[destination.buffering]", "interval_secs = 300",
    ]) + "\n"
    ctr = _run("buildah", "from", image)
    try:
        # buildah also mounts the image's own VOLUME at that path, in no fixed order
        # with -v: now and then its empty directory covered ours and a run's state
        # vanished with the container. A runtime gives -v precedence; here the working
        # container drops the image volume (the image's metadata is checked above).
        _run("buildah", "config", "--volume", "/var/lib/sluice-", ctr)
        env, volumes = {"SLUICE_STREAM": stream}, {state: "/var/lib/sluice", out: "/out"}
        port = free_port()
        first = Sidecar(ctr, port, env, volumes, tmp_path / "sidecar.log")
        first.wait_ready()
        healthy = first.health()
        assert healthy.returncode == 0 and json.loads(healthy.stdout) == {"status": "ok"}, healthy
        client = firehose_client(f"http://127.0.0.1:{port}")
        before = json_records("before", range(200))
        put_batch_ok(client, "side", before)
        # Killed before anything was delivered: the records are in the log on the volume.
        assert first.signal(signal.SIGKILL) != 0
        assert not [p for p in out.rglob("*") if p.is_file() and ".sluice-staging" not in p.parts]
        assert first.health().returncode == 1, "health passed with no daemon running"

        second = Sidecar(ctr, port, env, volumes, tmp_path / "sidecar.log")
        second.wait_ready()
        after = json_records("after", range(100))
        put_batch_ok(client, "side", after)
        # SIGTERM (the image's STOPSIGNAL) drains: delivered, then exit 0.
        assert second.signal(signal.SIGTERM) == 0, (tmp_path / "sidecar.log").read_text()[-3000:]
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
    log = (tmp_path / "sidecar.log").read_text()
    assert "Drained." in log, log[-3000:]
    got = read_delivered(out, stream="side")
    assert_exactly_once(got.records, before + after)
    # Written by the image's unprivileged user.
    assert {p.stat().st_uid for p in out.rglob("*") if p.is_file()} == {UID}


def _readme_example(name: str) -> str:
    """The fenced block right below `<!-- example: NAME -->` in README.md."""
    lines = (REPO / "README.md").read_text().splitlines()
    i = lines.index(f"<!-- example: {name} -->")
    assert lines[i + 1].startswith("```"), f"no fenced block below the {name} marker"
    end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
    return "\n".join(lines[i + 2:end]) + "\n"


def _dockerfile() -> dict[str, str]:
    """The runtime stage's USER, VOLUME and ENV listen address, as written in the Dockerfile."""
    text = (REPO / "Dockerfile").read_text()
    user = re.search(r"^USER (\S+)$", text, re.M)[1]
    volume = json.loads(re.search(r"^VOLUME (\[.*\])$", text, re.M)[1])[0]
    listen = re.search(r"SLUICE_LISTEN=(\S+)", text)[1]
    return {"user": user, "volume": volume, "port": listen.rsplit(":", 1)[1]}


def _validates(stream_config: str, drain: str) -> None:
    """The example's stream config passes `sluice validate` as the image would read it."""
    env = dict(os.environ, SLUICE_STREAM=stream_config, SLUICE_DRAIN_TIMEOUT_SECS=drain)
    p = subprocess.run([str(SLUICE_BIN), "validate", "--config", "env:SLUICE_STREAM"], capture_output=True,
                       env=env, timeout=30)
    assert p.returncode == 0, p.stderr.decode()


def test_the_readme_ecs_task_definition_is_valid_for_ecs_and_for_the_image(sluice_bin):
    import botocore.session
    from botocore.validate import ParamValidator

    doc = json.loads(_readme_example("ecs-task-definition"))
    shape = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(doc, shape)
    assert not report.has_errors(), report.generate_report()
    image = _dockerfile()
    sidecar, app = doc["containerDefinitions"]
    env = {e["name"]: e["value"] for e in sidecar["environment"]}
    _validates(env["SLUICE_STREAM"], env["SLUICE_DRAIN_TIMEOUT_SECS"])
    assert sidecar["command"] == ["run", "--config", "env:SLUICE_STREAM"]
    assert sidecar["healthCheck"]["command"] == ["CMD", "/usr/bin/sluice", "health"]
    assert sidecar["stopTimeout"] > int(env["SLUICE_DRAIN_TIMEOUT_SECS"])
    assert sidecar["user"] == image["user"]
    volume = next(v for v in doc["volumes"] if v["name"] == sidecar["mountPoints"][0]["sourceVolume"])
    assert sidecar["mountPoints"][0]["containerPath"] == image["volume"] and volume["host"]["sourcePath"]
    # The application shares the task's localhost (awsvpc) and waits for a healthy sluice.
    assert doc["networkMode"] == "awsvpc"
    app_env = {e["name"]: e["value"] for e in app["environment"]}
    assert app_env["AWS_ENDPOINT_URL_FIREHOSE"] == f"http://127.0.0.1:{image['port']}"
    assert app["dependsOn"] == [{"containerName": "sluice", "condition": "HEALTHY"}]


def test_the_readme_kubernetes_pod_runs_sluice_as_a_sidecar_with_probes_and_a_volume(sluice_bin):
    import yaml

    claim, pod = yaml.safe_load_all(_readme_example("kubernetes-pod"))
    assert claim["kind"] == "PersistentVolumeClaim" and pod["kind"] == "Pod"
    image = _dockerfile()
    spec = pod["spec"]
    (sidecar,) = spec["initContainers"]
    (app,) = spec["containers"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: up before the app, down after it
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    _validates(env["SLUICE_STREAM"], env["SLUICE_DRAIN_TIMEOUT_SECS"])
    assert sidecar["args"] == ["run", "--config", "env:SLUICE_STREAM"]
    assert spec["terminationGracePeriodSeconds"] > int(env["SLUICE_DRAIN_TIMEOUT_SECS"])
    for probe, ready in (("startupProbe", True), ("readinessProbe", True), ("livenessProbe", False)):
        assert sidecar[probe]["exec"]["command"] == ["/usr/bin/sluice", "health"] + (["--ready"] if ready else []), probe
    # The image's user can write the volume, which outlives the pod.
    assert str(spec["securityContext"]["fsGroup"]) == image["user"].split(":")[1]
    (mount,) = sidecar["volumeMounts"]
    assert mount["mountPath"] == image["volume"]
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    app_env = {e["name"]: e["value"] for e in app["env"]}
    assert app_env["AWS_ENDPOINT_URL_FIREHOSE"] == f"http://127.0.0.1:{image['port']}"
