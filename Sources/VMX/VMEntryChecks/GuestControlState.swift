// The VM-entry rules on the guest's control registers, EFER and PDPTEs as a
// pure check of values: an exit handler that emulates a write to them checks
// the state it is about to store, so a rule its emulation missed becomes the
// instruction's #GP instead of a failed VM entry.
// SDM 27.3.1.1 "Checks on Guest Control Registers, Debug Registers, and MSRs",
// 27.3.1.6 "Checks on Guest Page-Directory-Pointer-Table Entries".

import X86Arch

/// CR0, CR3, CR4, EFER and the "IA-32e mode guest" control as VM entry will
/// see them. The PDPTEs are checked as they are read (`isReservedPDPTE`).
@frozen
public struct GuestControlState: Sendable {
    public var cr0: UInt64
    /// nil when the write leaves CR3 as it was (its rule cannot change).
    public var cr3: UInt64?
    public var cr4: UInt64
    public var efer: UInt64
    public var ia32eModeGuest: Bool

    @inlinable
    public init(cr0: UInt64, cr3: UInt64?, cr4: UInt64, efer: UInt64, ia32eModeGuest: Bool) {
        self.cr0 = cr0; self.cr3 = cr3; self.cr4 = cr4; self.efer = efer
        self.ia32eModeGuest = ia32eModeGuest
    }

    /// PAE paging outside IA-32e mode: VM entry with EPT takes the PDPTEs from the VMCS.
    @inlinable
    public var usesPDPTEs: Bool {
        cr0 & CR0Bits.pg.rawValue != 0 && cr4 & CR4Bits.pae.rawValue != 0 && !ia32eModeGuest
    }

    /// A present PAE PDPTE with reserved bits set (2:1, 8:5, 63:MAXPHYADDR).
    // SDM 5.4.1 "PDPTE Registers"
    @inlinable
    public static func isReservedPDPTE(_ entry: UInt64, physicalAddressWidth: Int) -> Bool {
        let width = max(1, min(64, physicalAddressWidth))
        let beyond = width >= 64 ? 0 : entry >> UInt64(width)
        return entry & PageTableEntry.present != 0 && (entry & PAEPDPTE.reservedMask != 0 || beyond != 0)
    }

    /// The first rule this state breaks, for a VMCS with unrestricted guest
    /// and "load IA32_EFER" on entry (the vCPU's controls); nil when none.
    /// Inlined, so the checks a handler has just made fold away.
    @inlinable @inline(__always)
    public func violation(cr0Fixed: FixedBits, cr4Fixed: FixedBits, physicalAddressWidth: Int) -> VMEntryRule? {
        let pe = CR0Bits.pe.rawValue, pg = CR0Bits.pg.rawValue
        let cr0Rule = cr0Fixed.exempting(mustBeOne: pe | pg)
        if cr0Rule.violations(in: cr0) & ~(CR0Bits.nw.rawValue | CR0Bits.cd.rawValue) != 0 { return .guestCR0FixedBits }
        if cr0 & pg != 0 && cr0 & pe == 0 { return .guestCR0PagingWithoutProtection }
        if !cr4Fixed.isValid(cr4) { return .guestCR4FixedBits }
        if cr4 & CR4Bits.cet.rawValue != 0 && cr0 & CR0Bits.wp.rawValue == 0 { return .guestCETWithoutWriteProtect }
        if ia32eModeGuest {
            if cr0 & pg == 0 { return .guestIA32eModeWithoutPaging }
            if cr4 & CR4Bits.pae.rawValue == 0 { return .guestIA32eModeWithoutPAE }
        } else if cr4 & CR4Bits.pcide.rawValue != 0 {
            return .guestPCIDEOutsideIA32eMode
        }
        if let cr3 {
            let width = max(1, min(64, physicalAddressWidth))
            if width < 64 && cr3 >> UInt64(width) != 0 { return .guestCR3Width }
        }
        let writable = EFER.sce.rawValue | EFER.lme.rawValue | EFER.lma.rawValue | EFER.nxe.rawValue
        if efer & ~writable != 0 { return .guestEFERReservedBits }
        let lma = efer & EFER.lma.rawValue != 0, lme = efer & EFER.lme.rawValue != 0
        if lma != ia32eModeGuest { return .guestEFERLMAMismatch }
        if cr0 & pg != 0 && lme != lma { return .guestEFERLMEMismatch }
        return nil
    }
}
