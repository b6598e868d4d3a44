# rotatectl itself (cron / the operator's CLI): everything under the prefix it manages.
# Matches the sample rotatectl.toml: mount "secret", prefix "apikeys".
# Give it to an AppRole (recommended for cron) or a Kubernetes auth role.

# Values, client paths, the verifier index, the rotation record and the lock.
# rotatectl writes with check-and-set only. "update" suffices (no "create"):
# it writes a path's metadata before its first version.
path "secret/data/apikeys/*" {
  capabilities = ["read", "update"]
}

# Metadata of new paths (max_versions, cas_required, custom_metadata); version
# lists (for destroy); listing credentials (`rotatectl status`, `rotatectl check`).
path "secret/metadata/apikeys/*" {
  capabilities = ["create", "read", "update", "list"]
}

# Retired values: soft-delete, then destroy after `retain`.
path "secret/delete/apikeys/*" {
  capabilities = ["update"]
}
path "secret/destroy/apikeys/*" {
  capabilities = ["update"]
}

# `rotatectl check NAME --restore` after someone soft-deleted the verifier index.
path "secret/undelete/apikeys/*" {
  capabilities = ["update"]
}

# No "delete" capability anywhere: rotatectl never removes a path's metadata.

# OpenBao only (HashiCorp Vault has neither the "scan" capability nor this path):
# the drift check of `rotatectl status` and `run` over many credentials reads
# every path's settings and versions (no values) with one recursive scan instead
# of 3 requests a credential. Without it rotatectl reads them path by path.
# path "secret/detailed-metadata/apikeys/*" {
#   capabilities = ["scan"]
# }
