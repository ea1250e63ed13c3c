// Starting one application processor: the INIT-SIPI-SIPI sequence of SDM
// Vol. 3A 9.4.4.1 "Typical BSP Initialization Sequence" (INIT, 10 ms,
// STARTUP with the trampoline's page, 200 us, a second STARTUP), with the
// interprocessor interrupts encoded as in 11.6.1 "Interrupt Command
// Register (ICR)" (xAPIC: two 32-bit registers at 300H/310H; x2APIC: one
// 64-bit MSR, 830H, 11.12.9 "ICR Operation in x2APIC Mode").

/// One IPI: the ICR's low half and the destination APIC ID.
public struct InterruptCommand: Equatable, Sendable {
    /// Bits 31:0: vector, delivery mode, level, trigger mode, shorthand.
    public var low: UInt32
    /// The destination APIC ID (physical destination mode, no shorthand).
    public var destination: UInt32

    public init(low: UInt32, destination: UInt32) { self.low = low; self.destination = destination }

    /// Delivery mode 101B (INIT), level assert (bit 14), edge trigger.
    public static func initAssert(to apicID: UInt32) -> Self {
        Self(low: deliveryINIT | levelAssert, destination: apicID)
    }

    /// Delivery mode 110B (start-up): the AP starts in real mode at CS:IP =
    /// (vector << 8):0, that is at physical vector << 12.
    public static func startup(to apicID: UInt32, vector: UInt8) -> Self {
        Self(low: deliveryStartup | levelAssert | UInt32(vector), destination: apicID)
    }

    static let deliveryINIT: UInt32 = 5 << 8
    static let deliveryStartup: UInt32 = 6 << 8
    static let levelAssert: UInt32 = 1 << 14
    /// Bit 12 (xAPIC only): the previous IPI is still being sent.
    public static let deliveryPending: UInt32 = 1 << 12

    /// xAPIC ICR high (310H): the 8-bit destination in bits 31:24.
    public var xAPICHigh: UInt32 { destination << 24 }
    /// x2APIC ICR (MSR 830H): the 32-bit destination in bits 63:32.
    public var x2APICValue: UInt64 { UInt64(destination) << 32 | UInt64(low) }
    /// xAPIC physical destinations are 8 bits wide.
    public var fitsXAPIC: Bool { destination <= 0xFF }
}

/// The xAPIC's memory-mapped registers, by byte offset in the 4 KiB page.
public protocol XAPICRegisters {
    func read(_ offset: UInt32) -> UInt32
    func write(_ offset: UInt32, _ value: UInt32)
}

/// The x2APIC's MSRs.
public protocol X2APICRegisters {
    func writeMSR(_ address: UInt32, _ value: UInt64)
}

public enum LocalAPICICR {
    public static let xAPICLow: UInt32 = 0x300
    public static let xAPICHigh: UInt32 = 0x310
    public static let x2APICMSR: UInt32 = 0x830
    /// Reads of the delivery status before giving up on a stuck ICR.
    public static let deliveryPolls = 100_000

    /// High half first: writing the low half sends the IPI. Waits (bounded)
    /// for the delivery status to be idle before and after; false if it never is.
    public static func send<R: XAPICRegisters>(_ command: InterruptCommand, xAPIC registers: R) -> Bool {
        guard command.fitsXAPIC, idle(registers) else { return false }
        registers.write(xAPICHigh, command.xAPICHigh)
        registers.write(xAPICLow, command.low)
        return idle(registers)
    }

    /// One WRMSR sends it; x2APIC mode has no delivery status.
    public static func send<R: X2APICRegisters>(_ command: InterruptCommand, x2APIC registers: R) {
        registers.writeMSR(x2APICMSR, command.x2APICValue)
    }

    static func idle<R: XAPICRegisters>(_ registers: R) -> Bool {
        for _ in 0..<deliveryPolls where registers.read(xAPICLow) & InterruptCommand.deliveryPending == 0 { return true }
        return false
    }
}

/// What the start sequence needs from the machine.
public protocol APStartPort {
    /// Sends one IPI through this CPU's local APIC; false if it could not.
    mutating func send(_ command: InterruptCommand) -> Bool
    /// Busy-waits at least `microseconds`.
    mutating func wait(microseconds: UInt32)
    /// The AP ran the trampoline's first instructions.
    mutating func hasStarted() -> Bool
    /// The AP is done: in VMX root mode, or failed and said why.
    mutating func hasCheckedIn() -> Bool
}

/// The sequence's delays, in microseconds.
public struct APStartTiming: Equatable, Sendable {
    /// After INIT: 10 ms (SDM 9.4.4.1).
    public var afterINIT: UInt32 = 10_000
    /// After each STARTUP IPI: 200 us.
    public var afterStartup: UInt32 = 200
    /// How long an AP that started may take to check in.
    public var checkInTimeout: UInt32 = 1_000_000
    /// Between two looks at the check-in flag.
    public var pollInterval: UInt32 = 100

    public init() {}
}

public struct APStartError: Error, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The local APIC did not take the INIT or STARTUP IPI (delivery
        /// status stuck, or an APIC ID above 255 in xAPIC mode).
        case ipiNotSent
        /// The AP never ran the trampoline after two STARTUP IPIs and the timeout.
        case didNotStart
        /// The AP started but did not check in before the timeout.
        case noCheckIn
    }

    public var kind: Kind
    public var apicID: UInt32

    public init(_ kind: Kind, apicID: UInt32) { self.kind = kind; self.apicID = apicID }

    public var message: StaticString {
        switch kind {
        case .ipiNotSent: "the local APIC did not send the INIT or STARTUP IPI"
        case .didNotStart: "did not start after INIT-SIPI-SIPI"
        case .noCheckIn: "started but did not check in before the timeout"
        }
    }
}

public struct APStartReport: Equatable, Sendable {
    /// 1, or 2 when the first did not start the AP within its 200 us.
    public var startupIPIs: Int
    /// The time spent waiting after the last STARTUP IPI.
    public var checkInMicroseconds: UInt64

    public init(startupIPIs: Int, checkInMicroseconds: UInt64) {
        self.startupIPIs = startupIPIs; self.checkInMicroseconds = checkInMicroseconds
    }
}

public enum APStartup {
    /// INIT, 10 ms, STARTUP, 200 us, a second STARTUP only if the AP has not
    /// started (a started AP ignores it, but a slow one would be restarted
    /// by nothing), then polls for the check-in until the timeout.
    public static func start<P: APStartPort>(apicID: UInt32, vector: UInt8, timing: APStartTiming = APStartTiming(),
                                             port: inout P) throws(APStartError) -> APStartReport {
        guard port.send(.initAssert(to: apicID)) else { throw APStartError(.ipiNotSent, apicID: apicID) }
        port.wait(microseconds: timing.afterINIT)
        guard port.send(.startup(to: apicID, vector: vector)) else { throw APStartError(.ipiNotSent, apicID: apicID) }
        port.wait(microseconds: timing.afterStartup)
        var startups = 1
        if !port.hasStarted() {
            guard port.send(.startup(to: apicID, vector: vector)) else { throw APStartError(.ipiNotSent, apicID: apicID) }
            port.wait(microseconds: timing.afterStartup)
            startups = 2
        }
        var waited: UInt64 = 0
        while !port.hasCheckedIn() {
            guard waited < UInt64(timing.checkInTimeout) else {
                throw APStartError(port.hasStarted() ? .noCheckIn : .didNotStart, apicID: apicID)
            }
            port.wait(microseconds: timing.pollInterval)
            waited += UInt64(timing.pollInterval)
        }
        return APStartReport(startupIPIs: startups, checkInMicroseconds: waited)
    }
}

/// A page below 1 MiB for the AP trampoline: a STARTUP IPI's vector names a
/// 4 KiB page (vector << 12). Offered the memory map region by region, it
/// keeps the pages in [4 KiB, 640 KiB) that usable RAM covers and no other
/// region overlaps, and picks `preferred` if it is one, else the highest.
public struct TrampolinePagePicker {
    /// Pages 1 through 159 (page 0 holds the real-mode IVT and BIOS data).
    static let firstPage = 1, endPage = 160
    var usable = InlineArray<3, UInt64>(repeating: 0)
    var reserved = InlineArray<3, UInt64>(repeating: 0)
    public static let usableType: UInt32 = 1

    public init() {}

    public mutating func offer(base: UInt64, length: UInt64, type: UInt32) {
        guard length > 0, base < UInt64(Self.endPage) << 12 else { return }
        let end = base > UInt64.max - length ? UInt64.max : base + length
        for page in Self.firstPage..<Self.endPage {
            let start = UInt64(page) << 12
            if type == Self.usableType {
                if base <= start && start + 0x1000 <= end { usable[page >> 6] |= 1 << UInt64(page & 63) }
            } else if base < start + 0x1000 && start < end {
                reserved[page >> 6] |= 1 << UInt64(page & 63)
            }
        }
    }

    func isCandidate(_ page: Int) -> Bool {
        let bit: UInt64 = 1 << UInt64(page & 63)
        return usable[page >> 6] & bit != 0 && reserved[page >> 6] & bit == 0
    }

    /// The page's physical address, nil when no page qualifies.
    public func pick(preferred: UInt64 = 0x8000) -> UInt64? {
        let preferredPage = Int(preferred >> 12)
        if preferred & 0xFFF == 0, preferredPage >= Self.firstPage, preferredPage < Self.endPage, isCandidate(preferredPage) {
            return preferred
        }
        var page = Self.endPage - 1
        while page >= Self.firstPage {
            if isCandidate(page) { return UInt64(page) << 12 }
            page -= 1
        }
        return nil
    }
}
