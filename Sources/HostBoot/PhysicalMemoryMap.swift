// The RAM the frame allocator may hand out, computed from the Multiboot2 memory
// map ("3.6.8 Memory map") minus everything already in use at boot.
//
// Rules, in order:
// 1. Every map entry must have a non-zero length and must not wrap past 2^64.
// 2. Overlaps: an available (type 1) entry that overlaps any other entry is an
//    error, whatever the other entry's type. A loader that resolved its firmware
//    map (GRUB does) never emits one, so an overlap means the map cannot be
//    trusted; guessing which entry wins could hand out ACPI or MMIO memory.
//    Overlaps among non-available entries change nothing we hand out and are
//    accepted.
// 3. Usable = available entries, minus [0, 1 MiB) (real-mode IVT, BDA, EBDA, BIOS
//    and the trampolines live there), minus every reserved range the kernel
//    passes (its image, the boot information, each module, ...), each piece
//    shrunk inward to whole 4 KiB frames. ACPI reclaimable (type 3) memory is not
//    used: the guest gets the ACPI tables.
// 4. Each module must lie inside available RAM: one entry, or adjacent ones
//    (an EFI map splits RAM by owner), else the loader and the map disagree.
// Adjacent usable pieces are merged: an EFI map has many small entries.

import X86Arch
import VMX
import X86VCPU

/// A memory map the hypervisor cannot build its allocator from.
public enum PhysicalMemoryMapError: Error, Equatable {
    /// The boot information has no memory map tag.
    case noMemoryMap
    /// Map entry `index` has length 0.
    case zeroLengthRegion(index: Int)
    /// Map entry `index` ends beyond 2^64.
    case regionWrapsAround(index: Int)
    /// Map entries `first` and `second` overlap and at least one is available RAM.
    case overlappingRegions(first: Int, second: Int)
    /// Reserved range `index` has its end below its start.
    case invalidReservedRange(index: Int)
    /// More reserved ranges than `PhysicalMemoryMap.ReservedRanges.capacity`.
    case tooManyReservedRanges
    /// Module `index` is not fully inside one available map entry.
    case moduleOutsideRAM(index: Int)
    /// More usable pieces than `PhysicalMemoryMap.capacity`.
    case tooManyRegions
    /// Nothing usable is left above 1 MiB.
    case noUsableMemory

    /// A one-line explanation for the panic report.
    public var message: StaticString {
        switch self {
        case .noMemoryMap: "boot info has no memory map"
        case .zeroLengthRegion: "memory map entry with zero length"
        case .regionWrapsAround: "memory map entry wraps past 2^64"
        case .overlappingRegions: "memory map entries overlap available RAM"
        case .invalidReservedRange: "reserved range ends before it starts"
        case .tooManyReservedRanges: "too many reserved ranges"
        case .moduleOutsideRAM: "boot module outside available RAM"
        case .tooManyRegions: "too many usable memory regions"
        case .noUsableMemory: "no usable RAM above 1 MiB"
        }
    }
}

/// Usable physical RAM: up to `capacity` disjoint, frame-aligned ranges sorted by
/// address, with the totals the boot banner prints. Fixed-size, no heap.
public struct PhysicalMemoryMap {
    /// A half-open physical address range `[start, end)`.
    public struct Range: Equatable {
        public var start: UInt64
        /// One past the last byte.
        public var end: UInt64

        public init(start: UInt64, end: UInt64) {
            self.start = start
            self.end = end
        }

        /// `[start, start + size)`, or nil when that wraps past 2^64.
        public init?(start: UInt64, size: UInt64) {
            let (end, overflow) = start.addingReportingOverflow(size)
            guard !overflow else { return nil }
            self.init(start: start, end: end)
        }

        /// Bytes in the range (0 when `end <= start`).
        public var size: UInt64 { end > start ? end - start : 0 }
        public var isEmpty: Bool { end <= start }
        public func contains(_ address: UInt64) -> Bool { address >= start && address < end }
        /// True when `other` lies entirely inside this range.
        public func contains(_ other: Range) -> Bool { other.start >= start && other.end <= end }
        /// True when the two ranges share at least one byte.
        public func overlaps(_ other: Range) -> Bool {
            !isEmpty && !other.isEmpty && start < other.end && other.start < end
        }
    }

    /// Ranges already in use at boot that must never be handed out; fixed capacity.
    public struct ReservedRanges {
        public static let capacity = 32
        var storage = InlineArray<32, Range>(repeating: Range(start: 0, end: 0))
        public private(set) var count = 0

        public init() {}

        /// Adds a range; throws when full or when `end < start`.
        public mutating func append(_ range: Range) throws(PhysicalMemoryMapError) {
            guard range.end >= range.start else { throw .invalidReservedRange(index: count) }
            guard count < Self.capacity else { throw .tooManyReservedRanges }
            storage[count] = range
            count += 1
        }

        /// Range `index`; `index` must be in `0..<count`.
        public subscript(index: Int) -> Range { storage[index] }
    }

    /// Most usable ranges the map keeps.
    public static let capacity = 64
    /// Memory below this address is never handed out.
    public static let lowMemoryEnd: UInt64 = 0x10_0000

    var storage = InlineArray<64, Range>(repeating: Range(start: 0, end: 0))
    /// Number of usable ranges.
    public private(set) var count = 0
    /// Sum of all available (type 1) map entries, below 1 MiB and reserved parts
    /// included: the machine's RAM as the banner reports it.
    public let totalAvailableBytes: UInt64
    /// Sum of the usable ranges: what the frame allocator may hand out.
    public private(set) var usableBytes: UInt64 = 0

    /// Builds the usable map from a memory map and the kernel's reserved ranges.
    public init(
        memoryMap map: Multiboot2Info.MemoryMap, reserved: ReservedRanges
    ) throws(PhysicalMemoryMapError) {
        // Rule 1 and the available total.
        var total: UInt64 = 0
        var index = 0
        while index < map.count {
            let region = map[index]
            guard region.length != 0 else { throw .zeroLengthRegion(index: index) }
            guard Range(start: region.base, size: region.length) != nil else {
                throw .regionWrapsAround(index: index)
            }
            if region.kind == .available { total &+= region.length }
            index += 1
        }
        totalAvailableBytes = total

        // Rule 2: any overlap involving available RAM.
        var first = 0
        while first < map.count {
            let a = map[first]
            let rangeA = Range(start: a.base, end: a.base + a.length)
            var second = first + 1
            while second < map.count {
                let b = map[second]
                if a.kind == .available || b.kind == .available,
                   rangeA.overlaps(Range(start: b.base, end: b.base + b.length)) {
                    throw .overlappingRegions(first: first, second: second)
                }
                second += 1
            }
            first += 1
        }

        // Rule 3: reserved ranges sorted by start, then each available entry cut
        // around them.
        var sorted = InlineArray<32, Range>(repeating: Range(start: 0, end: 0))
        var sortedCount = 0
        index = 0
        while index < reserved.count {
            let range = reserved[index] // `append` already rejected end < start.
            var slot = sortedCount
            while slot > 0, sorted[slot - 1].start > range.start {
                sorted[slot] = sorted[slot - 1]
                slot -= 1
            }
            sorted[slot] = range
            sortedCount += 1
            index += 1
        }

        index = 0
        while index < map.count {
            let region = map[index]
            index += 1
            guard region.kind == .available else { continue }
            let end = region.base + region.length
            var cursor = max(region.base, Self.lowMemoryEnd)
            var cut = 0
            while cut < sortedCount, cursor < end {
                let hole = sorted[cut]
                cut += 1
                guard hole.end > cursor, hole.start < end, !hole.isEmpty else { continue }
                if hole.start > cursor { try insert(Range(start: cursor, end: hole.start)) }
                cursor = max(cursor, hole.end)
            }
            if cursor < end { try insert(Range(start: cursor, end: end)) }
        }
        guard count > 0 else { throw .noUsableMemory }
    }

    /// Builds the usable map from the boot information: reserves the boot
    /// information itself, every module (each must lie in available RAM) and the
    /// kernel image, plus any `extra` ranges (e.g. a framebuffer in RAM).
    public init(
        info: Multiboot2Info, kernelImage: Range, extra: ReservedRanges = ReservedRanges()
    ) throws(PhysicalMemoryMapError) {
        guard let map = info.memoryMap else { throw .noMemoryMap }
        var reserved = extra
        try reserved.append(kernelImage)
        try reserved.append(info.infoRange)
        var modules = info.modules
        var moduleIndex = 0
        while let module = modules.next() {
            guard Self.availableCovers(map, module.range) else { throw .moduleOutsideRAM(index: moduleIndex) }
            try reserved.append(module.range)
            moduleIndex += 1
        }
        try self.init(memoryMap: map, reserved: reserved)
    }

    /// True when `range` lies in available entries that touch one another
    /// (an empty range: inside or at the end of one available entry).
    static func availableCovers(_ map: Multiboot2Info.MemoryMap, _ range: Range) -> Bool {
        var cursor = range.start
        // Each pass moves the cursor to an entry's end; at most one pass per entry.
        var passes = 0
        while passes <= map.count {
            var next: UInt64? = nil
            var index = 0
            while index < map.count {
                let region = map[index]
                index += 1
                guard region.kind == .available, let ram = Range(start: region.base, size: region.length) else {
                    continue
                }
                if ram.start <= cursor, cursor < ram.end || (range.isEmpty && cursor == ram.end) {
                    next = ram.end
                    break
                }
            }
            guard let end = next else { return false }
            if end >= range.end { return true }
            cursor = end
            passes += 1
        }
        return false
    }

    /// Adds one piece, shrunk inward to whole frames, keeping the list sorted.
    mutating func insert(_ piece: Range) throws(PhysicalMemoryMapError) {
        let (rounded, overflow) = piece.start.addingReportingOverflow(frameSize - 1)
        guard !overflow else { return }
        let start = rounded & ~(frameSize - 1)
        let end = piece.end & ~(frameSize - 1)
        guard start < end else { return }
        usableBytes += end - start
        // Merge with a neighbour that touches it (the pieces never overlap).
        var index = 0
        while index < count {
            if storage[index].end == start {
                storage[index].end = end
                if index + 1 < count, storage[index + 1].start == end { remove(at: index + 1, mergingInto: index) }
                return
            }
            if storage[index].start == end {
                storage[index].start = start
                if index > 0, storage[index - 1].end == start { remove(at: index, mergingInto: index - 1) }
                return
            }
            index += 1
        }
        guard count < Self.capacity else { throw .tooManyRegions }
        var slot = count
        while slot > 0, storage[slot - 1].start > start {
            storage[slot] = storage[slot - 1]
            slot -= 1
        }
        storage[slot] = Range(start: start, end: end)
        count += 1
    }

    /// Joins piece `index` into its neighbour `into` and closes the gap.
    mutating func remove(at index: Int, mergingInto into: Int) {
        storage[into] = Range(start: min(storage[into].start, storage[index].start),
                              end: max(storage[into].end, storage[index].end))
        var move = index
        while move + 1 < count {
            storage[move] = storage[move + 1]
            move += 1
        }
        count -= 1
    }

    /// Usable range `index` (sorted by address); `index` must be in `0..<count`.
    public subscript(index: Int) -> Range { storage[index] }

    /// Calls `body` for each usable range, lowest address first.
    public func forEach<E: Error>(_ body: (Range) throws(E) -> Void) throws(E) {
        var index = 0
        while index < count {
            try body(storage[index])
            index += 1
        }
    }

    /// The lowest usable address (0 when the map is empty).
    public var lowestUsableAddress: UInt64 { count > 0 ? storage[0].start : 0 }
    /// One past the highest usable byte (0 when the map is empty).
    public var highestUsableEnd: UInt64 { count > 0 ? storage[count - 1].end : 0 }
    /// `[lowestUsableAddress, highestUsableEnd)`: what a frame bitmap must cover.
    public var span: Range { Range(start: lowestUsableAddress, end: highestUsableEnd) }

    /// Removes `byteCount` bytes (rounded up to whole frames) from the start of
    /// the lowest usable range large enough, and returns their address; nil when
    /// no range is large enough. This is how the kernel carves out the frame
    /// bitmap's own storage before building the bitmap from this map.
    public mutating func takeFirstFit(byteCount: UInt64) -> UInt64? {
        guard byteCount > 0, byteCount <= UInt64.max - (frameSize - 1) else { return nil }
        let bytes = (byteCount + frameSize - 1) & ~(frameSize - 1)
        var index = 0
        while index < count {
            let range = storage[index]
            if range.size >= bytes {
                if range.size == bytes {
                    var move = index
                    while move + 1 < count {
                        storage[move] = storage[move + 1]
                        move += 1
                    }
                    count -= 1
                } else {
                    storage[index].start = range.start + bytes
                }
                usableBytes -= bytes
                return range.start
            }
            index += 1
        }
        return nil
    }
}
