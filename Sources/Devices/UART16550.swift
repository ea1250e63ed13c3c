// The registers of a 16550 UART as a guest programs them, with the
// transmitter always empty and nothing ever received. National Semiconductor
// PC16550D data sheet, "Register Description" (Table II).

import X86Arch

public struct UART16550: Sendable {
    /// Register offsets from the base port.
    public enum Register: UInt16, Sendable {
        case data = 0, interruptEnable = 1, interruptIdentification = 2, lineControl = 3
        case modemControl = 4, lineStatus = 5, modemStatus = 6, scratch = 7
    }
    /// LCR bit 7: registers 0 and 1 are the divisor latch.
    @usableFromInline static let divisorLatchAccess: UInt8 = 0x80
    /// MCR bit 4: loopback; output is not transmitted.
    @usableFromInline static let loopback: UInt8 = 0x10
    /// IIR: FIFOs enabled (bits 7:6), no interrupt pending (bit 0).
    @usableFromInline static let fifosNoInterrupt: UInt8 = 0xC1
    /// LSR: transmitter holding register and transmitter empty (bits 5, 6).
    @usableFromInline static let transmitterEmpty: UInt8 = 0x60
    /// MSR: CTS, DSR and DCD asserted (bits 4, 5, 7).
    @usableFromInline static let lineReady: UInt8 = 0xB0

    public private(set) var interruptEnable: UInt8 = 0
    public private(set) var lineControl: UInt8 = 0
    public private(set) var modemControl: UInt8 = 0
    public private(set) var scratch: UInt8 = 0
    public private(set) var divisor: UInt16 = 1

    public init() {}

    @usableFromInline var divisorLatch: Bool { lineControl & Self.divisorLatchAccess != 0 }

    /// The register at `offset` from the base port, if it is one.
    @inlinable @inline(__always)  // every UART exit: no call for a compare
    public static func register(at offset: UInt16) -> Register? {
        switch offset {
        case 0: .data
        case 1: .interruptEnable
        case 2: .interruptIdentification
        case 3: .lineControl
        case 4: .modemControl
        case 5: .lineStatus
        case 6: .modemStatus
        case 7: .scratch
        default: nil
        }
    }

    /// A read of `register`.
    @inlinable @inline(__always)  // every UART read exit: inlined into the port dispatch
    public func read(_ register: Register) -> UInt8 {
        switch register {
        case .data: return divisorLatch ? UInt8(truncatingIfNeeded: divisor) : 0
        case .interruptEnable: return divisorLatch ? UInt8(truncatingIfNeeded: divisor >> 8) : interruptEnable
        case .interruptIdentification: return Self.fifosNoInterrupt
        case .lineControl: return lineControl
        case .modemControl: return modemControl
        case .lineStatus: return Self.transmitterEmpty
        case .modemStatus:
            // Loopback reflects MCR's outputs (DTR, RTS, OUT1, OUT2) into MSR's
            // inputs (DSR, CTS, RI, DCD), as drivers probe for.
            guard modemControl & Self.loopback != 0 else { return Self.lineReady }
            let m = modemControl
            return (m & 1) << 5 | (m & 2) << 3 | (m & 4) << 4 | (m & 8) << 4
        case .scratch: return scratch
        }
    }

    /// A write of `value` to `register`: the byte to transmit, if it is one.
    public mutating func write(_ register: Register, _ value: UInt8) -> UInt8? {
        switch register {
        case .data:
            if divisorLatch { divisor = divisor & 0xFF00 | UInt16(value); return nil }
            return modemControl & Self.loopback == 0 ? value : nil
        case .interruptEnable:
            if divisorLatch { divisor = divisor & 0x00FF | UInt16(value) << 8 } else { interruptEnable = value & 0x0F }
        case .lineControl: lineControl = value
        case .modemControl: modemControl = value & 0x1F
        case .scratch: scratch = value
        case .interruptIdentification, .lineStatus, .modemStatus: break
        }
        return nil
    }
}
