// XCR0 and IA32_XSS: the state components XSAVE manages, one bit each.
// SDM 14.1 "XSAVE-Supported Features and State-Component Bitmaps",
// 14.3 "Enabling the XSAVE Feature Set and XSAVE-Enabled Features".

/// Bits of XCR0 (user state components) and IA32_XSS (supervisor components).
@frozen
public struct XCR0Bits: BitFlags {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: x87 state; XCR0 must always have it.
    public static let x87 = Self(rawValue: 1 << 0)
    /// Bit 1: SSE state (XMM registers, MXCSR).
    public static let sse = Self(rawValue: 1 << 1)
    /// Bit 2: AVX state (upper halves of YMM registers).
    public static let avx = Self(rawValue: 1 << 2)
    /// Bit 3: MPX bound registers.
    public static let bndregs = Self(rawValue: 1 << 3)
    /// Bit 4: MPX BNDCFGU and BNDSTATUS.
    public static let bndcsr = Self(rawValue: 1 << 4)
    /// Bit 5: AVX-512 opmask registers.
    public static let opmask = Self(rawValue: 1 << 5)
    /// Bit 6: AVX-512 upper halves of ZMM0-15.
    public static let zmmHi256 = Self(rawValue: 1 << 6)
    /// Bit 7: AVX-512 ZMM16-31.
    public static let hi16ZMM = Self(rawValue: 1 << 7)
    /// Bit 8: Intel PT (supervisor, IA32_XSS).
    public static let pt = Self(rawValue: 1 << 8)
    /// Bit 9: PKRU.
    public static let pkru = Self(rawValue: 1 << 9)
    /// Bit 11: CET user state (supervisor, IA32_XSS).
    public static let cetUser = Self(rawValue: 1 << 11)
    /// Bit 12: CET supervisor state (supervisor, IA32_XSS).
    public static let cetSupervisor = Self(rawValue: 1 << 12)
    /// Bit 17: AMX TILECFG.
    public static let tileConfig = Self(rawValue: 1 << 17)
    /// Bit 18: AMX TILEDATA.
    public static let tileData = Self(rawValue: 1 << 18)

    /// The three AVX-512 components, which XCR0 enables together.
    public static let avx512 = opmask | zmmHi256 | hi16ZMM
    /// The two MPX components, which XCR0 enables together.
    public static let mpx = bndregs | bndcsr
    /// The two AMX components, which XCR0 enables together.
    public static let amx = tileConfig | tileData
    /// The first component whose layout CPUID leaf 0DH describes (0 and 1
    /// live in the legacy region).
    public static let firstExtendedComponent = 2
}
