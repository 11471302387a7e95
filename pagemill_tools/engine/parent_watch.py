"""Worker processes of the local engine must not outlive it: a run killed with SIGKILL (or by the
OOM killer, or a power cut of the terminal) would otherwise leave Lambda workers and GPU container
processes holding database connections and CPU.

``exit_with_parent()`` starts a thread that ends the process as soon as its parent is gone (the
process is re-parented, so ``getppid`` changes). A thread, not ``PR_SET_PDEATHSIG``: that signal
fires when the parent *thread* that started the process ends, and the engine starts replacement
workers from short-lived Step Functions map threads.

Workers also ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and the engine
decides the order of the shutdown (documents marked, executions stopped, then workers ended).

``python -m pagemill_tools.engine.parent_watch SCRIPT [ARGS]`` runs SCRIPT as ``__main__`` under
the same watch (the local GPU container's entrypoint).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path

# The exit status of a worker that ended because the engine was gone.
ORPHANED_EXIT = 3
_POLL_S = 0.2


def exit_with_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_POLL_S)
        os._exit(ORPHANED_EXIT)  # nothing to flush: the engine that wanted the result is gone

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str]) -> None:
    script = Path(argv[0]).resolve()
    exit_with_parent()
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.parent))  # as `python SCRIPT` would have it
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
