"""The public surface of the core is deliberate: each public module's `__all__`
is pinned here, so adding or removing a name is a visible decision."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import arcp_grpc
import gateway

PUBLIC: dict[str, set[str]] = {
    "arcp_grpc": {"ARCPError", "__version__"},
    "arcp_grpc.agents": {
        "AgentFunction",
        "AgentRegistry",
        "ModelFunction",
        "RegisteredAgent",
        "ToolFunction",
    },
    "arcp_grpc.auth": {"PROFILE_NAMES", "Authenticator", "Principal", "parse_token_target"},
    "arcp_grpc.context": {"ChildJob", "JobContext", "ResultStream"},
    "arcp_grpc.credentials": {"CredentialProvisioner", "CredentialRequest", "DevProvisioner"},
    "arcp_grpc.demo_agents": {"demo_registry"},
    "arcp_grpc.errors": {
        "ARCPError",
        "AgentNotAvailable",
        "AgentVersionNotAvailable",
        "BudgetExhausted",
        "Cancelled",
        "DuplicateKey",
        "HeartbeatLost",
        "InternalError",
        "InvalidRequest",
        "JobNotFound",
        "LeaseExpired",
        "LeaseSubsetViolation",
        "NodeUnavailable",
        "PermissionDenied",
        "QuotaExceeded",
        "ResumeWindowExpired",
        "StoreUnreachable",
        "Timeout",
        "Unauthenticated",
        "error_class",
    },
    "arcp_grpc.client": {
        "RECONNECT",
        "Agent",
        "Client",
        "Event",
        "Job",
        "JobInfo",
        "Outcome",
        "RetryPolicy",
        "Run",
        "SubmitOptions",
        "Submission",
        "Submitted",
        "Unavailable",
        "Watch",
        "Worker",
        "plain",
    },
    "arcp_grpc.grpc_status": {
        "ERROR_DOMAIN",
        "GRPC_CODES",
        "from_rpc_error",
        "from_status",
        "rich_status",
        "to_status",
    },
    "arcp_grpc.server": {"CoreConfig", "CoreHealth", "RunningCore", "start_core"},
    "arcp_grpc.worker": {
        "LIBRARY",
        "WORK_METHOD",
        "RemoteChild",
        "RemoteHost",
        "WorkerRefused",
        "WorkerStream",
        "run_worker",
    },
    "arcp_grpc.store.postgres": {"PostgresStore"},
    "arcp_grpc.store.sqlite": {"SQLiteStore", "WAL_LIMIT"},
    "arcp_grpc.store": {
        "ClusterMembership",
        "ClusterStore",
        "CredentialEntry",
        "CredentialStore",
        "EventRow",
        "HandedOff",
        "Handoff",
        "IdempotencyClaim",
        "IdempotencyConflict",
        "JobChanges",
        "JobPage",
        "JobQuery",
        "JobRow",
        "JobStore",
        "NodeNotAlive",
        "NodeRow",
        "OverCap",
        "SessionFollow",
        "SessionFrame",
        "SessionRow",
        "SessionStore",
        "Store",
        "StoreError",
        "StoreFailed",
        "StoreRejected",
        "StoreUnavailable",
        "StoreWaitExpired",
        "UnrevokedCredential",
    },
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_public_exports_are_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert set(module.__all__) == PUBLIC[module_name]
    assert len(module.__all__) == len(set(module.__all__))


def _modules() -> list[str]:
    """Every module of the core and the gateway, the generated stubs aside."""
    return sorted(
        info.name
        for package in (arcp_grpc, gateway)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        if not info.name.startswith("arcp_grpc.v1")
    )


@pytest.mark.parametrize("module_name", _modules())
def test_every_module_declares_all_and_defines_it(module_name: str) -> None:
    """STYLE: every module has `__all__`, and each name in it exists."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert isinstance(names, list | tuple), f"{module_name} has no __all__"
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []
