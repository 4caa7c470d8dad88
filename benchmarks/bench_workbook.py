"""Time the workbook against its budgets (CONTRIBUTING.md, "Budgets"): each notebook, the whole
workbook, the unit tests.

    .venv/bin/python benchmarks/bench_workbook.py            # cold: empty model cache (default)
    .venv/bin/python benchmarks/bench_workbook.py --warm     # reuse .cache/ (trained models)
    .venv/bin/python benchmarks/bench_workbook.py --skip-tests notebooks/hw1_nn_from_scratch.ipynb

Prints one line per notebook (wall seconds in a fresh kernel, its budget, the ratio), the total
against the workbook budget, the four original notebooks against their joint 5-minute budget,
and the unit tests' wall time. Cold (the default, what the budgets mean) points the model cache
at an empty folder so that every model a notebook needs is trained as on a fresh clone; warm
reuses ``.cache/``. The output says which. Results go to a temporary folder, so ``results/`` is
never touched. Budgets are for the 2-core CPU; on a busy machine the ratios are inflated.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from run_notebooks import execute  # noqa: E402

#: Seconds on the 2-core CPU, cold.
BUDGETS = {
    "hw1_nn_from_scratch": 180,
    "hw2_adversarial_attacks": 240,
    "hw3_defenses": 360,
    "hw4_extraction_poisoning": 300,
    "hw5_dp_sgd": 360,
    "task1_backdoor_neural_cleanse": 300,
    "task2_dp_mechanisms": 60,
    "task3_fairness": 120,
}
DEFAULT_BUDGET, WORKBOOK_BUDGET, TESTS_BUDGET = 240, 1800, 180
#: The four notebooks that existed first must stay within 5 minutes together as others arrive.
ORIGINAL_FOUR = ("hw1_nn_from_scratch", "hw2_adversarial_attacks", "task2_dp_mechanisms",
                 "task3_fairness")
ORIGINAL_FOUR_BUDGET = 300


def _line(name: str, seconds: float, budget: float) -> str:
    verdict = "ok" if seconds <= budget else "OVER"
    return f"{name:<36} {seconds:8.1f} {budget:7.0f} {seconds / budget:6.2f}  {verdict}"


def _machine() -> str:
    try:
        import torch

        if torch.cuda.is_available() and os.environ.get("WORKBOOK_DEVICE", "") != "cpu":
            return f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover
        pass
    return f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    temperature = parser.add_mutually_exclusive_group()
    temperature.add_argument("--cold", dest="cold", action="store_true", default=True,
                             help="empty model cache: time training too (default)")
    temperature.add_argument("--warm", dest="cold", action="store_false",
                             help="reuse the trained models in .cache/")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    mode = "COLD (empty model cache: training timed)" if args.cold else \
        "WARM (trained models reused from .cache/)"
    print(f"bench_workbook: {mode}; {_machine()}")
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKBOOK_RESULTS"] = str(Path(tmp) / "results")  # keep results/ untouched
        if args.cold:
            os.environ["WORKBOOK_CACHE"] = str(Path(tmp) / "cache")
        print(f"{'notebook':<36} {'seconds':>8} {'budget':>7} {'ratio':>6}")
        for path in paths:
            _, seconds = execute(path, timeout=1800)
            times[path.stem] = seconds
            print(_line(path.stem, seconds, BUDGETS.get(path.stem, DEFAULT_BUDGET)), flush=True)
    total = sum(times.values())
    print(_line("whole workbook" + ("" if len(paths) > 1 else " (1 notebook)"), total,
                WORKBOOK_BUDGET))
    if all(stem in times for stem in ORIGINAL_FOUR):
        print(_line("the four original notebooks", sum(times[s] for s in ORIGINAL_FOUR),
                    ORIGINAL_FOUR_BUDGET))
    if not args.skip_tests:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "tests"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        print(_line("unit tests", time.perf_counter() - start, TESTS_BUDGET))
    print(f"({mode.split()[0].lower()} run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
