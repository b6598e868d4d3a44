"""How fast is an emergency rollover? Prints figures with a same-run baseline.

    python benchmarks/emergency.py [--runs 5]

Measures, on the local store in a scratch directory:
- the wall time of `rotatectl emergency NAME --yes` (the whole command),
- the time from the command's start to the old key being revoked (printed by it),
against the baseline `python -c "import typer"` (the floor of any Typer CLI),
measured in the same run. Exits non-zero if an emergency takes 2 s or more
(the target of the operations issue).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_SECONDS = 2.0


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, proc.stdout


def row(label: str, seconds: float, base: float) -> None:
    print(f"{label:<40} {seconds * 1000:8.1f} ms  {seconds / base:5.2f}x baseline")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "rotatectl"]
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "ROTATECTL_STATE_DIR": scratch, "HOME": scratch, "NO_COLOR": "1"}
        env.pop("ROTATECTL_CONFIG", None)
        subprocess.run([*cli, "rotate", "bench/key"], env=env, check=True, capture_output=True)
        baseline = [timed([sys.executable, "-c", "import typer"], env)[0] for _ in range(args.runs)]
        walls, revokes = [], []
        for i in range(args.runs):
            wall, out = timed(
                [*cli, "emergency", "bench/key", "--reason", f"bench {i}", "--yes"], env
            )
            match = re.search(r"old key revoked ([0-9.]+)s", out)
            if match is None:
                print(out, file=sys.stderr)
                return 1
            walls.append(wall)
            revokes.append(float(match.group(1)))
    base = statistics.median(baseline)
    wall = statistics.median(walls)
    revoke = statistics.median(revokes)
    runs = args.runs
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {runs} runs, medians")
    row("baseline  python -c 'import typer'", base, base)
    row("emergency whole command", wall, base)
    row("emergency start -> old key revoked", revoke, base)
    ok = max(walls) < TARGET_SECONDS
    verdict = "met" if ok else "MISSED"
    print(f"target: whole command < {TARGET_SECONDS:.0f} s: {verdict} (worst {max(walls):.3f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
