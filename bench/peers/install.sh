#!/usr/bin/env bash
# Installs what the benchmark peers need and is missing: `npm ci` in bun/ and node-ws/ (exact
# versions from their package-lock.json files) and a release build of the tokio-tungstenite peer
# (its own workspace and Cargo.lock). Idempotent: a peer whose lock file has not changed since
# its last successful install is left alone. Quiet on success; prints the versions at the end.
#
#   bench/peers/install.sh
#
# Needs node and npm (Node 20 or later), cargo, and the npm registry and crates.io.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# Runs a command with its output kept aside; shows it only if the command fails.
quietly() {
    if ! "$@" >"$log" 2>&1; then
        echo "install.sh: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

# npm ci in $1 unless node_modules was installed from the same package-lock.json and $2 (a
# sanity check) still passes.
npm_install() {
    local dir="$1" check="$2" stamp="$1/node_modules/.ringchat-installed-lock"
    if cmp -s "$dir/package-lock.json" "$stamp" && (cd "$dir" && eval "$check") >/dev/null 2>&1; then
        return
    fi
    (cd "$dir" && quietly npm ci --no-audit --no-fund)
    cp "$dir/package-lock.json" "$stamp"
}

bun_works() { "$here/bun/node_modules/.bin/bun" --version >/dev/null 2>&1; }

# Bun's npm package brings its binary through an optional dependency (@oven/bun-linux-x64 and
# friends) and a postinstall script that moves it into node_modules/bun/bin. Where install
# scripts are not run (npm --ignore-scripts, a policy), run that script by hand.
npm_install "$here/bun" "node_modules/.bin/bun --version"
if ! bun_works; then
    (cd "$here/bun/node_modules/bun" && quietly node install.js)
fi
if ! bun_works; then
    echo "install.sh: bun/node_modules/.bin/bun does not run; see its output:" >&2
    "$here/bun/node_modules/.bin/bun" --version >&2 || true
    exit 1
fi

npm_install "$here/node-ws" "node -e \"require('ws'); require('bufferutil')\""

quietly cargo build --release --locked --manifest-path "$here/tokio-tungstenite/Cargo.toml"

# Versions, as the benchmark report quotes them.
crate_version() {
    awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' \
        "$here/tokio-tungstenite/Cargo.lock"
}
node_version() { (cd "$here/node-ws" && node -p "require('$1/package.json').version"); }
echo "bun               $("$here/bun/node_modules/.bin/bun" --version)"
echo "node              $(node --version | tr -d v)"
echo "ws                $(node_version ws) (bufferutil $(node_version bufferutil))"
echo "tokio             $(crate_version tokio)"
echo "tokio-tungstenite $(crate_version tokio-tungstenite)"
echo "tokio-stream      $(crate_version tokio-stream)"
echo "rustc             $(rustc --version | cut -d' ' -f2)"
