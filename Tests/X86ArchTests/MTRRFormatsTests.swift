import Testing
import X86Arch

@Suite struct MTRRFormatsTests {
    @Test func mtrrCapabilityFields() {
        // A Skylake-like IA32_MTRRCAP: VCNT 10, FIX, WC, SMRR (SDM 12.11.1).
        let cap = MTRRCapability(rawValue: 0xD0A)
        #expect(cap.variableCount == 10)
        #expect(cap.hasFixedRanges && cap.hasWriteCombining && cap.hasSMRR)
        let bochs = MTRRCapability(rawValue: 0x508)
        #expect(bochs.variableCount == 8 && bochs.hasFixedRanges && bochs.hasWriteCombining && !bochs.hasSMRR)
        #expect(MTRRCapability(rawValue: 0).variableCount == 0)
        #expect(!MTRRCapability(rawValue: 0xFF).hasFixedRanges)
    }

    @Test func variableRangeMSRsComeInPairsFrom200H() {
        #expect(MTRRVariableRangeFormat.baseMSR(0) == MSR.ia32MTRRPhysBase0.address)
        #expect(MTRRVariableRangeFormat.baseMSR(0) + 1 == MSR.ia32MTRRPhysMask0.address)
        #expect(MTRRVariableRangeFormat.baseMSR(9) == 0x212)
        #expect(MTRRVariableRangeFormat.validBit == 0x800)
    }

    @Test func fixedRangeMSRsAreTheElevenArchitecturalOnes() {
        var addresses: [UInt32] = []
        for i in 0..<11 { addresses.append(MTRRFixedRanges.msrs[i]) }
        #expect(addresses == [0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F])
        #expect(MTRRFixedRanges.locate(0x7_FFFF) == (0, 7, 0x1_0000))
        #expect(MTRRFixedRanges.locate(0xB_C000) == (2, 7, 0x4000))
        #expect(MTRRFixedRanges.locate(0xF_F000) == (10, 7, 0x1000))
    }

    @Test func e820TypesAreTheACPIAddressRangeTypes() {
        #expect([E820Entry.ram, E820Entry.reserved, E820Entry.acpiReclaimable, E820Entry.acpiNVS, E820Entry.unusable]
                == [1, 2, 3, 4, 5])
        #expect(E820Entry(base: 0x10_0000, length: 0x20_0000, type: 1).end == 0x30_0000)
        #expect(MemoryLayout<E820Entry>.stride == 24)
    }
}
