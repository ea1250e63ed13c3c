#!/usr/bin/env bash
# Fetches the Debian 12 Linux guest: the newest linux-image-6.1.0-N-amd64 and
# busybox-static (apt-get download, dpkg-deb -x; nothing is installed).
#   fetch.sh OUTDIR          (OUTDIR is build/linux by convention)
# Leaves in OUTDIR:
#   vmlinuz   the bzImage (64-bit boot protocol)
#   vmlinux   the uncompressed ELF from inside it (PVH entry: Xen note 0x12)
#   version   the kernel release (uname -r), e.g. 6.1.0-56-amd64
#   busybox   the static busybox binary
# The .deb files stay in OUTDIR as the cache: a second run downloads nothing.
# Delete OUTDIR to pick up a newer kernel.
set -euo pipefail
out=${1:?usage: fetch.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "fetch.sh: apt-get needs root here. Run:" >&2
        echo "  sudo $*" >&2
        exit 1
    fi
}

# The newest plain linux-image-6.1.0-N-amd64 apt knows (not cloud/rt/dbg);
# the -unsigned build only when no signed one exists.
pick_kernel() {
    local re
    for re in '^linux-image-6\.1\.0-[0-9]+-amd64$' '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$'; do
        apt-cache pkgnames linux-image-6.1.0- 2>/dev/null | grep -E "$re" | sort -V | tail -n 1 | grep . && return 0
    done
    return 1
}

# download PKG: apt-get download into OUTDIR unless a .deb of PKG is already there.
download() {
    local pkg=$1
    if ls "$out/${pkg}_"*.deb >/dev/null 2>&1; then return 0; fi
    need_root apt-get download "$pkg"
    (cd "$out" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null) && return 0
    echo "fetch.sh: apt-get download $pkg failed; refreshing the package lists" >&2
    apt-get update -qq
    (cd "$out" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null)
}

# The kernel: reuse a cached .deb if there is one, else ask apt.
kdeb=$(ls "$out"/linux-image-6.1.0-*-amd64*_*.deb 2>/dev/null | grep -v -e cloud -e '-rt-' -e dbg | sort -V | tail -n 1 || true)
if [ -z "$kdeb" ]; then
    kpkg=$(pick_kernel || true)
    if [ -z "$kpkg" ]; then
        need_root apt-get update
        apt-get update -qq
        kpkg=$(pick_kernel) || { echo "fetch.sh: apt knows no linux-image-6.1.0-*-amd64" >&2; exit 1; }
    fi
    echo "fetch.sh: downloading $kpkg"
    download "$kpkg"
    kdeb=$(ls "$out/${kpkg}_"*.deb | sort -V | tail -n 1)
fi
kpkg=$(dpkg-deb -f "$kdeb" Package)
download busybox-static
bdeb=$(ls "$out"/busybox-static_*.deb | sort -V | tail -n 1)

# Extract (only when the .deb is newer than what was extracted from it).
if [ ! -f "$out/vmlinuz" ] || [ "$kdeb" -nt "$out/vmlinuz" ] || [ ! -f "$out/version" ]; then
    rm -rf "$out/kernel-root"
    dpkg-deb -x "$kdeb" "$out/kernel-root"
    vmlinuz=$(ls "$out"/kernel-root/boot/vmlinuz-* | head -n 1)
    release=${vmlinuz##*/vmlinuz-}
    cp "$vmlinuz" "$out/vmlinuz"
    echo "$release" > "$out/version"
    rm -rf "$out/kernel-root"   # the modules (hundreds of MB) are not needed
    rm -f "$out/vmlinux"
fi
if [ ! -f "$out/busybox" ] || [ "$bdeb" -nt "$out/busybox" ]; then
    rm -rf "$out/busybox-root"
    dpkg-deb -x "$bdeb" "$out/busybox-root"
    cp "$out/busybox-root/bin/busybox" "$out/busybox"
    rm -rf "$out/busybox-root"
fi

# vmlinux: the XZ payload of the bzImage. The setup header gives its place
# (setup_sects at 0x1F1, payload_offset at 0x248, payload_length at 0x24C,
# both relative to the protected-mode code at (setup_sects + 1) * 512); the
# XZ magic FD 37 7A 58 5A 00 must be there. The kernel appends its
# uncompressed size after the stream: --single-stream ignores it.
if [ ! -f "$out/vmlinux" ]; then
    read -r poff plen < <(python3 - "$out/vmlinuz" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
if d[0x202:0x206] != b'HdrS':
    sys.exit('vmlinuz: no setup header (HdrS)')
setup = d[0x1F1] or 4
off, length = struct.unpack_from('<II', d, 0x248)
start = (setup + 1) * 512 + off
if d[start:start + 6] != b'\xfd7zXZ\x00':
    # Fall back to searching for the magic.
    start = d.find(b'\xfd7zXZ\x00')
    if start < 0:
        sys.exit('vmlinuz: no XZ payload')
    length = len(d) - start
print(start, length)
PY
)
    echo "fetch.sh: XZ payload at offset $poff, $plen bytes"
    dd if="$out/vmlinuz" bs=64K iflag=skip_bytes,count_bytes skip="$poff" count="$plen" status=none \
        | xz -dc --single-stream > "$out/vmlinux.tmp"
    [ "$(head -c 4 "$out/vmlinux.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] \
        || { echo "fetch.sh: the unpacked payload is not an ELF" >&2; exit 1; }
    mv "$out/vmlinux.tmp" "$out/vmlinux"
fi

# The PVH entry: the Xen ELF note of type 0x12 (XEN_ELFNOTE_PHYS32_ENTRY),
# a 32-bit physical address.
entry=$(python3 - "$out/vmlinux" <<'PY'
import struct, sys
f = open(sys.argv[1], 'rb'); d = f.read()
assert d[4] == 2, 'not ELF64'
phoff, = struct.unpack_from('<Q', d, 0x20)
phentsize, phnum = struct.unpack_from('<HH', d, 0x36)
for i in range(phnum):
    ptype, flags, off, va, pa, filesz = struct.unpack_from('<IIQQQQ', d, phoff + i * phentsize)
    if ptype != 4:  # PT_NOTE
        continue
    p, end = off, off + filesz
    while p + 12 <= end:
        nsz, dsz, typ = struct.unpack_from('<III', d, p)
        name = d[p + 12:p + 12 + nsz].rstrip(b'\0')
        desc = p + 12 + ((nsz + 3) & ~3)
        if name == b'Xen' and typ == 0x12:
            print('0x%x' % struct.unpack_from('<I', d, desc)[0]); sys.exit(0)
        p = desc + ((dsz + 3) & ~3)
sys.exit(1)
PY
) || { echo "fetch.sh: $out/vmlinux has no Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY)" >&2; exit 1; }
readelf -n "$out/vmlinux" | grep -q 'Xen.*0x00000012\|Xen.*PHYS32' \
    || { echo "fetch.sh: readelf -n does not list the Xen note 0x12" >&2; exit 1; }

echo "fetch.sh: $kpkg, release $(cat "$out/version")"
echo "fetch.sh: vmlinuz $(stat -c %s "$out/vmlinuz") bytes, vmlinux $(stat -c %s "$out/vmlinux") bytes (ELF entry $(readelf -h "$out/vmlinux" | awk '/Entry point/ {print $4}'))"
echo "fetch.sh: PVH entry (XEN_ELFNOTE_PHYS32_ENTRY) $entry"
echo "fetch.sh: busybox $(stat -c %s "$out/busybox") bytes ($(dpkg-deb -f "$bdeb" Version))"
