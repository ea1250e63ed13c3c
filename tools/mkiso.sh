#!/usr/bin/env bash
# Builds a GRUB ISO: every grub.cfg the project boots is written here.
#   mkiso.sh OUT.iso KERNEL [--timeout N] ENTRY...
#   mkiso.sh OUT.iso KERNEL user        the menu `make iso` ships
# An ENTRY is a menu entry followed by its modules:
#   --entry TITLE CMDLINE               the hypervisor: multiboot2 KERNEL CMDLINE
#   --bare TITLE LOADER FILE CMDLINE    FILE booted by GRUB alone (no hypervisor):
#                                       LOADER FILE CMDLINE, where LOADER is
#                                       multiboot (v1), multiboot2 or linux
#   --module FILE ARGS                  module2 FILE ARGS (hypervisor, multiboot2),
#                                       module FILE ARGS (multiboot), or for linux
#                                       an initrd (ARGS empty; several make one
#                                       initrd line)
# KERNEL may be - when every entry is --bare. The hypervisor's modules follow
# Xen's convention: the first module2 line of an entry is the guest, its
# string after the path the guest's command line. --timeout: seconds the menu
# waits (default 0); the first entry is the default.
set -euo pipefail
usage() { echo "mkiso: $*" >&2; sed -n '3,13s/^# \{0,1\}//p' "$0" >&2; exit 1; }
[ $# -ge 2 ] || usage "OUT.iso and KERNEL needed"
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
[ "$kernel" = - ] || cp "$kernel" "$root/boot/kernel.elf"

# put FILE NAME: copies FILE into the ISO as /boot/NAME.
put() {
    [ -f "$1" ] || { echo "mkiso: $1 not found" >&2; exit 1; }
    cp "$1" "$root/boot/$2"
}

entries=""; initrd=""
n=0; m=0; loader=""
# Ends the open entry (a linux entry's initrd files go on one line).
close() {
    [ $n -gt 0 ] || return 0
    [ -z "$initrd" ] || entries+="    initrd$initrd"$'\n'
    entries+=$'    boot\n}\n'
    initrd=""
}
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) [ $# -ge 2 ] || usage "--timeout N"; timeout=$2; shift 2 ;;
    --entry)
        [ $# -ge 3 ] || usage "--entry TITLE CMDLINE"
        [ "$kernel" != - ] || usage "--entry boots KERNEL, which is -"
        close; n=$((n + 1)); loader=multiboot2
        entries+="menuentry \"$2\" {"$'\n'"    multiboot2 /boot/kernel.elf $3"$'\n'
        shift 3 ;;
    --bare)
        [ $# -ge 5 ] || usage "--bare TITLE LOADER FILE CMDLINE"
        case $3 in multiboot|multiboot2|linux) ;; *) usage "unknown loader $3" ;; esac
        close; n=$((n + 1)); loader=$3
        name="bare$n-$(basename "$4")"
        put "$4" "$name"
        entries+="menuentry \"$2\" {"$'\n'"    $loader /boot/$name $5"$'\n'
        shift 5 ;;
    --module)
        [ $# -ge 3 ] || usage "--module FILE ARGS"
        [ $n -gt 0 ] || usage "--module before any entry"
        m=$((m + 1))
        name="mod$m-$(basename "$2")"
        put "$2" "$name"
        case $loader in
        multiboot) entries+="    module /boot/$name $3"$'\n' ;;
        multiboot2) entries+="    module2 /boot/$name $3"$'\n' ;;
        linux) [ -z "$3" ] || usage "an initrd takes no arguments ($2 $3)"
               initrd+=" /boot/$name" ;;
        esac
        shift 3 ;;
    *) usage "unknown argument $1" ;;
    esac
done
[ $n -gt 0 ] || usage "no --entry or --bare given"
close
{
    echo "serial --unit=0 --speed=115200"
    echo "terminal_input serial console"
    echo "terminal_output serial console"
    # One ISO for BIOS and UEFI (grub-mkrescue makes it hybrid when both
    # grub-pc-bin and grub-efi-amd64-bin are installed). BIOS keeps EGA text
    # (the kernel's framebuffer request is only a preference); UEFI has no
    # text mode, so GRUB needs its GOP driver to hand over a framebuffer.
    echo 'if [ "$grub_platform" = efi ]; then insmod all_video; else set gfxpayload=text; fi'
    echo "set timeout=$timeout"
    echo "set default=0"
    printf '%s' "$entries"
} > "$root/boot/grub/grub.cfg"
for d in /usr/lib/grub/i386-pc /usr/lib/grub/x86_64-efi; do
    [ -d "$d" ] || { echo "mkiso: $d missing (grub-pc-bin, grub-efi-amd64-bin): the ISO would not boot both ways" >&2; exit 1; }
done
grub-mkrescue -o "$out" "$root" >/dev/null 2>&1 || { grub-mkrescue -o "$out" "$root"; exit 1; }
