"""The one error guard of every command: a user's mistake is one line and exit status 2, a failure of the run
one line and exit status 1, Ctrl-C 130 ("rerun the same command to resume"), SIGTERM 143; a traceback only with
``--debug``. Every sub-command runs inside :func:`_guarded`.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..encoders.architectures import UnsupportedModelError
from ..engine.spec import DataError
from ..store import CacheCorruptionError
from ..vocab import print_error

PROG = "senteval-anatomy"

#: Exit statuses: a user's mistake, a failure of the run, Ctrl-C (128 + SIGINT), SIGTERM (128 + SIGTERM).
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143

RESUME_HINT = "rerun the same command to resume"


class UsageError(Exception):
    """A user's mistake on the command line or in the inputs it names: reported as one line, exit status 2."""


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that temporary files are removed on the way out (like Ctrl-C)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error_message(exc: OSError) -> str:
    if exc.errno is None:  # the package's own OSErrors (e.g. store.CacheWriteError) already say what and how
        return f"{exc} ({RESUME_HINT})" if RESUME_HINT not in str(exc) else str(exc)
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{where}: free some space or choose another --out / --cache-dir, then "
                f"{RESUME_HINT} (finished units are kept; nothing half-written was left)")
    if exc.errno == errno.EFBIG:
        return f"file too large for this file system or limit{where}: raise the limit or choose another folder"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write{where}: {exc.strerror}; choose a writable --out / --cache-dir, then {RESUME_HINT}"
    return f"{exc.strerror or exc}{where}; fix the cause, then {RESUME_HINT}"


def _guarded(work: Callable[[], int], *, debug: bool, prog: str = PROG) -> int:
    """Run ``work``; turn every error into one line on stderr and an exit status (``--debug``: re-raise)."""
    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    try:
        return work()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{prog}: interrupted — {RESUME_HINT}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print(f"{prog}: terminated — {RESUME_HINT}", file=sys.stderr)
        return EXIT_TERMINATED
    except DataError as exc:
        if debug:
            raise
        where = f"{exc.path}:{exc.line}: " if exc.line is not None else (f"{exc.path}: " if exc.path else "")
        extra = "; ".join(x for x in (f"expected {exc.expected}" if exc.expected else "",
                                      f"fix: {exc.fix}" if exc.fix else "") if x)
        print_error(f"{where}{exc.message}" + (f" ({extra})" if extra else ""), prog)
        return EXIT_USAGE
    except (UsageError, UnsupportedModelError) as exc:
        if debug:
            raise
        print_error(exc, prog)
        return EXIT_USAGE
    except CacheCorruptionError as exc:  # --no-rebuild and a damaged entry: the line names it and how to repair
        if debug:
            raise
        print_error(exc, prog)
        return EXIT_FAILURE
    except BrokenPipeError:  # the reader went away (`... | head`): nothing to report to it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return EXIT_FAILURE
    except ConnectionError as exc:  # a cluster out of reach (--ray-address): the address is the user's to fix
        if debug:
            raise
        print_error(exc, prog)
        return EXIT_USAGE
    except OSError as exc:
        if debug:
            raise
        print_error(_os_error_message(exc), prog)
        return EXIT_FAILURE
    except MemoryError:
        if debug:
            raise
        print_error("out of memory; lower --batch-size (encoding) or --probe-batch-size", prog)
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, and how to see more
        if debug:
            raise
        if "out of memory" in str(exc).lower():
            print_error(f"out of memory ({_one_line(exc)[:200]}); lower --batch-size or --probe-batch-size", prog)
        else:
            print_error(f"{type(exc).__name__}: {_one_line(exc)[:500]} (rerun with --debug for the traceback, and "
                        "please report it)", prog)
        return EXIT_FAILURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
