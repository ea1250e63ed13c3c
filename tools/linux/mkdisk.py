#!/usr/bin/env python3
"""Writes the passthrough tests' known disk image and its checksum file.

  mkdisk.py OUT.img

The content is a pure function of this script: sector 0 starts with a text
label, the rest is a SHA-256 counter stream (block i = sha256(b'x86vcpu-disk'
+ i as 8 little-endian bytes)), so no seed or library version can change it.
The size is a whole number of Bochs's default flat-image cylinders (16 heads,
63 sectors of 512 bytes): Bochs derives the geometry from the size, and a
partial last cylinder would be invisible to the guest.

Writes OUT.img and OUT.img.sha256 (`sha256sum` format: '<hex>  disk.img'),
and prints the size and sum.
"""
import hashlib
import os
import struct
import sys

CYLINDERS = 8
SIZE = CYLINDERS * 16 * 63 * 512   # 4,128,768 bytes, 8,064 sectors


def main():
    out = sys.argv[1]
    label = b'X86VCPU passthrough test disk v1: sha256 counter stream follows\n'
    data = bytearray()
    i = 0
    while len(data) < SIZE:
        data += hashlib.sha256(b'x86vcpu-disk' + struct.pack('<Q', i)).digest()
        i += 1
    data[:len(label)] = label
    data = bytes(data[:SIZE])
    tmp = out + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, out)
    digest = hashlib.sha256(data).hexdigest()
    with open(out + '.sha256', 'w') as f:
        f.write(f'{digest}  {os.path.basename(out)}\n')
    print(f'mkdisk.py: {out} ({SIZE} bytes) sha256 {digest}')


if __name__ == '__main__':
    main()
