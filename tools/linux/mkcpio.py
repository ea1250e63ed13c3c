#!/usr/bin/env python3
"""Writes a newc ("070701") cpio archive from a spec, as the kernel's
usr/gen_init_cpio does, so that no cpio tool and no root (mknod) is needed.
Every entry is owned by 0:0 with mtime 0: the archive is reproducible.

  mkcpio.py SPEC OUT.cpio

SPEC lines (blank lines and '#' comments ignored):
  dir   NAME MODE
  file  NAME SOURCE MODE
  slink NAME TARGET MODE
  nod   NAME MODE c|b MAJOR MINOR
"""
import stat
import sys


def header(ino, mode, nlink, size, rdev_major=0, rdev_minor=0, namesize=0):
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev_major, rdev_minor, namesize, 0)
    return b'070701' + b''.join(b'%08X' % f for f in fields)


def pad4(n):
    return (4 - n % 4) % 4


def main():
    spec, out_path = sys.argv[1], sys.argv[2]
    out = bytearray()
    ino = 721  # any start; only uniqueness matters

    def entry(name, mode, nlink, data=b'', major=0, minor=0):
        nonlocal ino
        name_b = name.lstrip('/').encode() + b'\0'
        out.extend(header(ino, mode, nlink, len(data), major, minor, len(name_b)))
        out.extend(name_b)
        out.extend(b'\0' * pad4(110 + len(name_b)))
        out.extend(data)
        out.extend(b'\0' * pad4(len(data)))
        ino += 1

    for lineno, line in enumerate(open(spec), 1):
        words = line.split()
        if not words or words[0].startswith('#'):
            continue
        kind = words[0]
        try:
            if kind == 'dir':
                entry(words[1], stat.S_IFDIR | int(words[2], 8), 2)
            elif kind == 'file':
                entry(words[1], stat.S_IFREG | int(words[3], 8), 1, open(words[2], 'rb').read())
            elif kind == 'slink':
                entry(words[1], stat.S_IFLNK | int(words[3], 8), 1, words[2].encode())
            elif kind == 'nod':
                t = stat.S_IFCHR if words[3] == 'c' else stat.S_IFBLK
                entry(words[1], t | int(words[2], 8), 1, b'', int(words[4]), int(words[5]))
            else:
                sys.exit(f'{spec}:{lineno}: unknown entry type {kind}')
        except (IndexError, ValueError) as e:
            sys.exit(f'{spec}:{lineno}: {e}')
    # The trailer entry.
    name_b = b'TRAILER!!!\0'
    out.extend(header(0, 0, 1, 0, namesize=len(name_b)))
    out.extend(name_b)
    out.extend(b'\0' * pad4(110 + len(name_b)))
    out.extend(b'\0' * ((512 - len(out) % 512) % 512))  # whole 512-byte blocks, as cpio writes
    with open(out_path, 'wb') as f:
        f.write(out)


if __name__ == '__main__':
    main()
