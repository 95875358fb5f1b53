#!/bin/bash
# Builds sealpost and runs it. With no arguments and no configuration file
# it starts a demo provider (private Postfix + Dovecot on loopback, test
# users with test keys) and serves in front of it; pass
# `--config FILE` to serve your own configuration.
# Installs what is missing first (Debian packages, idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
	meson setup build -Dbuildtype=release -Dintegration=false >/dev/null
fi
ninja -C build >/dev/null
exec build/proxy/sealpost serve "$@"
