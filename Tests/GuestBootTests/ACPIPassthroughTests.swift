import Testing
import GuestBoot
import X86Arch

// MARK: Fakes: physical memory holding synthetic firmware tables

/// Physical memory [base, base + size): firmware tables live in the low half,
/// the builder's output in the high half, so a guest-side walk can follow
/// pointers from the new RSDP into both.
final class FakePhysicalMemory: PhysicalMemoryReader {
    let base: UInt64
    let storage: UnsafeMutableRawBufferPointer
    /// Reads touching [unreadable.lowerBound, unreadable.upperBound) fail.
    var unreadable: Range<UInt64>? = nil
    /// Reads return one byte less than asked (a broken reader).
    var shortReads = false
    /// Every read, for checking the builder never asks beyond the caps.
    var largestRead = 0

    static let outputOffset = 0x40000

    init(base: UInt64 = 0x7FF0_0000, size: Int = 0x80000) {
        self.base = base
        storage = .allocate(byteCount: size, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0xEE)
    }

    deinit { storage.deallocate() }

    func bytes(at physical: UInt64, count: Int) -> UnsafeRawBufferPointer? {
        largestRead = max(largestRead, count)
        guard physical >= base, count >= 0, physical - base <= UInt64(storage.count),
              UInt64(count) <= UInt64(storage.count) - (physical - base) else { return nil }
        if let unreadable, physical < unreadable.upperBound, physical + UInt64(count) > unreadable.lowerBound {
            return nil
        }
        let at = Int(physical - base)
        return UnsafeRawBufferPointer(rebasing: storage[at..<(at + count - (shortReads ? 1 : 0))])
    }

    func write(_ bytes: [UInt8], at address: UInt64) {
        for (i, byte) in bytes.enumerated() { storage[Int(address - base) + i] = byte }
    }

    func read(_ address: UInt64, _ count: Int) -> [UInt8] {
        let at = Int(address - base)
        return Array(storage[at..<(at + count)])
    }

    func le(_ address: UInt64, _ count: Int) -> UInt64 {
        read(address, count).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// The output window the builder writes into, and its physical address.
    var output: (buffer: UnsafeMutableRawBufferPointer, address: UInt64) {
        (UnsafeMutableRawBufferPointer(rebasing: storage[Self.outputOffset...]), base + UInt64(Self.outputOffset))
    }
}

func le(_ value: UInt64, _ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// Firmware tables written from the ACPI specification's offsets.
enum Firmware {
    /// 5.2.6 "System Description Table Header" + body, checksummed.
    static func table(_ signature: String, revision: UInt8 = 1, body: [UInt8], oemTableID: String = "FWTABLE1") -> [UInt8] {
        var t = Array(signature.utf8) + le(UInt64(36 + body.count), 4) + [revision, 0]
        t += Array("FWOEM ".utf8) + Array(oemTableID.utf8) + le(0x1234, 4) + Array("FWCR".utf8) + le(0x5678, 4)
        t += body
        t[9] = 0 &- t.reduce(0, &+)
        return t
    }

    // 5.2.12 interrupt controller structures.
    static func lapic(uid: UInt8, id: UInt8, flags: UInt32 = 1) -> [UInt8] { [0, 8, uid, id] + le(UInt64(flags), 4) }
    static func x2apic(id: UInt32, uid: UInt32, flags: UInt32 = 1) -> [UInt8] {
        [9, 16, 0, 0] + le(UInt64(id), 4) + le(UInt64(flags), 4) + le(UInt64(uid), 4)
    }
    static func ioapic(id: UInt8 = 2) -> [UInt8] { [1, 12, id, 0] + le(0xFEC0_0000, 4) + le(0, 4) }
    static func override(irq: UInt8, gsi: UInt32) -> [UInt8] { [2, 10, 0, irq] + le(UInt64(gsi), 4) + le(0, 2) }
    static func nmi() -> [UInt8] { [4, 6, 0xFF, 5, 0, 1] }
    static func x2nmi() -> [UInt8] { [0xA, 12, 5, 0] + le(0xFFFF_FFFF, 4) + [1, 0, 0, 0] }

    static func madt(_ entries: [[UInt8]]) -> [UInt8] {
        table("APIC", revision: 5, body: le(0xFEE0_0000, 4) + le(1, 4) + entries.flatMap { $0 })
    }

    static func fourCPUs() -> [[UInt8]] {
        [lapic(uid: 0, id: 0), lapic(uid: 1, id: 2), ioapic(), lapic(uid: 2, id: 4), override(irq: 0, gsi: 2),
         lapic(uid: 3, id: 6), nmi()]
    }
}

/// A machine's firmware tables placed in fake memory.
struct Machine {
    let memory: FakePhysicalMemory
    var root: ACPIRoot
    /// Signature -> address of every table the firmware lists (besides the roots).
    var tables: [(String, UInt64)] = []
    var xsdt: UInt64 = 0
    var rsdt: UInt64 = 0
    var next: UInt64

    /// FACP, APIC (unless `madt` is nil), SSDT, HPET; an XSDT and an RSDT listing them.
    init(madt: [UInt8]?, base: UInt64 = 0x7FF0_0000, xsdt: Bool = true, rsdt: Bool = true) {
        memory = FakePhysicalMemory(base: base)
        next = base + 0x1000
        root = ACPIRoot(revision: xsdt ? 2 : 0, oemID: Firmware.oemIDValue, rsdtAddress: 0, xsdtAddress: nil)
        add("FACP", Firmware.table("FACP", revision: 6, body: [UInt8](repeating: 0x11, count: 240)))
        if let madt { add("APIC", madt) }
        add("SSDT", Firmware.table("SSDT", revision: 2, body: [UInt8](repeating: 0x5B, count: 100)))
        add("HPET", Firmware.table("HPET", body: [UInt8](repeating: 0x22, count: 20)))
        writeRoots(xsdt: xsdt, rsdt: rsdt)
    }

    mutating func place(_ bytes: [UInt8]) -> UInt64 {
        let address = next
        memory.write(bytes, at: address)
        next = (next + UInt64(bytes.count) + 15) & ~15
        return address
    }

    mutating func add(_ signature: String, _ bytes: [UInt8]) {
        tables.append((signature, place(bytes)))
    }

    /// (Re)write the root tables from `tables`.
    mutating func writeRoots(xsdt: Bool = true, rsdt: Bool = true, entries: [UInt64]? = nil) {
        let list = entries ?? tables.map { $0.1 }
        if xsdt {
            self.xsdt = place(Firmware.table("XSDT", body: list.flatMap { le($0, 8) }, oemTableID: "FWROOT64"))
            root.revision = 2
            root.xsdtAddress = self.xsdt
        }
        if rsdt {
            self.rsdt = place(Firmware.table("RSDT", body: list.flatMap { le($0, 4) }, oemTableID: "FWROOT32"))
            root.rsdtAddress = UInt32(self.rsdt)
        }
    }

    func address(_ signature: String) -> UInt64 { tables.first { $0.0 == signature }!.1 }

    func build(bootAPICID: UInt32 = 0, alsoKeep: APICIDSet = APICIDSet(), outCount: Int? = nil, outAddress: UInt64? = nil)
        throws(ACPIPassthroughError) -> ACPIPassthroughResult {
        let (buffer, address) = memory.output
        let out = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(outCount ?? buffer.count)])
        return try ACPIPassthrough.build(root: root, memory: memory, bootAPICID: bootAPICID, alsoKeep: alsoKeep,
                                         into: out, at: outAddress ?? address)
    }

    func view() -> GuestView { GuestView(memory: memory) }
}

extension Firmware {
    static let oemIDValue: UInt64 = value(Array("FWOEM ".utf8))
    static func value(_ bytes: [UInt8]) -> UInt64 {
        bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}

// MARK: An independent guest-side reader

/// What an OS does with the new RSDP: follow it to the XSDT/RSDT and the
/// tables, checking signatures, lengths and checksums on the way.
struct GuestView {
    struct Failure: Error, CustomStringConvertible { let description: String }

    let memory: FakePhysicalMemory

    func sumsToZero(_ address: UInt64, _ count: Int) -> Bool { memory.read(address, count).reduce(0, &+) == 0 }
    func text(_ address: UInt64, _ count: Int) -> String { String(decoding: memory.read(address, count), as: UTF8.self) }

    /// RSDP: signature, revision 2, length 36, both checksums.
    func rsdp(_ address: UInt64) throws -> (rsdt: UInt64, xsdt: UInt64, oemID: String) {
        guard address % 16 == 0 else { throw Failure(description: "RSDP misaligned") }
        guard text(address, 8) == "RSD PTR " else { throw Failure(description: "RSDP signature") }
        guard sumsToZero(address, 20) else { throw Failure(description: "RSDP checksum") }
        guard memory.le(address + 15, 1) == 2, memory.le(address + 20, 4) == 36 else {
            throw Failure(description: "RSDP revision/length")
        }
        guard sumsToZero(address, 36) else { throw Failure(description: "RSDP extended checksum") }
        return (memory.le(address + 16, 4), memory.le(address + 24, 8), text(address + 9, 6))
    }

    /// A table's length after checking its signature and checksum.
    func table(_ address: UInt64, _ signature: String) throws -> Int {
        guard text(address, 4) == signature else { throw Failure(description: "\(signature) signature at \(address)") }
        let length = Int(memory.le(address + 4, 4))
        guard length >= 36 else { throw Failure(description: "\(signature) length") }
        guard sumsToZero(address, length) else { throw Failure(description: "\(signature) checksum") }
        return length
    }

    func rootEntries(_ address: UInt64, _ signature: String, size: Int) throws -> [UInt64] {
        let length = try table(address, signature)
        guard (length - 36) % size == 0 else { throw Failure(description: "\(signature) partial entry") }
        return stride(from: 36, to: length, by: size).map { memory.le(address + UInt64($0), size) }
    }

    /// The MADT's interrupt controller structures, whole.
    func madtEntries(_ address: UInt64) throws -> [[UInt8]] {
        let length = try table(address, "APIC")
        var entries: [[UInt8]] = []
        var p = 44
        while p < length {
            let entryLength = Int(memory.le(address + UInt64(p) + 1, 1))
            guard entryLength >= 2, p + entryLength <= length else { throw Failure(description: "MADT entry") }
            entries.append(memory.read(address + UInt64(p), entryLength))
            p += entryLength
        }
        return entries
    }

    /// Walk RSDP -> XSDT (and RSDT, which must list the same) -> every table.
    func walk(_ rsdpAddress: UInt64) throws -> (xsdt: UInt64, entries: [UInt64], madt: UInt64?) {
        let (rsdt, xsdt, _) = try rsdp(rsdpAddress)
        let entries = try rootEntries(xsdt, "XSDT", size: 8)
        if rsdt != 0 {
            guard try rootEntries(rsdt, "RSDT", size: 4) == entries else { throw Failure(description: "RSDT differs") }
        }
        var madt: UInt64? = nil
        for entry in entries {
            let signature = text(entry, 4)
            _ = try table(entry, signature)
            if signature == "APIC" {
                guard madt == nil else { throw Failure(description: "two MADTs") }
                madt = entry
            }
        }
        return (xsdt, entries, madt)
    }
}

func processorIDs(_ entries: [[UInt8]]) -> [UInt32] {
    entries.compactMap { e in
        switch e[0] {
        case 0: UInt32(e[3])
        case 9: UInt32(Firmware.value(Array(e[4..<8])))
        default: nil
        }
    }
}

func expectError(_ kind: ACPIPassthroughError.Kind, _ detail: UInt64? = nil,
                 sourceLocation: SourceLocation = #_sourceLocation,
                 _ body: () throws(ACPIPassthroughError) -> ACPIPassthroughResult) {
    do {
        let result = try body()
        Issue.record("expected \(kind), built \(result)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.kind == kind, sourceLocation: sourceLocation)
        if let detail { #expect(error.detail == detail, sourceLocation: sourceLocation) }
    }
}

// MARK: Tests

@Suite struct ACPIPassthroughTests {
    @Test func oneCPUKeepsTheMADTsStructures() throws {
        let entries = [Firmware.lapic(uid: 0, id: 0), Firmware.ioapic(), Firmware.override(irq: 0, gsi: 2), Firmware.nmi()]
        let machine = Machine(madt: Firmware.madt(entries))
        let result = try machine.build()
        #expect(result.madtFound && result.processorsKept == 1 && result.processorsHidden == 0)
        #expect(result.tableCount == 4 && result.warnings.isEmpty && result.rsdtIncluded)
        let walk = try machine.view().walk(result.rsdpAddress)
        let madt = try #require(walk.madt)
        #expect(try machine.view().madtEntries(madt) == entries)
        // The fixed part (Local Interrupt Controller Address, Flags) and the header's fields are the firmware's.
        let original = machine.address("APIC")
        #expect(machine.memory.read(madt + 8, 1) == [5], "MADT revision")
        #expect(machine.memory.read(madt + 10, 34) == machine.memory.read(original + 10, 34))
    }

    @Test(arguments: [UInt32(0), 2])
    func fourCPUsKeepOnlyTheBootCPU(boot: UInt32) throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        let result = try machine.build(bootAPICID: boot)
        #expect(result.processorsKept == 1 && result.processorsHidden == 3)
        let view = machine.view()
        let copy = try view.madtEntries(try #require(try view.walk(result.rsdpAddress).madt))
        #expect(processorIDs(copy) == [boot])
        // Everything but the other processors, in the firmware's order.
        let expected = Firmware.fourCPUs().filter { $0[0] != 0 || UInt32($0[3]) == boot }
        #expect(copy == expected)
        // The firmware's MADT is untouched.
        #expect(try view.madtEntries(machine.address("APIC")) == Firmware.fourCPUs())
    }

    @Test func theCPUsWithAVCPUAreKeptAndTheOthersHidden() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        var virtualized = APICIDSet()
        virtualized.insert(2)
        virtualized.insert(6)
        let result = try machine.build(bootAPICID: 0, alsoKeep: virtualized)
        #expect(result.processorsKept == 3 && result.processorsHidden == 1)
        let view = machine.view()
        let copy = try view.madtEntries(try #require(try view.walk(result.rsdpAddress).madt))
        #expect(processorIDs(copy) == [0, 2, 6])
    }

    @Test func anAPICIDSetHoldsAtMostItsCapacity() {
        var set = APICIDSet()
        for id in 0..<UInt32(APICIDSet.capacity) {
            let added = set.insert(id * 2)
            #expect(added)
        }
        let again = set.insert(4)   // already there
        let full = set.insert(1)
        #expect(again && !full)
        #expect(set.count == APICIDSet.capacity && set.contains(126) && !set.contains(1))
    }

    @Test func x2APICStructures() throws {
        let entries = [Firmware.x2apic(id: 0x100, uid: 0), Firmware.x2apic(id: 0x102, uid: 1), Firmware.ioapic(),
                       Firmware.x2apic(id: 0x104, uid: 2), Firmware.x2nmi(), Firmware.nmi()]
        let machine = Machine(madt: Firmware.madt(entries))
        let result = try machine.build(bootAPICID: 0x102)
        #expect(result.processorsKept == 1 && result.processorsHidden == 2)
        let view = machine.view()
        let copy = try view.madtEntries(try #require(try view.walk(result.rsdpAddress).madt))
        #expect(copy == [entries[1], entries[2], entries[4], entries[5]], "NMI structures are kept")
    }

    @Test func bootCPUListedAsBothLocalAPICAndX2APIC() throws {
        let entries = [Firmware.lapic(uid: 0, id: 1), Firmware.lapic(uid: 1, id: 3),
                       Firmware.x2apic(id: 1, uid: 0), Firmware.x2apic(id: 3, uid: 1),
                       Firmware.x2apic(id: 0x103, uid: 9)]  // an x2APIC ID whose low byte is the boot ID
        let machine = Machine(madt: Firmware.madt(entries))
        let result = try machine.build(bootAPICID: 3)
        #expect(result.processorsKept == 2 && result.processorsHidden == 3)
        let view = machine.view()
        let copy = try view.madtEntries(try #require(try view.walk(result.rsdpAddress).madt))
        #expect(copy == [entries[1], entries[3]])
    }

    @Test func otherTablesKeepTheirAddressesAndTheRootsHeaderFields() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        let result = try machine.build()
        let view = machine.view()
        let walk = try view.walk(result.rsdpAddress)
        let madt = try #require(walk.madt)
        #expect(walk.entries == machine.tables.map { $0.0 == "APIC" ? madt : $0.1 }, "same order, same addresses")
        #expect(madt != machine.address("APIC"))
        let rsdp = try view.rsdp(result.rsdpAddress)
        #expect(rsdp.oemID == "FWOEM ")
        #expect(view.text(walk.xsdt + 10, 6) == "FWOEM " && view.text(walk.xsdt + 16, 8) == "FWROOT64")
        #expect(machine.memory.read(walk.xsdt + 24, 12) == machine.memory.read(machine.xsdt + 24, 12), "OEM revision, creator")
        #expect(machine.memory.le(walk.xsdt + 8, 1) == 1, "XSDT revision 1")
        #expect(machine.memory.le(rsdp.rsdt + 8, 1) == 1, "RSDT revision 1")
    }

    @Test func layoutStaysInsideTheReportedSize() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        let result = try machine.build()
        let view = machine.view()
        let (rsdt, xsdt, _) = try view.rsdp(result.rsdpAddress)
        let madt = try #require(try view.walk(result.rsdpAddress).madt)
        let end = result.rsdpAddress + UInt64(result.size)
        for (address, signature) in [(xsdt, "XSDT"), (rsdt, "RSDT"), (madt, "APIC")] {
            #expect(address % 16 == 0 && address > result.rsdpAddress, "\(signature)")
            #expect(address + UInt64(try view.table(address, signature)) <= end, "\(signature)")
        }
        #expect(madt + UInt64(try view.table(madt, "APIC")) == end, "the MADT copy ends the output")
        let out = machine.memory.output
        #expect(out.buffer[result.size...].allSatisfy { $0 == 0xEE }, "nothing written past the size")
    }

    @Test func rsdtOnlyFirmware() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()), xsdt: false)
        #expect(machine.root.revision == 0 && machine.root.xsdtAddress == nil)
        let result = try machine.build(bootAPICID: 4)
        #expect(result.processorsKept == 1 && result.processorsHidden == 3 && result.tableCount == 4)
        let walk = try machine.view().walk(result.rsdpAddress)
        #expect(walk.entries.count == 4 && walk.entries.contains(machine.address("SSDT")))
        #expect(processorIDs(try machine.view().madtEntries(try #require(walk.madt))) == [4])
    }

    @Test func xsdtPreferredOverRSDT() throws {
        var machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()), xsdt: false, rsdt: false)
        // The RSDT lists only FACP and the MADT; the XSDT everything.
        machine.writeRoots(xsdt: false, rsdt: true, entries: [machine.address("FACP"), machine.address("APIC")])
        machine.writeRoots(xsdt: true, rsdt: false)
        let result = try machine.build()
        #expect(result.tableCount == 4 && result.warnings.isEmpty)
        #expect(try machine.view().walk(result.rsdpAddress).entries.count == 4)

        // Revision 0 means the XSDT field is not there, whatever it holds.
        machine.root.revision = 0
        #expect(try machine.build().tableCount == 2)
    }

    @Test func unusableXSDTFallsBackToTheRSDT() throws {
        var machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        machine.memory.write(Array("XSDX".utf8), at: machine.xsdt)
        let result = try machine.build()
        #expect(result.warnings == .xsdtUnusable && result.tableCount == 4)
        _ = try machine.view().walk(result.rsdpAddress)

        // With no RSDT, the XSDT's failure is reported.
        machine.root.rsdtAddress = 0
        expectError(.badSignature, machine.xsdt) { () throws(ACPIPassthroughError) in try machine.build() }
        // Neither root.
        machine.root.xsdtAddress = nil
        expectError(.rootTableUnreadable) { () throws(ACPIPassthroughError) in try machine.build() }
    }

    @Test func firmwareChecksumErrorsAreToleratedAndFixed() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        machine.memory.write([machine.memory.read(machine.xsdt + 9, 1)[0] &+ 1], at: machine.xsdt + 9)
        let madt = machine.address("APIC")
        machine.memory.write([machine.memory.read(madt + 9, 1)[0] &+ 7], at: madt + 9)
        let result = try machine.build(bootAPICID: 6)
        #expect(result.warnings == .rootChecksum | .madtChecksum)
        let view = machine.view()
        let copy = try view.madtEntries(try #require(try view.walk(result.rsdpAddress).madt))  // checksums verified
        #expect(processorIDs(copy) == [6])
    }

    @Test func madtLengthBounds() throws {
        // Shorter than its fixed part.
        var machine = Machine(madt: Firmware.table("APIC", body: le(0xFEE0_0000, 4)))
        expectError(.badLength, 40) { () throws(ACPIPassthroughError) in try machine.build() }
        // Longer than the cap, though readable: the builder must not read it.
        machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        machine.memory.write(le(UInt64(ACPIPassthrough.maximumMADTLength + 1), 4), at: machine.address("APIC") + 4)
        expectError(.badLength, UInt64(ACPIPassthrough.maximumMADTLength + 1)) {
            () throws(ACPIPassthroughError) in try machine.build()
        }
        #expect(machine.memory.largestRead <= ACPIPassthrough.maximumMADTLength)
        // Within the cap but past the end of readable memory.
        // (The hole lies past every table, inside the MADT's claimed length.)
        machine.memory.write(le(machine.next - machine.address("APIC") + 0x100, 4), at: machine.address("APIC") + 4)
        machine.memory.unreadable = (machine.next + 0x80)..<(machine.next + 0x81)
        expectError(.tableUnreadable, machine.address("APIC")) { () throws(ACPIPassthroughError) in try machine.build() }
    }

    @Test func madtEntryLengthsStopTheWalk() throws {
        let good = [Firmware.lapic(uid: 0, id: 0), Firmware.lapic(uid: 1, id: 1), Firmware.ioapic()]
        // Length 0, length 1, a structure running past the table, a header cut by the table's end.
        for bad in [[UInt8]([1, 0, 0, 0]), [1, 1, 0, 0], [0, 8, 2, 2], [1]] {
            let bytes = Firmware.madt(good + [bad])
            let machine = Machine(madt: bytes)
            let result = try machine.build()
            #expect(result.warnings == .madtTruncated, "\(bad)")
            #expect(result.processorsKept == 1 && result.processorsHidden == 1, "the entries after the bad one are not counted")
            let view = machine.view()
            let copy = try view.madtEntries(try #require(try view.walk(result.rsdpAddress).madt))
            #expect(copy == [good[0], good[2]], "\(bad)")
        }
    }

    @Test func rootTableLengthBounds() throws {
        var machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()), rsdt: false)
        machine.memory.write(le(35, 4), at: machine.xsdt + 4)
        expectError(.badLength, 35) { () throws(ACPIPassthroughError) in try machine.build() }
        machine.memory.write(le(UInt64(36 + 8 * (ACPIPassthrough.maximumTables + 1)), 4), at: machine.xsdt + 4)
        expectError(.tooManyTables, UInt64(ACPIPassthrough.maximumTables + 1)) {
            () throws(ACPIPassthroughError) in try machine.build()
        }
        // A partial trailing entry is ignored (ACPICA divides the length).
        machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()), rsdt: false)
        machine.memory.write(le(36 + 8 * 4 + 5, 4), at: machine.xsdt + 4)
        let result = try machine.build()
        #expect(result.tableCount == 4 && result.warnings == .rootChecksum)
    }

    @Test func maximumTablesFitTheMaximumOutput() throws {
        var machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()), xsdt: false, rsdt: false)
        let entries = [UInt64](repeating: machine.address("SSDT"), count: ACPIPassthrough.maximumTables - 1)
            + [machine.address("APIC")]
        machine.writeRoots(entries: entries)
        let result = try machine.build(outCount: ACPIPassthrough.maximumOutputSize)
        #expect(result.tableCount == ACPIPassthrough.maximumTables && result.rsdtIncluded)
        _ = try machine.view().walk(result.rsdpAddress)
    }

    @Test func missingMADT() throws {
        let machine = Machine(madt: nil)
        let result = try machine.build()
        #expect(!result.madtFound && result.processorsKept == 0 && result.processorsHidden == 0)
        let walk = try machine.view().walk(result.rsdpAddress)
        #expect(walk.madt == nil && walk.entries == machine.tables.map { $0.1 })
        let (rsdt, _, _) = try machine.view().rsdp(result.rsdpAddress)
        #expect(rsdt + UInt64(try machine.view().table(rsdt, "RSDT")) == result.rsdpAddress + UInt64(result.size))
    }

    @Test func bootCPUNotInMADT() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        expectError(.bootCPUNotInMADT, 5) { () throws(ACPIPassthroughError) in try machine.build(bootAPICID: 5) }
        // An x2APIC ID whose low byte matches a local APIC ID is not that CPU.
        expectError(.bootCPUNotInMADT, 0x102) { () throws(ACPIPassthroughError) in try machine.build(bootAPICID: 0x102) }
    }

    @Test func outputTooSmall() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        let needed = try machine.build().size
        machine.memory.output.buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        expectError(.outputTooSmall, UInt64(needed)) {
            () throws(ACPIPassthroughError) in try machine.build(outCount: needed - 1)
        }
        #expect(machine.memory.output.buffer.allSatisfy { $0 == 0xEE }, "nothing written on failure")
        let result = try machine.build(outCount: needed)
        #expect(result.size == needed)
        _ = try machine.view().walk(result.rsdpAddress)
    }

    @Test func outputAddressRules() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        let (_, address) = machine.memory.output
        expectError(.badOutputAddress, address + 8) {
            () throws(ACPIPassthroughError) in try machine.build(outAddress: address + 8)
        }
        expectError(.badOutputAddress, UInt64.max - 15) {
            () throws(ACPIPassthroughError) in try machine.build(outAddress: UInt64.max - 15)
        }
    }

    @Test func noRSDTWhenTheOutputIsAbove4GiB() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()), base: 0x1_0000_0000, rsdt: false)
        let result = try machine.build()
        #expect(!result.rsdtIncluded)
        let (rsdt, xsdt, _) = try machine.view().rsdp(result.rsdpAddress)
        #expect(rsdt == 0 && xsdt == result.rsdpAddress + 48)
        let madt = try #require(try machine.view().walk(result.rsdpAddress).madt)
        #expect(madt + UInt64(try machine.view().table(madt, "APIC")) == result.rsdpAddress + UInt64(result.size))
    }

    @Test func noRSDTWhenAFirmwareTableIsAbove4GiB() throws {
        // Memory straddling 4 GiB: the tables and the output below it.
        var machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()), base: 0xFFFB_0000)
        #expect(machine.memory.output.address + 0x1000 < 1 << 32)
        #expect(try machine.build().rsdtIncluded, "everything below 4 GiB: an RSDT copy")
        let high = machine.memory.base + 0x60000
        #expect(high > 1 << 32)
        machine.memory.write(Firmware.table("BGRT", body: [1, 2, 3]), at: high)
        machine.tables.append(("BGRT", high))
        machine.writeRoots(rsdt: false)
        machine.root.rsdtAddress = 0
        let result = try machine.build()
        #expect(!result.rsdtIncluded && result.tableCount == 5)
        let walk = try machine.view().walk(result.rsdpAddress)
        #expect(try machine.view().rsdp(result.rsdpAddress).rsdt == 0)
        #expect(walk.entries.last == high)
    }

    @Test func nullEntriesAndDuplicateMADTsAreLeftOut() throws {
        var machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        let second = machine.place(Firmware.madt([Firmware.lapic(uid: 9, id: 9)]))
        machine.writeRoots(entries: [0] + machine.tables.map { $0.1 } + [second, 0])
        let result = try machine.build()
        #expect(result.warnings == .nullEntries | .duplicateMADT)
        #expect(result.tableCount == 4 && result.processorsHidden == 3)
        let walk = try machine.view().walk(result.rsdpAddress)  // fails on two MADTs
        #expect(!walk.entries.contains(second) && !walk.entries.contains(0))
    }

    @Test func unreadableTablesAreErrors() throws {
        let machine = Machine(madt: Firmware.madt(Firmware.fourCPUs()))
        let ssdt = machine.address("SSDT")
        machine.memory.unreadable = ssdt..<(ssdt + 1)
        expectError(.tableUnreadable, ssdt) { () throws(ACPIPassthroughError) in try machine.build() }
        machine.memory.unreadable = nil
        machine.memory.shortReads = true
        expectError(.tableUnreadable, machine.xsdt) { () throws(ACPIPassthroughError) in try machine.build() }
    }

    @Test func rootFromRSDPBytes() throws {
        var bytes = Array("RSD PTR ".utf8) + [0] + Array("FWOEM ".utf8) + [2] + le(0x7FF0_1000, 4) + le(36, 4)
            + le(0x1_2345_6780, 8) + [0, 0, 0, 0]
        var root = try #require(bytes.withUnsafeBytes { ACPIRoot(rsdp: $0) })
        #expect(root == ACPIRoot(revision: 2, oemID: Firmware.oemIDValue, rsdtAddress: 0x7FF0_1000, xsdtAddress: 0x1_2345_6780))
        // ACPI 1.0: 20 bytes, no XSDT field.
        bytes[15] = 0
        root = try #require(bytes[0..<20].withUnsafeBytes { ACPIRoot(rsdp: $0) })
        #expect(root.revision == 0 && root.xsdtAddress == nil && root.rsdtAddress == 0x7FF0_1000)
        #expect(bytes[0..<19].withUnsafeBytes { ACPIRoot(rsdp: $0) } == nil)
        bytes[0] = UInt8(ascii: "X")
        #expect(bytes.withUnsafeBytes { ACPIRoot(rsdp: $0) } == nil)
    }
}
