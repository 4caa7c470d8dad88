"""nbval settings for the notebooks: compare only what is deterministic, stop a notebook at its
first failure, and say what is being run.

``make test`` runs ``pytest --nbval-lax``: every cell must execute without error, and the cells
marked ``# NBVAL_CHECK_OUTPUT`` must print what the committed notebook shows (CONTRIBUTING.md,
"How nbval is wired"). Progress bars, warnings and timings go to stderr, which is never compared;
rich outputs (figures, HTML tables) are not compared either, only their text.

* On a CUDA device the committed CPU outputs are not a reference (torch's GPU kernels differ in
  the last digits), so output comparison is turned off for every cell and the test header and
  summary say so; execution and the notebooks' own Checks cells still apply.
  ``WORKBOOK_DEVICE=cpu`` keeps the comparison on a GPU machine (``WORKBOOK_DEVICE=cuda`` is
  taken at its word without asking torch).
* A cell whose printed numbers come from training in floating point (a trained model's
  accuracy, an attack on it) also carries a line ``# REFERENCE_CPU_ONLY``: another type of CPU
  computes those kernels with other roundings, and after thousands of SGD steps prints other
  last digits. Such a cell is compared only where this CPU's float32 numerics fingerprint
  (``runtime.cpu_numerics``) equals the one ``scripts/run_notebooks.py`` recorded in the
  notebook's metadata (``workbook.cpu_numerics``) when it executed the committed outputs;
  elsewhere it runs uncompared, the notebook's header line says so and why, and its Checks cell
  still applies. Every other ``# NBVAL_CHECK_OUTPUT`` cell is compared on every CPU.
* After the first failing cell of a notebook, its remaining cells are skipped with a message
  naming that cell, so that the end of the log names the cause, not a knock-on ``NameError``.
* While a cell runs, its IOPub messages (outputs, progress-bar updates) are read as they come
  (``_await_reply_draining_iopub``). nbval 0.11 reads IOPub only after the cell's reply; a long
  cell whose progress bars send more messages than ZeroMQ's high-water marks hold (1,000 a
  socket) then loses the newest ones, its final "idle" status among them, and nbval fails the
  cell with "Timeout of 5 seconds exceeded waiting for output" (a CI run failed HW4 this way).
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from queue import Empty

import pytest
import zmq
from nbval.kernel import RunningKernel
from nbval.plugin import IPyNbCell

_first_failure: dict[str, str] = {}
_state = {"compare_off": None, "current": None, "numerics": None}
#: notebook path -> (uncompared cells, the recorded fingerprint or None, this CPU's fingerprint)
_reference_cpu_off: dict[str, tuple[int, str | None, dict]] = {}
REFERENCE_CPU_ONLY = "REFERENCE_CPU_ONLY"


def _on_cuda() -> bool:
    """Whether the notebooks' kernel will compute on a CUDA device (``runtime.device()``)."""
    if _state["compare_off"] is None:
        wanted = os.environ.get("WORKBOOK_DEVICE", "").strip().lower()
        if wanted in ("cpu", "cuda"):  # the kernels obey WORKBOOK_DEVICE (runtime.device)
            _state["compare_off"] = wanted == "cuda"
        else:
            try:
                import torch

                _state["compare_off"] = bool(torch.cuda.is_available())
            except ImportError:  # pragma: no cover
                _state["compare_off"] = False
    return _state["compare_off"]


def _is_cell(item) -> bool:
    return getattr(item, "fspath", None) is not None and item.fspath.ext == ".ipynb" \
        and hasattr(item, "cell_num")


def pytest_collectstart(collector):
    if getattr(collector, "fspath", None) and collector.fspath.ext == ".ipynb" \
            and hasattr(collector, "skip_compare"):
        collector.skip_compare += ("stderr", "image/png", "image/svg+xml", "text/html",
                                   "application/vnd.jupyter.widget-view+json")


def _is_progress_bar(output) -> bool:
    """A ``tqdm.auto`` widget: its text says how fast this machine was, never what was computed
    (``scripts/run_notebooks.py`` stores the finished bar's text; a fresh run shows "0%")."""
    data = output.get("data") or {}
    return "application/vnd.jupyter.widget-view+json" in data \
        and "%|" in "".join(data.get("text/plain", ""))


def _iopub_backlog(kernel: RunningKernel) -> collections.deque:
    """The IOPub messages read while waiting for a reply, oldest first, not yet handed to nbval."""
    return kernel.__dict__.setdefault("_workbook_iopub_backlog", collections.deque())


def _await_reply_draining_iopub(self, msg_id, timeout=None):
    """nbval's ``await_reply`` (wait on the shell channel for the reply to ``msg_id``; raise
    ``queue.Empty`` after ``timeout`` seconds), except that IOPub is read into a backlog
    meanwhile, so that no message is dropped at a full socket however long the cell runs."""
    shell, iopub = self.kc.shell_channel.socket, self.kc.iopub_channel.socket
    poller = zmq.Poller()
    poller.register(shell, zmq.POLLIN)
    poller.register(iopub, zmq.POLLIN)
    backlog = _iopub_backlog(self)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = dict(poller.poll(None if left is None else int(left * 1000)))
        if iopub in ready:
            backlog.append(self.kc.iopub_channel.get_msg(timeout=0))
        if shell in ready:
            msg = self.kc.shell_channel.get_msg(timeout=0)
            if msg["parent_header"].get("msg_id") == msg_id:
                if msg["content"]["status"] == "aborted":
                    raise RuntimeError("Kernel aborted execution request")  # as nbval does
                return
        if not ready and left == 0.0:
            raise Empty


_get_message = RunningKernel.get_message


def _get_message_from_backlog(self, stream, timeout=None):
    """nbval's ``get_message``: IOPub messages already read come first, in order."""
    backlog = _iopub_backlog(self)
    if stream == "iopub" and backlog:
        return backlog.popleft()
    return _get_message(self, stream, timeout=timeout)


RunningKernel.await_reply = _await_reply_draining_iopub
RunningKernel.get_message = _get_message_from_backlog

_compare_outputs = IPyNbCell.compare_outputs


def _compare_without_bars(self, test, ref, skip_compare=None):
    """nbval's comparison with progress-bar outputs left out on both sides."""
    return _compare_outputs(self, [o for o in test if not _is_progress_bar(o)],
                            [o for o in ref if not _is_progress_bar(o)], skip_compare)


IPyNbCell.compare_outputs = _compare_without_bars


def pytest_report_header(config):
    if not getattr(config.option, "nbval_lax", False) and not getattr(config.option, "nbval",
                                                                       False):
        return None
    if _on_cuda():
        return ("nbval: CUDA device found: output comparison is OFF for every notebook cell "
                "(the committed outputs are CPU outputs); cells must still run and the Checks "
                "cells' tolerances still apply. WORKBOOK_DEVICE=cpu compares on the CPU.")
    return ("nbval: CPU: cells marked # NBVAL_CHECK_OUTPUT are compared with the committed "
            f"outputs; those also marked # {REFERENCE_CPU_ONLY} only where this CPU's float32 "
            "numerics fingerprint matches the notebook's (runtime.cpu_numerics)")


def reference_cpu_only(source: str) -> bool:
    """Whether a cell's source has the line ``# REFERENCE_CPU_ONLY`` (its comment text exactly,
    as nbval reads its own markers)."""
    return any(line.strip().startswith("#") and line.strip().lstrip("#").strip()
               == REFERENCE_CPU_ONLY for line in source.splitlines())


def recorded_numerics(nb) -> str | None:
    """The float32 numerics fingerprint the committed outputs were computed with, or None."""
    record = (nb.metadata.get("workbook") or {}).get("cpu_numerics") or {}
    return record.get("fingerprint") if isinstance(record, dict) else None


def _this_cpu() -> dict:
    if _state["numerics"] is None:
        from helpers import runtime

        _state["numerics"] = runtime.cpu_numerics()
    return _state["numerics"]


def pytest_collection_modifyitems(config, items):
    cells = [i for i in items if _is_cell(i) and isinstance(getattr(i, "options", None), dict)]
    if _on_cuda():
        for item in cells:
            item.options["check"] = False
        return
    for item in cells:
        if not (item.options.get("check") and reference_cpu_only(item.cell.source)):
            continue
        recorded = recorded_numerics(item.parent.nb)
        if recorded != _this_cpu()["fingerprint"]:
            item.options["check"] = False
            notebook = item.nodeid.split("::")[0]
            count = _reference_cpu_off.get(notebook, (0,))[0]
            _reference_cpu_off[notebook] = (count + 1, recorded, _this_cpu())


def _reference_cpu_message(notebook: str) -> str:
    count, recorded, here = _reference_cpu_off[notebook]
    was = (f"differ from the committed outputs' ({recorded})" if recorded
           else "cannot be matched (the notebook records none: re-execute it, `make notebooks`)")
    return (f"this CPU's float32 numerics (fingerprint {here['fingerprint']}, "
            f"{here['capability']}, {here['threads']} threads) {was}: its {count} "
            f"cell(s) marked # {REFERENCE_CPU_ONLY} run but are not compared; its Checks cell "
            "still applies")


def pytest_runtest_setup(item):
    if not _is_cell(item):
        return
    notebook = item.nodeid.split("::")[0]  # the path pytest shows, e.g. notebooks/hw1_....ipynb
    if _state["current"] != notebook:
        _state["current"] = notebook
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            cells = sum(1 for i in item.session.items if _is_cell(i)
                        and i.nodeid.split("::")[0] == notebook)
            capture = item.config.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                reporter.write_line("")
                reporter.write_line(f"running {notebook} ({cells} cells)", bold=True)
                if notebook in _reference_cpu_off:
                    reporter.write_line(f"  {_reference_cpu_message(notebook)}")
    first = _first_failure.get(notebook)
    if first is not None:
        pytest.skip(f"not run: {notebook} already failed at {first}; fix that cell first")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _is_cell(item) and report.failed:
        notebook = item.nodeid.split("::")[0]
        _first_failure.setdefault(notebook, _describe(item))


def _describe(item) -> str:
    """``Cell 3 (notebook cell 7, "first line of its source")``: nbval counts code cells only."""
    cells = getattr(getattr(item, "parent", None), "nb", None)
    index = next((i for i, c in enumerate(cells.cells) if c is item.cell), None) if cells else None
    first = next((line for line in item.cell.source.splitlines() if line.strip()), "")
    where = f"notebook cell {index}, " if index is not None else ""
    return f"{item.name} ({where}{first[:60]!r})"


def pytest_terminal_summary(terminalreporter):
    if _first_failure:
        terminalreporter.section("notebooks that failed (first failing cell)")
        for notebook, cell in _first_failure.items():
            terminalreporter.write_line(f"{notebook}: {cell}")
    if _reference_cpu_off:
        terminalreporter.section("cells not compared on this CPU (# REFERENCE_CPU_ONLY)")
        for notebook in _reference_cpu_off:
            terminalreporter.write_line(f"{notebook}: {_reference_cpu_message(notebook)}")
    if _state["compare_off"]:
        terminalreporter.write_line("nbval: output comparison was OFF (CUDA device); the "
                                    "notebooks ran and their Checks cells passed or failed above")
