// Guest non-register state formats. SDM 25.4.2 "Guest Non-Register State".

/// The guest interruptibility-state field.
// SDM 25.4.2 "Guest Non-Register State", Table "Format of Interruptibility State"
@frozen
public struct InterruptibilityState: Equatable, Sendable {
    public var raw: UInt32

    @inlinable
    public init(raw: UInt32) { self.raw = raw }

    @inlinable
    func bit(_ n: UInt32) -> Bool { (raw >> n) & 1 != 0 }

    @inlinable
    mutating func setBit(_ n: UInt32, _ on: Bool) {
        if on { raw |= 1 << n } else { raw &= ~(1 << n) }
    }

    /// Bit 0: the instruction after STI (executed with IF=0) has not completed.
    @inlinable public var blockingBySTI: Bool {
        get { bit(0) }
        set { setBit(0, newValue) }
    }
    /// Bit 1: the instruction after MOV SS / POP SS has not completed.
    @inlinable public var blockingByMovSS: Bool {
        get { bit(1) }
        set { setBit(1, newValue) }
    }
    /// Bit 2: inside SMM.
    @inlinable public var blockingBySMI: Bool {
        get { bit(2) }
        set { setBit(2, newValue) }
    }
    /// Bit 3: an NMI handler is running (or, with "virtual NMIs", a virtual one).
    @inlinable public var blockingByNMI: Bool {
        get { bit(3) }
        set { setBit(3, newValue) }
    }
}
