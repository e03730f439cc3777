"""§9.8.2, §14: credential values only over encrypted transports, or to this host.

The check is pure (`arcp_grpc.service.transport_policy`), tested here on its inputs;
then the stripped path end to end over real sockets, driven through the same
inputs: the hop a gateway describes in Connect metadata (every test peer is
on loopback, and all of 127.0.0.0/8 is loopback, so that is the one input a
test can make non-local), and the operator's opt-in."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from arcp_grpc.service.transport_policy import (
    CLIENT_ADDRESS_HEADER,
    CLIENT_TLS_HEADER,
    UNIX,
    Hop,
    credentials_allowed,
    gateway_hop,
    grpc_peer_host,
    is_local,
)
from arcp_grpc.v1 import job_service_pb2 as pb
from arcp_grpc.v1 import session_service_pb2 as session_pb
from arcp_grpc.v1 import session_service_pb2_grpc
from gateway.links import GrpcLink
from tests.conftest import SAFETY, SPENDING, CoreFactory, bearer, new_stub, submit_request

REMOTE = "203.0.113.9"  # TEST-NET-3: never routed, never this host


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback (a dual-stack socket)
        (UNIX, True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("::ffff:10.0.0.5", False),
        ("fe80::1%eth0", False),
        ("0.0.0.0", False),
        ("", False),  # unknown is not local
        ("localhost", False),  # a name, not an address: never trusted
        ("not an address", False),
    ],
)
def test_is_local(host: str, local: bool) -> None:
    assert is_local(host) is local


@pytest.mark.parametrize(
    ("hops", "plaintext_ok", "allowed"),
    [
        ([Hop("127.0.0.1", False)], False, True),
        ([Hop(REMOTE, True)], False, True),
        ([Hop(REMOTE, False)], False, False),
        ([Hop(REMOTE, False)], True, True),  # the operator's explicit opt-in
        # Through a gateway on this host: its client's hop decides.
        ([Hop("127.0.0.1", False), Hop(REMOTE, True)], False, True),
        ([Hop("127.0.0.1", False), Hop(REMOTE, False)], False, False),
        # A remote gateway over plaintext leaks on its own hop, whatever its client used.
        ([Hop("10.0.0.7", False), Hop(REMOTE, True)], False, False),
        # Spoofing: a remote client on plaintext gRPC claiming an encrypted client hop.
        ([Hop(REMOTE, False), Hop("127.0.0.1", True)], False, False),
        ([], False, True),  # in process: no hop at all
    ],
)
def test_credentials_allowed(hops: list[Hop], plaintext_ok: bool, allowed: bool) -> None:
    assert credentials_allowed(hops, plaintext_ok=plaintext_ok) is allowed


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:50412", "127.0.0.1"),
        ("ipv4:10.1.2.3:443", "10.1.2.3"),
        ("ipv6:[::1]:50412", "::1"),
        ("ipv6:%5B::1%5D:50412", "::1"),
        ("ipv6:[::ffff:10.0.0.5]:7", "::ffff:10.0.0.5"),
        ("unix:/run/arcp.sock", UNIX),
        ("unix-abstract:arcp", UNIX),
        ("somethingelse:1.2.3.4", ""),
        ("", ""),
    ],
)
def test_grpc_peer_host(peer: str, host: str) -> None:
    assert grpc_peer_host(peer) == host


def test_gateway_hop() -> None:
    assert gateway_hop([("authorization", "Bearer x")]) is None
    described = [(CLIENT_TLS_HEADER, "false"), (CLIENT_ADDRESS_HEADER, REMOTE)]
    assert gateway_hop(described) == Hop(REMOTE, False)
    assert gateway_hop([(CLIENT_TLS_HEADER, b"true")]) == Hop("", True)


# -- over real sockets ----------------------------------------------------------------

_REMOTE_PLAINTEXT = ((CLIENT_TLS_HEADER, "false"), (CLIENT_ADDRESS_HEADER, REMOTE))
_REMOTE_TLS = ((CLIENT_TLS_HEADER, "true"), (CLIENT_ADDRESS_HEADER, REMOTE))


async def _submitted(address: str, described: tuple[tuple[str, str], ...]) -> pb.SubmitJobResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        request = submit_request("echo", {}, lease=SPENDING)
        response: pb.SubmitJobResponse = await new_stub(channel).SubmitJob(
            request, metadata=bearer() + described
        )
        return response


async def test_job_service_withholds_credentials_from_a_remote_plaintext_client(
    make_core: CoreFactory,
) -> None:
    core = await make_core()
    plain = await _submitted(core.grpc_address, _REMOTE_PLAINTEXT)
    assert plain.accepted.job_id
    assert list(plain.accepted.credentials) == []  # as if it had not asked
    encrypted = await _submitted(core.grpc_address, _REMOTE_TLS)
    assert len(encrypted.accepted.credentials) == 1
    local = await _submitted(core.grpc_address, ())
    assert len(local.accepted.credentials) == 1


async def test_the_operator_may_opt_in_to_plaintext(make_core: CoreFactory) -> None:
    core = await make_core(plaintext_credentials=True)
    response = await _submitted(core.grpc_address, _REMOTE_PLAINTEXT)
    assert len(response.accepted.credentials) == 1


def _hello() -> session_pb.ConnectRequest:
    request = session_pb.ConnectRequest(id="01HELLO0000000000000000000")
    request.hello.client.name = "transport-test"
    request.hello.auth.token = "tok-alice"
    request.hello.capabilities.encodings.append("json")
    request.hello.capabilities.features.append("provisioned_credentials")
    return request


async def _negotiated(link: GrpcLink, client: Hop) -> list[str]:
    """The features a session opened through the gateway's link for `client` gets."""
    stream = link.connect(client)
    try:
        await stream.write(_hello())
        reply = await asyncio.wait_for(anext(aiter(stream)), SAFETY)
        frame = reply.frames[0] if reply.frames else reply
        assert frame.HasField("welcome"), frame
        return list(frame.welcome.capabilities.features)
    finally:
        stream.cancel()


async def test_a_session_through_the_gateway_for_a_remote_plaintext_client(
    make_core: CoreFactory,
) -> None:
    """The gateway's link tells the core its client's hop; the session of a remote
    client on plain ws is opened without `provisioned_credentials`."""
    core = await make_core()
    link = GrpcLink(core.grpc_address)
    try:
        assert await _negotiated(link, Hop(REMOTE, tls=False)) == []
        assert await _negotiated(link, Hop(REMOTE, tls=True)) == ["provisioned_credentials"]
        assert await _negotiated(link, Hop("127.0.0.1", tls=False)) == ["provisioned_credentials"]
    finally:
        await link.close()


async def test_a_direct_session_cannot_claim_more_than_its_own_hop(
    make_core: CoreFactory,
) -> None:
    """A client on Connect itself may send the gateway's headers: they only restrict."""
    core = await make_core()
    async with grpc.aio.insecure_channel(core.grpc_address) as channel:
        stub = session_service_pb2_grpc.SessionServiceStub(channel)
        call = stub.Connect(metadata=_REMOTE_PLAINTEXT)
        await call.write(_hello())
        reply = await asyncio.wait_for(call.read(), SAFETY)
        assert isinstance(reply, session_pb.ConnectResponse)
        frame = reply.frames[0] if reply.frames else reply
        assert list(frame.welcome.capabilities.features) == []
        call.cancel()
