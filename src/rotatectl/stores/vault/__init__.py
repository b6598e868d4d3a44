"""The ``vault`` store: HashiCorp Vault or OpenBao, KV version 2.

A credential is a handful of KV v2 paths under ``<mount>/<prefix>/<path>``: the
client path a client reads its key from with one read of one field
(``bao kv get -field=current``), and rotatectl's records under ``.rotatectl/``
beside it: the index (version metadata and the verifier view, no values), one
value path per version, the rotation record and the lease lock. Every write is a
check-and-set write.

The modules, by what they hold:

- :mod:`.layout`: the paths and their rules (mount, prefix, the reserved
  ``.rotatectl`` folder, the client path's field, ``max_versions``);
- :mod:`.record`: the index document (versions, verifier view, a promotion
  under way, each value's KV version) and its reading, writing and settling;
- :mod:`.kv`: the requests: the hvac client and authentication, retries
  (:mod:`rotatectl.retry`), check-and-set writes and remembered copies
  (:mod:`rotatectl.stores._cas`);
- :mod:`.store`: :class:`VaultStore`, the SecretStore methods and their write
  ordering (crash safety);
- :mod:`.drift`: drift, adopt and restore (changes made outside rotatectl);
- :mod:`.lock`: the lease lock and its fencing token;
- :mod:`.access`: the access check.

hvac is imported only when the store makes its first request.
"""

from __future__ import annotations

from ..rules import RESERVED
from .kv import REMEMBERED_KINDS
from .layout import CLIENT_FIELD, MAX_VERSIONS
from .record import INDEX_FORMAT
from .store import OWN_WRITE_AGE, VaultStore

__all__ = [
    "CLIENT_FIELD",
    "INDEX_FORMAT",
    "MAX_VERSIONS",
    "OWN_WRITE_AGE",
    "REMEMBERED_KINDS",
    "RESERVED",
    "VaultStore",
]
