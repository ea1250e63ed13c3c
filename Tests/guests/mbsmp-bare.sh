#!/usr/bin/env bash
# Boots the mbsmp multiboot (v1) kernel under plain GRUB (no hypervisor) and
# checks its transcript: the check that mbsmp itself starts the other CPUs.
#   mbsmp-bare.sh [CPUS] [ENGINE]     CPUS defaults to 2, ENGINE qemu or bochs
# QEMU's isa-debug-exit turns status 0 on port 0xF4 into exit status 1; bare
# Bochs has no such port, so it runs until its time limit and only the
# transcript is checked.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cpus=${1:-2}
engine=${2:-qemu}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/mbsmp.bin
nasm -f bin -w+all -w+error -I "$here/" -o "$bin" "$here/mbsmp.asm" || exit 2
grub-file --is-x86-multiboot "$bin" || { echo "mbsmp-bare: no multiboot header" >&2; exit 2; }
"$root/tools/mkiso.sh" "$tmp/mbsmp.iso" - --bare "mbsmp (bare)" multiboot "$bin" "" || exit 2
case $engine in
qemu) opts=(--engine qemu --timeout 60) ;;
bochs) opts=(--engine bochs --timeout 120 --ips 50000000) ;;
*) echo "mbsmp-bare: unknown engine $engine" >&2; exit 2 ;;
esac
"$root/tools/boot.sh" "${opts[@]}" --cpus "$cpus" --serial "$tmp/serial.txt" "$tmp/mbsmp.iso"
rc=$?
tr -d '\r' < "$tmp/serial.txt" | grep -a '^mbsmp' > "$tmp/lines.txt"
cat "$tmp/lines.txt"
ok=1
if [ "$engine" = qemu ]; then
    [ "$rc" = 1 ] || { echo "mbsmp-bare: QEMU exit status $rc, expected 1 (port 0xF4 <- 0)"; ok=0; }
fi
others=$((cpus - 1)); [ $others -le 3 ] || others=3
pats=('^mbsmp: magic ok$' '^mbsmp: boot cpu apic id [0-9a-f]{2}$' "^mbsmp: MADT lists $cpus CPUs\$")
if [ $others = 0 ]; then
    pats+=('^mbsmp: no other CPU to start$')
else
    pats+=("^mbsmp: $((others + 1)) CPUs running\$"
           '^mbsmp: cpu [0-9a-f]{2} started again at vector 09$'
           '^mbsmp: cpu [0-9a-f]{2} restart ok$')
    n=$(grep -cE '^mbsmp: cpu [0-9a-f]{2} running in protected mode \(cpuid apic id [0-9a-f]{2}, hypervisor (yes|no)\)$' "$tmp/lines.txt")
    [ "$n" = $others ] || { echo "mbsmp-bare: $n CPUs reported protected mode, expected $others"; ok=0; }
    n=$(grep -cE '^mbsmp: cpu [0-9a-f]{2} workload ok$' "$tmp/lines.txt")
    [ "$n" = $((others + 1)) ] || { echo "mbsmp-bare: $n workloads ok, expected $((others + 1))"; ok=0; }
fi
pats+=('^mbsmp: all checks passed$')
for p in "${pats[@]}"; do
    grep -qE -- "$p" "$tmp/lines.txt" || { echo "mbsmp-bare: missing: $p"; ok=0; }
done
! grep -q FAIL "$tmp/lines.txt" || ok=0
if [ $ok = 1 ]; then echo "PASS mbsmp-bare ($engine, $cpus CPUs)"; else echo "FAIL mbsmp-bare ($engine, $cpus CPUs)"; exit 1; fi
