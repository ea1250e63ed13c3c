// A firmware memory map with fixed capacity (no heap): collect the loader's
// entries, normalize them into sorted, disjoint ranges, and carve ranges out
// of it (the hypervisor's memory) before handing it to a guest.
//
// Overlaps resolve to the type that asks more of the OS to leave the range
// alone: RAM (1) < ACPI reclaimable (3) < ACPI NVS (4) < any other type
// (reserved 2, unusable 5, unknown ones), the higher number winning among
// those. Linux's e820 sanitizer takes the highest number outright; this order
// differs only in that reserved beats ACPI reclaimable and NVS, so memory
// firmware called reserved is never reclaimed.

import X86Arch

/// Why an `E820Map` cannot take an entry.
public enum E820Error: Error, Equatable, Sendable {
    /// More than `E820Map.capacity` entries would be needed.
    case full
    /// The entry runs past 2^64 (its base is given).
    case wrapsAround(base: UInt64)
}

/// Up to `capacity` memory map entries.
public struct E820Map: Equatable, Sendable {
    public static let capacity = 128

    var storage: [128 of E820Entry]
    public private(set) var count = 0

    public init() { storage = .init(repeating: E820Entry(base: 0, length: 0, type: 0)) }

    /// Entry `index`; an empty entry outside 0 ..< count.
    public subscript(index: Int) -> E820Entry {
        index >= 0 && index < count ? storage[index] : E820Entry(base: 0, length: 0, type: 0)
    }

    public static func == (a: E820Map, b: E820Map) -> Bool {
        guard a.count == b.count else { return false }
        let x = a.storage.span, y = b.storage.span
        for i in 0..<a.count where x[i] != y[i] { return false }
        return true
    }

    /// Appends an entry as given (no sorting); zero-length entries are dropped.
    public mutating func add(base: UInt64, length: UInt64, type: UInt32) throws(E820Error) {
        guard length != 0 else { return }
        guard base <= UInt64.max - length else { throw .wrapsAround(base: base) }
        guard count < Self.capacity else { throw .full }
        storage[count] = E820Entry(base: base, length: length, type: type)
        count += 1
    }

    /// Total length of the entries of `type` (meaningful once normalized).
    public func bytes(ofType type: UInt32) -> UInt64 {
        var total: UInt64 = 0
        let entries = storage.span
        for i in 0..<count where entries[i].type == type { total &+= entries[i].length }
        return total
    }

    /// The type of the entry containing `address`, or nil in a hole.
    public func type(at address: UInt64) -> UInt32? {
        var found: UInt32? = nil
        var rank: UInt64 = 0
        let entries = storage.span
        for i in 0..<count {
            let e = entries[i]
            if e.base <= address && address < e.end && (found == nil || Self.rank(e.type) > rank) {
                found = e.type
                rank = Self.rank(e.type)
            }
        }
        return found
    }

    /// The order in which overlapping types win (see the file comment).
    static func rank(_ type: UInt32) -> UInt64 {
        switch type {
        case E820Entry.ram: 0
        case E820Entry.acpiReclaimable: 1
        case E820Entry.acpiNVS: 2
        default: 3 + UInt64(type)
        }
    }

    /// Sorts the entries, resolves overlaps by rank, and merges adjacent
    /// entries of one type. `.full` (map unchanged) if the result would not
    /// fit, which takes many small ranges punched into large ones.
    public mutating func normalize() throws(E820Error) {
        // Every entry start and end, sorted: the type is constant between two.
        var points: [256 of UInt64] = .init(repeating: 0)
        var pointCount = 0
        do {
            let entries = storage.span
            for i in 0..<count {
                Self.insertSorted(entries[i].base, into: &points, count: &pointCount)
                Self.insertSorted(entries[i].end, into: &points, count: &pointCount)
            }
        }
        var result = E820Map()
        var p = 0
        while p + 1 < pointCount {
            let start = points[p], end = points[p + 1]
            p += 1
            guard let type = type(at: start) else { continue }
            try result.appendMerging(base: start, end: end, type: type)
        }
        self = result
    }

    /// A normalized copy.
    public func normalized() throws(E820Error) -> E820Map {
        var copy = self
        try copy.normalize()
        return copy
    }

    /// Normalizes, then makes `range` one entry of `type`: entries it overlaps
    /// are cut around it, and holes inside it are covered. `.full` (map
    /// unchanged) if the pieces do not fit.
    public mutating func reserve(_ range: Range<UInt64>, as type: UInt32 = E820Entry.reserved) throws(E820Error) {
        let source = try normalized()
        guard !range.isEmpty else { self = source; return }
        var result = E820Map()
        var placed = false
        let entries = source.storage.span
        for i in 0..<source.count {
            let e = entries[i]
            if e.base < range.lowerBound {
                try result.appendMerging(base: e.base, end: min(e.end, range.lowerBound), type: e.type)
            }
            if !placed && e.end > range.lowerBound {
                try result.appendMerging(base: range.lowerBound, end: range.upperBound, type: type)
                placed = true
            }
            if e.end > range.upperBound {
                try result.appendMerging(base: max(e.base, range.upperBound), end: e.end, type: e.type)
            }
        }
        if !placed { try result.appendMerging(base: range.lowerBound, end: range.upperBound, type: type) }
        self = result
    }

    /// A normalized map of at most `limit` entries for a boot protocol's
    /// table: adjacent non-RAM entries (reserved, ACPI, NVS, unusable) merge
    /// into reserved ones, the narrowest pair first, until it fits. RAM is
    /// never merged or dropped; nil when the RAM entries alone do not fit.
    public func compacted(toAtMost limit: Int) throws(E820Error) -> E820Map? {
        var map = try normalized()
        while map.count > limit {
            var best = -1
            var bestWidth = UInt64.max
            for i in 0..<(map.count - 1) {
                let a = map.storage[i], b = map.storage[i + 1]
                guard a.type != E820Entry.ram, b.type != E820Entry.ram, a.end == b.base else { continue }
                if b.end - a.base < bestWidth { best = i; bestWidth = b.end - a.base }
            }
            guard best >= 0 else { return nil }
            let merged = E820Entry(base: map.storage[best].base, length: bestWidth, type: E820Entry.reserved)
            map.storage[best] = merged
            for j in (best + 1)..<(map.count - 1) { map.storage[j] = map.storage[j + 1] }
            map.count -= 1
        }
        return map
    }

    /// Appends [base, end) after the last entry, extending it if adjacent
    /// and of the same type. Callers append in ascending order.
    mutating func appendMerging(base: UInt64, end: UInt64, type: UInt32) throws(E820Error) {
        guard end > base else { return }
        if count > 0, storage[count - 1].type == type, storage[count - 1].end == base {
            storage[count - 1].length = end - storage[count - 1].base
            return
        }
        try add(base: base, length: end - base, type: type)
    }

    /// Insertion into a sorted list, skipping duplicates.
    static func insertSorted(_ value: UInt64, into list: inout [256 of UInt64], count: inout Int) {
        var slot = count
        while slot > 0, list[slot - 1] >= value {
            if list[slot - 1] == value { return }
            slot -= 1
        }
        var i = count
        while i > slot { list[i] = list[i - 1]; i -= 1 }
        list[slot] = value
        count += 1
    }
}
