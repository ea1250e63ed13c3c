import Testing
import Devices

let lvtTimerPeriodic: UInt32 = 1 << 17
let lvtTimerTSCDeadline: UInt32 = 2 << 17
let lvtEntryMasked: UInt32 = 1 << 16

@Suite struct LocalAPICTimerTests {
    @Test func oneShotCountsDownFiresOnceAndStops() {
        var apic = lapicEnabledXAPIC(tscPerBusTick: 10)
        apic.advance(toTSC: 1000)
        apic.writeRegister(offset: APICPage.divide, value: 0x3)  // divide by 16: 160 TSC ticks per count
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 100)
        #expect(apic.timerMode == .oneShot)
        #expect(apic.nextDeadline == 17000)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 100) }
        apic.advance(toTSC: 2600)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 90) }
        apic.advance(toTSC: 16999)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 1) }
        #expect(apic.interruptRequest.isEmpty)
        apic.advance(toTSC: 17000)
        #expect(apic.pendingInterrupt == 0x30)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.initialCount); #expect(v == 100) }
        #expect(apic.nextDeadline == nil)
        do { let v = apic.acknowledge(); #expect(v == 0x30) }
        _ = apic.endOfInterrupt()
        apic.advance(toTSC: 100_000)
        #expect(apic.interruptRequest.isEmpty)
        apic.writeRegister(offset: APICPage.initialCount, value: 10)  // a write restarts it
        #expect(apic.nextDeadline == 100_000 + 1600)
    }

    @Test(arguments: [(UInt32(0x0), UInt64(2)), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1)])
    func divideConfiguration(code: UInt32, divisor: UInt64) {
        var apic = lapicEnabledXAPIC(tscPerBusTick: 10)
        apic.writeRegister(offset: APICPage.divide, value: code)
        #expect(apic.timerDivisor == divisor)
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 7)
        let deadline = 7 * 10 * divisor
        #expect(apic.nextDeadline == deadline)
        apic.advance(toTSC: deadline - 1)
        #expect(apic.pendingInterrupt == nil)
        apic.advance(toTSC: deadline)
        #expect(apic.pendingInterrupt == 0x30)
    }

    @Test func periodicReloadsAndCoalescesMissedPeriods() {
        var apic = lapicEnabledXAPIC(tscPerBusTick: 10)
        apic.writeRegister(offset: APICPage.divide, value: 0xB)  // divide by 1: a period of 500
        apic.writeRegister(offset: APICPage.timer, value: lvtTimerPeriodic | 0x31)
        apic.writeRegister(offset: APICPage.initialCount, value: 50)
        #expect(apic.timerMode == .periodic)
        apic.advance(toTSC: 499)
        #expect(apic.pendingInterrupt == nil)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 1) }
        apic.advance(toTSC: 500)
        #expect(apic.pendingInterrupt == 0x31)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 50) }
        #expect(apic.nextDeadline == 1000)
        apic.advance(toTSC: 750)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 25) }
        do { let v = apic.acknowledge(); #expect(v == 0x31) }
        _ = apic.endOfInterrupt()
        apic.advance(toTSC: 2600)  // the expiries at 1000 ... 2500 make one request
        do { let v = apic.acknowledge(); #expect(v == 0x31) }
        do { let v = apic.acknowledge(); #expect(v == nil) }
        #expect(apic.nextDeadline == 3000)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 40) }
        apic.writeRegister(offset: APICPage.initialCount, value: 0)  // stops it
        #expect(apic.nextDeadline == nil)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 0) }
    }

    @Test func aMaskedTimerCountsWithoutInterrupts() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.timer, value: lvtEntryMasked | 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 100)  // divide by 2: expires at 200
        #expect(apic.nextDeadline == nil)
        apic.advance(toTSC: 100)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 50) }
        apic.advance(toTSC: 200)
        #expect(apic.interruptRequest.isEmpty)
        apic.writeRegister(offset: APICPage.timer, value: 0x30)  // unmasking does not bring it back
        apic.advance(toTSC: 300)
        #expect(apic.interruptRequest.isEmpty)
        #expect(apic.nextDeadline == nil)
    }

    @Test func aSoftwareDisabledAPICDoesNotFire() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 10)
        apic.writeRegister(offset: APICPage.svr, value: 0xFF)
        apic.advance(toTSC: 1000)
        #expect(apic.interruptRequest.isEmpty)
    }

    @Test func anIllegalTimerVectorIsAnError() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.timer, value: 0x05)
        apic.writeRegister(offset: APICPage.initialCount, value: 1)
        apic.advance(toTSC: 2)
        #expect(apic.interruptRequest.isEmpty)
        #expect(lapicLatchedErrors(&apic) == 0x40)
    }

    @Test func aNewDivisorAppliesFromTheCurrentCount() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.divide, value: 0xB)
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 1000)
        apic.advance(toTSC: 400)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 600) }
        apic.writeRegister(offset: APICPage.divide, value: 0x0)  // divide by 2
        #expect(apic.nextDeadline == 400 + 1200)
        apic.advance(toTSC: 1000)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 300) }
    }

    @Test func oneShotAndPeriodicSwitchKeepsTheCount() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.divide, value: 0xB)
        apic.writeRegister(offset: APICPage.timer, value: lvtTimerPeriodic | 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 100)
        apic.advance(toTSC: 30)
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        #expect(apic.nextDeadline == 100)
        apic.advance(toTSC: 100)
        #expect(apic.pendingInterrupt == 0x30)
        #expect(apic.nextDeadline == nil)  // one-shot now: no reload
    }

    @Test func tscDeadlineArmsFiresAndDisarms() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.timer, value: lvtTimerTSCDeadline | 0x32)
        #expect(apic.timerMode == .tscDeadline)
        apic.writeRegister(offset: APICPage.initialCount, value: 100)  // ignored in this mode
        do { let v = apic.readRegister(offset: APICPage.initialCount); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 0) }
        #expect(apic.nextDeadline == nil)
        #expect(apic.readMSR(0x6E0) == 0)
        do { let v = apic.writeMSR(0x6E0, 5000); #expect(v == .nothing) }
        #expect(apic.readMSR(0x6E0) == 5000)
        #expect(apic.nextDeadline == 5000)
        apic.advance(toTSC: 4999)
        #expect(apic.pendingInterrupt == nil)
        apic.advance(toTSC: 5000)
        do { let v = apic.acknowledge(); #expect(v == 0x32) }
        _ = apic.endOfInterrupt()
        #expect(apic.readMSR(0x6E0) == 0)  // fired: disarmed
        #expect(apic.nextDeadline == nil)

        _ = apic.writeMSR(0x6E0, 9000)
        _ = apic.writeMSR(0x6E0, 0)  // disarm
        #expect(apic.nextDeadline == nil)
        apic.advance(toTSC: 10_000)
        #expect(apic.pendingInterrupt == nil)

        _ = apic.writeMSR(0x6E0, 6000)  // already past: fires at once
        #expect(apic.pendingInterrupt == 0x32)
        #expect(apic.readMSR(0x6E0) == 0)
    }

    @Test func tscDeadlineIsIgnoredInCountModesAndModeChangesDisarm() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.timer, value: 0x32)
        do { let v = apic.writeMSR(0x6E0, 5000); #expect(v == .nothing) }
        #expect(apic.readMSR(0x6E0) == 0)
        #expect(apic.nextDeadline == nil)

        apic.writeRegister(offset: APICPage.initialCount, value: 100)
        apic.writeRegister(offset: APICPage.timer, value: lvtTimerTSCDeadline | 0x32)  // stops the count
        do { let v = apic.readRegister(offset: APICPage.initialCount); #expect(v == 0) }
        #expect(apic.nextDeadline == nil)
        _ = apic.writeMSR(0x6E0, 5000)
        apic.writeRegister(offset: APICPage.timer, value: 0x32)  // disarms the deadline
        #expect(apic.nextDeadline == nil)
        apic.writeRegister(offset: APICPage.timer, value: lvtTimerTSCDeadline | 0x32)
        #expect(apic.readMSR(0x6E0) == 0)
        apic.advance(toTSC: 6000)
        #expect(apic.interruptRequest.isEmpty)
    }

    @Test func theTimerThroughX2APICMSRs() {
        var apic = lapicEnabledX2APIC()
        do { let v = apic.writeMSR(0x83E, 0xB); #expect(v == .nothing) }
        do { let v = apic.writeMSR(0x832, UInt64(lvtTimerPeriodic) | 0x33); #expect(v == .nothing) }
        do { let v = apic.writeMSR(0x838, 10); #expect(v == .nothing) }
        apic.advance(toTSC: 4)
        #expect(apic.readMSR(0x839) == 6)
        #expect(apic.readMSR(0x838) == 10)
        #expect(apic.readMSR(0x83E) == 0xB)
        #expect(apic.nextDeadline == 10)
    }

    @Test func aDisabledAPICHasNoDeadline() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 10)
        do { let v = apic.setBase(0xFEE0_0000); #expect(v) }
        #expect(apic.nextDeadline == nil)
        do { let v = apic.writeMSR(0x6E0, 5); #expect(v == .nothing) }
        #expect(apic.readMSR(0x6E0) == 0)
    }

    @Test func largeCountsDoNotOverflow() {
        var apic = LocalAPIC(id: 0, tscPerBusTick: 1 << 30)  // clamped to 2^24
        apic.writeRegister(offset: APICPage.svr, value: 0x1FF)
        apic.advance(toTSC: UInt64.max - 10)
        apic.writeRegister(offset: APICPage.divide, value: 0xA)  // divide by 128
        apic.writeRegister(offset: APICPage.timer, value: lvtTimerPeriodic | 0x30)
        apic.writeRegister(offset: APICPage.initialCount, value: 0xFFFF_FFFF)
        #expect(apic.nextDeadline == UInt64.max)
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 0xFFFF_FFFF) }
        apic.advance(toTSC: UInt64.max)
        #expect(apic.pendingInterrupt == 0x30)
        #expect(apic.nextDeadline == UInt64.max)
    }
}
