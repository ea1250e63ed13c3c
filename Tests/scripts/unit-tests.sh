#!/usr/bin/env bash
# Host unit tests of Sources/X86VCPU with line coverage; fails below the floor.
set -euo pipefail
floor=${COVERAGE_FLOOR:-90}
# Show failures and the runner's closing lines; the whole log stays in .build.
swift test --enable-code-coverage 2>&1 | tee build-unit-tests.log \
    | grep -E '✘|error:|Test run with|recorded an issue' || true
result=${PIPESTATUS[0]}
mv -f build-unit-tests.log .build/unit-tests.log 2>/dev/null || true
[ "$result" -eq 0 ] || { echo "unit tests failed"; exit 1; }
bin=$(swift build --show-bin-path)
cov=/opt/swift/usr/bin/llvm-cov
command -v "$cov" >/dev/null || cov=$(dirname "$(readlink -f "$(command -v swift)")")/llvm-cov
"$cov" report "$bin/X86VCPUPackageTests.xctest" -instr-profile "$bin/codecov/default.profdata" \
    -ignore-filename-regex='Tests/|\.build/' -show-branch-summary=false > .build/coverage.txt
# Columns end with: lines, missed lines, line coverage.
awk '/^TOTAL/ { printf "X86VCPU line coverage: %s (%d of %d lines)\n", $NF, $(NF-2) - $(NF-1), $(NF-2) }' .build/coverage.txt
total=$(awk '/^TOTAL/ { gsub("%", "", $NF); print $NF }' .build/coverage.txt)
awk -v t="$total" -v f="$floor" 'BEGIN { exit !(t + 0 >= f + 0) }' || {
    echo "line coverage $total% is below the floor of $floor%"; sed 's/^/  /' .build/coverage.txt; exit 1; }
