"""The operator-scenario suite's fixtures: the reliability suite's real stores.

``backend`` (parametrize it with ``indirect=True`` over :data:`STORES`) and the
servers behind it are imported, not copied, from ``tests/reliability/conftest.py``.
"""

from __future__ import annotations

from tests.reliability.conftest import (  # noqa: F401 - fixtures, re-exported for this directory
    NAME,
    PREFIX,
    REMOTE,
    STORES,
    Backend,
    _fake_aws_credentials,
    aws_env,
    backend,
    bao_server,
    crash_at,
    moto,
    moto_server,
    vault,
)
