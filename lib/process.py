"""How the pipeline's command-line jobs end: :func:`finish` skips the interpreter's teardown.

A Python process that imported torch and torchvision spends about 0.8 s exiting (measured on the 2-core
reference machine, best of 3: ``python -c "import lib.evaluation.__main__"`` 3.37 s, the same with
``os._exit(0)`` after the import 2.61 s): finalisers and the garbage collector visit every module and
object, and the heap is handed back page by page. The default pipeline starts about fifty such jobs.
Their results are already on disk when they end (written to a temporary name, flushed and renamed), so
nothing is lost by ending the process at once. Only the ``__main__`` blocks call it: a test or a notebook
that calls ``main()`` goes on as usual.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["finish"]


def finish(code: int = 0) -> None:
    """Flush logging, stdout and stderr, then end the process with ``code`` without the interpreter's
    teardown (:func:`os._exit`). Call it after every file the job writes is closed.

    Under a profiler or a tracer (``python -m cProfile``, coverage: ``sys.getprofile()`` or ``sys.gettrace()``
    is set) it returns instead, so they can write their results at the normal exit."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):  # replaced or already closed: nothing left to flush
            pass
    os._exit(code)
