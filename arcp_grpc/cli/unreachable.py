"""Why the core cannot be reached, in words the user can act on.

gRPC reports a refused connection, a server that speaks another protocol and a failed TLS
handshake as one status (UNAVAILABLE) with a raw detail line. The CLI names the likely
cause instead: a failed handshake with its reason, and an address that answers HTTP/1.1
(the gateway's port, 7401 by default, given where the core's gRPC port belongs) as exactly
that, rather than suggesting ``--ca``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

__all__ = ["PROBE_TIMEOUT", "unreachable"]

PROBE_TIMEOUT = 1.0  # seconds for the HTTP/1.1 probe; it runs only once a call has failed


def unreachable(address: str, detail: str, *, ca_file: str = "") -> str:
    """One line saying why `address` did not answer gRPC (`detail` is gRPC's own)."""
    where = f"the core at {address}"
    if "handshake failed" in detail.lower():
        return f"TLS handshake with {where} failed: {_handshake_cause(detail, ca_file)}"
    speaks_http = _http1_server(address)
    if speaks_http == "gateway":
        return (
            f"{address} is an ARCP gateway's port (WebSocket, ws://{address}/arcp), not the "
            "core's gRPC port: pass --address with the core's gRPC address, which `serve` "
            "prints (gRPC 127.0.0.1:7400 by default)"
        )
    if speaks_http == "http":
        return (
            f"{address} answers HTTP/1.1, not gRPC: pass --address with the core's gRPC "
            "address, which `serve` prints (gRPC 127.0.0.1:7400 by default)"
        )
    hint = "" if ca_file else " (if the core serves TLS, pass --ca)"
    return f"cannot reach {where}: {detail}{hint}"


def _handshake_cause(detail: str, ca_file: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        return f"its certificate is not signed by the CA in {ca_file} (--ca)"
    if "WRONG_VERSION_NUMBER" in detail:
        return "it does not serve TLS; drop --ca (and ARCP_TLS_CA)"
    return detail.rsplit("SSL_ERROR_SSL: ", 1)[-1]


def _http1_server(address: str) -> str:
    """``gateway`` when `address` answers the gateway's health check, ``http`` for any
    other HTTP/1.x answer, ``""`` when nothing (or not HTTP) answers."""
    url = f"http://{address}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:
            body = response.read(4096)
    except urllib.error.HTTPError as exc:  # an HTTP server, whatever its answer
        body = exc.read(4096)
    except (OSError, ValueError):  # refused, reset, timed out, not HTTP, a bad address
        return ""
    try:
        health = json.loads(body)
    except ValueError:
        return "http"
    return "gateway" if isinstance(health, dict) and "gateway" in health else "http"
