import Testing
import TestSupport
import X86Arch
import X86VCPU

private let KiB: UInt64 = 0x400, MiB: UInt64 = 0x10_0000, GiB: UInt64 = 0x4000_0000
private let RAM = E820Entry.ram, RES = E820Entry.reserved, ACPI = E820Entry.acpiReclaimable, NVS = E820Entry.acpiNVS
private let WB = EPTMemoryType.writeBack, UC = EPTMemoryType.uncacheable, WP = EPTMemoryType.writeProtected
private let WT = EPTMemoryType.writeThrough

/// Bochs / SeaBIOS with 512 MiB: low RAM, EBDA, BIOS, RAM with ACPI data at its top, the flash.
private func seaBIOSMap() throws -> E820Map {
    try e820([(0, 0x9_FC00, RAM), (0x9_FC00, 0x400, RES), (0xE_8000, 0x1_8000, RES),
              (MiB, 0x1FF0_0000 - 0x1_0000, RAM), (0x1FFF_0000, 0x1_0000, ACPI), (0xFFFC_0000, 0x4_0000, RES)])
}

/// SeaBIOS's MTRR setup: default WB, the usual fixed ranges, the PCI hole UC.
private let seaBIOSMTRR = makeMTRR(def: mtrrWB | defEnable | defFixedEnable,
                                   variable: [variableRange(0xC000_0000, size: GiB, type: mtrrUC)])

private func ranges(_ list: [Range<UInt64>]) throws -> HypervisorRanges {
    var r = HypervisorRanges()
    for range in list { try r.append(range) }
    return r
}

private func chunks(_ plan: PassthroughMemoryPlan) -> [(UInt64, UInt64, EPTMemoryType)] {
    var out: [(UInt64, UInt64, EPTMemoryType)] = []
    plan.forEachMapping { out.append(($0, $1, $2)) }
    return out
}

/// Expects the plan's chunks to be exactly `expected` (start, end, type).
private func expectChunks(_ plan: PassthroughMemoryPlan, _ expected: [(UInt64, UInt64, EPTMemoryType)],
                          sourceLocation: SourceLocation = #_sourceLocation) {
    let actual = chunks(plan)
    let equal = actual.count == expected.count
        && zip(actual, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 && $0.2 == $1.2 }
    #expect(equal, "got \(actual.map { "(\(hex($0.0)), \(hex($0.1)), \($0.2.rawValue))" })",
            sourceLocation: sourceLocation)
}

/// Chunks ascending, aligned, maximal, and together with `withheld` an exact
/// tiling of [0, top): every page in exactly one chunk or one withheld range.
private func checkTiling(_ plan: PassthroughMemoryPlan, sourceLocation: SourceLocation = #_sourceLocation) {
    var pieces = chunks(plan).map { ($0.0, $0.1, true, $0.2) }
    for i in 0..<plan.withheld.count {
        pieces.append((plan.withheld[i].lowerBound, plan.withheld[i].upperBound, false, UC))
    }
    pieces.sort { $0.0 < $1.0 }
    var cursor: UInt64 = 0
    var mapped: UInt64 = 0
    for (i, p) in pieces.enumerated() {
        #expect(p.0 == cursor, "gap or overlap at \(cursor)", sourceLocation: sourceLocation)
        #expect(p.0 & 0xFFF == 0 && p.1 & 0xFFF == 0 && p.1 > p.0, sourceLocation: sourceLocation)
        if p.2 {
            mapped += p.1 - p.0
            if i > 0, pieces[i - 1].2 { #expect(pieces[i - 1].3 != p.3, "not merged", sourceLocation: sourceLocation) }
        }
        cursor = p.1
    }
    #expect(cursor == plan.top, sourceLocation: sourceLocation)
    #expect(plan.mappedBytes == mapped, sourceLocation: sourceLocation)
    #expect(plan.mappedBytes + plan.withheldBytes == plan.top, sourceLocation: sourceLocation)
    #expect(plan.chunkCount == chunks(plan).count, sourceLocation: sourceLocation)
}

@Suite struct PassthroughMemoryTests {
    @Test func seaBIOSMachineWithTheHypervisorInLowRAM() throws {
        let hv = try ranges([16 * MiB..<19 * MiB + 0x123])  // unaligned end: the page holding it goes too
        let plan = try PassthroughMemoryPlan(firmware: seaBIOSMap(), hypervisor: hv, mtrr: seaBIOSMTRR,
                                             physicalAddressBits: 40)
        #expect(plan.top == 4 * GiB)
        expectChunks(plan, [
            (0, 0xA_0000, WB), (0xA_0000, 0xC_0000, UC), (0xC_0000, MiB, WP), (MiB, 16 * MiB, WB),
            (19 * MiB + 0x1000, 3 * GiB, WB), (3 * GiB, 4 * GiB, UC),
        ])
        #expect(plan.chunkCount == 6)
        #expect(plan.withheldBytes == 3 * MiB + 0x1000)
        #expect(plan.mappedBytes == 4 * GiB - 3 * MiB - 0x1000)
        expectEntries(plan.guestMemoryMap, [
            (0, 0x9_FC00, RAM), (0x9_FC00, 0xA_0000, RES), (0xE_8000, MiB, RES), (MiB, 16 * MiB, RAM),
            (16 * MiB, 19 * MiB + 0x1000, RES), (19 * MiB + 0x1000, 0x1FFF_0000, RAM), (0x1FFF_0000, 0x2000_0000, ACPI),
            (0xFFFC_0000, 4 * GiB, RES),
        ])
        checkTiling(plan)
    }

    @Test func theChunksBuildAnEPTWithLargePages() throws {
        let hv = try ranges([16 * MiB..<19 * MiB + 0x123])
        let plan = try PassthroughMemoryPlan(firmware: seaBIOSMap(), hypervisor: hv, mtrr: seaBIOSMTRR,
                                             physicalAddressBits: 40)
        let fake = HostFrameAllocator()
        var ept = try ExtendedPageTable(allocator: fake, features: EPTFeatures(
            supports4LevelWalk: true, supports2MiBPages: true, supports1GiBPages: true,
            supportsAccessedDirty: true, supportsWriteBack: true, supportsUncacheable: true), physicalAddressBits: 40)
        try plan.forEachMapping { (start: UInt64, end: UInt64, type: EPTMemoryType) throws(EPTError) in
            try ept.map(guestPhysical: start, hostPhysical: start, size: end - start,
                        permissions: .readWriteExecute, memoryType: type)
        }
        #expect(ept.translate(0x9_F123)?.hostPhysical == 0x9_F123)
        #expect(ept.translate(0xB_8000)?.memoryType == .uncacheable)
        #expect(ept.translate(16 * MiB) == nil)
        #expect(ept.translate(19 * MiB) == nil)
        #expect(ept.translate(19 * MiB + 0x1000)?.pageSize == .size4KiB)
        #expect(ept.translate(20 * MiB)?.pageSize == .size2MiB)
        #expect(ept.translate(2 * GiB + 5)?.pageSize == .size1GiB)
        #expect(ept.translate(3 * GiB)?.memoryType == .uncacheable)
        #expect(ept.translate(4 * GiB) == nil)
        #expect(fake.liveFrames == 5) // PML4, PDPT, one PD, PTs for 0-2 and 18-20 MiB
    }

    @Test func q35MachineWithRAMAboveFourGiBAndAHighMMIOWindow() throws {
        let map = try e820([
            (0, 0x9_FC00, RAM), (0x9_FC00, 0x400, RES), (0xF_0000, 0x1_0000, RES), (MiB, 0x7FEE_0000, RAM),
            (0x7FFE_0000, 0x2_0000, RES), (0xB000_0000, 0x1000_0000, RES), (0xFED1_C000, 0x4000, RES),
            (0xFEFF_C000, 0x4000, RES), (0xFFFC_0000, 0x4_0000, RES), (4 * GiB, 2 * GiB, RAM),
        ])
        let mtrr = makeMTRR(def: mtrrWB | defEnable | defFixedEnable, variable: [
            variableRange(2 * GiB, size: 2 * GiB, type: mtrrUC),
            variableRange(32 * GiB, size: 32 * GiB, type: mtrrUC), // 64-bit PCI window, not in e820
        ])
        // The hypervisor at the end of low RAM and at the end of high RAM.
        let hv = try ranges([6 * GiB - 2 * MiB..<6 * GiB, 0x7FF0_0000..<0x7FFE_0000])
        let plan = try PassthroughMemoryPlan(firmware: map, hypervisor: hv, mtrr: mtrr, physicalAddressBits: 40)
        #expect(plan.top == 64 * GiB)
        expectChunks(plan, [
            (0, 0xA_0000, WB), (0xA_0000, 0xC_0000, UC), (0xC_0000, MiB, WP), (MiB, 0x7FF0_0000, WB),
            (0x7FFE_0000, 2 * GiB, WB), (2 * GiB, 4 * GiB, UC), (4 * GiB, 6 * GiB - 2 * MiB, WB),
            (6 * GiB, 32 * GiB, WB), (32 * GiB, 64 * GiB, UC),
        ])
        #expect(plan.withheld.count == 2)
        #expect(plan.withheld[0] == 0x7FF0_0000..<0x7FFE_0000) // sorted
        #expect(plan.guestMemoryMap.type(at: 0x7FF0_0000) == RES)
        #expect(plan.guestMemoryMap.type(at: 0x7FEF_F000) == RAM)
        #expect(plan.guestMemoryMap.type(at: 6 * GiB - 1) == RES)
        #expect(plan.guestMemoryMap.bytes(ofType: RAM) == map.bytes(ofType: RAM) - 0xE_0000 - 2 * MiB)
        checkTiling(plan)
    }

    @Test func efiMachineWithManyEntriesAndDefaultUncacheable() throws {
        // An EFI map: RAM split by owner into many adjacent pieces, runtime
        // services reserved, ACPI tables and NVS near the top of low RAM.
        var entries: [(UInt64, UInt64, UInt32)] = [(0, 0x5_8000, RAM), (0x5_8000, 0x1000, RES), (0x5_9000, 0x4_6000, RAM),
                                                   (0x9_F000, 0x1000, RES), (MiB, 0x100_0000 - MiB, RAM)]
        for i in UInt64(0)..<40 { entries.append((0x100_0000 + i * 0x20_0000, 0x20_0000, RAM)) } // 16-96 MiB
        entries += [(0x600_0000, 0x7A00_0000 - 0x600_0000, RAM), (0x7A00_0000, 0x100_0000, RES),
                    (0x7B00_0000, 0x80_0000, ACPI), (0x7B80_0000, 0x80_0000, NVS), (0x7C00_0000, 0x400_0000, RAM),
                    (0xE000_0000, 0x1000_0000, RES), (0xFED0_0000, 0x1000, RES), (4 * GiB, 5 * GiB, RAM)]
        let map = try e820(entries)
        #expect(try map.normalized().count == 12)
        // Default UC; WB 0-8 GiB and 8-9 GiB; UC over the 2-4 GiB hole.
        let mtrr = makeMTRR(def: mtrrUC | defEnable | defFixedEnable, variable: [
            variableRange(0, size: 8 * GiB, type: mtrrWB), variableRange(8 * GiB, size: GiB, type: mtrrWB),
            variableRange(2 * GiB, size: 2 * GiB, type: mtrrUC), variableRange(0x7C00_0000, size: 64 * MiB, type: mtrrWT),
        ], bits: 39)
        let hv = try ranges([0x200_0000..<0x220_0000, 0x220_0000..<0x230_0000, 0x210_0000..<0x211_0000])
        let plan = try PassthroughMemoryPlan(firmware: map, hypervisor: hv, mtrr: mtrr, physicalAddressBits: 39)
        #expect(plan.top == 9 * GiB)
        #expect(plan.withheld.count == 1) // adjacent and nested ones merge
        #expect(plan.withheld[0] == 0x200_0000..<0x230_0000)
        expectChunks(plan, [
            (0, 0xA_0000, WB), (0xA_0000, 0xC_0000, UC), (0xC_0000, MiB, WP), (MiB, 0x200_0000, WB),
            (0x230_0000, 0x7C00_0000, WB), (0x7C00_0000, 2 * GiB, WT), (2 * GiB, 4 * GiB, UC), (4 * GiB, 9 * GiB, WB),
        ])
        #expect(plan.guestMemoryMap.count == 14)
        checkTiling(plan)
    }

    @Test func mtrrsOffOrAbsentFallBackToWriteBackFirmwareRAM() throws {
        let firmware = try seaBIOSMap()
        let expected: [(UInt64, UInt64, EPTMemoryType)] = [
            (0, 0x9_F000, WB), (0x9_F000, MiB, UC),  // the page holding 9FC00 is partly reserved
            (MiB, 0x2000_0000, WB),                   // RAM and ACPI data
            (0x2000_0000, 4 * GiB, UC),
        ]
        let off = makeMTRR(def: mtrrWB | defFixedEnable,
                           variable: [variableRange(0, size: 64 * GiB, type: mtrrWB)])
        for mtrr in [off, MTRRState.absent] {
            let plan = try PassthroughMemoryPlan(firmware: firmware, hypervisor: HypervisorRanges(), mtrr: mtrr,
                                                 physicalAddressBits: 36)
            #expect(plan.top == 4 * GiB) // a disabled MTRR range does not raise it
            expectChunks(plan, expected)
            #expect(plan.memoryType(at: 0x1FFF_0000) == WB)
            checkTiling(plan)
        }
        // NVS counts as cached RAM too; a hole inside a page makes it UC.
        let nvs = try e820([(0, 0x1800, RAM), (0x1800, 0x800, NVS), (0x2000, 0x800, RAM), (0x3000, 0x1000, RAM)])
        let plan = try PassthroughMemoryPlan(firmware: nvs, hypervisor: HypervisorRanges(), mtrr: .absent,
                                             physicalAddressBits: 36)
        expectChunks(plan, [(0, 0x2000, WB), (0x2000, 0x3000, UC), (0x3000, 0x4000, WB), (0x4000, 4 * GiB, UC)])
    }

    @Test func hypervisorRangesAtTheEdgesAndOutsideTop() throws {
        let hv = try ranges([0..<0x800, 0x1234..<0x1235, 4 * GiB - 0x10..<5 * GiB, 6 * GiB..<7 * GiB, 0x5000..<0x5000])
        let plan = try PassthroughMemoryPlan(firmware: seaBIOSMap(), hypervisor: hv, mtrr: seaBIOSMTRR,
                                             physicalAddressBits: 40)
        #expect(plan.top == 4 * GiB)
        // The first two round to adjacent pages and merge; the empty one and
        // the one above top are gone.
        #expect(plan.withheld.count == 2)
        #expect(plan.withheld[0] == 0..<0x2000)
        #expect(plan.withheld[1] == 4 * GiB - 0x1000..<4 * GiB) // clipped to top
        #expect(plan.withheldBytes == 0x3000)
        let list = chunks(plan)
        #expect(list.first.map { $0.0 == 0x2000 && $0.1 == 0xA_0000 && $0.2 == WB } == true)
        #expect(list.last.map { $0.0 == 3 * GiB && $0.1 == 4 * GiB - 0x1000 && $0.2 == UC } == true)
        #expect(plan.guestMemoryMap[0] == E820Entry(base: 0, length: 0x2000, type: RES))
        checkTiling(plan)

        var full = HypervisorRanges()
        for i in UInt64(0)..<8 { try full.append(i * 0x1000..<i * 0x1000 + 1) }
        #expect(throws: PassthroughMemoryError.tooManyHypervisorRanges) { try full.append(0..<1) }
        #expect(throws: PassthroughMemoryError.unsupportedPhysicalAddressWidth(31)) {
            _ = try PassthroughMemoryPlan(firmware: E820Map(), hypervisor: full, mtrr: .absent, physicalAddressBits: 31)
        }
    }

    @Test func topTakesTheHighestSourceRoundedToAGiBAndCapped() throws {
        let empty = HypervisorRanges()
        let high = try e820([(0, 0x9_F000, RAM), (4 * GiB, GiB + 0x123_4000, RAM)])
        #expect(try PassthroughMemoryPlan(firmware: high, hypervisor: empty, mtrr: .absent,
                                          physicalAddressBits: 40).top == 6 * GiB)
        #expect(try PassthroughMemoryPlan(firmware: E820Map(), hypervisor: empty, mtrr: .absent,
                                          physicalAddressBits: 40).top == 4 * GiB)
        let wide = makeMTRR(def: mtrrWB | defEnable, variable: [variableRange(0, size: 1 << 40, type: mtrrWB)])
        #expect(try PassthroughMemoryPlan(firmware: high, hypervisor: empty, mtrr: wide,
                                          physicalAddressBits: 40).top == 1 << 40)
        let huge = try e820([(0, 128 * GiB, RAM)])
        #expect(try PassthroughMemoryPlan(firmware: huge, hypervisor: empty, mtrr: .absent,
                                          physicalAddressBits: 36).top == 64 * GiB)
    }

    @Test func everyPageIsMappedOnceOrWithheldForRandomMachines() throws {
        var rng = SplitMix(seed: 0x9A55)
        for round in 0..<6 {
            var entries: [(UInt64, UInt64, UInt32)] = []
            var at: UInt64 = 0
            while at < 4 * GiB - 64 * MiB {
                let length = (rng.next() % (256 * MiB)) / 0x400 * 0x400 + 0x400
                if rng.next() % 4 != 0 { entries.append((at, length, [RAM, RAM, RES, ACPI, NVS][Int(rng.next() % 5)])) }
                at += length
            }
            var pairs: [(UInt64, UInt64)] = []
            for _ in 0..<Int(rng.next() % 6) {
                let size = UInt64(1) << (12 + rng.next() % 20)
                pairs.append(variableRange(rng.next() % (4 * GiB) / size * size, size: size,
                                           type: [mtrrUC, mtrrWB, mtrrWT, mtrrWC][Int(rng.next() % 4)], bits: 32))
            }
            let mtrr = round % 3 == 2 ? MTRRState.absent
                : makeMTRR(def: [mtrrWB, mtrrUC][round % 2] | defEnable | defFixedEnable, variable: pairs, bits: 32)
            var hv: [Range<UInt64>] = []
            for _ in 0..<Int(rng.next() % 9) {
                let start = rng.next() % (4 * GiB)
                hv.append(start..<min(start + rng.next() % (64 * MiB), 4 * GiB))
            }
            let plan = try PassthroughMemoryPlan(firmware: e820(entries), hypervisor: ranges(hv), mtrr: mtrr,
                                                 physicalAddressBits: 32)
            #expect(plan.top == 4 * GiB)
            checkTiling(plan)

            // Page by page: in exactly one chunk or in a hypervisor range (as
            // given, rounded outward), never both; the chunk's type is the page's.
            var inChunks = [UInt8](repeating: 0, count: Int(plan.top / 0x1000))
            var withheld = [Bool](repeating: false, count: inChunks.count)
            for c in chunks(plan) {
                for page in c.0 / 0x1000..<c.1 / 0x1000 {
                    inChunks[Int(page)] += 1
                    if page % 97 == 0 {
                        let expected = mtrr.isEnabled ? EPTMemoryType(rawValue: mtrr.type(at: page * 0x1000).rawValue)
                            : plan.memoryType(at: page * 0x1000)
                        #expect(c.2 == expected)
                    }
                }
            }
            for r in hv where !r.isEmpty {
                for page in r.lowerBound / 0x1000..<(r.upperBound + 0xFFF) / 0x1000 { withheld[Int(page)] = true }
            }
            let wrong = zip(inChunks, withheld).filter { !(($0 == 1 && !$1) || ($0 == 0 && $1)) }.count
            #expect(wrong == 0, "pages mapped twice, mapped and withheld, or neither")
            #expect(withheld.filter { $0 }.count * 0x1000 == Int(plan.withheldBytes))
        }
    }

    /// 4 MiB up to the CPUs it holds, then 2 MiB more at a time: whole 2 MiB
    /// pages with room for every other CPU's frames beside 2 MiB for the rest.
    @Test func thePoolGrowsWithTheCPUs() {
        let perCPU = 26
        #expect(PassthroughMemoryPlan.poolBytes(otherCPUs: 0, framesPerCPU: perCPU) == 4 * MiB)
        #expect(PassthroughMemoryPlan.poolBytes(otherCPUs: 19, framesPerCPU: perCPU) == 4 * MiB)   // 1,976 KiB of APs
        #expect(PassthroughMemoryPlan.poolBytes(otherCPUs: 20, framesPerCPU: perCPU) == 6 * MiB)   // 2,080 KiB
        #expect(PassthroughMemoryPlan.poolBytes(otherCPUs: 63, framesPerCPU: perCPU) == 10 * MiB)
        for cpus in 0..<200 {
            let pool = PassthroughMemoryPlan.poolBytes(otherCPUs: cpus, framesPerCPU: perCPU)
            #expect(pool % (2 * MiB) == 0 && pool >= 2 * MiB + UInt64(cpus * perCPU) * 4 * KiB)
        }
        #expect(PassthroughMemoryPlan.poolBytes(otherCPUs: -1, framesPerCPU: perCPU) == 4 * MiB)
    }
}
