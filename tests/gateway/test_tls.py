"""TLS with real certificates from throwaway CAs made here: HTTPS ingestion to a client that
verifies the chain (TLS 1.2 or later only), gRPC over TLS, mutual TLS for gRPC (no certificate
and another CA's are refused at the handshake; the subject reaches the access log; the API key is
still required), the client for internal services over both (certificates as files and as PEM
bytes; without one its batch is reported UNAVAILABLE once its attempts run out), and certificates
swapped and reloaded on SIGHUP while connections stay open."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import warnings
from pathlib import Path

import aiohttp
import grpc
import pytest

from gateway.config import Settings
from gateway.logs import JsonFormatter
from gateway.pb import gateway_pb2_grpc
from gateway.pb.event_pb2 import Event
from gateway.pb.gateway_pb2 import SubmitBatchRequest
from tests.harness import GatewayProcess, eventually, provision, started, stored_events
from tests.tls import Authority, Issued

NAME = (("grpc.ssl_target_name_override", "localhost"),)


def client_context(ca: Authority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.path))


def mutual_tls(tmp_path: Path, sqlite_url: str) -> tuple[Authority, Issued, Settings]:
    """A server CA, a client certificate from a CA of clients, and settings asking for one."""
    ca = Authority(tmp_path, "ca")
    server = ca.issue("gateway", server=True)
    clients = Authority(tmp_path, "clients")
    billing = clients.issue("billing", server=False)
    return (
        ca,
        billing,
        Settings(
            database_url=sqlite_url,
            tls_cert=str(server.cert),
            tls_key=str(server.key),
            grpc_client_ca=str(clients.path),
        ),
    )


async def submit(
    target: str, credentials: grpc.ChannelCredentials, key: str | None, event_id: str
) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {key}")] if key else []
    async with grpc.aio.secure_channel(target, credentials, options=NAME) as channel:
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        request = SubmitBatchRequest(events=[Event(id=event_id, name="tls")])
        try:
            await stub.SubmitBatch(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


async def test_https_ingestion_and_grpc_over_tls(tmp_path: Path, sqlite_url: str) -> None:
    ca = Authority(tmp_path, "ca")
    server = ca.issue("gateway", server=True)
    settings = Settings(database_url=sqlite_url, tls_cert=str(server.cert), tls_key=str(server.key))
    async with started(settings) as gw:
        url = f"https://127.0.0.1:{gw.bound.http_port}"
        event = {"external_user_id": "u1", "name": "over_tls"}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                url + "/api/v1/events",
                json=event,
                headers={"Authorization": f"Bearer {gw.api_key}"},
                ssl=client_context(ca),
            ) as r:
                assert r.status == 202, await r.text()
            # A client that does not trust the CA stops at the handshake.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(url + "/healthz", ssl=ssl.create_default_context())
        _, writer = await asyncio.open_connection(
            "127.0.0.1", gw.bound.http_port, ssl=client_context(ca), server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        writer.close()
        old = client_context(ca)  # a TLS 1.1 client
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", gw.bound.http_port, ssl=old)

        target = f"127.0.0.1:{gw.bound.grpc_port}"
        trusted = grpc.ssl_channel_credentials(ca.pem)
        assert await submit(target, trusted, gw.api_key, "g-1") == grpc.StatusCode.OK
        untrusted = grpc.ssl_channel_credentials(Authority(tmp_path, "other").pem)
        assert await submit(target, untrusted, gw.api_key, "g-2") == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(target) as channel:
            stub = gateway_pb2_grpc.EventGatewayStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.SubmitBatch(SubmitBatchRequest(), timeout=5)
        assert sorted(e.name for e in await gw.stored()) == ["over_tls", "tls"]


async def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventgw.access")
    ca, billing, settings = mutual_tls(tmp_path, sqlite_url)
    stranger = Authority(tmp_path, "stranger").issue("billing", server=False)
    async with started(settings) as gw:
        target = f"127.0.0.1:{gw.bound.grpc_port}"
        good = grpc.ssl_channel_credentials(ca.pem, billing.key_pem, billing.cert_pem)
        assert await submit(target, good, gw.api_key, "m-1") == grpc.StatusCode.OK
        # The certificate authenticates the caller's channel; the API key is still required.
        assert await submit(target, good, None, "m-2") == grpc.StatusCode.UNAUTHENTICATED
        none = grpc.ssl_channel_credentials(ca.pem)
        assert await submit(target, none, gw.api_key, "m-3") == grpc.StatusCode.UNAVAILABLE
        other = grpc.ssl_channel_credentials(ca.pem, stranger.key_pem, stranger.cert_pem)
        assert await submit(target, other, gw.api_key, "m-4") == grpc.StatusCode.UNAVAILABLE
        assert [e.id for e in await gw.stored()] == ["m-1"]
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "eventgw.access"
    ]
    subjects = {line.get("client_subject") for line in lines if line.get("transport") == "grpc"}
    assert len(subjects) == 1
    subject = subjects.pop()
    assert subject is not None and "CN=billing" in subject and "O=Example" in subject


async def healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """GET /healthz on an open (kept-alive) connection; the status."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def test_certificates_reload_on_sighup_without_dropping_connections(
    tmp_path: Path,
) -> None:
    first, second = Authority(tmp_path, "first"), Authority(tmp_path, "second")
    server = first.issue("gateway", server=True, stem="server")
    url = f"sqlite:///{tmp_path / 'tls.db'}"
    project_id, key, _ = await provision(url)
    proc = GatewayProcess(
        url,
        env={"EVENTGW_LOG_LEVEL": "warning"},
        extra_args=("--tls-cert", str(server.cert), "--tls-key", str(server.key)),
    )
    await asyncio.to_thread(proc.start)
    try:
        target = f"127.0.0.1:{proc.grpc_port}"
        # Connections made under the first certificate, kept open across the reload.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", proc.http_port, ssl=client_context(first), server_hostname="localhost"
        )
        assert await healthz(reader, writer) == 200
        channel = grpc.aio.secure_channel(
            target, grpc.ssl_channel_credentials(first.pem), options=NAME
        )
        stub = gateway_pb2_grpc.EventGatewayStub(channel)
        auth = [("authorization", f"Bearer {key}")]
        await stub.SubmitBatch(
            SubmitBatchRequest(events=[Event(id="r-1", name="r")]), metadata=auth
        )
        trusts_second = grpc.ssl_channel_credentials(second.pem)
        assert await submit(target, trusts_second, key, "r-x") == grpc.StatusCode.UNAVAILABLE

        second.issue("gateway", server=True, stem="server")  # the files swapped in place
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)

        async def second_served() -> bool:
            try:
                _, w = await asyncio.open_connection(
                    "127.0.0.1",
                    proc.http_port,
                    ssl=client_context(second),
                    server_hostname="localhost",
                )
            except (ssl.SSLError, ConnectionError):
                return False
            w.close()
            return True

        await eventually(second_served, limit_s=30)
        assert await submit(target, trusts_second, key, "r-2") == grpc.StatusCode.OK
        # The connections from before the reload still serve.
        assert await healthz(reader, writer) == 200
        await stub.SubmitBatch(
            SubmitBatchRequest(events=[Event(id="r-3", name="r")]), metadata=auth
        )
        await channel.close()
        writer.close()
    finally:
        await asyncio.to_thread(proc.terminate)
    assert sorted(e.id for e in await stored_events(url, project_id)) == ["r-1", "r-2", "r-3"]


async def test_the_client_for_internal_services_over_tls_and_mutual_tls(
    tmp_path: Path, sqlite_url: str
) -> None:
    from gateway.client import AsyncEventClient, EventClient, Rejection

    ca, billing, settings = mutual_tls(tmp_path, sqlite_url)
    async with started(settings) as gw:
        target = f"127.0.0.1:{gw.bound.grpc_port}"
        # Paths (a PEM file each) for the threaded client, PEM bytes for the asyncio one.
        with EventClient(
            target,
            gw.api_key,
            root_certificates=ca.path,
            certificate_chain=billing.cert,
            private_key=billing.key,
            channel_options=NAME,
        ) as client:
            client.track("signed_up", event_id="c-1")
            assert await asyncio.to_thread(client.flush, 30)
        async with AsyncEventClient(
            target,
            gw.api_key,
            root_certificates=ca.pem,
            certificate_chain=billing.cert_pem,
            private_key=billing.key_pem,
            channel_options=NAME,
        ) as aclient:
            await aclient.track("signed_up", event_id="c-2")
            assert await aclient.flush(30)
        # Without a client certificate the handshake is refused: UNAVAILABLE, retried as any
        # outage is, and reported once the attempts run out.
        refused: list[Rejection] = []
        async with AsyncEventClient(
            target,
            gw.api_key,
            root_certificates=ca.pem,
            channel_options=NAME,
            max_attempts=2,
            on_rejected=refused.extend,
        ) as anonymous:
            await anonymous.track("signed_up", event_id="c-3")
            assert await anonymous.flush(30)
        assert [(r.event_id, r.code) for r in refused] == [("c-3", "UNAVAILABLE")]
        assert sorted(e.id for e in await gw.stored()) == ["c-1", "c-2"]
