"""Execute the workbook's notebooks headless and print the results table.

    python scripts/run_notebooks.py --out build          # `make run`: executed copies + HTML
    python scripts/run_notebooks.py --inplace [NB ...]   # `make notebooks`: re-run and save
    python scripts/run_notebooks.py --results-only [--markdown | --update-readme]

Each notebook runs top to bottom in a fresh kernel of this Python (a clean Restart-and-Run-All)
with ``notebooks/`` as the working directory. One line per notebook reports the outcome and the
wall time; the run stops at the first failing cell and names it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"


def execute(path: Path, timeout: int) -> tuple[object, float]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def results_table(markdown: bool = False) -> str:
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        for name, value in record["metrics"].items():
            rows.append((record["notebook"], name, value))
        if record.get("seconds") is not None:
            rows.append((record["notebook"], "seconds (setup to save_results)", record["seconds"]))
    if not rows:
        return "no results yet (results/*.json is written by each notebook's last cells)"
    if markdown:
        lines = ["| notebook | metric | value |", "| --- | --- | --- |"]
        lines += [f"| {nb} | `{name}` | {_fmt(value)} |" for nb, name, value in rows]
        return "\n".join(lines)
    width = max(len(nb) for nb, _, _ in rows), max(len(name) for _, name, _ in rows)
    return "\n".join(f"{nb:<{width[0]}}  {name:<{width[1]}}  {_fmt(value)}" for nb, name, value in rows)


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--out", type=Path, help="folder for executed copies and HTML")
    mode.add_argument("--inplace", action="store_true", help="save outputs into the notebooks")
    mode.add_argument("--results-only", action="store_true", help="only print the results")
    parser.add_argument("--markdown", action="store_true", help="results as a Markdown table")
    parser.add_argument("--update-readme", action="store_true",
                        help="write the Markdown results table into README.md")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = parser.parse_args()

    if not args.results_only:
        paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
        if not paths:
            print("no notebooks yet: nothing to run")
        out = None if args.inplace else (args.out or ROOT / "build").resolve()
        for i, path in enumerate(paths, 1):
            label = f"[{i}/{len(paths)}] {path.stem}"
            print(f"{label} ...", end=" ", flush=True)
            try:
                nb, seconds = execute(path, args.timeout)
            except Exception as exc:  # nbclient raises CellExecutionError with the cell
                print("FAILED")
                print(str(exc)[-3000:], file=sys.stderr)
                return 1
            import nbformat
            from nbconvert import HTMLExporter

            if out is None:
                nbformat.write(nb, path)
            else:
                out.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, out / path.name)
                html, _ = HTMLExporter().from_notebook_node(nb)
                (out / f"{path.stem}.html").write_text(html, encoding="utf-8")
            print(f"ok ({seconds:.0f} s)", flush=True)
        if paths and out is not None:
            print(f"executed notebooks and HTML in {out.relative_to(ROOT)}/")
    if args.update_readme:
        update_readme(results_table(markdown=True))
        print("README.md results table updated")
        return 0
    print()
    print(results_table(args.markdown))
    return 0


def update_readme(table: str) -> None:
    """Replace the text between the README's results markers with ``table``."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers {start} ... {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
