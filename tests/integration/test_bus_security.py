"""A bus no stranger can speak on: the four platforms of an instance over a NATS server of this module's own, with TLS
(a CA and server certificate made here with ``cryptography``) and the authorization block of docs/nats-security.md
(``nats_authorization()``), each platform as its own user. A client without credentials, a plaintext client, a
platform sending a command it has no permission for, and ``soulfra serve`` with a wrong password are all refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import soulfra.bus
from soulfra.bus import Bus, NatsOptions
from soulfra.bus.permissions import ROLES, nats_authorization, password_variable, user_name
from soulfra.errors import BusError, BusUnavailableError
from soulfra.platforms.base import PLATFORMS, encode, op_subject
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.store import SqlStore

from .support import free_port, one_error_line
from .test_services import Services, check_unified, check_whisper, new_instance, runtime_tick, start_all, wait_until
from .topology import nats_server, nats_server_binary

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("nats-security")]


# -- certificates ------------------------------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(where: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("soulfra test CA"))
        .issuer_name(_name("soulfra test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (where / "ca.pem", where / "server.pem", where / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(server_key))
    paths[2].chmod(0o600)
    return paths


# -- the server ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecureNats:
    """The running server: its TLS URL, the CA to verify it with, and each role's password."""

    url: str
    port: int
    ca: Path
    passwords: Mapping[str, str]

    def options(self, role: str, *, password: str | None = None) -> NatsOptions:
        return NatsOptions(user=user_name(role), password=password or self.passwords[role], ca=self.ca)

    def serve_connection(self, platform: str) -> tuple[Sequence[str], Mapping[str, str]]:
        """A platform's flags (user, CA) and variables (its password: never on a command line)."""
        return ("--nats-user", user_name(platform), "--nats-ca", str(self.ca)), {
            "SOULFRA_NATS_PASSWORD": self.passwords[platform]
        }


@pytest.fixture(scope="module")
def secure_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureNats]:
    """nats-server on a free loopback port: TLS required, the documented authorization block, JetStream in a store
    of its own; the passwords reach it through its environment. Stopped by its PID."""
    binary = nats_server_binary()
    where = tmp_path_factory.mktemp("nats")
    ca, cert, key = make_pki(where)
    port = free_port()
    config = where / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n  timeout: 2\n}}\n'
        f'jetstream {{\n  store_dir: "{where / "jetstream"}"\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}}\n'
        + nats_authorization()
    )
    # nats-server parses a variable's value as a value of its config: a letter first and hex after stay a string
    # ("1e5x" or "-ab" would not parse at all).
    passwords = {role: "pw" + secrets.token_hex(16) for role in ROLES}
    with nats_server(binary, config, {password_variable(role): passwords[role] for role in ROLES}):
        yield SecureNats(f"tls://127.0.0.1:{port}", port, ca, passwords)


@pytest.fixture
async def control_bus(secure_nats: SecureNats, anyio_backend: str) -> AsyncIterator[Bus]:
    """A bus connected as the control user (the API's, the puppet master's and the CLI tools' identity)."""
    bus = await soulfra.bus.connect(secure_nats.url, secure_nats.options("control"))
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
def secure_services(secure_nats: SecureNats, pg_url: str, tmp_path: Path) -> Iterator[Services]:
    """The ``soulfra serve`` processes of a new instance, each with its platform's user over TLS."""
    running = Services(
        new_instance(pg_url), pg_url, tmp_path, nats_url=secure_nats.url, connection=secure_nats.serve_connection
    )
    try:
        yield running
    finally:
        running.stop()


def logged_inputs(pg_url: str, instance_id: str) -> list[str]:
    """The types of the inputs in the instance's log, read from the database."""
    store = SqlStore.open(pg_url)
    try:
        return [stored.input.type for stored in store.inputs.read(instance_id)]
    finally:
        store.close()


# -- the tests -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.anyio
async def test_the_four_platforms_work_over_tls_each_as_its_own_user(
    control_bus: Bus, secure_services: Services, pg_url: str
) -> None:
    bridge = CrossPlatformBridge(control_bus, secure_services.instance_id, timeout=5.0)
    await start_all(bridge, secure_services)
    await check_whisper(bridge, secure_services, pg_url)
    await check_unified(bridge)  # the mirror asks the runtime, the surface and the protocol, and publishes a note
    secure_services.check_alive()
    codes = secure_services.stop()
    assert codes == dict.fromkeys(PLATFORMS, 0), "\n".join(secure_services.output(p) for p in PLATFORMS)


@pytest.mark.anyio
async def test_a_client_without_credentials_is_refused(secure_nats: SecureNats) -> None:
    with pytest.raises(BusUnavailableError, match=r"requires credentials .*Authorization Violation"):
        await soulfra.bus.connect(secure_nats.url, NatsOptions(ca=secure_nats.ca))


@pytest.mark.anyio
async def test_a_wrong_password_is_refused_at_once(secure_nats: SecureNats) -> None:
    started = time.monotonic()
    with pytest.raises(BusUnavailableError) as refused:
        await soulfra.bus.connect(secure_nats.url, secure_nats.options("runtime", password="not-the-password"))
    assert refused.value.detail == f"NATS at {secure_nats.url} refused the credentials: Authorization Violation"
    assert "not-the-password" not in str(refused.value)
    assert time.monotonic() - started < 10  # no minutes of retrying


@pytest.mark.anyio
async def test_a_client_that_does_not_trust_the_server_is_refused(secure_nats: SecureNats) -> None:
    """Without the CA, the client's own check of the server's certificate fails (the system trust store lacks it)."""
    with pytest.raises(BusUnavailableError, match="CERTIFICATE_VERIFY_FAILED; give the CA"):
        await soulfra.bus.connect(secure_nats.url, NatsOptions(user=user_name("control"), password="x"))


def test_a_plaintext_client_is_refused(secure_nats: SecureNats) -> None:
    """A client that speaks the protocol without TLS (valid credentials and all) is refused before its CONNECT."""
    with socket.create_connection(("127.0.0.1", secure_nats.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        info = reader.readline()
        assert info.startswith(b"INFO ")
        assert json.loads(info[5:])["tls_required"] is True
        connect = {"user": user_name("control"), "pass": secure_nats.passwords["control"], "verbose": False}
        try:
            sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
            answer = reader.readline()
        except OSError:  # the server may already have closed the connection
            answer = b""
    assert b"PONG" not in answer
    assert answer in (b"", b"-ERR 'Secure Connection - TLS Required'\r\n"), answer


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_platform_user_cannot_send_a_runtime_command(
    secure_nats: SecureNats, control_bus: Bus, secure_services: Services, pg_url: str
) -> None:
    """The surface's user may ask the runtime for its view, never whisper to it: the server drops the whisper, the
    sender is told, and the input log stays without it."""
    instance_id = secure_services.instance_id
    bridge = CrossPlatformBridge(control_bus, instance_id, timeout=5.0)
    secure_services.start("runtime")

    async def ticking() -> bool:
        return await runtime_tick(bridge) >= 1

    await wait_until("the runtime answers and ticks", ticking, secure_services)
    surface = await soulfra.bus.connect(secure_nats.url, secure_nats.options("surface"))
    try:
        view = await surface.request(op_subject(instance_id, "runtime", "view"), b"{}", timeout=5.0)  # allowed
        assert json.loads(view)["tick"] >= 1
        whisper = encode({"text": "let me in", "target": "*", "tone": "dark"})
        with pytest.raises(BusError, match=f"NATS refused publish on soulfra.{instance_id}.runtime.whisper"):
            await surface.request(op_subject(instance_id, "runtime", "whisper"), whisper, timeout=2.0)
        with pytest.raises(BusError, match="NATS refused publish"):
            await surface.publish(op_subject(instance_id, "runtime", "pause"), b"{}")

        async def impostor(payload: bytes) -> bytes:
            return b"{}"

        with pytest.raises(BusError, match="NATS refused subscription"):  # nor answer in the runtime's place
            await surface.serve(op_subject(instance_id, "runtime", "whisper"), impostor)
    finally:
        await surface.close()
    before = await runtime_tick(bridge)

    async def ticked_on() -> bool:
        return await runtime_tick(bridge) > before + 2

    await wait_until("the runtime ticks on", ticked_on, secure_services)
    assert (await bridge.fetch_from_runtime("status"))["state"] == "running"  # the pause never reached it either
    assert "whisper" not in logged_inputs(pg_url, instance_id)
    ack = await bridge.send_whisper_to_runtime("the control user may")  # the same command from the control user
    assert logged_inputs(pg_url, instance_id).count("whisper") == 1
    assert ack.type == "whisper"


def test_serve_with_a_wrong_password_exits_with_one_line(secure_nats: SecureNats, tmp_path: Path) -> None:
    env = {**os.environ, "SOULFRA_NATS_PASSWORD": "wrong-password"}
    done = subprocess.run(
        [sys.executable, "-m", "soulfra", "serve", "runtime", "--instance", "w", "--db", f"sqlite:///{tmp_path}/w.db",
         "--nats", secure_nats.url, "--nats-user", user_name("runtime"), "--nats-ca", str(secure_nats.ca)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    line = one_error_line(done, 69)
    assert line == f"soulfra: error: NATS at {secure_nats.url} refused the credentials: Authorization Violation"
    assert "wrong-password" not in done.stderr + done.stdout


def test_serve_with_a_missing_ca_file_exits_2_naming_it(secure_nats: SecureNats, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    done = subprocess.run(
        [sys.executable, "-m", "soulfra", "serve", "runtime", "--instance", "w", "--db", f"sqlite:///{tmp_path}/w.db",
         "--nats", secure_nats.url, "--nats-user", user_name("runtime"), "--nats-ca", str(missing)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SOULFRA_NATS_PASSWORD": secure_nats.passwords["runtime"]},
    )  # fmt: skip
    assert one_error_line(done, 2) == f"soulfra: error: --nats-ca: no such file {missing}"


@pytest.mark.anyio
async def test_an_nkey_seed_file_authenticates(tmp_path: Path) -> None:
    """``--nats-creds`` with a user NKey seed: the server knows only the public key; the seed signs its challenge."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    seed_file.chmod(0o600)
    port = free_port()
    config = tmp_path / "nkey.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'jetstream {{\n  store_dir: "{tmp_path / "jetstream"}"\n}}\n'
        f'authorization {{\n  users = [ {{ nkey: "{public}" }} ]\n}}\n'
    )
    with nats_server(nats_server_binary(), config, {}):
        bus = await soulfra.bus.connect(f"nats://127.0.0.1:{port}", NatsOptions(creds=seed_file))
        try:
            await bus.publish("soulfra.w.events", b"{}")  # stored by JetStream: the connection is fully usable
        finally:
            await bus.close()
        with pytest.raises(BusUnavailableError, match="requires credentials"):
            await soulfra.bus.connect(f"nats://127.0.0.1:{port}")
