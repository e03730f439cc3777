"""The channel to the core, who the client is, and the JobService calls on that channel.

TLS as the CLI has always done it: a CA bundle (``ca``) verifies the core's certificate;
without one the channel is plaintext (a core on loopback, or behind a proxy that
terminates TLS). The bearer token is the caller's principal (§6.1), sent on every call.

The calls that carry a `JobAccepted` (SubmitJob, RunJob's first message, SubmitJobs'
answers) return their bytes undecoded, so the client keeps the acceptance exactly as the
core sent it (§7.2: a replay is the first acceptance, byte for byte). WatchJob's frames
come as bytes too, so a follower reads WatchJob and RunJob alike (`following`); the
others decode with the generated stubs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from arcp_grpc.errors import Unauthenticated
from arcp_grpc.v1 import job_service_pb2, job_service_pb2_grpc

if TYPE_CHECKING:
    from arcp_grpc.v1.job_service_pb2_grpc import JobServiceAsyncStub

__all__ = ["DEFAULT_OPTIONS", "Transport"]

_SERVICE = "/arcp.v1.JobService/"

# gRPC's own reconnect backoff starts at 1 s and grows to 120 s; a restarted core should
# be found again within about two seconds (a resumed `watch` waits on it).
DEFAULT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class Transport:
    """One channel and the caller's credentials; the client's only handle on gRPC."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None,
        ca: str | Path | bytes | None,
        options: Sequence[tuple[str, Any]] = (),
        env: Mapping[str, str] = os.environ,
    ) -> None:
        token = token or env.get("ARCP_TOKEN")
        if not token:
            raise Unauthenticated("no token: pass token= or set ARCP_TOKEN")
        self.address = address
        self.secure = ca is not None
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),)
        merged = dict(DEFAULT_OPTIONS)
        merged.update(options)
        if ca is None:
            self.channel = aio.insecure_channel(address, options=list(merged.items()))
        else:
            roots = ca if isinstance(ca, bytes) else Path(ca).read_bytes()
            credentials = grpc.ssl_channel_credentials(roots)
            self.channel = aio.secure_channel(address, credentials, list(merged.items()))
        self.stub: JobServiceAsyncStub = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.submit_job: aio.UnaryUnaryMultiCallable[job_service_pb2.SubmitJobRequest, bytes] = (
            self.channel.unary_unary(
                _SERVICE + "SubmitJob",
                request_serializer=job_service_pb2.SubmitJobRequest.SerializeToString,
            )
        )
        self.run_job: aio.UnaryStreamMultiCallable[job_service_pb2.RunJobRequest, bytes] = (
            self.channel.unary_stream(
                _SERVICE + "RunJob",
                request_serializer=job_service_pb2.RunJobRequest.SerializeToString,
            )
        )
        self.watch_job: aio.UnaryStreamMultiCallable[job_service_pb2.WatchJobRequest, bytes] = (
            self.channel.unary_stream(
                _SERVICE + "WatchJob",
                request_serializer=job_service_pb2.WatchJobRequest.SerializeToString,
            )
        )
        self.submit_jobs: aio.StreamStreamMultiCallable[
            job_service_pb2.SubmitJobsRequest, bytes
        ] = self.channel.stream_stream(
            _SERVICE + "SubmitJobs",
            request_serializer=job_service_pb2.SubmitJobsRequest.SerializeToString,
        )

    async def close(self) -> None:
        await self.channel.close()
