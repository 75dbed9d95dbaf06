"""Regenerates the committed gRPC stubs (verdict/v1/*_pb2*.py, *.pyi) from the repository's proto/
with grpcio-tools (the version pinned in requirements-dev.txt), or checks that they are current.

    python clients/python/generate.py           # rewrite verdict/v1/ from proto/
    python clients/python/generate.py --check   # exit 1, naming the files, if they differ

The stubs are committed so that `pip install` needs no protoc; tests/python_client.rs runs
`--check`, so a change to proto/ without regenerated stubs fails the build.
"""

import argparse
import filecmp
import importlib.resources
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE.parent.parent / "proto"
PROTO_FILES = ["verdict/v1/authorizer.proto", "verdict/v1/admin.proto"]
STUBS = HERE / "verdict" / "v1"
SUFFIXES = ["_pb2.py", "_pb2.pyi", "_pb2_grpc.py"]


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc (the one grpcio-tools bundles) on proto/ into out_dir; the files written."""
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
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
    return [
        out_dir / "verdict" / "v1" / (Path(name).stem + suffix)
        for name in PROTO_FILES
        for suffix in SUFFIXES
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [f.name for f in fresh
                 if not (STUBS / f.name).exists() or not filecmp.cmp(f, STUBS / f.name, shallow=False)]
        expected = {f.name for f in fresh}
        extra = [p.name for p in STUBS.glob("*_pb2*") if p.name not in expected]
        if args.check:
            if stale or extra:
                print(f"stale stubs in {STUBS}: {sorted(stale + extra)}; "
                      "run python clients/python/generate.py", file=sys.stderr)
                return 1
            print(f"stubs current: {len(fresh)} files match proto/")
            return 0
        for f in fresh:
            (STUBS / f.name).write_bytes(f.read_bytes())
        for name in extra:
            (STUBS / name).unlink()
        print(f"stubs written to {STUBS}: {len(fresh)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
