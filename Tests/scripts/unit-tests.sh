#!/usr/bin/env bash
# Host unit tests of Sources/X86VCPU with line coverage; fails below the floor.
set -euo pipefail
floor=${COVERAGE_FLOOR:-90}
swift test --enable-code-coverage 2>&1 | tee build-unit-tests.log | grep -vE '^\[[0-9]+/[0-9]+\]|^􀟈 |^◇ |^✔ Test |^􁁛 ' || true
result=${PIPESTATUS[0]}
mv -f build-unit-tests.log .build/unit-tests.log 2>/dev/null || true
[ "$result" -eq 0 ] || { echo "unit tests failed"; exit 1; }
bin=$(swift build --show-bin-path)
cov=/opt/swift/usr/bin/llvm-cov
command -v "$cov" >/dev/null || cov=$(dirname "$(readlink -f "$(command -v swift)")")/llvm-cov
"$cov" report "$bin/X86VCPUPackageTests.xctest" -instr-profile "$bin/codecov/default.profdata" \
    -ignore-filename-regex='Tests/|\.build/' > .build/coverage.txt
awk '/^Filename/ || /^TOTAL/ { print $1, "lines:", $(NF-6)+0, "missed:", $(NF-5)+0, "cover:", $(NF-4) }' .build/coverage.txt \
    | sed 's/^Filename.*//' | grep . | sed 's/^TOTAL/X86VCPU line coverage (TOTAL)/'
total=$(awk '/^TOTAL/ { gsub("%", "", $(NF-4)); print $(NF-4) }' .build/coverage.txt)
awk -v t="$total" -v f="$floor" 'BEGIN { exit !(t + 0 >= f + 0) }' || {
    echo "line coverage $total% is below the floor of $floor%"; sed 's/^/  /' .build/coverage.txt; exit 1; }
