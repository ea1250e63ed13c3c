#!/usr/bin/env bash
# Builds the ISO `make run` boots for GUEST, and prints the engine options it
# wants.   guest-iso.sh GUEST OUT.iso KERNEL
#   linux        the Debian kernel (PVH) on the passthrough platform: the
#                machine's devices, a disk (build/linux/disk.img), its ACPI and
#                interrupt controllers; a busybox shell on the console after
#                the passthrough checks (tools/linux/init-passthrough)
#   linux-bzimage  the same through the bzImage boot protocol
#   linux-isolated the Debian kernel on the isolated platform (private RAM,
#                noapic nolapic acpi=off), a busybox shell
#   menu         the menu of test guests (`make iso`)
#   NAME         a test guest built to build/guests (hello, timer, modeswitch, ...)
set -euo pipefail
guest=$1; out=$2; kernel=$3
here=$(cd "$(dirname "$0")" && pwd)
build=$(dirname "$kernel")
source "$here/linux/cmdline.sh"
case $guest in
linux|linux-bzimage)
    image=$build/linux/vmlinux
    [ "$guest" = linux-bzimage ] && image=$build/linux/vmlinuz
    "$here/mkiso.sh" "$out" "$kernel" --timeout 1 \
        --entry "X86VCPU: Debian Linux on the passthrough platform" "log=info platform=passthrough" \
        --module "$image" "$linux_cmdline_passthrough x86vcpu.shell" \
        --module "$build/linux/initramfs-pt.cpio.gz" ""
    echo "--ips 100000000 --megs 512 --disk $build/linux/disk.img" ;;
linux-isolated)
    "$here/mkiso.sh" "$out" "$kernel" --timeout 1 \
        --entry "X86VCPU: Debian Linux on the isolated platform" "log=info platform=isolated guest_mem=256M" \
        --module "$build/linux/vmlinux" "$linux_cmdline x86vcpu.shell" --module "$build/linux/initramfs.cpio.gz" ""
    echo "--ips 100000000 --megs 512" ;;
menu)
    "$here/mkiso.sh" "$out" "$kernel" user
    echo "" ;;
*)
    [ -f "$build/guests/$guest.bin" ] || {
        echo "unknown GUEST=$guest: use linux, linux-bzimage, linux-isolated, menu, or one of:" \
             $(ls "$build/guests" | sed -n 's/\.bin$//p') >&2; exit 2; }
    "$here/mkiso.sh" "$out" "$kernel" --timeout 1 \
        --entry "X86VCPU: $guest guest" "log=info" --module "$build/guests/$guest.bin" ""
    echo "" ;;
esac
