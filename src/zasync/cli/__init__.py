"""The ``zasync`` command: a demo, workers, and what operators need."""

import argparse
import logging
import sys

from zasync.cli import commands, demo, worker
from zasync.deploy import cluster, serve
from zasync.exceptions import CommandError

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def _demo(args):
    return demo.run(args.directory)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zasync", description="Durable, transactional background jobs in ZODB."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log job starts and ends"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo_parser = subparsers.add_parser(
        "demo", help="queue a few jobs on a FileStorage and show them run"
    )
    demo_parser.add_argument(
        "--directory",
        help="where to put the database (default: a new temporary directory)",
    )
    demo_parser.set_defaults(run=_demo)
    worker.add_arguments(
        subparsers.add_parser(
            "worker",
            help="run jobs: a headless worker process",
            description=worker.__doc__.split("\n\n")[1],
        )
    )
    commands.register(subparsers)
    serve.add_arguments(
        subparsers.add_parser(
            "serve",
            help="run a Plone site with zasync on 127.0.0.1:8080 (made if missing)",
            description=serve.__doc__.split("\n\n")[1],
        )
    )
    cluster.add_arguments(
        subparsers.add_parser(
            "cluster",
            help="start or stop a local ZEO cluster: web instance and workers",
            description=cluster.__doc__.split("\n\n")[1],
        )
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    # A worker always logs its jobs; other commands only when asked. A
    # served Zope logs as its etc/zope.ini says.
    if args.command not in ("serve", "cluster"):
        verbose = args.verbose or args.command == "worker"
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING, format=LOG_FORMAT
        )
    try:
        return args.run(args)
    except CommandError as exc:
        print(f"zasync {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
