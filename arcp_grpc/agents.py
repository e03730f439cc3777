"""The agent API: register in-process agents, tools and models by name.

An agent is an async function ``async def agent(ctx: JobContext, input) ->
result``. It is registered under a name and a version (§7.5); one version
of each name is the default a bare name resolves to. Tools and models are
registered the same way and reached by agents only through the job's lease
(``ctx.call_tool``, ``ctx.call_model``), so every call is authorised first
(§9.3).

    registry = AgentRegistry()

    @registry.agent("echo", version="1.0.0", default=True)
    async def echo(ctx: JobContext, input: Any) -> Any:
        await ctx.log("echoing")
        return input
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arcp_grpc.base.agentref import AgentRef
from arcp_grpc.errors import AgentNotAvailable, AgentVersionNotAvailable, InvalidRequest
from arcp_grpc.v1 import jobs_pb2

if TYPE_CHECKING:
    from arcp_grpc.context import JobContext

__all__ = [
    "AgentFunction",
    "AgentRegistry",
    "ModelFunction",
    "RegisteredAgent",
    "ToolFunction",
]

AgentFunction = Callable[["JobContext", Any], Awaitable[Any]]
ToolFunction = Callable[[Any], Awaitable[Any]]
ModelFunction = Callable[[Any], Awaitable[Any]]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_VERSION = re.compile(r"[a-zA-Z0-9.+_-]+\Z")


@dataclass(frozen=True, slots=True)
class RegisteredAgent:
    """One agent at one version."""

    name: str
    version: str
    fn: AgentFunction

    @property
    def ref(self) -> str:
        """The resolved reference, ``name@version`` (§7.5)."""
        return f"{self.name}@{self.version}"


@dataclass(slots=True)
class _AgentVersions:
    versions: dict[str, RegisteredAgent] = field(default_factory=dict)
    default: str = ""


class AgentRegistry:
    """Agents (by name and version), tools and models available to jobs."""

    def __init__(self) -> None:
        self._agents: dict[str, _AgentVersions] = {}
        self._tools: dict[str, ToolFunction] = {}
        self._models: dict[str, ModelFunction] = {}

    # -- agents ----------------------------------------------------------

    def register(
        self, name: str, version: str, fn: AgentFunction, *, default: bool = False
    ) -> RegisteredAgent:
        """Register `fn` as `name@version`; the first version of a name is its default
        until another is registered with ``default=True``."""
        if not _NAME.match(name):
            raise ValueError(f"agent name {name!r} does not match [a-z0-9][a-z0-9._-]* (§7.5)")
        if not _VERSION.match(version):
            raise ValueError(f"agent version {version!r} does not match [a-zA-Z0-9.+_-]+ (§7.5)")
        entry = self._agents.setdefault(name, _AgentVersions())
        if version in entry.versions:
            raise ValueError(f"agent {name}@{version} is already registered")
        agent = RegisteredAgent(name, version, fn)
        entry.versions[version] = agent
        if default or not entry.default:
            entry.default = version
        return agent

    def agent(
        self, name: str, *, version: str = "1.0.0", default: bool = False
    ) -> Callable[[AgentFunction], AgentFunction]:
        """Decorator form of `register`."""

        def decorate(fn: AgentFunction) -> AgentFunction:
            self.register(name, version, fn, default=default)
            return fn

        return decorate

    def resolve(self, ref: AgentRef) -> RegisteredAgent:
        """The agent a reference names: a bare name is the default version (§7.5)."""
        entry = self._agents.get(ref.name)
        if entry is None:
            raise AgentNotAvailable(
                f"agent {ref.name!r} is not registered", details={"agent": ref.name}
            )
        version = ref.version or entry.default
        agent = entry.versions.get(version)
        if agent is None:
            raise AgentVersionNotAvailable(
                f"agent {ref.name!r} has no version {version!r}",
                details={"agent": ref.name, "version": version},
            )
        return agent

    def inventory(self) -> list[jobs_pb2.AgentInfo]:
        """The agent inventory for welcome and ListAgents, sorted by name (§6.2)."""
        return [
            jobs_pb2.AgentInfo(
                name=name, versions=sorted(entry.versions), default_version=entry.default
            )
            for name, entry in sorted(self._agents.items())
        ]

    def merge(self, other: AgentRegistry) -> None:
        """Add every agent, tool and model of `other` (user agents beside the demos)."""
        for name, entry in other._agents.items():
            for version, agent in entry.versions.items():
                self.register(name, version, agent.fn, default=version == entry.default)
        for tool_name, tool in other._tools.items():
            self.register_tool(tool_name, tool)
        for model_name, model in other._models.items():
            self.register_model(model_name, model)

    # -- tools and models --------------------------------------------------

    def register_tool(self, name: str, fn: ToolFunction) -> None:
        """A tool agents call with ``ctx.call_tool`` under the `tool.call` capability."""
        if name in self._tools:
            raise ValueError(f"tool {name!r} is already registered")
        self._tools[name] = fn

    def register_model(self, name: str, fn: ModelFunction) -> None:
        """A model agents call with ``ctx.call_model`` under `model.use` (§9.7)."""
        if name in self._models:
            raise ValueError(f"model {name!r} is already registered")
        self._models[name] = fn

    def tool(self, name: str) -> ToolFunction:
        try:
            return self._tools[name]
        except KeyError:
            raise InvalidRequest(
                f"tool {name!r} is not registered", details={"tool": name}
            ) from None

    def model(self, name: str) -> ModelFunction:
        try:
            return self._models[name]
        except KeyError:
            raise InvalidRequest(
                f"model {name!r} is not registered", details={"model": name}
            ) from None
