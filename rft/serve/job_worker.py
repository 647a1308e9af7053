"""A fine-tuning job's worker process: `rft train CONFIG [--resume]` that dies with the server that started it.

`python -m rft.serve.job_worker SERVER_PID rft-train-args...` asks Linux to SIGKILL this process when its
parent goes away (PR_SET_PDEATHSIG), checks the parent is still the server (it may have died before the
request), and then runs the `rft` command line in this process, so training takes the `rft train` code
path unchanged. Setting this up here rather than in a `preexec_fn` keeps Python code out of the
forked child of a threaded server, where it could deadlock.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent exits; exit now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        raise SystemExit(f"rft serve (pid {parent}) exited before its job worker started")


def main() -> None:
    die_with_parent(int(sys.argv[1]))
    from rft.cli import main as rft_main

    sys.argv = ["rft", *sys.argv[2:]]
    rft_main()


if __name__ == "__main__":
    main()
