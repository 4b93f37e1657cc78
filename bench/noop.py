"""No-op `doit` on the demo project against a bare doit project with as many trivial file tasks.

Run from the repository root after a full build (`doit`); the script builds the demo first if needed:

    .venv/bin/python bench/noop.py [--repeat 7]

Prints the median wall time of each (a fresh `python -m doit` process each time, as a user runs it)
and their ratio. Targets: ratio at most 1.5, demo no-op under 0.5 s.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE_DODO = '''
from pathlib import Path
N = {n}
Path("build").mkdir(exist_ok=True)
DOIT_CONFIG = {{"dep_file": "build/.doit.db", "backend": "json", "check_file_uptodate": "md5",
               "verbosity": 0}}

def copy(src, dst):
    Path(dst).write_bytes(Path(src).read_bytes())

def task_step():
    for i in range(N):
        yield {{"name": str(i), "actions": [(copy, [f"in/{{i}}.txt", f"build/{{i}}.out"])],
               "file_dep": [f"in/{{i}}.txt"], "targets": [f"build/{{i}}.out"]}}
'''


def run_doit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd, capture_output=True, text=True)


def median_noop(cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        proc = run_doit(cwd)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0 or any(line.startswith(".  ") for line in proc.stdout.splitlines()):
            raise SystemExit(f"not a no-op in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    first = run_doit(REPO)  # make sure the demo is built, so what follows is a no-op
    if first.returncode != 0:
        raise SystemExit(f"demo build failed:\n{first.stdout}\n{first.stderr}")
    listing = run_doit(REPO, "list", "--all", "-q").stdout.split()
    n_tasks = sum(1 for name in listing if ":" in name)

    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp)
        (bare / "in").mkdir()
        for i in range(n_tasks):
            (bare / "in" / f"{i}.txt").write_text(f"input {i}\n" * 100)
        (bare / "dodo.py").write_text(BARE_DODO.format(n=n_tasks))
        if run_doit(bare).returncode != 0:
            raise SystemExit("bare project failed")
        demo_t = median_noop(REPO, args.repeat)
        bare_t = median_noop(bare, args.repeat)

    ratio = demo_t / bare_t
    print(f"tasks: {n_tasks} (demo subtasks) vs {n_tasks} trivial file tasks; median of {args.repeat} runs")
    print(f"no-op doit, demo project:        {demo_t * 1000:7.1f} ms")
    print(f"no-op doit, bare doit project:   {bare_t * 1000:7.1f} ms")
    print(f"ratio demo / bare:               {ratio:7.2f}   (target <= 1.5; demo target < 500 ms: "
          f"{'met' if ratio <= 1.5 and demo_t < 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
