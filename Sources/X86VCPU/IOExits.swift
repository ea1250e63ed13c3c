// IN/OUT and INS/OUTS through the platform's ports.

import X86Arch
import VMX

extension VCPU {
    mutating func handleIO<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        let q = IOInstructionQualification(raw: try qualification(hw))
        guard let width = q.width else {
            return .stop(.unhandled(reason: .ioInstruction, qualification: q.raw, rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
        if q.isString { return try handleStringIO(hw, &platform, q, width) }
        if q.direction == .in {
            let value = UInt64(platform.portIn(q.port, width: width))
            // IN to EAX zero-extends like any 32-bit write; AL/AX merge.
            _ = registers.write(0, value, width: width)
        } else {
            let value = UInt32(truncatingIfNeeded: registers.rax & width.mask)
            if let stop = platform.portOut(q.port, width: width, value: value) {
                _ = try advance(hw)
                return .stop(stop)
            }
        }
        return try advance(hw)
    }

    /// INS/OUTS, with REP: as many elements as fit in this exit (at most a
    /// page's worth); RIP stays on the instruction while RCX is not exhausted.
    /// SDM "INS/INSB/INSW/INSD", "OUTS/OUTSB/OUTSW/OUTSD", "REP/REPE/REPZ...".
    mutating func handleStringIO<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P,
                                                                   _ q: IOInstructionQualification,
                                                                   _ width: OperandWidth) throws(VMXError) -> ExitAction {
        let csRights = try hw.read(VMCSFields.Guest32.csAccessRights)
        let efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        let addressBytes: Int
        if capabilities.basic.reportsINSOUTSInformation,
           let size = StringIOInstructionInformation(raw: try hw.read(VMCSFields.ReadOnly32.exitInstructionInformation)).addressSize {
            addressBytes = size.bytes
        } else if efer & EFER.lma.rawValue != 0 && csRights & (1 << 13) != 0 {
            addressBytes = 8
        } else {
            addressBytes = csRights & (1 << 14) != 0 ? 4 : 2
        }
        let addressMask: UInt64 = addressBytes == 8 ? UInt64.max : (1 << UInt64(addressBytes * 8)) - 1
        let addressWidth = OperandWidth(bytes: addressBytes) ?? .qword
        // OUTS reads DS:RSI (a segment override is ignored here), INS writes ES:RDI.
        let isIn = q.direction == .in
        let segmentBase = try hw.read(isIn ? VMCSFields.GuestNatural.esBase : VMCSFields.GuestNatural.dsBase)
        let indexRegister = isIn ? 7 : 6
        var index = (registers.read(indexRegister, width: .qword) ?? 0) & addressMask
        var count: UInt64 = q.isRepeated ? registers.rcx & addressMask : 1
        let step = UInt64(width.bytes)
        let down = try hw.read(VMCSFields.GuestNatural.rflags) & (1 << 10) != 0
        let paging = try pagingState(hw)
        var budget = 4096 / width.bytes
        while count > 0 && budget > 0 {
            let linear = segmentBase &+ index
            guard let gpa = translate(linear, write: isIn, paging: paging),
                  let bytes = ram.bytes(at: gpa, count: width.bytes) else {
                return .stop(.badGuestAddress(linear: linear, rip: try hw.read(VMCSFields.GuestNatural.rip)))
            }
            if isIn {
                let value = platform.portIn(q.port, width: width)
                for i in 0..<width.bytes { bytes[i] = UInt8(truncatingIfNeeded: value >> UInt32(8 * i)) }
            } else {
                var value: UInt32 = 0
                for i in 0..<width.bytes { value |= UInt32(bytes[i]) << UInt32(8 * i) }
                if let stop = platform.portOut(q.port, width: width, value: value) { return .stop(stop) }
            }
            index = (down ? index &- step : index &+ step) & addressMask
            count -= 1
            budget -= 1
        }
        _ = registers.write(indexRegister, index, width: addressWidth)
        if q.isRepeated { _ = registers.write(1, count, width: addressWidth) }
        return count == 0 ? try advance(hw) : .resume
    }
}
