#!/usr/bin/env bash
# Boots an ISO in QEMU (TCG or KVM) or Bochs.
#   boot.sh --engine auto|qemu|kvm|bochs|qemu-uefi|kvm-uefi [--interactive | --serial FILE --timeout S] [--cpu MODEL] [--ips N] [--megs N]
#           [--debugger COMMANDS] [--uefi] [--screendump PPM PATTERN] [--disk IMG] [--cpus N] ISO
# --disk: a flat raw disk image as the first ATA disk (ata0-master, QEMU's
# IDE index 0) and the ISO on the secondary channel (ata1-master); the BIOS
# still boots the CD. The guest's writes go to a private copy (Bochs) or a
# snapshot (QEMU): IMG is never modified. Without --disk the ISO stays on
# ata0-master. --cpus: the number of CPUs (Bochs cpu: count, QEMU -smp).
# --uefi (QEMU): boot through OVMF (Debian's ovmf) on a q35 machine instead of
# the BIOS; the same ISO boots both ways.
# --screendump (QEMU): no isa-debug-exit device (the kernel halts instead of
# exiting); once PATTERN (grep -E) is in the serial transcript, the monitor
# saves the screen to PPM and QEMU quits.
# --debugger (Bochs): a file of debugger commands to run instead of
# "continue, quit"; the debugger's output is kept in FILE.debugger.txt.
# auto picks KVM when /dev/kvm can really run VMX (an Intel host with nested
# VMX), else Bochs with a VMX CPU model. Non-interactive runs write the serial
# transcript to FILE and end after S seconds at most; the caller decides pass
# or fail from the transcript.
set -uo pipefail
engine=auto; interactive=0; serial=""; limit=60; cpu=corei7_skylake_x; ips=4000000; megs=256; debugger=
uefi=0; shot=""; shot_after=""; disk=""; cpus=1
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
    --uefi) uefi=1; shift ;;
    --screendump) shot=$2; shot_after=$3; shift 3 ;;
    --disk) disk=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    *) echo "boot.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
iso=$1
[ -z "$disk" ] || [ -f "$disk" ] || { echo "boot.sh: disk image $disk not found" >&2; exit 2; }
case $cpus in ''|*[!0-9]*|0) echo "boot.sh: --cpus takes a positive number" >&2; exit 2 ;; esac

# qemu-uefi, kvm-uefi: the engine through OVMF (as --uefi).
case $engine in qemu-uefi|kvm-uefi) engine=${engine%-uefi}; uefi=1 ;; esac

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
    common=(-m "$megs" -display none -no-reboot -smp "$cpus")
    if [ -n "$disk" ]; then
        # IDE index 0 = primary master, 2 = secondary master (Bochs's ata1-master).
        common+=(-drive "file=$disk,format=raw,if=ide,index=0,media=disk,snapshot=on"
                 -drive "file=$iso,format=raw,if=ide,index=2,media=cdrom" -boot d)
    else
        common+=(-cdrom "$iso")
    fi
    if [ $uefi = 1 ]; then
        ovmf=/usr/share/OVMF
        [ -r $ovmf/OVMF_CODE_4M.fd ] || { echo "boot.sh: $ovmf/OVMF_CODE_4M.fd missing (Debian package ovmf)" >&2; exit 2; }
        fw=$(mktemp -d)
        trap 'rm -rf "$fw"' EXIT
        cp $ovmf/OVMF_VARS_4M.fd "$fw/vars.fd"   # UEFI variables are written: a private copy
        common+=(-machine q35
                 -drive if=pflash,format=raw,unit=0,readonly=on,file=$ovmf/OVMF_CODE_4M.fd
                 -drive "if=pflash,format=raw,unit=1,file=$fw/vars.fd")
    fi
    if [ -n "$shot" ]; then
        [ $interactive = 0 ] || { echo "boot.sh: --screendump needs --serial" >&2; exit 2; }
        sock=$(mktemp -u /tmp/boot-monitor.XXXXXX)
        : > "$serial"
        timeout --foreground -k 5 "$limit" qemu-system-x86_64 "${accel[@]}" "${common[@]}" \
            -vga std -monitor "unix:$sock,server,nowait" -serial "file:$serial" &
        qemu=$!
        while kill -0 $qemu 2>/dev/null && ! grep -aqE -- "$shot_after" "$serial"; do sleep 0.5; done
        if kill -0 $qemu 2>/dev/null; then
            sleep 1   # the screen is drawn before the serial line ends; let it settle
            printf 'screendump %s\nquit\n' "$shot" | python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
for line in sys.stdin: s.sendall(line.encode()); time.sleep(1)
' "$sock"
        fi
        wait $qemu; rc=$?
        rm -f "$sock"
        exit $rc
    fi
    common+=(-monitor none -device isa-debug-exit,iobase=0xf4,iosize=0x04)
    if [ $interactive = 1 ]; then
        qemu-system-x86_64 "${accel[@]}" "${common[@]}" -serial stdio
        exit $?
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
    if [ -n "$disk" ]; then
        # A private copy: Bochs opens a flat image read-write.
        cp "$disk" "$dir/disk.img"
        drives="ata0-master: type=disk, path=$dir/disk.img, mode=flat
ata1: enabled=1, ioaddr1=0x170, ioaddr2=0x370, irq=15
ata1-master: type=cdrom, path=$iso, status=inserted"
    else
        drives="ata0-master: type=cdrom, path=$iso, status=inserted"
    fi
    cat > "$dir/bochsrc" <<RC
megs: $megs
cpu: model=$cpu, count=$cpus, ips=$ips, reset_on_triple_fault=0, ignore_bad_msrs=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
$drives
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
*) echo "boot.sh: unknown engine $engine (auto, qemu, kvm, bochs, qemu-uefi, kvm-uefi)" >&2; exit 2 ;;
esac
