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
"$root/tools/mkiso.sh" "$tmp/mbtest.iso" - --bare "mbtest (multiboot v1, bare)" multiboot "$elf" hello-cmdline \
    --module "$here/mbtest-module.txt" mod-arg || exit 2
"$root/tools/boot.sh" --engine qemu --serial "$tmp/serial.txt" --timeout 30 "$tmp/mbtest.iso"
rc=$?
tr -d '\r' < "$tmp/serial.txt" | grep -a '^mbtest' > "$tmp/lines.txt"
cat "$tmp/lines.txt"
ok=1
[ "$rc" = 1 ] || { echo "mbtest-bare: QEMU exit status $rc, expected 1 (port 0xF4 <- 0)"; ok=0; }
for p in '^mbtest: magic ok$' \
         '^mbtest: mem_lower=[0-9]+K mem_upper=[0-9]+K$' \
         '^mbtest: mmap 0000000000000000 [0-9a-f]{16} 00000001$' \
         '^mbtest: mmap 0000000000100000 [0-9a-f]{16} 00000001$' \
         "^mbtest: cmdline '([^ ']+ )?hello-cmdline'\$" \
         '^mbtest: modules 1$' \
         "^mbtest: module 0 size=39 string '([^ ']+ )?mod-arg'\$" \
         "^mbtest: module 0 'module text: 012'\$" \
         '^mbtest: all checks passed$'; do
    grep -qE -- "$p" "$tmp/lines.txt" || { echo "mbtest-bare: missing: $p"; ok=0; }
done
! grep -q FAIL "$tmp/lines.txt" || ok=0
if [ $ok = 1 ]; then echo "PASS mbtest-bare"; else echo "FAIL mbtest-bare"; exit 1; fi
