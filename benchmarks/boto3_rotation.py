"""The baseline of the rotation-overhead benchmark: a minimal hand-written rotation.

    python benchmarks/boto3_rotation.py --endpoint URL --name NAME [--prefix P]

It rotates the key secret ``<prefix><name>`` that rotatectl created, in
rotatectl's layout, with only the calls such a rotation cannot do without
(9), and none of rotatectl's checks:

1. GetSecretValue of the record secret ``<prefix><name>/.rotatectl`` (the state);
2. DescribeSecret of the key secret (which AWS version is AWSCURRENT);
3. a record write: the rotation's intent, before anything is minted (crash
   safety) — one PutSecretValue of the record at the next sequence number,
   whose ClientRequestToken is derived from it (the compare-and-set: AWS
   refuses a used token with other data), which moves AWSCURRENT to it;
4. PutSecretValue of the new key with AWSPENDING (publish);
5. a record write: published;
6. UpdateSecretVersionStage AWSCURRENT to the new key (promote, compare-and-set);
7. a record write: promoted;
8. UpdateSecretVersionStage removing AWSPREVIOUS from the old key (retire);
9. a record write: completed.

No lease lock, no re-reads, no label bookkeeping, no validation: a floor for
what rotatectl's full rotation costs, not a usable tool (it does not keep the
record's contents up to date).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import uuid

import boto3

NAMESPACE = uuid.UUID("5b0c6f0e-54f1-4a43-9d6e-7a6f74617465")  # rotatectl's


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    sm = boto3.client("secretsmanager", region_name=args.region, endpoint_url=args.endpoint)
    key = f"{args.prefix}{args.name}"
    record = f"{key}/.rotatectl"

    state = sm.get_secret_value(SecretId=record, VersionStage="AWSCURRENT")  # 1
    document = json.loads(state["SecretString"])

    def write(step: str) -> None:  # 1 call: put at the next sequence number (CAS)
        """A record write; the document is written back with only its sequence
        number advanced (``step`` names it)."""
        document["seq"] = int(document.get("seq", 0)) + 1
        sm.put_secret_value(
            SecretId=record,
            ClientRequestToken=str(uuid.uuid5(NAMESPACE, f"{record}\n{document['seq']}")),
            SecretString=json.dumps(document),
        )

    stages = sm.describe_secret(SecretId=key)["VersionIdsToStages"]  # 2
    old = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
    new = str(uuid.uuid4())
    write("issue")  # 3
    sm.put_secret_value(  # 4
        SecretId=key,
        ClientRequestToken=new,
        SecretString="rk_bench_" + secrets.token_urlsafe(32),
        VersionStages=["AWSPENDING"],
    )
    write("published")  # 5
    sm.update_secret_version_stage(  # 6
        SecretId=key, VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
    )
    write("promoted")  # 7
    sm.update_secret_version_stage(  # 8
        SecretId=key, VersionStage="AWSPREVIOUS", RemoveFromVersionId=old
    )
    write("completed")  # 9
    return 0


if __name__ == "__main__":
    sys.exit(main())
