"""Screenshot of the CAM explorer running in a real JupyterLab: notebooks/explorer_jupyterlab.png.

What it does:

1. starts ``jupyter lab`` (this venv's) on ``notebooks/``, bound to 127.0.0.1:8890 with a random
   token, autosave off and a throw-away settings / workspace folder (so the stored notebook and your
   own JupyterLab settings are not touched; the script also checks the notebook's bytes afterwards
   and puts them back if anything changed them);
2. opens ``notebooks/explorer.ipynb`` in headless Chromium (selenium + chromedriver), runs
   "Run All Cells", waits until the widget's progress label says ``done`` and the maps image has
   loaded, scrolls the explorer into view;
3. saves a 1600 x 1200 screenshot to ``notebooks/explorer_jupyterlab.png`` and stops the server.

Needs (one-off tooling, not project dependencies)::

    apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver
    .venv/bin/python -m pip install selenium      # into the venv, not into pyproject.toml

Run from the repository root::

    .venv/bin/python tools/explorer_screenshot.py [--out notebooks/explorer_jupyterlab.png] [--port 8890]

Exit status 0 when the widgets rendered and the screenshot was written; otherwise 1 with the reason
(e.g. "Loading widget..." still showing, a kernel error, or a timeout), plus a screenshot of the
failure next to the output path (``*.failed.png``) to look at.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "explorer.ipynb"
WIDTH, HEIGHT = 1600, 1200


def _settings_dir(root: Path) -> Path:
    """JupyterLab user settings: no autosave, no news / update pop-ups."""
    settings = root / "settings"
    files = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in files.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return settings


def start_lab(port: int, token: str, tmp: Path) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
               JUPYTERLAB_SETTINGS_DIR=str(_settings_dir(tmp)), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    cmd = [str(bin_dir / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={REPO / 'notebooks'}",
           "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True", "--allow-root"]
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO / "notebooks",
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({proc.returncode}); see {tmp / 'lab.log'}:\n"
                               + (tmp / "lab.log").read_text()[-2000:])
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("jupyter lab did not answer within 90 s")


def stop_lab(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started (its own session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    # the viewport itself at width x height (window-size counts the window's chrome in some versions)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver


STATE_JS = """
const text = document.body ? document.body.innerText : '';
const imgs = Array.from(document.querySelectorAll('.jp-OutputArea .widget-image'));
const loaded = imgs.filter(i => i.complete && i.naturalWidth > 100);
return {
  app: !!window.jupyterapp,
  notebook: !!document.querySelector('.jp-Notebook'),
  kernelIdle: !!document.querySelector('.jp-Notebook') && text.includes('Idle'),
  loadingWidget: text.includes('Loading widget'),
  widgetError: text.includes('Error displaying widget'),
  traceback: !!document.querySelector('[data-mime-type="application/vnd.jupyter.error"]'),
  done: text.includes('done in'),
  predicted: text.includes('predicted:'),
  mapsLoaded: loaded.length,
};
"""


def wait_for(driver, predicate, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = driver.execute_script(STATE_JS)
        if predicate(state):
            return state
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; page state: {state}")


def take(port: int, token: str, out: Path) -> None:
    driver = browser(WIDTH, HEIGHT)
    try:
        driver.get(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}&reset")
        wait_for(driver, lambda s: s["app"] and s["notebook"], 120, "JupyterLab and the notebook")
        # the kernel: ready when a trivial session exists; then run everything
        driver.execute_script("""
            const app = window.jupyterapp;
            app.shell.collapseLeft(); app.shell.collapseRight();
        """)
        wait_for(driver, lambda s: s["kernelIdle"], 60, "the kernel")
        time.sleep(2)
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        try:
            state = wait_for(driver, lambda s: (s["done"] and s["mapsLoaded"] > 0 and s["predicted"])
                             or s["traceback"] or s["widgetError"], 240, "the explorer's maps")
        except TimeoutError:
            driver.save_screenshot(str(out.with_suffix(".failed.png")))
            raise
        if state["traceback"] or state["widgetError"] or state["loadingWidget"]:
            driver.save_screenshot(str(out.with_suffix(".failed.png")))
            raise RuntimeError(f"the widgets did not render: {state}")
        driver.execute_script("""
            const box = document.querySelector('.jp-OutputArea .widget-vbox');
            if (box) { box.scrollIntoView({block: 'start'}); }
        """)
        time.sleep(1.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "figures" / "explorer" / "jupyterlab.png")
    parser.add_argument("--port", type=int, default=8890)
    args = parser.parse_args(argv)
    notebook = REPO / "notebooks" / NOTEBOOK
    original = notebook.read_bytes()
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="explorer-shot-") as tmp:
        proc = start_lab(args.port, token, Path(tmp))
        try:
            take(args.port, token, args.out)
        except Exception as err:  # noqa: BLE001 - report and exit non-zero
            print(f"screenshot failed: {err}", file=sys.stderr)
            print((Path(tmp) / "lab.log").read_text()[-3000:], file=sys.stderr)
            return 1
        finally:
            stop_lab(proc)
            if notebook.read_bytes() != original:
                notebook.write_bytes(original)
                print("note: the notebook had been modified by the session; restored", file=sys.stderr)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:12]
    print(f"wrote {args.out} ({WIDTH}x{HEIGHT}, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
