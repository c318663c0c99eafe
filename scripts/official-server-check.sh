#!/usr/bin/env bash
# The official client (cloudflared) against an sshd that `cfaccess server
# setup` configured: Debian's stock sshd_config under a temporary root, the
# app's CA created through access-edge's Cloudflare API, then cloudflared's
# own login, ssh-gen and ssh ProxyCommand with its certificate.
#
# usage: scripts/official-server-check.sh <cloudflared binary>
# Needs root (cloudflared reaches the edge on 127.0.0.1:443 by the real
# names, through /etc/hosts lines this script adds and removes), sshd, ssh.
set -euo pipefail
cfd=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ "$(id -u)" = 0 ] || { echo "needs root (port 443 and /etc/hosts)" >&2; exit 2; }
cargo build --release -p access-edge -q
cargo build --release -p cfaccess -q
bin=$root/target/release
tmp=$(mktemp -d)
pids=()
hosts_line="127.0.0.1 ssh.demo.test demo.cloudflareaccess.com login.cloudflareaccess.org # official-server-check"
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  sed -i '/# official-server-check$/d' /etc/hosts
  rm -rf "$tmp"
}
trap cleanup EXIT
echo "$hosts_line" >>/etc/hosts
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; exit 1; }
me=$(id -un)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

"$bin/access-edge" --state-dir "$tmp/edge" --listen 127.0.0.1:443 --auto-approve "$me@example.com" \
  --origin "127.0.0.1:$port" >"$tmp/edge.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$tmp/edge/profile.json" ] && break; sleep 0.05; done
[ -s "$tmp/edge/profile.json" ] || fail "access-edge did not start: $(tail -n 2 "$tmp/edge.log")"

server=$tmp/server
mkdir -p "$server/etc/ssh/sshd_config.d" "$server/run" /run/sshd
sed "s#^Include /etc/ssh/sshd_config.d/\*.conf#Include $server/etc/ssh/sshd_config.d/*.conf#" \
  tests/data/debian-sshd_config >"$server/etc/ssh/sshd_config"
ssh-keygen -q -t ed25519 -N '' -f "$server/etc/ssh/ssh_host_ed25519_key"
printf '%s\n' "Port $port" "ListenAddress 127.0.0.1" "HostKey $server/etc/ssh/ssh_host_ed25519_key" \
  "PidFile $server/run/sshd.pid" "UsePAM no" "AuthorizedKeysFile none" \
  >"$server/etc/ssh/sshd_config.d/10-check.conf"
CFACCESS_EDGE=$tmp/edge/profile.json CLOUDFLARE_API_TOKEN=$(cat "$tmp/edge/api-token") \
  CLOUDFLARE_ACCOUNT_ID=$(cat "$tmp/edge/account-id") \
  "$bin/cfaccess" server setup --root "$server" --hostname ssh.demo.test --create-ca --user "$me@example.com" \
  >"$tmp/setup.out" || fail "cfaccess server setup: $(cat "$tmp/setup.out")"
pass "cfaccess server setup configured Debian's stock sshd_config through the edge's API"
/usr/sbin/sshd -D -e -f "$server/etc/ssh/sshd_config" 2>"$tmp/sshd.log" &
pids+=($!)
for _ in $(seq 200); do grep -q 'Server listening' "$tmp/sshd.log" && break; sleep 0.05; done

# cloudflared as a user runs it: the real names, the edge's CA as the system's trust
mkdir -p "$tmp/bin" "$tmp/home"
printf '#!/bin/sh\nexec %s "$@"\n' "$tmp/edge/browser" >"$tmp/bin/xdg-open"
chmod +x "$tmp/bin/xdg-open"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca_cert"])' "$tmp/edge/profile.json" >"$tmp/ca.pem"
export HOME=$tmp/home SSL_CERT_FILE=$tmp/ca.pem PATH=$tmp/bin:$PATH
timeout 90 "$cfd" access login https://ssh.demo.test >/dev/null 2>"$tmp/err" \
  || fail "cloudflared access login: $(tail -n 2 "$tmp/err")"
timeout 60 "$cfd" access ssh-gen --hostname ssh.demo.test >/dev/null 2>"$tmp/err" \
  || fail "cloudflared access ssh-gen: $(tail -n 2 "$tmp/err")"
pass "cloudflared logs in and gets a short-lived certificate"
d=$HOME/.cloudflared
who=$(timeout 60 ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
  -o LogLevel=ERROR -o IdentitiesOnly=yes -i "$d/ssh.demo.test-cf_key" \
  -o "CertificateFile=$d/ssh.demo.test-cf_key-cert.pub" \
  -o "ProxyCommand=$cfd access ssh --hostname %h" "$me@ssh.demo.test" 'id -un' 2>"$tmp/err") \
  || fail "ssh with cloudflared's certificate: $(tail -n 2 "$tmp/err")"
[ "$who" = "$me" ] || fail "id -un printed '$who'"
grep -q 'Accepted publickey.*CERT' "$tmp/sshd.log" || fail "sshd did not log a certificate login"
pass "the sshd cfaccess set up accepts cloudflared's certificate, through cloudflared's ProxyCommand"
