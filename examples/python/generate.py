"""Generates Verdict's Python gRPC stubs from proto/ with grpcio-tools.

The stubs are never committed: they are made from the repository's proto/ when missing or when
proto/ changed (a hash of the .proto files is kept next to them), into `generated/` beside this
file, or into the directory in $VERDICT_STUBS_DIR (tests use a temporary one).

    python examples/python/generate.py [OUT_DIR]
"""

import hashlib
import importlib
import importlib.resources
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE.parent.parent / "proto"
PROTO_FILES = ["verdict/v1/authorizer.proto", "verdict/v1/admin.proto"]
STAMP = ".proto-hash"


def _proto_hash() -> str:
    digest = hashlib.sha256()
    for name in PROTO_FILES:
        digest.update(name.encode())
        digest.update((PROTO_DIR / name).read_bytes())
    return digest.hexdigest()


def default_dir() -> Path:
    return Path(os.environ.get("VERDICT_STUBS_DIR") or HERE / "generated")


def generate(out_dir: Path) -> None:
    """Runs protoc (the one grpcio-tools bundles) on proto/ into out_dir."""
    from grpc_tools import protoc  # imported here: only generating needs grpcio-tools

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR}")
    (out_dir / STAMP).write_text(_proto_hash())


def load(out_dir: Path | None = None):
    """The generated modules (authorizer_pb2, authorizer_pb2_grpc), generating them if needed."""
    out_dir = Path(out_dir or default_dir())
    stamp = out_dir / STAMP
    if not stamp.exists() or stamp.read_text() != _proto_hash():
        generate(out_dir)
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    pb2 = importlib.import_module("verdict.v1.authorizer_pb2")
    pb2_grpc = importlib.import_module("verdict.v1.authorizer_pb2_grpc")
    return pb2, pb2_grpc


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir()
    generate(target)
    print(f"stubs generated in {target}")
