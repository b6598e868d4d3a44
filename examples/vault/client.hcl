# A client of partners/acme: reads the current key, and nothing else.
#   bao kv get -field=current secret/apikeys/partners/acme
# The exact path does not match secret/data/apikeys/partners/acme/.rotatectl/...,
# so earlier and pending keys stay out of reach.
path "secret/data/apikeys/partners/acme" {
  capabilities = ["read"]
}
