// The formats of MSRs the hypervisor emulates or loads: IA32_PAT,
// IA32_APIC_BASE, IA32_MTRR_DEF_TYPE. (IA32_EFER and IA32_FEATURE_CONTROL
// are in MSR.swift.)

/// A memory type as PAT, the MTRRs and EPT encode it.
/// SDM 12.3 "Methods of Caching Available", 12.12.2 "IA32_PAT MSR".
public enum MemoryType: UInt8, Sendable {
    case uncacheable = 0
    case writeCombining = 1
    case writeThrough = 4
    case writeProtected = 5
    case writeBack = 6
    /// UC-: PAT only (the MTRRs and EPT reserve 7).
    case uncached = 7
}

/// IA32_PAT (MSR 277H): eight entries PA0-PA7, one memory type per byte.
/// SDM 12.12.2 "IA32_PAT MSR".
@frozen
public struct PAT: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The value after reset: WB, WT, UC-, UC repeated (00070406_00070406H).
    public static let powerOn = PAT(rawValue: 0x0007_0406_0007_0406)

    /// Entry `index` (0...7).
    @inlinable
    public func entry(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: rawValue >> UInt64(8 * (index & 7))) }

    /// Whether WRMSR accepts the value: every byte a memory type PAT can
    /// encode (0, 1, 4, 5, 6, 7). WRMSR raises #GP otherwise, and VM entry
    /// rejects such a value when it loads IA32_PAT.
    @inlinable
    public var isValid: Bool {
        var bytes = rawValue
        for _ in 0..<8 {
            guard MemoryType(rawValue: UInt8(truncatingIfNeeded: bytes)) != nil else { return false }
            bytes >>= 8
        }
        return true
    }
}

/// IA32_APIC_BASE (MSR 1BH). SDM 11.4.4 "Local APIC Status and Location".
@frozen
public struct APICBase: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 8: this processor is the bootstrap processor.
    public static let bspBit: UInt64 = 1 << 8
    /// Bit 10: x2APIC mode enable.
    public static let x2APICEnableBit: UInt64 = 1 << 10
    /// Bit 11: APIC global enable.
    public static let globalEnableBit: UInt64 = 1 << 11
    /// Bits 7:0 and 9: reserved.
    public static let reservedLowMask: UInt64 = 0x2FF
    /// The default base address of the local APIC's registers.
    public static let defaultAddress: UInt64 = 0xFEE0_0000
    /// The value after reset on the BSP: default address, enabled, BSP.
    public static let resetBSP = APICBase(rawValue: defaultAddress | globalEnableBit | bspBit)

    @inlinable public var isGloballyEnabled: Bool { rawValue & Self.globalEnableBit != 0 }
}

/// IA32_MTRR_DEF_TYPE (MSR 2FFH). SDM 12.11.2.1 "IA32_MTRR_DEF_TYPE MSR".
@frozen
public struct MTRRDefType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bits 7:0: default memory type.
    public static let typeMask: UInt64 = 0xFF
    /// Bit 10: fixed-range MTRRs enable.
    public static let fixedEnableBit: UInt64 = 1 << 10
    /// Bit 11: MTRRs enable.
    public static let enableBit: UInt64 = 1 << 11
    /// The bits that may be set; the rest are reserved.
    public static let writableMask: UInt64 = typeMask | fixedEnableBit | enableBit
}
