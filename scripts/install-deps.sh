#!/bin/sh
# Installs everything sealpost needs to build and run its demo from Debian's
# packages; with --tests also what the tests need (Thunderbird, Chromium,
# certutil, and the browser driver from npm as package-lock.json pins it).
# Idempotent: a second run installs nothing.
set -eu

PKGS="build-essential pkg-config meson ninja-build clang libclang-rt-14-dev
libgmime-3.0-dev libgpgme-dev gnupg gpg-agent libssl-dev openssl libsodium-dev
libmicrohttpd-dev
libsqlite3-dev sqlite3 libglib2.0-dev libjson-glib-dev libcmocka-dev
postfix dovecot-imapd dovecot-lmtpd dovecot-pop3d
python3 curl msmtp isync fetchmail ca-certificates procps iproute2"
TEST_PKGS="thunderbird libnss3-tools chromium"

tests=false
[ "${1:-}" = "--tests" ] && tests=true
$tests && PKGS="$PKGS $TEST_PKGS"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# Node.js runs the add-on's and the console's unit tests (the build
# registers them) and drives the browser test: the machine's own when it
# has one, else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	missing="$missing nodejs npm"
fi

install_node_modules() {
	$tests || return 0
	# The browser-test driver, exactly as package-lock.json pins it.
	here=$(cd "$(dirname "$0")/.." && pwd)
	if [ ! -f "$here/node_modules/.package-lock.json" ] ||
	   ! cmp -s "$here/package-lock.json" "$here/node_modules/.sealpost-lock"; then
		(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null &&
		 cp package-lock.json node_modules/.sealpost-lock)
	fi
}

if [ -z "$missing" ]; then
	install_node_modules
	exit 0
fi
echo "install-deps: installing:$missing" >&2
# Postfix must not configure (or start) a system instance: tests run private ones.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
install_node_modules
