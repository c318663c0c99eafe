#!/usr/bin/env bash
# The whole cfaccess flow on this machine, no internet needed: a local
# access-edge (the stand-in for Cloudflare Access) with an app, an sshd with
# Debian's stock config that `cfaccess server setup` makes trust the app's
# SSH CA (fetched through the edge's Cloudflare API), a browser login
# through the edge's login page, the cached token, curl with that token, the
# ssh config that cfaccess prints, and ssh logging in as you with a
# short-lived certificate for a key that sshd never saw.
set -euo pipefail
cd "$(dirname "$0")"
echo "demo.sh: the first run compiles cfaccess and access-edge in release mode, which takes a few minutes on a small machine; later runs reuse the build." >&2

# Bold headings on a terminal only, and never with NO_COLOR (no-color.org):
# piped into a file or `cat -v`, the demo prints no escape codes.
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
else
  step() { printf '\n== %s\n' "$*" >&2; }
fi

# CFACCESS_BIN=path/to/cfaccess runs the demo with that binary (a static musl
# build, a release archive's); access-edge is still built here.
if [ -n "${CFACCESS_BIN:-}" ]; then
  cfaccess=$(cd "$(dirname "$CFACCESS_BIN")" && pwd)/$(basename "$CFACCESS_BIN")
  step "building access-edge (release); cfaccess is $cfaccess: $("$cfaccess" --version)"
  cargo build --release -p access-edge --quiet
else
  step "building cfaccess and access-edge (release)"
  # Two builds, not one --workspace build: that would unify the edge's
  # dependency features into cfaccess, a bigger binary than users install.
  cargo build --release -p access-edge --quiet
  cargo build --release -p cfaccess --quiet
  cfaccess=$PWD/target/release/cfaccess
fi
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

user=$(id -un)
me="$user@example.com"
sshd_port=""
if [ -x /usr/sbin/sshd ]; then
  sshd_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi

step "starting access-edge (demo team, app ssh.demo.test, approving logins as $me)"
"$bin/access-edge" --state-dir "$work/edge" --auto-approve "$me" ${sshd_port:+--origin 127.0.0.1:$sshd_port} \
  >"$work/edge.out" 2>"$work/edge.log" &
edge_pid=$!
pids+=($edge_pid)
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

if [ -n "$sshd_port" ]; then
  # The server, under a root of its own so nothing in /etc is touched:
  # Debian's stock sshd_config (its Include pointed under the root), and a
  # drop-in for what a demo needs (its port, host key, no PAM, no keys of
  # its own: only certificates will let anyone in).
  server=$work/server
  mkdir -p "$server/etc/ssh/sshd_config.d" "$server/run"
  stock=/usr/share/openssh/sshd_config
  [ -f "$stock" ] || stock=tests/data/debian-sshd_config
  sed "s#^Include /etc/ssh/sshd_config.d/\*.conf#Include $server/etc/ssh/sshd_config.d/*.conf#" "$stock" \
    >"$server/etc/ssh/sshd_config"
  ssh-keygen -q -t ed25519 -N '' -f "$server/etc/ssh/ssh_host_ed25519_key"
  printf '%s\n' "Port $sshd_port" "ListenAddress 127.0.0.1" "HostKey $server/etc/ssh/ssh_host_ed25519_key" \
    "PidFile $server/run/sshd.pid" "UsePAM no" "StrictModes no" "PasswordAuthentication no" \
    "AuthorizedKeysFile none" >"$server/etc/ssh/sshd_config.d/10-demo.conf"
  [ "$(id -u)" = 0 ] && mkdir -p /run/sshd

  step "starting sshd on 127.0.0.1:$sshd_port   (Debian's stock config: it trusts no CA yet)"
  /usr/sbin/sshd -D -e -f "$server/etc/ssh/sshd_config" 2>"$work/sshd.log" &
  pids+=($!)

  # The edge wrote its Cloudflare API account and token where scripts find them.
  export CLOUDFLARE_API_TOKEN CLOUDFLARE_ACCOUNT_ID
  CLOUDFLARE_API_TOKEN=$(cat "$work/edge/api-token")
  CLOUDFLARE_ACCOUNT_ID=$(cat "$work/edge/account-id")
  step "cfaccess server setup --hostname ssh.demo.test --create-ca --user $me   (the guide's server steps, through the edge's Cloudflare API)"
  for _ in $(seq 200); do [ -s "$server/run/sshd.pid" ] && break; sleep 0.05; done
  "$cfaccess" server setup --root "$server" --hostname ssh.demo.test --create-ca --user "$me"
  for _ in $(seq 200); do grep -q 'Received SIGHUP' "$work/sshd.log" && break; sleep 0.05; done
  cat "$server/etc/ssh/sshd_config.d/00-cfaccess.conf"

  step "cfaccess server check --hostname ssh.demo.test --user $me"
  for _ in $(seq 200); do [ "$(grep -c 'Server listening' "$work/sshd.log")" -ge 2 ] && break; sleep 0.05; done
  "$cfaccess" server check --root "$server" --hostname ssh.demo.test --user "$me"
else
  step "no /usr/sbin/sshd: the ssh steps are skipped (apt-get install openssh-server)"
fi

step "cfaccess login https://ssh.demo.test   (the edge's browser opens the login page)"
"$cfaccess" login https://ssh.demo.test

step "cfaccess token https://ssh.demo.test   (from the cache, no login)"
token=$("$cfaccess" token https://ssh.demo.test)
echo "${token:0:48}..."
echo "claims: $(echo "$token" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null || true)" >&2

if command -v curl >/dev/null; then
  # with CFACCESS_EDGE set, cfaccess gives curl the edge's CA and addresses itself
  step "cfaccess curl https://ssh.demo.test/whoami   (curl with the token in Cf-Access-Token)"
  "$cfaccess" curl https://ssh.demo.test/whoami -sS
  echo
fi

if [ -n "$sshd_port" ]; then
  step "cfaccess ssh-config --hostname ssh.demo.test --short-lived-cert   (the ssh config, on stdout)"
  "$cfaccess" ssh-config --hostname ssh.demo.test --short-lived-cert >"$work/ssh_config"
  cat "$work/ssh_config"

  step "ssh $user@ssh.demo.test   (ssh-gen fetches a certificate, then ssh goes through cfaccess and the edge)"
  ssh -F "$work/ssh_config" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR "$user@ssh.demo.test" 'echo "hello from $(hostname): logged in as $(whoami)"'

  step "ssh-keygen -L   (the certificate: principal $user, valid for minutes, signed by the app's CA)"
  ssh-keygen -L -f "$CFACCESS_DIR/ssh.demo.test-cf_key-cert.pub"
fi

step "the config dir, laid out as cloudflared lays it out"
ls -l "$CFACCESS_DIR" >&2
