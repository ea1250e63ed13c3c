// Extended page tables: the second-level translation from guest-physical to
// host-physical addresses that confines the guest to the memory we give it.
// SDM Vol. 3C 29.3 "The Extended Page Table Mechanism (EPT)".

import X86Arch
import VMX

/// What the processor's EPT supports (decoded from IA32_VMX_EPT_VPID_CAP by
/// another layer). A plain input: the table builder only uses page sizes and
/// memory types the processor accepts, so a table it builds never causes an
/// EPT misconfiguration.
public struct EPTFeatures: Equatable, Sendable {
    /// Capability bit 6: a page walk of length 4 (the only length we build).
    public var supports4LevelWalk: Bool
    /// Capability bit 16: a PDE may map a 2 MiB page.
    public var supports2MiBPages: Bool
    /// Capability bit 17: a PDPTE may map a 1 GiB page.
    public var supports1GiBPages: Bool
    /// Capability bit 21: accessed and dirty flags (EPTP bit 6 may be set).
    public var supportsAccessedDirty: Bool
    /// Capability bit 14: the EPT paging structures may be write-back.
    public var supportsWriteBack: Bool
    /// Capability bit 8: the EPT paging structures may be uncacheable.
    public var supportsUncacheable: Bool
    /// Capability bit 0: execute-only translations (X without R) are allowed.
    public var supportsExecuteOnly: Bool

    public init(supports4LevelWalk: Bool, supports2MiBPages: Bool, supports1GiBPages: Bool,
                supportsAccessedDirty: Bool, supportsWriteBack: Bool, supportsUncacheable: Bool,
                supportsExecuteOnly: Bool = false) {
        self.supports4LevelWalk = supports4LevelWalk
        self.supports2MiBPages = supports2MiBPages
        self.supports1GiBPages = supports1GiBPages
        self.supportsAccessedDirty = supportsAccessedDirty
        self.supportsWriteBack = supportsWriteBack
        self.supportsUncacheable = supportsUncacheable
        self.supportsExecuteOnly = supportsExecuteOnly
    }
}

/// Access rights of an EPT mapping: bits 2:0 of every EPT entry.
/// A set of bits like an OptionSet, but not one: OptionSet's array-literal
/// requirements allocate, which the kernel build forbids.
// SDM 29.3.2 "EPT Translation Mechanism" (Tables 29-1 .. 29-6, bits 0, 1, 2)
public struct EPTPermissions: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public func contains(_ other: EPTPermissions) -> Bool { rawValue & other.rawValue == other.rawValue }
    public func union(_ other: EPTPermissions) -> EPTPermissions { EPTPermissions(rawValue: rawValue | other.rawValue) }
    public static func | (lhs: EPTPermissions, rhs: EPTPermissions) -> EPTPermissions { lhs.union(rhs) }

    public static let read = EPTPermissions(rawValue: 1 << 0)
    public static let write = EPTPermissions(rawValue: 1 << 1)
    public static let execute = EPTPermissions(rawValue: 1 << 2)
    public static let readWrite = EPTPermissions(rawValue: 0b011)
    /// Read, write and execute: the usual rights for guest RAM.
    public static let readWriteExecute = EPTPermissions(rawValue: 0b111)
}

/// The memory type of an EPT leaf (bits 5:3), used with the guest PAT unless
/// the ignore-PAT bit is set. A struct rather than an enum so that a reserved
/// value read back from an entry can still be represented and reported.
// SDM 29.3.7 "EPT and Memory Typing": 0=UC, 1=WC, 4=WT, 5=WP, 6=WB; 2, 3, 7 reserved
public struct EPTMemoryType: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let uncacheable = EPTMemoryType(rawValue: 0)
    public static let writeCombining = EPTMemoryType(rawValue: 1)
    public static let writeThrough = EPTMemoryType(rawValue: 4)
    public static let writeProtected = EPTMemoryType(rawValue: 5)
    public static let writeBack = EPTMemoryType(rawValue: 6)

    /// False for the reserved encodings 2, 3 and 7 (and anything above 7),
    /// which make a leaf an EPT misconfiguration.
    public var isValid: Bool {
        switch rawValue {
        case 0, 1, 4, 5, 6: return true
        default: return false
        }
    }
}

/// The size of the region one EPT leaf maps.
public enum EPTPageSize: Equatable, Sendable {
    case size4KiB, size2MiB, size1GiB

    public var bytes: UInt64 {
        switch self {
        case .size4KiB: return 0x1000
        case .size2MiB: return 0x20_0000
        case .size1GiB: return 0x4000_0000
        }
    }
}

/// The four levels of a 4-level EPT walk, by the number the SDM gives them.
public enum EPTLevel: Int, Equatable, Sendable {
    case pml4 = 4, pdpt = 3, pd = 2, pt = 1

    /// How many guest-physical bytes one entry at this level covers.
    public var entryCoverage: UInt64 { 1 << entryShift }
    @usableFromInline var entryShift: UInt64 { 12 + 9 * UInt64(rawValue - 1) }
    /// The next level down, nil for the page table.
    public var below: EPTLevel? { EPTLevel(rawValue: rawValue - 1) }
    /// The index of `gpa`'s entry in a table of this level (9 bits).
    @usableFromInline func index(of gpa: UInt64) -> Int { Int((gpa >> entryShift) & 0x1FF) }
}

/// Why a map or unmap request was refused. Every failure leaves the table
/// translating exactly as before the call.
public enum EPTError: Error, Equatable, Sendable {
    /// A size of zero bytes.
    case zeroSize
    /// An address or size that is not a multiple of 4 KiB.
    case misaligned
    /// The guest-physical range goes beyond the 48 bits a 4-level walk translates.
    case guestPhysicalOutOfRange
    /// The host-physical range goes beyond the processor's physical-address width.
    case hostPhysicalOutOfRange
    /// No rights, write without read, stray bits, or execute-only on a
    /// processor without execute-only support: each an EPT misconfiguration.
    case invalidPermissions
    /// A reserved memory type (2, 3, 7 or above 7).
    case invalidMemoryType(UInt8)
    /// Part of the range is already mapped; the first mapped guest-physical address.
    case overlapsExistingMapping(guestPhysical: UInt64)
    /// The frame allocator ran out; nothing was changed.
    case outOfMemory
    /// The features lack a 4-level walk or both WB and UC paging-structure
    /// memory types, or the physical-address width is outside 32...52.
    case unsupportedConfiguration
}

/// The result of translating one guest-physical address.
public struct EPTTranslation: Equatable, Sendable {
    public let hostPhysical: UInt64
    /// The AND of the R/W/X bits of every entry on the walk.
    public let permissions: EPTPermissions
    public let pageSize: EPTPageSize
    public let memoryType: EPTMemoryType
    public let ignorePAT: Bool
}

/// One EPT paging-structure entry with its level, decoded for diagnostics.
// SDM 29.3.2 "EPT Translation Mechanism", Tables 29-1 .. 29-6 (entry formats)
public struct EPTEntry: Equatable, Sendable {
    public let raw: UInt64
    public let level: EPTLevel

    public init(raw: UInt64, level: EPTLevel) {
        self.raw = raw
        self.level = level
    }

    /// An entry is present when any of bits 2:0 is set.
    public var isPresent: Bool { raw & 0b111 != 0 }
    public var permissions: EPTPermissions { EPTPermissions(rawValue: raw & 0b111) }
    /// Bit 7 in a PDPTE or PDE: the entry maps a page rather than a table.
    /// A PTE always maps a page.
    public var mapsPage: Bool {
        switch level {
        case .pt: return true
        case .pd, .pdpt: return raw & EPTEntryBits.pageSize != 0
        case .pml4: return false
        }
    }
    /// Bits 5:3 of a leaf.
    public var memoryType: EPTMemoryType { EPTMemoryType(rawValue: UInt8((raw >> 3) & 0b111)) }
    /// Bit 6 of a leaf.
    public var ignorePAT: Bool { raw & (1 << 6) != 0 }
    /// Bit 8: set by the processor when EPTP bit 6 enables A/D flags.
    public var accessed: Bool { raw & (1 << 8) != 0 }
    /// Bit 9 of a leaf: set by the processor on a write when A/D flags are on.
    public var dirty: Bool { raw & (1 << 9) != 0 }
    /// The physical address of the next table or of the page (bits 51:12,
    /// with the low bits of a large page's address cleared).
    public var address: UInt64 {
        let all = raw & EPTEntryBits.address
        switch (level, mapsPage) {
        case (.pdpt, true): return all & ~(EPTLevel.pdpt.entryCoverage - 1)
        case (.pd, true): return all & ~(EPTLevel.pd.entryCoverage - 1)
        default: return all
        }
    }

    /// Why the processor would report an EPT misconfiguration for this entry,
    /// or nil when it would not. A non-present entry is a violation, never a
    /// misconfiguration.
    // SDM 29.3.3.1 "EPT Misconfigurations"
    public func misconfiguration(features: EPTFeatures, physicalAddressBits: Int) -> EPTMisconfiguration? {
        guard isPresent else { return nil }
        if raw & 0b011 == 0b010 { return .writeWithoutRead }
        if raw & 0b101 == 0b100 && !features.supportsExecuteOnly { return .executeOnlyUnsupported }
        var reserved = EPTEntryBits.address & ~EPTEntryBits.addressMask(bits: physicalAddressBits)
        switch level {
        case .pml4:
            reserved |= 0xF8 // bits 7:3
        case .pdpt where mapsPage:
            if !features.supports1GiBPages { reserved |= EPTEntryBits.pageSize }
            reserved |= 0x3FFF_F000 // bits 29:12
        case .pd where mapsPage:
            if !features.supports2MiBPages { reserved |= EPTEntryBits.pageSize }
            reserved |= 0x1F_F000 // bits 20:12
        case .pdpt, .pd:
            reserved |= 0x78 // bits 6:3 of an entry that references a table
        case .pt:
            break
        }
        if raw & reserved != 0 { return .reservedBitsSet(raw & reserved) }
        if mapsPage && !memoryType.isValid { return .invalidMemoryType(memoryType.rawValue) }
        return nil
    }
}

/// The reasons SDM 29.3.3.1 gives for an EPT misconfiguration.
public enum EPTMisconfiguration: Equatable, Sendable {
    case writeWithoutRead
    case executeOnlyUnsupported
    /// The reserved bits that are set (including bit 7 at a level whose page
    /// size is unsupported, and address bits beyond the physical-address width).
    case reservedBitsSet(UInt64)
    case invalidMemoryType(UInt8)
}

/// The entries one walk of `guestPhysical` read, top down, stopping at the
/// first entry that is not present or maps a page. For reporting EPT
/// violations and misconfigurations.
public struct EPTWalk: Equatable, Sendable {
    public let guestPhysical: UInt64
    public let pml4e: EPTEntry
    public let pdpte: EPTEntry?
    public let pde: EPTEntry?
    public let pte: EPTEntry?

    /// The last entry read: the leaf, or the first non-present entry.
    public var last: EPTEntry { pte ?? pde ?? pdpte ?? pml4e }

    /// The first entry on the walk that is misconfigured, with the reason.
    public func firstMisconfiguration(features: EPTFeatures, physicalAddressBits: Int)
        -> (entry: EPTEntry, reason: EPTMisconfiguration)? {
        func check(_ entry: EPTEntry?) -> (entry: EPTEntry, reason: EPTMisconfiguration)? {
            guard let entry,
                  let reason = entry.misconfiguration(features: features, physicalAddressBits: physicalAddressBits)
            else { return nil }
            return (entry, reason)
        }
        return check(pml4e) ?? check(pdpte) ?? check(pde) ?? check(pte)
    }
}

@usableFromInline enum EPTEntryBits {
    /// Bit 7: maps a 1 GiB (PDPTE) or 2 MiB (PDE) page.
    @usableFromInline static let pageSize: UInt64 = 1 << 7
    /// Bits 51:12: the address field at its widest.
    @usableFromInline static let address: UInt64 = 0x000F_FFFF_FFFF_F000
    /// A table reference grants everything; the leaf decides.
    @usableFromInline static let tableRights: UInt64 = 0b111
    /// Bits (N-1):12 for an N-bit physical-address width.
    @usableFromInline static func addressMask(bits: Int) -> UInt64 {
        address & ((1 << UInt64(bits)) &- 1)
    }
}

/// A 4-level extended page table that owns every one of its table frames.
/// The root (PML4) lives as long as the value; every lower table is taken
/// from the allocator on demand and all of them are returned in `deinit`.
///
/// Changing a mapping that the guest may have cached (unmap, or a split)
/// needs an INVEPT by the caller before the guest runs again.
public struct ExtendedPageTable<A: FrameAllocator>: ~Copyable {
    private let root: PhysFrame<A>
    public let features: EPTFeatures
    /// The processor's physical-address width N (CPUID 0x80000008 EAX[7:0]).
    public let physicalAddressBits: Int

    /// A 4-level walk translates 48 guest-physical address bits.
    // SDM 29.3.2 "EPT Translation Mechanism"
    public static var guestPhysicalLimit: UInt64 { 1 << 48 }

    /// An empty table: a zeroed PML4 maps nothing.
    public init(allocator: A, features: EPTFeatures, physicalAddressBits: Int) throws(EPTError) {
        guard features.supports4LevelWalk, features.supportsWriteBack || features.supportsUncacheable,
              (32...52).contains(physicalAddressBits) else { throw .unsupportedConfiguration }
        do { root = try PhysFrame(from: allocator) } catch { throw .outOfMemory }
        self.features = features
        self.physicalAddressBits = physicalAddressBits
    }

    deinit {
        freeSubtables(of: root.address, level: .pml4)
    }

    /// The physical address of the PML4 table.
    public var rootAddress: UInt64 { root.address }

    /// The VMCS EPT-pointer field for this table: paging-structure memory
    /// type WB when supported (the tables live in ordinary RAM), else UC;
    /// walk length minus one (3) in bits 5:3; bit 6 only when A/D flags are
    /// both requested and supported; the PML4 address in bits N-1:12.
    // SDM 25.6.11 "Extended-Page-Table Pointer (EPTP)"
    public func eptPointer(enableAccessedDirty: Bool) -> UInt64 {
        var value = root.address
        value |= UInt64(features.supportsWriteBack ? EPTMemoryType.writeBack.rawValue
                                                   : EPTMemoryType.uncacheable.rawValue)
        value |= (4 - 1) << 3
        if enableAccessedDirty && features.supportsAccessedDirty { value |= 1 << 6 }
        return value
    }

    // MARK: Mapping

    /// Maps `size` bytes at `guestPhysical` to `hostPhysical`, using the
    /// largest pages (1 GiB, 2 MiB, 4 KiB) that both addresses' alignment,
    /// the remaining size and the features allow. The range must be unmapped.
    /// On any error nothing changes (tables built for a failed call are freed).
    public mutating func map(guestPhysical: UInt64, hostPhysical: UInt64, size: UInt64,
                             permissions: EPTPermissions, memoryType: EPTMemoryType = .writeBack,
                             ignorePAT: Bool = false) throws(EPTError) {
        let end = try checkRange(guestPhysical: guestPhysical, size: size)
        guard hostPhysical & 0xFFF == 0 else { throw .misaligned }
        let (hostEnd, hostOverflow) = hostPhysical.addingReportingOverflow(size)
        guard !hostOverflow, hostEnd <= 1 << UInt64(physicalAddressBits) else { throw .hostPhysicalOutOfRange }
        try checkPermissions(permissions)
        guard memoryType.isValid else { throw .invalidMemoryType(memoryType.rawValue) }
        if let mapped = firstMapped(table: root.address, level: .pml4, base: 0, start: guestPhysical, end: end) {
            throw .overlapsExistingMapping(guestPhysical: mapped)
        }

        // SDM 29.3.2: leaf bits 2:0 rights, 5:3 memory type, 6 ignore PAT, 7 page size
        let leafFlags = permissions.rawValue | UInt64(memoryType.rawValue) << 3 | (ignorePAT ? 1 << 6 : 0)
        var gpa = guestPhysical
        var hpa = hostPhysical
        while gpa < end {
            let level = leafLevel(guestPhysical: gpa, hostPhysical: hpa, remaining: end - gpa)
            guard installLeaf(guestPhysical: gpa, hostPhysical: hpa, level: level, flags: leafFlags) else {
                // Roll back: the whole range was unmapped before this call, so
                // clearing it removes exactly what this call added, and frees
                // every table that became empty. Leaves lie inside the range,
                // so no split (and no allocation) is needed.
                _ = clear(table: root.address, level: .pml4, base: 0, start: guestPhysical, end: end)
                throw .outOfMemory
            }
            gpa += level.entryCoverage
            hpa += level.entryCoverage
        }
    }

    /// Removes every mapping in `size` bytes at `guestPhysical`; holes in the
    /// range are fine. A large page that straddles an end of the range is
    /// split into the next smaller pages first, so the part outside the range
    /// stays mapped as before. Tables left empty are freed.
    /// Splitting may need frames: on `.outOfMemory` no mapping has changed
    /// (a split that did happen translates exactly as the large page did).
    public mutating func unmap(guestPhysical: UInt64, size: UInt64) throws(EPTError) {
        let end = try checkRange(guestPhysical: guestPhysical, size: size)
        try splitLeaf(around: guestPhysical)
        if end < Self.guestPhysicalLimit { try splitLeaf(around: end) }
        _ = clear(table: root.address, level: .pml4, base: 0, start: guestPhysical, end: end)
    }

    // MARK: Lookup

    /// The translation of `guestPhysical`, or nil when the walk meets a
    /// non-present entry (an access would be an EPT violation).
    public func translate(_ guestPhysical: UInt64) -> EPTTranslation? {
        let walk = walkEntries(guestPhysical)
        let leaf = walk.last
        guard leaf.isPresent, leaf.mapsPage else { return nil }
        // SDM 29.3.2: an access is allowed only if every entry on the walk allows it
        var rights = walk.pml4e.raw & EPTEntryBits.tableRights
        rights &= walk.pdpte?.raw ?? EPTEntryBits.tableRights
        rights &= walk.pde?.raw ?? EPTEntryBits.tableRights
        rights &= walk.pte?.raw ?? EPTEntryBits.tableRights
        let size: EPTPageSize = switch leaf.level {
        case .pdpt: .size1GiB
        case .pd: .size2MiB
        default: .size4KiB
        }
        return EPTTranslation(hostPhysical: leaf.address | (guestPhysical & (size.bytes - 1)),
                              permissions: EPTPermissions(rawValue: rights), pageSize: size,
                              memoryType: leaf.memoryType, ignorePAT: leaf.ignorePAT)
    }

    /// The entries a hardware walk of `guestPhysical` reads (bits 47:0 of the
    /// address are used), to explain an EPT violation or misconfiguration.
    public func walkEntries(_ guestPhysical: UInt64) -> EPTWalk {
        var found: (EPTEntry?, EPTEntry?, EPTEntry?, EPTEntry?) = (nil, nil, nil, nil)
        var table = root.address
        var level = EPTLevel.pml4
        while true {
            let entry = EPTEntry(raw: load(table, level.index(of: guestPhysical)), level: level)
            switch level {
            case .pml4: found.0 = entry
            case .pdpt: found.1 = entry
            case .pd: found.2 = entry
            case .pt: found.3 = entry
            }
            guard entry.isPresent, !entry.mapsPage, let next = level.below else { break }
            table = entry.raw & EPTEntryBits.address
            level = next
        }
        return EPTWalk(guestPhysical: guestPhysical, pml4e: found.0 ?? EPTEntry(raw: 0, level: .pml4),
                       pdpte: found.1, pde: found.2, pte: found.3)
    }

    // MARK: Validation

    private func checkRange(guestPhysical: UInt64, size: UInt64) throws(EPTError) -> UInt64 {
        guard size != 0 else { throw .zeroSize }
        guard guestPhysical & 0xFFF == 0, size & 0xFFF == 0 else { throw .misaligned }
        let (end, overflow) = guestPhysical.addingReportingOverflow(size)
        guard !overflow, end <= Self.guestPhysicalLimit else { throw .guestPhysicalOutOfRange }
        return end
    }

    // SDM 29.3.3.1 "EPT Misconfigurations": write without read; execute-only
    // without the capability; bits 2:0 all clear would be "not present".
    private func checkPermissions(_ permissions: EPTPermissions) throws(EPTError) {
        let raw = permissions.rawValue
        guard raw != 0, raw & ~EPTPermissions.readWriteExecute.rawValue == 0 else { throw .invalidPermissions }
        if permissions.contains(.write) && !permissions.contains(.read) { throw .invalidPermissions }
        if permissions == .execute && !features.supportsExecuteOnly { throw .invalidPermissions }
    }

    /// The largest page level usable at this point of a mapping.
    private func leafLevel(guestPhysical: UInt64, hostPhysical: UInt64, remaining: UInt64) -> EPTLevel {
        func fits(_ level: EPTLevel) -> Bool {
            let size = level.entryCoverage
            return guestPhysical & (size - 1) == 0 && hostPhysical & (size - 1) == 0 && remaining >= size
        }
        // A 1 GiB page is only used when 2 MiB pages exist too, so that a
        // later partial unmap can always split it one level down.
        if features.supports1GiBPages && features.supports2MiBPages && fits(.pdpt) { return .pdpt }
        if features.supports2MiBPages && fits(.pd) { return .pd }
        return .pt
    }

    // MARK: Table surgery

    private func load(_ table: UInt64, _ index: Int) -> UInt64 {
        root.allocator.pointer(to: table).load(fromByteOffset: index &* 8, as: UInt64.self)
    }

    private func store(_ table: UInt64, _ index: Int, _ value: UInt64) {
        root.allocator.pointer(to: table).storeBytes(of: value, toByteOffset: index &* 8, as: UInt64.self)
    }

    private func isLeaf(_ entry: UInt64, _ level: EPTLevel) -> Bool {
        EPTEntry(raw: entry, level: level).mapsPage
    }

    /// The first guest-physical address in [start, end) that a present leaf
    /// maps, searching the subtree of `table` (which covers from `base`).
    private func firstMapped(table: UInt64, level: EPTLevel, base: UInt64, start: UInt64, end: UInt64) -> UInt64? {
        let coverage = level.entryCoverage
        var index = Int((max(start, base) - base) / coverage)
        while index < 512 {
            let entryBase = base + UInt64(index) * coverage
            if entryBase >= end { break }
            let entry = load(table, index)
            if entry & 0b111 != 0 {
                if isLeaf(entry, level) { return max(entryBase, start) }
                if let below = level.below,
                   let found = firstMapped(table: entry & EPTEntryBits.address, level: below,
                                           base: entryBase, start: start, end: end) {
                    return found
                }
            }
            index += 1
        }
        return nil
    }

    /// Writes one leaf, building the missing tables above it. False when a
    /// frame could not be had (the tables built so far stay, empty, for the
    /// caller's rollback to free).
    private func installLeaf(guestPhysical: UInt64, hostPhysical: UInt64, level target: EPTLevel,
                             flags: UInt64) -> Bool {
        var table = root.address
        var level = EPTLevel.pml4
        while level != target {
            let index = level.index(of: guestPhysical)
            let entry = load(table, index)
            guard let below = level.below else { return false }
            if entry & 0b111 == 0 {
                guard let frame = root.allocator.allocateFrame() else { return false }
                store(table, index, frame | EPTEntryBits.tableRights)
                table = frame
            } else {
                // The overlap check guarantees a table here, never a leaf.
                guard !isLeaf(entry, level) else { return false }
                table = entry & EPTEntryBits.address
            }
            level = below
        }
        let pageBit = target == .pt ? 0 : EPTEntryBits.pageSize
        store(table, target.index(of: guestPhysical), hostPhysical | flags | pageBit)
        return true
    }

    /// Makes `boundary` the start of a leaf if it falls inside a large page,
    /// splitting 1 GiB into 2 MiB pages and 2 MiB into 4 KiB pages as needed.
    /// Each split maps the same addresses with the same attributes.
    private func splitLeaf(around boundary: UInt64) throws(EPTError) {
        var table = root.address
        var level = EPTLevel.pml4
        while let below = level.below {
            let index = level.index(of: boundary)
            let entry = load(table, index)
            guard entry & 0b111 != 0 else { return }
            if isLeaf(entry, level) {
                if boundary & (level.entryCoverage - 1) == 0 { return }
                guard let frame = root.allocator.allocateFrame() else { throw .outOfMemory }
                // Keep every attribute bit (rights, memory type, ignore PAT,
                // A/D, and bits 63:52); only the address and page size change.
                let attributes = entry & ~(EPTEntryBits.address | EPTEntryBits.pageSize)
                let start = EPTEntry(raw: entry, level: level).address
                let pageBit = below == .pt ? 0 : EPTEntryBits.pageSize
                for i in 0..<512 {
                    store(frame, i, (start + UInt64(i) * below.entryCoverage) | attributes | pageBit)
                }
                store(table, index, frame | EPTEntryBits.tableRights)
                table = frame
            } else {
                table = entry & EPTEntryBits.address
            }
            level = below
        }
    }

    /// Clears every leaf that lies wholly in [start, end) under `table`
    /// (covering from `base`) and frees lower tables that become empty.
    /// Returns whether `table` is now empty.
    private func clear(table: UInt64, level: EPTLevel, base: UInt64, start: UInt64, end: UInt64) -> Bool {
        let coverage = level.entryCoverage
        var index = Int((max(start, base) - base) / coverage)
        while index < 512 {
            let entryBase = base + UInt64(index) * coverage
            if entryBase >= end { break }
            let entry = load(table, index)
            if entry & 0b111 != 0 {
                if isLeaf(entry, level) {
                    // A leaf reaching past the range was split beforehand by
                    // unmap; a rollback's leaves all lie inside it.
                    if entryBase >= start && entryBase + coverage <= end { store(table, index, 0) }
                } else if let below = level.below {
                    let child = entry & EPTEntryBits.address
                    if clear(table: child, level: below, base: entryBase, start: start, end: end) {
                        store(table, index, 0)
                        root.allocator.freeFrame(child)
                    }
                }
            }
            index += 1
        }
        for i in 0..<512 where load(table, i) & 0b111 != 0 { return false }
        return true
    }

    /// Returns every table below `table` to the allocator (not `table` itself).
    private func freeSubtables(of table: UInt64, level: EPTLevel) {
        guard let below = level.below else { return }
        for i in 0..<512 {
            let entry = load(table, i)
            guard entry & 0b111 != 0, !isLeaf(entry, level) else { continue }
            let child = entry & EPTEntryBits.address
            freeSubtables(of: child, level: below)
            root.allocator.freeFrame(child)
        }
    }
}
