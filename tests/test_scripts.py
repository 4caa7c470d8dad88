"""scripts/run_notebooks.py and the nbval conftest, run the way `make run` and `make test` do.

These run real kernels (a few seconds each; the Task 2 notebook about 20 s on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "run_notebooks.py"
SMALL = ROOT / "notebooks" / "task2_dp_mechanisms.ipynb"
#: What running the workbook could write to, among the tracked files.
WRITABLE = ("results", "notebooks", "data", "README.md")

sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks  # noqa: E402


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WORKBOOK_RESULTS"}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def _tracked_digests() -> dict[str, str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *WRITABLE], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    return {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
            for name in listed if name and (ROOT / name).is_file()}


def _tiny_notebook(path: Path, failing: bool) -> Path:
    cells = [nbformat.v4.new_markdown_cell("# A tiny notebook"),
             nbformat.v4.new_code_cell("n_people = 3\nprint(n_people)")]
    if failing:
        cells.append(nbformat.v4.new_code_cell(
            "import sys\nprint('\\x1b[31mcoloured\\x1b[0m', file=sys.stderr)\n"
            "raise ValueError('planted failure: the data file is corrupted')"))
    cells += [nbformat.v4.new_code_cell("print(n_people + 1)"),
              nbformat.v4.new_markdown_cell("Maths: $e^{i\\pi} + 1 = 0$")]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs the git checkout")
def test_make_run_outside_the_repository_leaves_tracked_files_unchanged(tmp_path):
    before = _tracked_digests()
    out = tmp_path / "out"  # outside the repository: used to crash after writing
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), str(SMALL)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    after = _tracked_digests()
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    assert changed == []  # results/ and the notebooks untouched (files others add don't count)
    stem = SMALL.stem
    assert (out / f"{stem}.ipynb").is_file()
    record = json.loads((out / "results" / f"{stem}.json").read_text())
    assert record["notebook"] == stem
    # the results table is read from where the results went, not from results/
    assert f"saved {out / 'results' / f'{stem}.json'}" in (out / f"{stem}.ipynb").read_text()
    assert f"results in {out / 'results'}/" in done.stdout
    html = (out / f"{stem}.html").read_text()
    assert "mathjax/MathJax.js?config=" in html
    assert not re.search(r"https?://[^\"']*mathjax", html, re.IGNORECASE)  # offline maths
    assert (out / "mathjax" / "MathJax.js").is_file()
    assert html.index('webFont: "STIX-Web"') < html.index("init_mathjax")  # the shipped fonts
    assert "without encryption" not in done.stdout + done.stderr


def test_a_failing_notebook_is_reported_legibly(tmp_path):
    path = _tiny_notebook(tmp_path / "tiny_fail.ipynb", failing=True)
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"),
                           str(path)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1
    assert "FAILED" in done.stdout
    first = done.stderr.strip().splitlines()[0]
    # notebook, cell index (as JupyterLab counts: the markdown cell is cell 0) and exception
    assert first == (f"FAILED {path}: cell 2 (execution 2, 'import sys') raised ValueError: "
                     "planted failure: the data file is corrupted")
    assert "\x1b[" not in done.stderr  # colour codes stripped
    assert not (tmp_path / "out" / "tiny_fail.html").exists()


def test_failure_report_strips_colour_and_keeps_the_head(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="'k'",
                                                  traceback=[])]

    class Fake(Exception):
        ename, evalue = "KeyError", "\x1b[31m'k'\x1b[0m"

    report = run_notebooks.failure_report(tmp_path / "nb.ipynb", nb,
                                          Fake("\x1b[31m" + "x" * 5000 + "\x1b[0m"), tail=100)
    head, _, body = report.partition("\n\n")
    assert head == f"{tmp_path / 'nb.ipynb'}: cell 0 (execution None, 'x') raised KeyError: 'k'"
    assert body == "..." + "x" * 100


def test_results_table_reads_workbook_results(tmp_path, monkeypatch):
    record = {"notebook": "hw0", "metrics": {"acc": 0.5, "n": 1200}, "config": {},
              "environment": {}, "seconds": 1.0}
    (tmp_path / "hw0.json").write_text(json.dumps(record))
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path))
    table = run_notebooks.results_table()
    assert table.splitlines()[0].split() == ["hw0", "acc", "0.5"]
    assert table.splitlines()[1].split() == ["hw0", "n", "1,200"]
    assert run_notebooks.results_table(markdown=True).splitlines()[2] == "| hw0 | `acc` | 0.5 |"
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path / "empty"))
    assert run_notebooks.results_table().startswith("no results in")


def test_update_readme_replaces_only_the_marked_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\noutro\n")
    run_notebooks.update_readme("| new |", readme)
    assert readme.read_text() == ("intro\n<!-- results:start -->\n| new |\n"
                                  "<!-- results:end -->\noutro\n")
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temporary file left
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="lacks the markers"):
        run_notebooks.update_readme("| new |", readme)


def test_nbval_skips_the_rest_of_a_notebook_after_its_first_failure(tmp_path):
    shutil.copy(ROOT / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    _tiny_notebook(tmp_path / "tiny_fail.ipynb", failing=True)
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                           "-p", "no:cacheprovider", "tiny_fail.ipynb"], cwd=tmp_path,
                          env=_env(WORKBOOK_DEVICE="cpu"), capture_output=True, text=True,
                          timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert done.returncode == 1
    assert "running tiny_fail.ipynb (3 cells)" in out
    last = out.strip().splitlines()[-1]
    assert "1 failed, 1 passed, 1 skipped" in last  # not a knock-on failure per later cell
    summary = out.split("first failing cell")[-1]
    assert "tiny_fail.ipynb: Cell 1 (notebook cell 2, 'import sys')" in summary
    assert "not run: tiny_fail.ipynb already failed at Cell 1" in out
    assert "CPU: cells marked # NBVAL_CHECK_OUTPUT are compared" in out


@pytest.mark.parametrize(("device", "compared"), [("cpu", True), ("cuda", False)])
def test_nbval_compares_on_the_cpu_and_not_on_cuda(tmp_path, device, compared):
    """A marked cell whose committed output differs fails on the CPU; on a CUDA device the
    comparison is off, said in the header and the summary, and the cell still runs."""
    shutil.copy(ROOT / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(0.1 + 0.2)", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="0.3\n")]  # differs
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "nb.ipynb")
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                           "-p", "no:cacheprovider", "nb.ipynb"], cwd=tmp_path,
                          env=_env(WORKBOOK_DEVICE=device), capture_output=True, text=True,
                          timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    if compared:
        assert done.returncode == 1, out  # on the CPU the difference is caught
        assert "Cell outputs differ" in out
    else:
        assert done.returncode == 0, out
        assert "CUDA device found: output comparison is OFF" in out
        assert "output comparison was OFF (CUDA device)" in out


def _load_conftest():
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebooks_conftest",
                                                  ROOT / "notebooks" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("source", "marked"), [
    ("# NBVAL_CHECK_OUTPUT\n# REFERENCE_CPU_ONLY\nprint(1)", True),
    ("  #REFERENCE_CPU_ONLY  \nprint(1)", True),
    ("## REFERENCE_CPU_ONLY", True),
    ("print(1)  # REFERENCE_CPU_ONLY", False),    # not a line of its own
    ("# REFERENCE_CPU_ONLY: trained", False),      # not the marker's exact text
    ("# NBVAL_CHECK_OUTPUT\nprint('REFERENCE_CPU_ONLY')", False),
])
def test_reference_cpu_only_marker_is_read_as_nbval_reads_its_own(source, marked):
    assert _load_conftest().reference_cpu_only(source) is marked


def _fingerprint_notebook(path: Path, recorded: str | None) -> None:
    """Cell 0: a trained-model cell (marked # REFERENCE_CPU_ONLY), cell 1: a deterministic one;
    both committed with an output that differs from what they print."""
    cells = []
    for i, marks in enumerate(("# NBVAL_CHECK_OUTPUT\n# REFERENCE_CPU_ONLY\n",
                               "# NBVAL_CHECK_OUTPUT\n")):
        cell = nbformat.v4.new_code_cell(f"{marks}print({i} + 0.5)", execution_count=i + 1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}.25\n")]
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    if recorded is not None:
        nb.metadata["workbook"] = {"cpu_numerics": {"fingerprint": recorded}}
    nbformat.write(nb, path)


@pytest.mark.parametrize("recorded", ["this CPU", "another CPU", None])
def test_reference_cpu_only_cells_are_compared_where_the_numerics_match(tmp_path, recorded):
    """On the CPU that computed the committed outputs (same fingerprint) a marked cell is
    compared like any other; on another (or with no fingerprint recorded) it runs uncompared and
    the notebook's line and the summary say why, while unmarked cells are still compared."""
    shutil.copy(ROOT / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    env = _env(WORKBOOK_DEVICE="cpu")
    here = subprocess.run([sys.executable, "-c", "from helpers import runtime; "
                           "print(runtime.cpu_numerics()['fingerprint'])"], env=env, check=True,
                          capture_output=True, text=True, timeout=300).stdout.strip()
    fingerprint = {"this CPU": here, "another CPU": "0123456789abcdef", None: None}[recorded]
    _fingerprint_notebook(tmp_path / "nb.ipynb", fingerprint)
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                           "-p", "no:cacheprovider", "nb.ipynb"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert done.returncode == 1, out
    last = out.strip().splitlines()[-1]
    if recorded == "this CPU":
        assert "1 failed, 1 skipped" in last, out  # the marked cell 0 is compared and fails
        assert "not compared" not in out
        return
    assert "1 failed, 1 passed" in last, out  # cell 0 ran uncompared, cell 1 was compared
    assert "nb.ipynb::Cell 1 FAILED" in out or "Cell 1" in out.split("FAILURES")[-1]
    said = f"this CPU's float32 numerics (fingerprint {here}, "
    why = ("differ from the committed outputs' (0123456789abcdef)" if recorded
           else "cannot be matched (the notebook records none")
    lines = [line for line in out.splitlines() if said in line]
    assert len(lines) == 2, out  # the notebook's header line and the summary
    assert all(why in line and "its 1 cell(s) marked # REFERENCE_CPU_ONLY run but are not "
               "compared" in line for line in lines), lines
    assert "cells not compared on this CPU (# REFERENCE_CPU_ONLY)" in out


def test_numerics_record_is_this_cpus_fingerprint_and_none_on_cuda(monkeypatch):
    import torch

    from helpers import runtime

    monkeypatch.setattr(run_notebooks, "_numerics", {})
    monkeypatch.setattr(runtime, "device", lambda: torch.device("cpu"))
    assert run_notebooks.numerics_record() == runtime.cpu_numerics()
    monkeypatch.setattr(run_notebooks, "_numerics", {})
    monkeypatch.setattr(runtime, "device", lambda: torch.device("cuda"))
    assert run_notebooks.numerics_record() is None  # GPU outputs are no CPU reference


def test_committed_notebooks_can_compare_their_reference_cpu_cells():
    """A # REFERENCE_CPU_ONLY cell is a compared cell (it says when to compare it), and a
    notebook with such cells records the fingerprint of the CPU that computed its outputs."""
    conftest = _load_conftest()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        marked = [c for c in nb.cells if c.cell_type == "code"
                  and conftest.reference_cpu_only(c.source)]
        for cell in marked:
            assert "# NBVAL_CHECK_OUTPUT" in cell.source.splitlines(), (path.name, cell.source)
        if marked:
            assert re.fullmatch(r"[0-9a-f]{16}", conftest.recorded_numerics(nb) or ""), path.name


def test_nbval_keeps_every_message_of_a_cell_that_sends_thousands(tmp_path):
    """A cell that sends 20,000 display updates (a long cell's progress bars) and then prints:
    without the conftest's IOPub draining, ZeroMQ drops the messages past its high-water marks,
    the final "idle" among them, and nbval fails with "Timeout of 5 seconds exceeded waiting for
    output" (measured: from about 10,000 updates on). The printed line must still be compared."""
    shutil.copy(ROOT / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    cell = nbformat.v4.new_code_cell(
        "# NBVAL_CHECK_OUTPUT\nfrom IPython.display import display\n"
        "handle = display('start', display_id=True)\n"
        "for i in range(20_000):\n    handle.update(i)\nprint('after', i)", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "'start'"}),
                    nbformat.v4.new_output("stream", name="stdout", text="after 19999\n")]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("1")]),
                   tmp_path / "chatty.ipynb")
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                           "-p", "no:cacheprovider", "chatty.ipynb"], cwd=tmp_path,
                          env=_env(WORKBOOK_DEVICE="cpu"), capture_output=True, text=True,
                          timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert done.returncode == 0, out
    assert "2 passed" in out.strip().splitlines()[-1]


def _bar_notebook(with_state: bool):
    """A notebook whose one output is a tqdm widget stored at its first frame, "0%"."""
    nb = nbformat.v4.new_notebook()
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    out = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": view,
        "text/plain": "train:   0%|          | 0/8 [00:00<?, ?it/s]"})
    keep = nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.9\n")
    nb.cells.append(nbformat.v4.new_code_cell("train()", outputs=[out, keep]))
    if with_state:
        state = {"box": {"state": {"children": ["IPY_MODEL_l", "IPY_MODEL_b", "IPY_MODEL_r"]}},
                 "l": {"state": {"value": "train:\u2007100%"}},
                 "b": {"state": {"value": 8.0, "max": 8.0}},
                 "r": {"state": {"value": "\u20078/8\u2007[00:01&lt;00:00,\u20077.9it/s]"}}}
        nb.metadata["widgets"] = {run_notebooks.WIDGET_STATE: {"state": state}}
    return nb


def test_finish_progress_bars_writes_the_final_frame_from_the_stored_state():
    nb = _bar_notebook(with_state=True)
    assert run_notebooks.finish_progress_bars(nb) == 1
    outputs = nb.cells[0].outputs
    assert outputs[0]["data"]["text/plain"] == \
        "train: 100%|██████████| 8/8 [00:01<00:00, 7.9it/s]"
    assert outputs[1]["text"] == "accuracy 0.9\n"  # other outputs untouched


def test_finish_progress_bars_drops_a_bar_without_state():
    nb = _bar_notebook(with_state=False)
    assert run_notebooks.finish_progress_bars(nb) == 1
    assert [o["output_type"] for o in nb.cells[0].outputs] == ["stream"]
