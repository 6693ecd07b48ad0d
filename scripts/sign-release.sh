#!/usr/bin/env bash
# Signs a release directory: a detached, ASCII-armoured GPG signature over its
# SHA256SUMS (DIR/SHA256SUMS.asc), then checks the signature against the public key
# users get (packaging/flm-release-key.asc unless --verify-key FILE).
#
#   LINUX_GPG_KEY       the secret key, ASCII-armoured (its text, or a path to it)
#   LINUX_GPG_KEY_PASS  its passphrase (may be empty for an unprotected key)
#   LINUX_GPG_KEY_ID    its fingerprint or id
#
# The key is imported into a temporary GNUPGHOME that is deleted afterwards; nothing is
# written to ~/.gnupg and no secret is echoed. The release key itself never lives in the
# repository: keep it in the CI secret store (and an offline backup).
#
# Usage: scripts/sign-release.sh DIR [--verify-key FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

die() { echo "[sign] error: $*" >&2; exit 1; }

dir=${1:?usage: scripts/sign-release.sh DIR [--verify-key FILE]}
shift
verify_key=$ROOT/packaging/flm-release-key.asc
while [ $# -gt 0 ]; do
  case "$1" in
    --verify-key) verify_key=${2:?--verify-key needs a file}; shift ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[ -f "$dir/SHA256SUMS" ] || die "$dir/SHA256SUMS is missing (scripts/package.sh writes it)"
[ -n "${LINUX_GPG_KEY:-}" ] || die "LINUX_GPG_KEY is not set"
[ -n "${LINUX_GPG_KEY_ID:-}" ] || die "LINUX_GPG_KEY_ID is not set"
command -v gpg >/dev/null || die "gpg is missing (apt-get install gnupg)"

GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME"' EXIT
chmod 700 "$GNUPGHOME"

if [ -f "$LINUX_GPG_KEY" ]; then
  gpg --batch --quiet --import "$LINUX_GPG_KEY" 2>/dev/null
else
  printf '%s\n' "$LINUX_GPG_KEY" | gpg --batch --quiet --import 2>/dev/null
fi || die "cannot import LINUX_GPG_KEY"

rm -f "$dir/SHA256SUMS.asc"
printf '%s' "${LINUX_GPG_KEY_PASS:-}" | gpg --batch --yes --quiet --pinentry-mode loopback \
  --passphrase-fd 0 --local-user "$LINUX_GPG_KEY_ID" --armor --detach-sign \
  --output "$dir/SHA256SUMS.asc" "$dir/SHA256SUMS" \
  || die "signing failed (wrong LINUX_GPG_KEY_ID or LINUX_GPG_KEY_PASS?)"

# The pipeline's "verify" step: the signature must check against the published key.
"$ROOT/scripts/verify-release.sh" "$dir" --key "$verify_key" >&2 \
  || die "the signature does not verify with $verify_key: is LINUX_GPG_KEY the release key?"
echo "[sign] signed $dir/SHA256SUMS -> SHA256SUMS.asc" >&2
