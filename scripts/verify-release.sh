#!/usr/bin/env bash
# Verifies a downloaded FLM release: the GPG signature of SHA256SUMS against FLM's
# release key, then the SHA-256 of every artefact listed there that is present.
#
# Usage: scripts/verify-release.sh DIR [--key FILE]
#   DIR   where flm_<version>_amd64.deb, SHA256SUMS and SHA256SUMS.asc are
#   FILE  the release public key [packaging/flm-release-key.asc]
#
# The same by hand (needs only gpgv, which every Debian has, and gpg to unpack the key):
#   gpg --dearmor < flm-release-key.asc > flm-release.gpg
#   gpgv --keyring ./flm-release.gpg SHA256SUMS.asc SHA256SUMS
#   sha256sum --check --ignore-missing SHA256SUMS
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "[verify] FAILED: $*" >&2; exit 1; }

dir=${1:?usage: scripts/verify-release.sh DIR [--key FILE]}
shift
key=$here/packaging/flm-release-key.asc
while [ $# -gt 0 ]; do
  case "$1" in
    --key) key=${2:?--key needs a file}; shift ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[ -f "$key" ] || die "no public key at $key"
[ -f "$dir/SHA256SUMS" ] || die "$dir/SHA256SUMS is missing"
[ -f "$dir/SHA256SUMS.asc" ] || die "$dir/SHA256SUMS.asc (the signature) is missing"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GNUPGHOME=$tmp/gnupg gpg --batch --quiet --dearmor <"$key" >"$tmp/keyring.gpg" 2>/dev/null \
  || die "$key is not an OpenPGP public key"
gpgv --keyring "$tmp/keyring.gpg" "$dir/SHA256SUMS.asc" "$dir/SHA256SUMS" 2>"$tmp/gpgv.log" \
  || { cat "$tmp/gpgv.log" >&2; die "bad signature on SHA256SUMS"; }
grep -E '^gpgv: (Good signature|using|Signature made)' "$tmp/gpgv.log" >&2 || true
(cd "$dir" && sha256sum --check --ignore-missing --strict SHA256SUMS) >&2 \
  || die "an artefact does not match SHA256SUMS"
listed=$(cd "$dir" && awk '{print $2}' SHA256SUMS | while read -r f; do [ -e "$f" ] && echo "$f"; done | wc -l)
[ "$listed" -gt 0 ] || die "none of the files listed in SHA256SUMS is in $dir"
echo "[verify] OK: signature by the FLM release key, $listed file(s) match SHA256SUMS" >&2
