// Text on a linear RGB framebuffer (Multiboot2 "3.6.12 Framebuffer info",
// framebuffer_type 1): 8x16 glyphs from Font8x16, colours packed at the tag's
// channel positions, scrolling by one text row. Pure logic over a byte pointer,
// so the host tests draw into ordinary memory.

import X86Arch
import VMX
import X86VCPU

extension Font8x16 {
    /// Glyph lines are 32 hex digits plus a newline.
    static let stride = 33

    /// Row `row` (0 = top) of `character`'s glyph, bit 7 the leftmost pixel.
    /// Characters outside ASCII 32-126 draw as a box.
    public static func row(_ character: UInt8, _ row: Int) -> UInt8 {
        guard row >= 0, row < 16 else { return 0 }
        guard character >= firstCharacter, character <= lastCharacter else {
            return row == 2 || row == 13 ? 0x7E : (row > 2 && row < 13 ? 0x42 : 0)
        }
        let at = Int(character - firstCharacter) * stride + row * 2
        let text = hex.utf8Start
        return digit(text[at]) << 4 | digit(text[at + 1])
    }

    static func digit(_ c: UInt8) -> UInt8 { c <= 0x39 ? c &- 0x30 : c &- 0x37 }
}

/// A text grid on a linear RGB framebuffer of 16, 24 or 32 bits per pixel.
public struct FramebufferText: Equatable {
    public static let glyphWidth = 8
    public static let glyphHeight = 16

    public let width: Int
    public let height: Int
    public let pitch: Int
    public let bytesPerPixel: Int
    public let red: Multiboot2Info.Framebuffer.Channel
    public let green: Multiboot2Info.Framebuffer.Channel
    public let blue: Multiboot2Info.Framebuffer.Channel

    /// Text columns and rows that fit.
    public var columns: Int { width / Self.glyphWidth }
    public var rows: Int { height / Self.glyphHeight }

    /// A text grid for `framebuffer`, or nil when it is not direct RGB at 16, 24
    /// or 32 bpp with channel info, or its pitch cannot hold a line, or it cannot
    /// hold one glyph.
    public init?(_ framebuffer: Multiboot2Info.Framebuffer) {
        guard framebuffer.kind == .rgb, let red = framebuffer.red, let green = framebuffer.green,
              let blue = framebuffer.blue else { return nil }
        let bits = Int(framebuffer.bitsPerPixel)
        guard bits == 16 || bits == 24 || bits == 32 else { return nil }
        func fits(_ c: Multiboot2Info.Framebuffer.Channel) -> Bool { Int(c.position) + Int(c.maskSize) <= bits }
        guard fits(red), fits(green), fits(blue) else { return nil }
        let width = Int(framebuffer.width), height = Int(framebuffer.height), pitch = Int(framebuffer.pitch)
        guard width >= Self.glyphWidth, height >= Self.glyphHeight, width <= 1 << 16, height <= 1 << 16,
              pitch >= width * (bits / 8), pitch <= 1 << 20 else { return nil }
        self.width = width
        self.height = height
        self.pitch = pitch
        bytesPerPixel = bits / 8
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// Bytes the grid touches: `pitch * height`.
    public var byteCount: Int { pitch * height }

    /// An 8-bit-per-channel colour at the framebuffer's channel positions (each
    /// channel's top `maskSize` bits are kept).
    public func pack(red r: UInt8, green g: UInt8, blue b: UInt8) -> UInt32 {
        func place(_ value: UInt8, _ channel: Multiboot2Info.Framebuffer.Channel) -> UInt32 {
            let size = min(Int(channel.maskSize), 8)
            guard size > 0 else { return 0 }
            return (UInt32(value) >> UInt32(8 - size)) << UInt32(channel.position)
        }
        return place(r, red) | place(g, green) | place(b, blue)
    }

    func store(_ pixel: UInt32, _ at: UnsafeMutableRawPointer) {
        switch bytesPerPixel {
        case 4: at.storeBytes(of: pixel, as: UInt32.self)
        case 2: at.storeBytes(of: UInt16(truncatingIfNeeded: pixel), as: UInt16.self)
        default:
            at.storeBytes(of: UInt8(truncatingIfNeeded: pixel), as: UInt8.self)
            (at + 1).storeBytes(of: UInt8(truncatingIfNeeded: pixel >> 8), as: UInt8.self)
            (at + 2).storeBytes(of: UInt8(truncatingIfNeeded: pixel >> 16), as: UInt8.self)
        }
    }

    /// Draws `character` in cell (`column`, `row`); cells outside the grid are ignored.
    public func draw(
        _ character: UInt8, column: Int, row: Int, foreground: UInt32, background: UInt32,
        into base: UnsafeMutableRawPointer
    ) {
        guard column >= 0, column < columns, row >= 0, row < rows else { return }
        var y = 0
        while y < Self.glyphHeight {
            let bits = Font8x16.row(character, y)
            var line = base + (row * Self.glyphHeight + y) * pitch + column * Self.glyphWidth * bytesPerPixel
            var x = 0
            while x < Self.glyphWidth {
                store(bits & (0x80 >> UInt8(x)) != 0 ? foreground : background, line)
                line += bytesPerPixel
                x += 1
            }
            y += 1
        }
    }

    /// Fills text rows `[first, rows)` with `background`.
    public func clear(fromRow first: Int, background: UInt32, into base: UnsafeMutableRawPointer) {
        var y = max(first, 0) * Self.glyphHeight
        while y < rows * Self.glyphHeight {
            var line = base + y * pitch
            var x = 0
            while x < columns * Self.glyphWidth {
                store(background, line)
                line += bytesPerPixel
                x += 1
            }
            y += 1
        }
    }

    /// Moves every text row up by one and clears the last.
    public func scroll(background: UInt32, into base: UnsafeMutableRawPointer) {
        let rowBytes = Self.glyphHeight * pitch
        base.copyMemory(from: UnsafeRawPointer(base + rowBytes), byteCount: (rows - 1) * rowBytes)
        clear(fromRow: rows - 1, background: background, into: base)
    }
}
