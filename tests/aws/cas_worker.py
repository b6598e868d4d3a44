"""One contending process for the multi-process compare-and-set test.

Run as ``python cas_worker.py URL PATH WORKER GO_PREFIX PHASE...`` where a
phase is ``save:N``, ``lock`` or ``promote``. For each phase the worker prints
``{"ready": phase}``, waits until the file ``GO_PREFIX-<phase>`` exists (so
that all workers start together), runs it and prints one JSON result line.
Not a test module.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rotatectl.errors import ConflictError, LockedError
from rotatectl.model import Phase
from rotatectl.registry import AdapterContext
from rotatectl.stores.aws import SecretsManagerStore

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def say(data: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main() -> None:
    url, path, worker, go = sys.argv[1:5]
    here = Path.cwd()
    store = SecretsManagerStore.from_config(
        {"region": "us-east-1", "endpoint_url": url},
        AdapterContext("stores.aws", here, here),
    )
    store.conn.client("secretsmanager").list_secrets(MaxResults=1)  # connect first
    for phase in sys.argv[5:]:
        mode, _, count = phase.partition(":")
        say({"ready": mode})
        while not Path(f"{go}-{mode}").exists():
            time.sleep(0.005)
        result: dict[str, object] = {"worker": worker}
        if mode == "save":
            done = conflicts = 0
            while done < int(count):
                rotation, revision = store.load_rotation(path)
                assert rotation is not None
                new = rotation.advance(Phase.PROPAGATE, T, detail=f"{worker}-{done}")
                try:
                    store.save_rotation(path, new, revision)
                    done += 1
                except ConflictError:
                    conflicts += 1
            result.update(done=done, conflicts=conflicts)
        elif mode == "lock":
            try:
                lease = store.acquire_lock(path, worker, timedelta(minutes=5), T)
                result["token"] = lease.token
            except LockedError as exc:
                result["locked_by"] = exc.holder
        elif mode == "promote":
            try:
                store.promote(path, f"v{worker[1:]}", "v1", T)
                result["promoted"] = True
            except ConflictError as exc:
                result["conflict"] = str(exc)
        say(result)
    store.close()


if __name__ == "__main__":
    main()
