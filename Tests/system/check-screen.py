#!/usr/bin/env python3
"""check-screen.py SCREEN.ppm FONT.swift TEXT: the first text row of a QEMU
screendump (binary PPM) must show TEXT drawn with the kernel's own font table
(Sources/HostBoot/Font8x16.swift): every glyph pixel lit, every other dark."""
import re, sys

ppm, font_file, text = sys.argv[1], sys.argv[2], sys.argv[3]
glyphs = re.findall(r"^\s*([0-9A-F]{32})$", open(font_file).read(), re.M)
assert len(glyphs) == 95, f"{font_file}: {len(glyphs)} glyphs, expected 95 (ASCII 32-126)"
data = open(ppm, "rb").read()
fields, pos = [], 0
while len(fields) < 4:  # magic, width, height, maxval (comments are not used by QEMU)
    m = re.compile(rb"\s*(\S+)").match(data, pos)
    fields.append(m.group(1)); pos = m.end()
assert fields[0] == b"P6", "not a binary PPM"
width, height = int(fields[1]), int(fields[2])
pixels = data[pos + 1:]
bad = 0
for i, ch in enumerate(text):
    rows = bytes.fromhex(glyphs[ord(ch) - 32]) if 32 <= ord(ch) <= 126 else None
    for y in range(16):
        for x in range(8):
            at = (y * width + i * 8 + x) * 3
            lit = max(pixels[at:at + 3]) > 0x55
            want = bool(rows[y] & (0x80 >> x))
            if lit != want:
                bad += 1
if bad:
    print(f"screen: {bad} of {len(text) * 128} pixels differ from '{text}' in {width}x{height} {ppm}")
    sys.exit(1)
print(f"screen: first row shows '{text}' pixel for pixel ({width}x{height})")
