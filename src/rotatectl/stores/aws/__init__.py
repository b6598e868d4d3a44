"""AWS Secrets Manager store (``type = "aws-secretsmanager"``).

Layout (see also examples/aws/README.md)
----------------------------------------

Each credential ``<path>`` is two secrets: the **key secret** ``<prefix><path>``,
one secret version per rotatectl version with staging labels that follow the
version states (a client that knows nothing of rotatectl reads ``AWSCURRENT``),
and the **record secret** ``<prefix><path>/.rotatectl``, one JSON document with
every version's metadata, the rotation record and the lease lock, written with a
compare-and-set.

The modules:

* :mod:`~rotatectl.stores.aws.layout`: names, tags and staging labels, the key
  secret's name rules, :func:`~rotatectl.stores.aws.layout.aws_version_id`,
  where each label should be, and what *destroyed* means;
* :mod:`~rotatectl.stores.aws.record`: the record secret's document, its size
  budget and its write rule (a sequence number as the ClientRequestToken);
* :mod:`~rotatectl.stores.aws.store`: :class:`SecretsManagerStore`, the
  SecretStore methods, the reads and the record writes;
* :mod:`~rotatectl.stores.aws.drift`: changes made outside rotatectl, and
  adopting or undoing them;
* :mod:`~rotatectl.stores.aws.access`: which calls are denied.

Every record write creates a version of the record secret; AWS recommends at
most one write per secret every 10 minutes on average (it keeps versions
younger than 24 hours), so run ``rotatectl run`` from cron no more often than
about every 30 minutes and prefer ``--no-wait`` over long ``--wait`` sessions,
whose lease renewals write every ``lock_ttl / 3``.
"""

from __future__ import annotations

from .layout import RECORD_SUFFIX, aws_version_id, version_label
from .store import SecretsManagerStore, _CasLost

# Each other name lives on the module that holds it; patch a constant there
# (e.g. ``rotatectl.stores.aws.store.LIST_PAGE_SIZE``), not here.

__all__ = ["RECORD_SUFFIX", "SecretsManagerStore", "_CasLost", "aws_version_id", "version_label"]
