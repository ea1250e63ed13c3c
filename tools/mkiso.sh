#!/usr/bin/env bash
# Builds a GRUB ISO. Usage:
#   mkiso.sh OUT.iso KERNEL [--timeout N] --entry TITLE CMDLINE [--module FILE ARGS]... [--entry ...]
#   mkiso.sh OUT.iso KERNEL user        the menu `make iso` ships
# Modules follow Xen's convention: the first module2 line of an entry is the
# guest, its string after the path the guest's command line.
set -euo pipefail
out=$1; kernel=$2; shift 2
if [ "${1:-}" = user ]; then
    g=$(dirname "$kernel")/guests
    set -- --timeout 2 \
        --entry "X86VCPU: hello guest (real mode)" "log=info" --module "$g/hello.bin" "" \
        --entry "X86VCPU: mode-switch guest (real -> long mode)" "log=info" --module "$g/modeswitch.bin" "" \
        --entry "X86VCPU: timer guest (injected interrupts)" "log=info" --module "$g/timer.bin" "" \
        --entry "X86VCPU: CPUID guest" "log=info" --module "$g/cpuid.bin" "" \
        --entry "X86VCPU hypervisor alone (debug log)" "log=debug"
fi
timeout=0
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/boot/grub"
cp "$kernel" "$root/boot/kernel.elf"
cfg="$root/boot/grub/grub.cfg"
entries=""
n=0; m=0
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) timeout=$2; shift 2 ;;
    --entry)
        [ $n -gt 0 ] && entries+=$'    boot\n}\n'
        entries+="menuentry \"$2\" {"$'\n'"    multiboot2 /boot/kernel.elf $3"$'\n'
        n=$((n + 1)); shift 3 ;;
    --module)
        [ -f "$2" ] || { echo "mkiso: module $2 not found" >&2; exit 1; }
        m=$((m + 1))
        name="mod$m-$(basename "$2")"
        cp "$2" "$root/boot/$name"
        entries+="    module2 /boot/$name $3"$'\n'
        shift 3 ;;
    *) echo "mkiso: unknown argument $1" >&2; exit 1 ;;
    esac
done
[ $n -gt 0 ] || { echo "mkiso: no --entry given" >&2; exit 1; }
entries+=$'    boot\n}\n'
{
    echo "serial --unit=0 --speed=115200"
    echo "terminal_input serial console"
    echo "terminal_output serial console"
    echo "set timeout=$timeout"
    echo "set default=0"
    printf '%s' "$entries"
} > "$cfg"
grub-mkrescue -o "$out" "$root" >/dev/null 2>&1 || { grub-mkrescue -o "$out" "$root"; exit 1; }
