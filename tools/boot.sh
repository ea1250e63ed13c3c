#!/usr/bin/env bash
# Boots an ISO in QEMU (TCG or KVM) or Bochs.
#   boot.sh --engine auto|qemu|kvm|bochs [--interactive | --serial FILE --timeout S] [--cpu MODEL] [--ips N] [--megs N]
#           [--debugger COMMANDS] ISO
# --debugger (Bochs): a file of debugger commands to run instead of
# "continue, quit"; the debugger's output is kept in FILE.debugger.txt.
# auto picks KVM when /dev/kvm can really run VMX (an Intel host with nested
# VMX), else Bochs with a VMX CPU model. Non-interactive runs write the serial
# transcript to FILE and end after S seconds at most; the caller decides pass
# or fail from the transcript.
set -uo pipefail
engine=auto; interactive=0; serial=""; limit=60; cpu=corei7_skylake_x; ips=4000000; megs=256; debugger=
while [ $# -gt 1 ]; do
    case $1 in
    --engine) engine=$2; shift 2 ;;
    --interactive) interactive=1; shift ;;
    --serial) serial=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --ips) ips=$2; shift 2 ;;
    --megs) megs=$2; shift 2 ;;
    --debugger) debugger=$2; shift 2 ;;
    *) echo "boot.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
iso=$1

kvm_has_vmx() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qw vmx /proc/cpuinfo 2>/dev/null
}
if [ "$engine" = auto ]; then
    if kvm_has_vmx; then engine=kvm; else engine=bochs; fi
    echo "boot.sh: engine $engine" >&2
fi

case $engine in
qemu|kvm)
    accel=(-accel tcg)
    [ "$engine" = kvm ] && accel=(-accel kvm -cpu host)
    common=(-m "$megs" -cdrom "$iso" -display none -no-reboot -monitor none
            -device isa-debug-exit,iobase=0xf4,iosize=0x04)
    if [ $interactive = 1 ]; then
        exec qemu-system-x86_64 "${accel[@]}" "${common[@]}" -serial stdio
    fi
    timeout --foreground -k 5 "$limit" qemu-system-x86_64 "${accel[@]}" "${common[@]}" -serial "file:$serial"
    ;;
bochs)
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    if [ $interactive = 1 ]; then
        com1="com1: enabled=1, mode=term, dev=$(tty)"
    else
        com1="com1: enabled=1, mode=file, dev=$serial"
    fi
    cat > "$dir/bochsrc" <<RC
megs: $megs
cpu: model=$cpu, count=1, ips=$ips, reset_on_triple_fault=0, ignore_bad_msrs=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path=$iso, status=inserted
boot: cdrom
$com1
port_e9_hack: enabled=1
clock: sync=none, time0=local
magic_break: enabled=1
speaker: enabled=0
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
display_library: rfb, options="timeout=0"
log: $dir/bochs.log
panic: action=fatal
error: action=report
RC
    if [ -n "$debugger" ]; then cp "$debugger" "$dir/cmds.rc"; else printf 'c\nquit\n' > "$dir/cmds.rc"; fi
    if [ $interactive = 1 ]; then
        bochs -q -f "$dir/bochsrc" -rc "$dir/cmds.rc" </dev/null >/dev/null 2>"$dir/stderr"
        rc=$?
    else
        timeout -k 5 "$limit" bochs -q -f "$dir/bochsrc" -rc "$dir/cmds.rc" </dev/null >"$dir/stdout" 2>&1
        rc=$?
        # Keep Bochs's own log beside the transcript: it explains VMX failures.
        cp "$dir/bochs.log" "$serial.bochs.log" 2>/dev/null
        [ -z "$debugger" ] || cp "$dir/stdout" "$serial.debugger.txt"
    fi
    exit $rc
    ;;
*) echo "boot.sh: unknown engine $engine (auto, qemu, kvm, bochs)" >&2; exit 2 ;;
esac
