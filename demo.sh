#!/usr/bin/env bash
# The whole cfaccess flow on this machine, no internet needed: a local
# access-edge (the stand-in for Cloudflare Access), a browser login through
# its login page, the cached token, and curl with that token.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "building cfaccess and access-edge (release)"
cargo build --release --workspace --quiet
bin=$PWD/target/release
work=$(mktemp -d)
edge_pid=""
cleanup() {
  [ -n "$edge_pid" ] && kill "$edge_pid" 2>/dev/null && wait "$edge_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

me="$(id -un)@example.com"
step "starting access-edge (demo team, app ssh.demo.test, approving logins as $me)"
"$bin/access-edge" --state-dir "$work/edge" --auto-approve "$me" >"$work/edge.out" 2>"$work/edge.log" &
edge_pid=$!
for _ in $(seq 200); do
  [ -s "$work/edge/profile.json" ] && break
  kill -0 "$edge_pid" 2>/dev/null || { cat "$work/edge.log" >&2; exit 1; }
  sleep 0.05
done
[ -s "$work/edge/profile.json" ] || { echo "access-edge did not start" >&2; exit 1; }
cat "$work/edge.out" >&2

# Point cfaccess at the edge, and keep its files out of your ~/.cloudflared.
export CFACCESS_EDGE=$work/edge/profile.json
export BROWSER=$work/edge/browser
export CFACCESS_DIR=$work/cloudflared

step "cfaccess login https://ssh.demo.test   (the edge's browser opens the login page)"
"$bin/cfaccess" login https://ssh.demo.test

step "cfaccess token https://ssh.demo.test   (from the cache, no login)"
token=$("$bin/cfaccess" token https://ssh.demo.test)
echo "${token:0:48}…"
echo "claims: $(echo "$token" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null || true)" >&2

if command -v curl >/dev/null; then
  step "cfaccess curl https://ssh.demo.test/whoami   (curl with the token in Cf-Access-Token)"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca_cert"], end="")' "$CFACCESS_EDGE" >"$work/ca.pem"
  port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hosts"]["ssh.demo.test"].rsplit(":",1)[1])' "$CFACCESS_EDGE")
  "$bin/cfaccess" curl https://ssh.demo.test/whoami -sS --cacert "$work/ca.pem" --connect-to "::127.0.0.1:$port"
  echo
fi

step "the config dir, laid out as cloudflared lays it out"
ls -l "$CFACCESS_DIR" >&2
