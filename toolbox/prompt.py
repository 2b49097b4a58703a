"""Talking to the person at the terminal, for the cold tier's questions (trusting a project's
recipes) and warnings. An edge module: use cases take `confirm` and `warn` callables instead of
printing."""

import os
import sys


def confirm_on_terminal(question, environ=os.environ):
    """Ask `question` with [y/N] on the terminal, and say whether the answer was yes. Without
    a terminal on both stdin and stderr (a pipe, a script, CI=true) nobody is asked: no."""
    if not can_ask(environ):
        return False
    print(f"toolbox: {question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return answer.strip().lower() in ("y", "yes")


def can_ask(environ=os.environ):
    """Whether there is someone to ask: a terminal on stdin and stderr, and not CI=true."""
    return not frozen_requested(environ) and sys.stdin.isatty() and sys.stderr.isatty()


def frozen_requested(environ=os.environ, flag=False):
    """--frozen, or CI=true as CI systems set it: a lock that disagrees with the pins is an
    error instead of being resolved anew, and nobody is asked anything."""
    return flag or environ.get("CI", "").lower() in ("true", "1")


def warn(message):
    print(f"toolbox: warning: {message}", file=sys.stderr)


def tell(message):
    print(f"toolbox: {message}", file=sys.stderr)
