import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

typealias PRange = PhysicalMemoryMap.Range

/// The usable ranges of a map, lowest first.
func ranges(_ map: PhysicalMemoryMap) -> [PRange] {
    var out: [PRange] = []
    map.forEach { out.append($0) }
    #expect(out.count == map.count)
    #expect(out == (0..<map.count).map { map[$0] })
    return out
}

/// Builds a map from `entries` and `reserved` through a GRUB-shaped image.
func usableMap(
    _ entries: [(UInt64, UInt64, UInt32)], reserved: [PRange] = []
) throws -> PhysicalMemoryMap {
    try withInfo(mapImage(entries)) { info in
        var list = PhysicalMemoryMap.ReservedRanges()
        for r in reserved { try list.append(r) }
        return try PhysicalMemoryMap(memoryMap: #require(info.memoryMap), reserved: list)
    }
}

/// QEMU/SeaBIOS's e820 map for `-m 128`.
let qemuMap: [(UInt64, UInt64, UInt32)] = [
    (0, 0x9_FC00, 1), (0x9_FC00, 0x400, 2), (0xF_0000, 0x1_0000, 2),
    (0x10_0000, 0x7EE_0000, 1), (0x7FE_0000, 0x2_0000, 2), (0xFFFC_0000, 0x4_0000, 2),
]

@Suite struct PhysicalMemoryMapTests {
    @Test func qemuMapMinusKernelInfoAndModule() throws {
        // Kernel at 1 MiB, boot info placed by "GRUB" at 0x19_0000, one module.
        let image = mapImage(qemuMap, modules: [(0x20_0000, 0x234_5678)])
        try withInfo(image, at: 0x19_0000) { info in
            let map = try PhysicalMemoryMap(info: info, kernelImage: PRange(start: 0x10_0000, end: 0x18_0000))
            #expect(ranges(map) == [
                PRange(start: 0x18_0000, end: 0x19_0000),
                PRange(start: 0x19_1000, end: 0x20_0000), // info (< 4 KiB) rounds out to its page
                PRange(start: 0x234_6000, end: 0x7FE_0000), // module end rounded up
            ])
            #expect(map.totalAvailableBytes == 0x9_FC00 + 0x7EE_0000)
            #expect(map.usableBytes == 0x1_0000 + 0x6_F000 + (0x7FE_0000 - 0x234_6000))
            #expect(map.lowestUsableAddress == 0x18_0000 && map.highestUsableEnd == 0x7FE_0000)
            #expect(map.span == PRange(start: 0x18_0000, end: 0x7FE_0000))
        }
    }

    @Test func extraReservedRangesAreHonoured() throws {
        try withInfo(mapImage(qemuMap), at: 0x9_0000) { info in
            var extra = PhysicalMemoryMap.ReservedRanges()
            try extra.append(PRange(start: 0x400_0000, end: 0x500_0000))
            let map = try PhysicalMemoryMap(info: info, kernelImage: PRange(start: 0x10_0000, end: 0x20_0000), extra: extra)
            #expect(ranges(map) == [PRange(start: 0x20_0000, end: 0x400_0000), PRange(start: 0x500_0000, end: 0x7FE_0000)])
        }
    }

    @Test func regionsAreSortedClippedAtOneMiBAndShrunkToWholeFrames() throws {
        let map = try usableMap([
            (0x4000_0000, 0x1_0000, 1),       // listed first, highest
            (0x8_0000, 0x18_0000, 1),         // straddles 1 MiB
            (0x30_0800, 0x3000, 1),           // unaligned both ends
            (0x40_0000, 0x10_0000, 3),        // ACPI reclaimable: not used
            (0x50_0000, 0x800, 1),            // smaller than a frame once aligned
        ])
        #expect(ranges(map) == [
            PRange(start: 0x10_0000, end: 0x20_0000),
            PRange(start: 0x30_1000, end: 0x30_3000),
            PRange(start: 0x4000_0000, end: 0x4001_0000),
        ])
        #expect(map.totalAvailableBytes == 0x1_0000 + 0x18_0000 + 0x3000 + 0x800)
        #expect(map.usableBytes == 0x10_0000 + 0x2000 + 0x1_0000)
    }

    @Test func reservedRangesCutHolesAndMayOverlapEachOther() throws {
        let map = try usableMap([(0x10_0000, 0x100_0000, 1)], reserved: [
            PRange(start: 0x50_0000, end: 0x60_0000),
            PRange(start: 0x20_0000, end: 0x30_0000),
            PRange(start: 0x28_0000, end: 0x38_0000), // overlaps the previous one
            PRange(start: 0x70_0000, end: 0x70_0000), // empty: must not split
            PRange(start: 0x0, end: 0x11_0000),       // reaches in from below 1 MiB
            PRange(start: 0x100_0000, end: 0x200_0000), // hangs off the end
            PRange(start: 0x4000_0000, end: 0x5000_0000), // nowhere near RAM
        ])
        #expect(ranges(map) == [
            PRange(start: 0x11_0000, end: 0x20_0000),
            PRange(start: 0x38_0000, end: 0x50_0000),
            PRange(start: 0x60_0000, end: 0x100_0000),
        ])
    }

    @Test func onlyLowMemoryOrAllReservedMeansNoUsableMemory() throws {
        #expect(throws: PhysicalMemoryMapError.noUsableMemory) {
            _ = try usableMap([(0, 0x9_FC00, 1), (0x10_0000, 0x100_0000, 2)])
        }
        #expect(throws: PhysicalMemoryMapError.noUsableMemory) {
            _ = try usableMap([(0x10_0000, 0x10_0000, 1)], reserved: [PRange(start: 0x10_0000, end: 0x20_0000)])
        }
    }

    @Test func malformedMapsGiveTypedErrors() {
        #expect(throws: PhysicalMemoryMapError.zeroLengthRegion(index: 1)) {
            _ = try usableMap([(0x10_0000, 0x1000, 1), (0x20_0000, 0, 2)])
        }
        #expect(throws: PhysicalMemoryMapError.regionWrapsAround(index: 0)) {
            _ = try usableMap([(UInt64.max - 0xFFF, 0x1000, 2)])
        }
        // Two available regions overlapping.
        #expect(throws: PhysicalMemoryMapError.overlappingRegions(first: 0, second: 2)) {
            _ = try usableMap([(0x10_0000, 0x10_0000, 1), (0x40_0000, 0x1000, 1), (0x1F_F000, 0x2000, 1)])
        }
        // Available overlapping reserved, in either order.
        #expect(throws: PhysicalMemoryMapError.overlappingRegions(first: 0, second: 1)) {
            _ = try usableMap([(0x10_0000, 0x10_0000, 1), (0x1F_0000, 0x1000, 2)])
        }
        #expect(throws: PhysicalMemoryMapError.overlappingRegions(first: 0, second: 1)) {
            _ = try usableMap([(0x1F_0000, 0x1000, 3), (0x10_0000, 0x10_0000, 1)])
        }
    }

    @Test func touchingRegionsAndOverlappingReservedOnesAreFine() throws {
        let map = try usableMap([
            (0x10_0000, 0x10_0000, 1), (0x20_0000, 0x10_0000, 1), // adjacent, not overlapping
            (0xFEC0_0000, 0x1000, 2), (0xFEC0_0000, 0x10_0000, 2), // reserved overlaps reserved
        ])
        // Touching pieces are merged into one.
        #expect(ranges(map) == [PRange(start: 0x10_0000, end: 0x30_0000)])
        // In any order, and a piece that fills a gap joins both neighbours.
        let gap = try usableMap([
            (0x30_0000, 0x10_0000, 1), (0x10_0000, 0x10_0000, 1), (0x50_0000, 0x1000, 1), (0x20_0000, 0x10_0000, 1),
        ])
        #expect(ranges(gap) == [PRange(start: 0x10_0000, end: 0x40_0000), PRange(start: 0x50_0000, end: 0x50_1000)])
        #expect(gap.usableBytes == 0x30_1000)
    }

    @Test func modulesMustLieInAvailableRAM() throws {
        let kernel = PRange(start: 0x10_0000, end: 0x18_0000)
        // Inside a reserved region.
        try withInfo(mapImage(qemuMap, modules: [(0x20_0000, 0x30_0000), (0x7FE_0000, 0x7FE_1000)])) { info in
            #expect(throws: PhysicalMemoryMapError.moduleOutsideRAM(index: 1)) {
                _ = try PhysicalMemoryMap(info: info, kernelImage: kernel)
            }
        }
        // Running off the end of available RAM.
        try withInfo(mapImage(qemuMap, modules: [(0x7F0_0000, 0x800_0000)])) { info in
            #expect(throws: PhysicalMemoryMapError.moduleOutsideRAM(index: 0)) {
                _ = try PhysicalMemoryMap(info: info, kernelImage: kernel)
            }
        }
        // An empty module on the last byte boundary of RAM is inside it.
        try withInfo(mapImage(qemuMap, modules: [(0x7FE_0000, 0x7FE_0000)]), at: 0x9_0000) { info in
            let map = try PhysicalMemoryMap(info: info, kernelImage: kernel)
            #expect(map.highestUsableEnd == 0x7FE_0000)
        }
    }

    @Test func infoWithoutAMemoryMapIsAnError() throws {
        var b = MBIBuilder()
        b.commandLine("x")
        b.end()
        try withInfo(b.finish()) { info in
            #expect(throws: PhysicalMemoryMapError.noMemoryMap) {
                _ = try PhysicalMemoryMap(info: info, kernelImage: PRange(start: 0x10_0000, end: 0x20_0000))
            }
        }
    }

    @Test func capacityLimitsAreTypedErrors() throws {
        // 65 separate one-frame regions: one more than the map holds.
        let many = (0..<65).map { (UInt64(0x100_0000 + $0 * 0x2000), UInt64(0x1000), UInt32(1)) }
        #expect(throws: PhysicalMemoryMapError.tooManyRegions) { _ = try usableMap(many) }
        #expect(try usableMap(Array(many.prefix(64))).count == 64)

        var list = PhysicalMemoryMap.ReservedRanges()
        for i in 0..<PhysicalMemoryMap.ReservedRanges.capacity {
            try list.append(PRange(start: UInt64(i) * 0x1000, end: UInt64(i + 1) * 0x1000))
        }
        #expect(list.count == 32 && list[31] == PRange(start: 31 * 0x1000, end: 32 * 0x1000))
        #expect(throws: PhysicalMemoryMapError.tooManyReservedRanges) { try list.append(PRange(start: 0, end: 1)) }

        var other = PhysicalMemoryMap.ReservedRanges()
        try other.append(PRange(start: 0, end: 0))
        #expect(throws: PhysicalMemoryMapError.invalidReservedRange(index: 1)) {
            try other.append(PRange(start: 0x2000, end: 0x1000))
        }
        #expect(other.count == 1)
    }

    @Test func takeFirstFitCarvesFromTheLowestRangeThatFits() throws {
        var map = try usableMap([(0x10_0000, 0x2000, 1), (0x20_0000, 0x10_0000, 1), (0x40_0000, 0x3000, 1)])
        let before = map.usableBytes
        // 0x2001 bytes need 3 frames: the first range (2 frames) is too small.
        #expect(map.takeFirstFit(byteCount: 0x2001) == 0x20_0000)
        #expect(map.usableBytes == before - 0x3000)
        #expect(map[1] == PRange(start: 0x20_3000, end: 0x30_0000))
        // An exact fit removes the range.
        #expect(map.takeFirstFit(byteCount: 0x2000) == 0x10_0000)
        #expect(ranges(map) == [PRange(start: 0x20_3000, end: 0x30_0000), PRange(start: 0x40_0000, end: 0x40_3000)])
        #expect(map.takeFirstFit(byteCount: 0x20_0000) == nil)
        #expect(map.takeFirstFit(byteCount: 0) == nil)
        #expect(map.takeFirstFit(byteCount: UInt64.max) == nil)
        #expect(map.takeFirstFit(byteCount: 0xFD000) == 0x20_3000)
        #expect(map.takeFirstFit(byteCount: 0x3000) == 0x40_0000)
        #expect(map.count == 0 && map.usableBytes == 0)
        #expect(map.lowestUsableAddress == 0 && map.highestUsableEnd == 0 && map.span.isEmpty)
    }

    @Test func rangeHelpers() {
        #expect(PRange(start: UInt64.max, size: 1) == nil)
        #expect(PRange(start: 0x1000, size: 0x1000) == PRange(start: 0x1000, end: 0x2000))
        let r = PRange(start: 0x1000, end: 0x3000)
        #expect(r.size == 0x2000 && !r.isEmpty && r.contains(0x2FFF) && !r.contains(0x3000) && !r.contains(0xFFF))
        #expect(r.contains(PRange(start: 0x1000, end: 0x3000)) && !r.contains(PRange(start: 0x1000, end: 0x3001)))
        #expect(r.overlaps(PRange(start: 0x2FFF, end: 0x4000)) && !r.overlaps(PRange(start: 0x3000, end: 0x4000)))
        #expect(!r.overlaps(PRange(start: 0x2000, end: 0x2000)))
        #expect(PRange(start: 5, end: 1).size == 0 && PRange(start: 5, end: 1).isEmpty)
    }

    @Test func everyErrorHasItsOwnMessage() {
        let errors: [PhysicalMemoryMapError] = [
            .noMemoryMap, .zeroLengthRegion(index: 0), .regionWrapsAround(index: 0),
            .overlappingRegions(first: 0, second: 1), .invalidReservedRange(index: 0), .tooManyReservedRanges,
            .moduleOutsideRAM(index: 0), .tooManyRegions, .noUsableMemory,
        ]
        let messages = errors.map { $0.message.description }
        #expect(Set(messages).count == errors.count && messages.allSatisfy { !$0.isEmpty })
    }
}
