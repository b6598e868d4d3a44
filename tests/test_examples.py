"""Every example runs as written.

``examples/aws`` and ``examples/aws-ssm`` against ``moto_server`` (``AWS_ENDPOINT_URL``),
``examples/vault`` with its README's setup against an OpenBao dev server, and the files of
``examples/ops`` (crontab, systemd unit, Kubernetes CronJob) with the environment they
set, against a local store. Absolute paths of the ops examples (``/etc/rotatectl``,
``/var/lib/rotatectl``, ``/usr/local/bin``) are moved under a temporary directory, and
``rotatectl`` there is this checkout's. ``examples/local/demo.sh`` runs in
``tests/test_cli.py``, ``examples/zero-downtime`` in ``tests/sdk/test_demo.py``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import rotatectl
from rotatectl import keyformat

from .aws.conftest import MotoServer, aws_env, start_moto_server
from .aws.conftest import stop as stop_moto
from .conftest import Cli
from .vault.conftest import BaoServer, bao_dev_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SRC = Path(rotatectl.__file__).resolve().parent.parent
NAME = "payments/partners/acme"
GLOBEX = "payments/partners/globex"
LOCAL_CONFIG = '[credentials."partners/acme"]\n\n[credentials."internal/batch"]\n'


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = start_moto_server()
    yield server
    stop_moto(server)


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A server of its own: the example's setup enables approle and owns ``apikeys/``."""
    with bao_dev_server(tmp_path_factory.mktemp("bao-examples")) as server:
        yield server


def install_rotatectl(bindir: Path) -> Path:
    """``bindir/rotatectl`` running this checkout, as an installed console script does
    (its interpreter and package fixed, whatever the caller's environment)."""
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "rotatectl"
    script.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(SRC))} "
        f'exec {shlex.quote(sys.executable)} -m rotatectl "$@"\n'
    )
    script.chmod(0o755)
    return script


def versions(status: str, name: str) -> dict[int, str]:
    """``status -o json``: the credential's version numbers and states."""
    (cred,) = [c for c in json.loads(status)["credentials"] if c["name"] == name]
    return {v["number"]: v["state"] for v in cred["versions"]}


def rotate_twice(cli: Cli, config: Path, *names: str) -> None:
    """The first ``rotate`` issues each first key; the second publishes v2 as pending."""
    first = cli("--config", str(config), "rotate", *names)
    assert first.code == 0, first.err
    second = cli("--config", str(config), "rotate", *names)
    assert second.code == 0, second.err
    status = cli("--config", str(config), "status", "-o", "json")
    assert status.code == 0, status.err
    for name in names:
        assert f"{name}: completed: first key of the credential" in first.out
        assert re.search(rf"^{re.escape(name)}: published v2 \(\S+\) as pending$", second.out, re.M)
        assert versions(status.out, name) == {1: "current", 2: "pending"}


def get(cli: Cli, config: Path, name: str) -> str:
    run = cli("--config", str(config), "get", name)
    assert run.code == 0, run.err
    return run.out.removesuffix("\n")


# -- examples/aws, examples/aws-ssm against moto_server -----------------------------------


def aws_example(cli: Cli, moto: MotoServer, directory: str) -> Path:
    """The example's config, unchanged, with AWS_ENDPOINT_URL naming moto_server."""
    moto.reset()
    cli.env.update(aws_env())
    cli.env["AWS_ENDPOINT_URL"] = moto.url
    config = cli.root / directory / "rotatectl.toml"
    config.parent.mkdir()
    shutil.copy(EXAMPLES / directory / "rotatectl.toml", config)
    return config


def check(cli: Cli, config: Path) -> None:
    run = cli("--config", str(config), "check")
    assert run.code == 0, run.out + run.err
    assert f"config: {config}" in run.out


def test_aws_secretsmanager_example(cli: Cli, moto: MotoServer) -> None:
    config = aws_example(cli, moto, "aws")
    iam = moto.client("iam")
    iam.create_user(UserName="svc-payments")  # the IAM user whose keys it rotates
    check(cli, config)
    rotate_twice(cli, config, NAME, "aws/svc-payments", GLOBEX)

    # Clients read AWSCURRENT, as examples/aws/README.md shows.
    sm = moto.client("secretsmanager")
    current = sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")["SecretString"]
    assert current == get(cli, config, NAME)
    document = json.loads(
        sm.get_secret_value(SecretId="aws/svc-payments", VersionStage="AWSCURRENT")["SecretString"]
    )
    keys = iam.list_access_keys(UserName="svc-payments")["AccessKeyMetadata"]
    assert {k["Status"] for k in keys} == {"Active"} and len(keys) == 2  # current + pending
    assert document["AccessKeyId"] in {k["AccessKeyId"] for k in keys}

    # Fingerprints as the README says: SHA-256 of the secret part, scrypt1: of an IAM document.
    def fingerprints(path: str) -> dict[int, str]:
        record = sm.get_secret_value(SecretId=f"{path}/.rotatectl", VersionStage="AWSCURRENT")
        return {
            v["number"]: v["fingerprint"] for v in json.loads(record["SecretString"])["versions"]
        }

    # The JSON secret: its document as the example says, the fingerprint the key's.
    document = json.loads(
        sm.get_secret_value(SecretId=GLOBEX, VersionStage="AWSCURRENT")["SecretString"]
    )
    assert {k: v for k, v in document.items() if k != "api_key"} == {
        "username": "globex",
        "region": "eu-west-1",
    }
    field = cli("--config", str(config), "get", GLOBEX, "--field", "api_key")
    assert field.out == document["api_key"] + "\n"
    assert fingerprints(GLOBEX)[1] == keyformat.fingerprint(document["api_key"])

    generated = fingerprints(NAME)
    assert generated[1] == keyformat.fingerprint(current)
    assert all(re.fullmatch("[0-9a-f]{64}", f) for f in generated.values())
    assert all(f.startswith("scrypt1:") for f in fingerprints("aws/svc-payments").values())
    assert fingerprints("aws/svc-payments")[1] == keyformat.value_fingerprint(
        get(cli, config, "aws/svc-payments")
    )


def test_aws_ssm_example(cli: Cli, moto: MotoServer) -> None:
    config = aws_example(cli, moto, "aws-ssm")
    check(cli, config)
    rotate_twice(cli, config, NAME)
    # The client read in the example's header, run as written with the aws CLI.
    (line,) = [
        line.lstrip("# ")
        for line in config.read_text().splitlines()
        if line.startswith("#   aws ssm get-parameter")
    ]
    read = subprocess.run(
        shlex.split(line),
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    cli.extra_texts.append(read.stderr)
    assert json.loads(read.stdout)["Parameter"]["Value"] == get(cli, config, NAME)


# -- examples/vault against OpenBao ---------------------------------------------------------


def sh_block(markdown: str) -> list[str]:
    """The lines of the first ```sh block."""
    match = re.search(r"^```sh\n(.*?)^```$", markdown, re.S | re.M)
    assert match, "no ```sh block"
    return match.group(1).splitlines()


def test_vault_example_with_its_readme_setup(cli: Cli, bao: BaoServer) -> None:
    work = cli.root / "vault"
    shutil.copytree(EXAMPLES / "vault", work)
    secret_id = cli.root / "etc" / "secret-id"  # /etc/rotatectl/secret-id in the example
    secret_id.parent.mkdir()
    install_rotatectl(cli.root / "bin")
    path = f"{cli.root / 'bin'}:{Path(bao.bin).parent}:/usr/bin:/bin"
    operator = {**cli.env, **bao.cli_env(), "PATH": path}

    # The README's setup, as written, as the root token's holder runs it.
    lines = [
        line.replace("/etc/rotatectl/secret-id", str(secret_id))
        for line in sh_block((work / "README.md").read_text())
    ]
    assert lines[-1].startswith("rotatectl check")
    setup = subprocess.run(
        ["bash", "-euc", "\n".join(lines[:-1])],
        cwd=work,
        env=operator,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    assert secret_id.stat().st_mode & 0o777 == 0o600
    # "-> role_id in rotatectl.toml": the one step the operator does by hand.
    role_id = re.findall(r"^[0-9a-f]{8}-[0-9a-f-]{27}$", setup.stdout, re.M)
    assert len(role_id) == 1, setup.stdout
    config = work / "rotatectl.toml"
    text = config.read_text()
    text = re.sub(r'^url = "[^"]*"', f'url = "{bao.url}"', text, count=1, flags=re.M)
    text = re.sub(r'role_id = "[^"]*"', f'role_id = "{role_id[0]}"', text, count=1)
    config.write_text(text.replace("/etc/rotatectl/secret-id", str(secret_id)))

    # rotatectl logs in with the AppRole: no token in its environment.
    assert "VAULT_TOKEN" not in cli.env and "BAO_TOKEN" not in cli.env
    check = subprocess.run(
        ["bash", "-euc", lines[-1]],
        cwd=work,
        env={**cli.env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    cli.record(("check",), check.returncode, check.stdout, check.stderr)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"config: {config}" in check.stdout and "ok store vault" in check.stdout

    rotate_twice(cli, config, "partners/acme")
    current = get(cli, config, "partners/acme")

    # A client and a verifier with the example's policies, reading as the README says.
    def token(policy: str) -> str:
        assert bao.bao("policy", "write", policy, str(work / f"{policy}.hcl")).returncode == 0
        made = bao.bao("token", "create", f"-policy={policy}", "-field=token")
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    client = bao.bao(
        "kv", "get", "-field=current", "secret/apikeys/partners/acme", token=token("client")
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout == current
    index = "secret/apikeys/partners/acme/.rotatectl/index"
    verifier = token("verifier")
    refused = bao.bao("kv", "get", "secret/apikeys/partners/acme", token=verifier)
    assert refused.returncode != 0 and "permission denied" in refused.stderr  # no values
    read = bao.bao("kv", "get", "-format=json", "-field=accepted", index, token=verifier)
    assert read.returncode == 0, read.stderr
    accepted = json.loads(read.stdout)
    cli.extra_texts += [client.stderr, read.stdout]
    # The same shape as the README's sample, and fingerprints in the form it shows.
    block = re.search(r"^```json\n(.*?)^```$", (work / "README.md").read_text(), re.S | re.M)
    assert block is not None
    sample = json.loads(block[1])
    assert {frozenset(e) for e in accepted.values()} == {frozenset(e) for e in sample.values()}
    assert all(re.fullmatch("[0-9a-f]{64}", e["fingerprint"]) for e in sample.values())
    by_state = {e["state"]: e for e in accepted.values()}
    assert set(by_state) == {"current", "pending"}
    assert by_state["current"]["fingerprint"] == keyformat.fingerprint(current)
    assert re.fullmatch("[0-9a-f]{64}", by_state["pending"]["fingerprint"])
    assert accepted[keyformat.parse(current).key_id]["state"] == "current"


# -- examples/ops: crontab, systemd unit, Kubernetes CronJob ---------------------------------


class Machine:
    """A pretend host under ``root``: the example's absolute paths live there."""

    MOVED = ("/etc/rotatectl", "/var/lib/rotatectl", "/usr/local/bin")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rotatectl = install_rotatectl(self.path("/usr/local/bin"))
        self.path("/etc/rotatectl").mkdir(parents=True)
        self.path("/etc/rotatectl/rotatectl.toml").write_text(LOCAL_CONFIG)
        self.path("/var/lib").mkdir(parents=True)
        self.path("/home/rotatectl").mkdir(parents=True)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def move(self, text: str) -> str:
        """``text`` with the example's absolute paths moved under the root."""
        for prefix in self.MOVED:
            text = re.sub(rf"{re.escape(prefix)}(?=/|:|\s|$)", str(self.path(prefix)), text)
        return text

    def files(self) -> dict[Path, tuple[int, int]]:
        return {
            p: (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in self.root.rglob("*")
        }

    def run(
        self, argv: list[str], env: dict[str, str], cwd: Path, umask: int = 0o022
    ) -> tuple[subprocess.CompletedProcess[str], set[Path]]:
        """Run ``argv``; return the result and every path it created or changed."""
        before = self.files()
        proc = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            umask=umask,
        )
        after = self.files()
        changed = {p for p, stat in after.items() if before.get(p) != stat}
        return proc, changed


def only_under(changed: set[Path], directory: Path) -> set[Path]:
    """The paths of ``changed`` outside ``directory`` (should be none)."""
    return {p for p in changed if p != directory and directory not in p.parents}


def drift(db: Path) -> None:
    """Change a current value behind rotatectl's back."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE versions SET value = 'changed-by-hand' WHERE path = 'partners/acme' "
            "AND state = 'current'"
        )


CRON_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def cron_field_ok(text: str, low: int, high: int) -> bool:
    """A numeric cron field: ``*``, ``N``, ``N-M``, each with an optional ``/step``, listed."""
    for part in text.split(","):
        m = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
        if m is None or (m[4] is not None and int(m[4]) < 1):
            return False
        if m[2] is not None and not low <= int(m[2]) <= int(m[3] or m[2]) <= high:
            return False
    return True


def crontab(text: str) -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """The crontab's variable assignments and its jobs (five fields, command)."""
    env: dict[str, str] = {}
    jobs: list[tuple[list[str], str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_]\w*)\s*=\s*(.*)", line)
        if assignment:
            env[assignment[1]] = assignment[2].strip()
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not five fields and a command: {line}"
        jobs.append((fields[:5], fields[5]))
    return env, jobs


def test_crontab_runs_as_cron_runs_it(cli: Cli) -> None:
    env_lines, jobs = crontab((EXAMPLES / "ops" / "crontab").read_text())
    assert len(jobs) == 1
    schedule, command = jobs[0]
    for field, (low, high) in zip(schedule, CRON_FIELDS, strict=True):
        assert cron_field_ok(field, low, high), f"bad cron field {field!r} in {schedule}"
    assert "%" not in command  # cron would turn it into a newline
    machine = Machine(cli.root / "host")
    home = machine.path("/home/rotatectl")
    # What cron gives a job, then the crontab's own assignments (no expansion).
    env = {"HOME": str(home), "LOGNAME": "rotatectl", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    env.update({k: machine.move(v) for k, v in env_lines.items()})
    # As written, but a jitter of 1s, not up to 60s.
    argv = ["/bin/sh", "-c", machine.move(re.sub(r"--jitter \S+", "--jitter 1s", command))]
    state = machine.path("/var/lib/rotatectl")
    state.mkdir(mode=0o700)  # install -d -o rotatectl -m 0700 /var/lib/rotatectl

    proc, changed = machine.run(argv, env, home)
    cli.record(("crontab",), proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""  # nothing needs attention: cron mails nothing
    assert only_under(changed, state) == set()
    assert {p.name for p in state.iterdir()} == {"state.db", "audit.jsonl", "audit.jsonl.head"}

    # Something needs attention: output, so cron mails it, and exit 3 for a wrapper.
    drift(state / "state.db")
    proc, changed = machine.run(argv, env, home)
    cli.record(("crontab",), proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 3
    assert "partners/acme: attention - drift" in proc.stdout + proc.stderr
    assert only_under(changed, state) == set()


def unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file's sections, each a list of (key, value) in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and not line.endswith("\\"), line
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_service_runs_under_its_hardening(cli: Cli) -> None:
    service = unit((EXAMPLES / "ops" / "rotatectl.service").read_text())["Service"]
    settings = dict(service)
    environment: dict[str, str] = {}
    for key, value in service:
        if key == "Environment":
            for item in shlex.split(value):
                name, _, setting = item.partition("=")
                environment[name] = setting
    # The only writable places under ProtectSystem=strict: StateDirectory=, ReadWritePaths=.
    assert settings["ProtectSystem"] == "strict" and settings["ProtectHome"] == "true"
    state_dir = f"/var/lib/{settings['StateDirectory']}"
    writable = [state_dir, *settings.get("ReadWritePaths", "").split()]
    assert environment.get("ROTATECTL_STATE_DIR") == state_dir
    config = environment["ROTATECTL_CONFIG"]
    assert not any(config.startswith(w + "/") for w in writable), "the config is writable"

    machine = Machine(cli.root / "host")
    state = machine.path(state_dir)
    state.mkdir(mode=int(settings["StateDirectoryMode"], 8))  # as systemd makes it
    argv = [machine.move(a) for a in shlex.split(settings["ExecStart"])]
    assert argv[0] == str(machine.rotatectl)
    env = {
        "PATH": machine.move("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(machine.path("/home/rotatectl")),  # ProtectHome=true: out of reach
        "LOGNAME": settings["User"],
        "STATE_DIRECTORY": str(state),
        **{k: machine.move(v) for k, v in environment.items()},
    }
    proc, changed = machine.run(argv, env, machine.root, umask=int(settings["UMask"], 8))
    cli.record(("rotatectl.service",), proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
    assert only_under(changed, state) == set()
    assert {p.name for p in state.iterdir()} == {"state.db", "audit.jsonl", "audit.jsonl.head"}
    assert {p.stat().st_mode & 0o777 for p in state.iterdir()} == {0o600}

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # systemd's own check where it exists; the run above does not need it
    units = cli.root / "units"
    units.mkdir()
    for name in ("rotatectl.service", "rotatectl.timer"):
        text = (EXAMPLES / "ops" / name).read_text()
        (units / name).write_text(text.replace("/usr/local/bin/rotatectl", str(machine.rotatectl)))
    verify = subprocess.run(
        [analyze, "verify", str(units / "rotatectl.service"), str(units / "rotatectl.timer")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def test_kubernetes_cronjob_writes_only_to_its_persistent_volume(cli: Cli) -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / "ops" / "cronjob.yaml").read_text()))
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    (cronjob,) = [d for d in documents if d["kind"] == "CronJob"]
    assert cron_field_ok(cronjob["spec"]["schedule"].split()[0], 0, 59)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {
        e["name"]: e.get("value", f"from-{e['name'].lower()}")  # valueFrom: a secret's value
        for e in container["env"]
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts: dict[str, dict[str, Any]] = {m["mountPath"]: m for m in container["volumeMounts"]}

    def mount_of(path: str) -> dict[str, Any]:
        found = [m for p, m in mounts.items() if path == p or path.startswith(p + "/")]
        assert found, f"{path} is on the read-only root filesystem"
        return found[0]

    # The state directory, and the audit log in it, are on a writable, persistent volume.
    assert "ROTATECTL_STATE_DIR" in env, "the state directory would be next to the config"
    state_dir = env["ROTATECTL_STATE_DIR"]
    for path in (state_dir, f"{state_dir}/audit.jsonl"):
        mount = mount_of(path)
        assert not mount.get("readOnly", False)
        claim = volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
        assert claim in claims, f"{path} is not on a claim of the file: the audit log is lost"
    assert mount_of(env["ROTATECTL_CONFIG"]).get("readOnly") is True

    machine = Machine(cli.root / "pod")
    state = machine.path(mount_of(state_dir)["mountPath"])
    state.mkdir()  # a new, empty claim
    argv = [*container["command"], *container.get("args", [])]
    run_env = {
        "PATH": f"{machine.rotatectl.parent}:/usr/bin:/bin",  # the image's PATH
        "HOME": str(machine.root),  # runAsUser without a passwd entry: HOME=/, read-only
        **{k: machine.move(v) for k, v in env.items()},
    }
    proc, changed = machine.run(argv, run_env, machine.root)
    cli.record(("cronjob.yaml",), proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
    assert only_under(changed, machine.path(state_dir)) == set()
    assert (machine.path(state_dir) / "audit.jsonl").stat().st_size > 0


def test_ops_examples_and_readme_share_one_interval() -> None:
    _, jobs = crontab((EXAMPLES / "ops" / "crontab").read_text())
    readme = re.search(r"^(\S+ \* \* \* \*) rotatectl ", (ROOT / "README.md").read_text(), re.M)
    (cronjob,) = [
        d
        for d in yaml.safe_load_all((EXAMPLES / "ops" / "cronjob.yaml").read_text())
        if d["kind"] == "CronJob"
    ]
    timer = dict(unit((EXAMPLES / "ops" / "rotatectl.timer").read_text())["Timer"])
    assert readme is not None
    assert " ".join(jobs[0][0]) == readme[1] == cronjob["spec"]["schedule"] == "*/30 * * * *"
    assert timer["OnUnitActiveSec"] == "30min"
