import Testing
import X86Arch
import X86VCPU

/// A map from (base, length, type) triples, in the order given.
func e820(_ entries: [(UInt64, UInt64, UInt32)]) throws -> E820Map {
    var map = E820Map()
    for e in entries { try map.add(base: e.0, length: e.1, type: e.2) }
    return map
}

/// The map's entries as (base, end, type) triples.
func triples(_ map: E820Map) -> [(UInt64, UInt64, UInt32)] {
    (0..<map.count).map { (map[$0].base, map[$0].end, map[$0].type) }
}

/// Expects the map's entries to be exactly `expected` (base, end, type).
func expectEntries(_ map: E820Map, _ expected: [(UInt64, UInt64, UInt32)],
                   sourceLocation: SourceLocation = #_sourceLocation) {
    let actual = triples(map)
    let equal = actual.count == expected.count
        && zip(actual, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 && $0.2 == $1.2 }
    #expect(equal, "got \(actual.map { "(\(hex($0.0)), \(hex($0.1)), \($0.2))" })", sourceLocation: sourceLocation)
}


private let RAM = E820Entry.ram, RES = E820Entry.reserved, ACPI = E820Entry.acpiReclaimable
private let NVS = E820Entry.acpiNVS, BAD = E820Entry.unusable

@Suite struct E820MapTests {
    @Test func addDropsEmptyEntriesAndRejectsWrapAndOverflow() throws {
        var map = E820Map()
        try map.add(base: 0x1000, length: 0, type: RAM)
        #expect(map.count == 0)
        #expect(throws: E820Error.wrapsAround(base: UInt64.max - 0xFFF)) {
            try map.add(base: UInt64.max - 0xFFF, length: 0x2000, type: RES)
        }
        for i in 0..<UInt64(E820Map.capacity) { try map.add(base: i * 0x1000, length: 0x1000, type: RAM) }
        #expect(map.count == 128)
        #expect(throws: E820Error.full) { try map.add(base: 0x100_0000, length: 0x1000, type: RAM) }
        #expect(map[127] == E820Entry(base: 127 * 0x1000, length: 0x1000, type: RAM))
        #expect(map[128] == E820Entry(base: 0, length: 0, type: 0))
        #expect(map[-1].length == 0)
        // 128 adjacent RAM pages normalize into one entry.
        try map.normalize()
        expectEntries(map, [(0, 128 * 0x1000, RAM)])
    }

    @Test func normalizeSortsMergesAndResolvesOverlaps() throws {
        let map = try e820([
            (0x10_0000, 0x7F0_0000, RAM),      // 1 MiB - 128 MiB
            (0, 0x9_FC00, RAM),
            (0x9_FC00, 0x400, RES),
            (0x800_0000, 0x800_0000, RAM),     // adjacent RAM: merges
            (0x200_0000, 0x10_0000, RES),      // reserved inside RAM: splits it
            (0x300_0000, 0x20_0000, ACPI),     // ACPI inside RAM
            (0x310_0000, 0x20_0000, RES),      // reserved over ACPI: reserved wins
            (0xF_0000, 0x1_0000, RES),
            (0xF_8000, 0x1_0000, NVS),         // reserved beats NVS, NVS spills into RAM
            (0xFFFC_0000, 0x4_0000, RES),
            (0xFFFC_0000, 0x2_0000, BAD),      // unusable (5) beats reserved (2)
        ])
        let n = try map.normalized()
        expectEntries(n, [
            (0, 0x9_FC00, RAM), (0x9_FC00, 0xA_0000, RES), (0xF_0000, 0x10_0000, RES), (0x10_0000, 0x10_8000, NVS),
            (0x10_8000, 0x200_0000, RAM), (0x200_0000, 0x210_0000, RES), (0x210_0000, 0x300_0000, RAM),
            (0x300_0000, 0x310_0000, ACPI), (0x310_0000, 0x330_0000, RES), (0x330_0000, 0x1000_0000, RAM),
            (0xFFFC_0000, 0xFFFE_0000, BAD), (0xFFFE_0000, 0x1_0000_0000, RES),
        ])
        #expect(n.bytes(ofType: ACPI) == 0x10_0000)
        #expect(n.type(at: 0x9_FBFF) == RAM)
        #expect(n.type(at: 0xA_0000) == nil)
        #expect(try n.normalized() == n) // idempotent
    }

    @Test func normalizeThrowsWhenPiecesDoNotFitAndKeepsTheMap() throws {
        // One RAM range with 127 reserved pages punched in: 255 pieces.
        var entries: [(UInt64, UInt64, UInt32)] = [(0, 0x1000_0000, RAM)]
        for i in 0..<127 { entries.append((UInt64(i) * 0x10_0000 + 0x8000, 0x1000, RES)) }
        var map = try e820(entries)
        let before = map
        #expect(throws: E820Error.full) { try map.normalize() }
        #expect(map == before)
    }

    @Test func reserveCarvesAndCoversHoles() throws {
        let base = try e820([(0, 0x9_F000, RAM), (0x10_0000, 0x3FF0_0000, RAM), (0x4000_0000, 0x1000, ACPI)])
        var middle = base
        try middle.reserve(0x100_0000..<0x140_0000)
        expectEntries(middle, [(0, 0x9_F000, RAM), (0x10_0000, 0x100_0000, RAM), (0x100_0000, 0x140_0000, RES),
                                       (0x140_0000, 0x4000_0000, RAM), (0x4000_0000, 0x4000_1000, ACPI)])
        // Across a hole and two entries, with another type.
        var across = base
        try across.reserve(0x9_0000..<0x20_0000, as: BAD)
        expectEntries(across, [(0, 0x9_0000, RAM), (0x9_0000, 0x20_0000, BAD), (0x20_0000, 0x4000_0000, RAM),
                                       (0x4000_0000, 0x4000_1000, ACPI)])
        // At the very start, at the very end, and past the end.
        var ends = base
        try ends.reserve(0..<0x1000)
        try ends.reserve(0x3FFF_F000..<0x4000_0000)
        try ends.reserve(0x5000_0000..<0x5000_1000)
        expectEntries(ends, [(0, 0x1000, RES), (0x1000, 0x9_F000, RAM), (0x10_0000, 0x3FFF_F000, RAM),
                                     (0x3FFF_F000, 0x4000_0000, RES), (0x4000_0000, 0x4000_1000, ACPI),
                                     (0x5000_0000, 0x5000_1000, RES)])
        // Next to an existing reserved entry of the same type: one entry.
        var adjacent = try e820([(0, 0x2000, RAM), (0x2000, 0x1000, RES), (0x3000, 0x5000, RAM)])
        try adjacent.reserve(0x3000..<0x4000)
        expectEntries(adjacent, [(0, 0x2000, RAM), (0x2000, 0x4000, RES), (0x4000, 0x8000, RAM)])
        // Empty: only normalizes.
        var empty = try e820([(0x1000, 0x1000, RAM), (0, 0x1000, RAM)])
        try empty.reserve(0x800..<0x800)
        expectEntries(empty, [(0, 0x2000, RAM)])
    }

    @Test func normalizeAgreesWithAPointByPointReading() throws {
        var rng = SplitMix(seed: 0xE820)
        let types: [UInt32] = [RAM, RES, ACPI, NVS, BAD, 7, 12]
        let rank: (UInt32) -> Int = { t in t == RAM ? 0 : t == ACPI ? 1 : t == NVS ? 2 : 3 + Int(t) }
        for _ in 0..<200 {
            var entries: [(UInt64, UInt64, UInt32)] = []
            for _ in 0..<Int(rng.next() % 20) + 1 {
                entries.append(((rng.next() % 64) * 0x400, (rng.next() % 16 + 1) * 0x400, types[Int(rng.next() % 7)]))
            }
            let n = try e820(entries).normalized()
            for i in 0..<n.count {
                #expect(n[i].length > 0)
                if i > 0 {
                    #expect(n[i - 1].end <= n[i].base)
                    #expect(n[i - 1].end < n[i].base || n[i - 1].type != n[i].type) // merged
                }
            }
            // Every 1 KiB unit: the highest-ranked covering entry, or a hole.
            for unit in UInt64(0)..<80 {
                let at = unit * 0x400
                let covering = entries.filter { $0.0 <= at && at < $0.0 + $0.1 }.map { $0.2 }
                let expected = covering.max { rank($0) < rank($1) }
                #expect(n.type(at: at) == expected)
                #expect((0..<n.count).filter { n[$0].base <= at && at < n[$0].end }.count == (expected == nil ? 0 : 1))
            }
        }
    }

    @Test func compactionMergesNeighbouringNonRAMNarrowestFirstAndKeepsRAM() throws {
        // RAM, then reserved/ACPI/NVS/reserved back to back, RAM, a reserved hole.
        let map = try e820([(0, 0x9F000, RAM), (0x9F000, 0x1000, RES), (0xA0000, 0x20000, NVS),
                            (0xC0000, 0x40000, ACPI), (0x100000, 0x1000_0000, RAM),
                            (0x1010_0000, 0x1000, RES), (0x1010_1000, 0x1000, ACPI)])
        #expect(try map.compacted(toAtMost: 7)?.count == 7)            // fits: unchanged
        let six = try #require(try map.compacted(toAtMost: 6))
        // The narrowest adjacent non-RAM pair is the two 4 KiB entries at the top.
        #expect(six.count == 6 && six[5].base == 0x1010_0000 && six[5].length == 0x2000 && six[5].type == RES)
        let four = try #require(try map.compacted(toAtMost: 4))
        #expect(four.count == 4)
        #expect(four[1].base == 0x9F000 && four[1].end == 0x100000 && four[1].type == RES)
        #expect(four.bytes(ofType: RAM) == map.bytes(ofType: RAM))    // RAM untouched
        #expect(try map.compacted(toAtMost: 2) == nil)                  // RAM alone needs 2 + the holes between
    }
}

