#!/usr/bin/env bash
# The exit-handler fuzzer alone (Tests/X86VCPUTests/Fuzz): N cases from SEED
# (random when empty), or one case with REPLAY=<case seed>. STRICT=1 fails on
# known findings too. Prints the run seed, and every failing case seed with
# the command that replays it.
set -uo pipefail
N=${1:-1000000}; SEED=${2:-}; REPLAY=${3:-}; STRICT=${4:-}
[ -n "$SEED" ] || SEED=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
export X86VCPU_FUZZ_CASES=$N X86VCPU_FUZZ_SEED=$SEED X86VCPU_FUZZ_STRICT=${STRICT:-0}
[ -n "$REPLAY" ] && export X86VCPU_FUZZ_REPLAY=$REPLAY
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -n "$REPLAY" ]; then echo "fuzz: replaying case $REPLAY"; else echo "fuzz: seed $SEED, $N cases"; fi
start=$(date +%s)
swift test --filter 'HandlerFuzzTests' 2>&1 | tee "$log" | grep -E '^fuzz|TRAP|^case seed|^  |^outcome|^known|✘|error:|Test run with'
result=${PIPESTATUS[0]}
echo "fuzz: $(( $(date +%s) - start )) s"
if [ "$result" -ne 0 ]; then
    # The test lists failing cases with their replay commands; a trap kills it
    # first, and the trap reporter names the cases that were running.
    grep -q 'TRAP in case' "$log" && grep 'TRAP in case' "$log"
    [ -n "$REPLAY" ] && { echo "fuzz: case $REPLAY FAILED"; exit 1; }
    echo "fuzz: FAILED (seed $SEED; rerun: make fuzz N=$N SEED=$SEED)"
    exit 1
fi
if [ -n "$REPLAY" ]; then echo "fuzz: case $REPLAY passed (or is a known finding)"; else echo "fuzz: passed (seed $SEED)"; fi
