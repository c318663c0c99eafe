#!/usr/bin/env bash
# The whole cfaccess flow on this machine, no internet needed: a local
# access-edge (the stand-in for Cloudflare Access) in front of a local sshd,
# a browser login through the edge's login page, the cached token, curl with
# that token, and ssh through cfaccess as its ProxyCommand.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "building cfaccess and access-edge (release)"
cargo build --release --workspace --quiet
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
  step "starting sshd on 127.0.0.1 (its own host key; your key pair for this demo only)"
  mkdir -p "$work/sshd"
  ssh-keygen -q -t ed25519 -N '' -f "$work/sshd/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$work/user_key"
  sshd_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf '%s\n' "Port $sshd_port" "ListenAddress 127.0.0.1" "HostKey $work/sshd/host_key" "PidFile none" \
    "UsePAM no" "StrictModes no" "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
    "PermitRootLogin prohibit-password" "AuthorizedKeysFile $work/user_key.pub" >"$work/sshd/config"
  [ "$(id -u)" = 0 ] && mkdir -p /run/sshd
  /usr/sbin/sshd -D -e -f "$work/sshd/config" 2>"$work/sshd/log" &
  pids+=($!)
else
  step "no /usr/sbin/sshd: the ssh step is skipped (apt-get install openssh-server)"
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

if [ -n "$sshd_port" ]; then
  step "ssh -o ProxyCommand='cfaccess access ssh --hostname %h' $user@ssh.demo.test   (through the edge, cached token)"
  ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -i "$work/user_key" -o "ProxyCommand=$bin/cfaccess access ssh --hostname %h" "$user@ssh.demo.test" \
    'echo "hello from $(hostname) as $(whoami), over $SSH_CONNECTION"'
fi

step "the config dir, laid out as cloudflared lays it out"
ls -l "$CFACCESS_DIR" >&2
