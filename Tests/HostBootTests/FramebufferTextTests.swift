import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

@Suite struct FramebufferTextTests {
    /// Parses a framebuffer tag and returns its text grid.
    func grid(pitch: UInt32, width: UInt32, height: UInt32, bpp: UInt8, type: UInt8 = 1,
              rgb: [UInt8] = [16, 8, 8, 8, 0, 8]) throws -> FramebufferText? {
        var b = MBIBuilder()
        b.framebuffer(address: 0x8000_0000, pitch: pitch, width: width, height: height, bpp: bpp, type: type, rgb: rgb)
        b.end()
        return try withInfo(b.finish()) { info in try #require(info.framebuffer).flatMap { FramebufferText($0) } }
    }

    @Test func fontRowsComeFromTheTable() {
        // 'A' in Terminus 16: a closed top, open sides, a bar in the middle.
        let a = (0..<16).map { Font8x16.row(0x41, $0) }
        #expect(a == [0, 0, 0x3C, 0x42, 0x42, 0x42, 0x42, 0x7E, 0x42, 0x42, 0x42, 0x42, 0, 0, 0, 0])
        #expect((0..<16).allSatisfy { Font8x16.row(0x20, $0) == 0 })
        // Outside ASCII 32-126: a box.
        let box = (0..<16).map { Font8x16.row(0x80, $0) }
        #expect(box[2] == 0x7E && box[7] == 0x42 && box[13] == 0x7E && box[0] == 0)
        #expect((0..<16).map { Font8x16.row(0x1F, $0) } == box)
        #expect(Font8x16.row(0x41, 16) == 0 && Font8x16.row(0x41, -1) == 0)
    }

    @Test func everyPrintableGlyphDecodes() {
        // Every printable glyph but space has pixels.
        #expect((UInt8(33)...126).allSatisfy { c in (0..<16).contains { Font8x16.row(c, $0) != 0 } })
        // '|' has pixels in most rows; '_' only near the bottom.
        #expect((0..<16).filter { Font8x16.row(0x7C, $0) != 0 }.count >= 10)
        #expect((0..<12).allSatisfy { Font8x16.row(0x5F, $0) == 0 })
    }

    @Test func geometryAndRefusals() throws {
        let g = try #require(try grid(pitch: 4096, width: 1024, height: 768, bpp: 32))
        #expect(g.columns == 128 && g.rows == 48 && g.bytesPerPixel == 4 && g.byteCount == 4096 * 768)
        #expect(try grid(pitch: 2048, width: 1024, height: 768, bpp: 16, rgb: [11, 5, 5, 6, 0, 5])?.bytesPerPixel == 2)
        #expect(try grid(pitch: 3072, width: 1024, height: 768, bpp: 24)?.bytesPerPixel == 3)
        #expect(try grid(pitch: 80 * 2, width: 80, height: 25, bpp: 16, type: 2, rgb: []) == nil)   // EGA text
        #expect(try grid(pitch: 1024, width: 1024, height: 768, bpp: 8, type: 0, rgb: []) == nil)   // indexed
        #expect(try grid(pitch: 4096, width: 1024, height: 768, bpp: 32, rgb: []) == nil)           // no channels
        #expect(try grid(pitch: 4000, width: 1024, height: 768, bpp: 32) == nil)                    // pitch too small
        #expect(try grid(pitch: 4096, width: 1024, height: 768, bpp: 8) == nil)                     // 8 bpp RGB
        #expect(try grid(pitch: 4096, width: 1024, height: 768, bpp: 16) == nil)                    // channel past 16 bits
        #expect(try grid(pitch: 4096, width: 4, height: 768, bpp: 32) == nil)                       // not one glyph wide
    }

    @Test func coloursArePackedAtTheTagsPositions() throws {
        let bgrx = try #require(try grid(pitch: 4096, width: 1024, height: 768, bpp: 32))
        #expect(bgrx.pack(red: 0x12, green: 0x34, blue: 0x56) == 0x12_3456)
        let rgbx = try #require(try grid(pitch: 4096, width: 1024, height: 768, bpp: 32, rgb: [0, 8, 8, 8, 16, 8]))
        #expect(rgbx.pack(red: 0x12, green: 0x34, blue: 0x56) == 0x56_3412)
        let rgb565 = try #require(try grid(pitch: 2048, width: 1024, height: 768, bpp: 16, rgb: [11, 5, 5, 6, 0, 5]))
        #expect(rgb565.pack(red: 0xFF, green: 0xFF, blue: 0xFF) == 0xFFFF)
        #expect(rgb565.pack(red: 0x80, green: 0x40, blue: 0x20) == (0x10 << 11 | 0x10 << 5 | 0x04))
    }

    /// Draws into host memory and reads back pixels.
    func canvas(_ g: FramebufferText, _ body: (UnsafeMutableRawPointer) -> Void) -> [UInt8] {
        var bytes = [UInt8](repeating: 0x5A, count: g.byteCount)
        bytes.withUnsafeMutableBytes { body($0.baseAddress!) }
        return bytes
    }

    @Test func drawingPutsEachGlyphBitAtItsPixel() throws {
        for (bpp, pitch) in [(32, 64 * 4 + 12), (24, 64 * 3), (16, 64 * 2)] as [(UInt8, UInt32)] {
            let rgb: [UInt8] = bpp == 16 ? [11, 5, 5, 6, 0, 5] : [16, 8, 8, 8, 0, 8]
            let g = try #require(try grid(pitch: pitch, width: 64, height: 48, bpp: bpp, rgb: rgb))
            let fg = g.pack(red: 0xAA, green: 0xAA, blue: 0xAA), bg = g.pack(red: 0, green: 0, blue: 0)
            let pixels = canvas(g) { g.draw(0x41, column: 2, row: 1, foreground: fg, background: bg, into: $0) }
            let bpp = g.bytesPerPixel
            func pixel(_ x: Int, _ y: Int) -> UInt32 {
                (0..<bpp).reduce(0) { $0 | UInt32(pixels[y * Int(pitch) + x * bpp + $1]) << (8 * UInt32($1)) }
            }
            for y in 0..<16 {
                for x in 0..<8 {
                    let on = Font8x16.row(0x41, y) & (0x80 >> UInt8(x)) != 0
                    #expect(pixel(16 + x, 16 + y) == (on ? fg : bg))
                }
            }
            // Nothing outside the cell was touched.
            #expect(pixels[0] == 0x5A && pixels[(16 * Int(pitch)) + 15 * bpp] == 0x5A && pixels[(16 * Int(pitch)) + 24 * bpp] == 0x5A)
            // Cells off the grid are ignored.
            let untouched = canvas(g) { g.draw(0x41, column: 8, row: 0, foreground: fg, background: bg, into: $0)
                                        g.draw(0x41, column: 0, row: 3, foreground: fg, background: bg, into: $0) }
            #expect(untouched.allSatisfy { $0 == 0x5A })
        }
    }

    @Test func scrollingMovesRowsUpAndClearsTheLast() throws {
        let g = try #require(try grid(pitch: 32 * 4, width: 32, height: 48, bpp: 32))
        let fg: UInt32 = 0xFFFFFF
        let pixels = canvas(g) { base in
            g.clear(fromRow: 0, background: 0, into: base)
            g.draw(0x42, column: 0, row: 1, foreground: fg, background: 0, into: base)
            g.draw(0x43, column: 1, row: 2, foreground: fg, background: 0, into: base)
            g.scroll(background: 0, into: base)
        }
        let expected = canvas(g) { base in
            g.clear(fromRow: 0, background: 0, into: base)
            g.draw(0x42, column: 0, row: 0, foreground: fg, background: 0, into: base)
            g.draw(0x43, column: 1, row: 1, foreground: fg, background: 0, into: base)
        }
        #expect(pixels == expected)
    }
}
