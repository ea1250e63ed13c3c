import Testing
import Foundation
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

/// Physical memory as a few byte arrays at fixed addresses.
struct FakeFirmware: FirmwareMemory {
    var regions: [(address: UInt64, bytes: [UInt8])] = []
    let storage: UnsafeMutableRawBufferPointer

    init(_ regions: [(UInt64, [UInt8])]) {
        let total = regions.reduce(0) { $0 + $1.1.count }
        storage = .allocate(byteCount: max(total, 1), alignment: 8)
        var at = 0
        for (address, bytes) in regions {
            for (i, b) in bytes.enumerated() { storage[at + i] = b }
            self.regions.append((address, bytes))
            at += bytes.count
        }
    }

    func bytes(at physical: UInt64, count: Int) -> UnsafeRawBufferPointer? {
        var at = 0
        for r in regions {
            if physical >= r.address, physical - r.address < UInt64(r.bytes.count) {
                let offset = Int(physical - r.address)
                let n = min(count, r.bytes.count - offset)
                return UnsafeRawBufferPointer(rebasing: storage[(at + offset)..<(at + offset + n)])
            }
            at += r.bytes.count
        }
        return nil
    }
}

func le(_ value: UInt64, _ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } }

/// A table: signature, length, revision, checksum, then header filler and `body`.
func acpiTable(_ signature: String, _ body: [UInt8], fixChecksum: Bool = true, length: Int? = nil) -> [UInt8] {
    var t = Array(signature.utf8) + le(UInt64(length ?? 36 + body.count), 4) + [1, 0] + Array("OEMID ".utf8)
        + Array("TABLEID ".utf8) + le(1, 4) + le(0, 4) + le(0, 4) + body
    if fixChecksum { t[9] = UInt8(truncatingIfNeeded: 0 &- t.reduce(UInt8(0), &+)) }
    return t
}

func localAPIC(uid: UInt8, id: UInt8, flags: UInt32) -> [UInt8] { [0, 8, uid, id] + le(UInt64(flags), 4) }
func localX2APIC(id: UInt32, flags: UInt32, uid: UInt32) -> [UInt8] {
    [9, 16, 0, 0] + le(UInt64(id), 4) + le(UInt64(flags), 4) + le(UInt64(uid), 4)
}
/// IOAPIC structure (type 1), to show other structures are skipped.
let ioAPICEntry: [UInt8] = [1, 12, 1, 0] + le(0xFEC0_0000, 4) + le(0, 4)

func madt(_ entries: [[UInt8]], fixChecksum: Bool = true) -> [UInt8] {
    acpiTable("APIC", le(0xFEE0_0000, 4) + le(1, 4) + entries.flatMap { $0 }, fixChecksum: fixChecksum)
}

func rsdp(revision: UInt8, rsdt: UInt32, xsdt: UInt64) -> [UInt8] {
    var r = Array("RSD PTR ".utf8) + [0] + Array("OEMID ".utf8) + [revision] + le(UInt64(rsdt), 4)
    if revision >= 2 { r += le(36, 4) + le(xsdt, 8) + [0, 0, 0, 0] }
    r[8] = UInt8(truncatingIfNeeded: 0 &- r[0..<20].reduce(UInt8(0), &+))
    if revision >= 2 { r[32] = UInt8(truncatingIfNeeded: 0 &- r.reduce(UInt8(0), &+)) }
    return r
}

/// RSDP (rev 2) -> XSDT at 0x1000 -> [FACP at 0x2000, MADT at 0x3000].
func machine(_ madtBytes: [UInt8], revision: UInt8 = 2) -> (FakeFirmware, [UInt8]) {
    let facp = acpiTable("FACP", [UInt8](repeating: 0, count: 8))
    let xsdt = acpiTable("XSDT", le(0x2000, 8) + le(0, 8) + le(0x3000, 8))
    let rsdt = acpiTable("RSDT", le(0x2000, 4) + le(0x3000, 4))
    return (FakeFirmware([(0x1000, xsdt), (0x1800, rsdt), (0x2000, facp), (0x3000, madtBytes)]),
            rsdp(revision: revision, rsdt: 0x1800, xsdt: revision >= 2 ? 0x1000 : 0))
}

func enumerate(_ memory: FakeFirmware, _ rsdp: [UInt8], boot: UInt32 = 0) throws(MADTError) -> MADTProcessorList {
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: rsdp.count, alignment: 8)
    copy.copyBytes(from: rsdp)
    return try MADTProcessors.enumerate(rsdp: UnsafeRawBufferPointer(copy), memory: memory, bootAPICID: boot)
}

func ids(_ list: MADTProcessorList) -> [UInt32] { (0..<list.count).map { list[$0].apicID } }

func expectError(_ kind: MADTError.Kind, _ memory: FakeFirmware, _ r: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try enumerate(memory, r)
        Issue.record("no error, expected \(kind)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.kind == kind, sourceLocation: sourceLocation)
    }
}

@Suite struct MADTProcessorsTests {
    @Test func listsTheOtherEnabledAndOnlineCapableProcessors() throws {
        let (memory, r) = machine(madt([localAPIC(uid: 0, id: 0, flags: 1), ioAPICEntry, localAPIC(uid: 1, id: 2, flags: 1),
                                         localAPIC(uid: 2, id: 4, flags: 2), localAPIC(uid: 3, id: 6, flags: 0),
                                         localX2APIC(id: 0x100, flags: 1, uid: 9)]))
        let list = try enumerate(memory, r)
        #expect(ids(list) == [2, 4, 0x100])
        #expect(list.bootCPUListed && list.unusable == 1 && list.duplicates == 0 && list.omitted == 0)
        #expect(list[0] == MADTProcessor(apicID: 2, uid: 1, enabled: true, x2APIC: false))
        #expect(list[1].enabled == false)
        #expect(list[2] == MADTProcessor(apicID: 0x100, uid: 9, enabled: true, x2APIC: true))
    }

    @Test func skipsTheBootCPUWhereverItIsAndDeduplicates() throws {
        let (memory, r) = machine(madt([localAPIC(uid: 0, id: 1, flags: 1), localAPIC(uid: 1, id: 3, flags: 1),
                                         localX2APIC(id: 1, flags: 1, uid: 1), localX2APIC(id: 3, flags: 1, uid: 1)]))
        let list = try enumerate(memory, r, boot: 3)
        #expect(ids(list) == [1] && list.duplicates == 1 && list.bootCPUListed)
    }

    @Test func skipsBroadcastIDs() throws {
        let (memory, r) = machine(madt([localAPIC(uid: 0, id: 0xFF, flags: 1), localX2APIC(id: 0xFFFF_FFFF, flags: 1, uid: 0)]))
        let list = try enumerate(memory, r)
        #expect(list.count == 0 && list.unusable == 2 && !list.bootCPUListed)
    }

    @Test func usesTheRSDTForRevisionZero() throws {
        let (memory, r) = machine(madt([localAPIC(uid: 1, id: 1, flags: 1)]), revision: 0)
        #expect(ids(try enumerate(memory, r)) == [1])
    }

    @Test func keepsAtMostItsCapacity() throws {
        let entries = (1...70).map { localX2APIC(id: UInt32($0), flags: 1, uid: UInt32($0)) }
        let (memory, r) = machine(madt(entries))
        let list = try enumerate(memory, r)
        #expect(list.count == MADTProcessorList.capacity && list.omitted == 70 - MADTProcessorList.capacity)
    }

    @Test func malformedRSDPs() {
        let (memory, good) = machine(madt([]))
        var badSignature = good; badSignature[0] = 0x41
        expectError(.badRSDP, memory, badSignature)
        expectError(.badRSDP, memory, Array(good[0..<19]))
        var badSum = good; badSum[9] &+= 1
        expectError(.badChecksum, memory, badSum)
        var badExtended = good; badExtended[33] &+= 1
        expectError(.badChecksum, memory, badExtended)
        expectError(.noRootTable, memory, rsdp(revision: 0, rsdt: 0, xsdt: 0))
    }

    @Test func malformedRootTables() {
        let m = madt([])
        let r = rsdp(revision: 2, rsdt: 0, xsdt: 0x1000)
        expectError(.unreadable, FakeFirmware([]), r)
        expectError(.badSignature, FakeFirmware([(0x1000, acpiTable("RSDT", le(0x3000, 8))), (0x3000, m)]), r)
        expectError(.badChecksum, FakeFirmware([(0x1000, acpiTable("XSDT", le(0x3000, 8), fixChecksum: false)), (0x3000, m)]), r)
        expectError(.badLength, FakeFirmware([(0x1000, acpiTable("XSDT", le(0x3000, 8), length: 20)), (0x3000, m)]), r)
        expectError(.badLength, FakeFirmware([(0x1000, acpiTable("XSDT", le(0x3000, 8), length: 1 << 20)), (0x3000, m)]), r)
        // Claims more bytes than memory holds.
        expectError(.unreadable, FakeFirmware([(0x1000, acpiTable("XSDT", le(0x3000, 8), length: 60)), (0x3000, m)]), r)
        // An entry pointing nowhere, and no MADT.
        expectError(.unreadable, FakeFirmware([(0x1000, acpiTable("XSDT", le(0x9000, 8)))]), r)
        expectError(.noMADT, FakeFirmware([(0x1000, acpiTable("XSDT", le(0, 8)))]), r)
        // An address at the top of the address space does not wrap.
        expectError(.unreadable, FakeFirmware([(0x1000, acpiTable("XSDT", le(UInt64.max - 1, 8)))]), r)
    }

    @Test func malformedMADTs() {
        expectError(.badChecksum, machine(madt([localAPIC(uid: 1, id: 1, flags: 1)], fixChecksum: false)).0,
                    machine(madt([])).1)
        expectError(.badLength, machine(acpiTable("APIC", [1, 2, 3])).0, machine(madt([])).1)
        // A structure of length 1, one running past the end, a short local APIC, a short x2APIC, a lone type byte.
        for bad: [UInt8] in [[0, 1], [0, 9, 0, 1, 1, 0, 0, 0], [0, 6, 0, 1, 1, 0], [9, 12] + [UInt8](repeating: 0, count: 10), [0]] {
            let (memory, r) = machine(madt([localAPIC(uid: 1, id: 1, flags: 1), bad]))
            do {
                _ = try enumerate(memory, r)
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.kind == .truncatedEntry && error.detail == 44 + 8)
            }
        }
    }

    @Test func errorsHaveMessages() {
        let kinds: [MADTError.Kind] = [.badRSDP, .noRootTable, .unreadable, .badSignature, .badLength, .badChecksum, .noMADT, .truncatedEntry]
        #expect(Set(kinds.map { "\(MADTError($0).message)" }).count == kinds.count)
    }
}
