"""Regenerate the Python stubs of the arcp.v1 contract.

The one way stubs are made: protoc (from grpcio-tools) writes messages,
gRPC stubs and mypy-protobuf `.pyi` files for every file in `proto/arcp/v1`
into a scratch directory; imports written from the proto path (`arcp.v1`)
are rewritten to the package path (`arcp_grpc.v1`), because a top-level
`arcp` package would collide with the published ARCP client; the result
replaces `arcp_grpc/v1/`. `--check` regenerates into a scratch copy and
fails when it differs from what is committed (CI runs it).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_DIR = PROTO_ROOT / "arcp" / "v1"
TARGET = ROOT / "arcp_grpc" / "v1"

_IMPORT = re.compile(r"^(from|import) arcp\.v1\b", re.MULTILINE)
_INIT = '"""Generated protobuf and gRPC stubs for the arcp.v1 contract. DO NOT EDIT."""\n'


def _protoc(out: Path) -> None:
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_DIR.glob("*.proto"))
    bindir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    done = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"protoc failed:\n{done.stderr}")


def generate(dest: Path) -> None:
    """Write freshly generated stubs into `dest` (replacing its content)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        _protoc(out)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for src in sorted((out / "arcp" / "v1").iterdir()):
            text = src.read_text()
            if src.name.endswith(("_pb2_grpc.py", "_pb2_grpc.pyi")) and "Stub" not in text:
                continue  # a proto without services: protoc still writes an empty module
            text = _IMPORT.sub(r"\1 arcp_grpc.v1", text)
            (dest / src.name).write_text(text)
        (dest / "__init__.py").write_text(_INIT)
        (dest / "py.typed").write_text("")


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b)
    return sorted(cmp.left_only + cmp.right_only + cmp.diff_files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args()
    if not args.check:
        generate(TARGET)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "v1"
        generate(fresh)
        stale = _differences(TARGET, fresh) if TARGET.exists() else ["arcp_grpc/v1 missing"]
    if stale:
        print("generated stubs are stale; run scripts/gen_protos.py:", ", ".join(stale))
        return 1
    print("generated stubs are fresh")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
