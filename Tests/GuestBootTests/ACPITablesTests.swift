import Testing
import GuestBoot

/// A reader written from the ACPI specification's offsets, independent of the
/// builder's constants: it follows RSDP -> XSDT -> tables by guest-physical
/// address the way an OS does, and checks every checksum and signature.
struct ACPIReader {
    enum Failure: Error, Equatable {
        case outside(UInt64)
        case signature(String)
        case checksum(String)
        case length(String)
        case revision(String)
    }

    let bytes: [UInt8]
    let base: UInt64

    func offset(_ address: UInt64, _ count: Int) throws -> Int {
        guard address >= base, address - base + UInt64(count) <= UInt64(bytes.count) else {
            throw Failure.outside(address)
        }
        return Int(address - base)
    }

    func le(_ at: Int, _ count: Int) -> UInt64 {
        (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
    }

    func text(_ at: Int, _ count: Int) -> String { String(decoding: bytes[at..<(at + count)], as: UTF8.self) }

    func sumsToZero(_ at: Int, _ count: Int) -> Bool {
        bytes[at..<(at + count)].reduce(UInt8(0), &+) == 0
    }

    /// RSDP at `address`: both checksums, revision 2, length 36; returns the XSDT address.
    func rsdp(at address: UInt64) throws -> UInt64 {
        let at = try offset(address, 36)
        guard text(at, 8) == "RSD PTR " else { throw Failure.signature("RSDP") }
        guard sumsToZero(at, 20) else { throw Failure.checksum("RSDP") }
        guard bytes[at + 15] == 2 else { throw Failure.revision("RSDP") }
        guard le(at + 20, 4) == 36 else { throw Failure.length("RSDP") }
        guard sumsToZero(at, 36) else { throw Failure.checksum("RSDP extended") }
        return le(at + 24, 8)
    }

    /// A description table at `address` with `signature`; returns its offset and length.
    func table(at address: UInt64, _ signature: String) throws -> (at: Int, length: Int) {
        let at = try offset(address, 36)
        guard text(at, 4) == signature else { throw Failure.signature(signature) }
        let length = Int(le(at + 4, 4))
        guard length >= 36 else { throw Failure.length(signature) }
        _ = try offset(address, length)
        guard sumsToZero(at, length) else { throw Failure.checksum(signature) }
        return (at, length)
    }

    /// The XSDT's entries.
    func xsdtEntries(_ address: UInt64) throws -> [UInt64] {
        let (at, length) = try table(at: address, "XSDT")
        guard (length - 36) % 8 == 0 else { throw Failure.length("XSDT") }
        return stride(from: at + 36, to: at + length, by: 8).map { le($0, 8) }
    }

    /// Walk RSDP -> XSDT -> every table, and the FADT's DSDT; signature -> address.
    func walk(rsdp address: UInt64) throws -> [String: UInt64] {
        var found: [String: UInt64] = [:]
        let xsdt = try rsdp(at: address)
        found["XSDT"] = xsdt
        for entry in try xsdtEntries(xsdt) {
            let at = try offset(entry, 4)
            let signature = text(at, 4)
            _ = try table(at: entry, signature)
            found[signature] = entry
        }
        if let facp = found["FACP"] {
            let (at, _) = try table(at: facp, "FACP")
            let dsdt = le(at + 140, 8)
            _ = try table(at: dsdt, "DSDT")
            found["DSDT"] = dsdt
        }
        return found
    }

    struct MADTEntry: Equatable {
        var type: UInt8
        var body: [UInt8]   // after type and length
    }

    func madtEntries(_ address: UInt64) throws -> [MADTEntry] {
        let (at, length) = try table(at: address, "APIC")
        var entries: [MADTEntry] = []
        var p = at + 44
        while p < at + length {
            let entryLength = Int(bytes[p + 1])
            guard entryLength >= 2, p + entryLength <= at + length else { throw Failure.length("MADT entry") }
            entries.append(MADTEntry(type: bytes[p], body: Array(bytes[(p + 2)..<(p + entryLength)])))
            p += entryLength
        }
        return entries
    }
}

@Suite struct ACPITablesTests {
    static let base: UInt64 = 0x000E_0000

    /// Build into a buffer of `capacity` bytes (0xCC filled) at `base`.
    static func build(base: UInt64 = base, capacity: Int = 4096, platform: ACPIPlatform = ACPIPlatform())
        throws -> (bytes: [UInt8], placement: ACPITablesPlacement) {
        var bytes = [UInt8](repeating: 0xCC, count: capacity)
        let placement = try write(&bytes, base: base, platform: platform)
        return (bytes, placement)
    }

    static func write(_ bytes: inout [UInt8], base: UInt64, platform: ACPIPlatform = ACPIPlatform())
        throws -> ACPITablesPlacement {
        try bytes.withUnsafeMutableBytes { buffer in
            try ACPITables.write(into: buffer, at: base, platform: platform)
        }
    }

    @Test func walksFromTheRSDPToEveryTable() throws {
        let (bytes, placement) = try Self.build()
        #expect(placement.rsdpAddress == Self.base)
        let found = try ACPIReader(bytes: bytes, base: Self.base).walk(rsdp: placement.rsdpAddress)
        #expect(Set(found.keys) == ["XSDT", "FACP", "APIC", "DSDT"])
    }

    @Test(arguments: [UInt64(0x000E_0000), 0x000F_5A30, 0x0009_FC00, 0x1_0000_0000])
    func addressesAreRelativeToTheBase(base: UInt64) throws {
        let (bytes, placement) = try Self.build(base: base)
        #expect(placement.rsdpAddress == base)
        let found = try ACPIReader(bytes: bytes, base: base).walk(rsdp: placement.rsdpAddress)
        for (signature, address) in found {
            #expect(address >= base && address < base + UInt64(placement.size), "\(signature)")
            #expect(address % 8 == 0, "\(signature) aligned")
        }
    }

    @Test func sizeCoversEveryTableAndNothingBeyond() throws {
        let (bytes, placement) = try Self.build()
        #expect(placement.size == ACPITables.size())
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let found = try reader.walk(rsdp: placement.rsdpAddress)
        let end = try found.values.map { address in
            let at = Int(address - Self.base)
            return at + Int(reader.le(at + 4, 4))
        }.max()
        #expect(end == placement.size, "the DSDT is last and ends the tables")
        #expect(bytes[placement.size...].allSatisfy { $0 == 0xCC }, "nothing written past the size")
    }

    @Test func rsdpFields() throws {
        let (bytes, _) = try Self.build()
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        #expect(reader.text(9, 6) == "SWIFTV")
        #expect(bytes[15] == 2)
        #expect(reader.le(16, 4) == 0, "no RSDT")
        #expect(reader.le(20, 4) == 36)
        #expect(bytes[33..<36].allSatisfy { $0 == 0 })
    }

    @Test(arguments: ["XSDT", "FACP", "APIC", "DSDT"])
    func headersCarryTheOEMAndCreator(signature: String) throws {
        let (bytes, placement) = try Self.build()
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let address = try #require(try reader.walk(rsdp: placement.rsdpAddress)[signature])
        let at = Int(address - Self.base)
        #expect(reader.text(at + 10, 6) == "SWIFTV")
        #expect(reader.text(at + 16, 8) == "ISOLATED")
        #expect(reader.le(at + 24, 4) == 1)
        #expect(reader.text(at + 28, 4) == "SWFT")
        #expect(reader.le(at + 32, 4) == 1)
    }

    @Test func tableLengthsAndRevisions() throws {
        let (bytes, placement) = try Self.build()
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let found = try reader.walk(rsdp: placement.rsdpAddress)
        func header(_ s: String) -> (length: UInt64, revision: UInt8) {
            let at = Int(found[s]! - Self.base)
            return (reader.le(at + 4, 4), bytes[at + 8])
        }
        #expect(header("XSDT") == (36 + 2 * 8, 1))
        #expect(header("FACP") == (276, 6))
        // 44 bytes of MADT header, then 8 + 12 + 10 + 10 + 6 bytes of entries.
        #expect(header("APIC") == (44 + 46, 5))
        #expect(header("DSDT") == (36, 2))
    }

    // MARK: Checksums fail when a byte changes

    @Test(arguments: [0, 8, 19, 20, 24, 35])
    func corruptingTheRSDPFailsItsChecksum(byte: Int) throws {
        var (bytes, placement) = try Self.build()
        bytes[byte] &+= 1
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        #expect(throws: ACPIReader.Failure.self) { try reader.rsdp(at: placement.rsdpAddress) }
        // The XSDT address and the reserved bytes are covered only by the extended checksum.
        if byte == 24 || byte == 35 {
            #expect(throws: ACPIReader.Failure.checksum("RSDP extended")) { try reader.rsdp(at: placement.rsdpAddress) }
        }
    }

    @Test(arguments: ["XSDT", "FACP", "APIC", "DSDT"])
    func corruptingAnyTableByteFailsItsChecksum(signature: String) throws {
        let (clean, placement) = try Self.build()
        let address = try #require(try ACPIReader(bytes: clean, base: Self.base).walk(rsdp: placement.rsdpAddress)[signature])
        let at = Int(address - Self.base)
        let length = Int(ACPIReader(bytes: clean, base: Self.base).le(at + 4, 4))
        // The last byte and one past the header (checksum reaches the whole length).
        for byte in [at + 10, at + length - 1] {
            var bytes = clean
            bytes[byte] ^= 0x40
            #expect(throws: ACPIReader.Failure.checksum(signature)) {
                try ACPIReader(bytes: bytes, base: Self.base).table(at: address, signature)
            }
        }
    }

    @Test func com1IsDescribedInTheDSDTWhenAskedFor() throws {
        var platform = ACPIPlatform()
        platform.com1 = true
        let (bytes, placement) = try Self.build(platform: platform)
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let found = try reader.walk(rsdp: placement.rsdpAddress)     // checksums hold
        let at = Int(try #require(found["DSDT"]) - Self.base)
        #expect(reader.le(at + 4, 4) == 36 + 52)
        let aml = Array(bytes[(at + 36)..<(at + 88)])
        // Scope (\_SB_) holding Device (COM1), whose PkgLengths cover exactly the rest.
        #expect(aml[0] == 0x10 && Int(aml[1]) == aml.count - 1 && aml[2...6] == [0x5C, 0x5F, 0x53, 0x42, 0x5F])
        #expect(aml[7...8] == [0x5B, 0x82] && Int(aml[9]) == aml.count - 9 && aml[10...13] == [0x43, 0x4F, 0x4D, 0x31])
        // _HID PNP0501 (EISA ID 0x0105D041), I/O 0x3F8 x 8, IRQ 4, end tag.
        #expect(aml[14...23] == [0x08, 0x5F, 0x48, 0x49, 0x44, 0x0C, 0x41, 0xD0, 0x05, 0x01])
        #expect(aml[39...46] == [0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08])
        #expect(aml[47...49] == [0x22, 0x10, 0x00] && aml[50] == 0x79)
        #expect(Int(aml[36]) == 1 + 2 + 13 && aml[38] == 13)          // Buffer PkgLength and size
        // Without it, the DSDT is a bare header.
        let (plain, plainPlacement) = try Self.build()
        let bare = ACPIReader(bytes: plain, base: Self.base)
        #expect(bare.le(Int(try #require(try bare.walk(rsdp: plainPlacement.rsdpAddress)["DSDT"]) - Self.base) + 4, 4) == 36)
    }

    // MARK: FADT

    @Test func fadtIsHardwareReducedWithTheDSDT() throws {
        let (bytes, placement) = try Self.build()
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let found = try reader.walk(rsdp: placement.rsdpAddress)
        let at = Int(try #require(found["FACP"]) - Self.base)
        let dsdt = try #require(found["DSDT"])
        #expect(reader.le(at + 140, 8) == dsdt, "X_DSDT")
        #expect(reader.le(at + 40, 4) == dsdt, "DSDT (32-bit) agrees")
        #expect(reader.le(at + 36, 4) == 0 && reader.le(at + 132, 8) == 0, "no FACS")
        let flags = reader.le(at + 112, 4)
        #expect(flags & (1 << 20) != 0, "HW_REDUCED_ACPI")
        #expect(flags == 0x0010_0031)
        #expect(reader.le(at + 46, 2) == 9, "SCI_INT")
        #expect(reader.le(at + 109, 2) == 0b1100, "VGA not present, MSI not supported, no 8042")
        #expect(bytes[at + 131] == 4, "FADT minor version: ACPI 6.4")
        // No PM1, PM timer or GPE blocks, 32-bit or extended.
        #expect(bytes[(at + 48)..<(at + 109)].allSatisfy { $0 == 0 })
        #expect(bytes[(at + 148)..<(at + 276)].allSatisfy { $0 == 0 })
    }

    @Test func dsdtAboveFourGiBOnlyInXDSDT() throws {
        let base: UInt64 = 0x1_0000_0000
        let (bytes, placement) = try Self.build(base: base)
        let reader = ACPIReader(bytes: bytes, base: base)
        let found = try reader.walk(rsdp: placement.rsdpAddress)
        let at = Int(try #require(found["FACP"]) - base)
        #expect(reader.le(at + 40, 4) == 0)
        #expect(reader.le(at + 140, 8) == found["DSDT"])
    }

    @Test func dsdtHoldsNoAML() throws {
        let (bytes, placement) = try Self.build()
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let dsdt = try #require(try reader.walk(rsdp: placement.rsdpAddress)["DSDT"])
        #expect(try reader.table(at: dsdt, "DSDT").length == 36)
    }

    // MARK: MADT

    @Test func madtDescribesTheVirtualPlatform() throws {
        var platform = ACPIPlatform()
        platform.localAPICID = 3
        platform.processorUID = 1
        platform.ioAPICID = 2
        let (bytes, placement) = try Self.build(platform: platform)
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let madt = try #require(try reader.walk(rsdp: placement.rsdpAddress)["APIC"])
        let at = Int(madt - Self.base)
        #expect(reader.le(at + 36, 4) == 0xFEE0_0000, "local APIC address")
        #expect(reader.le(at + 40, 4) == 1, "PCAT_COMPAT")
        let entries = try reader.madtEntries(madt)
        #expect(entries == [
            // Processor Local APIC: UID 1, APIC ID 3, enabled.
            .init(type: 0, body: [1, 3, 1, 0, 0, 0]),
            // I/O APIC: ID 2, reserved, 0xFEC00000, GSI base 0.
            .init(type: 1, body: [2, 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0]),
            // ISA IRQ 0 -> GSI 2, edge, active high.
            .init(type: 2, body: [0, 0, 2, 0, 0, 0, 0x05, 0x00]),
            // ISA IRQ 9 (SCI) -> GSI 9, level, active low.
            .init(type: 2, body: [0, 9, 9, 0, 0, 0, 0x0F, 0x00]),
            // Local APIC NMI: all processors, edge, active high, LINT1.
            .init(type: 4, body: [0xFF, 0x05, 0x00, 1]),
        ])
    }

    @Test func madtFollowsAnotherSCI() throws {
        var platform = ACPIPlatform()
        platform.sciInterrupt = 10
        let (bytes, placement) = try Self.build(platform: platform)
        let reader = ACPIReader(bytes: bytes, base: Self.base)
        let found = try reader.walk(rsdp: placement.rsdpAddress)
        let overrides = try reader.madtEntries(found["APIC"]!).filter { $0.type == 2 }
        #expect(overrides.last == .init(type: 2, body: [0, 10, 10, 0, 0, 0, 0x0F, 0x00]))
        #expect(reader.le(Int(found["FACP"]! - Self.base) + 46, 2) == 10)
    }

    // MARK: Errors

    @Test func bufferTooSmallIsATypedErrorAndWritesNothing() throws {
        let needed = ACPITables.size()
        var bytes = [UInt8](repeating: 0xCC, count: needed - 1)
        #expect(throws: ACPITableError.bufferTooSmall(needed: needed, available: needed - 1)) {
            try Self.write(&bytes, base: Self.base)
        }
        #expect(bytes.allSatisfy { $0 == 0xCC })
        // Exactly the size is enough.
        #expect(try Self.build(capacity: needed).placement.size == needed)
    }

    @Test(arguments: [UInt64(0x000E_0001), 0x000E_0008])
    func misalignedBaseIsRejected(base: UInt64) {
        #expect(throws: ACPITableError.misalignedBase(base)) { try Self.build(base: base) }
    }

    @Test func tablesMustFitTheAddressSpace() {
        let base = UInt64.max & ~15
        #expect(throws: ACPITableError.addressOutOfRange(base)) { try Self.build(base: base) }
    }
}
