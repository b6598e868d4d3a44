"""Shared fixtures: a harness that runs the real CLI in a subprocess, with a canary check.

Every CLI run in the suite goes through :class:`Cli`. When a test ends, every
key value its stores hold is looked for in every output the test captured
(except ``get``/``exec``, which reveal values on purpose): invariant 7.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotatectl.errors import StoreError
from rotatectl.model import VersionState
from rotatectl.stores.local import LocalStore
from tests.fulldisk import tmpfs  # noqa: F401 - a fixture, for the whole suite

# The contract suites live in the package (plug-in authors subclass them): rewrite
# their asserts too, so a failing contract shows the values it compared.
pytest.register_assert_rewrite("rotatectl.testing")

REVEALING = {"get", "exec"}


@dataclass
class CliRun:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def reveals(self) -> bool:
        return any(a in REVEALING for a in self.args[:4])


class Cli:
    """Runs ``python -m rotatectl`` with an isolated HOME and state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "work"
        self.cwd.mkdir()
        (root / "home").mkdir()
        self.state_dir = root / "state"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ROTATECTL_", "XDG_"))},
            "HOME": str(root / "home"),
            "ROTATECTL_STATE_DIR": str(self.state_dir),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        self.runs: list[CliRun] = []
        self.extra_texts: list[str] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rotatectl", *args]

    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        stdin: str | None = None,
    ) -> CliRun:
        proc = subprocess.run(
            self.argv(*args),
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        run = CliRun(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        self.runs.append(run)
        return run

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def record(self, args: tuple[str, ...], code: int, out: str, err: str) -> CliRun:
        run = CliRun(args, code, out, err)
        self.runs.append(run)
        return run

    def counted(self, *args: str, count: str) -> tuple[CliRun, collections.Counter[str]]:
        """``rotatectl ARGS`` through ``benchmarks/counted.py``: the run, and the calls it
        made to the ``count`` store (AWS API calls, OpenBao HTTP requests or local
        SQLite transactions, by operation)."""
        out = self.root / f"counted-{len(self.runs)}.json"
        script = Path(__file__).resolve().parent.parent / "benchmarks" / "counted.py"
        proc = subprocess.run(
            [sys.executable, str(script), "--count", count, "--out", str(out), "--", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.exists(), proc.stderr
        data = json.loads(out.read_text())
        run = self.record(tuple(args), int(data["code"]), proc.stdout, proc.stderr)
        return run, collections.Counter(data["calls"].get(count, {}))

    def store(self, db: Path | None = None) -> LocalStore:
        return LocalStore(db or self.state_dir / "state.db")

    def secrets(self) -> tuple[set[str], list[str]]:
        """Every key value the test's stores hold, and every rotation record as JSON."""
        values: set[str] = set()
        records: list[str] = []
        for db in self.root.rglob("*.db"):
            try:
                store = LocalStore(db)
            except StoreError:  # another component's SQLite file (e.g. a probe's state)
                continue
            try:
                for path in store.list_paths():
                    with contextlib.suppress(StoreError):  # a test corrupted it on purpose
                        for v in store.versions(path):
                            if v.state is not VersionState.DESTROYED:
                                values.add(store.read_value(path, v.version_id))
                    with contextlib.suppress(StoreError):
                        rotation, _ = store.load_rotation(path)
                        for r in [*store.rotation_history(path), rotation]:
                            if r is not None:
                                records.append(json.dumps(r.to_dict()))
            finally:
                store.close()
        return values, records

    def files(self) -> list[tuple[tuple[str, ...], str]]:
        """Every file the test left (logs, audit, notifier output) except store files."""
        found = []
        for f in self.root.rglob("*"):
            if f.is_file() and ".db" not in f.name:
                found.append(((str(f),), f.read_bytes().decode(errors="replace")))
        return found

    def assert_no_secret_leaked(self) -> None:
        values, records = self.secrets()
        texts = [(r.args, r.out + r.err) for r in self.runs if not r.reveals]
        texts += [(("extra",), t) for t in self.extra_texts]
        texts += [(("rotation record",), t) for t in records]
        texts += self.files()
        for value in values:
            for args, text in texts:
                assert value not in text, f"a key value leaked into the output of {args}"


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    harness = Cli(tmp_path)
    yield harness
    harness.assert_no_secret_leaked()
