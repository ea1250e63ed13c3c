#!/usr/bin/env bash
# Builds the passthrough tests' initramfs and known disk image:
#   mkinitramfs-pt.sh OUTDIR   (OUTDIR = build/linux, after fetch.sh)
# Writes
#   OUTDIR/disk.img, disk.img.sha256   the known disk (mkdisk.py)
#   OUTDIR/initramfs-pt.cpio.gz        mkinitramfs.sh's busybox initramfs with
#       init-passthrough as /init, the ATA driver stack from the cached Debian
#       linux-image .deb under /lib/modules (+ /lib/modules/order, the insmod
#       order), and /etc/pt-disk (the disk's size and sha256, so the guest's
#       command line stays the plain one).
# The .deb ships no modules.dep (depmod makes it on install): the closure and
# its order come from each module's own .modinfo (depends=, softdep=pre:).
set -euo pipefail
out=${1:?usage: mkinitramfs-pt.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$out" && pwd)
[ -x "$out/busybox" ] && [ -f "$out/version" ] || "$here/fetch.sh" "$out"
release=$(cat "$out/version")
kdeb=$(ls "$out"/linux-image-"$release"_*.deb "$out"/linux-image-"$release"-unsigned_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kdeb" ] || { echo "mkinitramfs-pt.sh: no linux-image-$release .deb in $out (run fetch.sh)" >&2; exit 1; }

python3 "$here/mkdisk.py" "$out/disk.img"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Only the module tree (not the whole package): tar with a wildcard.
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$work" --wildcards "./lib/modules/$release/kernel/*"
kdir=$work/lib/modules/$release/kernel

# The wanted modules: the IDE controller's driver and the disk's; the crypto
# providers of crc-t10dif and crc64-rocksoft (their softdep pre: names are
# crypto aliases, which this script does not resolve) so that they find a
# driver without the kernel's request_module.
wanted="ata_piix sd_mod crct10dif_generic crc64_rocksoft_generic"
python3 - "$kdir" "$work/order" $wanted <<'PY'
import os, subprocess, sys
kdir, order_path, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
paths = {}
for root, _, files in os.walk(kdir):
    for f in files:
        if f.endswith('.ko'):
            paths[f[:-3]] = os.path.join(root, f)
        elif f.endswith(('.ko.xz', '.ko.zst', '.ko.gz')):
            sys.exit(f'compressed module {f}: decompress before busybox insmod')
def norm(n):
    # modinfo names use _ or - interchangeably; files keep the build's spelling.
    for c in (n, n.replace('_', '-'), n.replace('-', '_')):
        if c in paths:
            return c
    return None
def deps(name):
    info = subprocess.run(['objcopy', '-O', 'binary', '--only-section=.modinfo', paths[name], '/dev/stdout'],
                          check=True, capture_output=True).stdout.split(b'\0')
    out = []
    for kv in info:
        kv = kv.decode(errors='replace')
        if kv.startswith('depends=') and kv[8:]:
            out += kv[8:].split(',')
        elif kv.startswith('softdep='):
            words = kv[8:].split()
            if words and words[0] == 'pre:':
                out += [w for w in words[1:] if norm(w)]   # crypto aliases have no file
    return out
order, state = [], {}
def visit(n):
    m = norm(n)
    if m is None:
        sys.exit(f'module {n} not in the package')
    if state.get(m) == 'done':
        return
    if state.get(m) == 'active':
        sys.exit(f'dependency cycle at {m}')
    state[m] = 'active'
    for d in deps(m):
        visit(d)
    state[m] = 'done'
    order.append(m)
# The crypto providers first: crc-t10dif and crc64-rocksoft look for them when
# they load.
for w in sorted(wanted, key=lambda w: w not in ('crct10dif_generic', 'crc64_rocksoft_generic')):
    visit(w)
with open(order_path, 'w') as f:
    for m in order:
        f.write(f'{m} {paths[m]}\n')
PY

extra=$work/extra.spec
{
    echo "dir /lib 0755"
    echo "dir /lib/modules 0755"
    while read -r m path; do echo "file /lib/modules/$m.ko $path 0644"; done < "$work/order"
    cut -d' ' -f1 "$work/order" > "$work/order.names"
    echo "file /lib/modules/order $work/order.names 0644"
    printf 'PT_DISK_BYTES=%s\nPT_DISK_SUM=%s\n' "$(stat -c %s "$out/disk.img")" "$(cut -d' ' -f1 "$out/disk.img.sha256")" > "$work/pt-disk"
    echo "file /etc/pt-disk $work/pt-disk 0644"
} > "$extra"
echo "mkinitramfs-pt.sh: modules in insmod order: $(tr '\n' ' ' < "$work/order.names")"
"$here/mkinitramfs.sh" "$out" --init "$here/init-passthrough" --name initramfs-pt --extra "$extra"
