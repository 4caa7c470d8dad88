"""Execute the workbook's notebooks headless and print the results table.

    python scripts/run_notebooks.py --out build          # `make run`: executed copies + HTML
    python scripts/run_notebooks.py --inplace [NB ...]   # `make notebooks`: re-run and save
    python scripts/run_notebooks.py --results-only [--markdown | --update-readme]

Each notebook runs top to bottom in a fresh kernel of this Python (a clean Restart-and-Run-All)
with ``notebooks/`` as the working directory. One line per notebook reports the outcome and the
wall time; the run stops at the first failing cell and reports the notebook, the cell and the
exception first, then the end of the traceback (colour codes removed).

With ``--out DIR`` nothing tracked changes: the executed notebooks, their HTML (maths rendered by
a local MathJax copied to ``DIR/mathjax``, so it works offline) and the results files
(``DIR/results``, through ``WORKBOOK_RESULTS`` unless that is set) all go under ``DIR``. Only
``--inplace`` rewrites the notebooks and ``results/``. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"
sys.path.insert(0, str(ROOT))

from helpers.runtime import atomic_write, display_path  # noqa: E402 - no torch is loaded

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: MathJax 2 from the pinned PyPI package jupyter-server-mathjax, with its all-in-one config.
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"


class NotebookFailed(RuntimeError):
    """A notebook's cell raised; the message names the notebook, the cell and the exception."""


def _kernel_manager():
    """A kernel of this Python over IPC sockets: local only, and no "running over TCP without
    encryption" warning in the middle of the progress lines."""
    import tempfile

    from jupyter_client.manager import KernelManager

    # IPC socket files are named from ``ip``: make it absolute, as the kernel runs in notebooks/
    sockets = Path(tempfile.mkdtemp(prefix="workbook-kernel-"))
    return KernelManager(kernel_name="python3", transport="ipc", ip=str(sockets / "ipc"))


def execute(path: Path, timeout: int) -> tuple[object, float]:
    """Run ``path`` top to bottom in a fresh kernel; return the executed notebook and seconds.

    Raises:
        NotebookFailed: a cell raised; the message starts with the notebook, the cell index
            (counting all cells, as JupyterLab shows them) and the exception.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    km = _kernel_manager()
    client = NotebookClient(nb, timeout=timeout, km=km,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        raise NotebookFailed(failure_report(path, nb, exc)) from None
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=False)  # the client does not stop a kernel it was given
        shutil.rmtree(Path(km.ip).parent, ignore_errors=True)
    finish_progress_bars(nb)
    nb.metadata.setdefault("workbook", {})["cpu_numerics"] = numerics_record()
    return nb, time.perf_counter() - start


_numerics: dict = {}


def numerics_record() -> dict | None:
    """What the outputs were computed with, for ``notebooks/conftest.py``: this CPU's float32
    numerics (``runtime.cpu_numerics``, computed once per run, with the kernels' environment),
    or None when the kernels computed on a CUDA device (no CPU reference then)."""
    from helpers import runtime

    if "record" not in _numerics:
        on_cuda = runtime.device().type == "cuda"
        _numerics["record"] = None if on_cuda else runtime.cpu_numerics()
    return _numerics["record"]


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def finish_progress_bars(nb) -> int:
    """Give every ``tqdm.auto`` bar's stored text its final state; return how many changed.

    A notebook bar is a widget. Its output keeps, as the plain-text fallback that static viewers
    (GitHub, nbconvert without widget JavaScript, the workbook's own checks) show, the text of
    the bar's *first* frame, "0%", although the run finished it. The executed notebook also
    stores every widget's final state (``metadata.widgets``), so the fallback is rewritten from
    it: description, percentage and counter as the finished bar showed them in JupyterLab. An
    output whose widget state was not stored (a bar closed before the end) is dropped, as
    JupyterLab drops a closed bar's view.
    """
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW) if output.get("data") else None
            text = "".join(output.get("data", {}).get("text/plain", "")) if view else ""
            if not view or "%|" not in text:
                kept.append(output)
                continue
            final = _bar_text(state, view.get("model_id", ""))
            changed += 1
            if final is not None:
                output["data"]["text/plain"] = final
                kept.append(output)
        cell["outputs"] = kept
    return changed


def _bar_text(state: dict, model_id: str) -> str | None:
    """``"desc: 100%|██████████| 590/590 [00:04<00:00, 130.1it/s]"`` from a tqdm HBox's state:
    its children are the left text (description and percentage), the bar and the right text."""
    box = state.get(model_id, {}).get("state", {})
    parts = [state.get(str(c).removeprefix("IPY_MODEL_"), {}).get("state", {})
             for c in box.get("children", [])]
    if len(parts) != 3:
        return None
    left, right = (html.unescape(str(p.get("value", ""))).replace("\u2007", " ")
                   for p in (parts[0], parts[2]))
    value, total = parts[1].get("value", 0) or 0, parts[1].get("max", 0) or 0
    filled = min(10, int(10 * value / total)) if total else 0
    return f"{left}|{'█' * filled}{' ' * (10 - filled)}|{right}"


def failure_report(path: Path, nb, exc: Exception, tail: int = 3000) -> str:
    """The notebook, the failing cell (index and first line), the exception, then the end of
    the traceback, without ANSI colour codes."""
    failing = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error"
                                            for o in cell.get("outputs", [])):
            failing = (index, cell)
            break
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = ANSI.sub("", str(getattr(exc, "evalue", "")))
    head = f"{display_path(path)}: "
    if failing is not None:
        index, cell = failing
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        head += f"cell {index} (execution {cell.get('execution_count')}, {first[:60]!r}) "
    head += f"raised {ename}: {evalue}"
    text = ANSI.sub("", str(exc))
    if len(text) > tail:
        text = "..." + text[-tail:]
    return f"{head}\n\n{text}"


def _mathjax_url(out: Path) -> str:
    """Copy MathJax next to the HTML once and return the relative URL to load it from."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = out / "mathjax"
    if not (target / "MathJax.js").exists():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return f"mathjax/MathJax.js?config={MATHJAX_CONFIG}"


#: The PyPI MathJax ships only the STIX-Web web fonts (as Jupyter's classic notebook used it):
#: without this, MathJax looks for its TeX fonts and fails on glyphs such as the prime in D'.
FONT_CONFIG = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                 imageFont: null}});
</script>
"""


def offline_fonts(html: str) -> str:
    """Insert :data:`FONT_CONFIG` before the exporter's own MathJax configuration."""
    marker = '<script type="text/x-mathjax-config">'
    return html.replace(marker, FONT_CONFIG + marker, 1) if marker in html else html


def results_table(markdown: bool = False, folder: Path | None = None) -> str:
    """The metrics of every ``<folder>/*.json`` (default: ``WORKBOOK_RESULTS`` or results/)."""
    folder = folder or _results_folder()
    rows = []
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        for name, value in record["metrics"].items():
            rows.append((record["notebook"], name, value))
        if record.get("seconds") is not None:
            rows.append((record["notebook"], "seconds (setup to save_results)", record["seconds"]))
    if not rows:
        return (f"no results in {display_path(folder)}/ yet (each notebook's last cells write "
                f"them)")
    if markdown:
        lines = ["| notebook | metric | value |", "| --- | --- | --- |"]
        lines += [f"| {nb} | `{name}` | {_fmt(value)} |" for nb, name, value in rows]
        return "\n".join(lines)
    width = max(len(nb) for nb, _, _ in rows), max(len(name) for _, name, _ in rows)
    return "\n".join(f"{nb:<{width[0]}}  {name:<{width[1]}}  {_fmt(value)}"
                     for nb, name, value in rows)


def _results_folder() -> Path:
    value = os.environ.get("WORKBOOK_RESULTS", "").strip()
    return RESULTS if not value else ROOT / Path(value).expanduser()


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--out", type=Path, help="folder for executed copies, HTML and results")
    mode.add_argument("--inplace", action="store_true", help="save outputs into the notebooks")
    mode.add_argument("--results-only", action="store_true", help="only print the results")
    parser.add_argument("--markdown", action="store_true", help="results as a Markdown table")
    parser.add_argument("--update-readme", action="store_true",
                        help="write the Markdown results table into README.md")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = parser.parse_args(argv)

    if not args.results_only:
        paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
        if not paths:
            print("no notebooks yet: nothing to run")
        out = None if args.inplace else (args.out or ROOT / "build").resolve()
        if out is not None and not os.environ.get("WORKBOOK_RESULTS", "").strip():
            os.environ["WORKBOOK_RESULTS"] = str(out / "results")  # the kernels inherit it
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.stem} ...", end=" ", flush=True)
            try:
                nb, seconds = execute(path, args.timeout)
            except NotebookFailed as exc:
                print("FAILED", flush=True)
                print(f"\nFAILED {exc}", file=sys.stderr)
                return 1
            import nbformat

            if out is None:
                atomic_write(path, lambda p, nb=nb: nbformat.write(nb, p))
            else:
                from nbconvert import HTMLExporter

                out.mkdir(parents=True, exist_ok=True)
                atomic_write(out / path.name, lambda p, nb=nb: nbformat.write(nb, p))
                html, _ = HTMLExporter(mathjax_url=_mathjax_url(out)).from_notebook_node(nb)
                atomic_write(out / f"{path.stem}.html", offline_fonts(html))
            print(f"ok ({seconds:.0f} s)", flush=True)
        if paths and out is not None:
            print(f"executed notebooks and HTML (offline maths) in {display_path(out)}/, "
                  f"results in {display_path(_results_folder())}/")
    if args.update_readme:
        update_readme(results_table(markdown=True))
        print("README.md results table updated")
        return 0
    print()
    print(results_table(args.markdown))
    return 0


def update_readme(table: str, readme: Path | None = None) -> None:
    """Replace the text between the README's results markers with ``table`` (atomically)."""
    readme = readme or ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{display_path(readme)} lacks the markers {start} ... {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write(readme, f"{head}{start}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
