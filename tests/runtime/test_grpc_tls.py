"""TLS and mutual TLS of the runtime's gRPC server, with certificates the tests make.

Real servers on 127.0.0.1 (:class:`~services.runtime.grpc_server.GrpcServer`)
and real clients (:func:`~services.runtime.grpc_client.channel`); no Kafka.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from services.annotator.settings import AnnotatorSettings
from services.devkit.processes import read_log, reap
from services.devkit.stack import REPO_ROOT, free_port
from services.runtime import health_check
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.grpc_client import ClientTLS, GrpcTlsError, channel
from services.runtime.grpc_server import GrpcServer
from services.runtime.grpc_tls import ServerTLS
from services.sampler.settings import SamplerSettings
from tests.support.kafkaio import spawn_echo_stage
from tests.support.tls import Pki, make_pki

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server and a client certificate, and a second CA with a client one."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: Pki, *, mutual: bool = False) -> ServerTLS:
    """The server's TLS from the test PKI (client certificates required when ``mutual``)."""
    return ServerTLS.from_files(
        pki.server.cert, pki.server.key, pki.ca.cert_file if mutual else None
    )


@asynccontextmanager
async def serving(tls: ServerTLS | None) -> AsyncIterator[int]:
    """A started GrpcServer on 127.0.0.1 reporting SERVING; yields its port."""
    server = GrpcServer(0, (), reflection_enabled=True, host="127.0.0.1", tls=tls)
    await server.start()
    await server.set_serving(True)
    try:
        yield server.port
    finally:
        await server.stop(grace_s=0)


async def health(port: int, tls: ClientTLS | None) -> int:
    """The overall health status, over a channel with ``tls``."""
    async with channel(f"127.0.0.1:{port}", tls) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)


async def refused(port: int, tls: ClientTLS | None) -> grpc.StatusCode:
    """The status code of a call that must fail (the TLS handshake does)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health(port, tls)
    return caught.value.code()


async def test_plaintext_stays_the_default() -> None:
    async with serving(None) as port:
        assert await health(port, None) == SERVING


async def test_tls_accepts_clients_that_trust_the_ca(pki: Pki) -> None:
    async with serving(server_tls(pki)) as port:
        assert await health(port, ClientTLS(pki.ca.cert_file)) == SERVING
        # The name checked against the certificate can be overridden (port-forwards).
        assert await health(port, ClientTLS(pki.ca.cert_file, server_name="localhost")) == SERVING
        # Without mutual TLS a client certificate is not needed, but allowed.
        with_cert = ClientTLS(pki.ca.cert_file, pki.client.cert, pki.client.key)
        assert await health(port, with_cert) == SERVING


async def test_tls_server_opens_no_plaintext_port(pki: Pki) -> None:
    async with serving(server_tls(pki)) as port:
        assert await refused(port, None) == grpc.StatusCode.UNAVAILABLE


async def test_tls_client_refuses_an_untrusted_or_misnamed_server(pki: Pki) -> None:
    async with serving(server_tls(pki)) as port:
        # The server's certificate is not signed by the CA the client trusts.
        assert await refused(port, ClientTLS(pki.other_ca.cert_file)) == grpc.StatusCode.UNAVAILABLE
        # Signed by the right CA, but for another name.
        misnamed = ClientTLS(pki.ca.cert_file, server_name="other.example")
        assert await refused(port, misnamed) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_accepts_only_client_certificates_of_the_ca(pki: Pki) -> None:
    async with serving(server_tls(pki, mutual=True)) as port:
        right = ClientTLS(pki.ca.cert_file, pki.client.cert, pki.client.key)
        assert await health(port, right) == SERVING
        # No client certificate.
        assert await refused(port, ClientTLS(pki.ca.cert_file)) == grpc.StatusCode.UNAVAILABLE
        # A client certificate from another CA.
        stranger = ClientTLS(pki.ca.cert_file, pki.stranger.cert, pki.stranger.key)
        assert await refused(port, stranger) == grpc.StatusCode.UNAVAILABLE
        # Plaintext.
        assert await refused(port, None) == grpc.StatusCode.UNAVAILABLE
        # The server is still fine for the right client afterwards.
        assert await health(port, right) == SERVING


# --- settings -------------------------------------------------------------


def test_settings_default_to_plaintext() -> None:
    assert StageSettings().grpc_server_tls() is None


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CERT_FILE", "KEY_FILE", "CLIENT_CA_FILE"):
        monkeypatch.setenv(f"ACT_SAMPLER_GRPC_TLS_{name}", "")
    assert SamplerSettings().grpc_server_tls() is None


def test_settings_read_the_files(pki: Pki) -> None:
    settings = StageSettings(
        grpc_tls_cert_file=pki.server.cert,
        grpc_tls_key_file=pki.server.key,
        grpc_tls_client_ca_file=pki.ca.cert_file,
    )
    tls = settings.grpc_server_tls()
    assert tls is not None and tls.mutual
    assert tls.cert_chain == pki.server.cert.read_bytes()
    assert tls.private_key == pki.server.key.read_bytes()
    # Key material never shows in a repr (settings hold paths, ServerTLS hides bytes).
    assert "PRIVATE" not in repr(tls) and "PRIVATE" not in repr(settings)


def test_settings_come_from_each_services_prefix(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACT_SAMPLER_GRPC_TLS_CERT_FILE", str(pki.server.cert))
    monkeypatch.setenv("ACT_SAMPLER_GRPC_TLS_KEY_FILE", str(pki.server.key))
    monkeypatch.setenv("ACT_ANNOTATOR_GRPC_TLS_CERT_FILE", str(pki.server.cert))
    monkeypatch.setenv("ACT_ANNOTATOR_GRPC_TLS_KEY_FILE", str(pki.server.key))
    monkeypatch.setenv("ACT_ANNOTATOR_GRPC_TLS_CLIENT_CA_FILE", str(pki.ca.cert_file))
    sampler = SamplerSettings().grpc_server_tls()
    assert sampler is not None and not sampler.mutual
    # The annotator's settings are composed: the stage part reads ACT_ANNOTATOR_ too.
    annotator = AnnotatorSettings().stage.grpc_server_tls()
    assert annotator is not None and annotator.mutual


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"grpc_tls_cert_file": "c.pem"}, "grpc_tls_cert_file is set but grpc_tls_key_file"),
        ({"grpc_tls_key_file": "k.pem"}, "grpc_tls_key_file is set but grpc_tls_cert_file"),
        ({"grpc_tls_client_ca_file": "ca.pem"}, "grpc_tls_client_ca_file needs"),
    ],
)
def test_settings_refuse_half_a_configuration(given: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StageSettings(**given)  # type: ignore[arg-type]


def test_a_missing_file_names_the_setting(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    settings = StageSettings(grpc_tls_cert_file=pki.server.cert, grpc_tls_key_file=missing)
    with pytest.raises(GrpcTlsError, match="grpc_tls_key_file") as caught:
        settings.grpc_server_tls()
    assert str(missing) in str(caught.value) and "No such file" in str(caught.value)

    settings = StageSettings(
        grpc_tls_cert_file=pki.server.cert,
        grpc_tls_key_file=pki.server.key,
        grpc_tls_client_ca_file=tmp_path / "nope-ca.pem",
    )
    with pytest.raises(GrpcTlsError, match="grpc_tls_client_ca_file"):
        settings.grpc_server_tls()


def test_a_wrong_file_is_refused_without_showing_it(pki: Pki, tmp_path: Path) -> None:
    # The key given as the certificate: refused, and none of the key is printed.
    swapped = StageSettings(grpc_tls_cert_file=pki.server.key, grpc_tls_key_file=pki.server.key)
    with pytest.raises(GrpcTlsError, match=r"grpc_tls_cert_file.*no PEM CERTIFICATE") as caught:
        swapped.grpc_server_tls()
    key_lines = pki.server.key.read_text().splitlines()[1:-1]
    assert not any(line in str(caught.value) for line in key_lines)

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    settings = StageSettings(grpc_tls_cert_file=garbage, grpc_tls_key_file=pki.server.key)
    with pytest.raises(GrpcTlsError, match="is not a PEM file"):
        settings.grpc_server_tls()


def test_a_key_of_another_certificate_is_refused(pki: Pki) -> None:
    settings = StageSettings(grpc_tls_cert_file=pki.server.cert, grpc_tls_key_file=pki.client.key)
    with pytest.raises(GrpcTlsError, match="not a usable certificate and key pair") as caught:
        settings.grpc_server_tls()
    assert "grpc_tls_cert_file" in str(caught.value) and "grpc_tls_key_file" in str(caught.value)


def test_client_options() -> None:
    assert ClientTLS.from_options(None) is None
    with pytest.raises(GrpcTlsError, match="needs the CA file"):
        ClientTLS.from_options(None, Path("c.pem"), Path("k.pem"))
    with pytest.raises(GrpcTlsError, match="both the certificate and its key"):
        ClientTLS.from_options(Path("ca.pem"), Path("c.pem"), None)
    tls = ClientTLS.from_options(Path("ca.pem"), server_name="gw")
    assert tls == ClientTLS(Path("ca.pem"), server_name="gw")


async def test_a_client_with_a_missing_file_fails_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(GrpcTlsError, match="client TLS CA file"):
        channel("127.0.0.1:1", ClientTLS(tmp_path / "nope.pem"))


def test_a_stage_with_a_bad_tls_file_exits_2(pki: Pki, tmp_path: Path) -> None:
    """The process fails at start-up, before Kafka, naming the setting."""
    env = {
        **os.environ,
        "ACT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # never reached
        "ACT_ECHO_GRPC_PORT": "0",
        "ACT_ECHO_METRICS_PORT": "0",
        "ACT_ECHO_GRPC_TLS_CERT_FILE": str(pki.server.cert),
        "ACT_ECHO_GRPC_TLS_KEY_FILE": str(tmp_path / "missing.key"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "services.devkit.echo"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    output = proc.stdout + proc.stderr
    assert "grpc_tls_invalid" in output and "grpc_tls_key_file" in output
    assert "missing.key" in output


async def test_health_check_command(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m services.runtime.health_check`` (the exec probe of a TLS service)."""
    async with serving(server_tls(pki, mutual=True)) as port:
        base = ["--target", f"127.0.0.1:{port}", "--tls-ca", str(pki.ca.cert_file)]
        client = ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
        assert await asyncio.to_thread(health_check.main, [*base, *client]) == 0
        assert capsys.readouterr().out.strip() == "SERVING"
        assert await asyncio.to_thread(health_check.main, base) == 1  # no client certificate
        assert await asyncio.to_thread(health_check.main, ["--target", base[1]]) == 1
        assert await asyncio.to_thread(health_check.main, [*base[:2], *client]) == 2  # no CA


async def test_a_stage_process_serves_mutual_tls(pki: Pki, tmp_path: Path) -> None:
    """``python -m services.devkit.echo`` with TLS settings: health over mutual TLS only.

    Its broker never answers (a listener that never accepts), so the stage stays
    in start-up, NOT_SERVING, which is all a health call needs; no Kafka.
    """
    silent = socket.create_server(("127.0.0.1", 0))
    grpc_port = free_port()
    log = tmp_path / "stage.log"
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}", topic_prefix="none."
    )
    proc = spawn_echo_stage(
        kafka,
        "tls",
        log,
        ACT_ECHO_GRPC_PORT=str(grpc_port),
        ACT_ECHO_GRPC_TLS_CERT_FILE=str(pki.server.cert),
        ACT_ECHO_GRPC_TLS_KEY_FILE=str(pki.server.key),
        ACT_ECHO_GRPC_TLS_CLIENT_CA_FILE=str(pki.ca.cert_file),
    )
    right = ClientTLS(pki.ca.cert_file, pki.client.cert, pki.client.key)
    try:
        status = None
        for _ in range(300):
            assert proc.poll() is None, read_log(log)
            try:
                status = await health(grpc_port, right)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await refused(grpc_port, None) == grpc.StatusCode.UNAVAILABLE
        assert await refused(grpc_port, ClientTLS(pki.ca.cert_file)) == grpc.StatusCode.UNAVAILABLE
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, read_log(log)
    finally:
        reap(proc)
        silent.close()
    assert "PRIVATE KEY" not in read_log(log)
