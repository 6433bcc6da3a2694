#!/usr/bin/env bash
# ringchat's browser tests: installs what they need when it is missing, then runs the model's
# unit tests under Node (proto-tests/browser/unit/, when present) and the end-to-end suite
# (chat.e2e.mjs: Debian's Chromium, driven by playwright-core, against the real server binary).
#
# 1. Chromium: /usr/bin/chromium, else Debian's `chromium` package through apt-get (sudo when not
#    root). SKIP_INSTALL=1 never calls apt-get, as in proto-tests/run.
# 2. node_modules: `npm ci` from the committed package-lock.json when it is missing or older than
#    the lock file.
# 3. The server: RINGCHAT_BIN, else target/release/ringchat, built with cargo when missing.
#
# Screenshots, failure logs and the server's log land in target/browser-artifacts/.
# Exits non-zero when anything failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  if [ "${SKIP_INSTALL:-0}" = 1 ]; then
    echo "missing: $chromium_bin (SKIP_INSTALL=1, not installing)" >&2
    exit 1
  fi
  echo "== installing chromium"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool (Node 20 or later: playwright-core needs it)" >&2; exit 1; }
done

# npm ci when node_modules is missing or the lock file changed since it was installed
# (npm writes node_modules/.package-lock.json on every install).
stamp="$here/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ] || [ "$here/package.json" -nt "$stamp" ]; then
  echo "== npm ci (proto-tests/browser)"
  (cd "$here" && npm ci --no-audit --no-fund)
fi

if [ -z "${RINGCHAT_BIN:-}" ]; then
  export RINGCHAT_BIN="$root/target/release/ringchat"
  if [ ! -x "$RINGCHAT_BIN" ]; then
    echo "== cargo build --release"
    cargo build --release --locked
  fi
fi

status=0
if [ -d "$here/unit" ]; then
  echo "== browser client unit tests (node --test)"
  node --test "$here/unit/" || status=1
fi

echo "== browser end-to-end tests (chromium)"
CHROMIUM="$chromium_bin" node "$here/chat.e2e.mjs" || status=1

exit $status
