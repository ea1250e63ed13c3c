// The console: COM1 (16550, polled) mirrored to the screen (VGA text or a
// framebuffer). Messages
// are formatted into a fixed buffer by string interpolation: no heap.


import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

typealias LogLevel = KernelCommandLine.LogLevel

extension LogLevel {
    var tag: StaticString {
        switch self {
        case .error: "[error] "
        case .warn: "[warn] "
        case .info: "[info] "
        case .debug: "[debug] "
        }
    }
}

/// One line of text built without allocating. Longer text is cut at the capacity.
struct Message: ExpressibleByStringInterpolation {
    static let capacity = 240
    var interpolation: StringInterpolation

    init(stringLiteral literal: StaticString) {
        interpolation = StringInterpolation(literalCapacity: 0, interpolationCount: 0)
        interpolation.appendLiteral(literal)
    }

    init(stringInterpolation: StringInterpolation) { interpolation = stringInterpolation }

    struct StringInterpolation: StringInterpolationProtocol {
        var bytes = InlineArray<240, UInt8>(repeating: 0)
        var count = 0

        init(literalCapacity: Int, interpolationCount: Int) {}

        @inline(never)
        mutating func put(_ byte: UInt8) {
            if count < Message.capacity { bytes[count] = byte; count += 1 }
        }

        @inline(never)
        mutating func appendLiteral(_ literal: StaticString) {
            literal.withUTF8Buffer { for b in $0 { put(b) } }
        }

        @inline(never)
        mutating func appendInterpolation(_ text: StaticString) { appendLiteral(text) }

        /// Raw bytes such as a command line (NUL ends them early).
        @inline(never)
        mutating func appendInterpolation(bytes: UnsafeRawBufferPointer) {
            for b in bytes { if b == 0 { break }; put(b) }
        }

        mutating func appendInterpolation<T: BinaryInteger>(_ value: T) {
            appendDecimal(UInt64(truncatingIfNeeded: value < 0 ? 0 - value : value), negative: value < 0)
        }

        /// `0x`-prefixed hexadecimal; `width` pads with zeros.
        mutating func appendInterpolation<T: BinaryInteger>(hex value: T, width: Int = 1) {
            appendHex(UInt64(truncatingIfNeeded: value), width: width)
        }

        // One formatter per base, not one per integer type.
        @inline(never)
        mutating func appendDecimal(_ value: UInt64, negative: Bool) {
            if negative { put(0x2D) }
            var magnitude = value
            var digits = InlineArray<20, UInt8>(repeating: 0)
            var n = 0
            repeat { digits[n] = UInt8(magnitude % 10) + 0x30; magnitude /= 10; n += 1 } while magnitude != 0
            while n > 0 { n -= 1; put(digits[n]) }
        }

        @inline(never)
        mutating func appendHex(_ v: UInt64, width: Int) {
            put(0x30); put(0x78)
            var shift = 60
            while shift > 0 && (v >> UInt64(shift)) == 0 && shift >= width * 4 { shift -= 4 }
            while shift >= 0 {
                let d = UInt8((v >> UInt64(shift)) & 0xF)
                put(d < 10 ? 0x30 + d : 0x57 + d)
                shift -= 4
            }
        }

        @inline(never)
        mutating func appendInterpolation(_ flag: Bool) { appendLiteral(flag ? "yes" : "no") }
    }
}

enum Serial {
    static let com1: UInt16 = 0x3F8

    static func initialize() {
        port_out8(com1 + 1, 0x00)   // no UART interrupts: we poll
        port_out8(com1 + 3, 0x80)   // DLAB on
        port_out8(com1 + 0, 0x01)   // divisor 1: 115200 baud
        port_out8(com1 + 1, 0x00)
        port_out8(com1 + 3, 0x03)   // 8N1, DLAB off
        port_out8(com1 + 2, 0xC7)   // FIFOs on and cleared
        port_out8(com1 + 4, 0x03)   // DTR, RTS
    }

    static func put(_ byte: UInt8) {
        // Bounded wait: a machine without COM1 must not hang the kernel.
        var spins = 0
        while port_in8(com1 + 5) & 0x20 == 0 && spins < 100_000 { spins += 1 }
        port_out8(com1, byte)
    }

    /// Waits until the transmitter is empty, so nothing is lost at power-off.
    static func flush() {
        var spins = 0
        while port_in8(com1 + 5) & 0x40 == 0 && spins < 1_000_000 { spins += 1 }
    }
}

/// The screen mirror: VGA text (BIOS text mode), or text drawn on a linear RGB
/// framebuffer (UEFI GOP), or nothing. Serial stays the primary console.
enum Screen {
    enum Mode { case none, vgaText, framebuffer }
    static let vgaColumns = 80, vgaRows = 25
    nonisolated(unsafe) static var enabled = true
    nonisolated(unsafe) static var mode = Mode.none
    nonisolated(unsafe) static var row = 0, column = 0
    nonisolated(unsafe) static var grid: FramebufferText? = nil
    nonisolated(unsafe) static var pixels: UnsafeMutableRawPointer? = nil
    nonisolated(unsafe) static var foreground: UInt32 = 0, background: UInt32 = 0
    static var cells: UnsafeMutablePointer<UInt16> { UnsafeMutablePointer(bitPattern: 0xB8000)! }

    static var columns: Int { mode == .framebuffer ? grid?.columns ?? 0 : vgaColumns }
    static var rows: Int { mode == .framebuffer ? grid?.rows ?? 0 : vgaRows }

    /// Picks the mirror from the boot information's framebuffer tag: none (or
    /// EGA text) means VGA text; RGB inside the identity map means the pixel
    /// console; anything else, no mirror.
    static func configure(_ framebuffer: Multiboot2Info.Framebuffer?) {
        mode = .none
        guard let fb = framebuffer, fb.kind != .egaText else { mode = .vgaText; clear(); return }
        guard let text = FramebufferText(fb) else {
            logWarn("framebuffer: type \(fb.type), \(fb.bitsPerPixel) bpp is not 16/24/32-bit RGB: no screen console")
            return
        }
        let (end, overflow) = fb.address.addingReportingOverflow(UInt64(text.byteCount))
        guard !overflow, end <= identityMappedEnd, let base = UnsafeMutableRawPointer(bitPattern: UInt(fb.address)) else {
            logWarn("framebuffer at \(hex: fb.address) is above the 4 GiB identity map: no screen console")
            return
        }
        grid = text
        pixels = base
        foreground = text.pack(red: 0xAA, green: 0xAA, blue: 0xAA)   // VGA's light grey on black
        background = text.pack(red: 0, green: 0, blue: 0)
        mode = .framebuffer
        clear()
    }

    static func clear() {
        switch mode {
        case .none: break
        case .vgaText: for i in 0..<(vgaColumns * vgaRows) { cells[i] = 0x0720 }
        case .framebuffer: if let grid, let pixels { grid.clear(fromRow: 0, background: background, into: pixels) }
        }
        row = 0; column = 0
    }

    static func put(_ byte: UInt8, attribute: UInt16 = 0x07) {
        guard enabled, mode != .none else { return }
        if byte == 0x0A { newline(); return }
        if byte == 0x0D { column = 0; return }
        if mode == .vgaText {
            cells[row * vgaColumns + column] = attribute << 8 | UInt16(byte)
        } else if let grid, let pixels {
            grid.draw(byte, column: column, row: row, foreground: foreground, background: background, into: pixels)
        }
        column += 1
        if column == columns { newline() }
    }

    static func newline() {
        column = 0
        row += 1
        if row == rows {
            if mode == .vgaText {
                for i in 0..<(vgaColumns * (vgaRows - 1)) { cells[i] = cells[i + vgaColumns] }
                for i in (vgaColumns * (vgaRows - 1))..<(vgaColumns * vgaRows) { cells[i] = 0x0720 }
            } else if let grid, let pixels {
                grid.scroll(background: background, into: pixels)
            }
            row = rows - 1
        }
    }
}

enum Console {
    nonisolated(unsafe) static var level = LogLevel.info

    static func putByte(_ byte: UInt8) {
        if byte == 0x0A { Serial.put(0x0D) }
        Serial.put(byte)
        Screen.put(byte)
    }

    static func write(_ message: Message) {
        let m = message.interpolation
        for i in 0..<m.count { putByte(m.bytes[i]) }
    }

    @inline(never)
    static func line(_ message: Message) {
        let locked = lock()
        write(message)
        putByte(0x0A)
        if locked { console_unlock() }
    }

    @inline(never)
    static func log(_ level: LogLevel, _ message: Message) {
        guard level.rawValue <= Console.level.rawValue else { return }
        let locked = lock()
        write(Message(stringLiteral: level.tag))
        write(message)
        putByte(0x0A)
        if locked { console_unlock() }
    }

    /// One line at a time from any CPU (Boot/ap.asm's spinlock). The wait is
    /// bounded: a CPU that faults while printing must not silence the report
    /// of its exception. Returns whether the lock was taken.
    static func lock() -> Bool {
        var spins = 0
        while !console_lock_try() {
            spins += 1
            if spins > 1_000_000 { return false }
            cpu_pause()
        }
        return true
    }
}

@_extern(c, "console_lock_try") func console_lock_try() -> Bool
@_extern(c, "console_unlock") func console_unlock()

func logError(_ m: Message) { Console.log(.error, m) }
func logWarn(_ m: Message) { Console.log(.warn, m) }
func logInfo(_ m: Message) { Console.log(.info, m) }
func logDebug(_ m: Message) { Console.log(.debug, m) }
