#!/usr/bin/env bash
# System tests: build an ISO per case, boot it with a wall-clock limit, and
# decide from the serial transcript (and QEMU's port-0xF4 status where it
# applies), never from the emulator's exit status alone.
#   run.sh KERNEL [CASE...]    (no CASE: all of them)
set -uo pipefail
kernel=$1; shift
only=("$@")
here=$(cd "$(dirname "$0")" && pwd)
tools=$(cd "$here/../../tools" && pwd)
out=build/systest
mkdir -p "$out"
passed=0; failed=0; failures=()

# check CASE TRANSCRIPT PATTERN...: every pattern (grep -E) must match a line;
# a pattern starting with '!' must match none.
check() {
    local name=$1 file=$2 ok=1; shift 2
    for p in "$@"; do
        if [ "${p:0:1}" = "!" ]; then
            if grep -aqE -- "${p:1}" "$file"; then echo "  $name: unexpected: ${p:1}"; ok=0; fi
        elif ! grep -aqE -- "$p" "$file"; then
            echo "  $name: missing: $p"; ok=0
        fi
    done
    [ $ok = 1 ]
}

# boot_case NAME ENGINE LIMIT QEMU_STATUS ISO_ARGS... -- PATTERNS...
# ISO_ARGS may include --ips N, --megs N, --cpu MODEL (Bochs), --uefi (OVMF), --screendump PATTERN
# (the screen saved to build/systest/NAME.ppm once PATTERN is on serial), --disk IMG (a raw disk
# on the first ATA channel, the ISO on the second) and --cpus N (boot.sh).
# QEMU_STATUS: the exit code QEMU must give ((status << 1) | 1), or - to skip.
boot_case() {
    local name=$1 engine=$2 limit=$3 want=$4; shift 4
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then return; fi
    local iso_args=() engine_args=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        case $1 in
        --ips|--megs|--cpu|--disk|--cpus) engine_args+=("$1" "$2"); shift 2 ;;
        --uefi) engine_args+=("$1"); shift ;;
        --screendump) engine_args+=("$1" "$out/$name.ppm" "$2"); shift 2 ;;
        *) iso_args+=("$1"); shift ;;
        esac
    done
    shift
    local iso=$out/$name.iso log=$out/$name.txt start rc ok=1
    rm -f "$log" "$out/$name.ppm"
    if ! "$tools/mkiso.sh" "$iso" "$kernel" "${iso_args[@]}"; then
        echo "FAIL $name: could not build the ISO"; failed=$((failed + 1)); failures+=("$name"); return
    fi
    start=$(date +%s.%N)
    "$tools/boot.sh" --engine "$engine" "${engine_args[@]}" --serial "$log" --timeout "$limit" "$iso" >/dev/null 2>&1
    rc=$?
    local secs; secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    touch "$log"
    if [ $rc = 124 ] || [ $rc = 137 ]; then echo "  $name: timed out after ${limit}s"; ok=0; fi
    if [ "$want" != - ] && [ "$rc" != "$want" ]; then echo "  $name: QEMU exit status $rc, expected $want"; ok=0; fi
    check "$name" "$log" "$@" || ok=0
    verdict "$name" $ok "${engine}, ${secs}s" "$log"
}

# verdict NAME OK DETAIL TRANSCRIPT: counts the case; PASS, or FAIL with the
# transcript's tail.
verdict() {
    local name=$1 ok=$2 detail=$3 log=$4
    if [ "$ok" = 1 ]; then
        echo "PASS $name ($detail)"; passed=$((passed + 1))
    else
        echo "FAIL $name ($detail); transcript tail ($log):"
        tail -n 25 "$log" | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/^/    | /'
        failed=$((failed + 1)); failures+=("$name")
    fi
}

# screen_case NAME TEXT: the screendump boot_case NAME saved must show TEXT on
# its first text row, in the kernel's font (Tests/system/check-screen.py).
screen_case() {
    local name=$1 text=$2
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then return; fi
    if [ -f "$out/$name.ppm" ] && python3 "$here/check-screen.py" "$out/$name.ppm" \
            "$here/../../Sources/HostBoot/Font8x16.swift" "$text"; then
        echo "PASS $name-pixels"; passed=$((passed + 1))
    else
        echo "FAIL $name-pixels ($out/$name.ppm)"; failed=$((failed + 1)); failures+=("$name-pixels")
    fi
}

# The kernel must not reach the heap or reference counting: no call to the
# Swift runtime's allocation or retain/release entry points anywhere.
static_case() {
    local calls
    calls=$(objdump -d --no-show-raw-insn "$kernel" | grep -E 'call.*<(swift_allocObject|swift_retain|swift_release|swift_slowAlloc|posix_memalign|malloc)' || true)
    if [ -z "$calls" ] && ! nm "$kernel" | grep -qE ' U '; then
        echo "PASS kernel-no-heap (no allocation or refcount calls, no undefined symbols)"; passed=$((passed + 1))
    else
        echo "FAIL kernel-no-heap:"; echo "$calls" | head; nm "$kernel" | grep ' U '
        failed=$((failed + 1)); failures+=(kernel-no-heap)
    fi
}
if [ ${#only[@]} -eq 0 ]; then static_case; fi

source "$here/cases.sh"
source "$here/guest-cases.sh"
source "$here/linux-cases.sh"
# Linux owning the machine's devices: bare, and under platform=passthrough.
source "$here/passthrough-cases.sh"
# Hostile guests: each class of forbidden guest behaviour gets its fault.
source "$here/hostile-cases.sh"
# Every CPU in VMX root mode.
source "$here/smp-cases.sh"

echo "system tests: $passed passed, $failed failed"
[ $failed = 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
