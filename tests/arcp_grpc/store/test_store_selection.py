"""Choosing the store (issue 13's interface, which operators and scripts rely on):
`--store URL`, `ARCP_STORE_URL`, `[store] url`; the cluster's sealing key from
`--store-key-file`, `ARCP_STORE_KEY_FILE`, `[store] key_file`. A node whose key does not
open the store's sealed rows, an unreachable database or a URL that names no store stops
`serve` with exit 2 and one clear line."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arcp_grpc.config import load_settings
from arcp_grpc.store.url import describe, postgres_dsn, sqlite_path
from tests.conftest import postgres_schema
from tests.serve_process import ServeProcess, clean_env, run_cli

_PORTS = ("--grpc-port", "0", "--gateway-port", "0", "--no-metrics")


@pytest.fixture
async def store_url(postgres_server: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_server) as url:
        yield url


def _key(path: Path) -> Path:
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


def test_flag_environment_and_toml_name_the_store_in_that_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "arcp.toml"
    config.write_text('[store]\nurl = "sqlite:///from-toml.db"\nkey_file = "toml.key"\n')
    for name in ("toml.key", "env.key", "flag.key"):
        _key(tmp_path / name)
    monkeypatch.chdir(tmp_path)  # the key files are named relative to it
    toml = load_settings(config_file=config, env={})
    assert (toml.store.url, toml.store.key_file) == ("sqlite:///from-toml.db", "toml.key")
    env = {"ARCP_STORE_URL": "postgresql://arcp@db:5432/arcp", "ARCP_STORE_KEY_FILE": "env.key"}
    by_env = load_settings(config_file=config, env=env)
    assert (by_env.store.url, by_env.store.key_file) == (env["ARCP_STORE_URL"], "env.key")
    by_flag = load_settings(
        config_file=config,
        env=env,
        flags=[
            ("store.url", "host=db2 dbname=arcp user=ops", "--store"),
            ("store.key_file", "flag.key", "--store-key-file"),
        ],
    )
    assert by_flag.store.url == "host=db2 dbname=arcp user=ops"
    assert by_flag.store.key_file == "flag.key"


def test_store_urls_in_every_accepted_form() -> None:
    assert sqlite_path("", Path("data")) == Path("data/arcp.sqlite3")
    assert sqlite_path("sqlite:////var/lib/arcp/a.db", Path("data")) == Path("/var/lib/arcp/a.db")
    assert sqlite_path("sqlite:///rel/a.db", Path("data")) == Path("rel/a.db")
    assert sqlite_path("postgresql://h/db", Path("data")) is None
    assert postgres_dsn("postgres://u@h:5/d") == "postgres://u@h:5/d"
    assert (
        postgres_dsn("host=db port=5433 dbname=arcp user=ops password='p w' sslmode=require")
        == "postgresql://ops:p%20w@db:5433/arcp?sslmode=require"
    )
    assert postgres_dsn("host=/run/postgresql dbname=arcp") == (
        "postgresql:///arcp?host=%2Frun%2Fpostgresql"
    )
    # Shown to humans (banner, ready file): never the password.
    assert describe("postgresql://ops:secret@db:5432/arcp", Path("d")) == (
        "postgresql://ops@db:5432/arcp"
    )
    with pytest.raises(ValueError, match="needs a file path"):
        sqlite_path("sqlite:///", Path("d"))
    with pytest.raises(ValueError, match="not a store URL"):
        postgres_dsn("mysql://u@h/db")
    with pytest.raises(ValueError, match="unsupported libpq keywords: nonsense"):
        postgres_dsn("host=db nonsense=1")


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        pytest.param(
            ("--store", "mysql://u@h/db"), {}, "store.url (from --store): not a store URL"
        ),
        pytest.param(
            (),
            {"ARCP_STORE_URL": "host=db bogus=1"},
            "store.url (from ARCP_STORE_URL): unsupported libpq keywords: bogus",
        ),
        pytest.param(
            ("--store-key-file", "missing.key"),
            {},
            "store.key_file (from --store-key-file): cannot read missing.key",
        ),
    ],
)
def test_a_store_setting_that_cannot_work_exits_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    done = run_cli("serve", *_PORTS, *args, cwd=tmp_path, env=clean_env(**env))
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_a_node_with_another_key_refuses_to_start(
    tmp_path: Path, store_url: str, processes: list[ServeProcess]
) -> None:
    """All nodes of a cluster share one key: a node that could not open the sealed rows
    (replayed acceptances with credentials, the credential ledger) must not join."""
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    shared = _key(tmp_path / "cluster.key")
    first = ServeProcess(
        first_dir, *_PORTS, env=clean_env(ARCP_STORE_URL=store_url, ARCP_STORE_KEY_FILE=str(shared))
    )
    processes.append(first)
    info = first.start()
    assert info["store"] == describe(store_url, Path())
    assert first.cli("submit", "echo", "--input", '{"sealed": true}').returncode == 0

    other = _key(tmp_path / "other.key")
    refused = run_cli(
        "serve", *_PORTS, "--store", store_url, "--store-key-file", str(other), cwd=second_dir
    )
    assert refused.returncode == 2, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert "written with another key" in last
    assert "Traceback" not in refused.stderr

    joined = ServeProcess(
        second_dir, *_PORTS, "--store", store_url, "--store-key-file", str(shared)
    )
    processes.append(joined)
    assert joined.start()["grpc"] != info["grpc"]  # the same key joins the cluster


def test_an_unreachable_database_is_waited_for_then_one_line_and_exit_75(tmp_path: Path) -> None:
    """Issue 20: `serve` waits `store.connect_timeout_sec` for a database that is not up
    (saying so), then exits 75 (EX_TEMPFAIL) with one line: systemd starts it again."""
    done = run_cli(
        "serve",
        *_PORTS,
        "--store",
        "postgresql://nobody@127.0.0.1:1/none",
        "--set",
        "store.connect_timeout_sec=1",
        cwd=tmp_path,
    )
    assert done.returncode == 75, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "did not answer within store.connect_timeout_sec (1 s)" in last
    assert "waiting for the store at 127.0.0.1:1/none" in done.stderr
    assert "Traceback" not in done.stderr
    assert "serving" not in done.stdout
