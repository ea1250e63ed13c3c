import Testing
import Foundation
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

/// Records the sequence; the AP "starts" after a given STARTUP IPI and
/// "checks in" a given time after it starts.
struct FakeAPPort: APStartPort {
    enum Event: Equatable { case ipi(InterruptCommand), wait(UInt32) }
    var events: [Event] = []
    var startsOnStartup: Int? = 1      // nil: never starts
    var checkInAfter: UInt64? = 0      // microseconds after starting; nil: never
    var refuseIPI: Int? = nil          // the n-th IPI (1-based) fails
    var startups = 0, ipis = 0
    var startedAt: UInt64? = nil
    var clock: UInt64 = 0

    mutating func send(_ command: InterruptCommand) -> Bool {
        ipis += 1
        if ipis == refuseIPI { return false }
        events.append(.ipi(command))
        if command.low & 0x700 == 0x600 {
            startups += 1
            if startedAt == nil, startups == startsOnStartup { startedAt = clock }
        }
        return true
    }
    mutating func wait(microseconds: UInt32) { events.append(.wait(microseconds)); clock += UInt64(microseconds) }
    mutating func hasStarted() -> Bool { startedAt != nil }
    mutating func hasCheckedIn() -> Bool {
        guard let startedAt, let checkInAfter else { return false }
        return clock >= startedAt + checkInAfter
    }
}

final class FakeXAPIC: XAPICRegisters {
    var writes: [(UInt32, UInt32)] = []
    var busyReads = 0        // reads that still show delivery pending
    var reads = 0
    func read(_ offset: UInt32) -> UInt32 {
        reads += 1
        if busyReads > 0 { busyReads -= 1; return InterruptCommand.deliveryPending }
        return 0
    }
    func write(_ offset: UInt32, _ value: UInt32) { writes.append((offset, value)) }
}

final class FakeMSRs: X2APICRegisters {
    var writes: [(UInt32, UInt64)] = []
    func writeMSR(_ address: UInt32, _ value: UInt64) { writes.append((address, value)) }
}

@Suite struct APStartupTests {
    @Test func interruptCommandEncodings() {
        // SDM 9.4.4.1's example values, with a destination instead of the "all excluding self" shorthand.
        #expect(InterruptCommand.initAssert(to: 3).low == 0x0000_4500)
        #expect(InterruptCommand.startup(to: 3, vector: 0x08).low == 0x0000_4608)
        #expect(InterruptCommand.startup(to: 3, vector: 0x9F).low == 0x0000_469F)
        #expect(InterruptCommand.initAssert(to: 3).xAPICHigh == 0x0300_0000)
        #expect(InterruptCommand.startup(to: 0x1234, vector: 8).x2APICValue == 0x0000_1234_0000_4608)
        #expect(InterruptCommand.initAssert(to: 0xFF).fitsXAPIC && !InterruptCommand.initAssert(to: 0x100).fitsXAPIC)
    }

    @Test func xAPICWritesHighThenLow() {
        let apic = FakeXAPIC()
        apic.busyReads = 3
        #expect(LocalAPICICR.send(.startup(to: 2, vector: 0x08), xAPIC: apic))
        #expect(apic.writes.map(\.0) == [0x310, 0x300])
        #expect(apic.writes.map(\.1) == [0x0200_0000, 0x0000_4608])
        #expect(apic.reads == 5)   // three busy, one idle before, one idle after
    }

    @Test func xAPICGivesUpOnAStuckDeliveryStatusOrAWideID() {
        let stuck = FakeXAPIC()
        stuck.busyReads = Int.max
        #expect(!LocalAPICICR.send(.initAssert(to: 1), xAPIC: stuck))
        #expect(stuck.writes.isEmpty && stuck.reads == LocalAPICICR.deliveryPolls)
        let apic = FakeXAPIC()
        #expect(!LocalAPICICR.send(.initAssert(to: 0x100), xAPIC: apic) && apic.writes.isEmpty)
    }

    @Test func x2APICWritesOneMSR() {
        let msrs = FakeMSRs()
        LocalAPICICR.send(.initAssert(to: 0x1_0000), x2APIC: msrs)
        #expect(msrs.writes.count == 1 && msrs.writes[0].0 == 0x830 && msrs.writes[0].1 == 0x0001_0000_0000_4500)
    }

    @Test func initStartupAndNoSecondStartupWhenTheAPStarted() throws {
        var port = FakeAPPort()
        port.checkInAfter = 450        // started at the STARTUP IPI, checks in 450 us later
        let report = try APStartup.start(apicID: 1, vector: 0x08, port: &port)
        #expect(port.events == [.ipi(.initAssert(to: 1)), .wait(10_000), .ipi(.startup(to: 1, vector: 8)), .wait(200),
                                .wait(100), .wait(100), .wait(100)])
        #expect(report == APStartReport(startupIPIs: 1, checkInMicroseconds: 300))
    }

    @Test func secondStartupWhenTheFirstWasMissed() throws {
        var port = FakeAPPort()
        port.startsOnStartup = 2
        let report = try APStartup.start(apicID: 5, vector: 0x9F, port: &port)
        #expect(port.events == [.ipi(.initAssert(to: 5)), .wait(10_000), .ipi(.startup(to: 5, vector: 0x9F)), .wait(200),
                                .ipi(.startup(to: 5, vector: 0x9F)), .wait(200)])
        #expect(report == APStartReport(startupIPIs: 2, checkInMicroseconds: 0))
    }

    @Test func timeoutsAreNamed() {
        var never = FakeAPPort()
        never.startsOnStartup = nil
        #expect(throws: APStartError(.didNotStart, apicID: 2)) { try APStartup.start(apicID: 2, vector: 8, port: &never) }
        // Two STARTUP IPIs, then polls until the timeout, no more.
        var timing = APStartTiming()
        #expect(never.events.filter { $0 == .wait(timing.pollInterval) }.count == Int(timing.checkInTimeout / timing.pollInterval))
        #expect(never.startups == 2)

        var hung = FakeAPPort()
        hung.checkInAfter = nil
        timing.checkInTimeout = 1000
        #expect(throws: APStartError(.noCheckIn, apicID: 3)) { try APStartup.start(apicID: 3, vector: 8, timing: timing, port: &hung) }
        #expect(hung.events.count == 4 + 10)
    }

    @Test func aRefusedIPIStopsTheSequence() {
        for n in 1...2 {
            var port = FakeAPPort()
            port.refuseIPI = n
            #expect(throws: APStartError(.ipiNotSent, apicID: 7)) { try APStartup.start(apicID: 7, vector: 8, port: &port) }
            #expect(port.events.filter { if case .ipi = $0 { true } else { false } }.count == n - 1)
        }
        var port = FakeAPPort()
        port.startsOnStartup = 2
        port.refuseIPI = 3
        #expect(throws: APStartError(.ipiNotSent, apicID: 7)) { try APStartup.start(apicID: 7, vector: 8, port: &port) }
        let kinds: [APStartError.Kind] = [.ipiNotSent, .didNotStart, .noCheckIn]
        #expect(Set(kinds.map { "\(APStartError($0, apicID: 0).message)" }).count == 3)
    }

    @Test func trampolinePage() {
        var picker = TrampolinePagePicker()
        #expect(picker.pick() == nil)
        picker.offer(base: 0, length: 0x9FC00, type: 1)
        picker.offer(base: 0x9FC00, length: 0x400, type: 2)
        picker.offer(base: 0xF0000, length: 0x10000, type: 2)
        #expect(picker.pick() == 0x8000)
        #expect(picker.pick(preferred: 0x9F000) == 0x9E000)  // 0x9F000 overlaps the EBDA
        #expect(picker.pick(preferred: 0) == 0x9E000)        // page 0 never
        #expect(picker.pick(preferred: 0x8800) == 0x9E000)   // not a page

        var low = TrampolinePagePicker()
        low.offer(base: 0x1000, length: 0x2800, type: 1)     // pages 1 and 2 whole, 3 partly
        low.offer(base: 0x2000, length: 0x10, type: 3)       // an ACPI range inside page 2
        #expect(low.pick() == 0x1000)
        var none = TrampolinePagePicker()
        none.offer(base: 0x100000, length: 0x1000000, type: 1)
        none.offer(base: 0, length: 0, type: 1)
        none.offer(base: 0x5000, length: UInt64.max, type: 1)
        #expect(none.pick() == 0x8000 && none.pick(preferred: 0x200000) == 0x9F000)
    }
}

@Suite struct PerCPUTablesTests {
    @Test func gdtTSSAndGDTR() {
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0xAA)
        let address: UInt64 = 0x1_2345_6000
        PerCPUTables.write(into: page, at: address, stackTop: 0x7000, istTop: 0x5000)
        let gdt = (0..<5).map { page.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self) }
        #expect(gdt[0] == 0 && gdt[1] == 0x00AF_9A00_0000_FFFF && gdt[2] == 0x00CF_9200_0000_FFFF)
        #expect(SegmentDescriptor.systemBase(low: gdt[3], high: gdt[4]) == address + 64)
        #expect(SegmentDescriptor(rawValue: gdt[3]).limit == 103 && SegmentDescriptor(rawValue: gdt[3]).rights.rawValue == 0x89)
        #expect(page.loadUnaligned(fromByteOffset: 48, as: UInt16.self) == 39)
        #expect(page.loadUnaligned(fromByteOffset: 50, as: UInt64.self) == address)
        #expect(page.loadUnaligned(fromByteOffset: 64 + 4, as: UInt64.self) == 0x7000)
        #expect(page.loadUnaligned(fromByteOffset: 64 + 36, as: UInt64.self) == 0x5000)
        #expect(page.loadUnaligned(fromByteOffset: 64 + 102, as: UInt16.self) == 104)
        #expect(page[255] == 0 && page[256] == 0xAA)   // the control block is not touched
        #expect(MemoryLayout<APControlBlock>.size <= 4096 - PerCPUTables.controlBlockOffset)
    }

    /// Boot/ap.asm declares the offsets it shares with Swift as `equ` lines.
    @Test func assemblyAgreesOnTheOffsets() throws {
        let asm = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Boot/ap.asm")
        let text = try String(contentsOf: asm, encoding: .utf8)
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 3, words[1] == "equ", let v = Int(words[2].replacingOccurrences(of: "0x", with: ""), radix: 16) {
                values[String(words[0])] = v
            }
        }
        #expect(values["AP_TABLES_GDTR"] == PerCPUTables.gdtrOffset)
        #expect(values["AP_TABLES_PERCPU"] == PerCPUTables.perCPUOffset)
        #expect(values["AP_TSS_SELECTOR"] == Int(PerCPUTables.tssSelector))
        #expect(values["AP_DATA"] == APTrampolineData.offset)
        #expect(values["AP_DATA_STARTED"] == APTrampolineData.started)
        #expect(values["AP_DATA_TSC"] == APTrampolineData.entryTSC)
        #expect(values["AP_DATA_CR3"] == APTrampolineData.cr3)
        #expect(values["AP_DATA_STACK"] == APTrampolineData.stackTop)
        #expect(values["AP_DATA_ENTRY"] == APTrampolineData.entry)
        #expect(values["AP_DATA_ARG"] == APTrampolineData.argument)
    }

    @Test func capabilityDifferences() throws {
        let caps = try VMXCapabilities.read(from: FakeCPU(bochs: BochsCapabilities.corei7_skylake_x))
        #expect(VMXCapabilityDifference(caps, caps) == nil)
        var other = caps
        other.misc = VMXMisc(rawValue: caps.misc.rawValue ^ 1)
        #expect(VMXCapabilityDifference(caps, other) == .misc)
        other.eptVPID = nil
        #expect(VMXCapabilityDifference(caps, other) == .misc)
        other = caps
        other.eptVPID = nil
        #expect(VMXCapabilityDifference(caps, other) == .eptVPID)
        let penryn = try VMXCapabilities.read(from: FakeCPU(bochs: BochsCapabilities.core2_penryn_t9600))
        #expect(VMXCapabilityDifference(caps, penryn) != nil)
        #expect(Set((UInt32(1)...12).map { "\(VMXCapabilityDifference(rawValue: $0)!.name)" }).count == 12)
    }
}
