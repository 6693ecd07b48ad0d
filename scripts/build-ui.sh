#!/usr/bin/env bash
# Builds the FLM app (ui/) into ui/dist, which the `flm` binary embeds. Needs Node
# >= 20.19 and npm (Debian 12's own nodejs 18 is too old). With --check it also runs
# the app's lint, type check and component tests first.
set -euo pipefail
cd "$(dirname "$0")/../ui"
if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "[ui] Node.js >= 20.19 is needed to build the app (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
if [ "${1:-}" = "--check" ]; then
  npm run check
fi
npm run build
npm run size
