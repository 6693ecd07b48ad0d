#!/usr/bin/env bash
# Tests FLM's Debian package for real, as root, on a Debian 12 machine where systemd is
# installed but need not run (CI: PID 1 is not systemd):
#
#   1. builds it (scripts/package.sh --lint: lintian must report no error) and a newer
#      build of the same version (+test1); signs and verifies them with a throwaway key
#      (scripts/test-release-signing.sh)
#   2. dpkg -i; flm --version; man pages, completions and both units installed;
#      `systemd-analyze verify` of every unit, `systemd-analyze security` of the system one
#   3. runs the system unit's ExecStart as its User= with its Environment= and
#      EnvironmentFile= (setpriv, umask 0077, cwd /) and proves it serves: /health,
#      /v1/models and a chat through it to the real llama-server
#   4. FLM's local root CA into the system trust store (`flm security install-ca`)
#   5. upgrade to the +test1 build: data, API key and the edited conffile kept; the same
#      upgrade and a removal again with a running systemd (simulated in a private mount
#      namespace, systemctl a recording stand-in): services restarted / stopped
#   6. dpkg -r: binaries gone, data, conffile and CA kept
#   7. dpkg --purge: data, conffile and the CA (file and system bundle) gone
#   8. leaves the machine as it was (trap), and checks it did
#
# Refuses to run when FLM is already installed here or its paths exist. Options:
#   --dist DIR     use the packages already built in DIR (flm_<v>_amd64.deb and
#                  flm_<v>+test1_amd64.deb) instead of building them
#   --profile dev  package the debug binaries `cargo test` built instead of a release
#                  build (scripts/test.sh does this to stay within CI's time; the
#                  packaging is the same, only the binaries are unoptimised)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

pass=0
fail=0
log() { echo "[test-package] $*" >&2; }
ok() { echo "[test-package] ok: $*" >&2; pass=$((pass + 1)); }
bad() { echo "[test-package] FAIL: $*" >&2; fail=$((fail + 1)); }
die() { echo "[test-package] error: $*" >&2; exit 1; }
check() { # check "what" command…
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

dist=""
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) dist=${2:?--dist needs a directory}; shift ;;
    --profile) profile=${2:?--profile needs a name}; shift ;;
    *) die "unknown option $1" ;;
  esac
  shift
done

[ "$(id -u)" = 0 ] || die "run as root (dpkg -i, a system user, the trust store)"
if dpkg-query -W -f='${Status}' flm 2>/dev/null | grep -q 'installed\|config-files'; then
  die "the flm package is installed on this machine; this test would remove it"
fi
CA_ANCHOR=/usr/local/share/ca-certificates/flm-ca.crt
for p in /var/lib/flm /etc/default/flm "$CA_ANCHOR" /usr/bin/flm; do
  [ ! -e "$p" ] || die "$p exists; this test would change it"
done
user_existed=0
getent passwd flm >/dev/null && user_existed=1
bundle_before=$(sha256sum /etc/ssl/certs/ca-certificates.crt 2>/dev/null | cut -d' ' -f1 || true)

for tool in dpkg-deb systemd-analyze setpriv curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
if [ -z "${FLM_LLAMA_SERVER:-}" ] || [ -z "${FLM_TINY_MODELS:-}" ]; then
  eval "$(scripts/setup-llama-server.sh --print-env)"
fi

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if dpkg-query -W -f='${Status}' flm 2>/dev/null | grep -q 'installed\|config-files'; then
    dpkg --purge flm >/dev/null 2>&1 || true
  fi
  rm -rf /var/lib/flm /etc/default/flm
  if [ -e "$CA_ANCHOR" ]; then
    rm -f "$CA_ANCHOR"
    update-ca-certificates >/dev/null 2>&1 || true
  fi
  if [ "$user_existed" = 0 ] && getent passwd flm >/dev/null; then
    userdel flm 2>/dev/null || true
    getent group flm >/dev/null && groupdel flm 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# 1. Build (or take) the packages; sign them with a throwaway key.
if [ -z "$dist" ]; then
  dist=$tmp/dist
  build=()
  if [ "$profile" = dev ] && [ -x target/debug/flm ] && [ -x target/debug/flm-proxy ]; then
    build=(--skip-build)
  fi
  t0=$(date +%s)
  scripts/package.sh --profile "$profile" "${build[@]}" --out "$dist" --lint >/dev/null
  t1=$(date +%s)
  scripts/package.sh --profile "$profile" --skip-build --version-suffix +test1 --out "$dist" >/dev/null
  t2=$(date +%s)
  log "package.sh ($profile): $((t1 - t0)) s (build, .deb, lintian); the +test1 build: $((t2 - t1)) s"
  ok "lintian reports no error"
fi
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
deb1=$dist/flm_${version}_amd64.deb
deb2=$dist/flm_${version}+test1_amd64.deb
[ -f "$deb1" ] && [ -f "$deb2" ] || die "missing $deb1 or $deb2"
log "$(basename "$deb1"): $(stat -c %s "$deb1") bytes, installed size $(dpkg-deb -f "$deb1" Installed-Size) KiB"
check "release signing (throwaway key): sign, verify, tampered files refused" \
  scripts/test-release-signing.sh "$dist"

# 2. Install.
t0=$(date +%s%N)
dpkg -i "$deb1" >"$tmp/dpkg-install.log" 2>&1 || { cat "$tmp/dpkg-install.log" >&2; die "dpkg -i failed"; }
t1=$(date +%s%N)
log "dpkg -i: $(((t1 - t0) / 1000000)) ms"
check "dpkg -i installs flm $version" \
  test "$(dpkg-query -W -f='${Status} ${Version}' flm)" = "install ok installed $version"

v=$(flm --version)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
version_ok() {
  local re="^flm ${version//./\\.} \\(commit $commit(: [^,]*)?, built [0-9]{4}-[0-9]{2}-[0-9]{2}\\)\$"
  [[ $v =~ $re ]]
}
check "flm --version names $version, commit $commit and a date ($v)" version_ok
check "flm-proxy is next to flm" test -x /usr/bin/flm-proxy
for f in /usr/share/man/man1/flm.1.gz /usr/share/man/man1/flm-proxy-start.1.gz \
  /usr/share/man/man1/flm-service-install.1.gz /usr/share/bash-completion/completions/flm \
  /usr/share/zsh/vendor-completions/_flm /usr/share/fish/vendor_completions.d/flm.fish \
  /usr/lib/systemd/user/flm.service /usr/lib/systemd/system/flm.service \
  /usr/share/doc/flm/copyright /usr/share/doc/flm/changelog.gz /etc/default/flm; do
  check "installed: $f" test -s "$f"
done
check "the bash completion completes subcommands" bash -c \
  'source /usr/share/bash-completion/completions/flm && COMP_WORDS=(flm serv) COMP_CWORD=1 && _flm flm serv flm && [[ " ${COMPREPLY[*]} " == *" service "* ]]'
check "system user flm (no login shell, home /var/lib/flm)" bash -c \
  '[ "$(getent passwd flm | cut -d: -f6,7)" = "/var/lib/flm:/usr/sbin/nologin" ]'
check "/var/lib/flm is flm's, mode 700" test "$(stat -c '%U:%G %a' /var/lib/flm)" = "flm:flm 700"

for unit in /usr/lib/systemd/system/flm.service; do
  out=$(systemd-analyze verify "$unit" 2>&1) || true
  check "systemd-analyze verify $unit is clean${out:+: $out}" test -z "$out"
done
mkdir -m 700 "$tmp/xdg"
out=$(XDG_RUNTIME_DIR=$tmp/xdg systemd-analyze --user verify /usr/lib/systemd/user/flm.service 2>&1) || true
check "systemd-analyze --user verify of the user unit is clean${out:+: $out}" test -z "$out"
exposure=$(systemd-analyze security --offline=true /usr/lib/systemd/system/flm.service 2>/dev/null \
  | sed -n 's/.*Overall exposure level for flm.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security: the system unit's exposure ($exposure) is below 2.0" \
  python3 -c "import sys; sys.exit(0 if 0 < float('${exposure:-99}') < 2.0 else 1)"

# 3. The system unit's ExecStart, as its user, with its environment.
unit=/usr/lib/systemd/system/flm.service
val() { sed -n "s/^$1=//p" "$unit"; }
llama_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# What an administrator does: the proxy's options in /etc/default/flm.
echo "FLM_PROXY_ARGS=\"--bind=127.0.0.1 --port=$port\"" >>/etc/default/flm

"$FLM_LLAMA_SERVER" -m "$FLM_TINY_MODELS/tiny-llama.gguf" -a tiny-llama --host 127.0.0.1 \
  --port "$llama_port" -c 256 -t 1 >"$tmp/llama.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$llama_port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$llama_port/health" >/dev/null || die "llama-server did not start"

# Runs a command the way systemd runs the unit's ExecStart: User=/Group=, a clean
# environment with Environment= then EnvironmentFile=, umask from UMask=, cwd /.
as_unit() {
  local user group umask_v
  user=$(val User)
  group=$(val Group)
  umask_v=$(val UMask)
  local envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" LOGNAME="$user" SHELL=/usr/sbin/nologin)
  while IFS= read -r e; do envs+=("$e"); done < <(val Environment)
  local efile
  efile=$(val EnvironmentFile)
  efile=${efile#-}
  if [ -f "$efile" ]; then
    while IFS= read -r line; do
      case "$line" in ''|'#'*) continue ;; esac
      local k=${line%%=*} v=${line#*=}
      v=${v#\"}; v=${v%\"}
      envs+=("$k=$v")
    done <"$efile"
  fi
  setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs env -i "${envs[@]}" \
    /bin/sh -c 'cd / && umask "$0" && exec "$@"' "$umask_v" "$@"
}
exec_start=$(val ExecStart)
check "ExecStart runs flm proxy start --no-daemon ($exec_start)" \
  test "$exec_start" = '/usr/bin/flm proxy start --no-daemon --format json $FLM_PROXY_ARGS'

as_unit /usr/bin/flm engines add --kind llamacpp --url "http://127.0.0.1:$llama_port" --id pkgtest-llama \
  >"$tmp/engines-add.json"
check "flm engines add as the unit's user" grep -q '"id":"pkgtest-llama"' "$tmp/engines-add.json"

# The ExecStart line, $FLM_PROXY_ARGS split on whitespace like systemd does.
start_unit() {
  local out=$1
  # shellcheck disable=SC2016
  as_unit /bin/sh -c 'exec /usr/bin/flm proxy start --no-daemon --format json $FLM_PROXY_ARGS' \
    >"$out.stdout" 2>"$out.stderr" &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q '^listening on ' "$out.stderr" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$out.stderr" >&2
  return 1
}
stop_unit() { # SIGTERM to the main process, as `systemctl stop` sends
  local job=${pids[-1]} rc=0
  pkill -TERM -u flm -x flm
  wait "$job" || rc=$?
  unset 'pids[-1]'
  return "$rc"
}
start_unit "$tmp/run1" || die "the unit's ExecStart did not start listening"
check "the proxy runs as flm" pgrep -u flm -x flm >/dev/null
key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["api_key"]["key"])' "$tmp/run1.stdout")
check "the first start prints an API key once (journal)" test -n "$key"
base=http://127.0.0.1:$port
check "/health answers 200" curl -fsS -o /dev/null "$base/health"
curl -fsS "$base/v1/models" -H "Authorization: Bearer $key" >"$tmp/models.json"
model=$(python3 -c 'import json,sys; ids=[m["id"] for m in json.load(open(sys.argv[1]))["data"] if m["id"].startswith("flm://pkgtest-llama/")]; print(ids[0] if ids else "")' "$tmp/models.json")
check "/v1/models lists the llama-server model ($model)" test -n "$model"
chat() {
  curl -fsS "$base/v1/chat/completions" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":8}" \
    >"$tmp/chat.json" && python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["choices"][0]; sys.exit(0 if c["message"]["role"]=="assistant" and c["finish_reason"] else 1)' "$tmp/chat.json"
}
check "a chat through the packaged proxy to the real llama-server" chat
check "an unknown key is refused" test "$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models" -H 'Authorization: Bearer flm_nope_nope')" = 401
check "SIGTERM stops it cleanly (exit 0)" stop_unit
check "its data is in /var/lib/flm, owned by flm, private" bash -c \
  '[ "$(stat -c "%U %a" /var/lib/flm/security.db)" = "flm 600" ] && [ -z "$(find /var/lib/flm ! -user flm)" ]'

# 4. FLM's CA into the trust store, the way the docs say for the system service.
as_unit /usr/bin/flm security install-ca --dry-run >/dev/null
FLM_HOME=$tmp/root-data /usr/bin/flm --format json security install-ca \
  --cert-path /var/lib/flm/certs/flm-ca.crt >"$tmp/ca.json"
ca_body=$(sed -n '/BEGIN CERT/,/END CERT/p' /var/lib/flm/certs/flm-ca.crt | sed '1d;$d' | tr -d '\n')
in_bundle() { tr -d '\n' </etc/ssl/certs/ca-certificates.crt | grep -qF "$ca_body"; }
check "flm security install-ca put FLM's CA in the trust store" test -f "$CA_ANCHOR"
check "update-ca-certificates added it to the system bundle" in_bundle


# The maintainer scripts with a running systemd. systemd cannot run here (PID 1 is not
# systemd), so dpkg runs in a private mount namespace where /run/systemd/system exists
# (what the scripts test) and `systemctl` is a stand-in on PATH that answers like
# systemd 252 with one logged-in user (UID 1000) whose flm.service is enabled and
# active, and records every call. deb-systemd-helper and deb-systemd-invoke are the
# real ones. Nothing outside the namespace sees the directory.
mkdir -p "$tmp/stub"
cat >"$tmp/stub/systemctl" <<'STUB'
#!/bin/sh
echo "$*" >>"$SYSTEMCTL_LOG"
case "$*" in
  *--version*) echo "systemd 252 (252.39-1~deb12u2)" ;;
  *list-units*) echo "user@1000.service loaded active running User Manager for UID 1000" ;;
  *is-enabled*) echo enabled ;;
  *is-active*) echo active ;;
esac
exit 0
STUB
chmod 755 "$tmp/stub/systemctl"
with_systemd() { # with_systemd LOG command…
  local logf=$1
  shift
  : >"$logf"
  # A container's /usr/sbin/policy-rc.d (Docker's says "exit 101": never touch services)
  # is hidden too, as on an ordinary Debian machine.
  SYSTEMCTL_LOG=$logf PATH="$tmp/stub:$PATH" unshare --mount --propagation private \
    sh -c 'mount -t tmpfs flm-test /run/systemd && mkdir /run/systemd/system &&
      if [ -e /usr/sbin/policy-rc.d ]; then mount --bind /dev/null /usr/sbin/policy-rc.d; fi &&
      exec "$@"' sh "$@"
}

# `flm service` (the user unit for binaries installed without the package) with a
# running systemd: the systemctl --user calls it makes.
svc_home=$tmp/svc-home
mkdir -p "$svc_home"
svc() { HOME=$svc_home with_systemd "$tmp/sd-service.log" /usr/bin/flm --format json service "$@"; }
svc install --port "$port" >"$tmp/svc-install.json"
check "flm service install with systemd: daemon-reload, enable, restart" \
  test "$(tr '\n' '|' <"$tmp/sd-service.log")" = "--user daemon-reload|--user enable flm.service|--user restart flm.service|"
check "flm service install wrote the user unit" grep -q "^ExecStart=/usr/bin/flm proxy start --no-daemon --format json --port $port$" \
  "$svc_home/.config/systemd/user/flm.service"
svc status >"$tmp/svc-status.json"
check "flm service status with systemd: enabled and active from systemctl --user" \
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; sys.exit(0 if (d["enabled"], d["active"], d["systemd_running"]) == ("enabled", "active", True) else 1)' \
  "$tmp/svc-status.json"
svc uninstall >"$tmp/svc-uninstall.json"
check "flm service uninstall with systemd: disable --now, then daemon-reload" \
  test "$(tr '\n' '|' <"$tmp/sd-service.log")" = "--user disable --now flm.service|--user daemon-reload|"
check "flm service uninstall removed the unit" test ! -e "$svc_home/.config/systemd/user/flm.service"

# 5. Upgrade to a newer build of the same version.
dpkg -i "$deb2" >"$tmp/dpkg-upgrade.log" 2>&1 || { cat "$tmp/dpkg-upgrade.log" >&2; die "upgrade failed"; }
check "upgraded to $version+test1" \
  test "$(dpkg-query -W -f='${Version}' flm)" = "$version+test1"
check "the upgrade kept the edited /etc/default/flm" grep -q -- "--port=$port" /etc/default/flm
check "the upgrade kept /var/lib/flm" test -f /var/lib/flm/security.db
start_unit "$tmp/run2" || die "the upgraded unit did not start"
check "after the upgrade no new key is created" bash -c "! grep -q api_key '$tmp/run2.stdout'"
check "after the upgrade the same API key works" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models" -H "Authorization: Bearer $key")" = 200
check "after the upgrade the chat still works" chat
check "SIGTERM stops the upgraded proxy cleanly" stop_unit

# 5b. The same upgrade with a running systemd: the services are restarted.
with_systemd "$tmp/sd-upgrade.log" dpkg -i "$deb2" >"$tmp/dpkg-sd-upgrade.log" 2>&1 \
  || { cat "$tmp/dpkg-sd-upgrade.log" >&2; die "upgrade with systemd failed"; }
check "upgrade with systemd: daemon-reload" grep -qx -- '--system daemon-reload' "$tmp/sd-upgrade.log"
check "upgrade with systemd: the system service is restarted if it runs" \
  grep -qx -- 'try-restart flm.service' "$tmp/sd-upgrade.log"
check "upgrade with systemd: the user service of logged-in users is restarted" \
  grep -qx -- '--quiet --user --machine 1000@ restart flm.service' "$tmp/sd-upgrade.log"
check "upgrade with systemd: nothing is stopped, enabled or started otherwise" \
  bash -c "! grep -E '(^| )(stop|enable|start|disable) ' '$tmp/sd-upgrade.log'"
check "upgrade with systemd: data kept" test -f /var/lib/flm/security.db

# 6. Remove: binaries gone, data kept.
dpkg -r flm >"$tmp/dpkg-remove.log" 2>&1 || { cat "$tmp/dpkg-remove.log" >&2; die "dpkg -r failed"; }
check "dpkg -r removes /usr/bin/flm" test ! -e /usr/bin/flm
check "dpkg -r removes the units" test ! -e /usr/lib/systemd/system/flm.service
check "dpkg -r keeps /var/lib/flm" test -f /var/lib/flm/security.db
check "dpkg -r keeps /etc/default/flm" test -f /etc/default/flm
check "dpkg -r keeps the CA" test -f "$CA_ANCHOR"
check "dpkg -r (no systemd) calls no systemctl" bash -c "! grep -q systemctl '$tmp/dpkg-remove.log'"

# 6b. Reinstall (without systemd), then remove with a running systemd: both services
# are stopped first.
dpkg -i "$deb2" >"$tmp/dpkg-reinstall.log" 2>&1 || { cat "$tmp/dpkg-reinstall.log" >&2; die "reinstall failed"; }
check "a reinstall after remove finds the kept data" test -f /var/lib/flm/security.db
with_systemd "$tmp/sd-remove.log" dpkg -r flm >"$tmp/dpkg-sd-remove.log" 2>&1 \
  || { cat "$tmp/dpkg-sd-remove.log" >&2; die "remove with systemd failed"; }
check "remove with systemd: the system service is stopped" grep -qx -- 'stop flm.service' "$tmp/sd-remove.log"
check "remove with systemd: every user's service is stopped" \
  grep -qx -- '--quiet --user --machine 1000@ stop flm.service' "$tmp/sd-remove.log"
check "remove with systemd: daemon-reload after the services are stopped" \
  awk '$0 == "stop flm.service" { s = NR } $0 == "--system daemon-reload" && s { r = NR } END { exit !(s && r > s) }' \
  "$tmp/sd-remove.log"
check "remove with systemd: data kept" test -f /var/lib/flm/security.db
[ "$fail" = 0 ] || { echo "systemctl calls on remove:" >&2; cat "$tmp/sd-remove.log" >&2; }

# 7. Purge: data and CA gone.
dpkg --purge flm >"$tmp/dpkg-purge.log" 2>&1 || { cat "$tmp/dpkg-purge.log" >&2; die "dpkg --purge failed"; }
check "purge says it removed the CA" grep -q "removed FLM's local root CA" "$tmp/dpkg-purge.log"
check "purge deletes /var/lib/flm" test ! -e /var/lib/flm
check "purge deletes /etc/default/flm" test ! -e /etc/default/flm
check "purge removes the CA file" test ! -e "$CA_ANCHOR"
check "purge removes the CA from the system bundle" bash -c "! tr -d '\n' </etc/ssl/certs/ca-certificates.crt | grep -qF '$ca_body'"
check "nothing of the package is left in dpkg's database" \
  bash -c '! dpkg-query -W flm >/dev/null 2>&1 || [ -z "$(dpkg-query -W -f="\${Status}" flm | grep -v not-installed)" ]'

# 8. The machine as it was (the trap removes the system user the package created).
trap - EXIT INT TERM
cleanup_rc=0
(cleanup) || cleanup_rc=$?
[ "$cleanup_rc" = 0 ] || bad "cleanup failed"
if [ "$user_existed" = 0 ]; then
  check "the flm user is gone again" bash -c '! getent passwd flm >/dev/null'
fi
check "the CA bundle is as before" \
  test "$(sha256sum /etc/ssl/certs/ca-certificates.crt 2>/dev/null | cut -d' ' -f1 || true)" = "$bundle_before"
check "no flm process left" bash -c '! pgrep -u flm >/dev/null 2>&1 && ! pgrep -f "^/usr/bin/flm " >/dev/null'

echo "package: $pass passed, $fail failed" >&2
[ "$fail" = 0 ]
