"""`ConnectStream`, the core's side of one Connect stream as the embedded gateway drives it
(`arcp_grpc.service.connection`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from arcp_grpc.server import RunningCore
from arcp_grpc.v1 import errors_pb2
from arcp_grpc.v1 import session_service_pb2 as pb


async def _next(frames: AsyncIterator[bytes]) -> list[pb.ConnectResponse]:
    """The next message of the stream, unbatched (`ConnectResponse.frames`)."""
    message = pb.ConnectResponse.FromString(await asyncio.wait_for(anext(frames), 5.0))
    return list(message.frames) or [message]


def _hello(token: str = "tok-alice") -> pb.ConnectRequest:
    request = pb.ConnectRequest(id="01HELLO0000000000000000000")
    request.hello.client.name = "connect-stream-test"
    request.hello.auth.token = token
    request.hello.capabilities.encodings.append("json")
    return request


async def test_frames_in_by_call_and_out_by_iteration(core: RunningCore) -> None:
    stream = core.session_service.open_stream()
    frames = stream.frames()
    assert await stream.receive(_hello())
    [reply] = await _next(frames)
    assert reply.WhichOneof("frame") == "welcome"
    assert reply.welcome.session_id.startswith("sess_")
    await frames.aclose()


async def test_once_the_reader_is_gone_no_frame_is_taken(core: RunningCore) -> None:
    """A cancelled reader (the client left) ends the stream: later frames are refused,
    not handled with their replies queued where nobody reads them."""
    stream = core.session_service.open_stream()
    frames = stream.frames()
    assert await stream.receive(_hello())
    [welcome] = await _next(frames)
    assert welcome.HasField("welcome")
    waiting = asyncio.create_task(_next(frames))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    ping = pb.ConnectRequest(id="01PING00000000000000000000")
    ping.ping.nonce = "n1"
    assert not await stream.receive(ping)


async def test_a_refused_handshake_ends_the_stream(core: RunningCore) -> None:
    stream = core.session_service.open_stream()
    frames = stream.frames()
    assert not await stream.receive(_hello("tok-nobody"))
    [error] = await _next(frames)
    assert error.error.error.code == errors_pb2.ERROR_CODE_UNAUTHENTICATED
    assert [frame async for frame in frames] == []  # and nothing after it


async def test_every_client_frame_type_has_a_handler(core: RunningCore) -> None:
    """The dispatch table routes each `ConnectRequest` frame type (hello and resume to
    the refusal a second handshake gets); an unrouted type would read as unrecognised."""
    stream = core.session_service.open_stream()
    frame_types = {f.name for f in pb.ConnectRequest.DESCRIPTOR.oneofs_by_name["frame"].fields}
    assert set(stream._handlers) == frame_types
