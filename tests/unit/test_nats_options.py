"""NatsOptions: one way to authenticate, a client key beside its certificate, TLS when asked for, files that cannot
be used refused as ConfigError naming them (before any connection), and secrets never shown."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import soulfra.bus
from soulfra.bus import NatsOptions
from soulfra.bus.nats import _client_settings
from soulfra.bus.options import redact_url
from soulfra.errors import ConfigError

SEED = (
    "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"  # a user NKey seed (format only; no server knows it)
)


def self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate and its key, PEM files in ``where``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "client.pem", where / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"password": "pw"}, "a NATS password needs a user"),
        ({"user": "u", "token": "t"}, "not --nats-user and --nats-token"),
        ({"token": "t", "creds": Path("x.creds")}, "not --nats-token and --nats-creds"),
        ({"cert": Path("c.pem")}, "needs its key"),
        ({"key": Path("c.key")}, "needs its key"),
    ],
)
def test_combinations_that_cannot_be_used(given: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as raised:
        NatsOptions(**given)  # type: ignore[arg-type]
    assert "pw" not in raised.value.detail.replace("password", "")
    assert "\n" not in raised.value.detail


def test_secrets_are_not_in_the_repr() -> None:
    shown = repr(NatsOptions(user="soulfra-runtime", password="s3cret-pw")) + repr(NatsOptions(token="t0ken"))
    assert "soulfra-runtime" in shown
    assert "s3cret-pw" not in shown
    assert "t0ken" not in shown


def test_tls_is_used_for_a_tls_url_or_a_ca(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    assert NatsOptions().tls_context("nats://127.0.0.1:4222") is None
    plain_url = NatsOptions(ca=cert).tls_context("nats://127.0.0.1:4222")
    system_store = NatsOptions().tls_context("tls://127.0.0.1:4222")
    for context in (plain_url, system_store):
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_client_certificate_is_loaded(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = NatsOptions(ca=cert, cert=cert, key=key).tls_context("tls://127.0.0.1:4222")
    assert context is not None
    assert len(context.get_ca_certs()) == 1  # the given CA alone, not the system's trust store beside it


@pytest.mark.parametrize("flag", ["ca", "cert", "key"])
def test_a_missing_tls_file_is_named(tmp_path: Path, flag: str) -> None:
    cert, key = self_signed(tmp_path)
    files = {"ca": cert, "cert": cert, "key": key, flag: tmp_path / f"missing-{flag}.pem"}
    with pytest.raises(ConfigError) as raised:
        NatsOptions(ca=files["ca"], cert=files["cert"], key=files["key"]).tls_context("tls://127.0.0.1:4222")
    assert raised.value.detail == f"--nats-{flag}: no such file {tmp_path / f'missing-{flag}.pem'}"


def test_unusable_tls_files_are_named(tmp_path: Path) -> None:
    _, key = self_signed(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"NATS CA file {garbage} holds no usable certificate"):
        NatsOptions(ca=garbage).tls_context("tls://h:4222")
    with pytest.raises(ConfigError, match=f"NATS client certificate {garbage} with key {key} cannot be loaded"):
        NatsOptions(cert=garbage, key=key).tls_context("tls://h:4222")
    with pytest.raises(ConfigError, match=f"--nats-ca: {tmp_path} is a directory"):
        NatsOptions(ca=tmp_path).tls_context("tls://h:4222")


@pytest.mark.anyio
async def test_a_bad_file_is_refused_before_connecting(tmp_path: Path, anyio_backend: str) -> None:
    """Port 1 on loopback has no NATS server: the error is the file's, not the connection's."""
    with pytest.raises(ConfigError, match="--nats-ca: no such file"):
        await soulfra.bus.connect("tls://127.0.0.1:1", NatsOptions(ca=tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="--nats-creds: no such file"):
        await soulfra.bus.connect("nats://127.0.0.1:1", NatsOptions(creds=tmp_path / "nope.creds"))
    with pytest.raises(ConfigError, match="in-memory bus takes no NATS credentials"):
        await soulfra.bus.connect("memory://", NatsOptions(user="u"))


def test_a_creds_file_or_an_nkey_seed(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text(f"-----BEGIN NATS USER JWT-----\neyJ0eXAi.x.y\n------END NATS USER JWT------\n\n{SEED}\n")
    seed = tmp_path / "user.nk"
    seed.write_text(SEED + "\n")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    assert _client_settings("nats://h:4222", NatsOptions(creds=creds)) == {"user_credentials": str(creds)}
    assert _client_settings("nats://h:4222", NatsOptions(creds=seed)) == {"nkeys_seed": str(seed)}
    with pytest.raises(ConfigError, match=f"{junk} is neither a .creds file nor a user NKey seed"):
        _client_settings("nats://h:4222", NatsOptions(creds=junk))


def test_user_password_and_token_reach_the_client() -> None:
    assert _client_settings("nats://h:4222", NatsOptions(user="u", password="p")) == {"user": "u", "password": "p"}
    assert _client_settings("nats://h:4222", NatsOptions(token="t")) == {"token": "t"}
    assert set(_client_settings("tls://h:4222", NatsOptions())) == {"tls"}


def test_credentials_in_a_url_are_hidden() -> None:
    assert redact_url("nats://user:secret@10.0.0.1:4222") == "nats://***@10.0.0.1:4222"
    assert redact_url("tls://token@h:4222") == "tls://***@h:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert redact_url("memory://") == "memory://"
