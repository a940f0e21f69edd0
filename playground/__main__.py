"""Command line: `python -m playground {generate,adapters,sweep,guidance,probe} ...` — dispatch only.

Each verb lives in `playground/cli/`; bad input prints one line `error: ...` on stderr and exits with code 2.
"""
from __future__ import annotations

import importlib
import sys

from playground.cli.errors import Parser, run_command

# verb -> module that registers it (`add_parser(sub)` or `add_parsers(sub)`); heavy ones import on use.
VERBS = {"generate": "playground.cli.generate", "adapters": "playground.cli.generate",
         "sweep": "playground.cli.sweep", "guidance": "playground.cli.guidance",
         "votes": "playground.cli.votes", "probe": "playground.cli.probe",
         "calibrate": "playground.cli.calibrate"}


def build_parser() -> Parser:
    parser = Parser(prog="python -m playground", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module_name in dict.fromkeys(VERBS.values()):
        module = importlib.import_module(module_name)
        (getattr(module, "add_parsers", None) or module.add_parser)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
