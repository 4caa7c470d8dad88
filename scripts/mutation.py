"""Mutation testing of the lesson modules with mutmut (pinned in requirements.txt).

    make mutation                                  # every lesson module present, 2 at a time
    make mutation MODULES="dp_mechanisms" JOBS=1   # one module
    .venv/bin/python scripts/mutation.py --jobs 2 --children 1 attacks fairness

For each module ``helpers/<m>.py`` with a test file ``tests/test_<m>.py``, a private working copy
is made under ``build/mutation/<m>/`` (the package, that module's tests, the data), and mutmut
mutates only ``helpers/<m>.py`` and runs only its test files (``tests/test_<m>.py`` and
``tests/test_<m>_*.py``, e.g. ``test_attacks_adaptive.py``) against each mutant: one
planted single-token bug at a time (an operator, a constant, a comparison, a removed call...).
A mutant is *killed* when a test fails, *survives* when every test passes. The score is
killed / (killed + survived); timeouts count as killed, mutants no test reaches count as
survived (``no tests``). Modules run in parallel (``--jobs``), each with ``--children`` mutmut
workers. Output: the score per module, the surviving mutants (``mutmut show`` diffs in
``build/mutation/<m>/survivors.txt``) and ``build/mutation/report.md`` (every module with a
result there, from this run or an earlier one). After adding tests, ``--survivors`` re-tests only
the previous survivors (minutes instead of the whole module). Not part of
``make test``: a module takes minutes to hours on 2 cores (the time is printed per module).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "mutation"
LESSON_MODULES = ("attacks", "numpy_nn", "dp_mechanisms", "fairness", "accounting", "dp_sgd",
                  "defenses", "extraction", "poisoning", "backdoor", "lfr")
MUTMUT = Path(sys.executable).parent / "mutmut"
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
SURVIVED = {"survived", "no tests"}


def test_files(module: str) -> list[Path]:
    """The unit tests of ``helpers/<module>.py``: ``tests/test_<module>.py`` first, then any
    ``tests/test_<module>_*.py`` (a second file for the same module)."""
    return [ROOT / "tests" / f"test_{module}.py",
            *sorted((ROOT / "tests").glob(f"test_{module}_*.py"))]


def _prepare(module: str, keep: bool = False) -> Path:
    work = OUT / module
    if keep and (work / "mutants").is_dir():
        # resume: mutmut skips the mutants it has already tested; the current tests are copied
        # in (mutmut collects coverage for new tests), the mutated module is not regenerated
        for path in test_files(module):
            shutil.copy(path, work / "tests" / path.name)
        return work
    shutil.rmtree(work, ignore_errors=True)
    (work / "tests").mkdir(parents=True)
    shutil.copytree(ROOT / "helpers", work / "helpers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tests" / "conftest.py", work / "tests" / "conftest.py")
    for path in test_files(module):
        shutil.copy(path, work / "tests" / path.name)
    selected = ", ".join(f'"tests/{path.name}"' for path in test_files(module))
    (work / "data").symlink_to(ROOT / "data")
    (work / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["helpers"]\n'
        f'only_mutate = ["helpers/{module}.py"]\n'
        f"pytest_add_cli_args_test_selection = [{selected}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        'also_copy = ["data"]\n'
    )
    return work


def _counts(work: Path, env: dict) -> dict[str, list[str]]:
    listing = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=work, env=env,
                             capture_output=True, text=True)
    found: dict[str, list[str]] = {}
    for line in listing.stdout.splitlines():
        match = re.match(r"\s*(\S+):\s*(.+?)\s*$", line)
        if match and "__mutmut_" in match.group(1):
            found.setdefault(match.group(2), []).append(match.group(1))
    return found


def run_module(module: str, children: int, keep: bool = False,
               survivors_only: bool = False) -> dict:
    start = time.perf_counter()
    work = _prepare(module, keep or survivors_only)
    # The tests must import the mutated copy: mutmut puts <work>/mutants first on sys.path and
    # removes <work> itself, and the venv's editable install of helpers is a meta-path finder
    # consulted after sys.path, so `import helpers` finds mutants/helpers (mutmut stops with
    # "trampoline hits ... none match" when tests import another copy).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": "."}
    log = (work / "mutmut.log").open("w")
    names = []
    if survivors_only:
        names = [n for k, v in _counts(work, env).items() if k in SURVIVED for n in v]
    done = subprocess.run([str(MUTMUT), "run", "--max-children", str(children), *names],
                          cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    seconds = time.perf_counter() - start
    by_status = _counts(work, env)
    killed = sum(len(v) for k, v in by_status.items() if k in KILLED)
    survived = [name for k, v in by_status.items() if k in SURVIVED for name in v]
    other = {k: len(v) for k, v in by_status.items() if k not in KILLED | SURVIVED}
    diffs = _diffs(work / "mutants" / "helpers" / f"{module}.py", survived)
    with (work / "survivors.txt").open("w") as out:
        for name in survived:
            out.write(f"# {name}\n{diffs.get(name, '(diff not found: mutmut show NAME)')}\n\n")
    total = killed + len(survived)
    result = {"module": module, "seconds": round(seconds, 1), "returncode": done.returncode,
            "killed": killed, "survived": len(survived), "other": other,
            "score": killed / total if total else None, "survivors": survived,
              "survivors_only": survivors_only}
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _diffs(mutated: Path, names: list[str]) -> dict[str, str]:
    """The changed lines of each named mutant against the original function, read from
    mutmut's generated module (``mutmut show`` starts mutmut once per mutant: seconds each)."""
    if not mutated.exists():
        return {}
    bodies: dict[str, list[str]] = {}
    current, indent = None, 0
    for line in mutated.read_text().splitlines():
        match = re.match(r"(\s*)def (\w*__mutmut_\w+)\(", line)
        if match:
            current, indent = match.group(2), len(match.group(1))
            bodies[current] = []
        elif current is not None:
            if line.strip() and len(line) - len(line.lstrip()) <= indent \
                    and not line.lstrip().startswith(")"):
                current = None
            else:
                bodies[current].append(line)
    out = {}
    for name in names:
        short = name.rsplit(".", 1)[-1]
        orig = bodies.get(short.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
        if orig is None or short not in bodies:
            continue
        out[name] = "\n".join(line for line in difflib.unified_diff(
            orig, bodies[short], lineterm="", n=0) if not line.startswith(("---", "+++", "@@")))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="modules run at the same time")
    parser.add_argument("--children", type=int, default=1, help="mutmut workers per module")
    parser.add_argument("--keep", action="store_true",
                        help="resume the previous run in build/mutation/<module> (no restart)")
    parser.add_argument("--survivors", action="store_true",
                        help="re-test only the previous run's survivors with the current tests "
                             "(after adding tests; a changed helpers/<m>.py needs a full run)")
    parser.add_argument("modules", nargs="*", help="default: every lesson module present")
    args = parser.parse_args(argv)
    modules = args.modules or [m for m in LESSON_MODULES if (ROOT / "helpers" / f"{m}.py").exists()
                               and (ROOT / "tests" / f"test_{m}.py").exists()]
    for module in modules:
        if not (ROOT / "tests" / f"test_{module}.py").exists():
            raise SystemExit(f"no tests/test_{module}.py for helpers/{module}.py")
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"mutation testing {', '.join(modules)} ({args.jobs} at a time, mutmut "
          f"{args.children} worker(s) each)", flush=True)
    start = time.perf_counter()
    results = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = pool.map(lambda m: run_module(m, args.children, args.keep, args.survivors),
                        modules)
        for result in runs:
            results.append(result)
            score = "n/a" if result["score"] is None else f"{100 * result['score']:.1f}%"
            print(f"{result['module']:<14} score {score:>6}  killed {result['killed']:>4}  "
                  f"survived {result['survived']:>4}  ({result['seconds']:.0f} s)", flush=True)
            for name in result["survivors"]:
                print(f"    survived: {name}")
    # the report covers every module with a result under build/mutation/, this run's and earlier
    # ones (modules are often run one at a time); each row says when and how it was produced
    latest = []
    for module in LESSON_MODULES:
        path = OUT / module / "result.json"
        if path.exists():
            latest.append(json.loads(path.read_text()))
    lines = ["# Mutation testing report", "",
             f"mutmut; this run: {', '.join(modules)} in {time.perf_counter() - start:.0f} s",
             "", "| module | score | killed | survived | seconds | run |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in latest:
        score = "n/a" if r["score"] is None else f"{100 * r['score']:.1f}%"
        how = "survivors re-tested" if r.get("survivors_only") else "full"
        lines.append(f"| {r['module']} | {score} | {r['killed']} | {r['survived']} | "
                     f"{r['seconds']:.0f} | {how} |")
    lines += ["", "Surviving mutants (diffs in build/mutation/<module>/survivors.txt):", ""]
    lines += [f"- `{name}`" for r in latest for name in r["survivors"]]
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    (OUT / "report.json").write_text(json.dumps(latest, indent=2) + "\n")
    print(f"report: {(OUT / 'report.md').relative_to(ROOT)}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
