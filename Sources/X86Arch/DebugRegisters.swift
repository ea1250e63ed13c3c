// Debug registers and IA32_DEBUGCTL. SDM 18.2 "Debug Registers",
// 18.4.1 "IA32_DEBUGCTL MSR".

/// DR7, the debug control register.
public enum DR7 {
    /// Bit 10: reserved, reads as 1.
    public static let fixedOne: UInt64 = 1 << 10
    /// The value after reset: 400H.
    public static let initial: UInt64 = fixedOne
    /// Bits 63:32: reserved, must be 0.
    public static let reservedHigh: UInt64 = 0xFFFF_FFFF_0000_0000
}

/// IA32_DEBUGCTL (MSR 1D9H) bits.
@frozen
public struct DebugCtl: BitFlags {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: last-branch record.
    public static let lbr = Self(rawValue: 1 << 0)
    /// Bit 1: single-step on branches.
    public static let btf = Self(rawValue: 1 << 1)
    /// Bit 6: trace messages enable.
    public static let tr = Self(rawValue: 1 << 6)
    /// Bit 7: branch trace store.
    public static let bts = Self(rawValue: 1 << 7)
    /// Bit 14: freeze performance monitoring while SMM runs.
    public static let freezeWhileSMM = Self(rawValue: 1 << 14)
    /// Bit 15: RTM debugging.
    public static let rtm = Self(rawValue: 1 << 15)
}
