import Testing
import TestSupport
import X86Arch

@Suite struct MSRTests {
    @Test func featureControlDecisionFollowsTheVMXONRules() {
        // Bochs (and most firmware) leaves 5: locked, VMX outside SMX allowed.
        #expect(FeatureControl(rawValue: 0x5).vmxEnablement == .enabled)
        // Unlocked: we must write lock | enable-outside-SMX (bits 0 and 2) ourselves.
        #expect(FeatureControl(rawValue: 0x0).vmxEnablement == .needsWrite(FeatureControl(rawValue: 0x5)))
        // Firmware bits are kept (bit 1, VMX inside SMX).
        #expect(FeatureControl(rawValue: 0x2).vmxEnablement == .needsWrite(FeatureControl(rawValue: 0x7)))
        // Locked without bit 2: VMXON #GPs until reset.
        #expect(FeatureControl(rawValue: 0x1).vmxEnablement == .disabledByFirmware)
        #expect(FeatureControl(rawValue: 0x3).vmxEnablement == .disabledByFirmware)
        let inside = FeatureControl(rawValue: 0x3)
        #expect(inside.isLocked && inside.vmxInsideSMX && !inside.vmxOutsideSMX)
    }

    @Test func eferBitsAreThoseOfTheSDM() {
        // A 64-bit Linux EFER reads D01H: SCE (0), LME (8), LMA (10), NXE (11).
        let efer = EFER(rawValue: 0xD01)
        #expect(efer.contains(.sce | .lme | .lma | .nxe))
        #expect(efer == .sce | .lme | .lma | .nxe)
        // Long mode enabled but paging off: LME without LMA.
        let enabling = EFER(rawValue: 0x100)
        #expect(enabling.contains(.lme) && !enabling.contains(.lma))
    }

    @Test func vmxCapabilityMSRsFormTheAppendixABlock() {
        // SDM Appendix A: IA32_VMX_BASIC is 480H and the block runs to 493H; each
        // TRUE control MSR sits 0CH above the MSR it refines.
        let block: [MSR] = [.ia32VMXBasic, .ia32VMXPinbasedCtls, .ia32VMXProcbasedCtls, .ia32VMXExitCtls,
                            .ia32VMXEntryCtls, .ia32VMXMisc, .ia32VMXCR0Fixed0, .ia32VMXCR0Fixed1,
                            .ia32VMXCR4Fixed0, .ia32VMXCR4Fixed1, .ia32VMXVMCSEnum, .ia32VMXProcbasedCtls2,
                            .ia32VMXEPTVPIDCap, .ia32VMXTruePinbasedCtls, .ia32VMXTrueProcbasedCtls,
                            .ia32VMXTrueExitCtls, .ia32VMXTrueEntryCtls, .ia32VMXVMFunc,
                            .ia32VMXProcbasedCtls3, .ia32VMXExitCtls2]
        #expect(block.map(\.address) == Array(0x480...0x493))
        #expect(MSR.ia32VMXTruePinbasedCtls.address == MSR.ia32VMXPinbasedCtls.address + 0xC)
        #expect(MSR.ia32VMXTrueEntryCtls.address == MSR.ia32VMXEntryCtls.address + 0xC)
    }

    @Test func everyNamedMSRIsUniqueAndFindable() {
        var addresses = Set<UInt32>()
        var count = 0
        MSR.forEach { msr in
            count += 1
            #expect(addresses.insert(msr.address).inserted, "duplicate \(msr.name)")
            #expect(MSR.named(msr.address) == msr)
            #expect(msr.name.description.hasPrefix("IA32_"))
        }
        #expect(count > 60)
        #expect(MSR.named(0xC000_0082)?.name.description == "IA32_LSTAR")
        #expect(MSR.named(0x1234_5678) == nil)
    }

    @Test func syscallMSRsAreTheC000008xBlock() {
        // SDM Vol. 4 Table 2-2: STAR, LSTAR, CSTAR, FMASK follow EFER at C0000081H..84H.
        #expect([MSR.ia32STAR, .ia32LSTAR, .ia32CSTAR, .ia32FMask].map(\.address)
                == [0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084])
        #expect(MSR.ia32KernelGSBase.address == MSR.ia32GSBase.address + 1)
    }
}
