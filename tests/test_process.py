"""lib.process.finish: a job ends at once, with its exit code and everything it printed or logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_finish_flushes_output_and_keeps_the_exit_code(tmp_path):
    script = ("import logging, sys\n"
              "from lib.process import finish\n"
              f"logging.basicConfig(filename={str(tmp_path / 'job.log')!r}, level=logging.INFO)\n"
              "logging.info('logged before the end')\n"
              "print('printed into a pipe', end='')\n"
              "sys.stderr.write('and to stderr')\n"
              "finish(3)\n"
              "print('never reached')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stdout == "printed into a pipe" and proc.stderr == "and to stderr"
    assert "logged before the end" in (tmp_path / "job.log").read_text()


def test_finish_returns_under_a_profiler(tmp_path):
    """python -m cProfile writes its statistics at the normal exit: finish leaves that exit alone."""
    script = tmp_path / "job.py"
    script.write_text("from lib.process import finish\nfinish(3)\nprint('after finish')\n")
    stats = tmp_path / "job.prof"
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(stats), str(script)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and proc.stdout == "after finish\n" and stats.is_file()
