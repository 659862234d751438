"""Regenerate cmamd/protocol/proto/*_pb2.py(i) from the .proto files beside them.

Run from anywhere: ``python scripts/gen_proto.py`` (needs the ``dev`` extra, which brings
grpcio-tools and its bundled protoc). ``--check`` regenerates into a temporary folder and
exits 1 when the committed modules differ, which is what the staleness test runs.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "cmamd" / "protocol" / "proto"


def generate(out_root: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency only

    sources = sorted(PROTO_DIR.glob("*.proto"))
    rel = [str(p.relative_to(ROOT)) for p in sources]
    args = ["protoc", f"-I{ROOT}", f"--python_out={out_root}", f"--pyi_out={out_root}", *rel]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return [
        out_root / p.relative_to(ROOT).with_name(p.stem + suffix)
        for p in sources
        for suffix in ("_pb2.py", "_pb2.pyi")
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed modules are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        produced = generate(Path(tmp))
        stale = []
        for path in produced:
            target = ROOT / path.relative_to(tmp)
            if args.check:
                if not target.exists() or not filecmp.cmp(path, target, shallow=False):
                    stale.append(str(target.relative_to(ROOT)))
            else:
                shutil.copyfile(path, target)
        if stale:
            print("stale generated modules: " + ", ".join(stale), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
