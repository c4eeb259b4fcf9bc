"""The python tool's sandbox: code runs in a fresh interpreter with a time limit, a memory limit,
no network and truncated output.

Isolation, strongest available first:
1. a new network namespace (``unshare -n`` as root, ``unshare -rn`` otherwise) - the process has
   no network interface but loopback, so nothing it starts can reach the network either;
2. always, inside the interpreter: an audit hook (PEP 578, cannot be removed by the code) that
   refuses socket creation/connection/name look-ups and starting other programs;
3. resource limits (RLIMIT_AS for memory, RLIMIT_CPU), a wall-clock timeout that kills the
   whole process group, an empty temporary working directory and a minimal environment.
Which isolation was used is reported by `network_isolation()` and in each result.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

_CODE = re.compile(r"<code>(.*?)</code>", re.DOTALL)

# Runs in the child interpreter before the tool's code (argv: memory bytes, cpu seconds).
_RUNNER = r"""
import resource, sys
memory, cpu = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
_BLOCKED = ("socket.", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "os.fork", "pty.spawn", "urllib.Request")
def _audit(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"{event}: network and subprocesses are disabled in the python tool")
code = sys.stdin.read()
sys.addaudithook(_audit)
exec(compile(code, "<python-tool>", "exec"), {"__name__": "__main__"})
"""


@dataclass
class SandboxResult:
    output: str
    ok: bool
    error: str | None
    isolation: str


def extract_code(code: str) -> str:
    """The source inside <code>...</code> (the ReAct format), or the text itself."""
    found = _CODE.search(code)
    return (found.group(1) if found else code).strip("\n")


@functools.cache
def network_isolation() -> str:
    """'netns' when `unshare` can give the child its own network namespace, else 'audit-hook'."""
    prefix = _unshare_prefix()
    return "netns" if prefix else "audit-hook"


@functools.cache
def _unshare_prefix() -> tuple[str, ...]:
    unshare = shutil.which("unshare")
    if not unshare:
        return ()
    for prefix in ((unshare, "-n"), (unshare, "-rn")):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return ()


def run_python(
    code: str, timeout_s: float = 10.0, memory_mb: int = 1024, max_output_chars: int = 4000
) -> SandboxResult:
    """Run `code` (with or without <code> tags); stdout and stderr together, truncated."""
    source = extract_code(code)
    isolation = network_isolation()
    argv = [
        *_unshare_prefix(),
        sys.executable,
        "-I",
        "-c",
        _RUNNER,
        str(memory_mb * 1024 * 1024),
        str(max(1, int(timeout_s))),
    ]
    with tempfile.TemporaryDirectory(prefix="python-tool-") as workdir:
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(source.encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            text = _truncate(output.decode(errors="replace"), max_output_chars)
            return SandboxResult(text, False, f"timeout after {timeout_s:g} s", isolation)
    text = _truncate(output.decode(errors="replace"), max_output_chars)
    if process.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        # the CPU-time limit (ceil of the timeout) can fire before the wall clock on an idle machine
        return SandboxResult(text, False, f"timeout after {timeout_s:g} s", isolation)
    if process.returncode != 0:
        reason = "memory limit" if "MemoryError" in text else f"exit code {process.returncode}"
        return SandboxResult(text, False, reason, isolation)
    return SandboxResult(text, True, None, isolation)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... output truncated: {len(text) - limit} more characters]"
