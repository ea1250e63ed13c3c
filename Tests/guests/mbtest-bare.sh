#!/usr/bin/env bash
# Boots the multiboot (v1) test kernel under plain GRUB (no hypervisor) in
# QEMU TCG and checks its transcript: the check that mbtest itself is right.
#   mbtest-bare.sh [ELF] [ENGINE]     ELF defaults to build/guests/mbtest.elf
#                                     (built here when missing); ENGINE qemu
# GRUB's `multiboot` loads it with the command line `hello-cmdline` and one
# `module` (a text file); mbtest prints what it was given and writes status 0
# to port 0xF4, which QEMU's isa-debug-exit turns into exit status 1.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
elf=${1:-$root/build/guests/mbtest.elf}
if [ ! -f "$elf" ]; then
    mkdir -p "$(dirname "$elf")"
    nasm -f elf32 -w+all -w+error -o "${elf%.elf}.o" "$here/mbtest.asm" || exit 2
    ld -m elf_i386 -n -nostdlib -static --no-warn-rwx-segments -T "$here/mbtest.ld" \
        -o "$elf" "${elf%.elf}.o" || exit 2
fi
grub-file --is-x86-multiboot "$elf" || { echo "mbtest-bare: $elf has no multiboot header" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/iso/boot/grub"
cp "$elf" "$tmp/iso/boot/mbtest.elf"
cp "$here/mbtest-module.txt" "$tmp/iso/boot/mod.txt"
cat > "$tmp/iso/boot/grub/grub.cfg" <<'CFG'
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
menuentry "mbtest (multiboot v1, bare)" {
    multiboot /boot/mbtest.elf hello-cmdline
    module /boot/mod.txt mod-arg
    boot
}
CFG
grub-mkrescue -o "$tmp/mbtest.iso" "$tmp/iso" >/dev/null 2>&1 || { grub-mkrescue -o "$tmp/mbtest.iso" "$tmp/iso"; exit 2; }
timeout -k 5 30 qemu-system-x86_64 -accel tcg -m 256 -cdrom "$tmp/mbtest.iso" \
    -serial "file:$tmp/serial.txt" -display none -no-reboot -monitor none \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
rc=$?
tr -d '\r' < "$tmp/serial.txt" | grep -a '^mbtest' > "$tmp/lines.txt"
cat "$tmp/lines.txt"
ok=1
[ "$rc" = 1 ] || { echo "mbtest-bare: QEMU exit status $rc, expected 1 (port 0xF4 <- 0)"; ok=0; }
for p in '^mbtest: magic ok$' \
         '^mbtest: mem_lower=[0-9]+K mem_upper=[0-9]+K$' \
         '^mbtest: mmap 0000000000000000 [0-9a-f]{16} 00000001$' \
         '^mbtest: mmap 0000000000100000 [0-9a-f]{16} 00000001$' \
         "^mbtest: cmdline '(/boot/mbtest.elf )?hello-cmdline'\$" \
         '^mbtest: modules 1$' \
         "^mbtest: module 0 size=39 string '(/boot/mod.txt )?mod-arg'\$" \
         "^mbtest: module 0 'module text: 012'\$" \
         '^mbtest: all checks passed$'; do
    grep -qE -- "$p" "$tmp/lines.txt" || { echo "mbtest-bare: missing: $p"; ok=0; }
done
! grep -q FAIL "$tmp/lines.txt" || ok=0
if [ $ok = 1 ]; then echo "PASS mbtest-bare"; else echo "FAIL mbtest-bare"; exit 1; fi
