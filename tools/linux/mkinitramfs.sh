#!/usr/bin/env bash
# Builds the Linux guest's initramfs: static busybox, the rdtsc and vecstate
# helpers and init (beside this script) as /init.
#   mkinitramfs.sh OUTDIR      (OUTDIR = build/linux; runs fetch.sh there first
#                               if OUTDIR/busybox is missing)
# Writes OUTDIR/initramfs.cpio.gz. The archive is written by mkcpio.py (the
# newc format, as the kernel's gen_init_cpio does): no cpio tool, and no root
# for the /dev/console node the kernel opens before /init runs.
set -euo pipefail
out=${1:?usage: mkinitramfs.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$out/busybox" ] || "$here/fetch.sh" "$out"

# The TSC reader (see rdtsc.asm) and the vector-state check (vecstate.asm).
for tool in rdtsc vecstate; do
    nasm -f elf64 -w+all -w-unknown-warning -w+error -o "$out/$tool.o" "$here/$tool.asm"
    ld -static -nostdlib -o "$out/$tool" "$out/$tool.o"
done

spec=$out/initramfs.spec
{
    echo "dir /bin 0755"
    echo "dir /sbin 0755"
    echo "dir /usr 0755"
    echo "dir /usr/bin 0755"
    echo "dir /usr/sbin 0755"
    echo "dir /dev 0755"
    echo "dir /proc 0555"
    echo "dir /sys 0555"
    echo "dir /tmp 01777"
    echo "dir /root 0700"
    echo "dir /etc 0755"
    echo "nod /dev/console 0600 c 5 1"
    echo "nod /dev/null 0666 c 1 3"
    echo "nod /dev/ttyS0 0660 c 4 64"
    echo "file /bin/busybox $out/busybox 0755"
    echo "file /bin/rdtsc $out/rdtsc 0755"
    echo "file /bin/vecstate $out/vecstate 0755"
    echo "file /init $here/init 0755"
    # Every applet as a symlink to /bin/busybox (busybox runs on the build host).
    "$out/busybox" --list-full | while read -r path; do
        [ "$path" = bin/busybox ] || echo "slink /$path /bin/busybox 0777"
    done
} > "$spec"
python3 "$here/mkcpio.py" "$spec" "$out/initramfs.cpio"
gzip -n -9 -f "$out/initramfs.cpio"
echo "mkinitramfs.sh: $out/initramfs.cpio.gz ($(stat -c %s "$out/initramfs.cpio.gz") bytes)"
