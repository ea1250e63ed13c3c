// XSETBV always causes a VM exit. CPL > 0 and CR4.OSXSAVE = 0 fault before the
// exit (SDM 26.1.1 "Relative Priority of Faults and VM Exits"), so the handler
// sees only CPL-0 attempts and checks the operand itself.

import X86Arch
import VMX

/// Why an XSETBV attempt raises #GP(0).
// SDM "XSETBV—Set Extended Control Register", Protected Mode Exceptions
public enum XSETBVViolation: Equatable, Sendable {
    /// ECX names an XCR other than XCR0 (XCR1 is read-only, via XGETBV).
    case invalidRegister(UInt32)
    /// Bits the processor (or policy) does not support are set.
    case reservedBits(UInt64)
    /// Bit 0 (x87) cleared.
    case x87Cleared
    /// Bit 2 (AVX) set with bit 1 (SSE) clear.
    case avxWithoutSSE
    /// Bits 3 (BNDREGS) and 4 (BNDCSR) differ.
    case mpxMismatch
    /// Bits 7:5 (opmask, ZMM_Hi256, Hi16_ZMM) neither all set nor all clear.
    case avx512Partial
    /// Bits 7:5 set with bit 2 (AVX) clear.
    case avx512WithoutAVX
    /// Bits 17 (XTILECFG) and 18 (XTILEDATA) differ.
    case amxMismatch

    /// A short reason for reports.
    public var reason: StaticString {
        switch self {
        case .invalidRegister: return "XSETBV: ECX is not 0"
        case .reservedBits: return "XSETBV: reserved or unsupported XCR0 bits"
        case .x87Cleared: return "XSETBV: XCR0.x87 cleared"
        case .avxWithoutSSE: return "XSETBV: AVX without SSE"
        case .mpxMismatch: return "XSETBV: BNDREGS and BNDCSR differ"
        case .avx512Partial: return "XSETBV: AVX-512 bits not all equal"
        case .avx512WithoutAVX: return "XSETBV: AVX-512 without AVX"
        case .amxMismatch: return "XSETBV: XTILECFG and XTILEDATA differ"
        }
    }
}

/// The outcome of the guest's XSETBV: load the new XCR0, or inject #GP(0).
public enum XSETBVOutcome: Equatable, Sendable {
    /// Load `xcr0` as the guest's XCR0 and advance RIP past the instruction.
    case valid(xcr0: UInt64)
    /// Inject `XSETBVOutcome.fault` and leave RIP at the instruction.
    case generalProtection(XSETBVViolation)

    /// #GP with error code 0, what every failed check raises.
    public static var fault: PendingEvent { .exception(.generalProtection, errorCode: 0) }

    /// The exception to inject, nil when the write is valid.
    @inlinable
    public var exceptionToInject: PendingEvent? {
        if case .generalProtection = self { return Self.fault }
        return nil
    }
}

/// The XSETBV checks as a pure function.
public enum XSETBV {
    /// The 64-bit operand EDX:EAX from the guest's RDX and RAX.
    @inlinable
    public static func operand(rax: UInt64, rdx: UInt64) -> UInt64 {
        (rdx & 0xFFFF_FFFF) << 32 | (rax & 0xFFFF_FFFF)
    }

    /// Checks writing `value` to XCR`ecx` when the guest may enable the XCR0
    /// bits in `supported` (e.g. `CPUIDPolicy.supportedXCR0`).
    // SDM "XSETBV—Set Extended Control Register"; 14.3 "Enabling the XSAVE Feature Set and XSAVE-Enabled Features"
    @inlinable
    public static func validate(ecx: UInt32, value: UInt64, supported: UInt64) -> XSETBVOutcome {
        guard ecx == 0 else { return .generalProtection(.invalidRegister(ecx)) }
        let reserved = value & ~(supported | XCR0Bits.x87.rawValue)
        guard reserved == 0 else { return .generalProtection(.reservedBits(reserved)) }
        let bits = XCR0Bits(rawValue: value)
        /// Every bit of `group`, or none of it.
        func allOrNone(_ group: XCR0Bits) -> Bool { bits.contains(group) || !bits.intersects(group) }
        guard bits.contains(.x87) else { return .generalProtection(.x87Cleared) }
        if bits.contains(.avx), !bits.contains(.sse) { return .generalProtection(.avxWithoutSSE) }
        if !allOrNone(.mpx) { return .generalProtection(.mpxMismatch) }
        if bits.intersects(.avx512) {
            if !bits.contains(.avx512) { return .generalProtection(.avx512Partial) }
            if !bits.contains(.avx) { return .generalProtection(.avx512WithoutAVX) }
        }
        if !allOrNone(.amx) { return .generalProtection(.amxMismatch) }
        return .valid(xcr0: value)
    }
}

extension VCPU {
    mutating func handleXSETBV<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        // SDM "XSETBV": #GP(0) at CPL > 0, else the rules of 14.3 "Enabling the XSAVE Feature Set and XSAVE-Enabled Features".
        guard try currentPrivilegeLevel(hw) == 0 else { return raise(XSETBVOutcome.fault) }
        let value = XSETBV.operand(rax: registers.rax, rdx: registers.rdx)
        switch XSETBV.validate(ecx: UInt32(truncatingIfNeeded: registers.rcx), value: value,
                               supported: cpuidPolicy.supportedXCR0) {
        case .valid(let newXCR0):
            // The host's code uses no extended state, so the guest's XCR0 stays loaded.
            hw.writeXCR0(newXCR0)
            xcr0 = newXCR0
            fastPath.invalidateCPUID()  // leaf 0xD sizes follow XCR0
            return try advance(hw)
        case .generalProtection:
            return raise(XSETBVOutcome.fault)
        }
    }
}
