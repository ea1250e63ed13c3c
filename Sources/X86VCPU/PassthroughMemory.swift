// The EPT map of the passthrough platform: the guest (the machine's own OS)
// sees guest-physical == host-physical for everything below `top`, except the
// hypervisor's memory, which is not mapped at all and which the guest's
// memory map marks reserved. Each mapped chunk carries the memory type the
// MTRRs give it, so that with the guest's PAT the effective type is the one
// the OS would get on bare metal (SDM 29.3.7.2 "Memory Type Used for
// Translated Guest-Physical Addresses": the EPT type takes the MTRRs' place).
//
// With the MTRRs off (DEF_TYPE.E = 0) or absent (MTRRCAP = 0, as some
// emulators report), hardware would make everything UC. That is a boot-time
// state of firmware, or an emulator that does not model caching; either way
// the OS expects cached RAM, so firmware RAM and ACPI memory (types 1, 3, 4)
// become WB and everything else, MMIO included, UC. A page only partly such
// memory is UC.

import X86Arch

/// Why a passthrough plan cannot be built.
public enum PassthroughMemoryError: Error, Equatable, Sendable {
    /// More hypervisor ranges than `HypervisorRanges.capacity`.
    case tooManyHypervisorRanges
    /// MAXPHYADDR outside 32...52.
    case unsupportedPhysicalAddressWidth(Int)
    /// The guest's memory map does not fit an `E820Map`.
    case memoryMap(E820Error)
}

/// The hypervisor's own physical memory, up to `capacity` ranges.
public struct HypervisorRanges: Sendable {
    public static let capacity = 8

    var storage: [8 of Range<UInt64>] = .init(repeating: 0..<0)
    public internal(set) var count = 0

    public init() {}

    /// Adds a range (any alignment, any order; overlaps are fine).
    public mutating func append(_ range: Range<UInt64>) throws(PassthroughMemoryError) {
        guard count < Self.capacity else { throw .tooManyHypervisorRanges }
        storage[count] = range
        count += 1
    }

    /// Range `index`; an empty range outside 0 ..< count.
    public subscript(index: Int) -> Range<UInt64> { index >= 0 && index < count ? storage[index] : 0..<0 }
}

/// What to map for a passthrough guest, and the memory map it gets.
public struct PassthroughMemoryPlan: Sendable {
    static let page: UInt64 = 0x1000
    static let gibibyte: UInt64 = 0x4000_0000

    /// The pool the hypervisor keeps for its frames: 2 MiB (the boot CPU's
    /// vCPU, the EPT, the bitmaps) plus `framesPerCPU` for each other CPU, in
    /// whole 2 MiB pages (EPT maps the rest of the range with large pages),
    /// and at least 4 MiB.
    public static func poolBytes(otherCPUs: Int, framesPerCPU: Int) -> UInt64 {
        let twoMiB: UInt64 = 2 << 20
        let needed = twoMiB + UInt64(max(otherCPUs, 0)) * UInt64(max(framesPerCPU, 0)) * page
        return max(4 << 20, (needed + twoMiB - 1) & ~(twoMiB - 1))
    }

    /// The end of the mapped space: the highest of 4 GiB, the firmware map's
    /// end and the end of any valid variable MTRR range (MMIO above 4 GiB is
    /// not in the firmware map, but MTRRs may describe it), rounded up to
    /// 1 GiB and capped at 2^MAXPHYADDR.
    public let top: UInt64
    /// The firmware map, normalized, with each withheld range reserved.
    public let guestMemoryMap: E820Map
    /// The hypervisor ranges rounded outward to 4 KiB, sorted, merged, and
    /// clipped to `top` (empty ones dropped).
    public let withheld: HypervisorRanges
    /// For logging: mapped chunks, bytes mapped, bytes withheld below `top`.
    public private(set) var chunkCount = 0
    public private(set) var mappedBytes: UInt64 = 0
    public private(set) var withheldBytes: UInt64 = 0

    let firmware: E820Map
    let mtrr: MTRRState

    /// `firmware` as the loader gave it (any order, overlaps allowed);
    /// `mtrr` read with the same `physicalAddressBits` (CPUID 80000008H
    /// EAX[7:0]). Map each chunk with ignore-PAT clear, so the guest's PAT
    /// combines with the EPT type as it would with the MTRRs' type.
    public init(firmware: E820Map, hypervisor: HypervisorRanges, mtrr: MTRRState,
                physicalAddressBits: Int) throws(PassthroughMemoryError) {
        guard (32...52).contains(physicalAddressBits) else {
            throw .unsupportedPhysicalAddressWidth(physicalAddressBits)
        }
        let limit = UInt64(1) << UInt64(physicalAddressBits)
        let normalized: E820Map
        do { normalized = try firmware.normalized() } catch { throw .memoryMap(error) }

        var highest: UInt64 = 4 * Self.gibibyte
        if normalized.count > 0 { highest = max(highest, normalized[normalized.count - 1].end) }
        highest = max(highest, min(mtrr.highestVariableRangeEnd, limit))
        let rounded = highest > UInt64.max - (Self.gibibyte - 1)
            ? limit : (highest + Self.gibibyte - 1) / Self.gibibyte * Self.gibibyte
        let top = min(rounded, limit)

        let withheld = Self.sortedPages(hypervisor, below: top)
        var guestMap = normalized
        var bytes: UInt64 = 0
        for i in 0..<withheld.count {
            bytes += withheld[i].upperBound - withheld[i].lowerBound
            do { try guestMap.reserve(withheld[i]) } catch { throw .memoryMap(error) }
        }
        self.top = top
        self.guestMemoryMap = guestMap
        self.withheld = withheld
        self.withheldBytes = bytes
        self.firmware = normalized
        self.mtrr = mtrr

        var chunks = 0
        var mapped: UInt64 = 0
        forEachMapping { (start: UInt64, end: UInt64, _: EPTMemoryType) in
            chunks += 1
            mapped += end - start
        }
        chunkCount = chunks
        mappedBytes = mapped
    }

    /// Calls `body` for each chunk to map, in ascending order: together they
    /// cover [0, top) minus the withheld ranges, each 4 KiB-aligned, of one
    /// memory type, and as long as possible (neighbours differ in type or are
    /// separated by a withheld range).
    public func forEachMapping<E: Error>(
        _ body: (_ start: UInt64, _ end: UInt64, _ type: EPTMemoryType) throws(E) -> Void
    ) throws(E) {
        var pendingStart: UInt64 = 0
        var pendingEnd: UInt64 = 0
        var pendingType = EPTMemoryType.uncacheable
        var cursor: UInt64 = 0
        var next = 0 // the next withheld range
        while cursor < top {
            // The gap up to the next withheld range, or to top.
            var gapEnd = top
            if next < withheld.count {
                let hole = withheld[next]
                if hole.lowerBound <= cursor {
                    cursor = max(cursor, hole.upperBound)
                    next += 1
                    continue
                }
                gapEnd = hole.lowerBound
            }
            while cursor < gapEnd {
                let type = memoryType(at: cursor)
                var end = typeBoundary(after: cursor)
                if end <= cursor || end > gapEnd { end = gapEnd }
                if pendingEnd == cursor && pendingType == type && pendingEnd > pendingStart {
                    pendingEnd = end
                } else {
                    if pendingEnd > pendingStart { try body(pendingStart, pendingEnd, pendingType) }
                    pendingStart = cursor
                    pendingEnd = end
                    pendingType = type
                }
                cursor = end
            }
        }
        if pendingEnd > pendingStart { try body(pendingStart, pendingEnd, pendingType) }
    }

    /// The EPT memory type of the 4 KiB page at `address` (see the file comment).
    public func memoryType(at address: UInt64) -> EPTMemoryType {
        if mtrr.isEnabled { return EPTMemoryType(rawValue: mtrr.type(at: address).rawValue) }
        let page = address / Self.page * Self.page
        var at = page
        // Cached only if firmware RAM or ACPI memory covers the whole page;
        // the normalized map's entries are sorted and disjoint.
        let entries = firmware.storage.span
        for i in 0..<firmware.count where entries[i].end > at && at < page + Self.page {
            guard entries[i].base <= at, Self.isCachedWithoutMTRRs(entries[i].type) else { return .uncacheable }
            at = entries[i].end
        }
        return at >= page + Self.page ? .writeBack : .uncacheable
    }

    /// The next 4 KiB boundary above `address` where `memoryType(at:)` may change.
    func typeBoundary(after address: UInt64) -> UInt64 {
        if mtrr.isEnabled { return mtrr.nextBoundary(after: address) }
        // A firmware entry edge b changes the type of the page holding it, so
        // the type may change at b rounded down and at b rounded up.
        var next = UInt64.max
        let entries = firmware.storage.span
        for i in 0..<firmware.count {
            next = min(next, Self.pageEdge(entries[i].base, after: address))
            next = min(next, Self.pageEdge(entries[i].end, after: address))
        }
        return next
    }

    /// The first of `edge` rounded down or up to a page that lies above `address`.
    static func pageEdge(_ edge: UInt64, after address: UInt64) -> UInt64 {
        let down = edge / page * page
        if down > address { return down }
        let up = down == edge ? edge : down &+ page
        return up > address ? up : UInt64.max
    }

    static func isCachedWithoutMTRRs(_ type: UInt32) -> Bool {
        type == E820Entry.ram || type == E820Entry.acpiReclaimable || type == E820Entry.acpiNVS
    }

    /// `ranges` rounded outward to pages, clipped to [0, top), sorted, with
    /// overlapping and adjacent ones merged.
    static func sortedPages(_ ranges: HypervisorRanges, below top: UInt64) -> HypervisorRanges {
        var sorted = HypervisorRanges()
        for i in 0..<ranges.count {
            let r = ranges[i]
            guard !r.isEmpty else { continue }
            let lower = r.lowerBound / page * page
            let upper = min(r.upperBound > top - page ? top : (r.upperBound + page - 1) / page * page, top)
            guard lower < upper else { continue }
            var slot = sorted.count
            sorted.count += 1
            while slot > 0, sorted.storage[slot - 1].lowerBound > lower {
                sorted.storage[slot] = sorted.storage[slot - 1]
                slot -= 1
            }
            sorted.storage[slot] = lower..<upper
        }
        var merged = HypervisorRanges()
        for i in 0..<sorted.count {
            let r = sorted.storage[i]
            if merged.count > 0, merged.storage[merged.count - 1].upperBound >= r.lowerBound {
                let last = merged.storage[merged.count - 1]
                merged.storage[merged.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                merged.storage[merged.count] = r
                merged.count += 1
            }
        }
        return merged
    }
}
