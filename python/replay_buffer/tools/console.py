"""What every ``replay-buffer`` command shares: one-line errors, exit codes, quiet broken pipes.

Exit codes: 0 success, 1 a runtime failure (an address in use, not enough memory, ...), 2 a
command line or config file the command cannot use, 130 interrupted, 141 stdout closed early
(``replay-buffer shm ls | head``), as for a program ended by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

RUNTIME_ERROR = 1
USAGE_ERROR = 2
INTERRUPTED = 130
BROKEN_PIPE = 141


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with status 2."""
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run(command: Callable[[], int | None]) -> int:
    """Run a command and return its exit status, ending quietly when stdout is closed early.

    A reader that stops early (``| head``) closes the pipe; writing then raises BrokenPipeError,
    which would otherwise end the command with a traceback, and again at exit when Python
    flushes stdout.
    """
    try:
        status = command()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the flush at exit then writes nowhere, silently
        os.close(devnull)
        return BROKEN_PIPE
    except KeyboardInterrupt:
        return INTERRUPTED
    return status or 0
