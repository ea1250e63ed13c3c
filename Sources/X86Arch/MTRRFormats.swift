// The MTRR registers other than IA32_MTRR_DEF_TYPE (in MSRFormats.swift).
// SDM 12.11 "Memory Type Range Registers (MTRRs)".

/// IA32_MTRRCAP (MSR FEH). SDM 12.11.1 "MTRR Feature Identification".
@frozen
public struct MTRRCapability: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bits 7:0 (VCNT): number of variable ranges.
    public var variableCount: Int { Int(rawValue & 0xFF) }
    /// Bit 8 (FIX): the fixed-range MTRRs exist.
    public var hasFixedRanges: Bool { rawValue & (1 << 8) != 0 }
    /// Bit 10 (WC): write-combining is supported.
    public var hasWriteCombining: Bool { rawValue & (1 << 10) != 0 }
    /// Bit 11 (SMRR): the SMM range registers exist.
    public var hasSMRR: Bool { rawValue & (1 << 11) != 0 }
}

/// IA32_MTRR_PHYSBASEn / IA32_MTRR_PHYSMASKn, n = 0..VCNT-1, at 200H + 2n
/// and 201H + 2n. SDM 12.11.2.3 "Variable Range MTRRs".
public enum MTRRVariableRangeFormat {
    /// PHYSBASE bits 7:0: the range's memory type.
    public static let typeMask: UInt64 = 0xFF
    /// PHYSMASK bit 11: the pair is in use.
    public static let validBit: UInt64 = 1 << 11
    /// PHYSBASE / PHYSMASK bits 11:0 are not address bits.
    public static let addressMask: UInt64 = ~0xFFF
    /// The MSR of PHYSBASE `n`; PHYSMASK `n` follows it.
    public static func baseMSR(_ n: Int) -> UInt32 { 0x200 + 2 * UInt32(truncatingIfNeeded: n) }
}

/// The eleven fixed-range MTRRs, each holding eight one-byte memory types for
/// consecutive sub-ranges (byte 0 the lowest). SDM 12.11.2.2 "Fixed Range
/// MTRRs": one 64K register for 0-7FFFFH, two 16K for 80000-BFFFFH, eight 4K
/// for C0000-FFFFFH.
public enum MTRRFixedRanges {
    /// The registers' MSR addresses, in address-range order.
    public static let msrs: [11 of UInt32] = [0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D,
                                             0x26E, 0x26F]
    /// The fixed ranges end here (1 MiB).
    public static let end: UInt64 = 0x10_0000

    /// The register index (0..<11), the byte in it, and the sub-range size,
    /// for an address below `end`.
    @inlinable
    public static func locate(_ address: UInt64) -> (register: Int, byte: Int, size: UInt64) {
        if address < 0x8_0000 { return (0, Int(address >> 16), 0x1_0000) }
        if address < 0xC_0000 {
            let index = Int((address - 0x8_0000) >> 14)
            return (1 + index / 8, index % 8, 0x4000)
        }
        let index = Int((address - 0xC_0000) >> 12)
        return (3 + index / 8, index % 8, 0x1000)
    }
}
