// The RTC/CMOS index and data ports (0x70, 0x71) for an operating-system
// guest that owns the clock but not the machine's firmware settings. The
// RTC registers 0x00-0x0D (time, alarm, status A-D) are the guest's; the
// NVRAM above them (firmware settings and their checksum, which survive
// power-off) reads through but is never written. Bit 7 of the index (the
// chipset's NMI mask on most PCs) stays virtual: NMIs reach the host, which
// hands them to the guest, so masking them is the guest's own affair.

/// The guest's view of ports 0x70 and 0x71 over the real RTC.
public struct CMOSPorts: Sendable {
    public static let indexPort: UInt16 = 0x70
    public static let dataPort: UInt16 = 0x71
    /// The last RTC register (status D); NVRAM starts after it.
    public static let lastClockRegister: UInt8 = 0x0D

    /// The register the guest selected (7 bits).
    public private(set) var index: UInt8 = 0
    /// The NMI-mask bit the guest last wrote with the index.
    public private(set) var nmiMasked = false

    public init() {}

    /// OUT to 0x70.
    public mutating func select(_ value: UInt8) {
        index = value & 0x7F
        nmiMasked = value & 0x80 != 0
    }

    /// IN from 0x70: what the guest last wrote (many chipsets read it back).
    public var indexValue: UInt8 { index | (nmiMasked ? 0x80 : 0) }

    /// Whether OUT to 0x71 at the selected register reaches the hardware.
    public var dataWritable: Bool { index <= Self.lastClockRegister }
}
