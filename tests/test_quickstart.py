"""The README's quick start, run as written on a copy of the checkout with a fresh HOME.

It installs rotatectl from the package index into a new virtualenv (pip's cache is
the real one, so a warm cache makes it quick) and runs two rotations. Every file
the block writes is traced with ``strace``: all of them must lie in the scratch
directory (checkout copy, HOME, TMPDIR) or pip's cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSED = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
PASSED_PREFIXES = ("PIP_", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "LANG", "LC_")
# "?": a call this architecture lacks (open, mkdir... on arm64) is not an error.
TRACED = ",".join(
    "?" + call
    for call in [
        *("openat", "open", "creat", "mkdir", "mkdirat", "rename", "renameat", "renameat2"),
        *("unlink", "unlinkat", "rmdir", "symlink", "symlinkat", "link", "linkat", "truncate"),
        *("chdir", "fchdir", "clone", "clone3", "fork", "vfork"),
    ]
)
# Successful calls only, file descriptors shown with their paths, every process.
# One trace per process (-ff): with one shared file, strace can split a call over two
# lines when processes interleave.
STRACE = ["-ff", "-qq", "-y", "-e", "status=successful", "-e", "trace=" + TRACED]


def quick_start_block(readme: str) -> str:
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```sh\n(.*?)^```$", section, re.S | re.M)
    assert block is not None, "no ```sh block in the quick start"
    return block[1]


def copy_tracked_files(dest: Path) -> None:
    """The tracked files as they are in the working tree (uncommitted changes included)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_symlink() or source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)


def pip_cache_dir() -> str | None:
    found = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() if found.returncode == 0 else None


_LINE = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+)(?:<(.*)>)?$")
_TOKEN = re.compile(r'(?:AT_FDCWD|-?\d+)<([^>]*)>|"((?:[^"\\]|\\.)*)"')
_FORKS = ("clone", "clone3", "fork", "vfork")
_AT = ("openat", "mkdirat", "unlinkat", "renameat", "renameat2", "symlinkat", "linkat")


def _paths(call: str, args: str, returned: str | None, cwd: str) -> list[str]:
    """The paths one successful call writes (creates, changes, removes or renames)."""
    tokens = _TOKEN.findall(args)  # (directory of an fd, "") or ("", a quoted path)
    names = [os.path.join(cwd, s) for d, s in tokens if not d]
    if call in _AT:
        if call == "symlinkat":
            tokens = tokens[1:]  # the link's target is not written
        pairs = [os.path.join(tokens[i][0], tokens[i + 1][1]) for i in range(0, len(tokens) - 1, 2)]
        if call == "openat":
            writes = re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args)
            return [returned] if writes and returned else []
        return pairs[-1:] if call == "linkat" else pairs
    if call == "open":
        writes = re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args)
        return [returned] if writes and returned else []
    if call in ("link", "symlink"):
        return names[1:]
    return names  # creat, mkdir, rename (both names), unlink, rmdir, truncate


def written_paths(traces: dict[int, str], start: Path) -> set[str]:
    """Every path written in ``strace -ff -y`` traces of successful calls (one trace per
    process, by pid), made absolute by following each process's working directory, which
    a child inherits from its parent at the fork."""
    calls: dict[int, list[tuple[str, str, int, str | None]]] = {}
    for pid, text in traces.items():
        calls[pid] = []
        for raw in text.splitlines():
            if raw.startswith(("---", "+++")):  # signals, exits
                continue
            m = _LINE.match(f"{pid} {raw}")
            assert m, f"cannot read strace line of {pid}: {raw}"
            calls[pid].append((m[2], m[3], int(m[4]), m[5]))
    children = {ret for found in calls.values() for call, _, ret, _ in found if call in _FORKS}
    todo = [(pid, str(start)) for pid in calls if pid not in children]
    assert len(todo) == 1, f"one first process, not {len(todo)}"
    found: set[str] = set()
    while todo:
        pid, here = todo.pop()
        for call, args, ret, returned in calls.get(pid, []):
            if call == "chdir":
                here = os.path.normpath(_paths("mkdir", args, None, here)[0])
            elif call == "fchdir":
                here = _TOKEN.findall(args)[0][0]
            elif call in _FORKS:
                todo.append((ret, here))
            else:
                found.update(os.path.normpath(p) for p in _paths(call, args, returned, here))
    return found


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is needed to see every file the quick start writes (apt install strace)"
    repo, home, tmp, bindir = (tmp_path / d for d in ("repo", "home", "tmp", "bin"))
    for d in (repo, home, tmp, bindir):
        d.mkdir()
    copy_tracked_files(repo)
    # A fresh machine's python3: this interpreter (its base, outside any virtualenv).
    python = Path(sysconfig.get_config_var("BINDIR")) / f"python{sysconfig.get_python_version()}"
    (bindir / "python3").symlink_to(python)
    env = {
        k: v for k, v in os.environ.items() if k.lower() in PASSED or k.startswith(PASSED_PREFIXES)
    }
    env.update(HOME=str(home), TMPDIR=str(tmp), PATH=f"{bindir}:/usr/bin:/bin")
    cache = pip_cache_dir()
    if cache:
        env["PIP_CACHE_DIR"] = cache  # not the fresh HOME's: no download of everything again
    block = quick_start_block((ROOT / "README.md").read_text())
    trace = tmp_path / "trace.txt"
    proc = subprocess.run(
        [strace, *STRACE, "-o", str(trace), "bash", "-c", block],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # The rotation steps and the status table, as the README shows them.
    out = proc.stdout
    assert re.search(r"^demo/api: published v1 \((\w{8})\) as pending$", out, re.M)
    kid2 = re.search(r"^demo/api: published v2 \((\w{8})\) as pending$", out, re.M)
    kid1 = re.search(r"^demo/api: retired v1 \((\w{8})\): overlap elapsed", out, re.M)
    assert kid1 and kid2, out
    assert re.search(r"^demo/api: completed$", out, re.M)
    table = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if "│" in line]
    assert [row[:4] for row in table] == [
        ["demo/api", "v2", "current", kid2[1]],
        ["", "v1", "retired", kid1[1]],
    ]
    readme_sample(out)

    # State under the fresh HOME's XDG default; nothing written elsewhere.
    state = home / ".local" / "state" / "rotatectl"
    assert {p.name for p in state.iterdir()} >= {"state.db", "audit.jsonl"}
    assert f"state in {state}" in proc.stderr
    traces = {int(p.suffix[1:]): p.read_text() for p in tmp_path.glob("trace.txt.*")}
    written = written_paths(traces, repo)
    assert {str(state / "state.db"), str(state / "audit.jsonl"), str(repo / ".venv")} <= written
    allowed = [str(tmp_path), "/dev", "/proc", *([cache] if cache else [])]
    outside = {
        p for p in written if not any(p == a or p.startswith(a.rstrip("/") + "/") for a in allowed)
    }
    assert outside == set()


def readme_sample(out: str) -> None:
    """The README's sample output is in ``out``: each run of lines between ``...`` lines
    consecutively, with any rotation id, key id and age."""
    readme = (ROOT / "README.md").read_text().split("\n## Quick start\n", 1)[1]
    sample = re.search(r"^```\n(demo/api: .*?)^```$", readme, re.S | re.M)
    assert sample is not None
    lines = out.splitlines()
    at = 0
    for chunk in sample[1].split("...\n"):
        patterns = [_pattern(line) for line in chunk.splitlines()]
        for start in range(at, len(lines) - len(patterns) + 1):
            if all(p.fullmatch(lines[start + i]) for i, p in enumerate(patterns)):
                at = start + len(patterns)
                break
        else:
            raise AssertionError(f"the README's sample lines are not in the output:\n{chunk}")


# A rotation id; a key id in parentheses or in a table cell; an age cell.
_VARIABLE = re.compile(
    r"(?P<rotation>\b[0-9a-f]{16}\b)|(?P<key>(?<=\()\w{8}(?=\))|(?<=│ )\w{8}(?= │))"
    r"|(?P<age>(?<=│ )\d+s +(?=│))"
)
_ANY = {"rotation": "[0-9a-f]{16}", "key": r"\w{8}", "age": r"\d+s +"}


def _pattern(line: str) -> re.Pattern[str]:
    """``line`` as a regular expression matching any id and age in their places."""
    pattern, at = "", 0
    for m in _VARIABLE.finditer(line):
        pattern += re.escape(line[at : m.start()]) + _ANY[str(m.lastgroup)]
        at = m.end()
    return re.compile(pattern + re.escape(line[at:]))
