"""Run a command and measure it: wall time and the peak RSS of its largest process.

The peak comes from `os.wait4` on that one child (what GNU time's %M reports): the largest
resident set of the child or of any descendant it waited for, not of earlier commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str
    cpu_seconds: float = 0.0  # user + system, the child and every descendant it waited for


def run_measured(command: list[str]) -> Measured:
    """Run `command` to completion; a non-zero exit raises with the tail of its output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode:
        raise RuntimeError(
            f"{' '.join(command)} exited with {process.returncode}:\n"
            f"{stdout[-2000:]}{stderr[-3000:]}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(seconds, usage.ru_maxrss / 1024, stdout, cpu)


# a syscall's name at the start of an strace line (with -f: after the pid)
STRACE_CALL = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\(")


def child_or_traced(args, child, script: str) -> bool:
    """For a benchmark that runs a step in a checkout's code (`args.code`, a `git worktree` of
    an older commit for "before") in a child process traced by strace: in the child, run
    `child(args)` with that code first on sys.path and say so; in the parent, stop with a
    message when strace is missing."""
    if args.child:
        sys.path.insert(0, str(args.code.resolve()))
        child(args)
        return True
    if not shutil.which("strace"):
        sys.exit(f"{script} counts calls with strace, which is not installed")
    return False
