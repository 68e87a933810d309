"""The ``zasync`` command."""

import argparse
import logging
import sys


def _demo(args):
    from zasync import demo

    return demo.run(args.directory)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zasync", description="Durable, transactional background jobs in ZODB."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log job starts and ends"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="queue a few jobs on a FileStorage and show them run"
    )
    demo.add_argument(
        "--directory",
        help="where to put the database (default: a new temporary directory)",
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
