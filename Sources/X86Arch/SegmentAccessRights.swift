// Segment access rights as the VMCS holds them.

/// The segment access-rights format of the VMCS guest-state area.
/// SDM 25.4.1 "Guest Register State", Table 25-2 "Format of Access Rights".
@frozen
public struct SegmentAccessRights: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bits 3:0: segment type.
    public var type: UInt32 { rawValue & 0xF }
    /// Bit 4: descriptor type, 1 = code or data, 0 = system.
    public var isCodeOrData: Bool { rawValue & (1 << 4) != 0 }
    /// Bits 6:5: descriptor privilege level.
    public var dpl: UInt32 { (rawValue >> 5) & 3 }
    /// Bit 7: segment present.
    public var isPresent: Bool { rawValue & (1 << 7) != 0 }
    /// Bit 13: 64-bit mode active (CS only).
    public var isLong: Bool { rawValue & (1 << 13) != 0 }
    /// Bit 14: default operation size (0 = 16-bit, 1 = 32-bit).
    public var isDefaultBig: Bool { rawValue & (1 << 14) != 0 }
    /// Bit 15: granularity (limit in 4 KiB units).
    public var isPageGranular: Bool { rawValue & (1 << 15) != 0 }
    /// Bit 16: segment unusable (a null selector was loaded).
    public var isUnusable: Bool { rawValue & (1 << 16) != 0 }
    /// Bits 11:8 and 31:17, which must be 0 in a usable segment.
    public var reservedBits: UInt32 { rawValue & 0xFFFE_0F00 }
}
