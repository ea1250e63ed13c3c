// The local APIC timer, driven by the guest's TSC. SDM "APIC Timer": the
// counter runs at the bus clock divided by the divide configuration, from
// the initial count down to 0, once (one-shot) or reloading (periodic); in
// TSC-deadline mode IA32_TSC_DEADLINE arms it instead.
//
// Time only moves in `advance(toTSC:)`; the vCPU calls it before each APIC
// access and before each VM entry, and programs the VMX preemption timer for
// `nextDeadline`, so that an exit comes when the timer fires.

extension LocalAPIC {
    /// The mode in LVT timer bits 18:17 (the reserved 11B counts as one-shot).
    @inline(__always)
    public var timerMode: APICTimerMode {
        switch (lvtTimer & LocalVectorTableEntry.timerModeMask) >> LocalVectorTableEntry.timerModeShift {
        case 1: return .periodic
        case 2: return .tscDeadline
        default: return .oneShot
        }
    }

    /// Divide Configuration Register bits 3 and 1:0: 111B divides by 1, value v
    /// otherwise by 2^(v+1). SDM "APIC Timer".
    @inline(__always)  // a call copied the whole APIC (~250 bytes) for each read
    public var timerDivisor: UInt64 {
        let code = (divideConfiguration & 3) | (divideConfiguration >> 1) & 4
        return code == 7 ? 1 : 1 << (UInt64(code) + 1)
    }

    /// TSC ticks per count: at most 2^24 * 128, so a count of 2^32 - 1 fits in 64 bits.
    @inline(__always)  // a call copied the whole APIC (~250 bytes) for each read
    var tscPerCount: UInt64 { tscPerBusTick * timerDivisor }

    /// Moves the APIC's clock to `tsc` (the guest's TSC) and fires the timer if it
    /// expired: the LVT timer vector goes to the IRR unless the entry is masked.
    public mutating func advance(toTSC tsc: UInt64) {
        now = tsc
        expireTimer()
    }

    /// The TSC at which the timer fires next, for the VMX preemption timer; nil when
    /// it is stopped, disarmed or masked (a masked periodic timer keeps counting
    /// without interrupts: nothing to wake up for).
    @inline(__always)
    public var nextDeadline: UInt64? {
        guard mode != .disabled, lvtTimer & LocalVectorTableEntry.masked == 0 else { return nil }
        if timerMode == .tscDeadline { return deadline == 0 ? nil : deadline }
        return countExpiry
    }

    /// IA32_TSC_DEADLINE: the armed deadline in TSC-deadline mode, 0 otherwise.
    /// SDM "TSC-Deadline Mode".
    public var tscDeadline: UInt64 { timerMode == .tscDeadline ? deadline : 0 }

    /// WRMSR IA32_TSC_DEADLINE: arms (non-zero) or disarms (0) in TSC-deadline mode;
    /// ignored in the other modes. A deadline already past fires at once.
    public mutating func writeTSCDeadline(_ value: UInt64) {
        guard mode != .disabled, timerMode == .tscDeadline else { return }
        deadline = value
        expireTimer()
    }

    /// WRMSR IA32_TSC_DEADLINE ahead of `tsc` (the guest's TSC now), or 0:
    /// the clock moves to `tsc` and the deadline is armed or disarmed, and
    /// nothing fires, so the IRR (and a virtual-APIC page) need no look.
    /// False, with nothing changed, when the write or the clock could fire
    /// the timer (a deadline at or before `tsc`, the timer already due):
    /// then `advance` and `writeMSR`. The clock may move back: after a
    /// WRMSR of IA32_TSC it stands ahead of the guest's TSC.
    public mutating func armTSCDeadline(_ value: UInt64, at tsc: UInt64) -> Bool {
        guard value == 0 || value > tsc, nextDeadline.map({ $0 > tsc }) ?? true else { return false }
        now = tsc
        // `writeTSCDeadline` without its expiry check: the deadline is ahead.
        if mode != .disabled && timerMode == .tscDeadline { deadline = value }
        return true
    }

    /// The current-count register: derived from the time since the count began;
    /// 0 when stopped and in TSC-deadline mode.
    @inline(__always)  // a call copied the whole APIC (~250 bytes) for each read
    public var currentCount: UInt32 {
        guard timerMode != .tscDeadline, countExpiry != nil, initialCount != 0 else { return 0 }
        let elapsed = now >= countStart ? (now - countStart) / tscPerCount : 0
        if elapsed < UInt64(countAtStart) { return countAtStart - UInt32(elapsed) }
        guard timerMode == .periodic else { return 0 }
        return initialCount - UInt32((elapsed - UInt64(countAtStart)) % UInt64(initialCount))
    }

    /// A write to the initial-count register (re)starts the count; 0 stops it.
    /// Ignored in TSC-deadline mode.
    mutating func writeInitialCount(_ value: UInt32) {
        guard timerMode != .tscDeadline else { return }
        initialCount = value
        startCount(from: value)
    }

    /// A new divisor takes effect from the current count on.
    mutating func writeDivideConfiguration(_ value: UInt32) {
        let running = timerMode != .tscDeadline && countExpiry != nil
        let current = currentCount
        divideConfiguration = value
        if running { startCount(from: current) }
    }

    /// SDM "TSC-Deadline Mode": a write that switches to or from TSC-deadline mode
    /// disarms the timer (as KVM does, one-shot <-> periodic keeps the count).
    mutating func writeTimerEntry(_ value: UInt32) {
        let wasDeadline = timerMode == .tscDeadline
        lvtTimer = value
        if wasDeadline != (timerMode == .tscDeadline) {
            initialCount = 0
            countExpiry = nil
            deadline = 0
        }
    }

    mutating func startCount(from count: UInt32) {
        guard count != 0 else {
            countExpiry = nil
            return
        }
        countStart = now
        countAtStart = count
        let (expiry, overflow) = now.addingReportingOverflow(UInt64(count) * tscPerCount)
        countExpiry = overflow ? UInt64.max : expiry
    }

    mutating func expireTimer() {
        if timerExpired() { fireTimer() }
    }

    /// The timer's own state moved to `now`: true when it reached 0 (or its
    /// deadline) since the last look, whether or not its entry is masked.
    @inline(__always)  // the run loop's and the quick timer exit's: one call fewer
    mutating func timerExpired() -> Bool {
        if timerMode == .tscDeadline {
            guard deadline != 0, now >= deadline else { return false }
            deadline = 0
            return true
        }
        guard let expiry = countExpiry, now >= expiry else { return false }
        if timerMode == .periodic, initialCount != 0 {
            // Periods missed while no one looked coalesce into one interrupt.
            let period = UInt64(initialCount) * tscPerCount
            let (offset, overflow) = ((now - expiry) / period + 1).multipliedReportingOverflow(by: period)
            let (next, carry) = expiry.addingReportingOverflow(offset)
            countExpiry = overflow || carry ? UInt64.max : next
        } else {
            countExpiry = nil
        }
        return true
    }

    mutating func fireTimer() {
        guard lvtTimer & LocalVectorTableEntry.masked == 0 else { return }
        accept(vector: UInt8(truncatingIfNeeded: lvtTimer))
    }
}
