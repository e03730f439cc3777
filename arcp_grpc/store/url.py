"""Which store a core opens (parsing only: no driver is imported here, so the CLI
stays quick to start): `store.url` (`--store`, `ARCP_STORE_URL`).

- empty: the SQLite file in the data directory (the embedded default);
- `sqlite:///PATH`: a SQLite file elsewhere (`sqlite:////abs/path` or
  `sqlite:///relative/path`, as SQLAlchemy writes them);
- `postgresql://…` or `postgres://…` (a libpq URI: user, password, host,
  port, database, `?sslmode=…`), or libpq's keyword form
  (`host=db1 port=5432 dbname=arcp user=arcp`): a PostgreSQL database that
  several nodes may share.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import quote

__all__ = ["SQLITE_FILE", "describe", "postgres_dsn", "sqlite_path"]

SQLITE_FILE = "arcp.sqlite3"
_KEYWORDS = {"host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "passfile"}


def sqlite_path(url: str, data_dir: Path) -> Path | None:
    """The SQLite file `url` names (the data directory's when empty); None for PostgreSQL."""
    if not url:
        return data_dir / SQLITE_FILE
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    if not path:
        raise ValueError("sqlite:/// needs a file path (sqlite:////var/lib/arcp/arcp.sqlite3)")
    return Path(path)


def postgres_dsn(url: str) -> str:
    """A libpq URI for `url`, converting the keyword form (`host=… dbname=…`)."""
    if url.startswith(("postgresql://", "postgres://")):
        return url
    if "=" not in url:
        raise ValueError(
            "not a store URL: use sqlite:///PATH, postgresql://USER@HOST:PORT/DB"
            " or libpq keywords (host=… dbname=…)"
        )
    try:
        pairs = dict(item.split("=", 1) for item in shlex.split(url))
    except ValueError:
        raise ValueError("libpq keywords must be KEY=VALUE pairs separated by spaces") from None
    unknown = sorted(set(pairs) - _KEYWORDS)
    if unknown:
        raise ValueError(f"unsupported libpq keywords: {', '.join(unknown)}")
    user = quote(pairs.get("user", ""), safe="")
    password = pairs.get("password")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = pairs.get("hostaddr") or pairs.get("host", "")
    port = f":{pairs['port']}" if "port" in pairs else ""
    options = [f"{k}={quote(pairs[k], safe='')}" for k in ("sslmode", "passfile") if k in pairs]
    if host.startswith("/"):  # a socket directory
        options.append(f"host={quote(host, safe='')}")
        host = ""
    query = "?" + "&".join(options) if options else ""
    return f"postgresql://{auth}{host}{port}/{quote(pairs.get('dbname', ''), safe='')}{query}"


def describe(url: str, data_dir: Path) -> str:
    """The store for humans (banner, logs): never the password."""
    if not url:
        return f"sqlite:///{data_dir / SQLITE_FILE}"
    if url.startswith("sqlite:///"):
        return url
    dsn = postgres_dsn(url)
    scheme, _, rest = dsn.partition("://")
    credentials, at, location = rest.rpartition("@")
    if at:
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{location}"
    return dsn
