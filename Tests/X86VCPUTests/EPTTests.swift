import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

/// A processor with every EPT feature the builder uses (Haswell and later).
private let allFeatures = EPTFeatures(
    supports4LevelWalk: true, supports2MiBPages: true, supports1GiBPages: true,
    supportsAccessedDirty: true, supportsWriteBack: true, supportsUncacheable: true)

private let KiB4: UInt64 = 0x1000
private let MiB2: UInt64 = 0x20_0000
private let GiB1: UInt64 = 0x4000_0000

/// Reads the EPT entry that a hardware walk would read, straight from the
/// fake's memory: index = GPA bits 47:39 / 38:30 / 29:21 / 20:12.
// SDM 29.3.2 "EPT Translation Mechanism"
private func rawEntry(_ fake: HostFrameAllocator, table: UInt64, gpa: UInt64, level: Int) -> UInt64 {
    let shift = UInt64(12 + 9 * (level - 1))
    return fake.load64(table + ((gpa >> shift) & 0x1FF) * 8)
}

/// Bits 51:12 of an entry: the next table or the page.
private func next(_ entry: UInt64) -> UInt64 { entry & 0x000F_FFFF_FFFF_F000 }

@Suite struct EPTMappingTests {
    @Test func twoMiBAlignedRangeUsesOneLargePageAndTranslatesWithOffset() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0x20_0000, hostPhysical: 0x4020_0000, size: MiB2,
                    permissions: .readWriteExecute, memoryType: .writeBack)

        let tLookup = ept.translate(0x20_0000 + 0x1234)
        let t = try #require(tLookup)
        #expect(t.hostPhysical == 0x4020_1234)
        #expect(t.pageSize == .size2MiB)
        #expect(t.permissions == .readWriteExecute)
        #expect(t.memoryType == .writeBack)
        #expect(!t.ignorePAT)
        #expect(ept.translate(0x40_0000) == nil)
        #expect(ept.translate(0x1F_F000) == nil)

        // The raw entries, against the SDM's entry formats (Tables 29-1, 29-3, 29-4).
        let pml4e = rawEntry(fake, table: ept.rootAddress, gpa: 0x20_0000, level: 4)
        #expect(pml4e & 0b111 == 0b111)          // bits 2:0 R/W/X
        #expect(pml4e & 0xF8 == 0)               // bits 7:3 reserved
        let pdpte = rawEntry(fake, table: next(pml4e), gpa: 0x20_0000, level: 3)
        #expect(pdpte & (1 << 7) == 0)           // references a page directory
        let pde = rawEntry(fake, table: next(pdpte), gpa: 0x20_0000, level: 2)
        #expect(pde & (1 << 7) != 0)             // bit 7: maps a 2 MiB page
        #expect((pde >> 3) & 0b111 == 6)         // bits 5:3: memory type WB
        #expect(pde & (1 << 6) == 0)             // bit 6: ignore PAT off
        #expect(pde & 0x1F_F000 == 0)            // bits 20:12 reserved
        #expect(next(pde) == 0x4020_0000)        // bits N-1:21 the page
        #expect(pde & 0b111 == 0b111)
        #expect(fake.liveFrames == 3)            // PML4, PDPT, PD: no page table
    }

    @Test func oneGiBPageWhenBothSidesAlignedAndSupported() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: GiB1, hostPhysical: 2 * GiB1, size: GiB1, permissions: .readWrite)

        let tLookup = ept.translate(GiB1 + 0x1234_5678 & (GiB1 - 1))
        let t = try #require(tLookup)
        #expect(t.pageSize == .size1GiB)
        #expect(t.hostPhysical == 2 * GiB1 + (0x1234_5678 & (GiB1 - 1)))
        #expect(t.permissions == .readWrite)
        let pml4e = rawEntry(fake, table: ept.rootAddress, gpa: GiB1, level: 4)
        let pdpte = rawEntry(fake, table: next(pml4e), gpa: GiB1, level: 3)
        #expect(pdpte & (1 << 7) != 0)           // PDPTE bit 7: 1 GiB page
        #expect(pdpte & 0x3FFF_F000 == 0)        // bits 29:12 reserved
        #expect(next(pdpte) == 2 * GiB1)
        #expect(pdpte & 0b111 == 0b011)
        #expect(fake.liveFrames == 2)
    }

    @Test func withoutOneGiBSupportAGiBIsMappedWith2MiBPages() throws {
        let fake = HostFrameAllocator()
        var features = allFeatures
        features.supports1GiBPages = false
        var ept = try ExtendedPageTable(allocator: fake, features: features, physicalAddressBits: 39)
        try ept.map(guestPhysical: GiB1, hostPhysical: GiB1, size: GiB1, permissions: .readWriteExecute)
        #expect(ept.translate(GiB1)?.pageSize == .size2MiB)
        #expect(ept.translate(2 * GiB1 - KiB4)?.hostPhysical == 2 * GiB1 - KiB4)
        #expect(fake.liveFrames == 3)
    }

    @Test func withoutLargePagesEverythingIs4KiB() throws {
        let fake = HostFrameAllocator()
        var features = allFeatures
        features.supports2MiBPages = false
        var ept = try ExtendedPageTable(allocator: fake, features: features, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0, hostPhysical: 0, size: 2 * MiB2, permissions: .readWriteExecute)
        #expect(ept.translate(MiB2 + 0x10)?.pageSize == .size4KiB)
        #expect(ept.translate(MiB2 + 0x10)?.hostPhysical == MiB2 + 0x10)
        #expect(fake.liveFrames == 5) // PML4, PDPT, PD, two page tables
    }

    @Test func pageSizeFollowsAlignmentOfBothSidesAndRemainingSize() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        // 0x1000..0x401000: 511 small pages up to 2 MiB, one 2 MiB page, one small page.
        try ept.map(guestPhysical: 0x1000, hostPhysical: 0x8000_1000, size: 0x40_0000,
                    permissions: .readWriteExecute)
        #expect(ept.translate(0x1000)?.pageSize == .size4KiB)
        #expect(ept.translate(0x1F_F000)?.pageSize == .size4KiB)
        #expect(ept.translate(0x20_0000)?.pageSize == .size2MiB)
        #expect(ept.translate(0x3F_FFFF)?.hostPhysical == 0x803F_FFFF)
        #expect(ept.translate(0x40_0000)?.pageSize == .size4KiB)
        #expect(ept.translate(0x40_0000)?.hostPhysical == 0x8040_0000)
        #expect(ept.translate(0x40_1000) == nil)
        #expect(ept.translate(0) == nil)

        // Guest side 2 MiB aligned but host side only 4 KiB aligned: small pages only.
        try ept.map(guestPhysical: 0x4000_0000, hostPhysical: 0x9000_1000, size: MiB2,
                    permissions: .readWriteExecute)
        #expect(ept.translate(0x4000_0000)?.pageSize == .size4KiB)
        #expect(ept.translate(0x401F_F123)?.hostPhysical == 0x9020_0123)
    }

    @Test func memoryTypeAndIgnorePATAreWrittenToLeafBits5to3And6() throws {
        let types: [(EPTMemoryType, UInt64)] = [(.uncacheable, 0), (.writeCombining, 1),
                                                (.writeThrough, 4), (.writeProtected, 5), (.writeBack, 6)]
        for (i, (type, encoding)) in types.enumerated() {
            let fake = HostFrameAllocator()
            var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
            let gpa = UInt64(i) * KiB4
            try ept.map(guestPhysical: gpa, hostPhysical: 0xFEC0_0000, size: KiB4, permissions: .readWrite,
                        memoryType: type, ignorePAT: i % 2 == 0)
            let walk = ept.walkEntries(gpa)
            let pte = try #require(walk.pte)
            #expect((pte.raw >> 3) & 0b111 == encoding)
            #expect((pte.raw >> 6) & 1 == (i % 2 == 0 ? 1 : 0))
            #expect(pte.raw & (1 << 7) == 0)     // bit 7 is not a page-size bit in a PTE
            #expect(ept.translate(gpa)?.memoryType == type)
            #expect(ept.translate(gpa)?.ignorePAT == (i % 2 == 0))
        }
    }

    @Test func deinitReturnsEveryTableFrame() throws {
        let fake = HostFrameAllocator()
        do {
            var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 46)
            try ept.map(guestPhysical: 0, hostPhysical: 0, size: 3 * MiB2 + KiB4, permissions: .readWriteExecute)
            try ept.map(guestPhysical: 0x7F_0000_0000, hostPhysical: 0x1_0000_0000, size: GiB1 + KiB4,
                        permissions: .readWriteExecute)
            try ept.map(guestPhysical: 0xFFFF_FFFF_F000, hostPhysical: 0x2000, size: KiB4, permissions: .read)
            #expect(fake.liveFrames > 5)
        }
        #expect(fake.liveFrames == 0)
        #expect(fake.misuse.isEmpty)
    }
}

@Suite struct EPTValidationTests {
    private func table(_ fake: HostFrameAllocator, features: EPTFeatures = allFeatures)
        throws -> ExtendedPageTable<HostFrameAllocator> {
        try ExtendedPageTable(allocator: fake, features: features, physicalAddressBits: 39)
    }

    @Test func writeWithoutReadAndOtherBadRightsAreRejected() throws {
        let fake = HostFrameAllocator()
        var ept = try table(fake)
        // SDM 29.3.3.1: bit 1 set with bit 0 clear is a misconfiguration.
        for bad in [EPTPermissions.write, EPTPermissions(rawValue: 0b110), EPTPermissions(rawValue: 0),
                    EPTPermissions(rawValue: 0b1000 | 0b1), .execute] {
            #expect(throws: EPTError.invalidPermissions) {
                try ept.map(guestPhysical: 0, hostPhysical: 0, size: KiB4, permissions: bad)
            }
        }
        #expect(ept.translate(0) == nil)
        #expect(fake.liveFrames == 1)
    }

    @Test func executeOnlyIsAllowedWhenTheProcessorSupportsIt() throws {
        let fake = HostFrameAllocator()
        var features = allFeatures
        features.supportsExecuteOnly = true
        var ept = try table(fake, features: features)
        try ept.map(guestPhysical: 0, hostPhysical: 0, size: KiB4, permissions: .execute)
        #expect(ept.translate(0)?.permissions == .execute)
        #expect(((ept.walkEntries(0).pte?.raw ?? 0) & 0b111) == 0b100)
    }

    @Test func reservedMemoryTypesAreRejected() throws {
        let fake = HostFrameAllocator()
        var ept = try table(fake)
        for raw: UInt8 in [2, 3, 7, 8] {
            #expect(throws: EPTError.invalidMemoryType(raw)) {
                try ept.map(guestPhysical: 0, hostPhysical: 0, size: KiB4, permissions: .read,
                            memoryType: EPTMemoryType(rawValue: raw))
            }
        }
        #expect(fake.liveFrames == 1)
    }

    @Test func sizesAndAddressesAreChecked() throws {
        let fake = HostFrameAllocator()
        var ept = try table(fake)
        let rwx = EPTPermissions.readWriteExecute
        #expect(throws: EPTError.zeroSize) { try ept.map(guestPhysical: 0, hostPhysical: 0, size: 0, permissions: rwx) }
        #expect(throws: EPTError.misaligned) { try ept.map(guestPhysical: 0x800, hostPhysical: 0, size: KiB4, permissions: rwx) }
        #expect(throws: EPTError.misaligned) { try ept.map(guestPhysical: 0, hostPhysical: 0x800, size: KiB4, permissions: rwx) }
        #expect(throws: EPTError.misaligned) { try ept.map(guestPhysical: 0, hostPhysical: 0, size: 0x1800, permissions: rwx) }
        // A 4-level walk translates 48 bits of guest-physical address.
        #expect(throws: EPTError.guestPhysicalOutOfRange) {
            try ept.map(guestPhysical: 0xFFFF_FFFF_F000, hostPhysical: 0, size: 2 * KiB4, permissions: rwx)
        }
        #expect(throws: EPTError.guestPhysicalOutOfRange) {
            try ept.map(guestPhysical: 0xFFFF_FFFF_FFFF_F000, hostPhysical: 0, size: 2 * KiB4, permissions: rwx)
        }
        // Host side: N = 39 bits here.
        #expect(throws: EPTError.hostPhysicalOutOfRange) {
            try ept.map(guestPhysical: 0, hostPhysical: (1 << 39) - KiB4, size: 2 * KiB4, permissions: rwx)
        }
        #expect(throws: EPTError.hostPhysicalOutOfRange) {
            try ept.map(guestPhysical: 0, hostPhysical: 0xFFFF_FFFF_FFFF_F000, size: 2 * KiB4, permissions: rwx)
        }
        try ept.map(guestPhysical: 0xFFFF_FFFF_F000, hostPhysical: (1 << 39) - KiB4, size: KiB4, permissions: rwx)
        #expect(ept.translate(0xFFFF_FFFF_FFFF)?.hostPhysical == (1 << 39) - 1)

        #expect(throws: EPTError.zeroSize) { try ept.unmap(guestPhysical: 0, size: 0) }
        #expect(throws: EPTError.misaligned) { try ept.unmap(guestPhysical: 0x10, size: KiB4) }
        #expect(throws: EPTError.guestPhysicalOutOfRange) { try ept.unmap(guestPhysical: 1 << 48, size: KiB4) }
    }

    @Test func unsupportedProcessorsAreRefused() {
        let fake = HostFrameAllocator()
        var no4Level = allFeatures
        no4Level.supports4LevelWalk = false
        var noMemoryType = allFeatures
        noMemoryType.supportsWriteBack = false
        noMemoryType.supportsUncacheable = false
        for (features, bits) in [(no4Level, 39), (noMemoryType, 39), (allFeatures, 31), (allFeatures, 53)] {
            #expect(throws: EPTError.unsupportedConfiguration) {
                _ = try ExtendedPageTable(allocator: fake, features: features, physicalAddressBits: bits)
            }
        }
        fake.failAfter = 0
        #expect(throws: EPTError.outOfMemory) {
            _ = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        }
        #expect(fake.liveFrames == 0)
    }

    @Test func overlapIsRefusedAndLeavesTheTableAsItWas() throws {
        let fake = HostFrameAllocator()
        var ept = try table(fake)
        try ept.map(guestPhysical: 0x30_0000, hostPhysical: 0x30_0000, size: KiB4, permissions: .read)
        let frames = fake.liveFrames
        #expect(throws: EPTError.overlapsExistingMapping(guestPhysical: 0x30_0000)) {
            try ept.map(guestPhysical: 0x20_0000, hostPhysical: 0x20_0000, size: MiB2, permissions: .read)
        }
        // Overlapping a large page reports the first address of the request inside it.
        try ept.map(guestPhysical: GiB1, hostPhysical: GiB1, size: GiB1, permissions: .read)
        #expect(throws: EPTError.overlapsExistingMapping(guestPhysical: GiB1 + 0x5000)) {
            try ept.map(guestPhysical: GiB1 + 0x5000, hostPhysical: 0, size: KiB4, permissions: .read)
        }
        #expect(fake.liveFrames == frames)
        #expect(ept.translate(0x20_0000) == nil)
        #expect(ept.translate(0x30_0000)?.hostPhysical == 0x30_0000)
    }

    @Test func outOfMemoryMidwayFreesWhatTheCallBuiltAndKeepsOldMappings() throws {
        let fake = HostFrameAllocator()
        var ept = try table(fake)
        try ept.map(guestPhysical: 0, hostPhysical: 0x5000, size: KiB4, permissions: .read)
        #expect(fake.liveFrames == 4)
        // Four pages across the 512 GiB boundary at 0x80_0000_0000 need a new
        // PD and PT below the existing PDPT, then a new PDPT, PD and PT: five frames.
        for budget in 0..<5 {
            fake.failAfter = budget
            #expect(throws: EPTError.outOfMemory) {
                try ept.map(guestPhysical: 0x7F_FFFF_E000, hostPhysical: 0x10_0000, size: 4 * KiB4,
                            permissions: .readWriteExecute)
            }
            #expect(fake.liveFrames == 4)
            #expect(ept.translate(0x7F_FFFF_E000) == nil)
            #expect(ept.translate(0x0)?.hostPhysical == 0x5000)
        }
        // A failure after some leaves were written in an existing table.
        try ept.map(guestPhysical: 0x1F_E000, hostPhysical: 0x9000, size: KiB4, permissions: .read)
        fake.failAfter = 0
        #expect(throws: EPTError.outOfMemory) {
            try ept.map(guestPhysical: 0x1F_F000, hostPhysical: 0x1F_F000, size: 2 * KiB4, permissions: .read)
        }
        #expect(ept.translate(0x1F_F000) == nil)
        #expect(ept.translate(0x1F_E000)?.hostPhysical == 0x9000)
        #expect(fake.liveFrames == 4)
        fake.failAfter = nil
        try ept.map(guestPhysical: 0x7F_FFFF_E000, hostPhysical: 0x10_0000, size: 4 * KiB4,
                    permissions: .readWriteExecute)
        #expect(ept.translate(0x80_0000_1000)?.hostPhysical == 0x10_3000)
        #expect(fake.misuse.isEmpty)
    }
}

@Suite struct EPTUnmapTests {
    @Test func unmappingInsideA1GiBPageSplitsItAndKeepsTheRest() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: GiB1, hostPhysical: 3 * GiB1, size: GiB1, permissions: .readWriteExecute,
                    memoryType: .writeThrough, ignorePAT: true)
        try ept.unmap(guestPhysical: GiB1 + 0x20_3000, size: KiB4)

        #expect(ept.translate(GiB1 + 0x20_3000) == nil)
        #expect(ept.translate(GiB1 + 0x20_3FFF) == nil)
        let beforeLookup = ept.translate(GiB1 + 0x20_2FFF)
        let before = try #require(beforeLookup)
        #expect(before.hostPhysical == 3 * GiB1 + 0x20_2FFF)
        #expect(before.pageSize == .size4KiB)
        #expect(before.memoryType == .writeThrough)
        #expect(before.ignorePAT)
        #expect(before.permissions == .readWriteExecute)
        #expect(ept.translate(GiB1 + 0x20_4000)?.hostPhysical == 3 * GiB1 + 0x20_4000)
        #expect(ept.translate(GiB1)?.pageSize == .size2MiB)
        #expect(ept.translate(GiB1)?.hostPhysical == 3 * GiB1)
        #expect(ept.translate(2 * GiB1 - 1)?.pageSize == .size2MiB)
        #expect(ept.translate(2 * GiB1 - 1)?.hostPhysical == 4 * GiB1 - 1)
        #expect(ept.translate(2 * GiB1 - 1)?.memoryType == .writeThrough)
        #expect(fake.liveFrames == 4) // PML4, PDPT, new PD, new PT

        // The split PD and PT entries follow the SDM formats: bit 7 set only in the PDEs.
        let pdeLookup = ept.walkEntries(GiB1 + MiB2 * 5).pde
        let pde = try #require(pdeLookup)
        #expect(pde.raw & (1 << 7) != 0 && pde.mapsPage)
        let pteLookup = ept.walkEntries(GiB1 + 0x20_4000).pte
        let pte = try #require(pteLookup)
        #expect(pte.raw & (1 << 7) == 0)
        #expect((pte.raw >> 3) & 0b111 == 4)

        // Removing the rest empties and frees the split tables.
        try ept.unmap(guestPhysical: GiB1, size: GiB1)
        #expect(ept.translate(GiB1 + 0x20_4000) == nil)
        #expect(fake.liveFrames == 1)
        #expect(fake.misuse.isEmpty)
    }

    @Test func unmapAcrossLargePageEdgesSplitsBothEnds() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0, hostPhysical: MiB2 * 10, size: 3 * MiB2, permissions: .readWrite)
        try ept.unmap(guestPhysical: MiB2 - KiB4, size: MiB2 + 2 * KiB4)
        #expect(ept.translate(MiB2 - 2 * KiB4)?.hostPhysical == MiB2 * 11 - 2 * KiB4)
        #expect(ept.translate(MiB2 - KiB4) == nil)
        #expect(ept.translate(MiB2) == nil)
        #expect(ept.translate(2 * MiB2) == nil)
        #expect(ept.translate(2 * MiB2 + KiB4)?.hostPhysical == MiB2 * 12 + KiB4)
        #expect(ept.translate(2 * MiB2 + KiB4)?.pageSize == .size4KiB)
        #expect(ept.translate(0)?.pageSize == .size4KiB)
    }

    @Test func unmapFreesTablesThatBecomeEmptyAndToleratesHoles() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0x7000, hostPhysical: 0x7000, size: KiB4, permissions: .read)
        try ept.map(guestPhysical: 0x80_0000_0000, hostPhysical: 0x7000, size: KiB4, permissions: .read)
        #expect(fake.liveFrames == 7)
        try ept.unmap(guestPhysical: 0, size: 0x100_0000_0000)
        #expect(fake.liveFrames == 1)
        #expect(ept.translate(0x7000) == nil)
        #expect(ept.walkEntries(0x7000).pml4e.raw == 0)
        try ept.unmap(guestPhysical: 0, size: 1 << 48) // nothing there: fine
        #expect(fake.misuse.isEmpty)
    }

    @Test func splitFailureLeavesEveryTranslationUnchanged() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0, hostPhysical: GiB1, size: GiB1, permissions: .readWriteExecute)
        for budget in 0..<2 { // a 1 GiB -> 2 MiB -> 4 KiB split needs two frames
            fake.failAfter = budget
            #expect(throws: EPTError.outOfMemory) {
                try ept.unmap(guestPhysical: 0x1234_5000, size: KiB4)
            }
            #expect(ept.translate(0x1234_5000)?.hostPhysical == GiB1 + 0x1234_5000)
            #expect(ept.translate(0)?.hostPhysical == GiB1)
        }
        fake.failAfter = nil
        try ept.unmap(guestPhysical: 0x1234_5000, size: KiB4)
        #expect(ept.translate(0x1234_5000) == nil)
        #expect(ept.translate(0x1234_6000)?.hostPhysical == GiB1 + 0x1234_6000)
    }

    @Test func splittingKeepsAccessedAndDirtyFlags() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0, hostPhysical: 0, size: MiB2, permissions: .readWrite)
        // Play the processor: set A (bit 8) and D (bit 9) in the 2 MiB leaf.
        let pdeAddress = (ept.walkEntries(0).pdpte?.address ?? 0) + 0
        fake.pointer(to: pdeAddress).storeBytes(of: fake.load64(pdeAddress) | 0x300, as: UInt64.self)
        try ept.unmap(guestPhysical: 0x1000, size: KiB4)
        let pteLookup = ept.walkEntries(0).pte
        let pte = try #require(pteLookup)
        #expect(pte.accessed && pte.dirty)
        #expect(pte.address == 0)
    }
}

@Suite struct EPTPointerAndDiagnosticsTests {
    @Test func eptPointerFollowsTheSDMLayout() throws {
        let fake = HostFrameAllocator()
        let ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        let eptp = ept.eptPointer(enableAccessedDirty: true)
        // SDM 25.6.11: bits 2:0 memory type (6 = WB), 5:3 walk length - 1, 6 A/D, N-1:12 PML4.
        #expect(eptp & 0b111 == 6)
        #expect((eptp >> 3) & 0b111 == 3)
        #expect(eptp & (1 << 6) != 0)
        #expect(eptp & 0xF80 == 0)
        #expect(eptp & ~0xFFF == ept.rootAddress)
        #expect(ept.eptPointer(enableAccessedDirty: false) & (1 << 6) == 0)

        var ucOnly = allFeatures
        ucOnly.supportsWriteBack = false
        ucOnly.supportsAccessedDirty = false
        let uc = try ExtendedPageTable(allocator: fake, features: ucOnly, physicalAddressBits: 39)
        #expect(uc.eptPointer(enableAccessedDirty: true) & 0x7F == 3 << 3) // UC = 0, no A/D
    }

    @Test func translationRightsAreTheANDOfEveryLevel() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0, hostPhysical: 0, size: KiB4, permissions: .readWriteExecute)
        // Restrict the PDPTE (found in the PDPT the PML4E points to) to read + execute.
        let pdptAddress = ept.walkEntries(0).pml4e.address
        fake.pointer(to: pdptAddress).storeBytes(of: fake.load64(pdptAddress) & ~0b010, as: UInt64.self)
        #expect(ept.translate(0)?.permissions == EPTPermissions.read | .execute)
    }

    @Test func walkStopsAtTheFirstNonPresentEntry() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        let empty = ept.walkEntries(0x1234_5000)
        #expect(!empty.pml4e.isPresent && empty.pdpte == nil && empty.last == empty.pml4e)
        try ept.map(guestPhysical: 0, hostPhysical: 0, size: KiB4, permissions: .read)
        let hole = ept.walkEntries(0x1000)
        #expect(hole.pte != nil && hole.pte?.isPresent == false)
        #expect(hole.firstMisconfiguration(features: allFeatures, physicalAddressBits: 39) == nil)
        let full = ept.walkEntries(0)
        #expect(full.pml4e.level == .pml4 && full.pdpte?.level == .pdpt && full.pde?.level == .pd)
        #expect(full.last.level == .pt && full.last.mapsPage)
    }

    @Test func misconfigurationsAreNamedAsTheSDMListsThem() {
        let f = allFeatures
        func reason(_ raw: UInt64, _ level: EPTLevel, _ features: EPTFeatures = allFeatures, bits: Int = 39)
            -> EPTMisconfiguration? {
            EPTEntry(raw: raw, level: level).misconfiguration(features: features, physicalAddressBits: bits)
        }
        #expect(reason(0b010, .pt) == .writeWithoutRead)
        #expect(reason(0b110, .pml4) == .writeWithoutRead)
        #expect(reason(0b100, .pt) == .executeOnlyUnsupported)
        var xo = f
        xo.supportsExecuteOnly = true
        #expect(reason(0b100 | 6 << 3, .pt, xo) == nil)
        #expect(reason(0, .pt) == nil) // not present: a violation, not a misconfiguration
        #expect(reason(0b111 | 1 << 3, .pml4) == .reservedBitsSet(1 << 3))      // PML4E bits 7:3
        #expect(reason(0b111 | 1 << 7, .pml4) == .reservedBitsSet(1 << 7))
        #expect(reason(0b111 | 1 << 7 | 6 << 3 | 1 << 12, .pdpt) == .reservedBitsSet(1 << 12)) // 29:12
        #expect(reason(0b111 | 1 << 7 | 6 << 3 | 1 << 20, .pd) == .reservedBitsSet(1 << 20))   // 20:12
        #expect(reason(0b111 | 1 << 5, .pd) == .reservedBitsSet(1 << 5))       // table ref: 6:3
        #expect(reason(0b111 | 1 << 40, .pt, bits: 39) == .reservedBitsSet(1 << 40))  // 51:N
        #expect(reason(0b111 | 1 << 40 | 6 << 3, .pt, bits: 46) == nil)
        #expect(reason(0b111 | 2 << 3, .pt) == .invalidMemoryType(2))
        #expect(reason(0b111 | 7 << 3 | 1 << 7, .pd) == .invalidMemoryType(7))
        var no1G = f
        no1G.supports1GiBPages = false
        #expect(reason(0b111 | 6 << 3 | 1 << 7, .pdpt, no1G) == .reservedBitsSet(1 << 7))
        var no2M = f
        no2M.supports2MiBPages = false
        #expect(reason(0b111 | 6 << 3 | 1 << 7, .pd, no2M) == .reservedBitsSet(1 << 7))
        #expect(reason(0b111 | 6 << 3 | 1 << 7 | 0x4000_0000, .pdpt) == nil)
    }

    @Test func firstMisconfigurationPointsAtTheBadLevel() throws {
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: allFeatures, physicalAddressBits: 39)
        try ept.map(guestPhysical: 0, hostPhysical: 0, size: KiB4, permissions: .readWrite)
        // Corrupt the PDE (in the PD the PDPTE points to) with a write-only right.
        let pdAddressLookup = ept.walkEntries(0).pdpte
        let pdAddress = try #require(pdAddressLookup).address
        fake.pointer(to: pdAddress).storeBytes(of: fake.load64(pdAddress) & ~0b001, as: UInt64.self)
        let found = ept.walkEntries(0).firstMisconfiguration(features: allFeatures, physicalAddressBits: 39)
        #expect(found?.entry.level == .pd)
        #expect(found?.reason == .writeWithoutRead)
    }

    @Test func entryDecodesLargePageAddressesWithoutTheirLowBits() {
        let pdpte = EPTEntry(raw: 0x4000_0000 | 1 << 7 | 1 << 8 | 0b001, level: .pdpt)
        #expect(pdpte.mapsPage && pdpte.address == 0x4000_0000 && pdpte.accessed && !pdpte.dirty)
        let pml4e = EPTEntry(raw: 0x1234_5000 | 1 << 7 | 0b111, level: .pml4)
        #expect(!pml4e.mapsPage && pml4e.address == 0x1234_5000)
        #expect(EPTLevel.pt.below == nil && EPTLevel.pml4.below == .pdpt)
        #expect(EPTLevel.pdpt.entryCoverage == GiB1)
        #expect(EPTPageSize.size1GiB.bytes == GiB1)
    }
}
