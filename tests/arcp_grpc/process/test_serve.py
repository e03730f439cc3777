"""`arcp-grpc serve` as a process: restart keeps state, SIGTERM stops cleanly,
split core/gateway deployments, TLS for gRPC and wss, and bad configuration
fails fast with exit code 2 and a message naming the problem."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import shlex
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from arcp import ClientInfo, WebSocketTransport
from arcp._client.client import ARCPClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arcp_grpc.v1 import errors_pb2, jobs_pb2
from tests.serve_process import ServeProcess, clean_env, run_cli

_PORTS = ("--grpc-port", "0", "--gateway-port", "0", "--metrics-port", "0")
_TERMINAL = {
    jobs_pb2.JOB_STATUS_SUCCESS,
    jobs_pb2.JOB_STATUS_ERROR,
    jobs_pb2.JOB_STATUS_CANCELLED,
    jobs_pb2.JOB_STATUS_TIMED_OUT,
}


def _start(processes: list[ServeProcess], workdir: Path, *args: str) -> ServeProcess:
    process = ServeProcess(workdir, *args)
    processes.append(process)
    process.start()
    return process


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_restart_keeps_token_jobs_and_idempotency_cache(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    first = _start(processes, tmp_path, *_PORTS)
    token = first.token
    submitted = first.cli("submit", "echo", "--input", '{"x": 1}', "--key", "k-1", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = _lines(submitted.stdout)[0]["job_id"]
    assert first.cli("watch", job_id).returncode == 0
    code, _, log = first.terminate()
    assert code == 0
    assert "event loop: uvloop" in log  # the default where uvloop is installed

    second = _start(processes, tmp_path, *_PORTS)
    assert second.token == token
    listed = second.cli("jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["job_id"] for j in _lines(listed.stdout)] == [job_id]
    assert _lines(listed.stdout)[0]["status"] == "success"
    again = second.cli("submit", "echo", "--input", '{"x": 1}', "--key", "k-1", "--json")
    assert again.returncode == 0, again.stderr
    assert _lines(again.stdout)[0]["job_id"] == job_id  # replayed, not a new job (§7.2)
    conflict = second.cli("submit", "echo", "--input", '{"x": 2}', "--key", "k-1")
    assert conflict.returncode == 1
    assert conflict.stderr.startswith("arcp-grpc: DUPLICATE_KEY: ")
    assert "Traceback" not in conflict.stderr


def _running(process: ServeProcess) -> set[str]:
    listed = process.cli("jobs", "--status", "running", "--json")
    assert listed.returncode == 0, listed.stderr
    return {j["job_id"] for j in _lines(listed.stdout)}


def test_sigterm_lets_short_jobs_finish_ends_the_rest_and_leaves_a_sound_store(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    served = _start(processes, tmp_path, *_PORTS, "--shutdown-grace", "2.5")
    ids = {}
    for name, steps, interval in (("long", 1000, 0.05), ("short", 4, 0.1)):
        done = served.cli(
            "submit", "counter", "--input", json.dumps({"steps": steps, "interval": interval})
        )
        assert done.returncode == 0, done.stderr
        ids[name] = done.stdout.split()[1]
    deadline = time.monotonic() + 20
    # Only the long job must be seen running: the short one may already be done on a
    # loaded machine (a CLI call can take longer than its 0.4 s), and either way it
    # must end in success.
    while ids["long"] not in _running(served):
        assert time.monotonic() < deadline, "jobs never ran"
        time.sleep(0.05)

    code, _, err = served.terminate()
    assert code == 0, err
    assert "stopped cleanly" in err

    database = sqlite3.connect(tmp_path / "data" / "arcp.sqlite3")
    try:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = {
            job_id: (status, completed, outcome)
            for job_id, status, completed, outcome in database.execute(
                "SELECT job_id, status, completed_at, outcome FROM jobs"
            )
        }
    finally:
        database.close()
    assert set(rows) == set(ids.values())
    for status, completed, outcome in rows.values():
        assert status in _TERMINAL
        assert completed is not None
        assert outcome is not None
    assert rows[ids["short"]][0] == jobs_pb2.JOB_STATUS_SUCCESS  # finished within the grace
    long_status, _, long_outcome = rows[ids["long"]]
    assert long_status == jobs_pb2.JOB_STATUS_ERROR
    error = jobs_pb2.JobOutcome.FromString(long_outcome).error.error
    assert error.code == errors_pb2.ERROR_CODE_INTERNAL_ERROR
    assert error.retryable  # the client may resubmit it
    assert error.message.endswith("resubmit with a new idempotency key")  # not the same key


async def test_split_core_and_gateway_serve_the_published_client(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    core = _start(processes, tmp_path, "core", "--grpc-port", "0", "--metrics-port", "0")
    assert "gateway" not in core.info
    gateways = [
        _start(processes, tmp_path, "gateway", "--core", core.info["grpc"], "--gateway-port", "0")
        for _ in range(2)
    ]
    assert all("grpc" not in g.info and "metrics" not in g.info for g in gateways)
    results = []
    for gateway in gateways:  # any gateway reaches the one core
        client = ARCPClient(client=ClientInfo(name="split", version="1"), token=core.token)
        await client.connect(await WebSocketTransport.connect(gateway.info["gateway"]))
        try:
            handle = await client.submit(agent="echo", input={"via": "gateway"})
            results.append((await asyncio.wait_for(handle.done, 30)).result)
        finally:
            await client.close()
    assert results == [{"via": "gateway"}] * 2
    listed = core.cli("jobs", "--json")
    assert len(_lines(listed.stdout)) == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _echo_through(url: str, token: str, value: int) -> object:
    client = ARCPClient(client=ClientInfo(name="reuse-port", version="1"), token=token)
    await client.connect(await WebSocketTransport.connect(url))
    try:
        handle = await client.submit(agent="echo", input={"n": value})
        return (await asyncio.wait_for(handle.done, 30)).result
    finally:
        await client.close()


async def test_gateways_with_reuse_port_share_one_port(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    """`gateway.reuse_port`: two `serve gateway` processes bind the same port and both
    serve it; once one stops, the port keeps serving through the other."""
    core = _start(processes, tmp_path, "core", "--grpc-port", "0", "--metrics-port", "0")
    port = str(_free_port())
    shared = ("gateway", "--core", core.info["grpc"], "--gateway-port", port)
    gateways = [_start(processes, tmp_path, *shared, "--set", "gateway.reuse_port=true")]
    # A process that does not ask for the port to be shared is refused it, clearly.
    refused = run_cli("serve", *shared, cwd=tmp_path)
    assert refused.returncode == 2
    assert "the port is in use" in refused.stderr
    gateways.append(_start(processes, tmp_path, *shared, "--set", "gateway.reuse_port=true"))
    url = gateways[0].info["gateway"]
    assert gateways[1].info["gateway"] == url  # bound, where a plain bind was refused
    results = await asyncio.gather(*(_echo_through(url, core.token, n) for n in range(12)))
    assert results == [{"n": n} for n in range(12)]
    code, _, _ = gateways[0].terminate()
    assert code == 0
    after = [await _echo_through(url, core.token, n) for n in range(4)]
    assert after == [{"n": n} for n in range(4)]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_for_grpc_and_wss(tmp_path: Path, processes: list[ServeProcess]) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    wss = ("--gateway-tls-cert", str(cert), "--gateway-tls-key", str(key))
    served = _start(processes, tmp_path, *_PORTS, *tls, *wss)
    assert served.info["gateway"].startswith("wss://")
    plain = served.cli("agents")
    assert plain.returncode == 1  # a plaintext client cannot talk to a TLS core
    assert plain.stderr.endswith("(if the core serves TLS, pass --ca)\n")
    (tmp_path / "other").mkdir()
    wrong_ca, _ = _self_signed(tmp_path / "other")
    untrusted = served.cli("agents", "--ca", str(wrong_ca))
    assert untrusted.returncode == 1
    assert untrusted.stderr == (
        f"arcp-grpc: TLS handshake with the core at {served.info['grpc']} failed: "
        f"its certificate is not signed by the CA in {wrong_ca} (--ca)\n"
    )  # one line: none of gRPC's own handshake log lines
    done = served.cli("submit", "echo", "--input", '{"tls": true}', "--watch", "--ca", str(cert))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == '{"tls": true}'

    listed = served.try_it("buf curl ")  # the banner's plain gRPC line, with --cacert
    assert listed.returncode == 0, listed.stderr
    assert '"name": "echo"' in listed.stdout

    context = ssl.create_default_context(cafile=str(cert))
    client = ARCPClient(client=ClientInfo(name="tls", version="1"), token=served.token)
    await client.connect(await WebSocketTransport.connect(served.info["gateway"], ssl=context))
    try:
        handle = await client.submit(agent="echo", input={"wss": True})
        assert (await asyncio.wait_for(handle.done, 30)).result == {"wss": True}
    finally:
        await client.close()
    assert f"  arcp-grpc agents --ca {cert}" in served.banner()  # "Try it" works as shown
    code, _, log = served.terminate()
    assert code == 0
    assert "Handshake failed" not in log  # the failed clients above left no raw gRPC lines


@pytest.mark.parametrize(
    ("flag", "key", "what", "section"),
    [
        ("--grpc-port", "grpc", "gRPC", "core"),
        ("--gateway-port", "gateway", "the gateway", "gateway"),
    ],
)
def test_a_port_in_use_is_named_and_exits_2(
    tmp_path: Path, processes: list[ServeProcess], flag: str, key: str, what: str, section: str
) -> None:
    (tmp_path / "first").mkdir()
    first = _start(processes, tmp_path / "first", *_PORTS)
    port = first.info[key].rsplit(":", 1)[1].split("/")[0]
    (tmp_path / "second").mkdir()
    done = run_cli("serve", *_PORTS, flag, port, cwd=tmp_path / "second")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"arcp-grpc: cannot serve {what} on 127.0.0.1:{port}: the port is in use (or the "
        f"address is not this machine's); choose another with {section}.port or "
        f"{section}.host (0 = any free port)"
    )
    assert "add_port.cc" not in done.stderr  # gRPC's own log line is not shown
    assert "Traceback" not in done.stderr


REPO = Path(__file__).resolve().parents[3]


def test_the_readme_submit_commands_work(tmp_path: Path, processes: list[ServeProcess]) -> None:
    """Every `arcp-grpc submit` line of the README's tour runs to success as written
    (spender and delegator need their leases, §9)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [
        shlex.split(line.split("  #", 1)[0])
        for line in readme.splitlines()
        if line.startswith("arcp-grpc submit ")
    ]
    agents = {command[2] for command in commands}
    assert {"counter", "spender", "delegator"} <= agents
    served = _start(processes, tmp_path, *_PORTS)
    for command in commands:
        done = served.cli(*command[1:])
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert done.stdout.splitlines()[-2].startswith("success job_"), done.stdout


def _fake_checkout(root: Path) -> Path:
    """scripts/serve beside a pyproject.toml and a .venv whose python records pip runs
    and whose arcp-grpc only echoes: what the script decides, without installing."""
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "serve", root / "scripts" / "serve")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in (
        ("python", 'echo "pip $*" >> "$(dirname "$0")/../../installs.log"'),
        ("arcp-grpc", 'echo "ran $*"'),
    ):
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return root / "scripts" / "serve"


def test_scripts_serve_installs_only_when_pyproject_changes(tmp_path: Path) -> None:
    script = _fake_checkout(tmp_path)
    installs = tmp_path / "installs.log"

    def serve() -> str:
        done = subprocess.run(
            [str(script), "--grpc-port", "0"], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert serve() == "ran serve --grpc-port 0\n"
    assert installs.read_text().count("pip install") == 1  # the first start installs
    serve()
    assert installs.read_text().count("pip install") == 1  # nothing changed: no reinstall
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    serve()
    assert installs.read_text().count("pip install") == 2  # dependencies may have changed


# -- bad configuration -------------------------------------------------------

_CLASHING_AGENTS = """
from arcp_grpc.agents import AgentRegistry


async def counter(ctx, input_value):
    return 0


registry = AgentRegistry()
registry.register("counter", "1.0.0", counter)
"""


_BAD_AGENTS = "def broken(:\n"


@pytest.mark.parametrize(
    ("setup", "args", "env", "named"),
    [
        pytest.param(
            {"arcp.toml": "[core]\nprot = 7400\n"},
            ("--config", "arcp.toml"),
            {},
            "unknown configuration key 'core.prot'",
            id="unknown-toml-key",
        ),
        pytest.param(
            {"arcp.toml": "data_dir = 'data'\nlisten = true\n"},
            ("--config", "arcp.toml"),
            {},
            "unknown configuration key 'listen'",
            id="unknown-top-level-key",
        ),
        pytest.param({}, ("--grpc-port", "70000"), {}, "core.port", id="port-out-of-range"),
        pytest.param(
            {}, (), {"ARCP_GATEWAY_PORT": "http"}, "ARCP_GATEWAY_PORT", id="port-not-a-number"
        ),
        pytest.param(
            {},
            ("--agents", "no_such_agents_module:registry"),
            {},
            "cannot import 'no_such_agents_module'",
            id="agents-module-missing",
        ),
        pytest.param(
            {},
            ("--set", "core.port=abc", "--grpc-port", "0"),
            {},
            "core.port (from --set): expected an integer, got 'abc'",
            id="set-value-bad-although-a-flag-wins",
        ),
        pytest.param(
            {"clashing_agents.py": _CLASHING_AGENTS},
            ("--agents", "clashing_agents:registry"),
            {},
            "agents.modules 'clashing_agents:registry': agent counter@1.0.0 is already "
            "registered by a demo agent (--no-demo-agents)",
            id="agents-clash-with-a-demo-agent",
        ),
        pytest.param(
            {"broken_agents.py": _BAD_AGENTS},
            ("--agents", "broken_agents:registry"),
            {},
            "'broken_agents:registry': cannot import 'broken_agents': SyntaxError",
            id="agents-module-unreadable",
        ),
        pytest.param(
            {},
            ("--tls-cert", "missing-cert.pem", "--tls-key", "missing-key.pem"),
            {},
            "core.tls_cert (from --tls-cert): cannot read missing-cert.pem",
            id="tls-file-missing",
        ),
    ],
)
def test_bad_configuration_fails_fast_naming_the_problem(
    tmp_path: Path, setup: dict[str, str], args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    for name, text in setup.items():
        (tmp_path / name).write_text(text)
    done = run_cli("serve", *_PORTS, *args, cwd=tmp_path, env=clean_env(**env))
    assert done.returncode == 2
    assert done.stderr.startswith("arcp-grpc: configuration error: ")
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert "serving" not in done.stdout


def test_a_second_serve_on_the_same_data_dir_exits_2_and_touches_nothing(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    """Before the lock, the second core's start-up recovery marked the first one's
    running job as interrupted, and with other ports both then shared the SQLite file."""
    first = _start(processes, tmp_path, *_PORTS, "--shutdown-grace", "0.2")
    started = first.cli("submit", "counter", "--input", '{"steps": 1000, "interval": 0.05}')
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.split()[1]
    deadline = time.monotonic() + 20
    while job_id not in _running(first):
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(0.05)
    database = tmp_path / "data" / "arcp.sqlite3"
    before = database.stat().st_mtime_ns, (tmp_path / "data" / "dev-token").read_text()

    second = run_cli("serve", *_PORTS, cwd=tmp_path)  # other ports (0), same ./data

    assert second.returncode == 2, second.stderr
    assert second.stderr.splitlines()[-1].startswith("arcp-grpc: configuration error: data_dir ")
    assert f"pid {first.info['pid']}" in second.stderr
    assert "Traceback" not in second.stderr
    assert "serving" not in second.stdout
    assert job_id in _running(first)  # untouched: not ended as interrupted
    assert (tmp_path / "data" / "serve.lock").read_text().split()[0] == str(first.info["pid"])
    assert first.process is not None
    assert first.process.poll() is None
    after = database.stat().st_mtime_ns, (tmp_path / "data" / "dev-token").read_text()
    assert after[1] == before[1]
    code, _, err = first.terminate()
    assert code == 0, err
    third = _start(processes, tmp_path, *_PORTS)  # the lock went with the first process
    assert third.info["pid"] != first.info["pid"]


_KEY_16 = base64.b64encode(bytes(16)).decode()


@pytest.mark.parametrize(
    ("files", "args", "named"),
    [
        pytest.param(
            {"data/store.key": b"\x8f\x01abc"},
            (),
            "store.key_file: data/store.key: expected a base64 AES-256 key (32 bytes), found"
            " text that is not base64",
            id="default-key-file-5-bytes",
        ),
        pytest.param(
            {"shared.key": _KEY_16.encode() + b"\n"},
            ("--store-key-file", "shared.key"),
            "store.key_file: shared.key: expected a base64 AES-256 key (32 bytes), found 16 bytes",
            id="named-key-file-short-key",
        ),
        pytest.param(
            {},
            ("--set", "core.store_key=not base64!"),
            "core.store_key: expected a base64 AES-256 key (32 bytes), found text that is not"
            " base64",
            id="store-key-not-base64",
        ),
        pytest.param(
            {},
            ("--set", f"core.store_key={_KEY_16}"),
            "core.store_key: expected a base64 AES-256 key (32 bytes), found 16 bytes",
            id="store-key-short",
        ),
    ],
)
def test_a_wrong_store_key_exits_2_naming_the_setting_and_the_file(
    tmp_path: Path, files: dict[str, bytes], args: tuple[str, ...], named: str
) -> None:
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    done = run_cli("serve", *_PORTS, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == f"arcp-grpc: configuration error: {named}"
    assert "Traceback" not in done.stderr
    assert _KEY_16 not in done.stderr  # a key's text is never shown
    assert "serving" not in done.stdout
