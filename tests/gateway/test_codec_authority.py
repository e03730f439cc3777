"""A job's authority in server frames (``gateway/_authority.py``): the lease (§9.2)
and its constraints (§9.5), the budget (§9.6: numbers in SPEC, ``"USD:5.00"``
tokens in SDK_COMPAT) and the provisioned credentials (§9.8: SDK_COMPAT drops
schemes the published client cannot parse).
"""

from __future__ import annotations

import json

from arcp._messages.execution import JobAcceptedPayload

from arcp_grpc.v1 import session_pb2
from gateway.codec import WIRE_PROFILE_SDK_COMPAT, WIRE_PROFILE_SPEC, Dialect, encode_server_frame
from tests.gateway.codec_samples import REQ, SERVER_FRAMES, ConnectResponse, render


def test_budget_per_profile_is_exact() -> None:
    spec = encode_server_frame(
        SERVER_FRAMES["accepted"], profile=WIRE_PROFILE_SPEC, dialect=Dialect()
    )
    assert '"budget":{"USD":5.00,"credits":1000}' in spec  # §7.1: numbers, exact tokens
    sdk = render("accepted", WIRE_PROFILE_SDK_COMPAT)["payload"]
    assert sdk["budget"] == {"USD": "USD:5.00", "credits": "credits:1000"}
    unspecified = encode_server_frame(
        SERVER_FRAMES["accepted"], profile=session_pb2.WIRE_PROFILE_UNSPECIFIED, dialect=Dialect()
    )
    assert unspecified == spec


def test_accepted_payload_has_request_id_and_credentials() -> None:
    payload = render("accepted")["payload"]
    assert payload["request_id"] == REQ
    assert payload["lease"] == {"cost.budget": ["USD:5.00"], "fs.read": ["/ws/**"]}
    assert payload["lease_constraints"] == {"expires_at": "2026-05-13T20:42:13Z"}
    assert payload["credentials"] == [
        {
            "id": "cred_1",
            "scheme": "bearer",
            "value": "sk-virt",
            "endpoint": "https://gw/v1",
            "profile": "openai",
            "constraints": {"model.use": ["tier-fast/*"], "expires_at": "2026-05-13T20:42:13Z"},
        }
    ]


def test_sdk_profile_drops_unknown_credential_schemes() -> None:
    msg = ConnectResponse()
    msg.CopyFrom(SERVER_FRAMES["accepted"])
    msg.accepted.credentials.add(id="c2", scheme="signed_url", value="v", endpoint="https://x")
    sdk = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SDK_COMPAT, dialect=Dialect()))
    assert [c["id"] for c in sdk["payload"]["credentials"]] == ["cred_1"]
    JobAcceptedPayload.model_validate(sdk["payload"])
    spec = json.loads(encode_server_frame(msg, profile=WIRE_PROFILE_SPEC, dialect=Dialect()))
    assert [c["id"] for c in spec["payload"]["credentials"]] == ["cred_1", "c2"]
