"""The explorers of 05_extensions as live widgets, in a real JupyterLab driven by headless Chromium.

One JupyterLab server on 127.0.0.1 (a token of the test's own, a root folder copied from
notebooks/), one page: run all cells of 05 on the smoke profile, drag the interpolation slider,
change the sampler's category and draw, and check that each explorer's image changed — the
whole round trip through the browser, the widget comms and the kernel that unit tests cannot
see. Chromium is Debian's (/usr/bin/chromium), driven by Playwright; nothing downloads a browser.

Inputs: the smoke artifacts of 00-04 (``make test`` leaves them from its notebook run; built here
when missing). 05's outputs go to a private artifacts folder, so the real ones stay untouched.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _smoke import skip_if_unfetchable, skip_outside_ci
from helpers import data, paths

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags Chromium keeps calling home, which a closed network punishes.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "05_extensions.ipynb"
INPUTS = ["vqvae", "pixelcnn", "vqvae2", "codes_vqvae2", "pixelsnail_top", "pixelsnail_bottom"]   # what 05 loads
ENV = {**os.environ, "EMOJIVQ_PROFILE": "smoke", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(paths.PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
for _key in ("EMOJIVQ_STATIC", "PAPERMILL"):   # live widgets: let helpers.widgets see a JupyterLab kernel
    ENV.pop(_key, None)

SERVER_START_S, RUN_ALL_S, REDRAW_S = 120, 600, 120


# ---------------------------------------------------------------------------------------------- set-up

@pytest.fixture(scope="module")
def smoke_inputs() -> dict[str, Path]:
    """The checkpoints and code grids 05 loads (and superres.pt when a notebook run left it), built by the
    pipeline first if any is missing."""
    wanted = {name: paths.checkpoint_path("smoke", name) for name in INPUTS}
    if not paths.dataset_path("smoke").exists() or not all(p.exists() for p in wanted.values()):
        with skip_if_unfetchable():   # the pipeline's 00 would fetch them too, but fail rather than skip
            for spec in data.load_manifest()["default"]:
                data.fetch(spec)
        proc = subprocess.run([sys.executable, "-m", "helpers.pipeline", "--profile", "smoke",
                               *[a for nb in ("00", "01", "02", "03", "04") for a in ("--only", nb)]],
                              cwd=paths.PROJECT_ROOT, env=ENV, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, \
            f"building the smoke artifacts failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    superres = paths.checkpoint_path("smoke", "superres")
    return {**wanted, **({"superres": superres} if superres.exists() else {})}


@pytest.fixture(scope="module")
def playwright():
    """Playwright's entry point, with Debian's Chromium there to drive; else a skip (a failure under
    CI=true) naming the install step that is missing — before any artifact is built."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_outside_ci("Playwright is not installed: pip install -e '.[dev]'")
    if not os.access(CHROMIUM, os.X_OK):
        skip_outside_ci(f"no {CHROMIUM}: apt-get install chromium")
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@contextlib.contextmanager
def jupyter_lab(tmp: Path, inputs: dict[str, Path]):
    """A JupyterLab server of its own (config, data, runtime, settings and artifacts folders under
    ``tmp``); yields (base URL, token). Stopped with its kernels on the way out, failure or not."""
    root, config, runtime = tmp / "lab", tmp / "jupyter-config", tmp / "jupyter-runtime"
    shutil.copytree(paths.NOTEBOOKS_DIR, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    artifacts = tmp / "artifacts" / "smoke"
    artifacts.mkdir(parents=True)
    for name, path in inputs.items():
        (artifacts / f"{name}.pt").symlink_to(path)
    settings = config / "lab" / "user-settings" / "@jupyterlab"
    # Every cell in the DOM (no windowing), and no question about news or updates over the page.
    write_json(settings / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
    write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
               {"fetchNews": "false", "checkForUpdates": False})
    port, token = free_port(), secrets.token_hex(16)
    env = {**ENV, "EMOJIVQ_ARTIFACTS_DIR": str(tmp / "artifacts"), "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"), "JUPYTER_RUNTIME_DIR": str(runtime),
           "IPYTHONDIR": str(tmp / "ipython")}
    log = open(tmp / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.extension_manager=readonly",    # no package index lookups
         "--LabApp.expose_app_in_browser=True",    # window.jupyterapp: run the notebook's own commands
         *(["--allow-root"] if os.geteuid() == 0 else [])],   # CI runs as root
        cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            assert server.poll() is None, \
                f"JupyterLab exited ({server.returncode}):\n{read_tail(tmp / 'jupyterlab.log')}"
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"JupyterLab did not answer in {SERVER_START_S} s"
                time.sleep(0.5)
        yield base, token
    finally:
        stop(server, runtime)
        log.close()


def stop(server: subprocess.Popen, runtime: Path) -> None:
    """Ask the server to shut down (it stops its kernels), then end whatever is left: the server's
    process group, and any kernel still running on a connection file of ``runtime`` (kernels run
    in sessions of their own, outside the server's group)."""
    server.terminate()   # SIGTERM: jupyter_server shuts its kernels down and exits
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)
    for pid in processes_mentioning(str(runtime)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


def read_tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


# ---------------------------------------------------------------------------------------------- the page

# The notebook panel's state, read from JupyterLab's own models: done when every code cell has run
# and the kernel is idle; the first error output (run-all stops there) is returned at once.
RUN_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  for (const c of cells) {
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error')
        return {error: o.ename + ': ' + o.evalue + '\\n' + c.model.sharedModel.getSource()};
    }
  }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {done: cells.every(c => c.model.executionCount !== null) && !!kernel && kernel.status === 'idle'};
}"""


def wait_until_run(page, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE_JS)
        assert "error" not in state, f"a cell of {NOTEBOOK} failed in JupyterLab: {state['error']}"
        if state["done"]:
            return
        time.sleep(1)
    raise TimeoutError(f"{NOTEBOOK} did not finish in {timeout_s} s")


def cell_calling(page, call: str):
    """The cell whose source calls ``call``."""
    index = page.evaluate("""(call) => window.jupyterapp.shell.currentWidget.content.widgets
        .findIndex(c => c.model.sharedModel.getSource().includes(call + '('))""", call)
    assert index >= 0, f"no cell of {NOTEBOOK} calls {call}"
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def image_bytes(cell) -> bytes:
    """The explorer's picture: the PNG the Output widget shows."""
    src = cell.locator(".widget-output img").first.get_attribute("src", timeout=REDRAW_S * 1000)
    assert src and src.startswith("data:image/png;base64,"), src
    return base64.b64decode(src.split(",", 1)[1])


def wait_for_new_image(cell, before: bytes, what: str) -> bytes:
    deadline = time.monotonic() + REDRAW_S
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):   # the Output widget swaps its img while redrawing
            after = image_bytes(cell)
            if after != before:
                return after
        time.sleep(0.25)
    raise AssertionError(f"{what}: the explorer's image did not change in {REDRAW_S} s")


def test_explorers_redraw_live_in_jupyterlab_in_chromium(tmp_path, playwright, smoke_inputs):
    with jupyter_lab(tmp_path, smoke_inputs) as (base, token), playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_default_timeout(REDRAW_S * 1000)
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_function("""() => { const p = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                return !!(p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel
                          && p.sessionContext.session.kernel.status === 'idle'); }""")
            # Not awaited (the command's promise settles only when the last cell has run): polled, with a bound.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            wait_until_run(page, RUN_ALL_S)

            # Interpolation: drag the slider for a from its middle to the left end (a = 0).
            picker = cell_calling(page, "widgets.interpolation_picker")
            picker.scroll_into_view_if_needed()
            before = image_bytes(picker)
            handle = picker.locator(".widget-slider .noUi-handle")
            track = picker.locator(".widget-slider .noUi-base").bounding_box()
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] - 20, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()
            assert picker.locator(".widget-slider .widget-readout").inner_text().strip() == "0.00"
            wait_for_new_image(picker, before, "interpolation slider")
            picker.screenshot(path=tmp_path / "interpolation_picker.png")

            # Sampler: another category, then "draw" (the sampler redraws on a click, not on every control).
            sampler = cell_calling(page, "widgets.sampler_explorer")
            sampler.scroll_into_view_if_needed()
            before = image_bytes(sampler)
            category = sampler.locator(".widget-dropdown", has_text="category").locator("select")
            category.select_option(index=1)
            assert category.evaluate("s => s.selectedIndex") == 1
            sampler.get_by_role("button", name="draw").click()
            wait_for_new_image(sampler, before, "sampler category + draw")
            sampler.screenshot(path=tmp_path / "sampler_explorer.png")
            page.screenshot(path=tmp_path / "jupyterlab.png")
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=tmp_path / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
