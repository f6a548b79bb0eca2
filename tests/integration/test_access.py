"""Access control as a user meets it: ``soulfra up`` keeps an admin token in its home and the CLI sends it; tokens
made and revoked with ``soulfra token`` (on a database, and through a server); plain HTTP off loopback refused
before anything is bound; HTTPS with a certificate made here, verified against the test's own CA."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from soulfra import system as embedded
from soulfra.store import SqlStore

from .support import (
    READY_DEADLINE_S,
    Server,
    environment,
    free_port,
    one_error_line,
    parsed,
    running_server,
    soulfra,
    soulfra_at,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("access")) as running:
        yield running


# -- the local admin token ------------------------------------------------------------------------------------------


def test_soulfra_up_keeps_an_owner_only_admin_token_that_the_cli_sends(server: Server) -> None:
    token_file = server.home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.home.stat().st_mode) == 0o700
    assert server.token.startswith("sft_")
    listed = parsed(soulfra_at(server.home, "instance", "list", "--url", server.url, "--json"))
    assert [row["id"] for row in listed["instances"]] == ["world-0"]
    paused = soulfra_at(server.home, "pause", "--url", server.url)
    assert paused.returncode == 0, paused.stderr
    assert soulfra_at(server.home, "resume", "--url", server.url).returncode == 0
    tokens = parsed(soulfra_at(server.home, "token", "list", "--url", server.url, "--json"))["tokens"]
    assert [(t["name"], t["role"]) for t in tokens] == [("local-admin", "admin")]


def test_a_client_without_a_token_is_told_how_to_pass_one(server: Server, tmp_path: Path) -> None:
    line = one_error_line(soulfra_at(tmp_path / "elsewhere", "pause", "--url", server.url), 77)
    assert "--token" in line
    assert "SOULFRA_TOKEN" in line
    with server.client(anonymous=True) as anonymous:
        assert anonymous.get("/api/vibe/weather").status_code == 200  # the public surface needs none


def test_a_restart_keeps_the_home_token(tmp_path: Path) -> None:
    with running_server(tmp_path) as first:
        token = first.token
    with running_server(tmp_path) as second, second.client() as client:
        assert second.token == token
        assert client.get("/api/tokens").status_code == 200
        assert [t["name"] for t in client.get("/api/tokens").json()["tokens"]] == ["local-admin"]


# -- soulfra token ----------------------------------------------------------------------------------------------------


def test_tokens_through_a_server(server: Server) -> None:
    at = server.home
    created = parsed(
        soulfra_at(
            at,
            "token",
            "create",
            "--name",
            "watcher",
            "--role",
            "viewer",
            "--expires",
            "1d",
            "--json",
            "--url",
            server.url,
        )
    )
    assert set(created) >= {"name", "role", "token", "expires_at"}
    watcher = created["token"]
    shown = soulfra_at(at, "status", "--url", server.url, "--token", watcher)
    assert shown.returncode == 0, shown.stderr
    line = one_error_line(soulfra_at(at, "pause", "--url", server.url, "--token", watcher), 77)
    assert "needs operator" in line
    plain = soulfra_at(at, "token", "create", "--name", "plain", "--role", "operator", "--url", server.url)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().startswith("sft_")  # the token alone on stdout, for a script to keep
    listed = soulfra_at(at, "token", "list", "--url", server.url)
    assert "watcher" in listed.stdout
    assert watcher not in listed.stdout
    assert soulfra_at(at, "token", "revoke", "watcher", "--url", server.url).returncode == 0
    started = time.monotonic()
    while soulfra_at(at, "status", "--url", server.url, "--token", watcher).returncode != 77:
        assert time.monotonic() - started < 1.5, "a revoked token was still accepted after a second"
        time.sleep(0.05)


def test_tokens_on_a_database(tmp_path: Path, server: Server) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    created = parsed(
        soulfra(
            "token", "create", "--name", "ci", "--role", "puppet-master", "--instances", "a,b", "--json", "--db", db
        )
    )
    assert (created["name"], created["role"], created["instances"]) == ("ci", "puppet-master", ["a", "b"])
    assert created["token"].startswith("sft_")
    listed = parsed(soulfra("token", "list", "--json", "--db", db))["tokens"]
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("ci", None)]
    assert created["token"] not in json.dumps(listed)
    assert soulfra("token", "revoke", "ci", "--db", db).returncode == 0
    assert one_error_line(soulfra("token", "revoke", "ci", "--db", db), 66)
    one_error_line(soulfra("token", "create", "--name", "x", "--role", "god", "--db", db), 65)
    store = SqlStore.open(db)
    try:
        rows = store.audit.read()
    finally:
        store.close()
    assert [(r.action, r.outcome) for r in rows] == [
        ("token.create", "ok"),
        ("token.revoke", "ok"),
        ("token.revoke", "not_found"),
        ("token.create", "invalid_input"),
    ]
    assert all(r.actor.startswith("cli:") for r in rows)
    # on the server's own database, while it runs: the server takes the new token within a second
    made = parsed(soulfra("token", "create", "--name", "sideways", "--role", "viewer", "--json", "--db", server.db_url))
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {made['token']}"}) as client:
        assert client.get("/api/instances").status_code == 200


# -- TLS, and plain HTTP off loopback -------------------------------------------------------------------------------


def test_plain_http_off_loopback_is_refused_before_anything_is_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(host: str, port: int) -> object:
        raise AssertionError(f"soulfra up bound {host}:{port}")

    monkeypatch.setattr(embedded, "listen", never)
    line = one_error_line(soulfra("up", "--host", "0.0.0.0", "--data", str(tmp_path / "d"), home=tmp_path), 2)  # noqa: S104
    assert "--tls-cert" in line
    assert "--insecure-http" in line
    assert not (tmp_path / "d").exists()


def test_insecure_http_off_loopback_is_served_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def listen(host: str, port: int) -> socket.socket:
        seen["listen"] = (host, port)
        return socket.socket()  # never bound (192.0.2.1 is no address of this machine); up closes it when done

    monkeypatch.setattr(embedded, "listen", listen)
    monkeypatch.setattr(embedded, "run_embedded", lambda settings, sock, **_: seen.setdefault("run", settings))
    done = soulfra("up", "--host", "192.0.2.1", "--insecure-http", "--data", str(tmp_path / "d"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert seen["listen"] == ("192.0.2.1", 8000)
    assert "plain HTTP" in done.stderr, done.stderr  # one log line, in the log's format
    assert "192.0.2.1" in seen["run"].access.allowed_hosts  # type: ignore[attr-defined]


def _certificates(where: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (CA file, certificate file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soulfra test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_file, cert_file, key_file = where / "ca.pem", where / "server.pem", where / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


def test_https_with_a_certificate_verified_against_the_test_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    port, home = free_port(), tmp_path / "home"
    command = ["up", "--host", "127.0.0.1", "--port", str(port), "--data", str(tmp_path / "data"),
               "--tls-cert", str(cert_file), "--tls-key", str(key_file)]  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "soulfra", *command], stdout=sink, stderr=sink,
                                env=environment(home))  # fmt: skip
    trusted = ssl.create_default_context(cafile=str(ca_file))
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trusted, timeout=5.0) as client:
            deadline = time.monotonic() + READY_DEADLINE_S
            while True:
                assert proc.poll() is None, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            token = (home / "token").read_text().strip()
            answer = client.get("/api/instances", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 200
            assert answer.headers["strict-transport-security"].startswith("max-age=")
            assert answer.headers["cache-control"] == "no-store"
        with (
            httpx.Client(base_url=f"https://127.0.0.1:{port}", timeout=5.0) as untrusting,
            pytest.raises(httpx.ConnectError),
        ):
            untrusting.get("/readyz")  # the system's CAs do not know the test's
        listed = soulfra_at(home, "instance", "list", "--url", f"https://127.0.0.1:{port}")
        assert listed.returncode != 0  # the CLI verifies certificates too; this one's CA is not the system's
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # as the README tells a user of a private CA
        watched = soulfra_at(home, "watch", "--url", f"https://127.0.0.1:{port}", "--once")
        assert watched.returncode == 0, watched.stderr
        assert "Soulfra world-0" in watched.stdout
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=20) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
