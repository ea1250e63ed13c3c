/// A set of named bits over an unsigned integer: the part of `OptionSet` this
/// library needs.
///
/// Why not `OptionSet`: it refines `SetAlgebra`, hence `ExpressibleByArrayLiteral`,
/// and any such conformance makes Embedded Swift emit array code that
/// `-no-allocations` rejects ("cannot use allocating type
/// '__SwiftNativeNSArrayWithContiguousStorage'"). Combine flags with `|`.
public protocol BitFlags: RawRepresentable, Hashable, Sendable
where RawValue: FixedWidthInteger & UnsignedInteger & Sendable {
    init(rawValue: RawValue)
}

extension BitFlags {
    /// No bits set.
    @inlinable public static var empty: Self { Self(rawValue: 0) }
    @inlinable public var isEmpty: Bool { rawValue == 0 }

    /// Whether every bit of `other` is set here.
    @inlinable public func contains(_ other: Self) -> Bool { rawValue & other.rawValue == other.rawValue }
    /// Whether any bit of `other` is set here.
    @inlinable public func intersects(_ other: Self) -> Bool { rawValue & other.rawValue != 0 }
    @inlinable public func isSuperset(of other: Self) -> Bool { contains(other) }
    @inlinable public func isSubset(of other: Self) -> Bool { other.contains(self) }

    @inlinable public func union(_ other: Self) -> Self { Self(rawValue: rawValue | other.rawValue) }
    @inlinable public func intersection(_ other: Self) -> Self { Self(rawValue: rawValue & other.rawValue) }
    @inlinable public func subtracting(_ other: Self) -> Self { Self(rawValue: rawValue & ~other.rawValue) }

    @inlinable public mutating func insert(_ other: Self) { self = union(other) }
    @inlinable public mutating func remove(_ other: Self) { self = subtracting(other) }

    @inlinable public static func | (a: Self, b: Self) -> Self { a.union(b) }
    @inlinable public static func & (a: Self, b: Self) -> Self { a.intersection(b) }
}
