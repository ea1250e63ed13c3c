import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// I/O and MSR exits through the trampoline's quick handler (QuickExits.swift).
// FakeHardware plays the assembly's part (Boot/vmx.asm `vmx_exit_entry`): an
// exit either resumes inside one `enterGuest` or comes back to the run loop.
// The rule the quick path must keep: whatever it does, the guest and its
// devices end up as the run loop alone would leave them.
@Suite struct QuickExitTests {
    static let efer = MSR.ia32EFER.address

    /// What a run leaves that the guest or its devices could notice.
    struct Outcome: Equatable {
        var exit: VCPUExit
        var registers: GeneralRegisters
        var rip, rflags, interruptibility, pendingDebug: UInt64
        var ins, outs: [FakePlatform.PortAccess]
        /// Every event injected, in order (VM-entry interruption information),
        /// and the RIP it was injected at: when it reached the guest.
        var injected: [UInt32]
        var injectedAt: [UInt64]
        /// Where the guest first ran with the preemption timer, and whether it still does.
        var timerFrom: UInt64?
        var timerOn: Bool
        var exits: UInt64
    }

    /// Plays `script` with quick exits on or off, after `prepare`.
    static func play(_ script: [ScriptedExit], quick: Bool,
                     prepare: (inout VCPURig) -> Void = { _ in }) throws -> (Outcome, entries: Int, resumes: Int) {
        var rig = try VCPURig()
        if quick { rig.enableQuickExits() }
        prepare(&rig)
        let exit = rig.run(script)
        let timerBit = UInt32(PinBasedControls.activatePreemptionTimer.rawValue)
        let outcome = Outcome(
            exit: exit, registers: rig.vcpu.registers, rip: rig.rip,
            rflags: rig.field(VMCSFields.GuestNatural.rflags),
            interruptibility: rig.field(VMCSFields.Guest32.interruptibilityState),
            pendingDebug: rig.field(VMCSFields.GuestNatural.pendingDebugExceptions),
            ins: rig.platform.ins, outs: rig.platform.outs,
            injected: rig.entries.map(\.interruptionInformation).filter { $0 & (1 << 31) != 0 },
            injectedAt: rig.entries.filter { $0.interruptionInformation & (1 << 31) != 0 }.map(\.rip),
            timerFrom: rig.hw.everyEntry.first { $0.pinControls & timerBit != 0 }?.rip,
            timerOn: (rig.hw.everyEntry.last?.pinControls ?? 0) & timerBit != 0,
            exits: rig.vcpu.statistics.totalExits)
        return (outcome, rig.entries.count, rig.hw.quickResumes)
    }

    /// The same script with and without quick exits: the same outcome.
    @discardableResult
    static func expectSameOutcome(_ script: [ScriptedExit], prepare: (inout VCPURig) -> Void = { _ in },
                                  sourceLocation: SourceLocation = #_sourceLocation) throws -> (quick: Int, entries: Int) {
        let loop = try play(script, quick: false, prepare: prepare)
        let quick = try play(script, quick: true, prepare: prepare)
        #expect(quick.0 == loop.0, sourceLocation: sourceLocation)
        #expect(loop.resumes == 0, sourceLocation: sourceLocation)
        return (quick.resumes, quick.entries)
    }

    /// A byte the guest's RAX held before an exit, to see what IN keeps.
    static func raxBefore(_ value: UInt64) -> (inout GeneralRegisters, FakeVMCS) -> Void { { r, _ in r.rax = value } }

    @Test func portAndMSRExitsResumeInsideOneEntry() throws {
        let script: [ScriptedExit] = [
            ScriptedExit.io(port: 0x3FF, width: .byte, in: true).then(Self.raxBefore(0x1122_3344_5566_7788)),
            .out(0x3FF, 0xA5), .rdmsr(Self.efer), .exitPort(7),
        ]
        let (quick, entries) = try Self.expectSameOutcome(script) { $0.platform.inValues[0x3FF] = [0x5A] }
        #expect(quick == 3)     // IN, OUT, RDMSR: the power-off OUT goes back to the run loop
        #expect(entries == 1)   // so one VM entry served all four exits
        let (outcome, _, _) = try Self.play(script, quick: true) { $0.platform.inValues[0x3FF] = [0x5A] }
        #expect(outcome.exit == .powerOff(status: 7))
        #expect(outcome.exits == 4)
        #expect(outcome.rip == 0x1000 + 1 + 1 + 2 + 2)
        #expect(outcome.ins == [FakePlatform.PortAccess(port: 0x3FF, width: .byte, value: 0x5A)])
    }

    @Test func inMergesIntoALAndAXAndZeroExtendsEAXAsTheRunLoopDoes() throws {
        for width in [OperandWidth.byte, .word, .dword] {
            try Self.expectSameOutcome([
                ScriptedExit.io(port: 0x60, width: width, in: true).then(Self.raxBefore(0xFFFF_FFFF_FFFF_FFFF)),
            ]) { $0.platform.inValues[0x60] = [0x1234_5678] }
        }
    }

    @Test func aFaultingMSRAccessComesBackToTheRunLoopToInjectItsGP() throws {
        let script: [ScriptedExit] = [.rdmsr(0x1234_5678), .wrmsr(MSR.ia32PAT.address, 0x0808_0808_0808_0808)]
        let (quick, _) = try Self.expectSameOutcome(script)
        #expect(quick == 0)
        let (outcome, _, _) = try Self.play(script, quick: true)
        let gp = UInt32(ExceptionVector.generalProtection.rawValue)
        #expect(outcome.injected.map { $0 & 0xFF } == [gp, gp])
        #expect(outcome.rip == 0x1000)  // neither instruction completed
    }

    @Test func aGoodWRMSRIsQuickAndChangesWhatRDMSRReads() throws {
        let pat: UInt64 = 0x0007_0406_0007_0406
        let (quick, _) = try Self.expectSameOutcome([.wrmsr(MSR.ia32PAT.address, pat), .rdmsr(MSR.ia32PAT.address)])
        #expect(quick == 2)
        let (outcome, _, _) = try Self.play([.wrmsr(MSR.ia32PAT.address, pat), .rdmsr(MSR.ia32PAT.address)], quick: true)
        #expect(outcome.registers.rdx << 32 | outcome.registers.rax & 0xFFFF_FFFF == pat)
    }

    @Test func stiBlockingAndSingleStepLeaveTheAdvanceToSwift() throws {
        // The assembly does not advance past STI / MOV SS blocking or with
        // RFLAGS.TF: the run loop clears the blocking and makes the #DB pending.
        let blocked = ScriptedExit.out(0x80, 1).then { _, vmcs in vmcs.preset(VMCSFields.Guest32.interruptibilityState, 1) }
        let stepped = ScriptedExit.out(0x80, 2).then { _, vmcs in
            vmcs.preset(VMCSFields.GuestNatural.rflags, RFLAGS.initial.rawValue | RFLAGS.tf.rawValue)
        }
        let (quick, entries) = try Self.expectSameOutcome([blocked, stepped])
        #expect(quick == 0)
        #expect(entries == 3)
        let (outcome, _, _) = try Self.play([blocked, stepped], quick: true)
        #expect(outcome.interruptibility == 0)
        #expect(outcome.pendingDebug & PendingDebugExceptions.bs != 0)
        #expect(outcome.rip == 0x1002)
    }

    @Test func aDeviceNMIOrInterruptSendsTheExitBackToTheRunLoopANewDeadlineIsArmedInPlace() throws {
        // The first two OUTs set something off that only the entry
        // preparation delivers, at the next entry: the RIP after that OUT.
        // The third moves the devices' deadline: the quick exit arms the
        // preemption timer, from the same RIP as the run loop would.
        let script: [ScriptedExit] = [.out(0x10, 1), .out(0x20, 1), .out(0x30, 1), .out(0x3FF, 1), .out(0x3FF, 2)]
        let (quick, _) = try Self.expectSameOutcome(script) { rig in
            rig.platform.onOut[0x10] = { $0.nmiPending = true }
            rig.platform.onOut[0x20] = { $0.pendingInterrupt = true }
            rig.platform.onOut[0x30] = { $0.deadline = 1 << 40 }
            rig.preset(VMCSFields.GuestNatural.rflags, RFLAGS.initial.rawValue | RFLAGS.interruptEnable.rawValue)
        }
        let (outcome, _, _) = try Self.play(script, quick: true) { rig in
            rig.platform.onOut[0x10] = { $0.nmiPending = true }
            rig.platform.onOut[0x20] = { $0.pendingInterrupt = true }
            rig.platform.onOut[0x30] = { $0.deadline = 1 << 40 }
            rig.preset(VMCSFields.GuestNatural.rflags, RFLAGS.initial.rawValue | RFLAGS.interruptEnable.rawValue)
        }
        #expect(outcome.injected.map { $0 & 0x7FF } == [0x202, 0x30])   // the NMI, then vector 0x30
        #expect(outcome.injectedAt == [0x1001, 0x1002])
        #expect(outcome.timerFrom == 0x1003)
        #expect(outcome.timerOn)
        #expect(quick == 3)   // the deadline's OUT and the last two
    }

    @Test func aStopRequestedByTheDevicesEndsTheRunAfterTheInstruction() throws {
        let script: [ScriptedExit] = [.out(0x40, 1), .out(0x3FF, 2)]
        let (quick, _) = try Self.expectSameOutcome(script) { $0.platform.onOut[0x40] = { $0.stopRequested = true } }
        #expect(quick == 0)
        let (outcome, _, _) = try Self.play(script, quick: true) { $0.platform.onOut[0x40] = { $0.stopRequested = true } }
        #expect(outcome.exit == .stopRequested)
        #expect(outcome.rip == 0x1001)
        #expect(outcome.outs.count == 1)
    }

    @Test func stringIOIsDeclinedAndTheRunLoopDoesIt() throws {
        let outsb = ScriptedExit.io(port: 0x3F8, width: .byte, in: false, string: true).then { r, _ in r.rsi = 0x2000 }
        let (quick, _) = try Self.expectSameOutcome([outsb, .out(0x3FF, 1)]) { rig in
            rig.memory.store([0x41], at: 0x2000)
        }
        #expect(quick == 1)  // only the plain OUT
    }

    @Test func theFastPathOffersQuickExitsOnlyWhenTheKernelTurnedThemOn() throws {
        let quickBit = ExitFastPath.Kind.quick.rawValue
        var off = try VCPURig()
        _ = off.run([.out(0x3FF, 1)])
        #expect(off.entries.allSatisfy { $0.fastPathEnabled & quickBit == 0 })
        var on = try VCPURig()
        on.enableQuickExits()
        _ = on.run([.out(0x3FF, 1)])
        #expect(on.entries.first.map { $0.fastPathEnabled & quickBit != 0 } == true)
        #expect(on.vcpu.statistics.count(of: .ioInstruction) == 1)
    }

    @Test func quickExitsAreCountedUnderTheirReasons() throws {
        var rig = try VCPURig()
        rig.enableQuickExits()
        _ = rig.run([.out(0x3FF, 1), .out(0x3FF, 2), .rdmsr(Self.efer), .wrmsr(Self.efer, 0), .exitPort(0)])
        #expect(rig.hw.quickResumes == 4)
        #expect(rig.vcpu.statistics.count(of: .ioInstruction) == 3)
        #expect(rig.vcpu.statistics.count(of: .rdmsr) == 1)
        #expect(rig.vcpu.statistics.count(of: .wrmsr) == 1)
    }
}
