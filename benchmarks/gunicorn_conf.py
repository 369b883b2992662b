"""Gunicorn settings for the benchmark: stop when the benchmark that started us is gone.

``run.py`` stops its servers itself, even on Ctrl-C; this covers a benchmark killed outright
(SIGKILL, a closed terminal), so that no gunicorn is left serving on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

accesslog = None
loglevel = "warning"
graceful_timeout = 5


def when_ready(server: Any) -> None:
    parent = int(os.environ.get("BENCH_PARENT_PID", "0"))
    if not parent:
        return

    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="bench-parent-watch", daemon=True).start()
timeout = 120
