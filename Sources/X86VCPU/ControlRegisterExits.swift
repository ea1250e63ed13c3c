// MOV to/from CR0, CR3, CR4, CR8, CLTS and LMSW for the bits the guest/host
// masks own. An exiting MOV carries the whole new value, so the handler
// applies every #GP rule of SDM "MOV—Move to/from Control Registers" itself:
// the CPU checks only the writes that do not exit. The state a write would
// leave is then checked against the VM-entry rules (GuestControlState)
// before anything is stored: a rule the emulation missed is the
// instruction's #GP, never a failed VM entry.

import X86Arch
import VMX

extension VCPU {
    mutating func handleCRAccess<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let q = ControlRegisterAccessQualification(raw: try qualification(hw))
        switch q.accessType {
        case .movToCR:
            var value = try readRegister(hw, q.generalRegister)
            // Outside 64-bit mode the operand is 32 bits (SDM "MOV—Move to/from Control Registers").
            if value >> 32 != 0, !(try in64BitMode(hw)) { value &= 0xFFFF_FFFF }
            switch q.controlRegister {
            case 0: if let fault = try writeGuestCR0(hw, value) { return raise(fault) }
            case 3: if let fault = try writeGuestCR3(hw, value) { return raise(fault) }
            case 4: if let fault = try writeGuestCR4(hw, value) { return raise(fault) }
            case 8:
                guard value <= 0xF else { return raise(.exception(.generalProtection, errorCode: 0)) }
                tpr = value
            default: return raise(.exception(.invalidOpcode))
            }
        case .movFromCR:
            switch q.controlRegister {
            case 3: try writeRegister(hw, q.generalRegister, try hw.read(VMCSFields.GuestNatural.cr3))
            case 8: try writeRegister(hw, q.generalRegister, tpr)
            default: return raise(.exception(.invalidOpcode))
            }
        case .clts:
            if let fault = try writeGuestCR0(hw, try guestCR0(hw) & ~CR0Bits.ts.rawValue) { return raise(fault) }
        case .lmsw:
            // SDM "LMSW": loads PE, MP, EM, TS; cannot clear PE.
            let old = try guestCR0(hw)
            let source = UInt64(q.lmswSourceData) & 0xF
            if let fault = try writeGuestCR0(hw, (old & ~0xE) | source | (old & 1)) { return raise(fault) }
        }
        return try advance(hw)
    }

    /// CR0 as the guest believes it is.
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func guestCR0<H: VMXHardware>(_ hw: H) throws(VMXError) -> UInt64 {
        cr0View.guestVisibleValue(real: try hw.read(VMCSFields.GuestNatural.cr0),
                                  readShadow: try hw.read(VMCSFields.ControlNatural.cr0ReadShadow))
    }

    /// CR4 as the guest believes it is (VMXE hidden).
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func guestCR4<H: VMXHardware>(_ hw: H) throws(VMXError) -> UInt64 {
        cr4View.guestVisibleValue(real: try hw.read(VMCSFields.GuestNatural.cr4),
                                  readShadow: try hw.read(VMCSFields.ControlNatural.cr4ReadShadow))
    }

    /// MOV to CR0: SDM "MOV—Move to/from Control Registers", and IA-32e mode
    /// activation (SDM 10.8.5 "Initializing IA-32e Mode"): paging turned on with
    /// EFER.LME set activates IA-32e mode, so EFER.LMA and the "IA-32e mode
    /// guest" entry control follow. Returns the fault to raise; on a fault
    /// nothing is written.
    mutating func writeGuestCR0<H: VMXHardware>(_ hw: H, _ value: UInt64) throws(VMXError) -> PendingEvent? {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0)
        let pe = CR0Bits.pe.rawValue, pg = CR0Bits.pg.rawValue
        if value >> 32 != 0 { return gp }
        if value & pg != 0 && value & pe == 0 { return gp }
        if value & CR0Bits.nw.rawValue != 0 && value & CR0Bits.cd.rawValue == 0 { return gp }
        let old = try guestCR0(hw)
        let oldEFER = try hw.read(VMCSFields.Guest64.ia32EFER)
        var efer = oldEFER
        let cr4 = try hw.read(VMCSFields.GuestNatural.cr4)
        if value & CR0Bits.wp.rawValue == 0 && cr4 & CR4Bits.cet.rawValue != 0 { return gp }
        var activating = false
        if old & pg == 0 && value & pg != 0 && efer & EFER.lme.rawValue != 0 {
            guard cr4 & CR4Bits.pae.rawValue != 0 else { return gp }
            efer |= EFER.lma.rawValue
            activating = true
        } else if old & pg != 0 && value & pg == 0 {
            if cr4 & CR4Bits.pcide.rawValue != 0 { return gp }
            if efer & EFER.lma.rawValue != 0 {
                // 64-bit mode (CS.L = 1) cannot turn paging off: only compatibility mode can.
                if try hw.read(VMCSFields.Guest32.csAccessRights) & SegmentAccessRights.longBit != 0 { return gp }
                efer &= ~EFER.lma.rawValue
            }
        }
        let lma = efer & EFER.lma.rawValue != 0
        let state = GuestControlState(cr0: cr0View.realValue(forGuestValue: value), cr3: nil, cr4: cr4, efer: efer,
                                      ia32eModeGuest: lma)
        // SDM 5.4.1 "PDPTE Registers": a MOV to CR0 that changes PG, CD or NW
        // under PAE paging loads them.
        var pdptes: InlineArray<4, UInt64>?
        if state.usesPDPTEs && (old ^ value) & (pg | CR0Bits.cd.rawValue | CR0Bits.nw.rawValue) != 0 {
            guard let entries = readPDPTEs(cr3: try hw.read(VMCSFields.GuestNatural.cr3)) else { return gp }
            pdptes = entries
        }
        guard commitable(state) else { return gp }
        if efer != oldEFER { try setIA32eMode(hw, efer: efer, on: lma) }
        if activating { try makeTR64Bit(hw) }
        if let pdptes { try writePDPTEs(hw, pdptes) }
        try hw.write(VMCSFields.GuestNatural.cr0, state.cr0)
        try hw.write(VMCSFields.ControlNatural.cr0ReadShadow, cr0View.readShadow(forGuestValue: value))
        return nil
    }

    /// MOV to CR3: reserved bits #GP (bit 63 is the PCID no-flush hint, not
    /// stored); under PAE paging the PDPTEs load from the new table.
    mutating func writeGuestCR3<H: VMXHardware>(_ hw: H, _ source: UInt64) throws(VMXError) -> PendingEvent? {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0)
        let efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        let cr4 = try hw.read(VMCSFields.GuestNatural.cr4)
        var value = source
        if cr4 & CR4Bits.pcide.rawValue != 0 { value &= ~(1 << 63) }
        if value >> UInt64(features.physicalAddressBits) != 0 { return gp }
        let state = GuestControlState(cr0: try hw.read(VMCSFields.GuestNatural.cr0), cr3: value, cr4: cr4, efer: efer,
                                      ia32eModeGuest: efer & EFER.lma.rawValue != 0)
        var pdptes: InlineArray<4, UInt64>?
        if state.usesPDPTEs {
            guard let entries = readPDPTEs(cr3: value) else { return gp }
            pdptes = entries
        }
        guard commitable(state) else { return gp }
        if let pdptes { try writePDPTEs(hw, pdptes) }
        try hw.write(VMCSFields.GuestNatural.cr3, value)
        return nil
    }

    /// MOV to CR4: reserved bits (those the CPU or the guest's CPUID lacks,
    /// and VMXE, hidden), PAE cleared in IA-32e mode, LA57 changed in IA-32e
    /// mode, PCIDE set outside IA-32e mode or with CR3[11:0] != 0, CET set
    /// with CR0.WP clear: #GP. Under PAE paging a change of PAE, PGE, PSE or
    /// SMEP reloads the PDPTEs (SDM 5.4.1).
    mutating func writeGuestCR4<H: VMXHardware>(_ hw: H, _ value: UInt64) throws(VMXError) -> PendingEvent? {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0)
        if value & ~guestCR4Bits != 0 { return gp }
        let old = try guestCR4(hw)
        let efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        let cr0 = try hw.read(VMCSFields.GuestNatural.cr0)
        let cr3 = try hw.read(VMCSFields.GuestNatural.cr3)
        let lma = efer & EFER.lma.rawValue != 0
        let changed = old ^ value
        if lma && value & CR4Bits.pae.rawValue == 0 { return gp }
        if lma && changed & CR4Bits.la57.rawValue != 0 { return gp }
        if value & ~old & CR4Bits.pcide.rawValue != 0 && (!lma || cr3 & 0xFFF != 0) { return gp }
        if value & CR4Bits.cet.rawValue != 0 && cr0 & CR0Bits.wp.rawValue == 0 { return gp }
        let state = GuestControlState(cr0: cr0, cr3: nil, cr4: cr4View.realValue(forGuestValue: value), efer: efer,
                                      ia32eModeGuest: lma)
        let reloadBits = CR4Bits.pae.rawValue | CR4Bits.pge.rawValue | CR4Bits.pse.rawValue | CR4Bits.smep.rawValue
        var pdptes: InlineArray<4, UInt64>?
        if state.usesPDPTEs && changed & reloadBits != 0 {
            guard let entries = readPDPTEs(cr3: cr3) else { return gp }
            pdptes = entries
        }
        guard commitable(state) else { return gp }
        if let pdptes { try writePDPTEs(hw, pdptes) }
        try hw.write(VMCSFields.GuestNatural.cr4, state.cr4)
        try hw.write(VMCSFields.ControlNatural.cr4ReadShadow, cr4View.readShadow(forGuestValue: value))
        fastPath.invalidateCPUID()  // OSXSAVE and OSPKE follow CR4
        return nil
    }

    /// 64-bit mode: IA-32e mode and CS.L.
    @inline(__always)
    func in64BitMode<H: VMXHardware>(_ hw: H) throws(VMXError) -> Bool {
        guard try hw.read(VMCSFields.Guest64.ia32EFER) & EFER.lma.rawValue != 0 else { return false }
        return try hw.read(VMCSFields.Guest32.csAccessRights) & SegmentAccessRights.longBit != 0
    }

    /// The safety net: the state passes the VM-entry rules on control registers.
    @inline(__always)
    func commitable(_ state: GuestControlState) -> Bool {
        state.violation(cr0Fixed: capabilities.cr0Fixed, cr4Fixed: capabilities.cr4Fixed,
                        physicalAddressWidth: features.physicalAddressBits) == nil
    }

    mutating func setIA32eMode<H: VMXHardware>(_ hw: H, efer: UInt64, on: Bool) throws(VMXError) {
        try hw.write(VMCSFields.Guest64.ia32EFER, efer)
        // Read the control back from the VMCS: VM exits store EFER.LMA into it.
        var entry = VMEntryControls(rawValue: try hw.read(VMCSFields.Control32.entryControls))
        if on { entry.insert(.ia32eModeGuest) } else { entry.remove(.ia32eModeGuest) }
        try hw.write(VMCSFields.Control32.entryControls, entry.rawValue)
    }

    /// IA-32e mode requires a 64-bit busy TSS in TR at VM entry (SDM 27.3.1.2
    /// "Checks on Guest Segment Registers"); a processor activating IA-32e
    /// mode keeps the 16-bit TSS it had, so the type is promoted, as the TSS
    /// itself is only read when TR is next used.
    func makeTR64Bit<H: VMXHardware>(_ hw: H) throws(VMXError) {
        let rights = try hw.read(VMCSFields.Guest32.trAccessRights)
        let typeMask = SegmentAccessRights.typeMask
        if rights & typeMask != SegmentType.busyTSS {
            try hw.write(VMCSFields.Guest32.trAccessRights, (rights & ~typeMask) | SegmentType.busyTSS)
        }
    }

    /// The four PAE PDPTEs at `cr3`, or nil when the table is not in guest RAM
    /// or a present entry has reserved bits set (SDM 5.4.1: #GP).
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func readPDPTEs(cr3: UInt64) -> InlineArray<4, UInt64>? {
        let table = cr3 & 0xFFFF_FFE0
        var entries: InlineArray<4, UInt64> = [0, 0, 0, 0]
        for i in 0..<4 {
            guard let entry = ram.read64(table + UInt64(i) * 8),
                  !GuestControlState.isReservedPDPTE(entry, physicalAddressWidth: features.physicalAddressBits)
            else { return nil }
            entries[i] = entry
        }
        return entries
    }

    /// PAE paging with EPT: VM entry takes the PDPTEs from the VMCS
    /// (SDM 27.3.2.4 "Loading Page-Directory-Pointer-Table Entries").
    func writePDPTEs<H: VMXHardware>(_ hw: H, _ entries: InlineArray<4, UInt64>) throws(VMXError) {
        let fields: InlineArray<4, VMCSField64> = [VMCSFields.Guest64.pdpte0, VMCSFields.Guest64.pdpte1,
                                                   VMCSFields.Guest64.pdpte2, VMCSFields.Guest64.pdpte3]
        for i in 0..<4 { try hw.write(fields[i], entries[i]) }
    }

    /// The CR4 bits a guest may set: those VMX allows (IA32_VMX_CR4_FIXED1)
    /// whose feature the guest's CPUID reports; never VMXE. Any other bit is
    /// reserved for the guest, and MOV to CR4 setting it raises #GP.
    // SDM 2.5 "Control Registers" names the CPUID flag of each CR4 bit.
    static func allowedCR4Bits(fixed1: UInt64, cpuid: (UInt32, UInt32) -> CPUIDValues) -> UInt64 {
        let maxLeaf = cpuid(0, 0).eax
        let leaf1 = cpuid(1, 0)
        let leaf7 = maxLeaf >= 7 ? cpuid(7, 0) : CPUIDValues(eax: 0, ebx: 0, ecx: 0, edx: 0)
        let leaf71 = maxLeaf >= 7 && leaf7.eax >= 1 ? cpuid(7, 1).eax : 0
        func has(_ register: UInt32, _ bit: UInt32) -> Bool { register >> bit & 1 != 0 }
        // (CR4 bit, present)
        let table: InlineArray<25, (CR4Bits, Bool)> = [
            (.vme, has(leaf1.edx, 1)), (.pvi, has(leaf1.edx, 1)), (.tsd, has(leaf1.edx, 4)),
            (.de, has(leaf1.edx, 2)), (.pse, has(leaf1.edx, 3)), (.pae, has(leaf1.edx, 6)),
            (.mce, has(leaf1.edx, 7)), (.pge, has(leaf1.edx, 13)), (.pce, true),
            (.osfxsr, has(leaf1.edx, 24)), (.osxmmexcpt, has(leaf1.edx, 25)), (.umip, has(leaf7.ecx, 2)),
            (.la57, has(leaf7.ecx, 16)), (.smxe, has(leaf1.ecx, 6)), (.fsgsbase, has(leaf7.ebx, 0)),
            (.pcide, has(leaf1.ecx, 17)), (.osxsave, has(leaf1.ecx, 26)), (.kl, has(leaf7.ecx, 23)),
            (.smep, has(leaf7.ebx, 7)), (.smap, has(leaf7.ebx, 20)), (.pke, has(leaf7.ecx, 3)),
            (.cet, has(leaf7.ecx, 7) || has(leaf7.edx, 20)), (.pks, has(leaf7.ecx, 31)),
            (.uintr, has(leaf7.edx, 5)), (.lass, has(leaf71, 6)),
        ]
        var bits: UInt64 = 0
        for i in table.indices where table[i].1 { bits |= table[i].0.rawValue }
        if has(leaf71, 26) { bits |= CR4Bits.lamSupervisor.rawValue }
        if has(leaf71, 17) { bits |= CR4Bits.fred.rawValue }
        return bits & fixed1 & ~CR4Bits.vmxe.rawValue
    }
}
