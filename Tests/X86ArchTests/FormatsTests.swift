import Foundation
import Testing
import X86Arch

@Suite struct FormatsTests {
    @Test func canonicalMeansBitsAboveTheWidthCopyTheTopBit() {
        // 48-bit linear addresses: bits 63:47 all equal.
        #expect(isCanonical(0x0000_7FFF_FFFF_FFFF, linearBits: 48))
        #expect(isCanonical(0xFFFF_8000_0000_0000, linearBits: 48))
        #expect(isCanonical(0, linearBits: 48))
        #expect(isCanonical(UInt64.max, linearBits: 48))
        #expect(!isCanonical(0x0000_8000_0000_0000, linearBits: 48))
        #expect(!isCanonical(0xFFFF_7FFF_FFFF_FFFF, linearBits: 48))
        #expect(!isCanonical(0x0001_0000_0000_0000, linearBits: 48))
        // 57 bits (5-level paging) accepts what 48 bits rejects.
        #expect(isCanonical(0x0000_8000_0000_0000, linearBits: 57))
        #expect(!isCanonical(0x0100_0000_0000_0000, linearBits: 57))
        // 64 bits: everything; out-of-range widths are clamped, never trap.
        #expect(isCanonical(0x8000_0000_0000_0000, linearBits: 64))
        #expect(isCanonical(0x8000_0000_0000_0000, linearBits: 100))
        #expect(!isCanonical(1, linearBits: 0))
    }

    @Test func patAcceptsOnlyTheSixMemoryTypesInEveryByte() {
        #expect(PAT.powerOn.isValid)
        #expect(PAT.powerOn.rawValue == 0x0007_0406_0007_0406)
        #expect(PAT(rawValue: 0).isValid)
        #expect(PAT(rawValue: 0x0706_0504_0100_0706).isValid)
        for bad: UInt64 in [2, 3, 8, 0xFF] {
            for byte in 0..<8 {
                #expect(!PAT(rawValue: bad << UInt64(8 * byte)).isValid, "type \(bad) in byte \(byte)")
            }
        }
        #expect(PAT.powerOn.entry(0) == MemoryType.writeBack.rawValue)
        #expect(PAT.powerOn.entry(3) == MemoryType.uncacheable.rawValue)
    }

    @Test func accessRightsValuesAreTheSDMEncodings() {
        #expect(SegmentAccessRights.code16.rawValue == 0x9B)
        #expect(SegmentAccessRights.data16.rawValue == 0x93)
        #expect(SegmentAccessRights.code32.rawValue == 0xC09B)
        #expect(SegmentAccessRights.code64.rawValue == 0xA09B)
        #expect(SegmentAccessRights.data32.rawValue == 0xC093)
        #expect(SegmentAccessRights.virtual8086.rawValue == 0xF3)
        #expect(SegmentAccessRights.busyTSS.rawValue == 0x8B)
        #expect(SegmentAccessRights.unusable.rawValue == 0x1_0000)
        let r = SegmentAccessRights(type: SegmentType.codeConformingAccessed, dpl: 2, long: true)
        #expect(r.type == 13 && r.dpl == 2 && r.isLong && r.isPresent && r.isCodeOrData && !r.isDefaultBig)
        #expect(SegmentAccessRights(rawValue: 0x100).reservedBits == 0x100)
    }

    @Test func descriptorsEncodeBaseLimitAndRights() {
        // The classic flat descriptors: 32-bit code, 64-bit code, data.
        #expect(SegmentDescriptor(base: 0, limit: 0xF_FFFF, rights: .code32).rawValue == 0x00CF_9B00_0000_FFFF)
        #expect(SegmentDescriptor(base: 0, limit: 0xF_FFFF, rights: .code64).rawValue == 0x00AF_9B00_0000_FFFF)
        #expect(SegmentDescriptor(base: 0, limit: 0xF_FFFF, rights: .data32).rawValue == 0x00CF_9300_0000_FFFF)
        let d = SegmentDescriptor(base: 0x1234_5678, limit: 0xA_BCDE, rights: .busyTSS)
        #expect(d.base == 0x1234_5678 && d.limit == 0xA_BCDE && d.rights == .busyTSS)
        #expect(SegmentDescriptor.systemBase(low: d.rawValue, high: 0xFFFF_FFFF_0000_ABCD) == 0xABCD_1234_5678)
    }

    @Test func addressSizesDecodeLeaf80000008() {
        // A typical 39-bit physical, 48-bit linear part reports 3027H.
        let sizes = AddressSizes(leaf80000008EAX: 0x0000_3027)
        #expect(sizes.physicalAddressBits == 39 && sizes.linearAddressBits == 48)
    }

    @Test func rflagsReservedBitsAndFixedOne() {
        #expect(RFLAGS.reserved.rawValue & (RFLAGS.cf | .fixedOne | .interruptEnable | .vm | .id).rawValue == 0)
        #expect(RFLAGS.reserved.contains(RFLAGS(rawValue: 1 << 3 | 1 << 5 | 1 << 15 | 1 << 22 | 1 << 63)))
        #expect(RFLAGS.initial.rawValue == 2)
        #expect(RFLAGS.interruptEnable.rawValue == 0x200 && RFLAGS.vm.rawValue == 0x2_0000)
    }

    @Test func xcr0GroupsAreTheSDMBits() {
        #expect(XCR0Bits.avx512.rawValue == 0xE0)
        #expect(XCR0Bits.mpx.rawValue == 0x18)
        #expect(XCR0Bits.amx.rawValue == 0x6_0000)
        #expect((XCR0Bits.x87 | .sse | .avx | .avx512 | .pkru).rawValue == 0x2E7)
    }

    @Test func otherMSRFormats() {
        #expect(APICBase.resetBSP.rawValue == 0xFEE0_0900 && APICBase.resetBSP.isGloballyEnabled)
        #expect(!APICBase(rawValue: 0xFEE0_0100).isGloballyEnabled)
        #expect(MTRRDefType.writableMask == 0xCFF)
        #expect(DR7.initial == 0x400)
        #expect(InterruptibilityState.reservedMask == 0xFFFF_FFE0)
        var s = InterruptibilityState(raw: 0)
        s.blockingByMovSS = true
        #expect(s.raw == 2 && s.blockingByMovSS && !s.blockingBySTI)
        s.blockingByMovSS = false
        #expect(s.raw == 0)
    }

    /// The `all` table lists every MSR declared in MSR.swift, once.
    @Test func msrTableListsEveryDeclaration() throws {
        let source = try String(contentsOf: sourceFile("Sources/X86Arch/MSR.swift"), encoding: .utf8)
        let declared = source.components(separatedBy: "\n").filter { $0.contains("public static let ia32") && $0.contains("= MSR(") }
        #expect(declared.count == MSR.count)
        var names = Set<String>()
        MSR.forEach { names.insert($0.name.description) }
        #expect(names.count == MSR.count)
        for line in declared {
            let name = line.split(separator: "\"")[1]
            #expect(names.contains(String(name)), "\(name) is declared but not in MSR.all")
        }
    }
}

/// A file of this package, from this test file's path.
func sourceFile(_ relative: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(relative)
}
