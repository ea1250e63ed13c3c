#!/usr/bin/env bash
# Builds the Linux guest's initramfs: static busybox, the rdtsc and vecstate
# helpers and init (beside this script) as /init.
#   mkinitramfs.sh OUTDIR      (OUTDIR = build/linux; runs fetch.sh there first
#                               if OUTDIR/busybox is missing)
#       [--init FILE]           /init from FILE instead of init beside this script
#       [--name NAME]           write OUTDIR/NAME.cpio.gz (default initramfs)
#       [--extra SPEC]          more mkcpio.py spec lines (mkinitramfs-pt.sh's modules)
# Writes OUTDIR/initramfs.cpio.gz. The archive is written by mkcpio.py (the
# newc format, as the kernel's gen_init_cpio does): no cpio tool, and no root
# for the /dev/console node the kernel opens before /init runs.
set -euo pipefail
out=${1:?usage: mkinitramfs.sh OUTDIR [--init FILE] [--name NAME] [--extra SPEC]}
shift
here=$(cd "$(dirname "$0")" && pwd)
init=$here/init; name=initramfs; extra=/dev/null
while [ $# -gt 1 ]; do
    case $1 in
    --init) init=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    *) echo "mkinitramfs.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# = 0 ] || { echo "mkinitramfs.sh: unknown argument $1" >&2; exit 2; }
[ -x "$out/busybox" ] || "$here/fetch.sh" "$out"

# The TSC reader (see rdtsc.asm) and the vector-state check (vecstate.asm).
for tool in rdtsc vecstate; do
    nasm -f elf64 -w+all -w-unknown-warning -w+error -o "$out/$tool.o" "$here/$tool.asm"
    ld -static -nostdlib -o "$out/$tool" "$out/$tool.o"
done

spec=$out/$name.spec
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
    echo "file /init $init 0755"
    # Every applet as a symlink to /bin/busybox (busybox runs on the build host).
    "$out/busybox" --list-full | while read -r path; do
        [ "$path" = bin/busybox ] || echo "slink /$path /bin/busybox 0777"
    done
    cat "$extra"
} > "$spec"
python3 "$here/mkcpio.py" "$spec" "$out/$name.cpio"
gzip -n -9 -f "$out/$name.cpio"
echo "mkinitramfs.sh: $out/$name.cpio.gz ($(stat -c %s "$out/$name.cpio.gz") bytes)"
