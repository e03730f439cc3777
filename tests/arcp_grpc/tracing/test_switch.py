"""Traces are off unless the standard OTEL_* variables ask for them, and off they cost
no import of OpenTelemetry; a setting we cannot honour stops `serve` with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve_process import ARCP_GRPC, clean_env

# Everything `serve` loads (core, gateway, servicers, runtime), then the switch.
_PROBE = """
import sys
import arcp_grpc.process.serve
from arcp_grpc import tracing
assert tracing.configure() is None
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
"""


def _otel_free_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "settings",
    [
        {},  # no endpoint: the default
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_TRACES_EXPORTER": "NONE",
        },
    ],
)
def test_off_nothing_of_opentelemetry_is_imported(settings: dict[str, str]) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=_otel_free_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
    ],
)
def test_a_setting_that_cannot_be_honoured_stops_serve_with_exit_2(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    env = _otel_free_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", **settings)
    served = subprocess.run(
        [ARCP_GRPC, "serve", "--grpc-port", "0", "--gateway-port", "0", "--no-metrics"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert served.returncode == 2, (served.stdout, served.stderr)
    assert named in served.stdout + served.stderr
    assert os.listdir(tmp_path) == []  # it stopped before touching the data directory
