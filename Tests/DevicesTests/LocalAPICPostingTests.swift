import Testing
import Devices

/// `postTimer` (the quick preemption-timer exit) against `advance` (the run
/// loop): the page then the model's sync must end where the model alone does.
@Suite struct LocalAPICPostingTests {
    /// A page as the vCPU keeps it: the model's registers, then what the CPU changed.
    final class Page {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        init(_ apic: LocalAPIC) {
            pointer.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
            apic.forEachVirtualizedRegister { offset, value in pointer.storeBytes(of: value, toByteOffset: offset, as: UInt32.self) }
        }
        deinit { pointer.deallocate() }
        func irr(_ vector: UInt8) -> Bool {
            pointer.load(fromByteOffset: 0x200 + 16 * Int(vector >> 5), as: UInt32.self) & 1 << UInt32(vector & 31) != 0
        }
    }

    enum Setup: CaseIterable, Sendable {
        case oneShot, periodic, tscDeadline, masked
    }

    static func armed(_ setup: Setup) -> LocalAPIC {
        var apic = lapicEnabledXAPIC(tscPerBusTick: 10)
        apic.advance(toTSC: 1000)
        apic.writeRegister(offset: APICPage.divide, value: 0xB)            // divide by 1: 10 ticks a count
        switch setup {
        case .oneShot:
            apic.writeRegister(offset: APICPage.timer, value: 0x41)
            apic.writeRegister(offset: APICPage.initialCount, value: 100)  // fires at 2000
        case .periodic:
            apic.writeRegister(offset: APICPage.timer, value: lvtTimerPeriodic | 0x41)
            apic.writeRegister(offset: APICPage.initialCount, value: 100)
        case .tscDeadline:
            apic.writeRegister(offset: APICPage.timer, value: lvtTimerTSCDeadline | 0x41)
            _ = apic.writeMSR(0x6E0, 2000)
        case .masked:
            apic.writeRegister(offset: APICPage.timer, value: lvtTimerPeriodic | lvtEntryMasked | 0x41)
            apic.writeRegister(offset: APICPage.initialCount, value: 100)
        }
        // Another vector already requested: posting must keep it.
        _ = apic.accept(vector: 0x30)
        return apic
    }

    @Test(arguments: Setup.allCases, [UInt64(1999), 2000, 2500, 3100])
    func postingThenSyncingMatchesTheModel(setup: Setup, at tsc: UInt64) {
        var model = Self.armed(setup)
        var posted = model
        let page = Page(posted)
        model.advance(toTSC: tsc)
        let vector = posted.postTimer(toTSC: tsc, into: page.pointer)
        let fired = model.interruptRequest.contains(0x41)
        #expect(vector == (fired ? 0x41 : 0))
        #expect(page.irr(0x41) == fired && page.irr(0x30))
        // The model's own IRR is the page's to give back.
        #expect(!posted.interruptRequest.contains(0x41))
        _ = posted.loadVirtualState(page: UnsafeRawPointer(page.pointer))
        #expect(posted.interruptRequest == model.interruptRequest)
        #expect(posted.nextDeadline == model.nextDeadline && posted.now == tsc)
        #expect(posted.readRegister(offset: APICPage.currentCount) == model.readRegister(offset: APICPage.currentCount))
    }

    /// Where accepting the vector is more than an IRR bit (an error to
    /// record, a TMR bit to clear), the model does it: nothing changes, in
    /// the model or the page. (A software-disabled APIC masks the entry:
    /// the `.masked` case above.)
    @Test func whatNeedsTheModelIsLeftUntouched() {
        var cases: [LocalAPIC] = []
        var tmr = Self.armed(.oneShot)
        _ = tmr.accept(vector: 0x41, level: true)
        _ = tmr.acknowledge()                        // in service, its TMR bit still set
        cases.append(tmr)
        var illegal = lapicEnabledXAPIC(tscPerBusTick: 10)
        illegal.writeRegister(offset: APICPage.timer, value: 0x0F)
        illegal.writeRegister(offset: APICPage.divide, value: 0xB)
        illegal.writeRegister(offset: APICPage.initialCount, value: 1)
        cases.append(illegal)
        for var apic in cases {
            let before = apic
            let page = Page(apic)
            let vector = apic.postTimer(toTSC: 10_000, into: page.pointer)
            #expect(vector == nil)
            #expect(apic.now == before.now && apic.nextDeadline == before.nextDeadline)
            #expect(!page.irr(0x41) && !page.irr(0x0F))
        }
    }
}

/// `armTSCDeadline` (a quick WRMSR of IA32_TSC_DEADLINE) against `writeMSR`.
@Suite struct LocalAPICDeadlineArmingTests {
    static func deadlineMode(now: UInt64) -> LocalAPIC {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.timer, value: lvtTimerTSCDeadline | 0x41)
        apic.advance(toTSC: now)
        return apic
    }

    @Test func aheadArmsWithoutFiringAndFiresAtTheDeadline() {
        var apic = Self.deadlineMode(now: 1000)
        let armed = apic.armTSCDeadline(5000, at: 1200)
        #expect(armed)
        #expect(apic.interruptRequest.isEmpty && apic.nextDeadline == 5000 && apic.now == 1200)
        let read = apic.readMSR(0x6E0)
        #expect(read == 5000)
        apic.advance(toTSC: 4999)
        #expect(apic.interruptRequest.isEmpty)
        apic.advance(toTSC: 5000)
        #expect(apic.pendingInterrupt == 0x41 && apic.nextDeadline == nil)
        // 0 disarms.
        let again = apic.armTSCDeadline(9000, at: 6000), disarmed = apic.armTSCDeadline(0, at: 6001)
        #expect(again && disarmed)
        #expect(apic.nextDeadline == nil)
    }

    /// After WRMSR IA32_TSC := 0 the guest's TSC is behind the clock: the
    /// clock moves back with it, and a deadline in the new count waits.
    @Test func theClockFollowsATSCThatWentBack() {
        var apic = Self.deadlineMode(now: 50_000_000)
        let armed = apic.armTSCDeadline(3000, at: 100)
        #expect(armed)
        #expect(apic.interruptRequest.isEmpty && apic.nextDeadline == 3000)
        apic.advance(toTSC: 2999)
        #expect(apic.interruptRequest.isEmpty)
    }

    /// What could fire is left to `writeMSR`: a deadline not ahead, or a
    /// timer already due. Nothing changes then.
    @Test func whatCouldFireIsDeclined() {
        var apic = Self.deadlineMode(now: 1000)
        let now = apic.armTSCDeadline(1000, at: 1000), past = apic.armTSCDeadline(900, at: 1000)
        #expect(!now && !past)
        #expect(apic.nextDeadline == nil && apic.now == 1000)
        _ = apic.writeMSR(0x6E0, 2000)
        let due = apic.armTSCDeadline(9000, at: 2500)   // due at 2000, not yet run
        #expect(!due)
        #expect(apic.nextDeadline == 2000 && apic.interruptRequest.isEmpty)
        var model = apic                          // the full path: time first, then the write
        model.advance(toTSC: 2500)
        _ = model.writeMSR(0x6E0, 9000)
        #expect(model.pendingInterrupt == 0x41 && model.nextDeadline == 9000)
    }
}
