// Exits per basic reason, and the TSC cycles the hypervisor spent on each:
// the table printed when the guest stops, and the input to the benchmarks.

import X86Arch
import VMX

public struct ExitStatistics: Sendable {
    /// Reasons 0 ..< tracked have their own slot; larger numbers share the last.
    public static let tracked = 96
    var counts = InlineArray<96, UInt64>(repeating: 0)
    var cycles = InlineArray<96, UInt64>(repeating: 0)
    /// Of `counts`, the exits the assembly fast path handled (not timed).
    var fast = InlineArray<96, UInt64>(repeating: 0)

    public init() {}

    static func slot(_ reason: ExitReason) -> Int { min(Int(reason.rawValue), tracked - 1) }

    public mutating func record(_ reason: ExitReason, cycles spent: UInt64) {
        let i = Self.slot(reason)
        counts[i] &+= 1
        cycles[i] &+= spent
    }

    /// Exits handled by the assembly fast path (`ExitFastPath`): counted, not timed.
    public mutating func recordFast(_ reason: ExitReason, count: UInt64) {
        let i = Self.slot(reason)
        counts[i] &+= count
        fast[i] &+= count
    }

    /// Another vCPU's exits added to these (the report of a guest with several CPUs).
    public mutating func add(_ other: borrowing ExitStatistics) {
        for i in 0..<Self.tracked {
            counts[i] &+= other.counts[i]
            cycles[i] &+= other.cycles[i]
            fast[i] &+= other.fast[i]
        }
    }

    public func count(of reason: ExitReason) -> UInt64 { counts[Self.slot(reason)] }
    public func fastCount(of reason: ExitReason) -> UInt64 { fast[Self.slot(reason)] }
    public func cycles(of reason: ExitReason) -> UInt64 { cycles[Self.slot(reason)] }

    public var totalExits: UInt64 {
        var total: UInt64 = 0
        for i in 0..<Self.tracked { total &+= counts[i] }
        return total
    }

    /// Each reason that occurred, in reason order: all its exits, those the
    /// fast path handled, and the cycles of the others.
    public func forEach(_ body: (ExitReason, _ count: UInt64, _ fast: UInt64, _ cycles: UInt64) -> Void) {
        for i in 0..<Self.tracked where counts[i] != 0 {
            body(ExitReason(rawValue: UInt16(i)), counts[i], fast[i], cycles[i])
        }
    }
}
