"""``python -m spaces.describe NAME [--backbone B] [--width W ...] [--kernels K ...]``: print a
space's table of layers and choices, its baselines and its size."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .backbones import BACKBONES
from .catalog import SPACES, get_space, space_options
from .space import SpaceError


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spaces.describe", description=__doc__)
    ap.add_argument("name", help=f"space: {', '.join(SPACES)}")
    ap.add_argument("--backbone", default="small", help=f"backbone: {', '.join(BACKBONES)} (default small)")
    ap.add_argument("--input-shape", default="1,32,32", help="C,H,W (default 1,32,32)")
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--widths", type=float, nargs="+", help="width multipliers to search, e.g. 1 1.5 2")
    ap.add_argument("--kernels", type=int, nargs="+", help="kernel sizes, e.g. 3 5")
    ap.add_argument("--params", action="store_true", help="also list every Optuna parameter name")
    args = ap.parse_args(argv)
    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        print(f"error: --input-shape must be C,H,W integers, got {args.input_shape!r}", file=sys.stderr)
        return 2
    options = {}
    try:
        allowed = space_options(args.name)
        for opt in ("widths", "kernels"):
            value = getattr(args, opt)
            if value is not None:
                if opt not in allowed:
                    raise SpaceError(f"space '{args.name}' has no option '{opt}'")
                options[opt] = tuple(value)
        space = get_space(args.name, backbone=args.backbone, input_shape=shape, num_classes=args.num_classes,
                          **options)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(space.describe())
    if args.params:
        print("\n".join(space.param_names()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
