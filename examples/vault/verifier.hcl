# An API server that only verifies presented keys for the credential partners/acme.
# It reads one path holding key ids and fingerprints (hashes) - never a value:
#   bao kv get -field=accepted secret/apikeys/partners/acme/.rotatectl/index
# For every credential two levels deep, use "secret/data/apikeys/+/+/.rotatectl/index".
path "secret/data/apikeys/partners/acme/.rotatectl/index" {
  capabilities = ["read"]
}
