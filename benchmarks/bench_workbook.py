"""Time the workbook against its budgets (DESIGN.md): each notebook, the whole workbook, the tests.

    .venv/bin/python benchmarks/bench_workbook.py            # notebooks + unit tests
    .venv/bin/python benchmarks/bench_workbook.py --cold     # also retrain cached models first
    .venv/bin/python benchmarks/bench_workbook.py notebooks/hw1_nn_from_scratch.ipynb

Prints one line per notebook (wall seconds in a fresh kernel, budget, ratio), the total, and the
unit tests' wall time. ``--cold`` points the model cache at an empty folder so that training is
timed too, as on a fresh clone. Budgets: 240 s per notebook unless its issue sets a tighter one,
1,200 s for the workbook, 180 s for the unit tests (2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from run_notebooks import execute  # noqa: E402

BUDGETS = {"hw1_nn_from_scratch": 180, "task2_dp_mechanisms": 60, "task3_fairness": 120}
DEFAULT_BUDGET, WORKBOOK_BUDGET, TESTS_BUDGET = 240, 1200, 180


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="empty model cache (time training)")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKBOOK_RESULTS"] = str(Path(tmp) / "results")  # keep results/ untouched
        if args.cold:
            os.environ["WORKBOOK_CACHE"] = str(Path(tmp) / "cache")
        print(f"{'notebook':<36} {'seconds':>8} {'budget':>7} {'ratio':>6}")
        total = 0.0
        for path in paths:
            _, seconds = execute(path, timeout=1800)
            budget = BUDGETS.get(path.stem, DEFAULT_BUDGET)
            total += seconds
            print(f"{path.stem:<36} {seconds:8.1f} {budget:7d} {seconds / budget:6.2f}", flush=True)
        print(f"{'whole workbook':<36} {total:8.1f} {WORKBOOK_BUDGET:7d} "
              f"{total / WORKBOOK_BUDGET:6.2f}")
    if not args.skip_tests:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "tests"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        print(f"{'unit tests':<36} {seconds:8.1f} {TESTS_BUDGET:7d} {seconds / TESTS_BUDGET:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
