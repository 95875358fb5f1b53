#!/bin/sh
# Runs one libFuzzer target for SECONDS with the checked-in seeds, writing
# new corpus entries to a temporary directory (never into the source tree).
# Usage: run-fuzz.sh TARGET SEED_DIR SECONDS
set -eu
target=$1 seeds=$2 seconds=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/sealpost-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/corpus" "$work/artifacts"
set +e
"$target" -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=1024 \
	-timeout=10 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
	"$work/corpus" "$seeds"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
	for f in "$work"/artifacts/*; do
		[ -f "$f" ] || continue
		echo "crash input $f (base64):"; base64 "$f"
	done
fi
exit "$rc"
