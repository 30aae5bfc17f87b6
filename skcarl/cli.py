"""The ``skcarl`` command line."""

from __future__ import annotations

import argparse
import sys

from .backbone import DEFAULT_BACKBONE


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.model, max_epochs=args.epochs, test_size=args.test_size, random_state=args.seed,
             verbose=0 if args.quiet else 1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skcarl", description="CARL affective text embeddings.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="train CARL on the shipped affect corpus; print frozen vs CARL")
    demo.add_argument("--model", default=DEFAULT_BACKBONE, help="encoder name or local folder (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=4, help="training epochs (default: %(default)s)")
    demo.add_argument("--test-size", type=float, default=0.25, help="held-out fraction (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as exc:
        print(f"skcarl {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
