#!/bin/sh
# Refreshes the vendored xterm.js files the terminal page embeds
# (edge/src/ssh/page.rs) from the pinned package-lock.json. The Rust build
# needs no npm: run this only after changing package.json, and commit vendor/.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
mkdir -p vendor
cp node_modules/@xterm/xterm/lib/xterm.js vendor/xterm.js
cp node_modules/@xterm/xterm/css/xterm.css vendor/xterm.css
cp node_modules/@xterm/xterm/LICENSE vendor/LICENSE.xterm
cp node_modules/@xterm/addon-fit/lib/addon-fit.js vendor/addon-fit.js
cp node_modules/@xterm/addon-fit/LICENSE vendor/LICENSE.addon-fit
rm -rf node_modules
