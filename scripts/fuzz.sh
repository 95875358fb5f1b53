#!/bin/bash
# Runs every fuzz target for SECONDS each (default 60): builds them with
# clang + libFuzzer + ASan/UBSan in build-fuzz first.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bash scripts/install-deps.sh
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dsanitize=true -Dfuzz=true \
		-Dfuzz_seconds="$seconds" -Dintegration=false
else
	meson configure build-fuzz -Dfuzz_seconds="$seconds"
fi
ninja -C build-fuzz
meson test -C build-fuzz --suite fuzz --print-errorlogs --num-processes 2
