"""Browser smoke test: every notebook opened in JupyterLab in headless Chromium, Run All, checked.

    make smoke                                   # all notebooks
    make smoke ARGS="notebooks/task2_dp_mechanisms.ipynb"
    .venv/bin/python scripts/smoke_browser.py --lab ".venv/bin/jupyter lab" [NB ...]

Students open a notebook in JupyterLab and press Run All; nbval executes the same cells but never
renders them. This script does what the student does: it starts JupyterLab (the command given by
``--lab``, which ``make smoke`` takes from the same flags as ``make lab``) on copies of the
notebooks under ``build/smoke/notebooks`` (so neither autosave nor the results files touch the
checkout), opens each notebook in Debian's headless Chromium driven by Selenium, runs the
``notebook:run-all-cells`` command (the Run menu's Run All Cells), waits for every cell to finish
and the kernel to go idle, then asserts that

* no cell has an error output,
* every progress bar that is still shown is finished (no bar stuck below 100%) and no widget
  failed to render,
* the equations rendered (MathJax output elements present, no MathJax errors) with the network
  blocked, i.e. offline,

and saves screenshots of the top and the end of each notebook as ``build/smoke/<stem>*.png``.
Where ``make run`` left an HTML export (``build/<stem>.html``), it is opened from disk with the
network blocked and its equations must render with the local MathJax.
Needs ``apt-get install chromium chromium-driver``. It is not part of ``make test``: it takes
about as long as running the notebooks plus half a minute per notebook.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "smoke"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# Evaluated in the page: the state of the notebook widget in JupyterLab's main area.
STATE_JS = """
const app = window.jupyterapp;
const panel = app && app.shell.currentWidget;
if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) { return null; }
const cells = panel.content.model.cells;
let code = 0, executed = 0, errors = [];
for (let i = 0; i < cells.length; i++) {
  const cell = cells.get(i).toJSON();
  if (cell.cell_type !== 'code') { continue; }
  code += 1;
  if (cell.execution_count !== null) { executed += 1; }
  for (const o of (cell.outputs || [])) {
    if (o.output_type === 'error') { errors.push({cell: i, ename: o.ename, evalue: o.evalue}); }
  }
}
const prompts = Array.from(document.querySelectorAll('.jp-InputPrompt')).map(e => e.textContent);
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
return {code: code, executed: executed, errors: errors,
        running: prompts.filter(t => t.includes('*')).length,
        kernel: kernel ? kernel.status : 'none',
        busy: panel.sessionContext.kernelDisplayStatus};
"""

RENDER_JS = """
const bars = Array.from(document.querySelectorAll('.widget-progress .progress-bar'));
const unfinished = bars.filter(b => {
  const w = parseFloat(b.style.width || '0');
  return !(w >= 99.99) && !b.classList.contains('progress-bar-danger');
}).map(b => b.style.width);
const failedWidgets = Array.from(document.querySelectorAll('.jp-OutputArea-output'))
  .filter(e => /Error displaying widget|Loading widget\\.\\.\\./.test(e.textContent)).length;
return {bars: bars.length, unfinished: unfinished, failedWidgets: failedWidgets,
        math: document.querySelectorAll('mjx-container').length,
        mathErrors: document.querySelectorAll('mjx-merror, .MathJax_Error').length,
        rawTex: Array.from(document.querySelectorAll('.jp-MarkdownOutput'))
          .filter(e => !e.querySelector('mjx-container') && /\\$[^$]+\\$/.test(e.textContent))
          .length};
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"JupyterLab exited with code {proc.returncode}; see "
                             f"{OUT / 'jupyterlab.log'}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise SystemExit(f"{path} not found: install Debian's browser with "
                             "`apt-get install chromium chromium-driver`")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000",
                 # offline: every host but the local JupyterLab is unreachable
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _check_notebook(driver, base: str, token: str, name: str, timeout: float) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.perf_counter()
    driver.get(f"{base}/lab/tree/{name}?token={token}&reset")
    WebDriverWait(driver, 180).until(
        lambda d: (d.execute_script(STATE_JS) or {}).get("kernel") == "idle")
    # not awaited: the command's promise resolves only when every cell has run
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    deadline = time.monotonic() + timeout
    state: dict = {}
    time.sleep(2)
    while time.monotonic() < deadline:
        state = driver.execute_script(STATE_JS) or {}
        done = state.get("executed") == state.get("code") and not state.get("running")
        if (done and state.get("kernel") == "idle") or state.get("errors"):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"{name}: still running after {timeout:.0f} s: {state}")
    time.sleep(3)  # let the last outputs and the maths render
    render = driver.execute_script(RENDER_JS)
    stem = Path(name).stem
    driver.save_screenshot(str(OUT / f"{stem}.png"))
    driver.execute_script("""const p = window.jupyterapp.shell.currentWidget;
        p.content.activeCellIndex = p.content.widgets.length - 1;
        p.content.scrollToItem(p.content.widgets.length - 1);""")
    time.sleep(1)
    driver.save_screenshot(str(OUT / f"{stem}-end.png"))
    problems = []
    if state.get("errors"):
        problems.append(f"error outputs: {state['errors']}")
    if render["unfinished"]:
        problems.append(f"progress bars not finished: {render['unfinished']}")
    if render["failedWidgets"]:
        problems.append(f"{render['failedWidgets']} widget(s) failed to render")
    if render["mathErrors"] or render["rawTex"]:
        problems.append(f"maths not rendered: {render['mathErrors']} MathJax errors, "
                        f"{render['rawTex']} markdown cells with raw $...$")
    return {"notebook": name, "seconds": round(time.perf_counter() - start, 1),
            "code_cells": state.get("code"), "equations": render["math"],
            "progress_bars_shown": render["bars"], "problems": problems}


HTML_JS = """
return {math: document.querySelectorAll('.MathJax, .MathJax_CHTML, mjx-container').length,
        errors: Array.from(document.querySelectorAll('.MathJax_Error, mjx-merror'))
          .map(e => e.textContent.slice(0, 80)),
        loaded: typeof MathJax !== 'undefined'};
"""


def _check_html(driver, path: Path) -> list[str]:
    """The HTML export from `make run`, opened from disk with the network blocked: MathJax
    (the local copy) must load and typeset every equation without an error."""
    driver.get(path.as_uri())
    deadline, state = time.monotonic() + 120, {}
    while time.monotonic() < deadline:
        time.sleep(3)
        state = driver.execute_script(HTML_JS)
        again = driver.execute_script(HTML_JS)
        if state["loaded"] and state["math"] and again["math"] == state["math"]:
            break
    driver.save_screenshot(str(OUT / f"{path.stem}-html.png"))
    problems = []
    if not state.get("loaded"):
        problems.append(f"{path.name}: MathJax did not load offline")
    if state.get("errors"):
        problems.append(f"{path.name}: {len(state['errors'])} MathJax errors, e.g. "
                        f"{state['errors'][:3]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default=f"{ROOT / '.venv' / 'bin' / 'jupyter'} lab",
                        help="command that starts JupyterLab (make smoke passes make lab's)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per notebook")
    parser.add_argument("--html", type=Path, default=ROOT / "build",
                        help="also open <HTML>/<stem>.html from `make run` where present")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    total_start = time.perf_counter()
    shutil.rmtree(OUT, ignore_errors=True)
    work = OUT / "notebooks"
    work.mkdir(parents=True)
    for path in paths:
        shutil.copy(path, work / path.name)
    settings = OUT / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell (JupyterLab 4 otherwise renders only the visible ones)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "WORKBOOK_RESULTS": str(OUT / "results"),
           "JUPYTERLAB_SETTINGS_DIR": str(OUT / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(OUT / "lab-workspaces")}
    lab_command = shlex.split(args.lab)
    if (ROOT / lab_command[0]).exists():  # a path relative to the repository, as make gives it
        lab_command[0] = str(ROOT / lab_command[0])
    command = [*lab_command, "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
               f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False"]
    log = (OUT / "jupyterlab.log").open("w")
    lab = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    reports, driver = [], None
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{base}/api/status?token={token}", lab)
        driver = _browser()
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.stem} ...", end=" ", flush=True)
            report = _check_notebook(driver, base, token, path.name, args.timeout)
            reports.append(report)
            verdict = "ok" if not report["problems"] else "FAILED"
            print(f"{verdict} ({report['seconds']:.0f} s, {report['code_cells']} code cells, "
                  f"{report['equations']} equations, {report['progress_bars_shown']} progress "
                  f"bars shown)", flush=True)
            html = args.html / f"{path.stem}.html"
            if html.is_file():
                report["html_problems"] = _check_html(driver, html)
                report["problems"] += report["html_problems"]
                print(f"    HTML export {'ok' if not report['html_problems'] else 'FAILED'}: "
                      f"equations rendered offline from {html.name}", flush=True)
            for problem in report["problems"]:
                print(f"    {problem}", flush=True)
    finally:
        if driver is not None:
            driver.quit()
        lab.terminate()
        try:
            lab.wait(30)
        except subprocess.TimeoutExpired:
            lab.kill()
        log.close()
    total = time.perf_counter() - total_start
    (OUT / "report.json").write_text(json.dumps({"seconds": round(total, 1),
                                                 "notebooks": reports}, indent=2) + "\n")
    failed = [r["notebook"] for r in reports if r["problems"]]
    print(f"browser smoke test: {len(reports) - len(failed)}/{len(reports)} notebooks clean in "
          f"{total:.0f} s; screenshots and report.json in build/smoke/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
