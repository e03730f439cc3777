"""Whether credential values may go to a client over the transport it used (§9.8.2, §14).

§14: runtimes "MUST issue [credentials] over authenticated, encrypted transports
only". A client may be reached over several hops (a WebSocket to the gateway,
then gRPC to the core); each hop must be encrypted (TLS) or stay on this host
(loopback: all of 127.0.0.0/8 and ::1, or a Unix socket). Otherwise the
client is treated like one that did not negotiate `provisioned_credentials`:
it gets jobs, events and listings without credential values, and the core
logs why. An operator who knows better (a private network, a TLS-terminating
proxy in front) opts in with `auth.plaintext_credentials = true`.

Spoofing: the gateway describes its client's hop in Connect metadata
(`arcp-client-tls`, `arcp-client-address`). The core adds that hop to the one
it sees itself (the gRPC peer, and whether that call is over TLS), and
credentials flow only if every hop qualifies. So the metadata can only take
credentials away: a client that connects to the core directly over plaintext
from another host and claims `arcp-client-tls: true` is still judged by its
own, real hop.

Pure functions: no grpc, no sockets; the servicers feed them (`call_hops` reads a
gRPC call through the three methods it names).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

__all__ = [
    "CLIENT_ADDRESS_HEADER",
    "CLIENT_TLS_HEADER",
    "UNIX",
    "WITHHELD",
    "Hop",
    "call_hops",
    "credentials_allowed",
    "gateway_hop",
    "grpc_peer_host",
    "is_local",
]

CLIENT_TLS_HEADER = "arcp-client-tls"  # "true" when the gateway's client socket is TLS (wss)
CLIENT_ADDRESS_HEADER = "arcp-client-address"  # the gateway client's IP address
UNIX = "unix"  # the host of a peer on a Unix socket: this machine
#: The warning logged, with the client's name or address, when credentials are withheld.
WITHHELD = (
    "credentials withheld from %s: plaintext transport from a non-loopback peer"
    " (§14; use TLS, or set auth.plaintext_credentials = true)"
)


@dataclass(frozen=True, slots=True)
class Hop:
    """One leg between the client and the core: the far end's host (an IP address,
    `UNIX`, or "" when unknown) and whether the leg is encrypted."""

    host: str
    tls: bool


def is_local(host: str) -> bool:
    """A peer on this machine: loopback (127.0.0.0/8, ::1, or IPv4-mapped loopback)
    or a Unix socket. Anything unknown or unparsable is not."""
    if host == UNIX:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def credentials_allowed(hops: Sequence[Hop], *, plaintext_ok: bool) -> bool:
    """§14: credential values may reach this client (every hop encrypted or local),
    or the operator opted in to plaintext."""
    return plaintext_ok or all(hop.tls or is_local(hop.host) for hop in hops)


def grpc_peer_host(peer: str) -> str:
    """The host of a gRPC `context.peer()`: `ipv4:10.0.0.5:4242` → `10.0.0.5`,
    `ipv6:[::1]:4242` (or its %-encoded form) → `::1`, `unix:…` → `UNIX`; "" if
    unrecognised (then it is not local)."""
    kind, _, rest = unquote(peer).partition(":")
    if kind == "unix" or kind == "unix-abstract":
        return UNIX
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")]
    return ""


def gateway_hop(metadata: Iterable[tuple[str, str | bytes]]) -> Hop | None:
    """The client hop a gateway described in Connect metadata, or None if it did not."""
    tls: str | None = None
    address = ""
    for key, value in metadata:
        text = value.decode() if isinstance(value, bytes) else value
        if key == CLIENT_TLS_HEADER:
            tls = text
        elif key == CLIENT_ADDRESS_HEADER:
            address = text
    if tls is None and not address:
        return None
    return Hop(address, tls == "true")


class CallContext(Protocol):
    """What `call_hops` reads of a gRPC servicer context."""

    def peer(self) -> str: ...

    def auth_context(self) -> Mapping[str, Iterable[bytes]]: ...

    def invocation_metadata(self) -> Iterable[tuple[str, str | bytes]] | None: ...


def call_hops(context: CallContext) -> list[Hop]:
    """The hops of one gRPC call to the core: the call's own (its peer, and whether it
    came over TLS by gRPC's record of the transport), then the client hop a gateway
    described in its metadata, which can only take credentials away."""
    over_tls = context.auth_context().get("transport_security_type") == [b"ssl"]
    hops = [Hop(grpc_peer_host(context.peer()), over_tls)]
    described = gateway_hop(context.invocation_metadata() or ())
    if described is not None:
        hops.append(described)
    return hops
