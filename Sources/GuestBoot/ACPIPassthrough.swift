// ACPI root tables for the passthrough platform: the guest is the machine's
// own OS and sees the firmware's tables, but only the CPUs that run its vCPUs:
// a CPU the hypervisor did not bring into VMX (cpus=, a failed start) must
// never run guest code outside VMX. So it gets a copy of the root:
//
//   RSDP (rev 2) -> XSDT -> every firmware table, same physical address,
//                           except the MADT ("APIC") -> filtered copy
//                -> RSDT (the same list, when everything fits in 32 bits)
//
// The filtered MADT keeps every interrupt controller structure but the
// processor structures (Processor Local APIC, Processor Local x2APIC) of
// CPUs without a vCPU. The local APIC NMI structures stay: they name ACPI processor
// UIDs (0xFF = all), and a UID with no processor is ignored.
//
// Firmware is not trusted to be well formed: every length is bounded before
// it is used, and nothing is read outside what the reader returned.
// Checksum errors are not fatal (Linux only warns); they are reported as
// warnings and the copies get correct checksums.
//
// Layouts: ACPI 6.4 5.2.5.3 "Root System Description Pointer (RSDP)
// Structure", 5.2.6 "System Description Table Header", 5.2.7 "Root System
// Description Table (RSDT)", 5.2.8 "Extended System Description Table
// (XSDT)", 5.2.12 "Multiple APIC Description Table (MADT)".

import X86Arch

/// The APIC IDs of the CPUs besides the boot CPU that the guest may see (they run its vCPUs).
public struct APICIDSet {
    public static let capacity = 64
    var ids = InlineArray<64, UInt32>(repeating: 0)
    public private(set) var count = 0
    public init() {}
    /// False when the set is full (the CPU then stays hidden).
    @discardableResult
    public mutating func insert(_ id: UInt32) -> Bool {
        if contains(id) { return true }
        guard count < Self.capacity else { return false }
        ids[count] = id
        count += 1
        return true
    }
    public func contains(_ id: UInt32) -> Bool {
        for i in 0..<count where ids[i] == id { return true }
        return false
    }
}

/// Reads physical memory (the kernel: the identity map below 4 GiB; tests: a
/// fake). Returns nil, or fewer than `count` bytes, when the range is not readable.
public protocol PhysicalMemoryReader {
    func bytes(at physical: UInt64, count: Int) -> UnsafeRawBufferPointer?
}

/// The firmware's root pointer as the boot loader reported it. Multiboot2
/// copies the RSDP into its information, so the original's address may be
/// unknown; only its fields matter here.
public struct ACPIRoot: Equatable, Sendable {
    /// 0 for ACPI 1.0 (RSDT only), 2 for ACPI 2.0+.
    public var revision: UInt8
    /// The 6-byte OEM ID, first character in the low byte (bits 47:0).
    public var oemID: UInt64
    public var rsdtAddress: UInt32
    /// nil (or 0) when the RSDP has no XSDT field (revision 0).
    public var xsdtAddress: UInt64?

    public init(revision: UInt8, oemID: UInt64, rsdtAddress: UInt32, xsdtAddress: UInt64?) {
        self.revision = revision
        self.oemID = oemID & 0xFFFF_FFFF_FFFF
        self.rsdtAddress = rsdtAddress
        self.xsdtAddress = xsdtAddress
    }

    /// Parses an RSDP's bytes (e.g. a multiboot2 ACPI tag body): nil unless
    /// it starts with "RSD PTR " and holds the 20-byte ACPI 1.0 part. The XSDT
    /// field is read only for revision >= 2 with all 36 bytes present.
    /// Checksums are not checked (the loader did; see the file comment).
    public init?(rsdp bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= ACPITables.rsdpChecksummedLength,
              ACPIPassthrough.load(bytes, 0, 8) == ACPIPassthrough.rsdpSignature else { return nil }
        let revision = bytes[15]
        var xsdt: UInt64? = nil
        if revision >= 2 && bytes.count >= ACPITables.rsdpLength { xsdt = ACPIPassthrough.load(bytes, 24, 8) }
        self.init(revision: revision, oemID: ACPIPassthrough.load(bytes, 9, 6),
                  rsdtAddress: UInt32(truncatingIfNeeded: ACPIPassthrough.load(bytes, 16, 4)), xsdtAddress: xsdt)
    }
}

/// What was tolerated in the firmware's tables.
public struct ACPIPassthroughWarnings: BitFlags {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The RSDP offered an XSDT that was unreadable or invalid; the RSDT was used.
    public static let xsdtUnusable = Self(rawValue: 1 << 0)
    /// The firmware's XSDT/RSDT checksum was wrong.
    public static let rootChecksum = Self(rawValue: 1 << 1)
    /// The firmware's MADT checksum was wrong.
    public static let madtChecksum = Self(rawValue: 1 << 2)
    /// A MADT entry had length < 2 or ran past the table: it and everything
    /// after it were left out (Linux stops at such an entry too).
    public static let madtTruncated = Self(rawValue: 1 << 3)
    /// Null entries in the root table were left out (ACPICA skips them).
    public static let nullEntries = Self(rawValue: 1 << 4)
    /// A second MADT was listed; only the first (the one an OS uses) is kept,
    /// filtered, and the others are left out.
    public static let duplicateMADT = Self(rawValue: 1 << 5)
}

public struct ACPIPassthroughResult: Equatable, Sendable {
    /// The new RSDP's physical address (`outAddress`).
    public var rsdpAddress: UInt64
    /// Bytes used in `out`, from its start.
    public var size: Int
    /// Entries in the new XSDT.
    public var tableCount: Int
    /// MADT processor structures kept (the boot CPU's: one, or two when the
    /// firmware lists it both as a local APIC and as a local x2APIC).
    public var processorsKept: Int
    /// MADT processor structures left out.
    public var processorsHidden: Int
    /// False when the firmware lists no MADT: the XSDT copy is still valid but
    /// hides nothing, and the guest may find CPUs in an MP table instead.
    public var madtFound: Bool
    /// Whether an RSDT copy was written (RsdtAddress is 0 otherwise).
    public var rsdtIncluded: Bool
    public var warnings: ACPIPassthroughWarnings
}

public struct ACPIPassthroughError: Error, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// Neither an XSDT nor an RSDT address was given (detail 0).
        case rootTableUnreadable
        /// A table (or a root table entry's signature) could not be read; detail: its address.
        case tableUnreadable
        /// A root table's signature is not "XSDT"/"RSDT"; detail: its address.
        case badSignature
        /// A table's length is below its fixed part or above the cap; detail: the length.
        case badLength
        /// The root table lists more than `maximumTables`; detail: the count.
        case tooManyTables
        /// The MADT lists no processor structure with the boot CPU's APIC ID;
        /// detail: the ID. The caller falls back (e.g. to the isolated platform).
        case bootCPUNotInMADT
        /// `out` is smaller than the tables; detail: the bytes needed.
        case outputTooSmall
        /// `outAddress` is not 16-byte aligned or the tables would wrap the
        /// address space; detail: the address.
        case badOutputAddress
    }

    public var kind: Kind
    public var detail: UInt64

    public init(_ kind: Kind, _ detail: UInt64 = 0) {
        self.kind = kind
        self.detail = detail
    }
}

public enum ACPIPassthrough {
    /// Root table entries accepted (firmware lists tens; big servers ~200).
    public static let maximumTables = 1024
    /// The MADT's length cap: about 4000 local x2APIC structures.
    public static let maximumMADTLength = 64 * 1024
    /// An `out` this large always suffices.
    public static let maximumOutputSize = Layout(tables: maximumTables, madtLength: maximumMADTLength, rsdt: true).size

    static let headerLength = ACPITables.headerLength
    /// MADT fixed part: the header, Local Interrupt Controller Address, Flags.
    static let madtFixedLength = headerLength + 8

    static let rsdpSignature = fourCC("RSD PTR ")
    static let xsdtSignature = fourCC("XSDT")
    static let rsdtSignature = fourCC("RSDT")
    static let madtSignature = fourCC("APIC")

    /// 5.2.12.2 "Processor Local APIC Structure", 5.2.12.12 "Processor Local x2APIC Structure".
    static let processorLocalAPIC: UInt8 = 0
    static let processorLocalX2APIC: UInt8 = 9

    /// Where each part goes inside `out`, each 16-byte aligned.
    struct Layout {
        let xsdt: Int
        let xsdtLength: Int
        let rsdt: Int?
        let rsdtLength: Int
        let madt: Int
        let size: Int

        init(tables: Int, madtLength: Int, rsdt withRSDT: Bool) {
            xsdt = ACPITables.Layout.align(ACPITables.rsdpLength)
            xsdtLength = headerLength + 8 * tables
            rsdtLength = headerLength + 4 * tables
            var end = xsdt + xsdtLength
            let rsdtAt = ACPITables.Layout.align(end)
            rsdt = withRSDT ? rsdtAt : nil
            if withRSDT { end = rsdtAt + rsdtLength }
            madt = ACPITables.Layout.align(end)
            size = madtLength == 0 ? end : madt + madtLength
        }
    }

    /// Writes the RSDP, the XSDT, the RSDT when it fits and the filtered MADT
    /// copy into `out`, which the guest sees at physical `outAddress`
    /// (16-byte aligned: 5.2.5.1 "Finding the RSDP on IA-PC Systems").
    ///
    /// The root table read is the XSDT when `root.revision >= 2` and it is
    /// readable and valid, else the RSDT. The RSDT copy is written only when
    /// the whole output lies below 4 GiB and every table address fits in 32
    /// bits; otherwise RsdtAddress is 0 (an OS prefers the XSDT from
    /// revision 2 on). Bytes of `out` past the returned size are untouched.
    public static func build<M: PhysicalMemoryReader>(
        root: ACPIRoot, memory: M, bootAPICID: UInt32, alsoKeep: APICIDSet = APICIDSet(),
        into out: UnsafeMutableRawBufferPointer, at outAddress: UInt64
    ) throws(ACPIPassthroughError) -> ACPIPassthroughResult {
        guard outAddress & 15 == 0 else { throw ACPIPassthroughError(.badOutputAddress, outAddress) }
        var warnings = ACPIPassthroughWarnings.empty

        // The root table: the XSDT (64-bit entries) if usable, else the RSDT.
        var source: UnsafeRawBufferPointer
        var entrySize = 8
        if root.revision >= 2, let xsdt = root.xsdtAddress, xsdt != 0 {
            do throws(ACPIPassthroughError) {
                source = try rootTable(memory, xsdt, xsdtSignature, entrySize: 8)
            } catch let xsdtError {
                guard root.rsdtAddress != 0 else { throw xsdtError }
                warnings.insert(.xsdtUnusable)
                do throws(ACPIPassthroughError) {
                    source = try rootTable(memory, UInt64(root.rsdtAddress), rsdtSignature, entrySize: 4)
                } catch {
                    throw xsdtError  // report the preferred table's failure
                }
                entrySize = 4
            }
        } else {
            guard root.rsdtAddress != 0 else { throw ACPIPassthroughError(.rootTableUnreadable) }
            source = try rootTable(memory, UInt64(root.rsdtAddress), rsdtSignature, entrySize: 4)
            entrySize = 4
        }
        if sum(source) != 0 { warnings.insert(.rootChecksum) }
        let sourceEntries = (source.count - headerLength) / entrySize  // a partial entry is ignored, as ACPICA does

        // First pass: count the tables kept, find the first MADT, check every
        // entry's signature is readable (an unreadable one could be a MADT).
        var tables = 0
        var madtIndex = -1
        var below4G = true
        for i in 0..<sourceEntries {
            let address = load(source, headerLength + i * entrySize, entrySize)
            guard address != 0 else { warnings.insert(.nullEntries); continue }
            let signature = try signature(memory, address)
            if signature == madtSignature {
                guard madtIndex < 0 else { warnings.insert(.duplicateMADT); continue }
                madtIndex = i
            }
            tables += 1
            if address > UInt64(UInt32.max) { below4G = false }
        }

        // The MADT and the length of its filtered copy (a measuring pass).
        var madt: UnsafeRawBufferPointer? = nil
        var filtered = MADTFilter(length: 0, kept: 0, hidden: 0, bootFound: false, truncated: false)
        if madtIndex >= 0 {
            let address = load(source, headerLength + madtIndex * entrySize, entrySize)
            let table = try readTable(memory, address, minimum: madtFixedLength, maximum: maximumMADTLength)
            if sum(table) != 0 { warnings.insert(.madtChecksum) }
            filtered = filter(table, bootAPICID: bootAPICID, alsoKeep: alsoKeep, into: nil)
            guard filtered.bootFound else { throw ACPIPassthroughError(.bootCPUNotInMADT, UInt64(bootAPICID)) }
            if filtered.truncated { warnings.insert(.madtTruncated) }
            madt = table
        }

        // Layout: with an RSDT when every address it would hold fits in 32 bits.
        var layout = Layout(tables: tables, madtLength: filtered.length, rsdt: true)
        guard outAddress <= UInt64.max - UInt64(layout.size) else {
            throw ACPIPassthroughError(.badOutputAddress, outAddress)
        }
        if !below4G || outAddress + UInt64(layout.size) > 1 << 32 {
            layout = Layout(tables: tables, madtLength: filtered.length, rsdt: false)
        }
        guard out.count >= layout.size else { throw ACPIPassthroughError(.outputTooSmall, UInt64(layout.size)) }
        let tablesOut = UnsafeMutableRawBufferPointer(rebasing: out[0..<layout.size])
        tablesOut.initializeMemory(as: UInt8.self, repeating: 0)
        let madtAddress = outAddress + UInt64(layout.madt)

        // The MADT copy (5.2.12): the firmware's header and fixed part, then
        // the kept structures; length and checksum fixed.
        if let madt {
            copy(madt, 0, madtFixedLength, into: tablesOut, at: layout.madt)
            let written = filter(madt, bootAPICID: bootAPICID, alsoKeep: alsoKeep,
                                 into: UnsafeMutableRawBufferPointer(rebasing: tablesOut[layout.madt...]))
            store(UInt64(written.length), 4, into: tablesOut, at: layout.madt + 4)
            ACPITables.seal(tablesOut, layout.madt)
        }

        // The XSDT (5.2.8): the firmware root's header fields (OEM ID, OEM
        // table ID, OEM revision, creator), signature "XSDT", revision 1.
        copy(source, 0, headerLength, into: tablesOut, at: layout.xsdt)
        store(UInt64(xsdtSignature), 4, into: tablesOut, at: layout.xsdt)
        store(UInt64(layout.xsdtLength), 4, into: tablesOut, at: layout.xsdt + 4)
        tablesOut[layout.xsdt + 8] = 1
        // Second pass, bounded by the first pass's count.
        var written = 0
        for i in 0..<sourceEntries {
            var address = load(source, headerLength + i * entrySize, entrySize)
            guard address != 0 else { continue }
            if i == madtIndex {
                address = madtAddress
            } else if try signature(memory, address) == madtSignature {
                continue  // a duplicate MADT
            }
            guard written < tables else { throw ACPIPassthroughError(.tableUnreadable, address) }
            store(address, 8, into: tablesOut, at: layout.xsdt + headerLength + 8 * written)
            written += 1
        }
        // The tables changed under the first pass: fail rather than list zeros.
        guard written == tables else { throw ACPIPassthroughError(.tableUnreadable, 0) }
        ACPITables.seal(tablesOut, layout.xsdt)

        // The RSDT (5.2.7): the same list in 32-bit entries, revision 1.
        if let rsdt = layout.rsdt {
            copy(source, 0, headerLength, into: tablesOut, at: rsdt)
            store(UInt64(rsdtSignature), 4, into: tablesOut, at: rsdt)
            store(UInt64(layout.rsdtLength), 4, into: tablesOut, at: rsdt + 4)
            tablesOut[rsdt + 8] = 1
            for i in 0..<tables {
                let address = load(UnsafeRawBufferPointer(tablesOut), layout.xsdt + headerLength + 8 * i, 8)
                store(address, 4, into: tablesOut, at: rsdt + headerLength + 4 * i)
            }
            ACPITables.seal(tablesOut, rsdt)
        }

        // The RSDP (5.2.5.3), revision 2.
        var w = TableWriter(tablesOut, at: 0)
        w.put(rsdpSignature, 8)
        w.u8(0)                                           // checksum of the first 20 bytes
        w.put(root.oemID, 6)
        w.u8(2)
        w.u32(layout.rsdt.map { UInt32(truncatingIfNeeded: outAddress + UInt64($0)) } ?? 0)
        w.u32(UInt32(ACPITables.rsdpLength))
        w.u64(outAddress + UInt64(layout.xsdt))
        tablesOut[8] = ACPITables.checksum(tablesOut, 0, ACPITables.rsdpChecksummedLength)
        tablesOut[32] = ACPITables.checksum(tablesOut, 0, ACPITables.rsdpLength)

        return ACPIPassthroughResult(
            rsdpAddress: outAddress, size: layout.size, tableCount: tables,
            processorsKept: filtered.kept, processorsHidden: filtered.hidden, madtFound: madt != nil,
            rsdtIncluded: layout.rsdt != nil, warnings: warnings)
    }

    // MARK: Reading the firmware's tables

    /// A root table at `address` with `expected` signature, its entries capped at `maximumTables`.
    static func rootTable<M: PhysicalMemoryReader>(
        _ memory: M, _ address: UInt64, _ expected: UInt64, entrySize: Int
    ) throws(ACPIPassthroughError) -> UnsafeRawBufferPointer {
        let header = try read(memory, address, headerLength)
        guard load(header, 0, 4) == expected else { throw ACPIPassthroughError(.badSignature, address) }
        let length = Int(load(header, 4, 4))
        guard length >= headerLength else { throw ACPIPassthroughError(.badLength, UInt64(length)) }
        let entries = (length - headerLength) / entrySize
        guard entries <= maximumTables else { throw ACPIPassthroughError(.tooManyTables, UInt64(entries)) }
        return try read(memory, address, length)
    }

    /// A description table at `address` whose header length lies in `minimum...maximum`.
    static func readTable<M: PhysicalMemoryReader>(
        _ memory: M, _ address: UInt64, minimum: Int, maximum: Int
    ) throws(ACPIPassthroughError) -> UnsafeRawBufferPointer {
        let header = try read(memory, address, headerLength)
        let length = Int(load(header, 4, 4))
        guard length >= minimum && length <= maximum else { throw ACPIPassthroughError(.badLength, UInt64(length)) }
        return try read(memory, address, length)
    }

    /// The 4-byte signature of the table at `address`.
    static func signature<M: PhysicalMemoryReader>(_ memory: M, _ address: UInt64) throws(ACPIPassthroughError) -> UInt64 {
        load(try read(memory, address, 4), 0, 4)
    }

    /// Exactly `count` bytes at `address`, or tableUnreadable.
    static func read<M: PhysicalMemoryReader>(
        _ memory: M, _ address: UInt64, _ count: Int
    ) throws(ACPIPassthroughError) -> UnsafeRawBufferPointer {
        guard address <= UInt64.max - UInt64(count),
              let bytes = memory.bytes(at: address, count: count), bytes.count >= count,
              let base = bytes.baseAddress else { throw ACPIPassthroughError(.tableUnreadable, address) }
        return UnsafeRawBufferPointer(start: base, count: count)
    }

    // MARK: The MADT filter

    struct MADTFilter {
        var length: Int       // of the copy
        var kept: Int
        var hidden: Int
        var bootFound: Bool
        var truncated: Bool
    }

    /// Walks the MADT's interrupt controller structures (5.2.12, each: Type,
    /// Length, body). With `out`, writes the kept ones after the fixed part;
    /// without, only measures. Stops at a structure with length < 2 or running
    /// past the table.
    static func filter(_ madt: UnsafeRawBufferPointer, bootAPICID: UInt32, alsoKeep: borrowing APICIDSet,
                       into out: UnsafeMutableRawBufferPointer?) -> MADTFilter {
        var result = MADTFilter(length: madtFixedLength, kept: 0, hidden: 0, bootFound: false, truncated: false)
        var p = madtFixedLength
        while p < madt.count {
            guard p + 2 <= madt.count else { result.truncated = true; break }
            let type = madt[p]
            let length = Int(madt[p + 1])
            guard length >= 2 && p + length <= madt.count else { result.truncated = true; break }
            var keep = true
            if type == processorLocalAPIC || type == processorLocalX2APIC {
                // Local APIC: APIC ID at byte 3; local x2APIC: X2APIC ID at bytes 4-7.
                // A structure too short to hold its ID names no CPU we can keep.
                let idOffset = type == processorLocalAPIC ? 3 : 4
                let idSize = type == processorLocalAPIC ? 1 : 4
                let id = length >= idOffset + idSize ? load(madt, p + idOffset, idSize) : nil
                let boot = id == UInt64(bootAPICID)
                if boot { keep = true } else if let id, id <= UInt64(UInt32.max) { keep = alsoKeep.contains(UInt32(id)) } else { keep = false }
                if boot { result.bootFound = true }
                if keep { result.kept += 1 } else { result.hidden += 1 }
            }
            if keep {
                if let out { copy(madt, p, length, into: out, at: result.length) }
                result.length += length
            }
            p += length
        }
        return result
    }

    // MARK: Bytes

    /// Little-endian value of `count` (<= 8) bytes at `offset`.
    static func load(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ count: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<count { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return value
    }

    static func store(_ value: UInt64, _ count: Int, into bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        TableWriter(bytes, at: 0).store(value, bytes: count, at: offset)
    }

    static func copy(_ from: UnsafeRawBufferPointer, _ start: Int, _ count: Int,
                     into bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        for i in 0..<count { bytes[offset + i] = from[start + i] }
    }

    static func sum(_ bytes: UnsafeRawBufferPointer) -> UInt8 {
        var total: UInt8 = 0
        for byte in bytes { total &+= byte }
        return total
    }

    /// A signature's bytes as a little-endian integer (up to 8 characters).
    static func fourCC(_ s: StaticString) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<s.utf8CodeUnitCount { value |= UInt64(s.utf8Start[i]) << (8 * UInt64(i)) }
        return value
    }
}
