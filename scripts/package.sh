#!/usr/bin/env bash
# Builds FLM's release artefacts into dist/ (or --out DIR):
#   flm_<version>_amd64.deb   the CLI, the flm-proxy daemon (with the web app), man pages,
#                             bash/zsh/fish completions, the systemd user unit and the
#                             sandboxed system unit (packaging/deb/), built with dpkg-deb
#   SHA256SUMS                SHA-256 of every artefact
#   SHA256SUMS.asc            detached GPG signature, only when the release key is given
#                             (LINUX_GPG_KEY, LINUX_GPG_KEY_PASS, LINUX_GPG_KEY_ID: see
#                             scripts/sign-release.sh)
#
# Options:
#   --skip-build            package the binaries already in target/release
#   --version-suffix S      Debian version = Cargo version + S (e.g. +test1 for a newer
#                           build of the same version)
#   --out DIR               output directory [dist]
#   --lint                  run lintian on the package (installed with apt when missing)
#                           and fail on any error
#   --profile P             cargo profile [release]. `dev` packages the debug binaries
#                           that `cargo test` already built (no release build, not
#                           optimised): for testing the package in CI only, never a release
#
# Needs: cargo, dpkg-deb and dpkg-shlibdeps (dpkg-dev), gzip; Node.js >= 20.19 when the
# app (ui/dist) is not built yet. Nothing is downloaded beyond crates and npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { echo "[package] $*" >&2; }
die() { echo "[package] error: $*" >&2; exit 1; }

skip_build=0
suffix=""
out=dist
lint=0
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --version-suffix) suffix=${2:?--version-suffix needs a value}; shift ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --lint) lint=1 ;;
    --profile) profile=${2:?--profile needs a name}; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

[ "$(uname -m)" = x86_64 ] || die "only amd64 packages are built (this is $(uname -m))"
for tool in cargo dpkg-deb gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
if ! command -v dpkg-shlibdeps >/dev/null; then
  log "installing dpkg-dev (dpkg-shlibdeps)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq dpkg-dev >/dev/null
fi

cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$cargo_version" ] || die "cannot read the workspace version from Cargo.toml"
version=$cargo_version$suffix
case "$version" in
  [0-9]*) ;;
  *) die "the Debian version must start with a digit: $version" ;;
esac
log "version $version"

if [ "$skip_build" = 0 ]; then
  if [ ! -f ui/dist/index.html ]; then
    log "building the app (ui/dist)"
    scripts/build-ui.sh >&2
  fi
  log "cargo build --profile $profile"
  cargo build --profile "$profile" --locked -p flm-cli --bins >&2
fi
case "$profile" in
  dev) BIN=target/debug; log "dev profile: unoptimised binaries, for tests only (not a release)" ;;
  *) BIN=target/$profile ;;
esac
for b in flm flm-proxy; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run without --skip-build)"
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/flm
gen=$work/gen

log "man pages, completions and the user unit from the clap definitions"
"$BIN/flm" __generate-docs --out-dir "$gen" --bin-path /usr/bin/flm >&2

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/man/man1" \
  "$stage/usr/share/doc/flm" "$stage/usr/lib/systemd/user" "$stage/usr/lib/systemd/system" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d" "$stage/etc/default"

for b in flm flm-proxy; do
  install -m 0755 "$BIN/$b" "$stage/usr/bin/$b"
  # What dh_strip does: symbols and notes out, the code unchanged.
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/$b"
done
for page in "$gen"/man/*.1; do
  install -m 0644 "$page" "$stage/usr/share/man/man1/"
done
gzip -9n "$stage"/usr/share/man/man1/*.1
install -m 0644 "$gen/completions/flm.bash" "$stage/usr/share/bash-completion/completions/flm"
install -m 0644 "$gen/completions/_flm" "$stage/usr/share/zsh/vendor-completions/_flm"
install -m 0644 "$gen/completions/flm.fish" "$stage/usr/share/fish/vendor_completions.d/flm.fish"
install -m 0644 "$gen/systemd/flm.service" "$stage/usr/lib/systemd/user/flm.service"
install -m 0644 packaging/deb/flm.system.service "$stage/usr/lib/systemd/system/flm.service"
install -m 0644 packaging/deb/default "$stage/etc/default/flm"
install -m 0644 packaging/deb/copyright "$stage/usr/share/doc/flm/copyright"
install -m 0644 packaging/deb/README.Debian "$stage/usr/share/doc/flm/README.Debian"

# A Debian changelog entry for this build (native package: changelog.gz).
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo "${FLM_BUILD_COMMIT:-unknown}")
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  when=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
elif git log -1 --format=%ct >/dev/null 2>&1; then
  when=$(date -u -R -d "@$(git log -1 --format=%ct)")
else
  when=$(date -u -R)
fi
cat >"$stage/usr/share/doc/flm/changelog" <<EOF
flm ($version) unstable; urgency=medium

  * FLM $version, built from commit $commit. The full list of changes is in
    CHANGELOG.md of the source.

 -- FLM developers <flm@example.invalid>  $when
EOF
gzip -9n "$stage/usr/share/doc/flm/changelog"

for s in postinst prerm postrm; do
  install -m 0755 "packaging/deb/$s" "$stage/DEBIAN/$s"
done
echo /etc/default/flm >"$stage/DEBIAN/conffiles"
chmod 0644 "$stage/DEBIAN/conffiles"

# Library dependencies of the binaries, as dpkg-shlibdeps computes them.
mkdir -p "$work/shlibs/debian"
printf 'Source: flm\n\nPackage: flm\nArchitecture: amd64\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$stage/usr/bin/flm" -e"$stage/usr/bin/flm-proxy" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no library dependencies"

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@SHLIBS@/$shlibs/" \
  packaging/deb/control.in >"$stage/DEBIAN/control"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
  >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

deb="$out/flm_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
log "built $deb ($(du -h "$deb" | cut -f1), installed $((installed_size / 1024)) MiB)"

if [ "$lint" = 1 ]; then
  if ! command -v lintian >/dev/null; then
    log "installing lintian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends lintian >/dev/null
  fi
  log "lintian"
  lintian --fail-on error --info "$deb" >&2 || die "lintian reported errors"
fi

# Checksums of every artefact in the output directory.
(cd "$out" && find . -maxdepth 1 -type f -name 'flm_*.deb' -printf '%P\n' | sort | xargs sha256sum) \
  >"$out/SHA256SUMS"
rm -f "$out/SHA256SUMS.asc"
if [ -n "${LINUX_GPG_KEY:-}" ]; then
  "$ROOT/scripts/sign-release.sh" "$out"
else
  log "no release key (LINUX_GPG_KEY): SHA256SUMS is not signed"
fi
echo "$deb"
