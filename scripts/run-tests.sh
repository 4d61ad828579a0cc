#!/usr/bin/env bash
# run-tests.sh - run every test of omnifs against an existing build
# (make test builds first and calls this): the Criterion suites (unit and
# integration tests with real FUSE mounts), then the conformance scripts
# that check the local E2B and GCS servers against the official SDKs.
# Prints a closing "N passed, M failed" line over all of them.
#
# Environment: BUILD (build directory, default build), OMNI_TEST_JOBS
# (parallel Criterion workers, default 2), OMNI_TEST_FILTER (a Criterion
# --filter pattern).
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
BUILD=${BUILD:-build}
export OMNI_SOURCE_DIR="$here"
export OMNI_BUILD_DIR="$here/$BUILD"
jobs=${OMNI_TEST_JOBS:-2}

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== Criterion suites ($BUILD/omni-tests -j$jobs)"
args=(-j"$jobs")
[ -n "${OMNI_TEST_FILTER:-}" ] && args+=(--filter "$OMNI_TEST_FILTER")
"$BUILD/omni-tests" "${args[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
synth=$(grep -a "Synthesis:" "$log" | tail -n 1)
tested=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$synth")
passing=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$synth")
tested=${tested:-0}
passing=${passing:-0}
passed=$((passed + passing))
failed=$((failed + tested - passing))
if [ "$rc" -ne 0 ] && [ "$tested" -eq "$passing" ]; then
	failed=$((failed + 1))
fi

if [ -z "${OMNI_TEST_FILTER:-}" ]; then
	for script in tests/conformance/*/run.sh; do
		[ -f "$script" ] || continue
		echo "== $script"
		bash "$script" 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
		p=$(sed -n 's/^\([0-9]*\) passed.*/\1/p' <<<"$line")
		f=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$line")
		passed=$((passed + ${p:-0}))
		failed=$((failed + ${f:-0}))
		if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
			failed=$((failed + 1))
		fi
	done
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
