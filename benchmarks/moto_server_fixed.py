"""``moto_server`` with one fix: a secret read without a stage returns AWSCURRENT.

Secrets Manager's GetSecretValue and BatchGetSecretValue without VersionId or
VersionStage return the version labelled AWSCURRENT. moto 5.2 returns the
version that PutSecretValue last made current instead, which is not the same
once AWSCURRENT was moved with UpdateSecretVersionStage (how rotatectl commits
its record: a compare-and-set). rotatectl then sees a stale record in a batch
and reads it again one at a time, so against plain moto a batched read costs
one call more per credential than it does against AWS. The benchmarks count
calls against this fixed server; the fix changes nothing else.

    python benchmarks/moto_server_fixed.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys
from typing import Any

from moto.secretsmanager.models import SecretsManagerBackend
from moto.server import main

_get_secret_value = SecretsManagerBackend.get_secret_value


def get_secret_value(self: Any, secret_id: str, version_id: str, version_stage: str) -> Any:
    if not version_id and not version_stage:
        version_stage = "AWSCURRENT"
    return _get_secret_value(self, secret_id, version_id, version_stage)


SecretsManagerBackend.get_secret_value = get_secret_value  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
