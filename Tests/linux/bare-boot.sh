#!/usr/bin/env bash
# Boots the Debian guest kernel + initramfs BARE (no hypervisor) from a GRUB
# ISO, for the boot-overhead comparison with the same kernel under the
# hypervisor.
#   bare-boot.sh [--engine bochs|qemu] [--timeout S] [--ips N] [--megs N]
#                [--cmdline "..."] [--pt] [--cpus N] OUTDIR
# OUTDIR (= build/linux) must hold vmlinuz and initramfs.cpio.gz (make
# linux-assets). Writes OUTDIR/bare-ENGINE.iso and the serial transcript
# OUTDIR/bare-ENGINE.txt; prints a summary and exits 0 when the transcript has
# the userspace marker, the right `uname:` line and the kernel's halt.
#
# The measurement. In Bochs (sync=none) the TSC advances one tick per emulated
# instruction from reset, and over halted stretches by the ticks skipped
# (ips ticks per emulated second). /init's first command is /bin/rdtsc, which
# prints "X86VCPU-TSC <n>": n is the emulated instructions (+ idle ticks) from
# power-on through BIOS, GRUB, the kernel's own unpacking and init up to the
# first command of /init. Neither GRUB nor Linux writes the TSC, so the count
# is the same kind of number under the hypervisor as long as it does not
# offset the guest's TSC. /init also prints the kernel's "Run /init" line from
# dmesg and the kernel's TSC frequency, for reference only: on
# corei7_skylake_x the kernel takes 3500 MHz from CPUID while Bochs's PIT runs
# at ips, so its timestamps are not emulated seconds.
# --pt: the passthrough check instead (make linux-pt-assets): the same
# bzImage with initramfs-pt.cpio.gz (tools/linux/init-passthrough), the known
# disk OUTDIR/disk.img on ata0-master (the CD on ata1-master) and the plain
# command line $linux_cmdline_passthrough (cmdline.sh: APIC, IOAPIC, ACPI
# on). Writes OUTDIR/bare-pt-ENGINE.{iso,txt}; passes when every PT- line
# says what bare hardware must (disk ok, the local APIC timer ticking, the
# IOAPIC routing the disk's interrupt, ACPI tables, PCI devices, no
# hypervisor flag), and reports whether the emulator switched itself off on
# the ACPI power-off (S5) or had to be ended.
# With acpi=off, `poweroff -f` halts the CPU ("reboot: System halted") rather
# than switching it off: the script ends the emulator when that line appears.
set -uo pipefail
tools=$(cd "$(dirname "$0")/../../tools" && pwd)
engine=bochs; limit=""; ips=100000000; megs=512
source "$tools/linux/cmdline.sh"
cmdline=""      # --cmdline replaces the default whole
pt=0; cpus=1
while [ $# -gt 1 ]; do
    case $1 in
    --engine) engine=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --ips) ips=$2; shift 2 ;;
    --megs) megs=$2; shift 2 ;;
    --cmdline) cmdline=$2; shift 2 ;;
    --pt) pt=1; shift ;;
    --cpus) cpus=$2; shift 2 ;;
    *) echo "bare-boot.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
out=${1:?usage: bare-boot.sh [options] OUTDIR}
[ -n "$limit" ] || { [ "$engine" = bochs ] && limit=900 || limit=90; }
if [ $pt = 1 ]; then
    initrd=initramfs-pt.cpio.gz; tag=bare-pt-$engine; [ -n "$cmdline" ] || cmdline=$linux_cmdline_passthrough
    assets="make linux-pt-assets"; needed="vmlinuz $initrd version disk.img"
else
    initrd=initramfs.cpio.gz; tag=bare-$engine; [ -n "$cmdline" ] || cmdline="$linux_cmdline quiet"
    assets="make linux-assets"; needed="vmlinuz $initrd version"
fi
for f in $needed; do
    [ -f "$out/$f" ] || { echo "bare-boot.sh: $out/$f missing (run $assets)" >&2; exit 2; }
done

iso=$out/$tag.iso
log=$out/$tag.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$tools/mkiso.sh" "$iso" - --bare "Debian $(cat "$out/version") bare" linux "$out/vmlinuz" "$cmdline" \
    --module "$out/$initrd" "" || exit 1
# The drives: the CD alone on ata0-master, or (--pt) the disk there and the CD
# on the secondary channel. The disk is a private copy (Bochs opens it
# read-write; QEMU takes a snapshot).
if [ $pt = 1 ]; then
    cp "$out/disk.img" "$work/disk.img"
    qemu_drives=(-drive "file=$work/disk.img,format=raw,if=ide,index=0,media=disk"
                 -drive "file=$iso,format=raw,if=ide,index=2,media=cdrom" -boot d)
    bochs_drives="ata0-master: type=disk, path=$work/disk.img, mode=flat
ata1: enabled=1, ioaddr1=0x170, ioaddr2=0x370, irq=15
ata1-master: type=cdrom, path=$iso, status=inserted"
else
    qemu_drives=(-cdrom "$iso")
    bochs_drives="ata0-master: type=cdrom, path=$iso, status=inserted"
fi

rm -f "$log"; touch "$log"
case $engine in
qemu)
    timeout -k 5 "$limit" qemu-system-x86_64 -accel tcg -m "$megs" -smp "$cpus" "${qemu_drives[@]}" \
        -serial "file:$log" -display none -no-reboot -monitor none \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 2>"$work/stderr" &
    ;;
bochs)
    cat > "$work/bochsrc" <<RC
megs: $megs
cpu: model=corei7_skylake_x, count=$cpus, ips=$ips, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
$bochs_drives
boot: cdrom
com1: enabled=1, mode=file, dev=$log
clock: sync=none, time0=local
magic_break: enabled=1
speaker: enabled=0
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
display_library: rfb, options="timeout=0"
log: $work/bochs.log
panic: action=fatal
error: action=report
RC
    printf 'c\nquit\n' > "$work/cmds.rc"
    timeout -k 5 "$limit" bochs -q -f "$work/bochsrc" -rc "$work/cmds.rc" </dev/null >"$work/stdout" 2>&1 &
    ;;
*) echo "bare-boot.sh: unknown engine $engine (bochs, qemu)" >&2; exit 2 ;;
esac
emu=$!
start=$(date +%s.%N)
now() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# Watch the transcript: note the wall time of the first /init line, end the
# emulator once the kernel has halted (or panicked). After "Power down" (ACPI
# S5) the emulator gets 15 s to switch itself off before it is ended.
t_init=""; ended=""; self_off=""
while kill -0 "$emu" 2>/dev/null; do
    if [ -z "$t_init" ] && grep -aq 'X86VCPU-TSC ' "$log"; then t_init=$(now); fi
    if grep -aqE 'reboot: (System halted|Power down)|Kernel panic' "$log"; then
        ended=$(now)
        if grep -aq 'reboot: Power down' "$log"; then
            for _ in $(seq 75); do kill -0 "$emu" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$emu" 2>/dev/null; then self_off=no; else self_off=yes; fi
        else
            sleep 1
        fi
        kill "$emu" 2>/dev/null; break
    fi
    sleep 0.2
done
wait "$emu" 2>/dev/null
total=$(now)
# The emulator may switch off before the loop above sees the last line.
if [ -z "$ended" ] && grep -aq 'reboot: Power down' "$log"; then ended=$total; self_off=yes; fi
[ "$engine" = bochs ] && cp "$work/bochs.log" "$log.bochs.log" 2>/dev/null

tsc=$(tr -d '\r' < "$log" | awk 'sub(/.*X86VCPU-TSC /, "") { print $1; exit }')
echo "bare-boot.sh: $engine, kernel $(cat "$out/version"), cmdline: $cmdline"
echo "  transcript $log"
echo "  wall: /init after ${t_init:-?} s, halted after ${ended:-?} s, emulator ended after $total s (limit $limit s)"
[ -z "$self_off" ] || echo "  emulator switched itself off on the ACPI power-off: $self_off"
if [ -n "$tsc" ]; then
    echo "  TSC at /init: $tsc$([ "$engine" = bochs ] && awk -v t="$tsc" -v i="$ips" 'BEGIN { printf " (Bochs: instructions + idle ticks; %.2f emulated s at ips=%d)", t / i, i }')"
fi
tr -d '\r' < "$log" | grep -aE 'tsc: |Run /init' | sed 's/^/  kernel: /' | sort -u
ok=1
if [ $pt = 1 ]; then
    tr -d '\r' < "$log" | grep -aE '^PT-' | sed 's/^/  /'
    # What bare hardware must show (Tests/system/passthrough-cases.sh checks
    # the same lines).
    for p in '^PT-MODULES ok' '^PT-DISK .* ok$' '^PT-LOC-TICKING yes' '^PT-IOAPIC yes' \
            '^PT-ATA-IRQ .* chip=IO-APIC ok$' '^PT-ACPI tables: .*APIC' '^PT-ACPI yes' \
            '^PT-PCI [1-9][0-9]* devices:' "^PT-CPUS $cpus\$" '^PT-VECSTATE ok' '^PT-HYPERVISOR no' '^PT-DONE' \
            'reboot: Power down'; do
        tr -d '\r' < "$log" | grep -aqE "$p" || { echo "  missing: $p"; ok=0; }
    done
    if [ $ok = 1 ]; then echo "PASS linux-pt-bare-$engine"; exit 0; fi
    echo "FAIL linux-pt-bare-$engine; transcript tail:"; tail -n 30 "$log" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/^/    | /'
    exit 1
fi
for p in '^X86VCPU-GUEST-USERSPACE-OK' "^uname: $(cat "$out/version")\$" '^hypervisor flag: (yes|no)' 'reboot: (System halted|Power down)'; do
    tr -d '\r' < "$log" | grep -aqE "$p" || { echo "  missing: $p"; ok=0; }
done
tr -d '\r' < "$log" | grep -aE '^hypervisor flag' | sed 's/^/  /'
if [ $ok = 1 ]; then echo "PASS linux-bare-$engine"; else
    echo "FAIL linux-bare-$engine; transcript tail:"; tail -n 20 "$log" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/^/    | /'; exit 1
fi
