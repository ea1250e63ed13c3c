// Local APIC register formats, no logic. SDM Vol. 3A "Advanced Programmable
// Interrupt Controller (APIC)": "Local APIC Register Address Map" (the xAPIC
// MMIO offsets) and "x2APIC Register Address Space" (MSR 800H + offset >> 4).

/// A local APIC register by its index: the xAPIC MMIO offset >> 4, which is
/// also the x2APIC MSR minus 800H.
public struct LocalAPICRegister: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The first x2APIC MSR; register `r` is MSR `x2APICBase + r.rawValue`.
    public static let x2APICBase: UInt32 = 0x800
    /// The last MSR of the x2APIC range (SDM "x2APIC Register Address Space").
    public static let x2APICLast: UInt32 = 0x8FF

    /// The register at a 16-byte-aligned xAPIC MMIO offset of the APIC page.
    public init?(mmioOffset: UInt32) {
        guard mmioOffset & 0xF == 0, mmioOffset < 0x1000 else { return nil }
        rawValue = UInt16(mmioOffset >> 4)
    }

    /// The register of an x2APIC MSR (800H-8FFH).
    public init?(msr: UInt32) {
        guard msr >= Self.x2APICBase, msr <= Self.x2APICLast else { return nil }
        rawValue = UInt16(msr - Self.x2APICBase)
    }

    public var mmioOffset: UInt32 { UInt32(rawValue) << 4 }
    public var msr: UInt32 { Self.x2APICBase + UInt32(rawValue) }

    public static let id = Self(rawValue: 0x02)
    public static let version = Self(rawValue: 0x03)
    public static let taskPriority = Self(rawValue: 0x08)
    /// APR: xAPIC only (reads 0 here), reserved in x2APIC mode.
    public static let arbitrationPriority = Self(rawValue: 0x09)
    public static let processorPriority = Self(rawValue: 0x0A)
    public static let endOfInterrupt = Self(rawValue: 0x0B)
    /// RRD: xAPIC only (reads 0 here), reserved in x2APIC mode.
    public static let remoteRead = Self(rawValue: 0x0C)
    public static let logicalDestination = Self(rawValue: 0x0D)
    /// DFR: xAPIC only; absent in x2APIC mode.
    public static let destinationFormat = Self(rawValue: 0x0E)
    public static let spuriousVector = Self(rawValue: 0x0F)
    /// ISR bits 31:0; the 8 registers cover vectors 0-255 (32 each).
    public static let inService0 = Self(rawValue: 0x10)
    public static let triggerMode0 = Self(rawValue: 0x18)
    public static let interruptRequest0 = Self(rawValue: 0x20)
    public static let errorStatus = Self(rawValue: 0x28)
    public static let lvtCMCI = Self(rawValue: 0x2F)
    /// ICR bits 31:0 (xAPIC) or the whole 64-bit ICR (x2APIC MSR 830H).
    public static let interruptCommand = Self(rawValue: 0x30)
    /// ICR bits 63:32: xAPIC only (x2APIC MSR 831H is reserved).
    public static let interruptCommandHigh = Self(rawValue: 0x31)
    public static let lvtTimer = Self(rawValue: 0x32)
    public static let lvtThermal = Self(rawValue: 0x33)
    public static let lvtPerformance = Self(rawValue: 0x34)
    public static let lvtLINT0 = Self(rawValue: 0x35)
    public static let lvtLINT1 = Self(rawValue: 0x36)
    public static let lvtError = Self(rawValue: 0x37)
    public static let timerInitialCount = Self(rawValue: 0x38)
    public static let timerCurrentCount = Self(rawValue: 0x39)
    public static let timerDivide = Self(rawValue: 0x3E)
    /// SELF IPI: x2APIC only, write-only.
    public static let selfIPI = Self(rawValue: 0x3F)
}

/// IA32_APIC_BASE (MSR 1BH). SDM "Local APIC Status and Location".
public enum APICBaseMSR {
    /// BSP flag (read-only here).
    public static let bootstrapProcessor: UInt64 = 1 << 8
    /// EXTD: x2APIC mode. SDM "x2APIC State Transitions".
    public static let x2APICEnable: UInt64 = 1 << 10
    /// EN: the APIC global enable.
    public static let globalEnable: UInt64 = 1 << 11
    /// The power-up base of the APIC page.
    public static let defaultBase: UInt64 = 0xFEE0_0000
    /// APIC base bits 12 up to MAXPHYADDR - 1.
    public static func baseMask(physicalAddressBits: UInt8) -> UInt64 {
        let bits = min(max(UInt64(physicalAddressBits), 13), 52)
        return ((1 << bits) - 1) & ~0xFFF
    }
}

/// Fields of a local vector table entry. SDM "Local Vector Table".
public enum LocalVectorTableEntry {
    public static let vectorMask: UInt32 = 0xFF
    public static let deliveryModeShift: UInt32 = 8
    public static let deliveryModeMask: UInt32 = 0x7 << 8
    /// Delivery status: read-only, always idle (0) here.
    public static let deliveryStatus: UInt32 = 1 << 12
    public static let inputPinPolarity: UInt32 = 1 << 13
    /// Remote IRR (LINT0/LINT1): read-only.
    public static let remoteIRR: UInt32 = 1 << 14
    public static let levelTriggered: UInt32 = 1 << 15
    public static let masked: UInt32 = 1 << 16
    public static let timerModeShift: UInt32 = 17
    public static let timerModeMask: UInt32 = 0x3 << 17
    /// The power-up value of every entry: masked, vector 0.
    public static let resetValue: UInt32 = masked

    /// The writable bits of each kind of entry (SDM figure "Local Vector Table (LVT)").
    public static let timerWritable: UInt32 = vectorMask | masked | timerModeMask
    public static let withDeliveryModeWritable: UInt32 = vectorMask | deliveryModeMask | masked
    public static let lintWritable: UInt32 = withDeliveryModeWritable | inputPinPolarity | levelTriggered
    public static let errorWritable: UInt32 = vectorMask | masked
}

/// LVT timer mode (bits 18:17). SDM "APIC Timer", "TSC-Deadline Mode".
public enum APICTimerMode: UInt8, Sendable {
    case oneShot = 0
    case periodic = 1
    case tscDeadline = 2
}

/// Delivery modes of the ICR and LVT entries. SDM "Interrupt Command Register (ICR)".
public enum APICDeliveryMode: UInt8, Sendable {
    case fixed = 0
    case lowestPriority = 1
    case smi = 2
    case remoteRead = 3
    case nmi = 4
    case initialize = 5
    case startup = 6
    case extINT = 7
}

/// ICR fields. SDM "Interrupt Command Register (ICR)", "ICR Operation in x2APIC Mode".
public enum InterruptCommandRegister {
    public static let vectorMask: UInt32 = 0xFF
    public static let deliveryModeShift: UInt32 = 8
    /// Destination mode: 1 = logical.
    public static let logicalDestination: UInt32 = 1 << 11
    /// Delivery status (xAPIC only): always idle (0) here.
    public static let deliveryStatus: UInt32 = 1 << 12
    public static let levelAssert: UInt32 = 1 << 14
    public static let levelTriggered: UInt32 = 1 << 15
    public static let shorthandShift: UInt32 = 18
    /// The writable bits of ICR bits 31:0; in x2APIC mode every other bit is reserved.
    public static let writable: UInt32 = 0x000C_CFFF
    /// xAPIC destination field: ICR bits 63:56.
    public static let xAPICDestinationShift: UInt32 = 24
}

/// ICR destination shorthand (bits 19:18).
public enum DestinationShorthand: UInt8, Sendable {
    case noShorthand = 0
    case toSelf = 1
    case allIncludingSelf = 2
    case allExcludingSelf = 3
}

/// ESR bits. SDM "Error Handling".
public enum APICErrorStatus {
    public static let sendIllegalVector: UInt32 = 1 << 5
    public static let receiveIllegalVector: UInt32 = 1 << 6
    /// xAPIC only: an access to a reserved register of the APIC page.
    public static let illegalRegisterAddress: UInt32 = 1 << 7
}

/// SVR bits. SDM "Spurious Interrupt".
public enum SpuriousVectorRegister {
    public static let vectorMask: UInt32 = 0xFF
    public static let softwareEnable: UInt32 = 1 << 8
    public static let focusCheckingDisabled: UInt32 = 1 << 9
    /// EOI-broadcast suppression is not offered (version bit 24 clear), so bit 12 is reserved.
    public static let writable: UInt32 = vectorMask | softwareEnable | focusCheckingDisabled
    public static let resetValue: UInt32 = 0xFF
}

/// The 256-bit ISR, TMR or IRR: one bit per vector, read as eight 32-bit registers.
/// SDM "Interrupt Acceptance for Fixed Interrupts".
public struct APICVectorBitmap: Equatable, Sendable {
    var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    public init() {}

    @inline(__always)  // the quick timer exit's check: a call cost more than the test
    public func contains(_ vector: UInt8) -> Bool {
        word64(Int(vector >> 6)) & (1 << UInt64(vector & 63)) != 0
    }

    public mutating func insert(_ vector: UInt8) {
        setWord64(Int(vector >> 6), word64(Int(vector >> 6)) | (1 << UInt64(vector & 63)))
    }

    public mutating func remove(_ vector: UInt8) {
        setWord64(Int(vector >> 6), word64(Int(vector >> 6)) & ~(1 << UInt64(vector & 63)))
    }

    public var isEmpty: Bool { w0 | w1 | w2 | w3 == 0 }

    /// The highest vector set, the one with the highest priority.
    public var highest: UInt8? {
        var index = 3
        while index >= 0 {
            let word = word64(index)
            if word != 0 { return UInt8(index * 64 + 63 - word.leadingZeroBitCount) }
            index -= 1
        }
        return nil
    }

    /// Register `index` (0-7): vectors 32 * index ... 32 * index + 31.
    public func register(_ index: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: word64((index & 7) >> 1) >> (UInt64(index & 1) * 32))
    }

    func word64(_ index: Int) -> UInt64 {
        switch index {
        case 0: return w0
        case 1: return w1
        case 2: return w2
        default: return w3
        }
    }

    mutating func setWord64(_ index: Int, _ value: UInt64) {
        switch index {
        case 0: w0 = value
        case 1: w1 = value
        case 2: w2 = value
        default: w3 = value
        }
    }
}
