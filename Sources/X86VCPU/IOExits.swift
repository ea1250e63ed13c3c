// IN/OUT and INS/OUTS through the platform's ports. The CPU checks I/O
// permission (CPL, IOPL, the TSS bitmap) before the exit; string I/O's
// memory operand is the handler's to check, as the CPU would: the segment
// (override, type, limit, canonical form), then the guest's paging at the
// guest's privilege, for every byte of every element.

import X86Arch
import VMX

/// Where one string-I/O element lies, or what the access raises.
enum StringIOTarget: Equatable {
    /// The linear address of the element's first byte.
    case linear(UInt64)
    /// The segment check fails: #GP(0), or #SS(0) through SS.
    case fault(PendingEvent)
}

extension VCPU {
    /// The I/O exits `quickExit` (QuickExits.swift, IN and OUT) declines:
    /// string I/O, and a size the SDM does not define.
    mutating func handleIO<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        let q = IOInstructionQualification(raw: try qualification(hw))
        guard let width = q.width else {
            return .stop(.unhandled(reason: .ioInstruction, qualification: q.raw, rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
        return try handleStringIO(hw, &platform, q, width)
    }

    /// IN or OUT (not string) through the platform; nil to go on, else why the guest stops.
    @inline(__always)
    mutating func portAccess<P: GuestPlatform>(_ q: IOInstructionQualification, _ width: OperandWidth,
                                               _ platform: inout P) -> VCPUExit? {
        if q.direction == .in {
            let value = UInt64(platform.portIn(q.port, width: width))
            // IN to EAX zero-extends like any 32-bit write; AL/AX merge.
            registers.rax = GeneralRegisters.merge(value, into: registers.rax, width: width, shift: 0)
            return nil
        }
        return platform.portOut(q.port, width: width, value: UInt32(truncatingIfNeeded: registers.rax & width.mask))
    }

    /// INS/OUTS, with REP: as many elements as fit in this exit (at most a
    /// page's worth); RIP stays on the instruction while RCX is not exhausted.
    /// A fault stops the instruction with RSI/RDI and RCX describing the
    /// elements done, as on hardware.
    /// SDM "INS/INSB/INSW/INSD", "OUTS/OUTSB/OUTSW/OUTSD", "REP/REPE/REPZ...".
    mutating func handleStringIO<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P,
                                                                   _ q: IOInstructionQualification,
                                                                   _ width: OperandWidth) throws(VMXError) -> ExitAction {
        let cs = SegmentAccessRights(rawValue: try hw.read(VMCSFields.Guest32.csAccessRights))
        let efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        let longMode = efer & EFER.lma.rawValue != 0 && cs.isLong
        let info = capabilities.basic.reportsINSOUTSInformation
            ? StringIOInstructionInformation(raw: try hw.read(VMCSFields.ReadOnly32.exitInstructionInformation)) : nil
        let addressBytes = info?.addressSize?.bytes ?? (longMode ? 8 : cs.isDefaultBig ? 4 : 2)
        let addressMask: UInt64 = addressBytes == 8 ? UInt64.max : (1 << UInt64(addressBytes * 8)) - 1
        let addressWidth = OperandWidth(bytes: addressBytes) ?? .qword
        // INS writes ES:rDI (no override); OUTS reads seg:rSI, DS unless overridden.
        let isIn = q.direction == .in
        let segment: SegmentRegister = isIn ? .es : (info?.segment ?? .ds)
        let descriptor = try readSegment(hw, segment)
        let indexRegister = isIn ? 7 : 6
        var index = (registers.read(indexRegister, width: .qword) ?? 0) & addressMask
        var count: UInt64 = q.isRepeated ? registers.rcx & addressMask : 1
        let step = UInt64(width.bytes)
        let rflags = try hw.read(VMCSFields.GuestNatural.rflags)
        let down = rflags & RFLAGS.df.rawValue != 0
        let paging = try pagingState(hw)
        let protected = paging.cr0 & CR0Bits.pe.rawValue != 0
        let access = GuestAccess(isIn ? .write : .read, userMode: try currentPrivilegeLevel(hw) == 3,
                                 alignmentCheckFlag: rflags & RFLAGS.ac.rawValue != 0)
        let canonicalBits: UInt64 = paging.cr4 & CR4Bits.la57.rawValue != 0 ? 57 : 48
        var budget = 4096 / width.bytes
        var outcome = ExitAction.resume
        while count > 0 && budget > 0 {
            let target = Self.stringIOTarget(offset: index, width: width.bytes, segment: segment,
                                             base: descriptor.base, limit: descriptor.limit, rights: descriptor.rights,
                                             write: isIn, longMode: longMode, protectedMode: protected,
                                             canonicalBits: canonicalBits)
            guard case .linear(let linear) = target else {
                if case .fault(let event) = target { outcome = raise(event) }
                break
            }
            // The element's bytes, split where it crosses into the next page.
            let first = min(width.bytes, Int(0x1000 - (linear & 0xFFF)))
            var low: UnsafeMutableRawBufferPointer?
            var high: UnsafeMutableRawBufferPointer?
            var failure: ExitAction?
            for part in 0..<2 {
                let start = part == 0 ? linear : linear &+ UInt64(first)
                let size = part == 0 ? first : width.bytes - first
                if size == 0 { break }
                let translated: UInt64
                do throws(GuestPageWalkError) {
                    translated = try paging.translate(start, access: access, memory: ram).guestPhysical
                } catch {
                    switch error {
                    case .pageFault(let code):
                        faultAddress = start
                        failure = raise(.exception(.pageFault, errorCode: code.rawValue))
                    case .nonCanonical:
                        failure = raise(.exception(segment == .ss ? .stackSegmentFault : .generalProtection, errorCode: 0))
                    case .tableNotInGuestMemory:
                        failure = .stop(.badGuestAddress(linear: start, rip: try hw.read(VMCSFields.GuestNatural.rip)))
                    }
                    break
                }
                guard let bytes = ram.bytes(at: translated, count: size) else {
                    failure = .stop(.badGuestAddress(linear: start, rip: try hw.read(VMCSFields.GuestNatural.rip)))
                    break
                }
                if part == 0 { low = bytes } else { high = bytes }
            }
            if let failure { outcome = failure; break }
            guard let low else { break }
            if isIn {
                let value = platform.portIn(q.port, width: width)
                for i in 0..<width.bytes {
                    let b = UInt8(truncatingIfNeeded: value >> UInt32(8 * i))
                    if i < first { low[i] = b } else { high?[i - first] = b }
                }
            } else {
                var value: UInt32 = 0
                for i in 0..<width.bytes { value |= UInt32(i < first ? low[i] : high?[i - first] ?? 0) << UInt32(8 * i) }
                if let stop = platform.portOut(q.port, width: width, value: value) { outcome = .stop(stop); break }
            }
            index = (down ? index &- step : index &+ step) & addressMask
            count -= 1
            budget -= 1
        }
        _ = registers.write(indexRegister, index, width: addressWidth)
        if q.isRepeated { _ = registers.write(1, count, width: addressWidth) }
        if case .resume = outcome, count == 0 { return try advance(hw) }
        return outcome
    }

    /// A segment register's base, limit and access rights from the guest-state area.
    func readSegment<H: VMXHardware>(_ hw: H, _ segment: SegmentRegister)
        throws(VMXError) -> (base: UInt64, limit: UInt32, rights: SegmentAccessRights) {
        typealias GN = VMCSFields.GuestNatural
        typealias G32 = VMCSFields.Guest32
        let fields: (VMCSFieldNatural, VMCSField32, VMCSField32)
        switch segment {
        case .es: fields = (GN.esBase, G32.esLimit, G32.esAccessRights)
        case .cs: fields = (GN.csBase, G32.csLimit, G32.csAccessRights)
        case .ss: fields = (GN.ssBase, G32.ssLimit, G32.ssAccessRights)
        case .ds: fields = (GN.dsBase, G32.dsLimit, G32.dsAccessRights)
        case .fs: fields = (GN.fsBase, G32.fsLimit, G32.fsAccessRights)
        case .gs: fields = (GN.gsBase, G32.gsLimit, G32.gsAccessRights)
        }
        return (try hw.read(fields.0), try hw.read(fields.1), SegmentAccessRights(rawValue: try hw.read(fields.2)))
    }

    /// The linear address of `width` bytes at `offset` in a segment, or the
    /// fault the access raises: in 64-bit mode only FS and GS have a base and
    /// both ends must be canonical; otherwise the segment must be usable (in
    /// protected mode), of a type allowing the access, and hold every byte
    /// (expand-down segments hold the bytes above the limit).
    /// SDM Vol. 1 3.3.7.1 "Canonical Addressing"; Vol. 3 6.3 "Limit Checking", 6.4 "Type Checking".
    static func stringIOTarget(offset: UInt64, width: Int, segment: SegmentRegister, base: UInt64, limit: UInt32,
                               rights: SegmentAccessRights, write: Bool, longMode: Bool, protectedMode: Bool,
                               canonicalBits: UInt64) -> StringIOTarget {
        let fault = StringIOTarget.fault(.exception(segment == .ss ? .stackSegmentFault : .generalProtection, errorCode: 0))
        let last = UInt64(width - 1)
        if longMode {
            let linear = (segment == .fs || segment == .gs ? base : 0) &+ offset
            let bits = Int(canonicalBits)
            return isCanonical(linear, linearBits: bits) && isCanonical(linear &+ last, linearBits: bits)
                ? .linear(linear) : fault
        }
        if protectedMode {
            if rights.isUnusable { return fault }
            let code = rights.type & SegmentType.code != 0, readableOrWritable = rights.type & SegmentType.writableOrReadable != 0
            if write && (code || !readableOrWritable) { return fault }
            if !write && code && !readableOrWritable { return fault }
        }
        let expandDown = rights.type & (SegmentType.code | SegmentType.expandDownOrConforming) == SegmentType.expandDownOrConforming
        if expandDown {
            let upper: UInt64 = rights.isDefaultBig ? 0xFFFF_FFFF : 0xFFFF
            if offset <= UInt64(limit) || offset + last > upper { return fault }
        } else if offset + last > UInt64(limit) {
            return fault
        }
        return .linear((base &+ offset) & 0xFFFF_FFFF)
    }
}
