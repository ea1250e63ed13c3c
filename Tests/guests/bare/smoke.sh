#!/usr/bin/env bash
# Boots one test guest bare (no hypervisor) from a floppy, behind loader.asm.
#   smoke.sh NAME [qemu|bochs] [TIMEOUT]
# Prints the serial transcript; for QEMU also the guest's power-off status
# (QEMU's isa-debug-exit returns (status << 1) | 1). Bochs has no such port:
# it runs until the timeout. Hypervisor-only checks (CPUID signature, VMCALL,
# COM1 scratch, timer) are expected to FAIL bare.
set -uo pipefail
name=$1; engine=${2:-qemu}; limit=${3:-20}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."                     # the guests include Tests/guests/lib.inc
tmp=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "smoke: keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
nasm -f bin -w+all -w+error -o "$tmp/loader.bin" "$here/loader.asm" || exit 2
nasm -f bin -w+all -w+error -o "$tmp/guest.bin" "Tests/guests/$name.asm" || exit 2
size=$(stat -c %s "$tmp/guest.bin")
[ "$size" -le 8704 ] || { echo "smoke: $name is $size bytes, the loader reads 8704" >&2; exit 2; }
cat "$tmp/loader.bin" "$tmp/guest.bin" > "$tmp/floppy.img"
truncate -s 1474560 "$tmp/floppy.img"
case $engine in
qemu)
    timeout "$limit" qemu-system-x86_64 -accel tcg -cpu max -m 64 \
        -drive format=raw,file="$tmp/floppy.img",if=floppy -boot a \
        -serial file:"$tmp/serial.txt" -display none -no-reboot -monitor none \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04
    rc=$?
    cat "$tmp/serial.txt"
    if [ $rc = 124 ]; then echo "smoke: timed out"
    elif [ $((rc & 1)) = 1 ]; then echo "smoke: power off: status $((rc >> 1))"
    else echo "smoke: qemu exit $rc (0: reset or triple fault with -no-reboot)"; fi
    ;;
bochs)
    cat > "$tmp/bochsrc" <<RC
megs: 64
cpu: model=corei7_skylake_x, count=1, ips=4000000, reset_on_triple_fault=0, ignore_bad_msrs=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
floppya: 1_44=$tmp/floppy.img, status=inserted
boot: floppy
com1: enabled=1, mode=file, dev=$tmp/serial.txt
clock: sync=none, time0=local
display_library: rfb, options="timeout=0"
log: $tmp/bochs.log
panic: action=fatal
error: action=report
RC
    printf 'c\nquit\n' > "$tmp/cmds.rc"
    timeout -k 5 "$limit" bochs -q -f "$tmp/bochsrc" -rc "$tmp/cmds.rc" </dev/null >"$tmp/stdout" 2>&1
    [ -f "$tmp/bochs.log" ] || tail -n 5 "$tmp/stdout"
    rc=$?
    cat "$tmp/serial.txt" 2>/dev/null
    grep -aE 'triple|shutdown|PANIC' "$tmp/bochs.log" | head -5
    echo "smoke: bochs exit $rc (124: timeout, the usual end)"
    ;;
esac
