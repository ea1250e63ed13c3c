// Paging formats. SDM Vol. 3A 4 "Paging".

/// The error code pushed with #PF.
// SDM 4.7 "Page-Fault Exceptions" (Figure 4-12)
public struct PageFaultErrorCode: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 0: a non-present page; 1: a protection or reserved-bit violation.
    public static let present = PageFaultErrorCode(rawValue: 1 << 0)
    /// The access was a write.
    public static let write = PageFaultErrorCode(rawValue: 1 << 1)
    /// The access was a user-mode access.
    public static let user = PageFaultErrorCode(rawValue: 1 << 2)
    /// A reserved bit was set in some paging-structure entry.
    public static let reservedBit = PageFaultErrorCode(rawValue: 1 << 3)
    /// The access was an instruction fetch (only with SMEP, or PAE-style paging with NXE).
    public static let instructionFetch = PageFaultErrorCode(rawValue: 1 << 4)

    public func contains(_ other: PageFaultErrorCode) -> Bool { rawValue & other.rawValue == other.rawValue }
    public static func | (lhs: PageFaultErrorCode, rhs: PageFaultErrorCode) -> PageFaultErrorCode {
        PageFaultErrorCode(rawValue: lhs.rawValue | rhs.rawValue)
    }
}
