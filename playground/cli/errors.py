"""The one error-handling helper of the command line: user errors become one `error: ...` line and exit 2.

Also an argparse parser whose own errors (unknown option, missing value) are one line, not the usage.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, NoReturn

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, json.JSONDecodeError)
# ValueError covers InputError, ModelLoadError (a ValueError subclass where defined), UnicodeDecodeError.


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: argument --samples: invalid float value: 'x'` and exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def message_of(err: BaseException) -> str:
    """The user-facing text of an error (KeyError's repr quotes are dropped)."""
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename or ''}: {err.strerror}".lstrip(": ")
    return str(err) or type(err).__name__


def run_command(command: Callable[[], int]) -> int:
    """Run a sub-command: 0/its code on success, 2 with one `error:` line on bad input, 130 when interrupted."""
    try:
        return int(command() or 0)
    except KeyboardInterrupt:
        print("\nerror: interrupted; nothing written", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        print(f"error: {message_of(err)}", file=sys.stderr)
        return 2
