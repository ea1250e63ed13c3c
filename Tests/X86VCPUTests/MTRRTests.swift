import Testing
import X86Arch
import X86VCPU

// MTRR encodings used below. SDM 12.11.2 "Setting Memory Ranges with MTRRs".
let mtrrUC: UInt64 = 0, mtrrWC: UInt64 = 1, mtrrWT: UInt64 = 4, mtrrWP: UInt64 = 5, mtrrWB: UInt64 = 6
let defEnable: UInt64 = 1 << 11, defFixedEnable: UInt64 = 1 << 10
/// MTRRCAP with `vcnt` variable ranges, fixed ranges and WC.
func mtrrCap(_ vcnt: UInt64) -> UInt64 { vcnt | 1 << 8 | 1 << 10 }
/// The usual fixed ranges: 0-9FFFF WB, A0000-BFFFF UC (VGA), C0000-FFFFF WP.
let pcFixed: [UInt64] = [0x0606_0606_0606_0606, 0x0606_0606_0606_0606, 0] + Array(repeating: 0x0505_0505_0505_0505, count: 8)

/// A variable pair covering [base, base + size), size a power of two.
func variableRange(_ base: UInt64, size: UInt64, type: UInt64, bits: Int = 40) -> (UInt64, UInt64) {
    (base | type, ~(size - 1) & ((1 << UInt64(bits)) - 1) & ~0xFFF | 1 << 11)
}

/// An MTRRState from plain arrays.
func makeMTRR(cap: UInt64? = nil, def: UInt64, fixed: [UInt64] = pcFixed, variable: [(UInt64, UInt64)] = [],
              bits: Int = 40) -> MTRRState {
    var f: [11 of UInt64] = .init(repeating: 0)
    for i in 0..<11 { f[i] = fixed[i] }
    var v: [32 of MTRRVariableRange] = .init(repeating: MTRRVariableRange(base: 0, mask: 0))
    for (i, pair) in variable.enumerated() { v[i] = MTRRVariableRange(base: pair.0, mask: pair.1) }
    return MTRRState(capability: cap ?? mtrrCap(UInt64(max(variable.count, 8))), defaultType: def, fixed: f,
                     variable: v, physicalAddressBits: bits)
}

private let MiB: UInt64 = 0x10_0000
private let GiB: UInt64 = 0x4000_0000

@Suite struct MTRRTests {
    @Test func disabledMeansUncacheableEverywhere() {
        let m = makeMTRR(def: mtrrWB | defFixedEnable, variable: [variableRange(0, size: 4 * GiB, type: mtrrWB)])
        #expect(!m.isEnabled)
        #expect(m.type(at: 0) == .uncacheable)
        #expect(m.type(at: 2 * GiB) == .uncacheable)
        #expect(m.nextBoundary(after: 0) == 1 << 40)
        #expect(m.highestVariableRangeEnd == 0)
        #expect(MTRRState.absent.type(at: 0x1000) == .uncacheable)
    }

    @Test func fixedRangesDecideBelowOneMiB() {
        let m = makeMTRR(def: mtrrUC | defEnable | defFixedEnable, variable: [variableRange(0, size: GiB, type: mtrrWT)])
        #expect(m.type(at: 0) == .writeBack)
        #expect(m.type(at: 0x9_FFFF) == .writeBack)
        #expect(m.type(at: 0xA_0000) == .uncacheable)
        #expect(m.type(at: 0xB_F000) == .uncacheable)
        #expect(m.type(at: 0xC_0000) == .writeProtected)
        #expect(m.type(at: 0xF_F000) == .writeProtected)
        #expect(m.type(at: MiB) == .writeThrough)          // the variable range above 1 MiB
        #expect(m.nextBoundary(after: 0x1234) == 0x1_0000)  // 64K sub-ranges
        #expect(m.nextBoundary(after: 0x8_0000) == 0x8_4000) // 16K
        #expect(m.nextBoundary(after: 0xF_F000) == MiB)      // 4K, last one
        #expect(m.nextBoundary(after: MiB) == GiB)

        // One byte per sub-range: the 4K register for E0000-E7FFF, bytes 2-3 UC.
        var fixed = pcFixed
        fixed[7] = 0x0505_0505_0000_0505
        let n = makeMTRR(def: mtrrWB | defEnable | defFixedEnable, fixed: fixed)
        #expect(n.type(at: 0xE_1000) == .writeProtected)
        #expect(n.type(at: 0xE_2000) == .uncacheable)
        #expect(n.type(at: 0xE_3FFF) == .uncacheable)
        #expect(n.type(at: 0xE_4000) == .writeProtected)
        #expect(n.uniformType(in: 0xE_0000..<0xE_2000) == .writeProtected)
        #expect(n.uniformType(in: 0xE_0000..<0xE_2001) == nil)
        #expect(n.uniformType(in: 0..<0xA_0000) == .writeBack) // ten sub-ranges, one type
    }

    @Test func fixedRangeBytesFollowTheSDMSubRangeTable() {
        // SDM 12.11.2.2 "Fixed Range MTRRs", table "Address Mapping for
        // Fixed-Range MTRRs": register, byte -> first address of the sub-range.
        func start(_ register: Int, _ byte: Int) -> UInt64 {
            switch register {
            case 0: UInt64(byte) * 0x1_0000
            case 1, 2: 0x8_0000 + UInt64(register - 1) * 0x2_0000 + UInt64(byte) * 0x4000
            default: 0xC_0000 + UInt64(register - 3) * 0x8000 + UInt64(byte) * 0x1000
            }
        }
        let codes: [UInt64] = [mtrrUC, mtrrWC, mtrrWT, mtrrWP, mtrrWB]
        let kinds: [MemoryType] = [.uncacheable, .writeCombining, .writeThrough, .writeProtected, .writeBack]
        var fixed = [UInt64](repeating: 0, count: 11)
        for r in 0..<11 { for b in 0..<8 { fixed[r] |= codes[(r * 8 + b) % 5] << UInt64(8 * b) } }
        let m = makeMTRR(def: mtrrUC | defEnable | defFixedEnable, fixed: fixed)
        for r in 0..<11 {
            for b in 0..<8 {
                #expect(m.type(at: start(r, b)) == kinds[(r * 8 + b) % 5], "register \(r) byte \(b)")
                #expect(MTRRFixedRanges.locate(start(r, b)).register == r)
                #expect(MTRRFixedRanges.locate(start(r, b)).byte == b)
            }
        }
        #expect(MTRRFixedRanges.msrs[1] == MSR.ia32MTRRFix16K80000.address)
        #expect(MTRRFixedRanges.msrs[2] == MSR.ia32MTRRFix16KA0000.address)
        #expect(MTRRFixedRanges.msrs[3] == MSR.ia32MTRRFix4KC0000.address)
        #expect(MTRRFixedRanges.msrs[10] == MSR.ia32MTRRFix4KF8000.address)
    }

    @Test func withoutFixedEnableOrFIXTheVariableRangesCoverLowMemory() {
        let variable = [variableRange(0, size: GiB, type: mtrrWT)]
        let noFE = makeMTRR(def: mtrrUC | defEnable, variable: variable)
        #expect(noFE.type(at: 0xA_0000) == .writeThrough)
        #expect(noFE.nextBoundary(after: 0) == GiB)
        let noFIX = makeMTRR(cap: 8, def: mtrrUC | defEnable | defFixedEnable, variable: variable)
        #expect(!noFIX.fixedRangesActive)
        #expect(noFIX.type(at: 0xA_0000) == .writeThrough)
    }

    @Test func overlapPrecedences() {
        // SDM 12.11.4.1: UC wins; WT with WB is WT; no match is the default type.
        let m = makeMTRR(def: mtrrWP | defEnable, variable: [
            variableRange(0, size: 4 * GiB, type: mtrrWB),
            variableRange(3 * GiB, size: GiB, type: mtrrUC),
            variableRange(GiB, size: GiB, type: mtrrWT),
            variableRange(2 * GiB, size: 256 * MiB, type: mtrrWC),
            variableRange(8 * GiB, size: GiB, type: mtrrWB),
            variableRange(8 * GiB, size: 512 * MiB, type: mtrrWB), // same type twice
        ])
        #expect(m.type(at: 16 * MiB) == .writeBack)
        #expect(m.type(at: 3 * GiB + 0x1000) == .uncacheable)
        #expect(m.type(at: GiB) == .writeThrough)
        #expect(m.type(at: 2 * GiB) == .uncacheable) // WC over WB: undefined, read as UC
        #expect(m.type(at: 2 * GiB + 256 * MiB) == .writeBack)
        #expect(m.type(at: 8 * GiB) == .writeBack)
        #expect(m.type(at: 4 * GiB) == .writeProtected) // default
        #expect(m.type(at: 9 * GiB) == .writeProtected)
        #expect(m.highestVariableRangeEnd == 9 * GiB)
        #expect(m.nextBoundary(after: 0) == GiB)
        #expect(m.nextBoundary(after: GiB) == 2 * GiB)
        #expect(m.nextBoundary(after: 2 * GiB) == 2 * GiB + 256 * MiB)
        #expect(m.nextBoundary(after: 3 * GiB) == 4 * GiB)
        #expect(m.nextBoundary(after: 4 * GiB) == 8 * GiB)
        #expect(m.nextBoundary(after: 8 * GiB) == 8 * GiB + 512 * MiB)
        #expect(m.nextBoundary(after: 9 * GiB) == 1 << 40)
        #expect(m.uniformType(in: 0..<GiB) == .writeBack)
        #expect(m.uniformType(in: 0..<GiB + 1) == nil)
        #expect(m.uniformType(in: 5 * GiB..<6 * GiB) == .writeProtected)
        #expect(m.uniformType(in: 5 * GiB..<5 * GiB) == nil)
    }

    @Test func invalidPairsAndReservedTypesAreHandled() {
        let m = makeMTRR(def: 2 | defEnable, variable: [
            (0 | mtrrUC, ~(GiB - 1) & 0xFF_FFFF_F000), // valid bit clear: ignored
            variableRange(GiB, size: GiB, type: 7),      // reserved type: UC
        ])
        #expect(m.type(at: 0) == .uncacheable)           // default type 2 is reserved
        #expect(m.type(at: GiB) == .uncacheable)
        #expect(m.highestVariableRangeEnd == 2 * GiB)
        // Variable pairs beyond VCNT do not count.
        let capped = makeMTRR(cap: mtrrCap(1), def: mtrrWB | defEnable,
                              variable: [variableRange(0, size: GiB, type: mtrrWT), variableRange(0, size: GiB, type: mtrrUC)])
        #expect(capped.variableCount == 1)
        #expect(capped.type(at: 0x1000) == .writeThrough)
    }

    @Test func readAsksOnlyForTheRegistersThatExist() {
        var values: [UInt32: UInt64] = [0xFE: mtrrCap(2), 0x2FF: mtrrUC | defEnable | defFixedEnable,
                                        0x200: 0 | mtrrWB, 0x201: 0xFF_0000_0800, 0x202: 0xC000_0000, 0x203: 0xFF_C000_0800]
        for (i, msr) in [0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F].enumerated() {
            values[UInt32(msr)] = pcFixed[i]
        }
        var asked: [UInt32] = []
        let m = MTRRState.read({ asked.append($0); return values[$0] ?? 0xDEAD }, physicalAddressBits: 40)
        #expect(asked == [0xFE, 0x2FF, 0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F,
                          0x200, 0x201, 0x202, 0x203])
        #expect(m.variableCount == 2)
        #expect(m.type(at: 0xA_0000) == .uncacheable)
        #expect(m.type(at: 0xC_8000) == .writeProtected)
        #expect(m.type(at: 2 * GiB) == .writeBack)
        #expect(m.type(at: 3 * GiB) == .uncacheable)

        // FE clear: the fixed-range MSRs are not read.
        values[0x2FF] = mtrrUC | defEnable
        asked = []
        _ = MTRRState.read({ asked.append($0); return values[$0] ?? 0 }, physicalAddressBits: 40)
        #expect(asked == [0xFE, 0x2FF, 0x200, 0x201, 0x202, 0x203])
        // MTRRCAP 0 (an emulator without MTRRs): nothing else is read.
        asked = []
        let none = MTRRState.read({ asked.append($0); return $0 == 0x2FF ? defEnable : 0 }, physicalAddressBits: 40)
        #expect(asked == [0xFE, 0x2FF])
        #expect(none.variableCount == 0)
    }

    @Test func nonContiguousMaskMatchesPeriodically() {
        // Mask bits 31 and 12 only: bit 31 = 1 and bit 12 = 0 match, bits
        // 30:13 are free: every other 4 KiB page of 2-4 GiB.
        let m = makeMTRR(def: mtrrWB | defEnable, variable: [(0x8000_0000 | mtrrUC, 0x8000_1000 | 1 << 11)], bits: 32)
        #expect(m.type(at: 0x8000_0000) == .uncacheable)
        #expect(m.type(at: 0x8000_1000) == .writeBack)
        #expect(m.type(at: 0x8000_2000) == .uncacheable)
        #expect(m.type(at: 0x7FFF_E000) == .writeBack)
        #expect(m.nextBoundary(after: 0) == 0x8000_0000)
        #expect(m.nextBoundary(after: 0x8000_0000) == 0x8000_1000)
        #expect(m.nextBoundary(after: 0x8000_1000) == 0x8000_2000)
        #expect(m.nextBoundary(after: 0xFFFF_F000) == 1 << 32)
    }

    @Test func nextBoundaryIsExactForRandomMasks() {
        // Against a page-by-page scan, in a 32-bit space small enough to walk
        // near each start.
        var rng = SplitMix(seed: 0x4D54_5252)
        for _ in 0..<200 {
            var pairs: [(UInt64, UInt64)] = []
            for _ in 0..<Int(rng.next() % 4) + 1 {
                // Masks with few free bits near the bottom so changes are close.
                let mask = (0xFFFF_F000 & ~(rng.next() & 0x000F_F000)) | 1 << 11
                pairs.append((rng.next() & 0xFFFF_F000 | [mtrrUC, mtrrWB, mtrrWT][Int(rng.next() % 3)], mask))
            }
            let m = makeMTRR(def: mtrrWB | defEnable, variable: pairs, bits: 32)
            let start = rng.next() & 0xFFFF_F000
            let boundary = m.nextBoundary(after: start)
            #expect(boundary > start && boundary <= 1 << 32 && boundary & 0xFFF == 0)
            // Every variable range's match is constant up to the boundary...
            var page = start
            while page < boundary && page < start + 0x40_0000 {
                #expect(m.type(at: page) == m.type(at: start))
                page += 0x1000
            }
            // ...and some range flips there (the boundary is not early).
            if boundary < 1 << 32 {
                let flips = pairs.contains { pair in
                    let mask = pair.1 & 0xFFFF_F000
                    return (start & mask == pair.0 & mask) != (boundary & mask == pair.0 & mask)
                }
                #expect(flips)
            }
        }
    }
}

/// A small deterministic generator for property tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
