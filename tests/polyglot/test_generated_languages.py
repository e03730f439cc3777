"""``buf generate`` makes stubs for every language buf.gen.yaml configures.

Issue 8's acceptance: generation works offline with local plugins only, and
the Java output compiles when a compiler is present; when a compiler or the
protobuf runtime it links against is missing, the test says exactly why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"
PROTOC = ROOT / "tools" / "protoc"
PROTO_DIR = ROOT / "proto" / "arcp" / "v1"
# Debian's libprotobuf-java: the only protobuf-java reachable offline here.
PROTOBUF_JAR = Path("/usr/share/java/protobuf.jar")
TIMEOUT = 240.0


def _camel(stem: str) -> str:
    return "".join(part.capitalize() for part in stem.split("_"))


# Output folder in buf.gen.yaml -> the files one proto (by stem) must yield there.
EXPECTED: dict[str, Callable[[str], list[str]]] = {
    "gen/ts": lambda s: [f"arcp/v1/{s}_pb.ts"],
    "gen/python": lambda s: [f"arcp/v1/{s}_pb2.py", f"arcp/v1/{s}_pb2.pyi"],
    "gen/java": lambda s: [f"dev/arcp/v1/{_camel(s)}Proto.java"],
    "gen/csharp": lambda s: [f"{_camel(s)}.cs"],
    "gen/cpp": lambda s: [f"arcp/v1/{s}.pb.h", f"arcp/v1/{s}.pb.cc"],
    "gen/ruby": lambda s: [f"arcp/v1/{s}_pb.rb"],
    "gen/php": lambda s: [f"Arcp/V1/GPBMetadata/{_camel(s)}.php"],
}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of the repository's buf.gen.yaml, written under a temp dir."""
    protoc = _run([str(PROTOC), "--version"], ROOT)
    assert protoc.returncode == 0, f"the protoc builtins need a protoc: {protoc.stderr.strip()}"
    out = tmp_path_factory.mktemp("buf-generate")
    done = _run([str(BUF), "generate", "--output", str(out)], ROOT)
    assert done.returncode == 0, f"buf generate failed:\n{done.stderr}"
    return out


def test_every_configured_language_is_checked() -> None:
    """A language added to buf.gen.yaml must be added here too."""
    outs = re.findall(r"^\s+out:\s*(\S+)\s*$", (ROOT / "buf.gen.yaml").read_text(), re.MULTILINE)
    assert set(outs) == set(EXPECTED)


@pytest.mark.parametrize("out", sorted(EXPECTED))
def test_stubs_for_every_proto(generated: Path, out: str) -> None:
    """Each language has output for each file of the contract."""
    stems = sorted(p.stem for p in PROTO_DIR.glob("*.proto"))
    assert stems, "no protos found"
    missing = [f for s in stems for f in EXPECTED[out](s) if not (generated / out / f).is_file()]
    assert not missing, f"{out} lacks {missing}"


def test_typescript_has_the_services(generated: Path) -> None:
    """Connect clients need the service descriptors, not only the messages."""
    ts = generated / "gen" / "ts" / "arcp" / "v1"
    assert "export const JobService: GenService<" in (ts / "job_service_pb.ts").read_text()
    assert "export const SessionService: GenService<" in (ts / "session_service_pb.ts").read_text()


def test_python_output_compiles(generated: Path) -> None:
    """The Python output is valid source (imports of `arcp.v1` are not rewritten)."""
    for path in sorted((generated / "gen" / "python").rglob("*.py")):
        compile(path.read_text(), str(path), "exec")


def _version(text: str) -> tuple[int, ...]:
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    assert found, f"no version in {text!r}"
    return tuple(int(g) for g in found.groups() if g is not None)


def java_runtime_for(protoc: tuple[int, ...]) -> tuple[int, int]:
    """The protobuf-java (major, minor) that protoc's Java output targets.

    protoc 3.x made Java 3.x; from protoc 21 the minor became the major
    (protoc 21-25 -> Java 3.21-3.25, protoc 26+ -> Java 4.26+).
    """
    if protoc[0] == 3:
        return (3, protoc[1])
    return (3, protoc[0]) if protoc[0] <= 25 else (4, protoc[0])


def test_java_runtime_mapping() -> None:
    assert java_runtime_for((3, 21, 12)) == (3, 21)
    assert java_runtime_for((25, 1)) == (3, 25)
    assert java_runtime_for((35, 1)) == (4, 35)


def _jar_version(jar: Path) -> tuple[int, ...] | None:
    """protobuf-java's version from its file name or its Maven metadata."""
    named = re.search(r"protobuf(?:-java)?-(\d+\.\d+\.\d+)\.jar$", jar.resolve().name)
    if named:
        return _version(named[1])
    with zipfile.ZipFile(jar) as archive:
        for name in archive.namelist():
            if name.endswith("protobuf-java/pom.properties"):
                return _version(archive.read(name).decode())
    return None


def test_java_output_compiles(generated: Path, tmp_path: Path) -> None:
    """javac compiles the Java output against the matching protobuf-java."""
    javac = shutil.which("javac")
    if javac is None:
        pytest.skip("javac is not installed: the Java output was generated but not compiled")
    if not PROTOBUF_JAR.is_file():
        pytest.skip(
            f"{PROTOBUF_JAR} is missing (apt-get install libprotobuf-java): protobuf-java "
            "comes only from Maven Central otherwise, which is not reachable here"
        )
    protoc = _version(_run([str(PROTOC), "--version"], ROOT).stdout)
    jar = _jar_version(PROTOBUF_JAR)
    wanted = java_runtime_for(protoc)
    if jar is None or jar[0] != wanted[0] or jar[1] < wanted[1]:
        pytest.skip(
            f"tools/protoc is protoc {protoc} whose Java output needs protobuf-java "
            f"{wanted[0]}.{wanted[1]}+, but {PROTOBUF_JAR} is {jar}; install Debian's "
            "protobuf-compiler next to libprotobuf-java so the two match"
        )
    sources = sorted(str(p) for p in (generated / "gen" / "java").rglob("*.java"))
    done = _run([javac, "-nowarn", "-d", str(tmp_path), "-cp", str(PROTOBUF_JAR), *sources], ROOT)
    assert done.returncode == 0, f"javac failed:\n{done.stderr[-4000:]}"
    assert (tmp_path / "dev" / "arcp" / "v1" / "SubmitJobRequest.class").is_file()
