import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct ControlRegisterFixedBitsTests {
    static let skylake = BochsCapabilities.corei7_skylake_x
    static let cr0 = FixedBits(fixed0: skylake.cr0Fixed0, fixed1: skylake.cr0Fixed1)
    static let cr4 = FixedBits(fixed0: skylake.cr4Fixed0, fixed1: skylake.cr4Fixed1)

    @Test func vmxOperationNeedsPENEAndPGInCR0() {
        // SDM 24.8: in VMX operation CR0.PE, NE and PG must be 1 (FIXED0 80000021H).
        #expect(Self.cr0.isValid(0x8000_0031))                     // PE NE ET PG
        #expect(Self.cr0.violations(in: 0x11) == 0x8000_0020)       // real-ish: NE and PG missing
        #expect(Self.cr0.forced(0) == (CR0Bits.pe | .ne | .pg).rawValue)
        // FIXED1 has bits 63:32 clear: they must be 0.
        #expect(Self.cr0.violations(in: 0x8000_0031 | 1 << 32) == 1 << 32)
        #expect(Self.cr0.fixedMask == 0xFFFF_FFFF_8000_0021)
    }

    @Test func vmxOperationNeedsVMXEAndForbidsUnsupportedCR4Bits() {
        // FIXED0 = VMXE (bit 13); Bochs Skylake-X FIXED1 lacks UMIP (11) and LA57 (12).
        #expect(Self.cr4.isValid((CR4Bits.pae | .osfxsr | .osxmmexcpt | .vmxe).rawValue))
        #expect(Self.cr4.violations(in: CR4Bits.pae.rawValue) == CR4Bits.vmxe.rawValue)
        let la57 = (CR4Bits.pae | .vmxe | .la57).rawValue
        #expect(Self.cr4.violations(in: la57) == CR4Bits.la57.rawValue)
        #expect(!Self.cr4.isValid((CR4Bits.vmxe | .umip).rawValue))
        #expect(Self.cr4.isValid((CR4Bits.vmxe | .smep | .smap | .osxsave | .pcide | .fsgsbase).rawValue))
    }

    @Test func unrestrictedGuestMayRunWithPEAndPGClear() {
        // SDM 26.3.1.1: with "unrestricted guest", PE and PG are not checked
        // against FIXED0 at VM entry; NE still is.
        let view = GuestControlRegisterView.cr0(fixed: Self.cr0, unrestrictedGuest: true)
        let realMode: UInt64 = 0x10                                  // ET only, as after reset
        #expect(view.realValue(forGuestValue: realMode) == 0x30)     // NE forced, PE/PG untouched
        #expect(view.fixed.isValid(0x30))
        #expect(view.guestHostMask & (CR0Bits.pe | .pg).rawValue == 0)   // the guest owns PE and PG
        #expect(view.guestHostMask & CR0Bits.ne.rawValue != 0)
        let shadow = view.readShadow(forGuestValue: realMode)
        #expect(view.guestVisibleValue(real: 0x30, readShadow: shadow) == realMode)   // NE hidden
        #expect(!view.writeCausesExit(realMode | CR0Bits.pe.rawValue, readShadow: shadow))  // entering protected mode
        #expect(view.writeCausesExit(realMode | CR0Bits.ne.rawValue, readShadow: shadow))   // touching NE
    }

    @Test func withoutUnrestrictedGuestPEAndPGAreHostOwned() {
        let view = GuestControlRegisterView.cr0(fixed: Self.cr0, unrestrictedGuest: false)
        #expect(view.realValue(forGuestValue: 0x10) == 0x8000_0031)
        #expect(view.guestHostMask & (CR0Bits.pe | .pg | .ne).rawValue == (CR0Bits.pe | .pg | .ne).rawValue)
        #expect(view.guestVisibleValue(real: 0x8000_0031, readShadow: 0x10) == 0x10)
        #expect(view.writeCausesExit(0x11, readShadow: 0x10))
        #expect(!view.writeCausesExit(0x10 | CR0Bits.wp.rawValue, readShadow: 0x10))  // WP is the guest's
    }

    @Test func cr4VMXEIsHiddenFromTheGuest() {
        let view = GuestControlRegisterView.cr4(fixed: Self.cr4)
        let guestWants = (CR4Bits.pae | .pge).rawValue
        let real = view.realValue(forGuestValue: guestWants)
        #expect(real == guestWants | CR4Bits.vmxe.rawValue)
        #expect(view.fixed.isValid(real))
        let shadow = view.readShadow(forGuestValue: real)
        #expect(shadow & CR4Bits.vmxe.rawValue == 0)
        #expect(view.guestVisibleValue(real: real, readShadow: shadow) == guestWants)
        #expect(view.guestHostMask & CR4Bits.vmxe.rawValue != 0)
        #expect(view.hiddenBits == CR4Bits.vmxe.rawValue)
        // A guest that tries to set VMXE exits to us; flipping PGE (guest-owned) does not.
        #expect(view.writeCausesExit(guestWants | CR4Bits.vmxe.rawValue, readShadow: shadow))
        #expect(!view.writeCausesExit(CR4Bits.pae.rawValue, readShadow: shadow))
    }

    @Test func exemptingOnlyTouchesMustBeOne() {
        let relaxed = Self.cr0.exempting(mustBeOne: (CR0Bits.pe | .pg).rawValue)
        #expect(relaxed == FixedBits(fixed0: 0x20, fixed1: 0xFFFF_FFFF))
        #expect(VMXError.fixedBitsViolated(.cr0, violatingBits: 0x20)
                != VMXError.fixedBitsViolated(.cr4, violatingBits: 0x20))
    }

    @Test func controlRegisterBitPositions() {
        // SDM Vol. 3A 2.5, Figure 2-7.
        #expect((CR0Bits.pe | .mp | .em | .ts | .et | .ne).rawValue == 0x3F)
        #expect((CR0Bits.wp | .am | .nw | .cd | .pg).rawValue == 0xE005_0000)
        func cr4(_ flags: CR4Bits...) -> UInt64 { flags.reduce(0) { $0 | $1.rawValue } }
        #expect(cr4(.vme, .pvi, .tsd, .de, .pse, .pae, .mce, .pge, .pce, .osfxsr, .osxmmexcpt) == 0x7FF)
        #expect(cr4(.umip, .la57, .vmxe, .smxe) == 0x7800)
        #expect(cr4(.fsgsbase, .pcide, .osxsave, .kl, .smep, .smap, .pke, .cet, .pks, .uintr) == 0x03FF_0000)
        #expect((CR4Bits.lass | .lamSupervisor).rawValue == 0x1800_0000)
        #expect(CR4Bits.fred.rawValue == 1 << 32)
    }
}
