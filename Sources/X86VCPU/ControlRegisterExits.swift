// MOV to/from CR0, CR3, CR4, CR8, CLTS and LMSW for the bits the guest/host
// masks own.

import X86Arch
import VMX

extension VCPU {
    mutating func handleCRAccess<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let q = ControlRegisterAccessQualification(raw: try qualification(hw))
        switch q.accessType {
        case .movToCR:
            let value = try readRegister(hw, q.generalRegister)
            switch q.controlRegister {
            case 0: if let fault = try writeGuestCR0(hw, value) { return raise(fault) }
            case 3:
                let old = try hw.read(VMCSFields.GuestNatural.cr3)
                try hw.write(VMCSFields.GuestNatural.cr3, value)
                // SDM 4.4.1 "PDPTE Registers": with PAE paging, MOV to CR3 loads the PDPTEs.
                let paging = try pagingState(hw)
                if paging.cr0 & CR0Bits.pg.rawValue != 0 && paging.cr4 & CR4Bits.pae.rawValue != 0
                    && paging.efer & EFER.lma.rawValue == 0, !(try loadPDPTEs(hw)) {
                    try hw.write(VMCSFields.GuestNatural.cr3, old)
                    return raise(.exception(.generalProtection, errorCode: 0))
                }
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

    /// MOV to CR0 with the checks of SDM "MOV—Move to/from Control Registers"
    /// and IA-32e mode entry/exit (SDM 10.8.5 "Initializing IA-32e Mode"): paging
    /// turned on with EFER.LME set activates IA-32e mode, so EFER.LMA and the
    /// "IA-32e mode guest" entry control follow. Returns the fault to raise.
    mutating func writeGuestCR0<H: VMXHardware>(_ hw: H, _ value: UInt64) throws(VMXError) -> PendingEvent? {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0)
        let pe = CR0Bits.pe.rawValue, pg = CR0Bits.pg.rawValue
        if value >> 32 != 0 { return gp }
        if value & pg != 0 && value & pe == 0 { return gp }
        if value & CR0Bits.nw.rawValue != 0 && value & CR0Bits.cd.rawValue == 0 { return gp }
        let old = try guestCR0(hw)
        var efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        let cr4 = try hw.read(VMCSFields.GuestNatural.cr4)
        if old & pg == 0 && value & pg != 0 && efer & EFER.lme.rawValue != 0 {
            guard cr4 & CR4Bits.pae.rawValue != 0 else { return gp }
            efer |= EFER.lma.rawValue
            try setIA32eMode(hw, efer: efer, on: true)
        } else if old & pg != 0 && value & pg == 0 && efer & EFER.lma.rawValue != 0 {
            // 64-bit mode (CS.L = 1) cannot turn paging off: only compatibility mode can.
            if try hw.read(VMCSFields.Guest32.csAccessRights) & (1 << 13) != 0 { return gp }
            efer &= ~EFER.lma.rawValue
            try setIA32eMode(hw, efer: efer, on: false)
        }
        // PDPTEs first: a MOV that faults on them leaves CR0 as it was.
        if value & pg != 0 && efer & EFER.lma.rawValue == 0 && cr4 & CR4Bits.pae.rawValue != 0 {
            guard try loadPDPTEs(hw) else { return gp }
        }
        try hw.write(VMCSFields.GuestNatural.cr0, cr0View.realValue(forGuestValue: value))
        try hw.write(VMCSFields.ControlNatural.cr0ReadShadow, cr0View.readShadow(forGuestValue: value))
        return nil
    }

    mutating func setIA32eMode<H: VMXHardware>(_ hw: H, efer: UInt64, on: Bool) throws(VMXError) {
        try hw.write(VMCSFields.Guest64.ia32EFER, efer)
        // Read the control back from the VMCS: VM exits store EFER.LMA into it.
        var entry = VMEntryControls(rawValue: try hw.read(VMCSFields.Control32.entryControls))
        if on { entry.insert(.ia32eModeGuest) } else { entry.remove(.ia32eModeGuest) }
        try hw.write(VMCSFields.Control32.entryControls, entry.rawValue)
    }

    /// PAE paging with EPT: VM entry takes the PDPTEs from the VMCS
    /// (SDM 27.3.2.4 "Loading Page-Directory-Pointer-Table Entries").
    mutating func loadPDPTEs<H: VMXHardware>(_ hw: H) throws(VMXError) -> Bool {
        let table = try hw.read(VMCSFields.GuestNatural.cr3) & 0xFFFF_FFE0
        let fields: [4 of VMCSField64] = [VMCSFields.Guest64.pdpte0, VMCSFields.Guest64.pdpte1,
                                          VMCSFields.Guest64.pdpte2, VMCSFields.Guest64.pdpte3]
        for i in 0..<4 {
            guard let entry = ram.read64(table + UInt64(i) * 8) else { return false }
            try hw.write(fields[i], entry)
        }
        return true
    }

    /// MOV to CR4: bits the CPU cannot have (and VMXE, hidden) raise #GP.
    mutating func writeGuestCR4<H: VMXHardware>(_ hw: H, _ value: UInt64) throws(VMXError) -> PendingEvent? {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0)
        let vmxe = CR4Bits.vmxe.rawValue
        if value & vmxe != 0 || value & ~capabilities.cr4Fixed.fixed1 != 0 { return gp }
        let efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        if efer & EFER.lma.rawValue != 0 && value & CR4Bits.pae.rawValue == 0 { return gp }
        try hw.write(VMCSFields.GuestNatural.cr4, cr4View.realValue(forGuestValue: value))
        try hw.write(VMCSFields.ControlNatural.cr4ReadShadow, cr4View.readShadow(forGuestValue: value))
        fastPath.invalidateCPUID()  // OSXSAVE and OSPKE follow CR4
        return nil
    }
}
