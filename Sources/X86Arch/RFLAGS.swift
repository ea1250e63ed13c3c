// RFLAGS. SDM Vol. 1 3.4.3 "EFLAGS Register", Vol. 3A 2.3 "System Flags and Fields in the EFLAGS Register".

/// RFLAGS bits.
@frozen
public struct RFLAGS: BitFlags {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let cf = Self(rawValue: 1 << 0)
    /// Bit 1: reserved, always 1.
    public static let fixedOne = Self(rawValue: 1 << 1)
    public static let pf = Self(rawValue: 1 << 2)
    public static let af = Self(rawValue: 1 << 4)
    public static let zf = Self(rawValue: 1 << 6)
    public static let sf = Self(rawValue: 1 << 7)
    /// Bit 8: trap flag (single-step).
    public static let tf = Self(rawValue: 1 << 8)
    /// Bit 9: interrupt enable flag.
    public static let interruptEnable = Self(rawValue: 1 << 9)
    public static let df = Self(rawValue: 1 << 10)
    public static let of = Self(rawValue: 1 << 11)
    /// Bits 13:12: I/O privilege level.
    public static let iopl = Self(rawValue: 3 << 12)
    public static let nt = Self(rawValue: 1 << 14)
    public static let rf = Self(rawValue: 1 << 16)
    /// Bit 17: virtual-8086 mode.
    public static let vm = Self(rawValue: 1 << 17)
    public static let ac = Self(rawValue: 1 << 18)
    public static let vif = Self(rawValue: 1 << 19)
    public static let vip = Self(rawValue: 1 << 20)
    public static let id = Self(rawValue: 1 << 21)

    /// Bits 63:22, 15, 5 and 3: reserved, must be 0.
    public static let reserved = Self(rawValue: 0xFFFF_FFFF_FFC0_8028)
    /// The value after reset: only the fixed bit 1.
    public static let initial = fixedOne
}
