#!/usr/bin/env bash
# Tests release signing with a throwaway key: scripts/sign-release.sh signs SHA256SUMS,
# scripts/verify-release.sh accepts it; a tampered artefact, a tampered SHA256SUMS, a
# missing signature and the wrong public key are all refused. Also checks the committed
# release public key (packaging/flm-release-key.asc).
#
# Usage: scripts/test-release-signing.sh [DIST]
#   DIST: a directory with flm_*.deb and SHA256SUMS from scripts/package.sh; without it a
#   small stand-in artefact is signed. Nothing in DIST is changed (it is copied).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

pass=0
fail=0
ok() { echo "[signing] ok: $*" >&2; pass=$((pass + 1)); }
bad() { echo "[signing] FAIL: $*" >&2; fail=$((fail + 1)); }

tmp=$(mktemp -d)
cleanup() {
  GNUPGHOME=$tmp/gnupg gpgconf --kill all >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/rel" "$tmp/gnupg"
chmod 700 "$tmp/gnupg"

if [ -n "${1:-}" ]; then
  cp "$1"/flm_*.deb "$1/SHA256SUMS" "$tmp/rel/"
else
  head -c 65536 /dev/urandom >"$tmp/rel/flm_0.0.0_amd64.deb"
  (cd "$tmp/rel" && sha256sum flm_0.0.0_amd64.deb >SHA256SUMS)
fi
artefact=$(cd "$tmp/rel" && ls flm_*.deb | head -n1)

# The committed release key: one RSA-4096 signing key, not expired.
info=$(GNUPGHOME=$tmp/gnupg gpg --batch --with-colons --show-keys "$ROOT/packaging/flm-release-key.asc" 2>/dev/null)
pub=$(echo "$info" | grep '^pub:' | head -n1)
if [ "$(echo "$info" | grep -c '^pub:')" = 1 ] && [ "$(echo "$pub" | cut -d: -f3)" = 4096 ] \
  && [ "$(echo "$pub" | cut -d: -f2)" != e ] && ! echo "$info" | grep -q '^sec'; then
  ok "packaging/flm-release-key.asc is one public RSA-4096 key, valid until $(date -u -d "@$(echo "$pub" | cut -d: -f7)" +%F)"
else
  bad "packaging/flm-release-key.asc is not a single valid public RSA-4096 key: $pub"
fi

# A throwaway signing key with a passphrase, in a temporary keyring.
pass_phrase=throwaway-$RANDOM$RANDOM
GNUPGHOME=$tmp/gnupg gpg --batch --quiet --pinentry-mode loopback --passphrase "$pass_phrase" \
  --quick-generate-key "FLM test signing key <test@flm.example.invalid>" ed25519 sign 1d 2>/dev/null
fpr=$(GNUPGHOME=$tmp/gnupg gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr/ {print $10; exit}')
GNUPGHOME=$tmp/gnupg gpg --batch --armor --export "$fpr" >"$tmp/test-key.asc" 2>/dev/null
GNUPGHOME=$tmp/gnupg gpg --batch --pinentry-mode loopback --passphrase "$pass_phrase" \
  --armor --export-secret-keys "$fpr" >"$tmp/test-secret.asc" 2>/dev/null

if LINUX_GPG_KEY=$(cat "$tmp/test-secret.asc") LINUX_GPG_KEY_PASS=$pass_phrase LINUX_GPG_KEY_ID=$fpr \
  scripts/sign-release.sh "$tmp/rel" --verify-key "$tmp/test-key.asc" 2>"$tmp/sign.log"; then
  ok "sign-release.sh signed SHA256SUMS (key given as text) and verified it"
else
  cat "$tmp/sign.log" >&2
  bad "sign-release.sh failed"
fi
head -n1 "$tmp/rel/SHA256SUMS.asc" | grep -q 'BEGIN PGP SIGNATURE' \
  && ok "SHA256SUMS.asc is an armoured detached signature" || bad "SHA256SUMS.asc is not armoured"

if LINUX_GPG_KEY="$tmp/test-secret.asc" LINUX_GPG_KEY_PASS=wrong LINUX_GPG_KEY_ID=$fpr \
  scripts/sign-release.sh "$tmp/rel" --verify-key "$tmp/test-key.asc" 2>/dev/null; then
  bad "signing with a wrong passphrase succeeded"
else
  ok "a wrong passphrase is refused"
fi
# Signing again (key given as a file) for the checks below.
LINUX_GPG_KEY="$tmp/test-secret.asc" LINUX_GPG_KEY_PASS=$pass_phrase LINUX_GPG_KEY_ID=$fpr \
  scripts/sign-release.sh "$tmp/rel" --verify-key "$tmp/test-key.asc" 2>/dev/null

if scripts/verify-release.sh "$tmp/rel" --key "$tmp/test-key.asc" 2>"$tmp/verify.log"; then
  ok "verify-release.sh accepts the signed release"
else
  cat "$tmp/verify.log" >&2
  bad "verify-release.sh refused a good release"
fi
# The documented manual commands.
if (cd "$tmp/rel" && GNUPGHOME=$tmp/gnupg gpg --batch --dearmor <"$tmp/test-key.asc" >"$tmp/k.gpg" \
  && gpgv --keyring "$tmp/k.gpg" SHA256SUMS.asc SHA256SUMS 2>/dev/null \
  && sha256sum --check --ignore-missing SHA256SUMS >/dev/null); then
  ok "the documented gpgv + sha256sum commands accept it"
else
  bad "the documented commands refused a good release"
fi

if scripts/verify-release.sh "$tmp/rel" 2>/dev/null; then
  bad "a signature by another key verified against the release key"
else
  ok "a signature by another key is refused with the committed release key"
fi

cp "$tmp/rel/$artefact" "$tmp/orig.deb"
printf 'x' >>"$tmp/rel/$artefact"
if scripts/verify-release.sh "$tmp/rel" --key "$tmp/test-key.asc" 2>"$tmp/verify.log"; then
  bad "a tampered $artefact verified"
else
  grep -q 'FAILED' "$tmp/verify.log" && ok "a tampered $artefact is refused" || bad "no FAILED line"
fi
cp "$tmp/orig.deb" "$tmp/rel/$artefact"

cp "$tmp/rel/SHA256SUMS" "$tmp/orig.sums"
sed -i '1s/^./0/; 1s/^0\(.\)/1\1/' "$tmp/rel/SHA256SUMS"
if cmp -s "$tmp/rel/SHA256SUMS" "$tmp/orig.sums"; then
  bad "could not tamper SHA256SUMS"
elif scripts/verify-release.sh "$tmp/rel" --key "$tmp/test-key.asc" 2>"$tmp/verify.log"; then
  bad "a tampered SHA256SUMS verified"
else
  grep -q 'bad signature' "$tmp/verify.log" && ok "a tampered SHA256SUMS is refused (bad signature)" \
    || bad "tampered SHA256SUMS refused for another reason: $(cat "$tmp/verify.log")"
fi
cp "$tmp/orig.sums" "$tmp/rel/SHA256SUMS"

rm "$tmp/rel/SHA256SUMS.asc"
if scripts/verify-release.sh "$tmp/rel" --key "$tmp/test-key.asc" 2>/dev/null; then
  bad "a release without signature verified"
else
  ok "a release without SHA256SUMS.asc is refused"
fi

echo "signing: $pass passed, $fail failed" >&2
[ "$fail" = 0 ]
