"""The audit log: every action recorded, hash-chained, tampering of each kind caught."""

from __future__ import annotations

import json
import multiprocessing
from datetime import timedelta
from pathlib import Path

import pytest

from rotatectl.audit import AuditLog
from rotatectl.engine import Runner

from .conftest import Cli
from .test_runner import TTL, World


def filled(tmp_path: Path, n: int = 5, key: bytes | None = None) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", key)
    for i in range(n):
        log.append("retired", f"cred/{i % 2}", version=i + 1, key_id=f"k{i}", outcome="ok")
    return log


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def rewrite(log: AuditLog, new_lines: list[str]) -> None:
    log.path.write_text("\n".join(new_lines) + ("\n" if new_lines else ""))


def test_a_clean_log_verifies_and_is_private(tmp_path: Path) -> None:
    log = filled(tmp_path)
    assert log.verify() == (5, None)
    assert (log.path.stat().st_mode & 0o777) == 0o600
    records = [json.loads(x) for x in lines(log)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[1]["prev"] == records[0]["hash"]
    assert records[0]["actor"]["user"] and records[0]["actor"]["host"]


def edit(ls: list[str]) -> list[str]:
    record = json.loads(ls[2])
    record["key_id"] = "forged"
    return [*ls[:2], json.dumps(record), *ls[3:]]


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (edit, 3, "its content was changed"),
        (lambda ls: ls[:2] + ls[3:], 3, "sequence 4 where 3 was expected"),
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, "sequence 3 where 2 was expected"),
        (lambda ls: [*ls[:2], ls[1], *ls[2:]], 3, "sequence 2 where 3 was expected"),
        (lambda ls: ls[:3], 0, "truncated: 2 records after 3 are gone"),
        (lambda ls: [*ls[:2], "{not json", *ls[2:]], 3, "not valid JSON"),
    ],
    ids=["edit", "delete", "reorder", "insert", "truncate", "garbage"],
)
def test_every_kind_of_tampering_is_caught_and_named(tmp_path: Path, tamper, line, reason) -> None:
    log = filled(tmp_path)
    rewrite(log, tamper(lines(log)))
    _, problem = log.verify()
    assert problem is not None
    assert (problem.line, problem.reason) == (line, reason)


def test_a_forged_insert_with_a_recomputed_hash_needs_the_hmac_key(tmp_path: Path) -> None:
    log = filled(tmp_path, key=b"k" * 32)
    assert log.verify() == (5, None)
    forger = AuditLog(log.path, b"wrong key")
    _, problem = forger.verify()
    assert problem is not None and problem.reason == "its content was changed"
    _, problem = AuditLog(log.path).verify()
    assert problem is not None and "set the audit key" in problem.reason


def _append_many(path: str, worker: int) -> None:
    log = AuditLog(Path(path))
    for i in range(125):
        log.append("read-value", f"cred/{worker}", version=i)


def test_concurrent_appends_from_processes_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    log = AuditLog(path)
    assert log.verify() == (1000, None)
    assert len(log.show(credential="cred/3")) == 125


def test_show_filters_by_credential_and_time(tmp_path: Path) -> None:
    log = filled(tmp_path)
    assert [r["seq"] for r in log.show(credential="cred/1")] == [2, 4]
    first = json.loads(lines(log)[0])
    from rotatectl.model import parse_iso

    at = parse_iso(first["ts"])
    assert at is not None
    assert len(log.show(since=at + timedelta(hours=1))) == 0
    assert len(log.show(until=at + timedelta(hours=1))) == 5


def test_the_runner_audits_every_step_before_reporting(tmp_path: Path) -> None:
    w = World()
    log = AuditLog(tmp_path / "audit.jsonl")
    runner = Runner(w.clock, holder="t@h:1", lock_ttl=TTL, audit=log)
    w.rotations_started = 2
    runner.rotate(w.target())
    runner.rotate(w.target(), propagation=timedelta(0), overlap=timedelta(0))
    actions = [r["action"] for r in log.show()]
    # Intents (promote, retire) are audited before their side effect, events after it.
    assert actions == [
        *("started", "published", "promote", "promoted", "completed"),
        *("started", "published", "promote", "promoted", "retire", "retired", "completed"),
    ]
    retired = log.show()[10]
    v1 = w.store.versions("partners/acme")[0]
    assert (retired["version"], retired["key_id"], retired["fingerprint"]) == (
        1,
        v1.key_id,
        v1.fingerprint,
    )
    value = w.store.read_value("partners/acme")
    assert value not in log.path.read_text()


def test_cli_audit_show_verify_and_tamper(cli: Cli) -> None:
    cli("rotate", "a")
    cli("rotate", "b")
    assert cli("get", "a").code == 0
    run = cli("audit", "show", "--credential", "a", "-o", "json")
    assert run.code == 0, run.err
    records = json.loads(run.out)["records"]
    assert [r["action"] for r in records][-1] == "read-value"
    assert records[-1]["actor"]["via"] == "get"
    assert cli("audit", "verify").code == 0
    assert "intact" in cli("audit", "verify").out
    log = cli.state_dir / "audit.jsonl"
    text = log.read_text().splitlines()
    log.write_text("\n".join(text[:1] + text[2:]) + "\n")
    run = cli("audit", "verify")
    assert run.code == 3 and "line 2" in run.err and "sequence 3 where 2" in run.err
    assert len(run.err.strip().splitlines()) == 1


def test_audit_key_from_the_environment(cli: Cli) -> None:
    cli.env["ROTATECTL_AUDIT_KEY"] = "s3cret-audit-key"
    cli("rotate", "a")
    run = cli("audit", "verify", "-o", "json")
    assert json.loads(run.out)["ok"] is True
    del cli.env["ROTATECTL_AUDIT_KEY"]
    run = cli("audit", "verify")
    assert run.code == 3 and "set the audit key" in run.err
