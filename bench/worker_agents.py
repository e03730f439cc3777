"""The agents `arcp-grpc worker` hosts in the remote-worker scenario (`bench.remote_worker`):
the demo `echo`, unchanged, under the name `remote-echo`, so that both sides of the
comparison run the very same agent code."""

from __future__ import annotations

from arcp_grpc.agents import AgentRegistry
from arcp_grpc.demo_agents import echo

__all__ = ["registry"]

registry = AgentRegistry()
registry.register("remote-echo", "1.0.0", echo)
