#!/usr/bin/env bash
# Rewrites the Homebrew formula and the Scoop manifest for a release:
#   packaging/update.sh 0.2.0 SHA256SUMS
# SHA256SUMS is the file the release workflow publishes ("<hash>  <archive>" lines).
set -euo pipefail
version=${1:?usage: update.sh VERSION SHA256SUMS}
sums=${2:?usage: update.sh VERSION SHA256SUMS}
cd "$(dirname "$0")"
hash_of() {
  local h
  h=$(awk -v f="cfaccess-v$version-$1" '$2 == f".tar.gz" || $2 == f".zip" {print $1}' "$sums")
  [ -n "$h" ] || { echo "no checksum for $1 in $sums" >&2; exit 1; }
  echo "$h"
}
formula=homebrew/cfaccess.rb
sed -i.bak -E "s/^  version \".*\"/  version \"$version\"/" "$formula"
for t in aarch64-apple-darwin x86_64-apple-darwin aarch64-unknown-linux-musl x86_64-unknown-linux-musl; do
  sed -i.bak -E "s/sha256 \"[0-9a-f]{64}\" # $t\$/sha256 \"$(hash_of "$t")\" # $t/" "$formula"
done
rm -f "$formula.bak"
python3 - "$version" "$(hash_of x86_64-pc-windows-msvc)" "$(hash_of aarch64-pc-windows-msvc)" <<'PY'
import json, sys
version, x64, arm64 = sys.argv[1:]
path = "scoop/cfaccess.json"
m = json.load(open(path))
m["version"] = version
for arch, target, h in (("64bit", "x86_64-pc-windows-msvc", x64), ("arm64", "aarch64-pc-windows-msvc", arm64)):
    name = f"cfaccess-v{version}-{target}"
    m["architecture"][arch].update(
        url=f"https://github.com/cfaccess/cfaccess/releases/download/v{version}/{name}.zip",
        hash=h, extract_dir=name)
open(path, "w").write(json.dumps(m, indent=4) + "\n")
PY
echo "updated $formula and scoop/cfaccess.json for $version"
