"""Command line: compile a .tflite to C, optionally prove it against TFLM.

    python -m tasks.aot model.tflite out_dir [--prefix tinyml] [--check dataset.npz] [--target]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..engine.errors import TinyMLError
from ..engine.io import dumps_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {__package__}", description=__doc__.splitlines()[0])
    ap.add_argument("tflite", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--prefix", default="tinyml", help="C symbol and file prefix (default tinyml)")
    ap.add_argument("--check", type=Path, metavar="DATASET_NPZ",
                    help="compile on the host and compare x_test with the TFLM interpreter; writes out_dir/aot.json")
    ap.add_argument("--target", action="store_true", help="with --check: also run on QEMU's Cortex-M4")
    args = ap.parse_args(argv)
    try:
        from .generate import generate

        info = generate(args.tflite, args.out_dir, prefix=args.prefix)
        print(f"wrote {args.out_dir / (args.prefix + '_model.c')} and .h: {len(info['ops'])} operators, "
              f"arena {info['planned_bytes']} B, weights {info['weights_bytes']} B")
        if args.check:
            from .check import check_generated
            from ..engine.io import write_json

            res = check_generated(args.tflite, args.check, args.out_dir, info, work_dir=args.out_dir / "check",
                                  prefix=args.prefix)
            if args.target:
                from .target import target_check

                res["target"] = target_check(args.tflite, args.check, None, work_dir=args.out_dir / "target",
                                             core_dir=args.out_dir / "platformio")
            write_json(args.out_dir / "aot.json", res)
            print(dumps_json(res), end="")
    except TinyMLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
