#!/bin/bash
# Builds sealpost and runs every test suite: unit (cmocka), integration
# (real Postfix + Dovecot on loopback, real clients) and fuzz (libFuzzer),
# all under AddressSanitizer + UndefinedBehaviorSanitizer.
# Installs what is missing first (Debian packages, idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --tests

fuzz_seconds=${SEALPOST_FUZZ_SECONDS:-60}

# Warnings are errors with gcc too: a compile-only pass.
if [ ! -f build-gcc/build.ninja ]; then
	CC=gcc meson setup build-gcc --werror -Dintegration=false >/dev/null
fi
ninja -C build-gcc

# The test build: clang (for libFuzzer) with ASan + UBSan.
if [ ! -f build-test/build.ninja ]; then
	CC=clang meson setup build-test --werror -Dsanitize=true -Dfuzz=true \
		-Dfuzz_seconds="$fuzz_seconds" >/dev/null
else
	meson configure build-test -Dfuzz_seconds="$fuzz_seconds"
fi
ninja -C build-test

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
meson test -C build-test --print-errorlogs --num-processes 2 "$@" || rc=$?

# One closing line any CI can read, from meson's own log.
python3 - build-test/meson-logs/testlog.json <<'PY'
import json, sys
counts = {}
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    counts[r] = counts.get(r, 0) + 1
passed = counts.get("OK", 0) + counts.get("EXPECTEDFAIL", 0)
skipped = counts.get("SKIP", 0)
failed = sum(counts.values()) - passed - skipped
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $rc
