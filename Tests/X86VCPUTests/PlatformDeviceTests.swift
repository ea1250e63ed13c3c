import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

/// A platform with one memory-mapped device page, an MSR, an interrupt
/// controller and a timer, recording what the vCPU asks of it.
struct DevicePlatform: GuestPlatform {
    static let page: UInt64 = 0xFEE0_0000
    var reads: [(UInt64, Int)] = []
    var writes: [(UInt64, Int, UInt64)] = []
    var readValue: UInt64 = 0
    var msr: (number: UInt32, answer: PlatformMSRAnswer) = (0x802, .done(0x1234))
    var msrWrites: [(UInt32, UInt64)] = []
    var pending: [UInt8] = []
    var acknowledged: [UInt8] = []
    var deadline: UInt64? = nil
    var advancedTo: UInt64 = 0

    mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32 { UInt32.max }
    mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit? {
        port == 0xF4 ? .powerOff(status: UInt8(truncatingIfNeeded: value)) : nil
    }
    mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer) {}
    func decodesMMIO(_ gpa: UInt64) -> Bool { gpa >= Self.page && gpa < Self.page + 0x1000 }
    mutating func mmioRead(_ gpa: UInt64, size: Int) -> UInt64 { reads.append((gpa, size)); return readValue }
    mutating func mmioWrite(_ gpa: UInt64, size: Int, value: UInt64) { writes.append((gpa, size, value)) }
    mutating func msrRead(_ number: UInt32) -> PlatformMSRAnswer { number == msr.number ? msr.answer : .notMine }
    mutating func msrWrite(_ number: UInt32, _ value: UInt64) -> PlatformMSRAnswer {
        guard number == msr.number else { return .notMine }
        msrWrites.append((number, value))
        return msr.answer
    }
    var interruptPending: Bool { !pending.isEmpty }
    mutating func acknowledgeInterrupt() -> UInt8? {
        guard !pending.isEmpty else { return nil }
        acknowledged.append(pending.removeFirst())
        return acknowledged.last
    }
    var nextDeadline: UInt64? { deadline }
    mutating func advance(toTSC tsc: UInt64) { advancedTo = tsc }
}

@Suite struct PlatformDeviceTests {
    /// An EPT violation (read or write) at `gpa` with the instruction `bytes` at the guest's RIP.
    static func mmio(_ rig: borrowing VCPURig, gpa: UInt64, write: Bool, bytes: [UInt8]) -> ScriptedExit {
        rig.memory.store(bytes, at: rig.rip)
        // Bits 7 and 8: the linear address is valid and this is its translation.
        return .eptViolation(gpa: gpa, qualification: (write ? 0x2 : 0x1) | 0x180)
    }

    @Test func anMMIOReadIsDecodedPerformedOnTheDeviceAndSteppedOver() throws {
        var rig = try VCPURig()
        var platform = DevicePlatform()
        platform.readValue = 0xABCD_1234
        let start = rig.rip
        rig.hw.script = [Self.mmio(rig, gpa: 0xFEE0_0020, write: false, bytes: [0x8B, 0x47, 0x20])]  // mov eax, [edi+0x20]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.reads.count == 1 && platform.reads[0] == (0xFEE0_0020, 4))
        #expect(rig.entries.last?.registers.rax == 0xABCD_1234)
        #expect(rig.entries.last?.rip == start + 3)
    }

    @Test func anMMIOWriteTakesItsValueFromTheRegister() throws {
        var rig = try VCPURig()
        var platform = DevicePlatform()
        rig.hw.script = [Self.mmio(rig, gpa: 0xFEE0_00B0, write: true, bytes: [0x89, 0x8F, 0xB0, 0x00, 0x00, 0x00])
            .then { r, _ in r.rcx = 0x1_0000_0007 }]   // mov [edi+0xb0], ecx
        let start = rig.rip
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.writes.count == 1)
        #expect(platform.writes.first.map { $0 == (0xFEE0_00B0, 4, 7) } == true)
        #expect(rig.entries.last?.rip == start + 6)
    }

    @Test func withoutADeviceOrAnInstructionTheGuestStops() throws {
        var rig = try VCPURig()
        var platform = DevicePlatform()
        rig.hw.script = [Self.mmio(rig, gpa: 0xFEB0_0000, write: false, bytes: [0x8B, 0x47, 0x20])]
        guard case .eptViolation(let gpa, _, _) = rig.vcpu.run(rig.hw, &platform) else { Issue.record("no stop"); return }
        #expect(gpa == 0xFEB0_0000 && platform.reads.isEmpty)
        rig.hw.script = [Self.mmio(rig, gpa: 0xFEE0_0020, write: false, bytes: [0x09, 0x47, 0x20])]  // or [edi+0x20], eax
        guard case .eptViolation = rig.vcpu.run(rig.hw, &platform) else { Issue.record("no stop"); return }
        #expect(platform.reads.isEmpty && platform.writes.isEmpty)
        // A write qualification for a reading instruction: not performed either.
        rig.hw.script = [Self.mmio(rig, gpa: 0xFEE0_0020, write: true, bytes: [0x8B, 0x47, 0x20])]
        guard case .eptViolation = rig.vcpu.run(rig.hw, &platform) else { Issue.record("no stop"); return }
        #expect(platform.writes.isEmpty)
    }

    @Test func aPageWalkOrEventDeliveryReachingTheDeviceIsNotTheInstructionsAccess() throws {
        var rig = try VCPURig()
        var platform = DevicePlatform()
        rig.memory.store([0x8B, 0x47, 0x20], at: rig.rip)
        // Bit 8 clear: the CPU was reading a paging-structure entry there.
        rig.hw.script = [.eptViolation(gpa: 0xFEE0_0020, qualification: 0x81)]
        guard case .eptViolation = rig.vcpu.run(rig.hw, &platform) else { Issue.record("no stop"); return }
        // No linear address at all.
        rig.hw.script = [.eptViolation(gpa: 0xFEE0_0020, qualification: 0x1)]
        guard case .eptViolation = rig.vcpu.run(rig.hw, &platform) else { Issue.record("no stop"); return }
        // The exit interrupted the delivery of an interrupt (its IDT entry there).
        rig.hw.script = [ScriptedExit.eptViolation(gpa: 0xFEE0_0020, qualification: 0x181)
            .with { $0.idtVectoringInformation = 0x8000_0041 }]
        guard case .eptViolation = rig.vcpu.run(rig.hw, &platform) else { Issue.record("no stop"); return }
        #expect(platform.reads.isEmpty && platform.writes.isEmpty)
    }

    @Test func platformMSRsComeBeforeTheVCPUsAndMayFault() throws {
        var rig = try VCPURig()
        var platform = DevicePlatform()
        rig.hw.script = [.rdmsr(0x802)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.edxeax == 0x1234)
        platform.msr = (MSR.ia32APICBase.address, .generalProtection)
        rig.hw.script = [.wrmsr(MSR.ia32APICBase.address, 0xFEE0_0900)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.entries.last?.injected.raw == 0x8000_0B0D)      // #GP(0)
        #expect(platform.msrWrites.count == 1)
        platform.msr = (0x10, .notMine)
        rig.hw.script = [.rdmsr(MSR.ia32PAT.address)]
        _ = rig.vcpu.run(rig.hw, &platform)                          // the vCPU's own: no fault
        #expect(rig.entries.last?.injected.isValid == false)
    }

    @Test func aPendingInterruptIsTakenOnlyWhenTheGuestCanTakeIt() throws {
        var rig = try VCPURig()
        var platform = DevicePlatform()
        platform.pending = [0x41]
        rig.preset(VMCSFields.GuestNatural.rflags, 0x2)             // IF = 0
        rig.hw.script = [.cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.acknowledged.isEmpty)
        #expect(rig.entries[0].interruptWindowExiting && !rig.entries[0].injected.isValid)
        rig.preset(VMCSFields.GuestNatural.rflags, 0x202)           // IF = 1
        rig.hw.script = [.cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.acknowledged == [0x41])
        let delivered = rig.entries.contains { $0.injected.isValid && $0.injected.vector == 0x41 }
        #expect(delivered)
    }

    @Test func theDevicesDeadlineArmsThePreemptionTimerAndHLTWaitsForIt() throws {
        var rig = try VCPURig()
        var platform = DevicePlatform()
        platform.deadline = rig.hw.readTSC() + 1_000_000_000
        rig.preset(VMCSFields.GuestNatural.rflags, 0x202)
        rig.hw.script = [.hlt()]
        let exit = rig.vcpu.run(rig.hw, &platform)
        #expect(exit == rig.scriptEnd)                               // HLT did not stop the guest
        let pin = PinBasedControls(rawValue: rig.entries[0].pinControls)
        #expect(pin.contains(.activatePreemptionTimer) && rig.entries[0].preemptionTimer > 0)
        #expect(platform.advancedTo == 0)                            // not due yet: time not run
        platform.deadline = 1                                        // due: the devices' time runs
        rig.hw.script = [.cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.advancedTo > 0)
        // No deadline: the timer is switched off again.
        platform.deadline = nil
        rig.hw.script = [.cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(!PinBasedControls(rawValue: rig.entries.last!.pinControls).contains(.activatePreemptionTimer))
    }

    /// The preemption timer stands still in root mode, so its value is the
    /// time left to the deadline at each entry, quick resumes included: the
    /// host's time at an exit never delays the guest's timer. The fast path
    /// stays on while it is armed; the timer is off again without a deadline.
    @Test func theTimerIsArmedAtEveryEntryFromTheDeadline() throws {
        var rig = try VCPURig()
        rig.enableQuickExits(for: DevicePlatform.self)
        var platform = DevicePlatform()
        let deadline = rig.hw.readTSC() + 1_000_000
        platform.deadline = deadline
        var first = ScriptedExit.out(0x80, 1), second = ScriptedExit.out(0x80, 2)
        first.guestCycles = 5000
        second.guestCycles = 7000
        rig.hw.script = [first, second, .cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.hw.quickResumes == 2)
        let armed = rig.entries[0]
        #expect(PinBasedControls(rawValue: armed.pinControls).contains(.activatePreemptionTimer))
        #expect(!VMExitControls(rawValue: armed.exitControls).contains(.savePreemptionTimerValue))
        #expect(armed.fastPathEnabled & ExitFastPath.Kind.quick.rawValue != 0)
        // One write per entry and per quick resume: each the deadline less the TSC then.
        let writes = rig.hw.preemptionTimerWrites
        #expect(writes.count == rig.entries.count + 2)
        #expect(writes.first.map(UInt64.init) == deadline - armed.tsc)
        #expect(writes[0] - writes[1] >= 5000 && writes[1] - writes[2] >= 7000)
        platform.deadline = nil
        rig.hw.script = [.cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        let idle = rig.entries.last!
        #expect(!PinBasedControls(rawValue: idle.pinControls).contains(.activatePreemptionTimer))
        #expect(rig.hw.preemptionTimerWrites.count == writes.count)
    }

    /// A timer counting TSC >> 5 (IA32_VMX_MISC bits 4:0) ends at the first
    /// unit boundary at or past the deadline: never before it, less than a
    /// unit after it.
    @Test(arguments: [UInt64(1), 31, 32, 33, 1000])
    func aCoarseTimerRoundsUpToItsUnit(ahead: UInt64) throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x485] = hw.cpu.msrs[0x485]! & ~0x1F | 5
        var rig = try VCPURig(hw: hw)
        var platform = DevicePlatform()
        let deadline = rig.hw.tsc + 10 + ahead   // the run's first TSC read is 10 ticks on
        platform.deadline = deadline
        rig.hw.tsc = deadline - ahead - 10
        rig.hw.script = [.cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        func check(_ entry: FakeHardware.Entry, _ deadline: UInt64) {
            let left = deadline - entry.tsc
            let value = UInt64(entry.preemptionTimer)
            #expect(value * 32 >= left && (value == 0 || (value - 1) * 32 < left), "left \(left), value \(value)")
        }
        check(rig.entries[0], deadline)
        // A new deadline while the timer runs (the inlined path): the same rule.
        let later = rig.hw.tsc + 1000 + ahead
        platform.deadline = later
        rig.hw.script = [.cpuid(leaf: 0)]
        _ = rig.vcpu.run(rig.hw, &platform)
        check(rig.entries[rig.entries.count - 1], later)
    }

    /// Whatever bytes lie at RIP, an MMIO exit either performs exactly one
    /// device access and steps 1-15 bytes, or stops the guest untouched: the
    /// hypervisor never traps and never touches the device twice.
    @Test(arguments: [GuestStartMode.real, .protected32])
    func randomInstructionBytesNeverTrapTheHost(mode: GuestStartMode) throws {
        var seed: UInt64 = 0x5EED_0000 ^ (mode == .real ? 1 : 2)
        func next() -> UInt64 {
            seed &+= 0x9E37_79B9_7F4A_7C15
            var z = seed
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var rig = try VCPURig(mode)
        var performed = 0
        for _ in 0..<2000 {
            var bytes = (0..<15).map { _ in UInt8(truncatingIfNeeded: next()) }
            // Half the cases start with a MOV form the decoder knows.
            if next() & 1 == 0 { bytes[0] = [0x88, 0x89, 0x8A, 0x8B, 0xA1, 0xA3, 0xC7, 0x0F][Int(next() % 8)] }
            var platform = DevicePlatform()
            platform.readValue = next()
            let start = rig.rip
            let write = next() & 1 == 0
            rig.hw.script = [Self.mmio(rig, gpa: 0xFEE0_0000 + (next() & 0xFFF), write: write, bytes: bytes)]
            let exit = rig.vcpu.run(rig.hw, &platform)
            let accesses = platform.reads.count + platform.writes.count
            if case .eptViolation = exit {
                #expect(accesses == 0)
            } else {
                #expect(accesses == 1)
                let step = (rig.entries.last?.rip ?? start) &- start
                #expect(step >= 1 && step <= 15)
                let size = platform.reads.first?.1 ?? platform.writes.first?.1 ?? 0
                #expect([1, 2, 4, 8].contains(size))
                performed += 1
            }
            rig.preset(VMCSFields.GuestNatural.rip, start)
        }
        #expect(performed > 100)   // the property is not vacuous
    }
}

