#!/bin/sh
# A rotatectl `command` issuer in POSIX sh + jq: each key is two files in $KEYS_DIR,
# <ref>.key (the key, mode 600) and <ref>.meta ({"credential", "version_id", "active"}).
# One request on stdin, one reply on stdout (rotatectl.issuers.protocol, version 1).
set -eu
: "${KEYS_DIR:?KEYS_DIR must name the directory of the keys}"
umask 077
mkdir -p "$KEYS_DIR"
protocol='' op='' cred='' ref='' version='' key=''
eval "$(jq -r '@sh "protocol=\(.protocol) op=\(.operation) cred=\(.credential)",
  @sh "ref=\(.issuer_ref // "") version=\(.version_id // "") key=\(.key // "")"')"
[ "$protocol" = 1 ] || { echo "expected a protocol 1 request on stdin" >&2; exit 1; }
case $ref in *[!A-Za-z0-9_-]*) echo "issuer_ref '$ref' is not a key reference" >&2; exit 1 ;; esac
meta="$KEYS_DIR/$ref.meta"
set_active() {  # idempotent; an unknown ref is not an error
  [ ! -f "$meta" ] || { jq ".active = $1" "$meta" >"$meta.tmp" && mv "$meta.tmp" "$meta"; }
  echo '{}'
}
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
case $op in
create)
  ref=$(hex 8) key="rk_$(hex 24)"
  printf '%s' "$key" >"$KEYS_DIR/$ref.key"
  jq -n --arg c "$cred" --arg v "$version" '{credential: $c, version_id: $v, active: true}' \
    >"$KEYS_DIR/$ref.meta.tmp" && mv "$KEYS_DIR/$ref.meta.tmp" "$KEYS_DIR/$ref.meta"
  printf '{"key": "%s", "issuer_ref": "%s"}\n' "$key" "$ref" ;;  # printf: a builtin, no argv
list)
  for m in "$KEYS_DIR"/*.meta; do
    [ ! -f "$m" ] || jq --arg r "$(basename "$m" .meta)" '. + {issuer_ref: $r}' "$m"
  done | jq -s --arg c "$cred" \
    '{keys: map(select(.credential == $c) | {issuer_ref, version_id, active})}' ;;
disable) set_active false ;;
enable) set_active true ;;
delete) rm -f "$meta" "$KEYS_DIR/$ref.key"; echo '{}' ;;
test)
  if [ -f "$meta" ] && [ "$(jq .active "$meta")" = true ] &&
    [ "$(cat "$KEYS_DIR/$ref.key")" = "$key" ]; then
    echo '{"ok": true, "detail": "the key file matches and is active"}'
  else echo '{"ok": false, "detail": "no active key file holds this key"}'; fi ;;
*) echo '{"unsupported": true}' ;;
esac
