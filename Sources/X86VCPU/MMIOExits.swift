// EPT violations outside guest RAM: where the platform has a memory-mapped
// device (the isolated platform's local APIC and IOAPIC pages), the vCPU
// fetches the instruction at the guest's RIP, decodes it (MMIOInstruction),
// performs the access on the device and steps past it. Anything else (no
// device, an instruction fetch, an undecodable or mismatched instruction)
// stops the guest with the EPT-violation report, as before.
// SDM 29.3.3.2 "EPT Violations"; 28.2.1 "Basic VM-Exit Information" (the
// VM-exit instruction length is not defined for EPT violations: the decoded
// length is used).

import X86Arch
import VMX

extension VCPU {
    mutating func handleEPTViolation<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError)
        -> ExitAction {
        let gpa = try hw.read(VMCSFields.ReadOnly64.guestPhysicalAddress)
        let q = EPTViolationQualification(raw: try qualification(hw))
        let rip = try hw.read(VMCSFields.GuestNatural.rip)
        let stop = ExitAction.stop(.eptViolation(guestPhysical: gpa, qualification: q, rip: rip))
        // Only a data access of the instruction itself is emulated: not a
        // guest page walk that reached the page (bit 8 clear), nor an access
        // of event delivery (the IDT, a stack: IDT-vectoring information
        // valid), which the instruction at RIP never made.
        guard !q.isInstructionFetch, q.isTranslatedAccess == true, reinjection == nil else { return stop }
        if platform.decodesMMIO(gpa) { return try emulateMMIO(hw, &platform, at: gpa, isWrite: q.isWrite, otherwise: stop) }
        // An access that began on the APIC-access page (mapped, so no
        // violation there) and crossed into the next page: the device answers
        // for the end of its page (no register there).
        if apicVirtualized, gpa == apicAccessGuestPhysical &+ pageSize4KiB, platform.decodesMMIO(gpa &- 1) {
            return try emulateMMIO(hw, &platform, at: gpa &- 1, isWrite: q.isWrite, otherwise: stop)
        }
        return stop
    }

    /// Decodes the instruction at the guest's RIP and performs its access of
    /// `gpa` on the platform's device; `stop` when it cannot be fetched or
    /// decoded, or its direction is not the exit's.
    mutating func emulateMMIO<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P, at gpa: UInt64, isWrite: Bool,
                                                              otherwise stop: ExitAction) throws(VMXError) -> ExitAction {
        let rip = try hw.read(VMCSFields.GuestNatural.rip)

        // The instruction: up to 15 bytes at CS:RIP, through the guest's paging.
        let codeSize = MMIOCodeSize(protectedMode: try hw.read(VMCSFields.GuestNatural.cr0) & CR0Bits.pe.rawValue != 0,
                                    virtual8086: try hw.read(VMCSFields.GuestNatural.rflags) & RFLAGS.vm.rawValue != 0,
                                    longModeActive: try hw.read(VMCSFields.Guest64.ia32EFER) & EFER.lma.rawValue != 0,
                                    cs: SegmentAccessRights(rawValue: try hw.read(VMCSFields.Guest32.csAccessRights)))
        let linear = codeSize == .bits64 ? rip : (try hw.read(VMCSFields.GuestNatural.csBase) &+ rip) & 0xFFFF_FFFF
        var buffer: [16 of UInt8] = .init(repeating: 0)
        let fetched = try fetchInstruction(hw, at: linear, wrap: codeSize == .bits64 ? UInt64.max : 0xFFFF_FFFF, into: &buffer)
        let access: MMIOAccess
        do {
            access = try buffer.span.withUnsafeBytes { (all: UnsafeRawBufferPointer) throws(MMIODecodeError) -> MMIOAccess in
                try MMIOInstruction.decode(UnsafeRawBufferPointer(rebasing: all[0..<fetched]), codeSize: codeSize)
            }
        } catch {
            return stop
        }
        guard (access.kind == .write) == isWrite else { return stop }
        var rsp = access.usesStackPointer ? try hw.read(VMCSFields.GuestNatural.rsp) : 0
        platform.advance(toTSC: guestTSC(hw))   // e.g. the APIC timer's current count
        if access.kind == .write {
            platform.mmioWrite(gpa, size: access.size,
                               value: MMIOInstruction.writeValue(access, registers: registers, stackPointer: rsp))
        } else {
            let value = platform.mmioRead(gpa, size: access.size)
            MMIOInstruction.completeRead(access, value: value, registers: &registers, stackPointer: &rsp)
            if access.usesStackPointer { try hw.write(VMCSFields.GuestNatural.rsp, rsp) }
        }
        return try advance(hw, by: UInt64(access.length))
    }

    /// Copies the instruction bytes at guest-linear `linear` into `buffer`:
    /// at most 15, fewer where the second page does not translate. Outside
    /// 64-bit mode linear addresses wrap at 4 GiB (`wrap` is the mask). Returns the count.
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func fetchInstruction<H: VMXHardware>(_ hw: H, at linear: UInt64, wrap: UInt64, into buffer: inout [16 of UInt8])
        throws(VMXError) -> Int {
        let paging = try pagingState(hw)
        var count = 0
        while count < 15 {
            let address = (linear &+ UInt64(count)) & wrap
            let chunk = min(15 - count, Int(pageSize4KiB - (address & pageOffsetMask4KiB)))
            guard let gpa = translate(address, write: false, paging: paging),
                  let bytes = ram.bytes(at: gpa, count: chunk) else { break }
            for i in 0..<chunk { buffer[count + i] = bytes[i] }
            count += chunk
        }
        return count
    }
}
