"""TLS on the API listener (`--tls-cert`, `--tls-key`): boto3 puts over HTTPS verifying
the certificate, plain HTTP gets no answer, SIGHUP picks up a renewed certificate for new
connections, and a broken one is refused at start and at reload (the old one stays)."""

from __future__ import annotations

import datetime
import signal
import ssl
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from conftest import native_config, read_delivered, run_sluice, wait_until, write_config

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def self_signed(cert: Path, key: Path, name: str) -> bytes:
    """A certificate for 127.0.0.1 named `name`; returns its DER."""
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certificate.public_bytes(serialization.Encoding.DER)


def served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def test_https_puts_verify_the_certificate_and_sighup_renews_it(tmp_path, start_daemon):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first = self_signed(cert, key, "sluice-first")
    cfg = write_config(tmp_path / "t.toml", native_config("t", tmp_path / "out", interval_secs=1))
    d = start_daemon(cfg, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    client = boto3.client("firehose", endpoint_url=f"https://127.0.0.1:{d.port}", region_name="us-east-1",
                          verify=str(cert), config=Config(retries={"max_attempts": 1}))
    client.put_record_batch(DeliveryStreamName="t", Records=[{"Data": f"r{i}".encode()} for i in range(10)])
    assert served_certificate(d.port) == first
    # Plain HTTP on the TLS port: the handshake fails, no request is served.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("POST", "/", body=b"{}", headers={"X-Amz-Target": "Firehose_20150804.ListDeliveryStreams"})
        conn.getresponse().read()
    conn.close()
    # A renewed certificate: new connections get it after SIGHUP.
    second = self_signed(cert, key, "sluice-second")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: served_certificate(d.port) == second, 20, "the renewed certificate")
    # A broken one at reload: refused, the renewed one stays.
    cert.write_text("not a certificate\n")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS reload refused" in d.log_path.read_text(), 20, "the refusal in the log")
    assert served_certificate(d.port) == second
    fresh = boto3.client("firehose", endpoint_url=f"https://127.0.0.1:{d.port}", region_name="us-east-1",
                         verify=False, config=Config(retries={"max_attempts": 1}))
    fresh.put_record(DeliveryStreamName="t", Record={"Data": b"after"})
    d.stop_ok()
    got = read_delivered(tmp_path / "out", json_lines=False).records
    assert sorted(got) == sorted([f"r{i}".encode() for i in range(10)] + [b"after"])


def test_a_broken_certificate_or_half_a_pair_is_refused_at_start(tmp_path):
    cfg = write_config(tmp_path / "t.toml", native_config("t", tmp_path / "out"))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed(cert, key, "x")
    other_cert, other_key = tmp_path / "o.pem", tmp_path / "ok.pem"
    self_signed(other_cert, other_key, "y")
    base = ["run", "--config", str(cfg), "--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:0"]
    p = run_sluice(base + ["--tls-cert", str(cert)], timeout=30)
    assert p.returncode == 2 and "--tls-key" in p.stderr.decode(), p.stderr
    (tmp_path / "bad.pem").write_text("garbage\n")
    p = run_sluice(base + ["--tls-cert", str(tmp_path / "bad.pem"), "--tls-key", str(key)], timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2 and "bad.pem" in err and "no PEM certificate" in err, err
    p = run_sluice(base + ["--tls-cert", str(cert), "--tls-key", str(other_key)], timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2 and "--tls-key" in err, err
