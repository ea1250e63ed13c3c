// Segments: access rights as the VMCS holds them, segment types, selectors
// and descriptors. SDM Vol. 3A 3.4.2 "Segment Selectors", 3.4.5 "Segment
// Descriptors", 3.5 "System Descriptor Types"; SDM 25.4.1 "Guest Register
// State", Table "Format of Access Rights".

/// The 4-bit type field of a segment descriptor (access rights bits 3:0).
/// SDM Vol. 3A 3.4.5.1 "Code- and Data-Segment Descriptor Types", 3.5
/// "System Descriptor Types".
public enum SegmentType {
    /// Bit 0 (code or data): accessed.
    public static let accessed: UInt32 = 1 << 0
    /// Bit 1: writable (data) or readable (code).
    public static let writableOrReadable: UInt32 = 1 << 1
    /// Bit 2: expand-down (data) or conforming (code).
    public static let expandDownOrConforming: UInt32 = 1 << 2
    /// Bit 3: code (1) or data (0).
    public static let code: UInt32 = 1 << 3

    /// 3: read/write data, accessed.
    public static let dataReadWriteAccessed: UInt32 = 3
    /// 7: read/write expand-down data, accessed.
    public static let dataReadWriteExpandDownAccessed: UInt32 = 7
    /// 9: execute-only code, accessed.
    public static let codeExecuteAccessed: UInt32 = 9
    /// 11: execute/read code, accessed.
    public static let codeExecuteReadAccessed: UInt32 = 11
    /// 13: execute-only conforming code, accessed.
    public static let codeConformingAccessed: UInt32 = 13
    /// 15: execute/read conforming code, accessed.
    public static let codeConformingReadAccessed: UInt32 = 15

    // System types (S = 0).
    /// 2: LDT.
    public static let ldt: UInt32 = 2
    /// 3: busy 16-bit TSS.
    public static let busyTSS16: UInt32 = 3
    /// 11: busy 32-bit TSS (busy 64-bit TSS in IA-32e mode).
    public static let busyTSS: UInt32 = 11
}

/// The segment access-rights format of the VMCS guest-state area (the
/// descriptor's bits 47:40 and 55:52, plus the unusable bit).
/// SDM 25.4.1 "Guest Register State", Table "Format of Access Rights".
@frozen
public struct SegmentAccessRights: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bits 3:0: segment type (`SegmentType`).
    public static let typeMask: UInt32 = 0xF
    /// Bit 4: descriptor type S, 1 = code or data, 0 = system.
    public static let codeOrDataBit: UInt32 = 1 << 4
    /// Bits 6:5: descriptor privilege level.
    public static let dplShift: UInt32 = 5
    public static let dplMask: UInt32 = 3 << 5
    /// Bit 7: segment present.
    public static let presentBit: UInt32 = 1 << 7
    /// Bit 12: available for system software.
    public static let availableBit: UInt32 = 1 << 12
    /// Bit 13: L, 64-bit code segment (CS only).
    public static let longBit: UInt32 = 1 << 13
    /// Bit 14: D/B, default operation size 32-bit.
    public static let defaultBigBit: UInt32 = 1 << 14
    /// Bit 15: G, limit in 4 KiB units.
    public static let granularityBit: UInt32 = 1 << 15
    /// Bit 16: segment unusable (a null selector was loaded).
    public static let unusableBit: UInt32 = 1 << 16
    /// Bits 11:8 and 31:17, which must be 0 in a usable segment.
    public static let reservedMask: UInt32 = 0xFFFE_0F00

    /// Composes access rights from the descriptor fields.
    @inlinable
    public init(type: UInt32, codeOrData: Bool = true, dpl: UInt32 = 0, present: Bool = true,
                long: Bool = false, defaultBig: Bool = false, pageGranular: Bool = false, unusable: Bool = false) {
        rawValue = type & Self.typeMask | (codeOrData ? Self.codeOrDataBit : 0) | (dpl & 3) << Self.dplShift
            | (present ? Self.presentBit : 0) | (long ? Self.longBit : 0) | (defaultBig ? Self.defaultBigBit : 0)
            | (pageGranular ? Self.granularityBit : 0) | (unusable ? Self.unusableBit : 0)
    }

    /// Bits 3:0: segment type.
    @inlinable public var type: UInt32 { rawValue & Self.typeMask }
    /// Bit 4: descriptor type, 1 = code or data, 0 = system.
    @inlinable public var isCodeOrData: Bool { rawValue & Self.codeOrDataBit != 0 }
    /// Bits 6:5: descriptor privilege level.
    @inlinable public var dpl: UInt32 { (rawValue & Self.dplMask) >> Self.dplShift }
    /// Bit 7: segment present.
    @inlinable public var isPresent: Bool { rawValue & Self.presentBit != 0 }
    /// Bit 13: 64-bit mode active (CS only).
    @inlinable public var isLong: Bool { rawValue & Self.longBit != 0 }
    /// Bit 14: default operation size (0 = 16-bit, 1 = 32-bit).
    @inlinable public var isDefaultBig: Bool { rawValue & Self.defaultBigBit != 0 }
    /// Bit 15: granularity (limit in 4 KiB units).
    @inlinable public var isPageGranular: Bool { rawValue & Self.granularityBit != 0 }
    /// Bit 16: segment unusable (a null selector was loaded).
    @inlinable public var isUnusable: Bool { rawValue & Self.unusableBit != 0 }
    /// Bits 11:8 and 31:17, which must be 0 in a usable segment.
    @inlinable public var reservedBits: UInt32 { rawValue & Self.reservedMask }

    // Common values.
    /// 9BH: present ring-0 execute/read code, 16-bit (real mode, as after reset).
    public static let code16 = Self(type: SegmentType.codeExecuteReadAccessed)
    /// 93H: present ring-0 read/write data, 16-bit.
    public static let data16 = Self(type: SegmentType.dataReadWriteAccessed)
    /// C09BH: flat 32-bit code (D/B and G set).
    public static let code32 = Self(type: SegmentType.codeExecuteReadAccessed, defaultBig: true, pageGranular: true)
    /// A09BH: 64-bit code (L and G set).
    public static let code64 = Self(type: SegmentType.codeExecuteReadAccessed, long: true, pageGranular: true)
    /// C093H: flat 32-bit read/write data (D/B and G set).
    public static let data32 = Self(type: SegmentType.dataReadWriteAccessed, defaultBig: true, pageGranular: true)
    /// F3H: what every segment holds in virtual-8086 mode (ring-3 read/write data).
    public static let virtual8086 = Self(type: SegmentType.dataReadWriteAccessed, dpl: 3)
    /// 8BH: present busy 32/64-bit TSS.
    public static let busyTSS = Self(type: SegmentType.busyTSS, codeOrData: false)
    /// 10000H: unusable (a null selector).
    public static let unusable = Self(rawValue: unusableBit)
}

/// A segment selector. SDM Vol. 3A 3.4.2 "Segment Selectors".
public enum SegmentSelector {
    /// Bits 1:0: requested privilege level.
    public static let rplMask: UInt16 = 3
    /// Bit 2: table indicator, 1 = LDT.
    public static let tableIndicator: UInt16 = 1 << 2
    /// Bits 15:3: the descriptor index; `selector & indexMask` is its byte offset in the table.
    public static let indexMask: UInt16 = 0xFFF8
}

/// An 8-byte code or data segment descriptor (the low 8 bytes of a system
/// descriptor in IA-32e mode). SDM Vol. 3A 3.4.5 "Segment Descriptors".
@frozen
public struct SegmentDescriptor: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The descriptor for `base`, a 20-bit `limit` (in the units G gives) and
    /// `rights` (type, S, DPL, P in bits 47:40; AVL, L, D/B, G in bits 55:52).
    @inlinable
    public init(base: UInt32, limit: UInt32, rights: SegmentAccessRights) {
        let b = UInt64(base), l = UInt64(limit), r = UInt64(rights.rawValue)
        rawValue = l & 0xFFFF | (b & 0xFF_FFFF) << 16 | (r & 0xFF) << 40 | (l >> 16 & 0xF) << 48
            | (r >> 12 & 0xF) << 52 | (b >> 24 & 0xFF) << 56
    }

    /// The base address bits 31:0.
    @inlinable public var base: UInt32 { UInt32(truncatingIfNeeded: (rawValue >> 16) & 0xFF_FFFF | (rawValue >> 56) << 24) }
    /// The 20-bit limit field.
    @inlinable public var limit: UInt32 { UInt32(truncatingIfNeeded: rawValue & 0xFFFF | (rawValue >> 48 & 0xF) << 16) }
    /// The access rights in the VMCS format.
    @inlinable public var rights: SegmentAccessRights {
        SegmentAccessRights(rawValue: UInt32(truncatingIfNeeded: (rawValue >> 40) & 0xFF | (rawValue >> 52 & 0xF) << 12))
    }

    /// The base of a 16-byte system descriptor (TSS, LDT) in IA-32e mode:
    /// bits 31:0 from `low`, bits 63:32 from `high`. SDM Vol. 3A 8.2.3 "TSS
    /// Descriptor in 64-bit mode".
    @inlinable
    public static func systemBase(low: UInt64, high: UInt64) -> UInt64 {
        UInt64(SegmentDescriptor(rawValue: low).base) | (high & 0xFFFF_FFFF) << 32
    }
}
