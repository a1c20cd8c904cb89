"""One clear message and a non-zero exit for bad user input, never a traceback.

Commands raise ``CliError`` (or let the library's own input errors through: ``ArchError``,
``DataError``, ``OpConfigError``); ``run_cli`` prints ``error: <message>`` on stderr and
exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

__all__ = ["CliError", "run_cli", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class CliError(ValueError):
    """Bad input to a command; the message says what was wrong and what would work."""


def _input_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [CliError]
    try:
        from spaces.arch import ArchError
        from spaces.ops.registry import OpConfigError
        errors += [ArchError, OpConfigError]
    except ImportError:  # pragma: no cover - spaces always importable in this repo
        pass
    try:
        from evaluators.data import DataError
        errors.append(DataError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None,
            prog: str = "groupnas") -> None:
    """Run ``main(argv)`` and exit with its status; bad input -> one line on stderr, exit 2."""
    try:
        code = main(argv)
    except _input_errors() as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code)
