import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

/// Guest RAM for the walk: `size` bytes from guest-physical 0; anything
/// above is "not RAM".
final class FakeGuestRAM: GuestPhysicalMemory {
    private var bytes: [UInt8]
    init(size: Int = 0x10_0000) { bytes = Array(repeating: 0, count: size) }

    func write64(_ gpa: UInt64, _ value: UInt64) {
        for i in 0..<8 { bytes[Int(gpa) + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
    func write32(_ gpa: UInt64, _ value: UInt32) {
        for i in 0..<4 { bytes[Int(gpa) + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }
    func read64(_ gpa: UInt64) -> UInt64? {
        guard gpa + 8 <= UInt64(bytes.count) else { return nil }
        return (0..<8).reduce(0) { $0 | UInt64(bytes[Int(gpa) + $1]) << (8 * UInt64($1)) }
    }
    func read32(_ gpa: UInt64) -> UInt32? {
        guard gpa + 4 <= UInt64(bytes.count) else { return nil }
        return (0..<4).reduce(0) { $0 | UInt32(bytes[Int(gpa) + $1]) << (8 * UInt32($1)) }
    }
}

// Control-register and EFER bits, SDM 2.5 and 2.2.1.
private let PG: UInt64 = 1 << 31, WP: UInt64 = 1 << 16, PE: UInt64 = 1
private let PSE: UInt64 = 1 << 4, PAE: UInt64 = 1 << 5, LA57: UInt64 = 1 << 12
private let SMEP: UInt64 = 1 << 20, SMAP: UInt64 = 1 << 21
private let LME: UInt64 = 1 << 8, LMA: UInt64 = 1 << 10, NXE: UInt64 = 1 << 11
// Paging-entry bits, SDM 5.3-5.5 tables: P, R/W, U/S, PS, XD.
private let P: UInt64 = 1, RW: UInt64 = 2, US: UInt64 = 4, PS: UInt64 = 1 << 7, XD: UInt64 = 1 << 63
private let PRWUS = P | RW | US

private let read = GuestAccess(.read, userMode: false)
private let write = GuestAccess(.write, userMode: false)
private let fetch = GuestAccess(.instructionFetch, userMode: false)
private let userRead = GuestAccess(.read, userMode: true)
private let userWrite = GuestAccess(.write, userMode: true)
private let userFetch = GuestAccess(.instructionFetch, userMode: true)

private func fault(_ bits: PageFaultErrorCode...) -> GuestPageWalkError {
    .pageFault(errorCode: bits.reduce(PageFaultErrorCode(rawValue: 0), |))
}
private let none = PageFaultErrorCode(rawValue: 0)

/// LA 0x80_4020_1123 takes index 1 at every 4-level step (bits 39, 30, 21, 12)
/// and page offset 0x123: PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000.
private let la: UInt64 = 0x80_4020_1123

private func fourLevel(cr0: UInt64 = PG | PE | WP, cr4: UInt64 = PAE, efer: UInt64 = LME | LMA | NXE,
                       bits: Int = 46) -> (FakeGuestRAM, GuestPagingState) {
    let ram = FakeGuestRAM()
    ram.write64(0x1000 + 8, 0x2000 | PRWUS)
    ram.write64(0x2000 + 8, 0x3000 | PRWUS)
    ram.write64(0x3000 + 8, 0x4000 | PRWUS)
    ram.write64(0x4000 + 8, 0x5555_5000 | PRWUS)
    return (ram, GuestPagingState(cr0: cr0, cr3: 0x1000, cr4: cr4, efer: efer, physicalAddressBits: bits))
}

@Suite struct GuestPagingModeTests {
    // SDM 5.1.1 Table 5-1.
    @Test func modeFollowsCR0CR4AndEFER() {
        func mode(_ cr0: UInt64, _ cr4: UInt64, _ efer: UInt64) -> GuestPagingMode {
            GuestPagingState(cr0: cr0, cr3: 0, cr4: cr4, efer: efer, physicalAddressBits: 36).mode
        }
        #expect(mode(PE, PAE | LA57, LME) == .disabled)
        #expect(mode(PG | PE, PSE, LME) == .bits32)
        #expect(mode(PG | PE, PAE, 0) == .pae)
        #expect(mode(PG | PE, PAE, LME | LMA) == .level4)
        #expect(mode(PG | PE, PAE | LA57, LME | LMA) == .level5)
    }

    @Test func walkInfoCarriesTheSeedsFields() {
        let state = GuestPagingState(cr0: PG | PE | WP, cr3: 0x1234_5000, cr4: PSE | SMEP | SMAP, efer: NXE,
                                     physicalAddressBits: 36)
        let info = GuestPageWalkInfo(state: state, access: GuestAccess(.write, userMode: true))
        #expect(info.level == 2 && info.width == 10 && info.topEntry == 0x1234_5000)
        #expect(info.pse && info.wp && info.nxe && info.isSMEPOn && info.isSMAPOn)
        #expect(info.isUserModeAccess && info.isWriteAccess && !info.isInstructionFetch)
        let (_, long) = fourLevel()
        let longInfo = GuestPageWalkInfo(state: long, access: GuestAccess(.instructionFetch, userMode: true,
                                                                          implicitSupervisor: true))
        #expect(longInfo.level == 4 && longInfo.width == 9 && !longInfo.pse && !longInfo.isSMEPOn)
        #expect(longInfo.isInstructionFetch && !longInfo.isUserModeAccess && longInfo.isImplicitSupervisorAccess)
        #expect(GuestPagingMode.pae.levels == 3 && GuestPagingMode.level5.levels == 5)
    }

    @Test func pagingOffIsIdentityOn32BitAddresses() throws {
        let state = GuestPagingState(cr0: PE, cr3: 0xDEAD_0000, cr4: 0, efer: 0, physicalAddressBits: 36)
        let t = try state.translate(0x1_0012_3456, access: userWrite, memory: FakeGuestRAM(size: 16))
        #expect(t.guestPhysical == 0x0012_3456)
        #expect(t.isWritable && t.isUserAccessible && !t.isExecuteDisabled)
    }
}

@Suite struct FourLevelPagingTests {
    @Test func fourKiBTranslationUsesBits47to12AsFourIndices() throws {
        let (ram, state) = fourLevel()
        let t = try state.translate(la, access: userWrite, memory: ram)
        #expect(t.guestPhysical == 0x5555_5123)
        #expect(t.pageSize == 0x1000)
        #expect(t.leafEntry == 0x5555_5000 | PRWUS)
        #expect(t.isWritable && t.isUserAccessible && !t.isExecuteDisabled)
    }

    @Test func twoMiBAndOneGiBPages() throws {
        let (ram, state) = fourLevel()
        ram.write64(0x3000 + 8, 0x4060_0000 | PRWUS | PS)
        let t2 = try state.translate(la, access: read, memory: ram)
        #expect(t2.guestPhysical == 0x4060_0000 | (la & 0x1F_FFFF))
        #expect(t2.pageSize == 0x20_0000)
        // Bits 20:13 of a 2 MiB PDE are reserved (bit 12 is PAT and allowed).
        ram.write64(0x3000 + 8, 0x4060_0000 | PRWUS | PS | 1 << 12)
        #expect(try state.translate(la, access: read, memory: ram).guestPhysical == 0x4060_0000 | (la & 0x1F_FFFF))
        ram.write64(0x3000 + 8, 0x4060_0000 | PRWUS | PS | 1 << 13)
        #expect(throws: fault(.present, .reservedBit)) { try state.translate(la, access: read, memory: ram) }

        ram.write64(0x2000 + 8, 0x8000_0000 | PRWUS | PS)
        let t1 = try state.translate(la, access: read, memory: ram)
        #expect(t1.guestPhysical == 0x8000_0000 | (la & 0x3FFF_FFFF))
        #expect(t1.pageSize == 0x4000_0000)
        ram.write64(0x2000 + 8, 0x8000_0000 | PRWUS | PS | 1 << 29) // bits 29:13 reserved
        #expect(throws: fault(.present, .reservedBit)) { try state.translate(la, access: read, memory: ram) }
        // Without 1 GiB page support, PS in a PDPTE is itself reserved.
        ram.write64(0x2000 + 8, 0x8000_0000 | PRWUS | PS)
        var no1G = state
        no1G.supports1GiBPages = false
        #expect(throws: fault(.write, .present, .reservedBit)) { try no1G.translate(la, access: write, memory: ram) }
    }

    @Test func psInPML4EIsReserved() {
        let (ram, state) = fourLevel()
        ram.write64(0x1000 + 8, 0x2000 | PRWUS | PS)
        #expect(throws: fault(.user, .present, .reservedBit)) { try state.translate(la, access: userRead, memory: ram) }
    }

    @Test func notPresentAtAnyLevelGivesPZeroWithTheAccessBits() {
        for table: UInt64 in [0x1000, 0x2000, 0x3000, 0x4000] {
            let (ram, state) = fourLevel()
            ram.write64(table + 8, 0x9000 | RW | US | 1 << 40) // P = 0: other bits don't matter
            #expect(throws: fault()) { try state.translate(la, access: read, memory: ram) }
            #expect(throws: fault(.write, .user)) { try state.translate(la, access: userWrite, memory: ram) }
            // NXE = 1 with PAE-style paging: a fetch sets I/D.
            #expect(throws: fault(.instructionFetch)) { try state.translate(la, access: fetch, memory: ram) }
        }
    }

    @Test func bitsAboveMaxPhysAddrAreReserved() throws {
        let (ram, narrow) = fourLevel(bits: 36)
        ram.write64(0x4000 + 8, 0x5555_5000 | PRWUS | 1 << 40)
        #expect(throws: fault(.present, .reservedBit)) { try narrow.translate(la, access: read, memory: ram) }
        var wide = narrow
        wide.physicalAddressBits = 46
        #expect(try wide.translate(la, access: read, memory: ram).guestPhysical == 0x100_5555_5123)
        // Bits 62:52 are ignored (not reserved) in 4-level paging.
        ram.write64(0x4000 + 8, 0x5555_5000 | PRWUS | 1 << 60)
        #expect(try wide.translate(la, access: read, memory: ram).guestPhysical == 0x5555_5123)
    }

    @Test func executeDisableNeedsNXEAndIsReservedWithoutIt() throws {
        let (ram, state) = fourLevel()
        ram.write64(0x3000 + 8, 0x4000 | PRWUS | XD)
        let t = try state.translate(la, access: read, memory: ram)
        #expect(t.isExecuteDisabled)
        #expect(throws: fault(.present, .instructionFetch)) { try state.translate(la, access: fetch, memory: ram) }
        #expect(throws: fault(.present, .user, .instructionFetch)) {
            try state.translate(la, access: userFetch, memory: ram)
        }
        var noNX = state
        noNX.efer = LME | LMA
        #expect(throws: fault(.present, .reservedBit)) { try noNX.translate(la, access: read, memory: ram) }
        // Without NXE (and without SMEP) a fetch fault does not set I/D.
        ram.write64(0x3000 + 8, 0x4000 | PRWUS)
        ram.write64(0x4000 + 8, 0)
        #expect(throws: fault()) { try noNX.translate(la, access: fetch, memory: ram) }
    }

    @Test func writesToReadOnlyPagesDependOnPrivilegeAndCR0WP() throws {
        let (ram, state) = fourLevel()
        ram.write64(0x2000 + 8, 0x3000 | P | US) // R/W = 0 in the PDPTE only
        #expect(throws: fault(.present, .write, .user)) { try state.translate(la, access: userWrite, memory: ram) }
        #expect(throws: fault(.present, .write)) { try state.translate(la, access: write, memory: ram) }
        var noWP = state
        noWP.cr0 = PG | PE
        let t = try noWP.translate(la, access: write, memory: ram)
        #expect(t.guestPhysical == 0x5555_5123 && !t.isWritable)
        #expect(throws: fault(.present, .write, .user)) { try noWP.translate(la, access: userWrite, memory: ram) }
        #expect(try state.translate(la, access: userRead, memory: ram).guestPhysical == 0x5555_5123)
    }

    @Test func supervisorPagesRefuseUserAccess() throws {
        let (ram, state) = fourLevel()
        ram.write64(0x1000 + 8, 0x2000 | P | RW) // U/S = 0 in the PML4E only
        #expect(throws: fault(.present, .user)) { try state.translate(la, access: userRead, memory: ram) }
        #expect(throws: fault(.present, .user, .instructionFetch)) {
            try state.translate(la, access: userFetch, memory: ram)
        }
        let t = try state.translate(la, access: write, memory: ram)
        #expect(!t.isUserAccessible)
        #expect(try state.translate(la, access: fetch, memory: ram).guestPhysical == 0x5555_5123)
    }

    // SDM 5.6.1: SMEP forbids supervisor fetches from user pages; SMAP forbids
    // supervisor data accesses to them unless EFLAGS.AC = 1 and the access is explicit.
    @Test func smepAndSmap() throws {
        let (ram, plain) = fourLevel(efer: LME | LMA)
        #expect(try plain.translate(la, access: fetch, memory: ram).guestPhysical == 0x5555_5123)
        let (_, smep) = fourLevel(cr4: PAE | SMEP, efer: LME | LMA)
        #expect(throws: fault(.present, .instructionFetch)) { try smep.translate(la, access: fetch, memory: ram) }
        #expect(try smep.translate(la, access: userFetch, memory: ram).guestPhysical == 0x5555_5123)
        #expect(try smep.translate(la, access: read, memory: ram).guestPhysical == 0x5555_5123)

        let (_, smap) = fourLevel(cr4: PAE | SMAP)
        #expect(throws: fault(.present)) { try smap.translate(la, access: read, memory: ram) }
        #expect(throws: fault(.present, .write)) { try smap.translate(la, access: write, memory: ram) }
        let explicitAC = GuestAccess(.write, userMode: false, alignmentCheckFlag: true)
        #expect(try smap.translate(la, access: explicitAC, memory: ram).guestPhysical == 0x5555_5123)
        let implicitAC = GuestAccess(.read, userMode: true, implicitSupervisor: true, alignmentCheckFlag: true)
        #expect(throws: fault(.present)) { try smap.translate(la, access: implicitAC, memory: ram) }
        #expect(try smap.translate(la, access: userWrite, memory: ram).guestPhysical == 0x5555_5123)
        #expect(try smap.translate(la, access: fetch, memory: ram).guestPhysical == 0x5555_5123)
        // A supervisor page is untouched by SMAP.
        ram.write64(0x4000 + 8, 0x5555_5000 | P | RW)
        #expect(try smap.translate(la, access: read, memory: ram).guestPhysical == 0x5555_5123)
    }

    @Test func nonCanonicalAddressesAreGeneralProtectionNotPageFaults() throws {
        let (ram, state) = fourLevel()
        #expect(throws: GuestPageWalkError.nonCanonical) {
            try state.translate(0x0000_8000_0000_0000, access: read, memory: ram)
        }
        #expect(throws: GuestPageWalkError.nonCanonical) {
            try state.translate(0xFFFF_7FFF_FFFF_F000, access: read, memory: ram)
        }
        // 0xFFFF_8000_0000_0000 is canonical: it reaches the (empty) PML4 slot 256.
        #expect(throws: fault()) { try state.translate(0xFFFF_8000_0000_0000, access: read, memory: ram) }
    }

    @Test func tablesOutsideGuestRAMAreReportedWithTheirAddress() {
        let (ram, state) = fourLevel()
        ram.write64(0x3000 + 8, 0x7000_0000 | PRWUS)
        #expect(throws: GuestPageWalkError.tableNotInGuestMemory(guestPhysical: 0x7000_0008)) {
            try state.translate(la, access: read, memory: ram)
        }
    }

    @Test func fiveLevelPagingIndexesBits56to48() throws {
        let (ram, base) = fourLevel(cr4: PAE | LA57)
        // LA 0x01_0080_4020_1123: PML5 index 1 (bit 48) -> PML5 at 0x6000 points at the PML4.
        ram.write64(0x6000 + 8, 0x1000 | PRWUS)
        var state = base
        state.cr3 = 0x6000
        let t = try state.translate(0x01_0080_4020_1123, access: read, memory: ram)
        #expect(t.guestPhysical == 0x5555_5123)
        // Canonical for 57 bits: bits 63:56 copy bit 56.
        #expect(throws: GuestPageWalkError.nonCanonical) {
            try state.translate(0x0100_0000_0000_0000, access: read, memory: ram)
        }
        ram.write64(0x6000 + 8, 0x1000 | PRWUS | PS) // PS in a PML5E is reserved
        #expect(throws: fault(.present, .reservedBit)) { try state.translate(0x01_0080_4020_1123, access: read, memory: ram) }
    }
}

@Suite struct PAEPagingTests {
    /// LA 0x8060_3123: PDPTE 2 (bits 31:30), PDE 3 (bits 29:21), PTE 3 (bits 20:12).
    private let paeLA: UInt64 = 0x8060_3123

    private func pae(efer: UInt64 = NXE) -> (FakeGuestRAM, GuestPagingState) {
        let ram = FakeGuestRAM()
        // CR3 holds a 32-byte-aligned PDPT address (bits 31:5).
        ram.write64(0x1020 + 2 * 8, 0x3000 | P)
        ram.write64(0x3000 + 3 * 8, 0x4000 | PRWUS)
        ram.write64(0x4000 + 3 * 8, 0x1_2345_6000 | PRWUS)
        return (ram, GuestPagingState(cr0: PG | PE | WP, cr3: 0x1020, cr4: PAE, efer: efer, physicalAddressBits: 36))
    }

    @Test func translatesThroughThePDPTAtCR3() throws {
        let (ram, state) = pae()
        let t = try state.translate(paeLA, access: userWrite, memory: ram)
        #expect(t.guestPhysical == 0x1_2345_6123)
        #expect(t.pageSize == 0x1000)
        // Only the low 32 bits of the linear address are used.
        #expect(try state.translate(0xFFFF_FFFF_0000_0000 | paeLA, access: read, memory: ram).guestPhysical
                == 0x1_2345_6123)
        ram.write64(0x3000 + 3 * 8, 0x0060_0000 | PRWUS | PS)
        let big = try state.translate(paeLA, access: read, memory: ram)
        #expect(big.guestPhysical == 0x0060_3123 && big.pageSize == 0x20_0000)
    }

    @Test func loadedPDPTEsWinOverMemory() throws {
        let (ram, base) = pae()
        var state = base
        ram.write64(0x5000 + 3 * 8, 0x4000 | PRWUS)
        state.paePDPTEs = (0, 0, 0x5000 | P, 0)
        #expect(try state.translate(paeLA, access: read, memory: ram).guestPhysical == 0x1_2345_6123)
        state.paePDPTEs = (0x3000 | P, 0x3000 | P, 0, 0x3000 | P)
        #expect(throws: fault()) { try state.translate(paeLA, access: read, memory: ram) }
        #expect(try state.translate(0x0060_3123, access: read, memory: ram).guestPhysical == 0x1_2345_6123)
        #expect(try state.translate(0x4060_3123, access: read, memory: ram).guestPhysical == 0x1_2345_6123)
        #expect(try state.translate(0xC060_3123, access: read, memory: ram).guestPhysical == 0x1_2345_6123)
    }

    @Test func paeReservedBits() {
        // PDPTE: bits 2:1 and 8:5 are reserved (no R/W, U/S or XD there).
        let (ram, state) = pae()
        ram.write64(0x1020 + 2 * 8, 0x3000 | P | RW)
        #expect(throws: fault(.present, .reservedBit)) { try state.translate(paeLA, access: read, memory: ram) }
        // Legacy PAE reserves bits 62:52 of PDEs and PTEs (4-level paging ignores them).
        let (ram2, state2) = pae()
        ram2.write64(0x4000 + 3 * 8, 0x1_2345_6000 | PRWUS | 1 << 60)
        #expect(throws: fault(.present, .reservedBit)) { try state2.translate(paeLA, access: read, memory: ram2) }
        // Bits 35:M (M = 36) above the address width.
        let (ram3, state3) = pae()
        ram3.write64(0x3000 + 3 * 8, 0x4000 | PRWUS | 1 << 36)
        #expect(throws: fault(.present, .reservedBit)) { try state3.translate(paeLA, access: read, memory: ram3) }
        // The PDPTE not present: P = 0 fault.
        let (ram4, state4) = pae(efer: 0)
        ram4.write64(0x1020 + 2 * 8, 0)
        #expect(throws: fault(.user)) { try state4.translate(paeLA, access: userRead, memory: ram4) }
        // With NXE = 0 bit 63 is reserved; a fetch fault has no I/D.
        let (ram5, state5) = pae(efer: 0)
        ram5.write64(0x4000 + 3 * 8, 0x1_2345_6000 | PRWUS | XD)
        #expect(throws: fault(.present, .reservedBit)) { try state5.translate(paeLA, access: fetch, memory: ram5) }
        let (_, outside) = pae()
        var far = outside
        far.cr3 = 0xFFFF_FFE0
        #expect(throws: GuestPageWalkError.tableNotInGuestMemory(guestPhysical: 0xFFFF_FFF0)) {
            try far.translate(paeLA, access: read, memory: FakeGuestRAM(size: 0x1000))
        }
    }
}

@Suite struct ThirtyTwoBitPagingTests {
    /// LA 0x0040_3123: PDE 1 (bits 31:22), PTE 3 (bits 21:12). PD at 0x1000, PT at 0x2000.
    private func bits32(cr4: UInt64 = 0, bits: Int = 36) -> (FakeGuestRAM, GuestPagingState) {
        let ram = FakeGuestRAM()
        ram.write32(0x1000 + 1 * 4, 0x2000 | UInt32(PRWUS) | UInt32(PS))
        ram.write32(0x2000 + 3 * 4, 0x0ABC_D000 | UInt32(PRWUS))
        return (ram, GuestPagingState(cr0: PG | PE | WP, cr3: 0x1000, cr4: cr4, efer: NXE, physicalAddressBits: bits))
    }

    @Test func fourKiBPagesWithPSIgnoredWithoutCR4PSE() throws {
        let (ram, state) = bits32()
        let t = try state.translate(0x0040_3123, access: userWrite, memory: ram)
        #expect(t.guestPhysical == 0x0ABC_D123 && t.pageSize == 0x1000)
        #expect(t.leafEntry == 0x0ABC_D000 | PRWUS)
        // No XD with 32-bit paging, and I/D is clear even with EFER.NXE = 1.
        ram.write32(0x2000 + 3 * 4, 0)
        #expect(throws: fault()) { try state.translate(0x0040_3123, access: fetch, memory: ram) }
        #expect(throws: GuestPageWalkError.tableNotInGuestMemory(guestPhysical: 0x10_0000 + 2 * 4)) {
            ram.write32(0x1000 + 1 * 4, 0x10_0000 | UInt32(PRWUS))
            return try state.translate(0x0040_2000, access: read, memory: ram)
        }
    }

    @Test func fourMiBPagesWithPSE36() throws {
        let (ram, state) = bits32(cr4: PSE)
        // PDE bits 31:22 = address bits 31:22; bits 20:13 = address bits 39:32.
        ram.write32(0x1000 + 1 * 4, 0x0C00_0000 | 0x3 << 13 | UInt32(PRWUS | PS))
        let t = try state.translate(0x0040_3123, access: read, memory: ram)
        #expect(t.guestPhysical == 0x3_0C00_0000 | 0x3123)
        #expect(t.pageSize == 0x40_0000)
        // MAXPHYADDR 36: bits 21:17 are reserved; bit 17 would be address bit 36.
        ram.write32(0x1000 + 1 * 4, 0x0C00_0000 | 1 << 17 | UInt32(PRWUS | PS))
        #expect(throws: fault(.present, .reservedBit)) { try state.translate(0x0040_3123, access: read, memory: ram) }
        let (_, wide) = bits32(cr4: PSE, bits: 40)
        #expect(try wide.translate(0x0040_3123, access: read, memory: ram).guestPhysical == 0x10_0C00_3123)
        // Bit 21 stays reserved at any width (M is capped at 40).
        ram.write32(0x1000 + 1 * 4, 0x0C00_0000 | 1 << 21 | UInt32(PRWUS | PS))
        let (_, widest) = bits32(cr4: PSE, bits: 52)
        #expect(throws: fault(.present, .reservedBit)) { try widest.translate(0x0040_3123, access: read, memory: ram) }
    }

    @Test func rightsCombinePDEAndPTE() throws {
        let (ram, state) = bits32(cr4: SMEP)
        ram.write32(0x1000 + 1 * 4, 0x2000 | UInt32(P | US))        // read-only PDE
        #expect(throws: fault(.present, .write, .user)) {
            try state.translate(0x0040_3123, access: userWrite, memory: ram)
        }
        // SMEP sets I/D even under 32-bit paging.
        #expect(throws: fault(.present, .instructionFetch)) {
            try state.translate(0x0040_3123, access: fetch, memory: ram)
        }
        let t = try state.translate(0x0040_3123, access: userFetch, memory: ram)
        #expect(!t.isWritable && t.isUserAccessible && !t.isExecuteDisabled)
        ram.write32(0x1000 + 1 * 4, 0)
        #expect(throws: fault(.user)) { try state.translate(0x0040_3123, access: userRead, memory: ram) }
        #expect(throws: GuestPageWalkError.tableNotInGuestMemory(guestPhysical: 0x20_0000)) {
            var far = state
            far.cr3 = 0x20_0000
            return try far.translate(0, access: read, memory: ram)
        }
    }

    @Test func errorCodeBitsMatchFigure4_12() {
        #expect(PageFaultErrorCode.present.rawValue == 1 && PageFaultErrorCode.write.rawValue == 2)
        #expect(PageFaultErrorCode.user.rawValue == 4 && PageFaultErrorCode.reservedBit.rawValue == 8)
        #expect(PageFaultErrorCode.instructionFetch.rawValue == 16)
        #expect((PageFaultErrorCode.present | .user).contains(.user))
        #expect(!(PageFaultErrorCode.present | .user).contains(.write))
    }
}
