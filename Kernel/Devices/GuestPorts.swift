// The guest's devices: a 16550 UART at COM1 whose output reaches the
// hypervisor's console line by line as "[guest] ...", and the exit port 0xF4
// (QEMU's isa-debug-exit convention) that powers off with the guest's status.
// Every other port reads as all ones and ignores writes (an empty bus).
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

struct KernelPlatform: GuestPlatform {
    static let com1: UInt16 = 0x3F8
    static let exitPort: UInt16 = 0xF4

    var line = InlineArray<200, UInt8>(repeating: 0)
    var lineLength = 0
    // 16550 registers the guest can set (SDM-less: the 16550 data sheet).
    var interruptEnable: UInt8 = 0
    var lineControl: UInt8 = 0
    var modemControl: UInt8 = 0
    var scratch: UInt8 = 0
    var divisor: UInt16 = 1

    mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32 {
        let allOnes = UInt32(truncatingIfNeeded: width.mask)
        guard port >= Self.com1, port <= Self.com1 + 7, width == .byte else { return allOnes }
        let dlab = lineControl & 0x80 != 0
        switch port - Self.com1 {
        case 0: return dlab ? UInt32(divisor & 0xFF) : 0
        case 1: return dlab ? UInt32(divisor >> 8) : UInt32(interruptEnable)
        case 2: return 0xC1          // FIFOs on, no interrupt pending
        case 3: return UInt32(lineControl)
        case 4: return UInt32(modemControl)
        case 5: return 0x60          // transmitter empty, nothing received
        case 6:
            // Loopback mode reflects MCR's outputs into MSR's inputs, as drivers probe for.
            if modemControl & 0x10 != 0 {
                let m = modemControl
                return UInt32((m & 1) << 5 | (m & 2) << 3 | (m & 4) << 4 | (m & 8) << 4)
            }
            return 0xB0              // CTS, DSR, DCD
        default: return UInt32(scratch)
        }
    }

    mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit? {
        if port == Self.exitPort {
            flush()
            return .powerOff(status: UInt8(truncatingIfNeeded: value))
        }
        guard port >= Self.com1, port <= Self.com1 + 7 else { return nil }
        let byte = UInt8(truncatingIfNeeded: value)
        let dlab = lineControl & 0x80 != 0
        switch port - Self.com1 {
        case 0:
            if dlab { divisor = divisor & 0xFF00 | UInt16(byte) } else if modemControl & 0x10 == 0 { emit(byte) }
        case 1:
            if dlab { divisor = divisor & 0x00FF | UInt16(byte) << 8 } else { interruptEnable = byte & 0x0F }
        case 3: lineControl = byte
        case 4: modemControl = byte & 0x1F
        case 7: scratch = byte
        default: break
        }
        return nil
    }

    mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes { emit(b) }
    }

    mutating func emit(_ byte: UInt8) {
        if byte == 0x0A { flush(); return }
        if byte == 0x0D { return }
        line[lineLength] = byte
        lineLength += 1
        if lineLength == 200 { flush() }
    }

    /// Prints the pending partial line, if any.
    mutating func flush() {
        guard lineLength > 0 else { return }
        let length = lineLength
        lineLength = 0
        withUnsafeBytes(of: &line) { all in
            Console.line("[guest] \(bytes: UnsafeRawBufferPointer(rebasing: all[0..<length]))")
        }
    }
}
