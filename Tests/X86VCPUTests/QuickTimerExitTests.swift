import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

/// A platform whose timer posts into the virtual-APIC page (`postTimers`),
/// as the kernel's local APIC does, or declines (`posts == false`): then
/// the run loop lets its time run (`advance`).
struct PostingPlatform: GuestPlatform {
    var deadline: UInt64?
    /// The deadline after the timer fires (nil: one-shot).
    var nextDeadline_: UInt64?
    var vector: UInt8 = 0x41
    var posts = true
    var postedAt: [UInt64] = []
    var advancedTo: [UInt64] = []
    var stop = false
    /// A stop request that arrives with the timer's expiry.
    var stopOnPost = false
    /// A device NMI that arrives with the timer's expiry.
    var nmiOnPost = false
    var nmi = false
    var page: UnsafeMutableRawPointer?

    mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32 { UInt32.max }
    mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit? { nil }
    mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer) {}
    var nextDeadline: UInt64? { deadline }
    var stopRequested: Bool { stop }
    mutating func takeNMI() -> Bool {
        defer { nmi = false }
        return nmi
    }
    mutating func loadAPIC(from page: VirtualAPICPage) { self.page = page.pointer }

    /// Fires when due: the vector's IRR bit in the page.
    mutating func fire(at tsc: UInt64, into page: UnsafeMutableRawPointer) -> Bool {
        guard let due = deadline, tsc >= due else { return false }
        let word = page + 0x200 + 16 * Int(vector >> 5)
        word.storeBytes(of: word.load(as: UInt32.self) | 1 << UInt32(vector & 31), as: UInt32.self)
        deadline = nextDeadline_
        return true
    }

    mutating func postTimers(toTSC tsc: UInt64, into page: VirtualAPICPage) -> PostedTimers? {
        guard posts else { return nil }
        postedAt.append(tsc)
        if stopOnPost { stop = true }
        if nmiOnPost { nmi = true }
        return PostedTimers(highestVector: fire(at: tsc, into: page.pointer) ? vector : 0)
    }

    mutating func advance(toTSC tsc: UInt64) {
        advancedTo.append(tsc)
        if let page { _ = fire(at: tsc, into: page) }
    }
}

@Suite struct QuickTimerExitTests {
    static func rig(_ platform: inout PostingPlatform, quick: Bool = true) throws -> VCPURig {
        var rig = try VCPURig()
        _ = try rig.vcpu.virtualizeAPIC(rig.hw, at: 0xFEE0_0000)
        if quick { rig.enableQuickExits(for: PostingPlatform.self) }
        rig.preset(VMCSFields.GuestNatural.rflags, 0x202)
        platform.deadline = rig.hw.tsc + 5000
        return rig
    }

    /// The preemption-timer exit once the deadline passed: `cycles` of guest time.
    static func expiry(after cycles: UInt64 = 6000) -> ScriptedExit {
        var exit = ScriptedExit(.preemptionTimerExpired)
        exit.guestCycles = cycles
        return exit
    }

    static func irr(_ page: UnsafeMutableRawPointer?, _ vector: UInt8) -> Bool {
        guard let page else { return false }
        return page.load(fromByteOffset: 0x200 + 16 * Int(vector >> 5), as: UInt32.self) & 1 << UInt32(vector & 31) != 0
    }

    /// A periodic timer: the vector goes into the page and RVI, the timer is
    /// armed for the next period, and the guest resumes where it was,
    /// without the run loop.
    @Test func anExpiryIsPostedAndTheGuestResumesInPlace() throws {
        var platform = PostingPlatform()
        var rig = try Self.rig(&platform)
        let next = platform.deadline! + 10_000
        platform.nextDeadline_ = next
        rig.preset(VMCSFields.GuestNatural.rip, 0x1234)
        rig.hw.script = [Self.expiry(), .cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.hw.quickResumes == 1)
        #expect(platform.postedAt.count == 1 && platform.advancedTo.isEmpty)
        #expect(Self.irr(platform.page, 0x41))
        #expect(rig.field(VMCSFields.Guest16.interruptStatus) & 0xFF == 0x41)
        #expect(rig.vcpu.statistics.fastCount(of: .preemptionTimerExpired) == 1)
        // RIP untouched: the timer is no instruction. The next period armed:
        // the value written at the quick resume counts to it.
        #expect(rig.entries.last!.rip == 0x1236)   // past the CPUID (2 bytes) that came next
        let writes = rig.hw.preemptionTimerWrites
        #expect(writes.count >= 2 && UInt64(writes[1]) <= next - platform.postedAt[0])
        #expect(UInt64(writes[1]) + 100 > next - platform.postedAt[0])
        // No injection: the CPU delivers from RVI.
        #expect(rig.entries.allSatisfy { $0.interruptionInformation & (1 << 31) == 0 })
    }

    /// SDM 30.6: RVI becomes the higher of itself and the vector; SVI stays.
    @Test(arguments: [(UInt16(0x3010), UInt16(0x3041)), (0x3050, 0x3050), (0x0000, 0x0041)])
    func rviRisesToTheVectorButNeverFalls(before: UInt16, after: UInt16) throws {
        var platform = PostingPlatform()
        var rig = try Self.rig(&platform)
        rig.preset(VMCSFields.Guest16.interruptStatus, before)
        rig.hw.script = [Self.expiry()]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.hw.quickResumes == 1)
        #expect(rig.field(VMCSFields.Guest16.interruptStatus) == after)
    }

    /// A one-shot timer: nothing more to wait for. The quick exit leaves the
    /// timer on with the longest wait (one VMWRITE); the run loop's next
    /// entry turns it off.
    @Test func aOneShotLeavesTheTimerParkedForTheRunLoopToTurnOff() throws {
        var platform = PostingPlatform()
        var rig = try Self.rig(&platform)
        rig.hw.script = [Self.expiry(), .cpuid(leaf: 0)]
        let writesBefore = rig.hw.preemptionTimerWrites.count
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.hw.quickResumes == 1 && platform.deadline == nil)
        let timerBit = UInt32(PinBasedControls.activatePreemptionTimer.rawValue)
        #expect(rig.entries[0].pinControls & timerBit != 0)
        // Armed once at the first entry; parked, not re-armed, at the quick resume.
        #expect(rig.hw.preemptionTimerWrites.count == writesBefore + 1)
        #expect(rig.entries.count == 2 && rig.entries[1].preemptionTimer == UInt32.max)
        #expect(rig.entries[1].pinControls & timerBit == 0)
    }

    /// Whatever else waits goes to the run loop, with the vector already
    /// posted: a device NMI (queued and injected), a stop request.
    @Test func anNMIOrAStopGoesBackToTheRunLoop() throws {
        var platform = PostingPlatform()
        platform.nmiOnPost = true
        var rig = try Self.rig(&platform)
        rig.hw.script = [Self.expiry(), .cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.hw.quickResumes == 0 && platform.postedAt.count == 1 && platform.advancedTo.isEmpty)
        #expect(Self.irr(platform.page, 0x41))
        #expect(rig.entries[1].injected.isValid && rig.entries[1].injected.vector == 2)

        var stopping = PostingPlatform()
        stopping.stopOnPost = true
        var rig2 = try Self.rig(&stopping)
        rig2.hw.script = [Self.expiry(), .cpuid(leaf: 0)]
        let exit = rig2.vcpu.run(rig2.hw, &stopping)
        #expect(exit == .stopRequested && rig2.hw.quickResumes == 0 && stopping.postedAt.count == 1)
    }

    /// A platform that cannot post (its model must accept the vector) and a
    /// vCPU without APIC virtualization: the run loop lets the time run.
    @Test func withoutPostingTheRunLoopRunsTheTimer() throws {
        var platform = PostingPlatform()
        platform.posts = false
        var rig = try Self.rig(&platform)
        rig.hw.script = [Self.expiry(), .cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.hw.quickResumes == 0 && platform.postedAt.isEmpty && platform.advancedTo.count == 1)
        #expect(Self.irr(platform.page, 0x41))

        var plain = PostingPlatform()
        var rig2 = try VCPURig()
        rig2.enableQuickExits(for: PostingPlatform.self)
        plain.deadline = rig2.hw.tsc + 5000
        rig2.hw.script = [Self.expiry(), .cpuid(leaf: 0)]
        _ = rig2.vcpu.run(rig2.hw, &plain)
        #expect(rig2.hw.quickResumes == 0 && plain.postedAt.isEmpty && !plain.advancedTo.isEmpty)
    }
}
