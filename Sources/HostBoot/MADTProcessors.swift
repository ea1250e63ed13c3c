// The machine's processors as the firmware lists them: RSDP -> XSDT (or
// RSDT) -> MADT -> its processor structures. The hypervisor starts each one
// (APStartup.swift), so the tables are checked strictly: a bad checksum, a
// length out of bounds or a truncated structure is an error naming it, and
// the caller then runs on the boot CPU alone.
//
// Layouts: ACPI 6.4 5.2.5.3 "Root System Description Pointer (RSDP)
// Structure", 5.2.6 "System Description Table Header", 5.2.7 "Root System
// Description Table (RSDT)", 5.2.8 "Extended System Description Table
// (XSDT)", 5.2.12 "Multiple APIC Description Table (MADT)", 5.2.12.2
// "Processor Local APIC Structure", 5.2.12.12 "Processor Local x2APIC
// Structure", Table 5.23 "Local APIC Flags".

/// Reads physical memory: nil, or fewer than `count` bytes, when the range
/// cannot be read. (GuestBoot's PhysicalMemoryReader has the same shape; the
/// layers are siblings, so each declares its own.)
public protocol FirmwareMemory {
    func bytes(at physical: UInt64, count: Int) -> UnsafeRawBufferPointer?
}

/// One processor structure of the MADT.
public struct MADTProcessor: Equatable, Sendable {
    /// The local APIC ID (an x2APIC ID for a type 9 structure).
    public var apicID: UInt32
    /// The ACPI processor UID.
    public var uid: UInt32
    /// Flags bit 0. False: listed only as online capable (bit 1).
    public var enabled: Bool
    /// From a Processor Local x2APIC structure (type 9).
    public var x2APIC: Bool

    public init(apicID: UInt32, uid: UInt32, enabled: Bool, x2APIC: Bool) {
        self.apicID = apicID; self.uid = uid; self.enabled = enabled; self.x2APIC = x2APIC
    }
}

/// The other processors, in MADT order, without the boot CPU and duplicates.
public struct MADTProcessorList {
    public static let capacity = 64
    var entries = InlineArray<64, MADTProcessor>(repeating: MADTProcessor(apicID: 0, uid: 0, enabled: false, x2APIC: false))
    public private(set) var count = 0
    /// Usable processors past `capacity`, left out.
    public private(set) var omitted = 0
    /// Whether the MADT lists the boot CPU's APIC ID.
    public internal(set) var bootCPUListed = false
    /// Structures that name no usable CPU: neither enabled nor online
    /// capable, or the broadcast ID (0xFF, 0xFFFFFFFF).
    public internal(set) var unusable = 0
    /// Structures repeating an APIC ID already listed (a CPU listed both as
    /// local APIC and local x2APIC).
    public internal(set) var duplicates = 0

    public init() {}

    public subscript(index: Int) -> MADTProcessor { entries[index] }

    /// Adds `processor` unless its APIC ID is already listed.
    mutating func add(_ processor: MADTProcessor) {
        for i in 0..<count where entries[i].apicID == processor.apicID { duplicates += 1; return }
        guard count < Self.capacity else { omitted += 1; return }
        entries[count] = processor
        count += 1
    }
}

public struct MADTError: Error, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The RSDP is shorter than 20 bytes or lacks "RSD PTR ".
        case badRSDP
        /// The RSDP names neither an XSDT nor an RSDT.
        case noRootTable
        /// A table's header or body cannot be read; detail: its address.
        case unreadable
        /// The root table's signature is not "XSDT"/"RSDT"; detail: its address.
        case badSignature
        /// A table's length is below its fixed part or above the cap; detail: the length.
        case badLength
        /// A checksum does not sum to zero; detail: the table's address.
        case badChecksum
        /// No table has the signature "APIC".
        case noMADT
        /// A structure's length is below 2, below its type's fixed part, or
        /// runs past the table's end; detail: its byte offset in the MADT.
        case truncatedEntry
    }

    public var kind: Kind
    public var detail: UInt64

    public init(_ kind: Kind, _ detail: UInt64 = 0) { self.kind = kind; self.detail = detail }

    public var message: StaticString {
        switch kind {
        case .badRSDP: "the ACPI RSDP is malformed"
        case .noRootTable: "the ACPI RSDP names no XSDT or RSDT"
        case .unreadable: "an ACPI table cannot be read"
        case .badSignature: "the ACPI root table has the wrong signature"
        case .badLength: "an ACPI table has an impossible length"
        case .badChecksum: "an ACPI table's checksum is wrong"
        case .noMADT: "the ACPI tables have no MADT"
        case .truncatedEntry: "a MADT structure is truncated"
        }
    }
}

public enum MADTProcessors {
    static let headerLength = 36
    /// MADT fixed part: the header, Local Interrupt Controller Address, Flags.
    static let madtFixedLength = 44
    static let maximumRootEntries = 1024
    static let maximumMADTLength = 64 * 1024
    static let localAPIC: UInt8 = 0, localX2APIC: UInt8 = 9
    /// Fixed lengths of the two processor structures.
    static let localAPICLength = 8, localX2APICLength = 16
    static let enabledFlag: UInt32 = 1 << 0, onlineCapableFlag: UInt32 = 1 << 1

    /// The processors other than `bootAPICID` that the MADT lists as enabled
    /// or online capable. `rsdp` is the RSDP's bytes (e.g. the multiboot2
    /// ACPI tag's copy); the XSDT is used from revision 2 on when nonzero,
    /// else the RSDT.
    public static func enumerate<M: FirmwareMemory>(rsdp: UnsafeRawBufferPointer, memory: M, bootAPICID: UInt32)
        throws(MADTError) -> MADTProcessorList {
        guard rsdp.count >= 20, load(rsdp, 0, 8) == signature("RSD PTR ") else { throw MADTError(.badRSDP) }
        guard sum(rsdp, 20) == 0 else { throw MADTError(.badChecksum, 0) }
        var rootAddress = load(rsdp, 16, 4)
        var entrySize = 4
        if rsdp[15] >= 2 && rsdp.count >= 36 && load(rsdp, 24, 8) != 0 {
            guard sum(rsdp, 36) == 0 else { throw MADTError(.badChecksum, 0) }
            rootAddress = load(rsdp, 24, 8)
            entrySize = 8
        }
        guard rootAddress != 0 else { throw MADTError(.noRootTable) }
        let root = try table(memory, rootAddress, minimum: headerLength,
                             maximum: headerLength + maximumRootEntries * entrySize)
        let expected = entrySize == 8 ? signature("XSDT") : signature("RSDT")
        guard load(root, 0, 4) == expected else { throw MADTError(.badSignature, rootAddress) }

        var offset = headerLength
        while offset + entrySize <= root.count {
            let address = load(root, offset, entrySize)
            offset += entrySize
            guard address != 0 else { continue }
            let header = try read(memory, address, 4)
            guard load(header, 0, 4) == signature("APIC") else { continue }
            let madt = try table(memory, address, minimum: madtFixedLength, maximum: maximumMADTLength)
            return try processors(madt, bootAPICID: bootAPICID)
        }
        throw MADTError(.noMADT)
    }

    /// The processor structures of one MADT's bytes (checksum already checked).
    public static func processors(_ madt: UnsafeRawBufferPointer, bootAPICID: UInt32) throws(MADTError) -> MADTProcessorList {
        var list = MADTProcessorList()
        var p = madtFixedLength
        while p < madt.count {
            guard p + 2 <= madt.count else { throw MADTError(.truncatedEntry, UInt64(p)) }
            let type = madt[p], length = Int(madt[p + 1])
            guard length >= 2, p + length <= madt.count else { throw MADTError(.truncatedEntry, UInt64(p)) }
            if type == localAPIC || type == localX2APIC {
                let x2 = type == localX2APIC
                guard length >= (x2 ? localX2APICLength : localAPICLength) else { throw MADTError(.truncatedEntry, UInt64(p)) }
                // Local APIC: UID byte 2, ID byte 3, flags 4-7. Local x2APIC:
                // ID 4-7, flags 8-11, UID 12-15.
                let id = UInt32(x2 ? load(madt, p + 4, 4) : load(madt, p + 3, 1))
                let flags = UInt32(load(madt, p + (x2 ? 8 : 4), 4))
                let uid = UInt32(x2 ? load(madt, p + 12, 4) : load(madt, p + 2, 1))
                let broadcast: UInt32 = x2 ? 0xFFFF_FFFF : 0xFF
                if id == bootAPICID {
                    list.bootCPUListed = true
                } else if id == broadcast || flags & (enabledFlag | onlineCapableFlag) == 0 {
                    list.unusable += 1
                } else {
                    list.add(MADTProcessor(apicID: id, uid: uid, enabled: flags & enabledFlag != 0, x2APIC: x2))
                }
            }
            p += length
        }
        return list
    }

    /// A description table whose length lies in `minimum...maximum` and whose bytes sum to zero.
    static func table<M: FirmwareMemory>(_ memory: M, _ address: UInt64, minimum: Int, maximum: Int)
        throws(MADTError) -> UnsafeRawBufferPointer {
        let header = try read(memory, address, headerLength)
        let length = Int(load(header, 4, 4))
        guard length >= minimum, length <= maximum else { throw MADTError(.badLength, UInt64(length)) }
        let bytes = try read(memory, address, length)
        guard sum(bytes, length) == 0 else { throw MADTError(.badChecksum, address) }
        return bytes
    }

    static func read<M: FirmwareMemory>(_ memory: M, _ address: UInt64, _ count: Int) throws(MADTError) -> UnsafeRawBufferPointer {
        guard address <= UInt64.max - UInt64(count), let bytes = memory.bytes(at: address, count: count),
              bytes.count >= count, let base = bytes.baseAddress else { throw MADTError(.unreadable, address) }
        return UnsafeRawBufferPointer(start: base, count: count)
    }

    static func load(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ count: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<count { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return value
    }

    static func sum(_ bytes: UnsafeRawBufferPointer, _ count: Int) -> UInt8 {
        var total: UInt8 = 0
        for i in 0..<count { total &+= bytes[i] }
        return total
    }

    static func signature(_ s: StaticString) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<s.utf8CodeUnitCount { value |= UInt64(s.utf8Start[i]) << (8 * UInt64(i)) }
        return value
    }
}
