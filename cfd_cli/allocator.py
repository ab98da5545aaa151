"""The memory allocator of the long-running commands: jemalloc, when the machine has it.

Under the platform's steady churn of small allocations glibc's malloc fragments: a 30-minute soak of `cfd up`
grew by about 11 MB an hour in a straight line and never gave it back, while the Python heap stayed flat. With
jemalloc the same soak stayed flat after warm-up (`docs/benchmarks.md`, "Soak"). A process picks its allocator
when it starts, so a long-running command executes itself once more with jemalloc preloaded. Nothing changes
when jemalloc is missing, except a hint in the log; `CFD_ALLOCATOR=system` keeps glibc's malloc.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from ctypes.util import find_library

log = logging.getLogger(__name__)

LONG_RUNNING = frozenset({"up", "server", "dbproc", "poller", "demo"})
"""Commands that run for hours; the others are over in a second and keep the system allocator."""

CHOICES = ("auto", "jemalloc", "system")
_PRELOADED = "CFD_ALLOCATOR_PRELOADED"  # set in the re-executed process, so it never loops


def _command(args: Sequence[str]) -> str | None:
    """The subcommand of a `cfd` command line (the first word that is not an option)."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def preload_jemalloc(argv: Sequence[str] = sys.argv, environ: Mapping[str, str] = os.environ) -> None:
    """Re-execute this command with jemalloc preloaded when it is a long-running one, the machine has jemalloc
    and `CFD_ALLOCATOR` allows it; otherwise return and let the command run as it is."""
    choice = environ.get("CFD_ALLOCATOR", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        sys.exit(f"error: CFD_ALLOCATOR is {choice!r}; use one of {', '.join(CHOICES)}")
    if (choice == "system" or sys.platform != "linux" or _command(argv[1:]) not in LONG_RUNNING
            or environ.get(_PRELOADED) or "jemalloc" in environ.get("LD_PRELOAD", "")):
        return
    library = find_library("jemalloc")
    if library is None:
        if choice == "jemalloc":
            sys.exit("error: CFD_ALLOCATOR=jemalloc, but jemalloc is not installed; "
                     "install it (apt-get install libjemalloc2) or unset CFD_ALLOCATOR")
        return
    preload = " ".join(filter(None, [environ.get("LD_PRELOAD", ""), library]))
    env = {**environ, "LD_PRELOAD": preload, _PRELOADED: library}
    program = argv[0]
    if os.access(program, os.X_OK) and not program.endswith(".py"):  # the `cfd` script
        os.execve(program, list(argv), env)
    os.execve(sys.executable, [sys.executable, "-m", "cfd_cli.main", *argv[1:]], env)


def report(environ: Mapping[str, str] = os.environ) -> None:
    """Log which allocator this process runs on (once, at start)."""
    library = environ.get(_PRELOADED)
    if library:
        log.info("memory allocator: jemalloc (%s)", library)
    elif environ.get("CFD_ALLOCATOR", "auto").strip().lower() != "system" and sys.platform == "linux":
        log.info("memory allocator: the C library's malloc, which fragments over days of running; "
                 "install jemalloc (apt-get install libjemalloc2) and restart to keep memory flat")
