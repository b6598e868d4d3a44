#!/usr/bin/env bash
# Runs two rotations of partners/acme on the local store; during the second one
# a "client" keeps using the old key for a few seconds, and the usage gate waits
# for it to go quiet before retiring the old key.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
cp "$here/rotatectl.toml" "$work/"
: > "$work/usage.jsonl"
rc() { rotatectl --config "$work/rotatectl.toml" "$@"; }

rc rotate partners/acme                      # the first key
old_key_id=$(rc status partners/acme -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["credentials"][0]["current_key_id"])')

# A client that keeps presenting the old key for 8 seconds.
(
  for _ in $(seq 8); do
    printf '{"ts": "%s", "credential": "partners/acme", "key_id": "%s", "result": "ok", "client": "legacy-batch"}\n' \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$old_key_id" >> "$work/usage.jsonl"
    sleep 1
  done
) &

rc rotate partners/acme --wait               # waits for propagation, overlap and the usage gate
wait
echo "events written by the log notifier:"
python3 -c 'import json,sys; [print(" ", json.loads(l)["event"]) for l in open(sys.argv[1])]' "$work/events.jsonl"
rm -rf "$work"
