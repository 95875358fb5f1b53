#!/bin/sh
# Installs everything sealpost needs to build, run its demo and run its tests,
# from Debian's packages only. Idempotent: a second run installs nothing.
set -eu

PKGS="build-essential pkg-config meson ninja-build clang libclang-rt-14-dev
libgmime-3.0-dev libgpgme-dev gnupg gpg-agent libssl-dev openssl libsodium-dev
libmicrohttpd-dev
libsqlite3-dev sqlite3 libglib2.0-dev libjson-glib-dev libcmocka-dev
postfix dovecot-imapd dovecot-lmtpd dovecot-pop3d
python3 curl msmtp isync fetchmail ca-certificates procps iproute2"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing:$missing" >&2
# Postfix must not configure (or start) a system instance: tests run private ones.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
