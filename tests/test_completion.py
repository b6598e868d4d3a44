"""Shell completion: the scripts ``--show-completion`` prints and ``--install-completion``
installs, exercised in real bash, zsh and fish, completing commands and the
credential names of the config.

The scripts call ``rotatectl`` by name, so a ``rotatectl`` that runs this code is put
first on PATH. The shell is detected from the parent process, as for an operator:
each command runs inside the shell it asks about.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cli

LONG = "partners/globex-" + "x" * 44  # 60 characters
NAMES = ("partners/acme", LONG, "internal/billing")


@pytest.fixture
def shell_env(cli: Cli, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with a ``rotatectl`` on PATH and a config declaring NAMES."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "rotatectl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rotatectl "$@"\n')
    wrapper.chmod(0o755)
    (cli.cwd / "rotatectl.toml").write_text("".join(f'[credentials."{n}"]\n' for n in NAMES))
    return {**cli.env, "PATH": f"{bin_dir}{os.pathsep}{cli.env['PATH']}"}


def in_shell(shell: str, script: str, env: dict[str, str], cwd: Path) -> str:
    binary = shutil.which(shell)
    assert binary, f"{shell} is needed (CI installs it: apt-get install {shell})"
    proc = subprocess.run(
        [binary, "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bash_completes_commands_and_credential_names(cli: Cli, shell_env: dict[str, str]) -> None:
    script = """
    eval "$(rotatectl --show-completion)"
    complete -p rotatectl
    complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=();
                       _rotatectl_completion rotatectl; printf '%s\\n' "${COMPREPLY[@]}"; echo --; }
    complete_words rotatectl sta
    complete_words rotatectl status partners/
    complete_words rotatectl -c rotatectl.toml rotate int
    complete_words rotatectl history ''
    """
    out = in_shell("bash", script, shell_env, cli.cwd)
    registered, commands, partners, rotate, history, _ = _sections(out)
    assert registered.strip() == "complete -o default -F _rotatectl_completion rotatectl"
    assert commands.split() == ["status"]
    assert sorted(partners.split()) == sorted(["partners/acme", LONG])
    assert rotate.split() == ["internal/billing"]
    assert sorted(history.split()) == sorted(NAMES)


def _sections(out: str) -> list[str]:
    """The output of the script above: the ``complete -p`` line, then one section
    per completion request."""
    first, _, rest = out.partition("\n")
    return [first, *rest.split("--\n")]


def test_bash_install_completion_is_picked_up_by_a_new_shell(
    cli: Cli, shell_env: dict[str, str]
) -> None:
    home = Path(shell_env["HOME"])
    said = in_shell("bash", "rotatectl --install-completion; true", shell_env, cli.cwd)
    assert "bash completion installed in" in said
    assert (home / ".bash_completions" / "rotatectl.sh").is_file()
    out = in_shell("bash", "source ~/.bashrc; complete -p rotatectl", shell_env, cli.cwd)
    assert "_rotatectl_completion rotatectl" in out


def test_zsh_script_parses_and_its_requests_complete_names(
    cli: Cli, shell_env: dict[str, str], tmp_path: Path
) -> None:
    script = in_shell("zsh", "rotatectl --show-completion; true", shell_env, cli.cwd)
    assert script.lstrip().startswith("#compdef rotatectl")
    saved = tmp_path / "_rotatectl"
    saved.write_text(script)
    in_shell("zsh", f"zsh -n {saved}", shell_env, cli.cwd)  # it parses
    # The request the script makes (its words so far), answered as zsh reads it.
    env = {
        **shell_env,
        "_ROTATECTL_COMPLETE": "complete_zsh",
        "_TYPER_COMPLETE_ARGS": "rotatectl status partners/",
    }
    out = in_shell("zsh", "rotatectl", env, cli.cwd)
    assert "partners/acme" in out and LONG in out and "internal/billing" not in out


def test_fish_completes_credential_names(cli: Cli, shell_env: dict[str, str]) -> None:
    script = """
    rotatectl --show-completion | source
    complete -C 'rotatectl status partners/'
    echo ==
    complete -C 'rotatectl au'
    """
    out = in_shell("fish", script, shell_env, cli.cwd)
    names, commands = out.split("==\n")
    assert sorted(line.split("\t")[0] for line in names.splitlines()) == sorted(
        ["partners/acme", LONG]
    )
    assert [line.split("\t")[0] for line in commands.splitlines()] == ["audit"]


def test_completion_without_a_usable_config_offers_nothing_and_prints_no_error(
    cli: Cli, shell_env: dict[str, str]
) -> None:
    (cli.cwd / "rotatectl.toml").write_text("not toml [")
    env = {
        **shell_env,
        "_ROTATECTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "rotatectl status p",
        "COMP_CWORD": "2",
    }
    proc = subprocess.run(
        ["rotatectl"], env=env, cwd=cli.cwd, capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "", "")
