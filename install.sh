#!/bin/sh
# berth installer. Served by a berth control plane with its URL filled in, or by a static release host
# (`npm run build` makes one: scripts/release-host.mjs) with the host's URL and the publisher's key filled in:
#
#   curl -fsSL https://CP/install.sh | BERTH_JOIN_TOKEN=TOKEN sudo --preserve-env=BERTH_JOIN_TOKEN sh -s -- [--name NAME]
#   curl -fsSL https://CP/install.sh | sudo sh -s -- --all-in-one      # control plane + agent on this machine
#   curl -fsSL https://RELEASES/install.sh | sudo sh -s -- --all-in-one  # the same from a static release host
#   curl -fsSL https://RELEASES/install.sh | BERTH_JOIN_TOKEN=TOKEN sudo --preserve-env=BERTH_JOIN_TOKEN sh -s -- --url https://CP --name NAME
#   curl -fsSL https://CP/install.sh | sudo sh -s -- --uninstall [--purge]
#   sudo berth upgrade [--version V]        # runs this script with --upgrade (see docs/install.md)
#
# Idempotent: re-running it finishes an interrupted install and changes nothing on a complete one.
# Upgrades (a re-run that brings a different release, or --upgrade): `current` is switched atomically,
# the daemons are restarted and must come back with the new version and connect to the control plane
# within BERTH_UPGRADE_TIMEOUT_S seconds (60); if not, `current` is switched back and the previous release
# restarted. App containers and nginx are not touched either way: apps keep serving throughout.
# Layout: /opt/berth/releases/VERSION (unpacked release), /opt/berth/current -> releases/VERSION,
# /opt/berth/bin/node, /usr/local/bin/berth, /etc/berth/*.env (settings), /var/lib/berth (data),
# units in /etc/systemd/system, or without systemd as PID 1 a background agent with /run/berth/agent.pid.
# Releases are signed by the control plane's Ed25519 key (baked in below when it serves this script),
# or by the publisher's key on a release host (baked in by scripts/release-host.mjs); the key is pinned in
# /etc/berth/release.pub at the first install and every release is checked before anything is unpacked.
# The join token comes from BERTH_JOIN_TOKEN (or --token) and reaches `berth agent join` through its
# environment, never its command line. See docs/install.md.
set -eu

BERTH_URL_BAKED=''
BERTH_RELEASE_URL_BAKED=''
BERTH_RELEASE_KEY_BAKED=''

PREFIX="${BERTH_PREFIX:-/opt/berth}"
ETC="${BERTH_ETC:-/etc/berth}"
BIN_LINK="${BERTH_BIN_LINK:-/usr/local/bin/berth}"
UNIT_DIR="${BERTH_UNIT_DIR:-/etc/systemd/system}"
RUN_DIR="${BERTH_RUN_DIR:-/run/berth}"
LOG_DIR="${BERTH_LOG_DIR:-/var/log/berth}"
MIN_DISK_MB=1024
WARN_DISK_MB=5120
START_TIMEOUT="${BERTH_UPGRADE_TIMEOUT_S:-60}"

URL=""
RELEASE_URL=""
# The join token from the environment (out of `ps`); not passed on to anything this script starts.
TOKEN="${BERTH_JOIN_TOKEN:-}"
unset BERTH_JOIN_TOKEN
NAME=""
MODE=install
ALL_IN_ONE=0
PURGE=0
WANT_VERSION=""
ROLLBACK_NOTE=""
PREVIOUS=""
CHANGED=0
CP_LISTEN="0.0.0.0:8080"
CP_PUBLIC_URL=""
CP_DOMAIN=""

STEP="start"
HINT=""
say() { printf '%s\n' "berth: $*"; }
warn() { printf '%s\n' "berth: warning: $*" >&2; }
step() { STEP="$1"; HINT=""; printf '%s\n' "==> $1: $2"; }
# die MESSAGE [HINT]: fail the current step with a clear message and how to retry.
die() {
  printf '%s\n' "berth: step \"$STEP\" failed: $1" >&2
  [ $# -lt 2 ] || HINT="$2"
  exit 1
}
on_exit() {
  code=$?
  trap - EXIT
  if [ "$code" -ne 0 ]; then
    [ -z "$HINT" ] || printf '%s\n' "berth: $HINT" >&2
    if [ -n "$ROLLBACK_NOTE" ]; then
      printf '%s\n' "berth: $ROLLBACK_NOTE" >&2
    else
      printf '%s\n' "berth: the install stopped at step \"$STEP\"; nothing running was changed by the failed step. Fix the cause above and re-run the same command: the installer continues where it stopped." >&2
    fi
  fi
  [ -z "${TMP:-}" ] || rm -rf "$TMP"
  exit "$code"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

usage() {
  cat <<EOF
usage: BERTH_JOIN_TOKEN=TOKEN install.sh [--name NAME] [--url CONTROL_PLANE_URL] [--release-url RELEASE_HOST] [--version V]
       install.sh --token JOIN_TOKEN [--name NAME] ...   (the token then shows in \`ps\` while this runs)
       install.sh --all-in-one [--domain NAME] [--listen HOST:PORT] [--public-url URL] [--name NAME] [--release-url RELEASE_HOST] [--version V]
       install.sh --upgrade [--url CONTROL_PLANE_URL] [--version V]    (what \`berth upgrade\` runs)
       install.sh --uninstall [--purge]
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --token) [ $# -ge 2 ] || { usage >&2; exit 2; }; TOKEN="$2"; shift 2 ;;
    --token=*) TOKEN="${1#*=}"; shift ;;
    --name) [ $# -ge 2 ] || { usage >&2; exit 2; }; NAME="$2"; shift 2 ;;
    --name=*) NAME="${1#*=}"; shift ;;
    --url) [ $# -ge 2 ] || { usage >&2; exit 2; }; URL="$2"; shift 2 ;;
    --url=*) URL="${1#*=}"; shift ;;
    --release-url) [ $# -ge 2 ] || { usage >&2; exit 2; }; RELEASE_URL="$2"; shift 2 ;;
    --release-url=*) RELEASE_URL="${1#*=}"; shift ;;
    --all-in-one) ALL_IN_ONE=1; shift ;;
    --listen) [ $# -ge 2 ] || { usage >&2; exit 2; }; CP_LISTEN="$2"; shift 2 ;;
    --public-url) [ $# -ge 2 ] || { usage >&2; exit 2; }; CP_PUBLIC_URL="$2"; shift 2 ;;
    --domain) [ $# -ge 2 ] || { usage >&2; exit 2; }; CP_DOMAIN="$2"; shift 2 ;;
    --version) [ $# -ge 2 ] || { usage >&2; exit 2; }; WANT_VERSION="$2"; shift 2 ;;
    --version=*) WANT_VERSION="${1#*=}"; shift ;;
    --upgrade) MODE=upgrade; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; printf '%s\n' "berth: unknown option \"$1\"" >&2; exit 2 ;;
  esac
done
[ -n "$URL" ] || URL="${BERTH_INSTALL_URL:-$BERTH_URL_BAKED}"
URL=$(printf '%s' "$URL" | sed 's:/*$::')
# Where the release comes from: a static release host (--release-url, or the one baked into a script it
# served), else the control plane (URL) itself, as when a control plane serves this script.
[ -n "$RELEASE_URL" ] || RELEASE_URL="$BERTH_RELEASE_URL_BAKED"
RELEASE_URL=$(printf '%s' "$RELEASE_URL" | sed 's:/*$::')
case "$RELEASE_URL" in ''|http://*|https://*) ;; *) printf '%s\n' "berth: invalid --release-url \"$RELEASE_URL\" (http:// or https://)" >&2; exit 2 ;; esac
if [ "$PURGE" = 1 ] && [ "$MODE" != uninstall ]; then usage >&2; exit 2; fi
case "$WANT_VERSION" in *[!0-9A-Za-z.+_-]*) printf '%s\n' "berth: invalid --version \"$WANT_VERSION\"" >&2; exit 2 ;; esac
case "$START_TIMEOUT" in ''|*[!0-9]*) printf '%s\n' "berth: BERTH_UPGRADE_TIMEOUT_S must be a number of seconds" >&2; exit 2 ;; esac

have() { command -v "$1" >/dev/null 2>&1; }
systemd_running() { [ -d /run/systemd/system ] && have systemctl; }

# agent_setting KEY DEFAULT: KEY's value in agent.env (the last one, surrounding quotes removed), else DEFAULT.
agent_setting() {
  v=""
  [ ! -r "$ETC/agent.env" ] || v=$(sed -n "s/^$1=//p" "$ETC/agent.env" | tail -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/")
  printf '%s' "${v:-$2}"
}
# The agent's data dir as the settings say (default /var/lib/berth).
data_dir() { agent_setting BERTH_DATA /var/lib/berth; }
AGENT_DROPIN_DIR="$UNIT_DIR/berth-agent.service.d"
AGENT_DROPIN="$AGENT_DROPIN_DIR/50-berth-paths.conf"

# ---------------------------------------------------------------- background daemons (no systemd)
# A process that exited but was not reaped (a container whose PID 1 does not wait) is a zombie: not running.
proc_running() { kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
pid_alive() { [ -f "$1" ] && p=$(cat "$1" 2>/dev/null) && [ -n "$p" ] && proc_running "$p"; }
stop_pidfile() {
  pid_alive "$1" || { rm -f "$1"; return 0; }
  p=$(cat "$1")
  kill "$p" 2>/dev/null || true
  i=0
  while proc_running "$p"; do
    i=$((i + 1))
    [ "$i" -lt 150 ] || { kill -9 "$p" 2>/dev/null || true; break; }
    sleep 0.1
  done
  rm -f "$1"
}
# start_background NAME ENVFILE ARGS...: run `berth ARGS` detached, log to LOG_DIR/NAME.log, pid in RUN_DIR/NAME.pid.
start_background() {
  name="$1"; envfile="$2"; shift 2
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  (
    set -a
    # shellcheck disable=SC1090
    [ ! -r "$envfile" ] || . "$envfile"
    set +a
    BERTH_LOG_FORMAT=json
    export BERTH_LOG_FORMAT
    exec setsid "$PREFIX/bin/node" "$PREFIX/current/dist/cli/main.js" "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1
  ) &
  echo $! >"$RUN_DIR/$name.pid"
}

# ---------------------------------------------------------------- uninstall
if [ "$MODE" = uninstall ]; then
  step "check" "uninstalling berth"
  [ "$(id -u)" = 0 ] || die "the uninstaller must run as root" "run it with sudo"
  DATA=$(data_dir)
  step "stop" "stopping berth's daemons (app containers and nginx keep running)"
  for unit in berth-agent berth-control-plane; do
    if systemd_running && [ -f "$UNIT_DIR/$unit.service" ]; then
      systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT_DIR/$unit.service"
  done
  # The installer's drop-in (the directory too when nothing of yours is left in it).
  rm -f "$AGENT_DROPIN"
  rmdir "$AGENT_DROPIN_DIR" 2>/dev/null || true
  ! systemd_running || systemctl daemon-reload || true
  stop_pidfile "$RUN_DIR/agent.pid"
  stop_pidfile "$RUN_DIR/control-plane.pid"
  step "remove" "removing berth's files"
  rm -rf "$PREFIX" "$ETC" "$RUN_DIR"
  rm -f "$BIN_LINK"
  if [ "$PURGE" = 1 ]; then
    step "purge" "removing berth's data, containers and nginx sites"
    if curl -fsS --max-time 5 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; then
      ids=$(curl -fsS --unix-socket /var/run/docker.sock 'http://localhost/containers/json?all=1&filters=%7B%22label%22%3A%5B%22berth.managed%3Dtrue%22%5D%7D' |
        tr ',' '\n' | sed -n 's/^\[*{*"Id":"\([0-9a-f]*\)"$/\1/p')
      for id in $ids; do
        curl -fsS -X DELETE --unix-socket /var/run/docker.sock "http://localhost/containers/$id?force=1" >/dev/null || warn "could not remove container $id"
      done
    else
      warn "Docker does not answer on /var/run/docker.sock: berth's containers (label berth.managed=true) were left"
    fi
    if ls /etc/nginx/conf.d/berth-*.conf >/dev/null 2>&1; then
      rm -f /etc/nginx/conf.d/berth-*.conf
      ! have nginx || nginx -s reload >/dev/null 2>&1 || true
    fi
    rm -rf "$DATA" /var/lib/berth-static "$LOG_DIR"
    say "purged: data in $DATA, static sites, logs and berth's containers are gone."
  else
    say "uninstalled. Apps keep running; data is kept in $DATA (remove it with --uninstall --purge)."
  fi
  exit 0
fi

# ---------------------------------------------------------------- 1. preflight
step "preflight" "checking this machine"
[ "$(id -u)" = 0 ] || die "the installer must run as root" "run it with sudo: curl -fsSL ${RELEASE_URL:-$URL}/install.sh | sudo sh -s -- ..."
OS_RELEASE="${BERTH_OS_RELEASE:-/etc/os-release}"
[ -r "$OS_RELEASE" ] || die "cannot read $OS_RELEASE to identify the operating system" "berth supports Debian 12 and Ubuntu 22.04 / 24.04"
OS_ID=$(sed -n 's/^ID=//p' "$OS_RELEASE" | tr -d '"' | head -n 1)
OS_VERSION=$(sed -n 's/^VERSION_ID=//p' "$OS_RELEASE" | tr -d '"' | head -n 1)
case "$OS_ID:$OS_VERSION" in
  debian:12|ubuntu:22.04|ubuntu:24.04) ;;
  *)
    if [ "${BERTH_INSTALL_ANY_OS:-}" = 1 ]; then
      warn "unsupported operating system $OS_ID $OS_VERSION; continuing because BERTH_INSTALL_ANY_OS=1"
    else
      die "unsupported operating system: ${OS_ID:-unknown} ${OS_VERSION:-} (berth supports Debian 12 and Ubuntu 22.04 / 24.04)" \
        "install on a supported system, or set BERTH_INSTALL_ANY_OS=1 to try anyway at your own risk"
    fi ;;
esac
case "$(uname -m)" in
  x86_64|amd64) ARCH=x64 ;;
  aarch64|arm64) ARCH=arm64 ;;
  *) die "unsupported CPU architecture $(uname -m) (berth runs on x86_64 and aarch64)" ;;
esac
for tool in curl tar gzip sha256sum sed setsid; do
  have "$tool" || die "the command \"$tool\" is missing" "install it (apt-get install -y curl tar gzip coreutils sed util-linux) and re-run"
done
disk_dir="$PREFIX"
while [ ! -d "$disk_dir" ]; do disk_dir=$(dirname "$disk_dir"); done
FREE_MB=$(df -Pk "$disk_dir" | awk 'NR==2 {print int($4/1024)}')
[ "${FREE_MB:-0}" -ge "$MIN_DISK_MB" ] || die "only ${FREE_MB} MB free on the disk holding $PREFIX; berth needs at least $MIN_DISK_MB MB" "free some disk space"
[ "$FREE_MB" -ge "$WARN_DISK_MB" ] || warn "only ${FREE_MB} MB free: images and builds need space; 5 GB or more is recommended"
MEM_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo 2>/dev/null || echo 0)
if [ "${MEM_MB:-0}" -lt 1000 ]; then
  warn "this machine has ${MEM_MB} MB of memory; builds may run out below 1 GB. Consider adding swap: fallocate -l 2G /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile"
fi
say "$OS_ID $OS_VERSION, linux-$ARCH, ${FREE_MB} MB disk free, ${MEM_MB} MB memory"

# The enrolment's control plane URL and server name (empty before the join).
joined_field() {
  [ -f "$(data_dir)/agent.json" ] || return 0
  "$PREFIX/bin/node" -p "JSON.parse(require('fs').readFileSync(process.argv[1],'utf8')).$1" "$(data_dir)/agent.json" 2>/dev/null || true
}
if [ "$MODE" = upgrade ]; then
  [ -L "$PREFIX/current" ] && [ -x "$PREFIX/bin/node" ] && [ -f "$(data_dir)/agent.json" ] ||
    die "berth is not installed on this server (no $PREFIX/current or no enrolment in $(data_dir)/agent.json): nothing to upgrade" \
      "install it with the command \`berth server add NAME\` prints on your control plane"
  # An all-in-one install upgrades its control plane too.
  [ ! -f "$ETC/control-plane.env" ] || ALL_IN_ONE=1
  # Without --url (and outside a downloaded copy of this script): the control plane this server is enrolled with.
  [ -n "$URL" ] || URL=$(joined_field controlPlaneUrl | sed 's:/*$::')
fi
if [ "$ALL_IN_ONE" = 0 ] && [ -z "$URL" ]; then
  die "no control plane URL" "run the command \`berth server add NAME\` prints, or pass --url https://your-control-plane (or --all-in-one for a control plane on this machine)"
fi
if [ -n "$NAME" ]; then
  case "$NAME" in *[!a-z0-9-]*|-*|'') die "invalid server name \"$NAME\" (lowercase letters, digits and dashes)" ;; esac
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-install.XXXXXX")

# ---------------------------------------------------------------- release signatures
# openssl checks them (Ed25519 needs OpenSSL >= 1.1.1 for `pkeyutl -rawin`): installed before any download.
if ! have openssl; then
  have apt-get || die "the command \"openssl\" is missing (it checks the release's signature)" "install it (apt-get install -y openssl) and re-run"
  say "installing openssl from the distribution (it checks the release's signature)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssl; } >"$TMP/apt.log" 2>&1; then
    tail -n 15 "$TMP/apt.log" >&2
    die "apt-get could not install openssl" "check the package mirror (apt-get update) and re-run"
  fi
fi
openssl pkeyutl -help 2>&1 | grep -q -- -rawin || die "$(openssl version) cannot check Ed25519 signatures" "install OpenSSL 1.1.1 or newer and re-run"
# The keys a release must be signed with: the ones pinned in $RELEASE_PUB at the first install (one PEM
# block each; an all-in-one machine adds its own control plane's), else the one baked into this script.
RELEASE_PUB="$ETC/release.pub"
pem_of() { printf '%s\n' '-----BEGIN PUBLIC KEY-----' "$1" '-----END PUBLIC KEY-----'; }
mkdir "$TMP/keys"
# Whose key is baked in: the control plane's that served this script, or a release host's publisher's.
KEY_OWNER="the control plane's"
[ -z "$BERTH_RELEASE_URL_BAKED" ] || KEY_OWNER="the publisher's"
if [ -s "$RELEASE_PUB" ]; then
  awk -v d="$TMP/keys" '/-----BEGIN PUBLIC KEY-----/ { n++; f = d "/" n ".pem"; inb = 1 } inb { print > f } /-----END PUBLIC KEY-----/ { inb = 0; close(f) }' "$RELEASE_PUB"
  KEYS_FROM="the release key this server pinned at install ($RELEASE_PUB)"
elif [ -n "$BERTH_RELEASE_KEY_BAKED" ]; then
  pem_of "$BERTH_RELEASE_KEY_BAKED" >"$TMP/keys/1.pem"
  KEYS_FROM="$KEY_OWNER release key baked into this installer"
else
  die "this install.sh has no release key baked in, and $RELEASE_PUB does not exist" "download the installer from your control plane or release host (curl -fsSL https://HOST/install.sh | ...) rather than a copy"
fi
# signed STATEMENT BASE64_SIGNATURE: the statement (one line) is signed by a trusted key.
signed() {
  printf '%s\n' "$1" >"$TMP/signed.txt"
  printf '%s' "$2" | base64 -d >"$TMP/signed.sig" 2>/dev/null || return 1
  for key in "$TMP/keys/"*.pem; do
    [ -f "$key" ] || continue
    ! openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$TMP/signed.txt" -sigfile "$TMP/signed.sig" >/dev/null 2>&1 || return 0
  done
  return 1
}
# A manifest field that is base64 (signatures).
mf64() { sed -n "s/^$1=//p" "$TMP/manifest" | head -n 1 | tr -cd 'A-Za-z0-9+/='; }

# ---------------------------------------------------------------- 2. the release's manifest
# key=value lines (berth_version, berth_file, berth_sha256, berth_node_*, berth_signature, node_*): a
# control plane serves them at /install/manifest; a static release host has one file per release
# (berth-VERSION-linux-ARCH.manifest, the same lines) and latest.json naming its newest version.
if [ -n "$RELEASE_URL" ]; then
  SOURCE="$RELEASE_URL"
  SOURCE_KIND="release host"
  SOURCE_KEY_URL="$RELEASE_URL/release.pub"
  RELEASE_FILES_URL="$RELEASE_URL"
  step "release host" "contacting $RELEASE_URL"
  want="$WANT_VERSION"
  if [ -z "$want" ]; then
    err=$(curl -fsS --max-time 30 -o "$TMP/latest.json" "$RELEASE_URL/latest.json" 2>&1) ||
      die "cannot fetch $RELEASE_URL/latest.json: ${err#curl: }" "check the release host URL (--release-url) and that this server can reach it"
    want=$(sed -n 's/^ *"version": *"\([0-9A-Za-z.+_-]*\)".*/\1/p' "$TMP/latest.json" | head -n 1)
    [ -n "$want" ] || die "$RELEASE_URL/latest.json names no version (is $RELEASE_URL a berth release host?)"
  fi
  err=$(curl -fsS --max-time 30 -o "$TMP/manifest" "$RELEASE_URL/berth-$want-linux-$ARCH.manifest" 2>&1) ||
    die "the release host has no berth $want for linux-$ARCH: ${err#curl: }" "see $RELEASE_URL/latest.json for the versions it has, or pass another --version"
else
  SOURCE="$URL"
  SOURCE_KIND="control plane"
  SOURCE_KEY_URL="$URL/install/release.pub"
  RELEASE_FILES_URL="$URL/install/releases"
  step "control plane" "contacting ${URL:-(none)}"
  [ -n "$URL" ] || die "--all-in-one needs a URL to download the release from" "run it as: curl -fsSL https://HOST/install.sh | sudo sh -s -- --all-in-one (HOST: a berth release host or control plane), or pass --release-url"
  if ! err=$(curl -fsS --max-time 15 -o /dev/null "$URL/healthz" 2>&1); then
    die "cannot reach the control plane at $URL: ${err#curl: }" \
      "check the URL and that this server can reach it (DNS, firewall, the control plane running)"
  fi
  MANIFEST_URL="$URL/install/manifest?arch=$ARCH"
  [ -z "$WANT_VERSION" ] || MANIFEST_URL="$MANIFEST_URL&version=$WANT_VERSION"
  code=0
  curl -fsS --max-time 30 -o "$TMP/manifest" "$MANIFEST_URL" 2>"$TMP/err" || code=$?
  if [ "$code" -ne 0 ]; then
    msg=$(curl -sS --max-time 30 "$MANIFEST_URL" 2>/dev/null | sed -n 's/^error=//p' | head -n 1)
    die "the control plane has no ${WANT_VERSION:+matching }release for this server: ${msg:-$(cat "$TMP/err")}" "build one on the control plane with \`npm run build\` (or place a release tarball in its --release-dir)"
  fi
fi
mf() { sed -n "s/^$1=//p" "$TMP/manifest" | head -n 1 | tr -cd '0-9A-Za-z.+_-'; }
VERSION=$(mf berth_version)
FILE=$(mf berth_file)
SHA=$(mf berth_sha256)
NEED_ABI=$(mf berth_node_abi)
NEED_NODE=$(mf berth_node_version)
[ -n "$VERSION" ] && [ -n "$FILE" ] && [ -n "$SHA" ] && [ -n "$NEED_ABI" ] || die "the install manifest from $SOURCE is incomplete (is it a berth control plane or release host?)"
# Before anything is downloaded or unpacked: the release (file, checksum, version, ABI) is one the
# control plane (or the release's publisher) signed; the tarball is then checked against this checksum.
SIG=$(mf64 berth_signature)
[ -n "$SIG" ] || die "$SOURCE does not sign its releases (a berth control plane older than this installer?): refusing berth $VERSION"
signed "berth-release-v1 $FILE $SHA $VERSION $NEED_ABI" "$SIG" ||
  die "berth $VERSION from $SOURCE is not signed by $KEYS_FROM: refusing to install it; nothing was unpacked or changed" \
    "its manifest or tarball was altered on the way, or $KEY_OWNER release key changed. If you moved to a new $SOURCE_KIND on purpose, compare its key ($SOURCE_KEY_URL) out of band, put it in $RELEASE_PUB and re-run"
say "release signature checked ($KEYS_FROM)"
say "release $VERSION for linux-$ARCH (Node.js ABI $NEED_ABI)"
INSTALLED=$(readlink "$PREFIX/current" 2>/dev/null | sed -n 's:^releases/::p')
if [ "$MODE" = upgrade ]; then
  if [ "$VERSION" = "$INSTALLED" ]; then
    say "berth $VERSION is already the current release; making sure it runs"
  elif [ -z "$WANT_VERSION" ] && [ "$(printf '%s\n%s\n' "$VERSION" "$INSTALLED" | sort -V | tail -n 1)" != "$VERSION" ]; then
    STEP="done"
    say "berth $INSTALLED is installed; the $SOURCE_KIND offers $VERSION, which is older: nothing to upgrade."
    say "to switch to it anyway: berth upgrade --version $VERSION"
    exit 0
  else
    say "upgrading berth $INSTALLED to $VERSION"
  fi
fi

# ---------------------------------------------------------------- 3. release
step "download" "berth $VERSION"
REL="$PREFIX/releases/$VERSION"
if [ -f "$REL/.berth-complete" ] && [ "$(cat "$REL/.berth-complete")" = "$SHA" ]; then
  say "berth $VERSION is already unpacked in $REL"
else
  curl -fsS --max-time 600 -o "$TMP/$FILE" "$RELEASE_FILES_URL/$FILE" || die "downloading $RELEASE_FILES_URL/$FILE failed"
  got=$(sha256sum "$TMP/$FILE" | cut -d' ' -f1)
  [ "$got" = "$SHA" ] || die "checksum mismatch for $FILE (expected $SHA, got $got)" "the download was corrupted or altered; re-run to download it again"
  step "unpack" "into $REL"
  mkdir -p "$PREFIX/releases"
  rm -rf "$PREFIX/releases/.tmp-$VERSION"
  mkdir "$PREFIX/releases/.tmp-$VERSION"
  tar -xzf "$TMP/$FILE" -C "$PREFIX/releases/.tmp-$VERSION" --no-same-owner || die "unpacking $FILE failed"
  [ -f "$PREFIX/releases/.tmp-$VERSION/berth-$VERSION/dist/cli/main.js" ] || die "$FILE does not contain berth-$VERSION/dist/cli/main.js"
  rm -rf "$REL"
  mv "$PREFIX/releases/.tmp-$VERSION/berth-$VERSION" "$REL"
  rm -rf "$PREFIX/releases/.tmp-$VERSION"
  # Keep the tarball next to the install so an all-in-one control plane can serve it to other servers.
  mkdir -p "$PREFIX/release-files"
  cp "$TMP/$FILE" "$PREFIX/release-files/$FILE"
  printf '%s  %s\n' "$SHA" "$FILE" >"$PREFIX/release-files/$FILE.sha256"
  # Its description from the signed fields (not downloaded: nothing unsigned is kept).
  printf '{"version":"%s","platform":"linux","arch":"%s","nodeVersion":"%s","nodeAbi":"%s","file":"%s","sha256":"%s"}\n' \
    "$VERSION" "$ARCH" "$NEED_NODE" "$NEED_ABI" "$FILE" "$SHA" >"$PREFIX/release-files/${FILE%.tar.gz}.json"
  printf '%s\n' "$SHA" >"$REL/.berth-complete"
fi
# Trust on first use: later upgrades and re-runs accept only releases signed with this key.
if [ ! -s "$RELEASE_PUB" ]; then
  mkdir -p "$ETC"
  pem_of "$BERTH_RELEASE_KEY_BAKED" >"$RELEASE_PUB.tmp"
  chmod 0644 "$RELEASE_PUB.tmp"
  mv "$RELEASE_PUB.tmp" "$RELEASE_PUB"
  say "pinned $KEY_OWNER release key in $RELEASE_PUB"
fi

# ---------------------------------------------------------------- 4. Node.js
PREV_NODE_LINK=$(readlink "$PREFIX/bin/node" 2>/dev/null || true)
step "node" "a Node.js runtime with ABI $NEED_ABI (berth $VERSION was built with $NEED_NODE)"
node_abi() { "$1" -p 'process.versions.modules' 2>/dev/null || true; }
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
NODE=""
if [ -x "$PREFIX/bin/node" ] && [ "$(node_abi "$PREFIX/bin/node")" = "$NEED_ABI" ]; then
  NODE=$(readlink -f "$PREFIX/bin/node")
  say "keeping $NODE ($("$NODE" --version))"
fi
if [ -z "$NODE" ]; then
  for cand in $(command -v node nodejs 2>/dev/null || true); do
    case "$(readlink -f "$cand")" in "$PREFIX"/*) continue ;; esac
    if [ "$(node_major "$cand")" -ge 20 ] && [ "$(node_abi "$cand")" = "$NEED_ABI" ]; then
      NODE=$(readlink -f "$cand")
      say "using the system's $NODE ($("$NODE" --version))"
      break
    fi
    say "the system's $cand ($("$cand" --version 2>/dev/null || echo unknown)) does not fit (need Node.js >= 20 with ABI $NEED_ABI)"
  done
fi
# The Node.js binary the release's source offers (signed like the release): a control plane's own, or
# the one a release host publishes next to its tarballs (node_file).
NODE_FROM="the control plane"
NODE_URL="$URL/install/node?arch=$ARCH"
if [ -n "$RELEASE_URL" ]; then
  NODE_FROM="the release host"
  NODE_URL="$RELEASE_URL/$(mf node_file)"
fi
if [ -z "$NODE" ] && [ "$(mf node_available)" = 1 ] && [ "$(mf node_abi)" = "$NEED_ABI" ]; then
  NV=$(mf node_version)
  dir="$PREFIX/runtime/node-$NV-linux-$ARCH"
  if [ ! -x "$dir/bin/node" ] || [ "$(node_abi "$dir/bin/node")" != "$NEED_ABI" ]; then
    say "downloading Node.js $NV from $NODE_FROM"
    want=$(mf node_sha256)
    [ -n "$want" ] && signed "berth-node-v1 linux-$ARCH $NV $want" "$(mf64 node_signature)" ||
      die "the Node.js binary $NODE_FROM offers is not signed by $KEYS_FROM: refusing it" "install Node.js ${NEED_NODE:-20} from your distribution or NodeSource and re-run"
    curl -fsS --max-time 600 -o "$TMP/node" "$NODE_URL" || die "downloading Node.js from $NODE_URL failed"
    got=$(sha256sum "$TMP/node" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "checksum mismatch for the Node.js binary (expected $want, got $got)" "re-run to download it again"
    mkdir -p "$dir/bin"
    chmod 0755 "$TMP/node"
    mv "$TMP/node" "$dir/bin/node"
  fi
  NODE="$dir/bin/node"
  say "using Node.js $NV from $NODE_FROM ($NODE)"
fi
if [ -z "$NODE" ] && [ -n "$NEED_NODE" ]; then
  # Last resort: nodejs.org, checked against its SHASUMS256.txt.
  dir="$PREFIX/runtime/node-$NEED_NODE-linux-$ARCH"
  base="https://nodejs.org/dist/$NEED_NODE"
  tarname="node-$NEED_NODE-linux-$ARCH.tar.gz"
  if [ ! -x "$dir/bin/node" ]; then
    say "downloading Node.js $NEED_NODE from nodejs.org"
    if curl -fsS --max-time 600 -o "$TMP/$tarname" "$base/$tarname" && curl -fsS --max-time 60 -o "$TMP/SHASUMS256.txt" "$base/SHASUMS256.txt"; then
      want=$(awk -v f="$tarname" '$2 == f {print $1}' "$TMP/SHASUMS256.txt")
      got=$(sha256sum "$TMP/$tarname" | cut -d' ' -f1)
      [ -n "$want" ] && [ "$got" = "$want" ] || die "checksum mismatch for $tarname from nodejs.org"
      mkdir -p "$dir"
      tar -xzf "$TMP/$tarname" -C "$dir" --strip-components=1 --no-same-owner
    fi
  fi
  [ ! -x "$dir/bin/node" ] || NODE="$dir/bin/node"
fi
[ -n "$NODE" ] || die "no usable Node.js: the system has none with ABI $NEED_ABI, $NODE_FROM cannot serve one for linux-$ARCH and nodejs.org is unreachable" \
  "install Node.js ${NEED_NODE:-20} (e.g. from NodeSource) and re-run"
mkdir -p "$PREFIX/bin"
[ "$(readlink "$PREFIX/bin/node" 2>/dev/null || true)" = "$NODE" ] || ln -sfn "$NODE" "$PREFIX/bin/node"
"$PREFIX/bin/node" "$REL/dist/cli/main.js" --version >/dev/null 2>"$TMP/err" || die "berth $VERSION does not start with $NODE: $(head -n 3 "$TMP/err")"

# ---------------------------------------------------------------- 5. switch current + the berth command
step "activate" "berth $VERSION as $PREFIX/current"
PREVIOUS=$(readlink "$PREFIX/current" 2>/dev/null || true)
[ -z "$PREVIOUS" ] || [ -f "$PREFIX/$PREVIOUS/dist/cli/main.js" ] || PREVIOUS=""
if [ "$PREVIOUS" != "releases/$VERSION" ]; then
  ln -sfn "releases/$VERSION" "$PREFIX/current.new"
  mv -T "$PREFIX/current.new" "$PREFIX/current"
  CHANGED=1
  say "switched $PREFIX/current from ${PREVIOUS:-nothing} to releases/$VERSION"
fi
cat >"$TMP/berth" <<EOF
#!/bin/sh
# berth command installed by install.sh: this server's settings, then the current release.
set -a
[ ! -r "$ETC/agent.env" ] || . "$ETC/agent.env"
set +a
exec "$PREFIX/bin/node" "$PREFIX/current/dist/cli/main.js" "\$@"
EOF
if ! cmp -s "$TMP/berth" "$BIN_LINK" 2>/dev/null; then
  mkdir -p "$(dirname "$BIN_LINK")"
  install -m 0755 "$TMP/berth" "$BIN_LINK"
fi

# ---------------------------------------------------------------- 6. settings
step "config" "settings in $ETC"
mkdir -p "$ETC"
if [ ! -f "$ETC/agent.env" ]; then
  cat >"$ETC/agent.env" <<'EOF'
# berth agent settings (KEY=VALUE, read by berth-agent.service and by `berth` on this server).
# See docs/install.md and the README's list of BERTH_* settings. Restart the agent after changes.
BERTH_DATA=/var/lib/berth
EOF
  chmod 0644 "$ETC/agent.env"
  say "wrote $ETC/agent.env"
else
  say "keeping $ETC/agent.env"
fi
DATA=$(data_dir)
mkdir -p "$DATA"
chmod 0700 "$DATA"
mkdir -p "$LOG_DIR"

# ---------------------------------------------------------------- daemons: start, check, roll back
# The agent unit's ProtectSystem=strict leaves only its ReadWritePaths= writable, and a path missing
# when the unit starts stays read-only. The unit lists the default paths; the directories the agent
# writes as agent.env sets them (data, private nginx prefix, static sites, ACME webroot) are created here
# and listed in a drop-in, so a BERTH_NGINX_PREFIX or another BERTH_DATA works under the unit too.
agent_paths_dropin() { # -> sets UNIT_CHANGED=1 when the drop-in changed
  paths=""
  nginx_prefix=$(agent_setting BERTH_NGINX_PREFIX '')
  for p in "$(data_dir)" "$nginx_prefix" "$(agent_setting BERTH_STATIC_DIR /var/lib/berth-static)" \
    "$(agent_setting BERTH_ACME_WEBROOT /var/lib/berth-acme)" \
    "$(agent_setting BERTH_DOCKER_CERTS_DIR /etc/docker/certs.d)" /etc/berth-registry; do
    [ -n "$p" ] || continue
    case "$p" in
      /*) ;;
      *) p="/$p" ;; # the unit's working directory is /
    esac
    case "$p" in
      *[!A-Za-z0-9._/-]*) warn "$p (from $ETC/agent.env) has characters berth-agent.service cannot list as writable; use a path of letters, digits and \"._/-\"" ; continue ;;
    esac
    [ -d "$p" ] || { mkdir -p "$p" && chmod 0755 "$p"; } || die "could not create $p (from $ETC/agent.env)"
    paths="$paths -$p"
  done
  # The system nginx (no private prefix): its config, logs, temp dirs and pid file (/run/nginx.pid).
  [ -n "$nginx_prefix" ] || paths="$paths -/etc/nginx -/var/log/nginx -/var/lib/nginx -/var/cache/nginx -/run"
  cat >"$TMP/dropin" <<EOF
# Written by install.sh from $ETC/agent.env (re-run the installer after changing these paths there).
[Service]
ReadWritePaths=$paths
EOF
  if ! cmp -s "$TMP/dropin" "$AGENT_DROPIN" 2>/dev/null; then
    mkdir -p "$AGENT_DROPIN_DIR"
    install -m 0644 "$TMP/dropin" "$AGENT_DROPIN"
    UNIT_CHANGED=1
  fi
}
# berth-control-plane.service runs as the system user berth. With --domain it answers its own ACME
# challenges through the agent's nginx: the challenge directory is root:berth 1775 (berth adds files;
# the sticky bit keeps it from removing or replacing the agent's); the webroot stays root's.
cp_service_user() {
  id -u berth >/dev/null 2>&1 || useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin berth ||
    die "could not create the system user \"berth\" the control plane runs as"
  w="$(agent_setting BERTH_ACME_WEBROOT /var/lib/berth-acme)/.well-known/acme-challenge"
  mkdir -p "$w" && chmod 0755 "${w%/*/*}" "${w%/*}" && chown root:berth "$w" && chmod 1775 "$w" || die "could not prepare $w for the control plane"
}
install_unit() { # install_unit NAME RELEASE_DIR -> sets UNIT_CHANGED
  UNIT_CHANGED=0
  if ! cmp -s "$2/systemd/$1.service" "$UNIT_DIR/$1.service" 2>/dev/null; then
    install -m 0644 "$2/systemd/$1.service" "$UNIT_DIR/$1.service"
    UNIT_CHANGED=1
  fi
  [ "$1" != berth-agent ] || agent_paths_dropin
}
# run_daemon NAME LABEL RELEASE_DIR ENVFILE ARGS...: berth-NAME.service with systemd as PID 1, else
# `berth ARGS` in the background with RUN_DIR/NAME.pid. (Re)started when the release (CHANGED=1) or
# the unit changed; left alone when it runs and nothing changed.
run_daemon() {
  name="$1"; label="$2"; rel="$3"; envfile="$4"; shift 4
  if systemd_running; then
    install_unit "berth-$name" "$rel"
    [ "$UNIT_CHANGED" = 0 ] || systemctl daemon-reload
    systemctl enable "berth-$name.service" >/dev/null 2>&1 || die "systemctl could not enable berth-$name"
    if [ "$CHANGED" = 1 ] || [ "$UNIT_CHANGED" = 1 ]; then
      systemctl restart "berth-$name.service" || die "systemctl could not restart berth-$name" "see: journalctl -u berth-$name -n 50"
      say "restarted berth-$name.service"
    else
      systemctl start "berth-$name.service" || die "systemctl could not start berth-$name" "see: journalctl -u berth-$name -n 50"
    fi
  elif pid_alive "$RUN_DIR/$name.pid" && [ "$CHANGED" = 0 ]; then
    say "the $label already runs (pid $(cat "$RUN_DIR/$name.pid")); leaving it alone"
  else
    stop_pidfile "$RUN_DIR/$name.pid"
    : >>"$LOG_DIR/$name.log"
    start_background "$name" "$envfile" "$@"
    say "no systemd as PID 1 (a container?): started the $label in the background, pid $(cat "$RUN_DIR/$name.pid"), pid file $RUN_DIR/$name.pid, log $LOG_DIR/$name.log. It is not restarted on reboot or crash: re-run this installer to start it again."
  fi
}
daemon_log() { # daemon_log NAME LINES: the daemon's own last lines (under systemd without the manager's lines about the unit)
  if systemd_running; then journalctl --no-pager -o cat -n "$2" "SYSLOG_IDENTIFIER=berth-$1" 2>/dev/null || true; else tail -n "$2" "$LOG_DIR/$1.log" 2>/dev/null || true; fi
}
# The daemon's process ended: its pid file's process is gone, or systemd is waiting to restart it
# (RestartSec=2 in the units; a crash it restarts in between shows as a timeout instead).
daemon_exited() {
  if systemd_running; then
    case "$(systemctl show -p ActiveState -p SubState --value "berth-$1.service" 2>/dev/null | tr '\n' ' ')" in
      failed*|*auto-restart*) return 0 ;;
    esac
    return 1
  fi
  ! pid_alive "$RUN_DIR/$1.pid"
}
# The local control plane answers /healthz with VERSION.
cp_ready() { curl -fsS --max-time 2 "$LOCAL_URL/healthz" 2>/dev/null | grep -q "\"version\":\"$1\""; }
# "RUNNING VERSION STATE" of the agent as `berth status --json` reports them (from its status socket);
# STATE is "accepted" once the control plane welcomed its connection (credential and hello taken).
agent_state() {
  [ -S "$DATA/agent.sock" ] || return 0 # not up yet (without it, status would read the database and ask Docker)
  "$BIN_LINK" status --json 2>/dev/null | "$PREFIX/bin/node" -e '
    let s = ""; process.stdin.on("data", (d) => { s += d; }).on("end", () => {
      try { const r = JSON.parse(s); process.stdout.write([r.agent.running, r.agent.version, r.controlPlane.acceptedAt ? "accepted" : r.controlPlane.state].join(" ")); } catch {}
    });' 2>/dev/null || true
}
# wait_for agent|control-plane VERSION: 0 once it runs VERSION (the agent: and its control plane
# accepted it), 1 after START_TIMEOUT seconds, 2 as soon as its process exited.
wait_for() {
  end=$(($(date +%s) + START_TIMEOUT))
  while :; do
    if [ "$1" = agent ]; then
      [ "$(agent_state)" != "true $2 accepted" ] || return 0
    else
      ! cp_ready "$2" || return 0
    fi
    ! daemon_exited "$1" || return 2
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.5
  done
}
can_roll_back() { [ "$CHANGED" = 1 ] && [ -n "$PREVIOUS" ]; }
AGENT_RESTARTED=0
# rollback WHAT_WENT_WRONG: the new release did not come up. Switch `current` (and the node link) back,
# restart what was restarted, wait until it runs (and is connected) again, then fail the step.
rollback() {
  failed_step="$STEP"
  prev_version=${PREVIOUS#releases/}
  step "rollback" "berth $VERSION $1; switching back to $prev_version"
  ln -sfn "$PREVIOUS" "$PREFIX/current.new"
  mv -T "$PREFIX/current.new" "$PREFIX/current"
  if [ -n "$PREV_NODE_LINK" ] && [ "$(readlink "$PREFIX/bin/node" 2>/dev/null || true)" != "$PREV_NODE_LINK" ]; then
    ln -sfn "$PREV_NODE_LINK" "$PREFIX/bin/node"
  fi
  say "switched $PREFIX/current back to $PREVIOUS"
  CHANGED=1
  back=1
  if [ "$ALL_IN_ONE" = 1 ]; then
    run_daemon control-plane "control plane" "$PREFIX/$PREVIOUS" "$ETC/control-plane.env" control-plane
    wait_for control-plane "$prev_version" || back=0
  fi
  [ "$AGENT_RESTARTED" = 0 ] || run_daemon agent agent "$PREFIX/$PREVIOUS" "$ETC/agent.env" agent
  [ "$back" = 0 ] || wait_for agent "$prev_version" || back=0
  STEP="$failed_step"
  if [ "$back" = 1 ]; then
    ROLLBACK_NOTE="the failed release stays in $REL for inspection; fix the cause, then run \`berth upgrade\` (or this installer) again."
    die "berth $VERSION $1; rolled back to $prev_version, which is running and connected again"
  fi
  ROLLBACK_NOTE="berth $prev_version is the current release again but has not come back yet: check \`berth status\` and $HOW_LOGS"
  die "berth $VERSION $1; switched back to $prev_version, but it did not run and connect within $START_TIMEOUT s either"
}
if systemd_running; then
  HOW_LOGS="journalctl -u berth-agent -f"
else
  HOW_LOGS="tail -f $LOG_DIR/agent.log"
fi

# ---------------------------------------------------------------- 7. all-in-one: the control plane
LOCAL_URL=""
if [ "$ALL_IN_ONE" = 1 ]; then
  step "control-plane" "installing the control plane on this machine"
  CP_PORT=${CP_LISTEN##*:}
  warn_plain_http() {
    warn "the control plane serves plain HTTP: the admin token, env values and install lines cross the network in clear. For HTTPS set BERTH_DOMAIN=NAME (a DNS name pointing here; or BERTH_TLS_CERT/BERTH_TLS_KEY) in $ETC/control-plane.env, remove BERTH_INSECURE_HTTP and restart berth-control-plane (docs/install.md)"
  }
  if [ -f "$ETC/control-plane.env" ] && ! grep -Eq '^(BERTH_DOMAIN|BERTH_TLS_CERT|BERTH_INSECURE_HTTP)=' "$ETC/control-plane.env" &&
    ! grep -Eq '^BERTH_PUBLIC_URL=https://' "$ETC/control-plane.env"; then
    # Written before the control plane refused plain HTTP off loopback: keep it serving as it did.
    printf '%s\n' "BERTH_INSECURE_HTTP=1" >>"$ETC/control-plane.env"
    warn_plain_http
  fi
  if [ ! -f "$ETC/control-plane.env" ]; then
    # TLS: with --domain the control plane gets its own certificate over HTTP-01 through the agent's
    # ACME webroot (nginx serves it on port 80 for every host); without, plain HTTP is an explicit choice.
    CP_TLS=""
    if [ -n "$CP_DOMAIN" ]; then
      case "$CP_DOMAIN" in *[!A-Za-z0-9.-]*|.*|*.|*..*) die "invalid --domain \"$CP_DOMAIN\": expected a host name like cp.example.com" ;; esac
      webroot=$(agent_setting BERTH_ACME_WEBROOT /var/lib/berth-acme)
      mkdir -p "$webroot" && chmod 0755 "$webroot" # exists before the unit starts, so it can be writable there
      [ -n "$CP_PUBLIC_URL" ] || { CP_PUBLIC_URL="https://$CP_DOMAIN"; [ "$CP_PORT" = 443 ] || CP_PUBLIC_URL="$CP_PUBLIC_URL:$CP_PORT"; }
      CP_TLS="BERTH_DOMAIN=$CP_DOMAIN
BERTH_ACME_WEBROOT=$webroot"
    elif [ "${CP_PUBLIC_URL#https://}" = "$CP_PUBLIC_URL" ]; then
      CP_TLS="BERTH_INSECURE_HTTP=1"
      warn_plain_http
    fi
    if [ -z "$CP_PUBLIC_URL" ]; then
      ip=$(hostname -I 2>/dev/null | awk '{print $1}')
      CP_PUBLIC_URL="http://${ip:-127.0.0.1}:$CP_PORT"
    fi
    cat >"$ETC/control-plane.env" <<EOF
# berth control plane settings (read by berth-control-plane.service). Restart it after changes.
BERTH_CP_DATA=/var/lib/berth-control-plane
BERTH_LISTEN=$CP_LISTEN
BERTH_PUBLIC_URL=$CP_PUBLIC_URL
BERTH_RELEASE_DIR=$PREFIX/release-files
$CP_TLS
EOF
    say "wrote $ETC/control-plane.env"
  fi
  CP_DATA=$(sed -n 's/^BERTH_CP_DATA=//p' "$ETC/control-plane.env" | tail -n 1)
  CP_PORT=$(sed -n 's/^BERTH_LISTEN=.*://p' "$ETC/control-plane.env" | tail -n 1)
  LOCAL_URL="http://127.0.0.1:$CP_PORT"
  ! systemd_running || cp_service_user
  run_daemon control-plane "control plane" "$REL" "$ETC/control-plane.env" control-plane
  rc=0
  wait_for control-plane "$VERSION" || rc=$?
  if [ "$rc" != 0 ]; then
    printf '%s\n' "berth: the control plane's log ends with:" >&2
    daemon_log control-plane 5 >&2
    why="did not start: its control plane did not answer on $LOCAL_URL within $START_TIMEOUT s"
    [ "$rc" != 2 ] || why="did not start: its control plane exited right after starting"
    can_roll_back || die "the control plane $why" "see $LOG_DIR/control-plane.log or journalctl -u berth-control-plane"
    rollback "$why"
  fi
  ADMIN_TOKEN=$(cat "$CP_DATA/admin-token")
  # This machine's own control plane signs the releases it serves with its own key: trust it too
  # (read from its data dir, not over the network), so upgrades through it are accepted.
  if [ -s "$CP_DATA/release-key.pub" ] && ! grep -qxF "$(sed -n 2p "$CP_DATA/release-key.pub")" "$RELEASE_PUB" 2>/dev/null; then
    cat "$CP_DATA/release-key.pub" >>"$RELEASE_PUB"
    say "added this control plane's release key to $RELEASE_PUB"
  fi
  if [ ! -f "$DATA/agent.json" ]; then
    [ -n "$NAME" ] || NAME=$(hostname -s 2>/dev/null | tr 'A-Z_.' 'a-z--' | tr -cd 'a-z0-9-' | sed 's/^-*//' | cut -c1-40)
    [ -n "$NAME" ] || NAME=local
    # The admin token goes to curl in a 0600 file, not on its command line (`ps`).
    (umask 077 && printf 'Authorization: Bearer %s\n' "$ADMIN_TOKEN" >"$TMP/auth-header")
    resp=$(curl -sS --max-time 15 -H @"$TMP/auth-header" -H 'content-type: application/json' \
      -d "{\"name\":\"$NAME\"}" "$LOCAL_URL/api/servers") || die "could not create server $NAME on the local control plane"
    TOKEN=$(printf '%s' "$resp" | sed -n 's/.*"joinToken": *"\([^"]*\)".*/\1/p')
    [ -n "$TOKEN" ] || die "the local control plane refused to create server $NAME: $resp"
  fi
  URL="$LOCAL_URL"
fi

# ---------------------------------------------------------------- 8. join
step "join" "enrolling this server with $URL"
if [ -f "$DATA/agent.json" ]; then
  joined_url=$(joined_field controlPlaneUrl)
  joined_name=$(joined_field server)
  # An upgrade may take the release from elsewhere (--url): the enrolment stays as it is.
  if [ "$MODE" != upgrade ] && [ "$joined_url" != "$URL" ]; then
    die "this server is already enrolled with ${joined_url:-an unknown control plane} (in $DATA/agent.json), not $URL" \
      "to move it, uninstall first (install.sh --uninstall --purge removes its data) or delete $DATA/agent.json, then re-run"
  fi
  if [ -n "$NAME" ] && [ "$NAME" != "$joined_name" ]; then
    die "this server is already enrolled as \"$joined_name\", not \"$NAME\"" "re-run with --name $joined_name, or uninstall with --purge first"
  fi
  NAME="$joined_name"
  [ "$MODE" != upgrade ] || URL="${joined_url:-$URL}"
  say "already enrolled as server \"$NAME\"; not joining again"
else
  [ -n "$TOKEN" ] || die "no join token given (BERTH_JOIN_TOKEN)" "create one on your control plane with \`berth server add NAME\` and run the command it prints"
  # The token goes through the environment of this one command: never on a command line (`ps`).
  set -- agent join "$URL" --data "$DATA" --json
  [ -z "$NAME" ] || set -- "$@" --name "$NAME"
  if ! out=$(BERTH_JOIN_TOKEN="$TOKEN" "$BIN_LINK" "$@" 2>"$TMP/err"); then
    die "$(sed 's/^berth: //' "$TMP/err" | head -n 1)" \
      "join tokens work once and for 24 h: create a new one with \`berth server add ${NAME:-NAME}\` on your control plane (or \`berth server rm\` + add if the name is taken), then re-run the command it prints"
  fi
  NAME=$(printf '%s' "$out" | sed -n 's/.*"server": *"\([^"]*\)".*/\1/p' | head -n 1)
  say "enrolled as server \"$NAME\""
fi

# ---------------------------------------------------------------- 9. Docker, nginx, git
step "packages" "Docker engine, nginx and git"
docker_answers() { curl -fsS --max-time 5 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; }
missing=""
docker_answers || have dockerd || missing="$missing docker.io"
have nginx || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
have git || missing="$missing git"
if [ -n "$missing" ]; then
  have apt-get || die "missing:$missing, and there is no apt-get to install them" "install them and re-run"
  say "installing from the distribution:$missing"
  policy_added=0
  if ! systemd_running && [ ! -e /usr/sbin/policy-rc.d ]; then
    # No init to manage services: keep the packages' maintainer scripts from starting daemons (nginx on :80).
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  ok=1
  DEBIAN_FRONTEND=noninteractive apt-get update -q >"$TMP/apt.log" 2>&1 || ok=0
  # shellcheck disable=SC2086
  [ "$ok" = 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >>"$TMP/apt.log" 2>&1 || ok=0
  [ "$policy_added" = 0 ] || rm -f /usr/sbin/policy-rc.d
  if [ "$ok" = 0 ]; then
    tail -n 15 "$TMP/apt.log" >&2
    die "apt-get could not install$missing" "check the package mirror (apt-get update) and re-run"
  fi
else
  say "Docker, nginx and git are present; leaving them alone"
fi
if ! docker_answers; then
  if systemd_running; then
    systemctl enable --now docker.service >/dev/null 2>&1 || die "systemctl could not start docker" "see: journalctl -u docker -n 50"
  else
    say "no systemd as PID 1: starting dockerd in the background (log $LOG_DIR/dockerd.log)"
    mkdir -p "$LOG_DIR"
    setsid dockerd </dev/null >>"$LOG_DIR/dockerd.log" 2>&1 &
  fi
  i=0
  until docker_answers; do
    i=$((i + 1))
    [ "$i" -lt 150 ] || die "the Docker engine does not answer on /var/run/docker.sock" "see $LOG_DIR/dockerd.log or journalctl -u docker"
    sleep 0.2
  done
fi

# ---------------------------------------------------------------- 10. the agent daemon
step "agent" "running the berth agent"
run_daemon agent agent "$REL" "$ETC/agent.env" agent
[ "$CHANGED" = 0 ] || AGENT_RESTARTED=1
rc=0
wait_for agent "$VERSION" || rc=$?
if [ "$rc" != 0 ]; then
  printf '%s\n' "berth: the agent's log ends with:" >&2
  daemon_log agent 5 >&2
  if [ "$rc" = 2 ]; then
    can_roll_back || die "the agent exited right after starting" "see ${HOW_LOGS% -f}, fix the cause (often a BERTH_* setting in $ETC/agent.env) and re-run"
    rollback "did not start: its agent exited right after starting"
  fi
  ! can_roll_back || rollback "did not start: its agent did not connect to $URL within $START_TIMEOUT s"
  warn "the agent has not confirmed its connection to $URL within $START_TIMEOUT s; it keeps retrying (\`berth status\` shows how it is going)"
fi

# Keep the three newest releases besides the current one and the previous one (the rollback target).
for old in $(ls -1t "$PREFIX/releases" 2>/dev/null | grep -v '^\.' | grep -vxF "$VERSION" | grep -vxF "${PREVIOUS#releases/}" | tail -n +4); do
  rm -rf "${PREFIX:?}/releases/$old"
  rm -f "$PREFIX/release-files/berth-$old-linux-"*
done

STEP="done"
echo
if [ -n "$INSTALLED" ] && [ "$INSTALLED" != "$VERSION" ]; then
  say "berth is upgraded from $INSTALLED to $VERSION: server \"$NAME\" is connected to $URL."
else
  say "berth $VERSION is installed: server \"$NAME\" is enrolled with $URL."
fi
say "  release: $PREFIX/current -> releases/$VERSION; settings: $ETC/agent.env; data: $DATA"
say "  check:   berth status   (the agent, its connection to the control plane, every app)"
say "           $HOW_LOGS"
say "           berth server ls   (on your control plane: \"$NAME\" shows as connected)"
if [ "$ALL_IN_ONE" = 1 ]; then
  CP_URL=$(sed -n 's/^BERTH_PUBLIC_URL=//p' "$ETC/control-plane.env" | tail -n 1)
  say "control plane: $CP_URL (admin token in $CP_DATA/admin-token)"
  say "  dashboard: $CP_URL/ui   (sign in with the admin token)"
  say "  log in:  berth login $CP_URL $ADMIN_TOKEN"
fi
