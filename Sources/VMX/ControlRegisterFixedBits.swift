// Bits of CR0 and CR4 that VMX operation fixes, and the guest's view of them.
// SDM A.7 "VMX-Fixed Bits in CR0", A.8 "VMX-Fixed Bits in CR4", 24.8
// "Restrictions on VMX Operation", 26.3.1.1 "Checks on Guest Control
// Registers, Debug Registers, and MSRs", 26.6.3 "Guest/Host Masks and Read
// Shadows for CR0 and CR4".

import X86Arch

/// An IA32_VMX_CRn_FIXED0/FIXED1 pair: a bit that is 1 in FIXED0 must be 1,
/// a bit that is 0 in FIXED1 must be 0, the rest are free. SDM A.7/A.8.
@frozen
public struct FixedBits: Equatable, Sendable {
    /// Bits that must be 1.
    public let fixed0: UInt64
    /// Bits that may be 1 (a 0 here means the bit must be 0).
    public let fixed1: UInt64

    public init(fixed0: UInt64, fixed1: UInt64) { self.fixed0 = fixed0; self.fixed1 = fixed1 }

    /// Bits whose value is fixed one way or the other.
    public var fixedMask: UInt64 { fixed0 | ~fixed1 }

    /// Bits of `value` that break the rule: must-be-1 bits that are 0 and
    /// must-be-0 bits that are 1. Zero means valid.
    public func violations(in value: UInt64) -> UInt64 { (fixed0 & ~value) | (value & ~fixed1) }

    public func isValid(_ value: UInt64) -> Bool { violations(in: value) == 0 }

    /// `value` with every fixed bit forced to its required setting.
    public func forced(_ value: UInt64) -> UInt64 { (value | fixed0) & fixed1 }

    /// The same rule with `bits` released from must-be-1 (used for CR0.PE/PG
    /// with unrestricted guest).
    public func exempting(mustBeOne bits: UInt64) -> FixedBits {
        FixedBits(fixed0: fixed0 & ~bits, fixed1: fixed1)
    }
}

/// How a guest sees one control register while VMX fixes some of its bits:
/// the real register (guest-state field) satisfies the fixed bits; bits the
/// guest may not own are set in the guest/host mask, so the guest's reads of
/// them come from the read shadow and its writes to them cause VM exits.
/// SDM 26.6.3 "Guest/Host Masks and Read Shadows for CR0 and CR4".
public struct GuestControlRegisterView: Equatable, Sendable {
    /// The rule the guest-state field must satisfy at VM entry.
    public let fixed: FixedBits
    /// Bits owned by the hypervisor (the VMCS CRn guest/host mask).
    public let guestHostMask: UInt64
    /// Bits the guest always reads as 0 although they are 1 in the real register.
    public let hiddenBits: UInt64

    public init(fixed: FixedBits, guestHostMask: UInt64, hiddenBits: UInt64) {
        self.fixed = fixed; self.guestHostMask = guestHostMask; self.hiddenBits = hiddenBits
    }

    /// CR0 for a guest. Every fixed bit is host-owned. With "unrestricted
    /// guest", PE and PG may be 0 in the guest (SDM 26.3.1.1), so they leave
    /// the must-be-1 set and, unless FIXED1 forbids them, the mask.
    public static func cr0(fixed: FixedBits, unrestrictedGuest: Bool) -> GuestControlRegisterView {
        let rule = unrestrictedGuest ? fixed.exempting(mustBeOne: CR0Bits.pe.rawValue | CR0Bits.pg.rawValue) : fixed
        return GuestControlRegisterView(fixed: rule, guestHostMask: rule.fixedMask, hiddenBits: 0)
    }

    /// CR4 for a guest. Every fixed bit is host-owned, and CR4.VMXE (which VMX
    /// operation forces to 1) is hidden: masked, and shadowed as 0. `tracked`
    /// bits stay the guest's but are masked too, so changing them exits: the
    /// vCPU learns of it (CPUID mirrors OSXSAVE and PKE).
    public static func cr4(fixed: FixedBits, tracked: UInt64 = 0) -> GuestControlRegisterView {
        let vmxe = CR4Bits.vmxe.rawValue
        return GuestControlRegisterView(fixed: fixed, guestHostMask: fixed.fixedMask | vmxe | tracked, hiddenBits: vmxe)
    }

    /// The guest-state field value for the value the guest wants.
    public func realValue(forGuestValue value: UInt64) -> UInt64 { fixed.forced(value) }

    /// The read-shadow value for the value the guest wants: its own value,
    /// except hidden bits read as 0.
    public func readShadow(forGuestValue value: UInt64) -> UInt64 { value & ~hiddenBits }

    /// What a guest MOV from CRn returns for a given real value and shadow.
    public func guestVisibleValue(real: UInt64, readShadow: UInt64) -> UInt64 {
        (real & ~guestHostMask) | (readShadow & guestHostMask)
    }

    /// Whether a guest MOV to CRn of `value` must exit: it changes a masked
    /// bit away from the shadow. SDM 26.1.3 "Instructions That Cause VM Exits Conditionally".
    public func writeCausesExit(_ value: UInt64, readShadow: UInt64) -> Bool {
        (value ^ readShadow) & guestHostMask != 0
    }
}
