// Guest non-register state formats. SDM 25.4.2 "Guest Non-Register State".

/// The guest interruptibility-state field.
// SDM 25.4.2 "Guest Non-Register State", Table "Format of Interruptibility State"
@frozen
public struct InterruptibilityState: Equatable, Sendable {
    public var raw: UInt32

    @inlinable
    public init(raw: UInt32) { self.raw = raw }

    /// Bit 0: blocking by STI.
    public static let blockingBySTIBit: UInt32 = 1 << 0
    /// Bit 1: blocking by MOV SS.
    public static let blockingByMovSSBit: UInt32 = 1 << 1
    /// Bit 2: blocking by SMI.
    public static let blockingBySMIBit: UInt32 = 1 << 2
    /// Bit 3: blocking by NMI.
    public static let blockingByNMIBit: UInt32 = 1 << 3
    /// Bit 4: enclave interruption.
    public static let enclaveInterruptionBit: UInt32 = 1 << 4
    /// Bits 31:5: reserved, must be 0.
    public static let reservedMask: UInt32 = ~0x1F

    @inlinable
    mutating func setBits(_ bits: UInt32, _ on: Bool) {
        if on { raw |= bits } else { raw &= ~bits }
    }

    /// Bit 0: the instruction after STI (executed with IF=0) has not completed.
    @inlinable public var blockingBySTI: Bool {
        get { raw & Self.blockingBySTIBit != 0 }
        set { setBits(Self.blockingBySTIBit, newValue) }
    }
    /// Bit 1: the instruction after MOV SS / POP SS has not completed.
    @inlinable public var blockingByMovSS: Bool {
        get { raw & Self.blockingByMovSSBit != 0 }
        set { setBits(Self.blockingByMovSSBit, newValue) }
    }
    /// Bit 2: inside SMM.
    @inlinable public var blockingBySMI: Bool {
        get { raw & Self.blockingBySMIBit != 0 }
        set { setBits(Self.blockingBySMIBit, newValue) }
    }
    /// Bit 3: an NMI handler is running (or, with "virtual NMIs", a virtual one).
    @inlinable public var blockingByNMI: Bool {
        get { raw & Self.blockingByNMIBit != 0 }
        set { setBits(Self.blockingByNMIBit, newValue) }
    }
}

/// The guest activity-state field.
// SDM 25.4.2 "Guest Non-Register State", activity state
public enum ActivityState: UInt32, Sendable {
    case active = 0
    case hlt = 1
    case shutdown = 2
    case waitForSIPI = 3
}

/// The guest pending-debug-exceptions field (the DR6 bits a pending #DB
/// would report). SDM 25.4.2 "Guest Non-Register State", Table "Format of
/// Pending-Debug-Exceptions".
public enum PendingDebugExceptions {
    /// Bits 3:0: B3-B0, breakpoint conditions met.
    public static let breakpointConditions: UInt64 = 0xF
    /// Bit 12: enabled breakpoint.
    public static let enabledBreakpoint: UInt64 = 1 << 12
    /// Bit 14: BS, a single-step trap is pending.
    public static let bs: UInt64 = 1 << 14
    /// Bit 16: RTM, a debug exception in an RTM region.
    public static let rtm: UInt64 = 1 << 16
    /// Bits 63:17, 15, 13 and 11:4: reserved, must be 0.
    public static let reservedMask: UInt64 = 0xFFFF_FFFF_FFFE_AFF0
}
