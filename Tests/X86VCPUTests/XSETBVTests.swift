import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

@Suite struct XSETBVTests {
    /// x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM, PKRU.
    static let skylakeX: UInt64 = 0x2E7

    /// The Rust reference rejected everything: these must pass.
    @Test func validValuesAreAccepted() {
        for value: UInt64 in [0x1, 0x3, 0x7, 0xE7, 0x207, 0x2E7] {
            #expect(XSETBV.validate(ecx: 0, value: value, supported: Self.skylakeX) == .valid(xcr0: value))
        }
        // x87 alone is valid even if the supported mask forgot it.
        #expect(XSETBV.validate(ecx: 0, value: 1, supported: 0) == .valid(xcr0: 1))
        #expect(XSETBV.validate(ecx: 0, value: 0x1F, supported: 0x1F) == .valid(xcr0: 0x1F))
        #expect(XSETBV.validate(ecx: 0, value: 0x60003, supported: 0x60003) == .valid(xcr0: 0x60003))
        #expect(XSETBV.validate(ecx: 0, value: 7, supported: 7).exceptionToInject == nil)
    }

    @Test func onlyXCR0IsWritable() {
        let r = XSETBV.validate(ecx: 1, value: 1, supported: Self.skylakeX)
        #expect(r == .generalProtection(.invalidRegister(1)))
        // Every failure injects #GP(0): hardware exception 13 with error code 0.
        let inj = r.exceptionToInject?.injection(protectedMode: true)
        #expect(inj?.entryInfo.raw == 0x8000_0B0D)
        #expect(inj?.errorCode == 0)
    }

    @Test func architecturalRulesAreEnforced() {
        func check(_ v: UInt64, _ supported: UInt64 = 0xFF) -> XSETBVOutcome {
            XSETBV.validate(ecx: 0, value: v, supported: supported)
        }
        #expect(check(0) == .generalProtection(.x87Cleared))
        #expect(check(0x6) == .generalProtection(.x87Cleared))
        #expect(check(0x5) == .generalProtection(.avxWithoutSSE))
        #expect(check(0xB) == .generalProtection(.mpxMismatch))   // BNDREGS without BNDCSR
        #expect(check(0x13) == .generalProtection(.mpxMismatch))  // BNDCSR without BNDREGS
        #expect(check(0x27) == .generalProtection(.avx512Partial))
        #expect(check(0xC7) == .generalProtection(.avx512Partial))
        #expect(check(0xE3) == .generalProtection(.avx512WithoutAVX))
        #expect(check(0x20003, 0x60003) == .generalProtection(.amxMismatch))
        #expect(check(0x40003, 0x60003) == .generalProtection(.amxMismatch))
    }

    @Test func unsupportedBitsAreReserved() {
        #expect(XSETBV.validate(ecx: 0, value: 0x207, supported: 0x7) == .generalProtection(.reservedBits(0x200)))
        #expect(XSETBV.validate(ecx: 0, value: 1 << 63 | 3, supported: Self.skylakeX) == .generalProtection(.reservedBits(1 << 63)))
        // MPX is not in the supported set: reserved, even though the pair is consistent.
        #expect(XSETBV.validate(ecx: 0, value: 0x1F, supported: Self.skylakeX) == .generalProtection(.reservedBits(0x18)))
        #expect("\(XSETBVViolation.reservedBits(0).reason)".contains("reserved"))
    }

    @Test func operandIsEDXColonEAX() {
        #expect(XSETBV.operand(rax: 0xFFFF_FFFF_0000_00E7, rdx: 0xAAAA_AAAA_0000_0002) == 0x2_0000_00E7)
    }
}
