import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// One test per exit handler and per rule, each through `VCPU.run` with a
// scripted exit. The guest starts in 32-bit protected mode at RIP 0x1000
// unless a test says otherwise; the script's end is a triple fault, so the
// entry after the last scripted exit shows what the handler queued.

/// #GP(0) in protected mode: valid | deliver error code | hardware exception | 13.
let injectGP: UInt32 = 0x8000_0B0D
/// #UD: valid | hardware exception | 6, no error code.
let injectUD: UInt32 = 0x8000_0306

@Suite struct CPUIDExitTests {
    @Test func leaf1ShowsAHypervisorWithoutVMXAndLeavesEAXAlone() throws {
        var rig = try VCPURig()
        let exit = rig.run([.cpuid(leaf: 1).then { r, _ in r.rax |= 0xDEAD_BEEF_0000_0000; r.rbx = ~0 }])
        #expect(exit == rig.scriptEnd)
        let r = rig.vcpu.registers
        // EAX (family/model/stepping) is the host's: the Rust reference cleared a bit of it.
        #expect(r.rax == 0x0005_0654)
        #expect(r.rcx & (1 << 31) != 0)          // hypervisor present
        #expect(r.rcx & (1 << 5) == 0)           // VMX hidden
        #expect(r.rcx & (1 << 26) != 0)          // XSAVE kept
        // EDX: MCE (7), MCA (14), DS (21), ACPI (22), TM (29), PBE (31) hidden; the rest is the host's.
        #expect(r.rdx == 0xBFEB_FBFF & ~(1 << 7 | 1 << 14 | 1 << 21 | 1 << 22 | 1 << 29 | 1 << 31))
        // Machine checks are the host's: Linux would otherwise read MCG_STATUS and panic on #GP.
        #expect(r.rdx & (1 << 7 | 1 << 14) == 0)
        #expect(r.rdx & (1 << 4) != 0)           // TSC kept
        // CPUID writes 32-bit registers: the upper halves are zeroed.
        #expect(r.rbx == 0x0001_0800)
    }

    @Test func ripAdvancesByTheInstructionLengthField() throws {
        var rig = try VCPURig()
        _ = rig.run([.cpuid(leaf: 0, length: 3), .cpuid(leaf: 0, length: 2)])
        // Not a hard-coded 2 (CPUID is 0F A2; a prefix makes it 3).
        #expect(rig.entries.map(\.rip) == [0x1000, 0x1003, 0x1005])
    }

    @Test func completingTheInstructionEndsSTIAndMovSSBlockingButNotNMIBlocking() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest32.interruptibilityState, 0b1011)
        _ = rig.run([.cpuid(leaf: 0)])
        #expect(rig.field(VMCSFields.Guest32.interruptibilityState) == 0b1000)
    }

    @Test func theHypervisorLeafHasTheSignature() throws {
        var rig = try VCPURig()
        _ = rig.run([.cpuid(leaf: 0x4000_0000)])
        let s = CPUIDPolicy.signature
        #expect(rig.vcpu.registers.rbx == UInt64(s.ebx))
        #expect(rig.vcpu.registers.rcx == UInt64(s.ecx))
        #expect(rig.vcpu.registers.rdx == UInt64(s.edx))
    }
}

@Suite struct XSETBVExitTests {
    @Test func aValidValueIsLoadedIntoXCR0AndRIPAdvances() throws {
        var rig = try VCPURig()
        _ = rig.run([.xsetbv(0x7)])
        #expect(rig.hw.cpu.xcr0Writes == [0x7])
        #expect(rig.vcpu.xcr0 == 0x7)
        #expect(rig.rip == 0x1003)
        #expect(!rig.entries[1].injected.isValid)
    }

    @Test(arguments: [
        (UInt32(0), UInt64(0x2)),     // x87 cleared
        (UInt32(0), UInt64(0x5)),     // AVX without SSE
        (UInt32(0), UInt64(0x207)),   // PKRU: the host has no such state
        (UInt32(1), UInt64(0x1)),     // XCR1 is not writable
    ])
    func anInvalidValueRaisesGP0AndDoesNotAdvance(ecx: UInt32, value: UInt64) throws {
        var rig = try VCPURig()
        _ = rig.run([.xsetbv(ecx: ecx, value)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.entries[1].exceptionErrorCode == 0)
        #expect(rig.rip == 0x1000)
        #expect(rig.hw.cpu.xcr0Writes.isEmpty)
        #expect(rig.vcpu.xcr0 == 1)
    }

    @Test func atCPL3ItRaisesGP() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest32.ssAccessRights, 0xC0F3)   // DPL 3
        _ = rig.run([.xsetbv(0x7)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.hw.cpu.xcr0Writes.isEmpty)
        #expect(rig.rip == 0x1000)
    }
}

@Suite struct HLTExitTests {
    @Test func withInterruptsOffAndNothingPendingTheGuestHasHalted() throws {
        var rig = try VCPURig()
        let exit = rig.run([.hlt(length: 1)])
        #expect(exit == .halted(rip: 0x1001))
    }

    @Test func withInterruptsOnButNoTimerNothingCanWakeIt() throws {
        var rig = try VCPURig { $0.rflags = 0x202 }
        let exit = rig.run([.hlt()])
        #expect(exit == .halted(rip: 0x1001))
    }

    @Test func stiHltWithAnInterruptPendingResumesAndDeliversIt() throws {
        var rig = try VCPURig { $0.rflags = 0x202 }
        rig.preset(VMCSFields.Guest32.interruptibilityState, 1)   // STI blocking
        rig.queue(.externalInterrupt(0x30))
        let exit = rig.run([.hlt()])
        #expect(exit == rig.scriptEnd)
        #expect(rig.entries[0].interruptWindowExiting)
        #expect(!rig.entries[0].injected.isValid)
        #expect(rig.entries[1].injected.raw == 0x8000_0030)
        #expect(rig.entries[1].rip == 0x1001)
    }

    @Test func withAnArmedTimerTheGuestWaitsInTheHLTActivityState() throws {
        var rig = try VCPURig { $0.rflags = 0x202 }
        _ = rig.run([.vmcall(Hypercall.armTimer.rawValue, rbx: 0x40, rcx: 5000), .hlt()])
        let e = rig.entries[2]
        #expect(e.activityState == 1)   // SDM 25.4.2: 1 = HLT
        #expect(e.pinControls & PinBasedControls.activatePreemptionTimer.rawValue != 0)
        #expect(e.preemptionTimer > 0 && e.preemptionTimer <= 5000)
        #expect(!e.injected.isValid)
        #expect(e.rip == 0x1004)
    }

    @Test func theTimerWakesTheHaltedGuestWithItsInterrupt() throws {
        var rig = try VCPURig { $0.rflags = 0x202 }
        var expired = ScriptedExit(.preemptionTimerExpired)
        expired.guestCycles = 6000
        _ = rig.run([.vmcall(Hypercall.armTimer.rawValue, rbx: 0x40, rcx: 5000), .hlt(), expired])
        let e = rig.entries[3]
        #expect(e.injected.raw == 0x8000_0040)
        #expect(e.activityState == 0)   // injection leaves the HLT state
        #expect(!e.interruptWindowExiting)
    }

    @Test func withoutTheHLTActivityStateItWaitsForTheDeadline() throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x485] = BochsCapabilities.corei7_skylake_x.misc & ~(1 << 6)
        var rig = try VCPURig(hw: hw) { $0.rflags = 0x202 }
        #expect(!rig.vcpu.features.activityHLT)
        _ = rig.run([.vmcall(Hypercall.armTimer.rawValue, rbx: 0x41, rcx: 5000), .hlt()])
        let e = rig.entries[2]
        #expect(e.activityState == 0)
        #expect(e.injected.raw == 0x8000_0041)
        #expect(e.tsc >= rig.entries[1].tsc + 5000)
    }
}

@Suite struct VMCALLExitTests {
    let unknown = Hypercall.unknown
    let bad = Hypercall.badArgument

    @Test func nullReturnsZeroAndAdvances() throws {
        var rig = try VCPURig()
        _ = rig.run([.vmcall(Hypercall.null.rawValue).then { r, _ in r.rax = 0 }])
        #expect(rig.vcpu.registers.rax == 0)
        #expect(rig.rip == 0x1003)
    }

    @Test func consoleWriteWithPagingOffReadsTheLinearAddress() throws {
        var rig = try VCPURig()
        rig.memory.store(Array("hello".utf8), at: 0x2000)
        _ = rig.run([.vmcall(Hypercall.consoleWrite.rawValue, rbx: 0x2000, rcx: 5)])
        #expect(rig.platform.consoleText == "hello")
        #expect(rig.vcpu.registers.rax == 5)
    }

    @Test func consoleWriteAcrossAPageBoundary() throws {
        var rig = try VCPURig()
        rig.memory.store(Array("ABCD".utf8), at: 0x2FFE)
        _ = rig.run([.vmcall(Hypercall.consoleWrite.rawValue, rbx: 0x2FFE, rcx: 4)])
        #expect(rig.platform.consoleText == "ABCD")
        #expect(rig.vcpu.registers.rax == 4)
    }

    @Test func consoleWriteWalksTheGuestPageTables() throws {
        // 4-level paging: linear 0x400000 is a 2 MiB page at guest-physical 0.
        var rig = try VCPURig(.long64, rip: 0x1000) { $0.cr3 = 0x10000 }
        rig.memory.store64(0x11000 | 3, at: 0x10000)
        rig.memory.store64(0x12000 | 3, at: 0x11000)
        rig.memory.store64(0x0 | 0x83, at: 0x12000 + 2 * 8)
        rig.memory.store(Array("paged".utf8), at: 0x3000)
        _ = rig.run([.vmcall(Hypercall.consoleWrite.rawValue, rbx: 0x40_3000, rcx: 5)])
        #expect(rig.platform.consoleText == "paged")
        #expect(rig.vcpu.registers.rax == 5)
    }

    @Test func consoleWriteOutsideGuestRAMIsABadArgument() throws {
        var rig = try VCPURig()
        _ = rig.run([.vmcall(Hypercall.consoleWrite.rawValue, rbx: 0x30_0000, rcx: 4)])
        #expect(rig.vcpu.registers.rax == bad)
        #expect(rig.platform.console.isEmpty)
        #expect(rig.rip == 0x1003)
    }

    @Test func consoleWriteOfMoreThanAPageIsABadArgument() throws {
        var rig = try VCPURig()
        _ = rig.run([.vmcall(Hypercall.consoleWrite.rawValue, rbx: 0x2000, rcx: 4097)])
        #expect(rig.vcpu.registers.rax == bad)
        #expect(rig.platform.console.isEmpty)
    }

    @Test func powerOffStopsWithTheStatus() throws {
        var rig = try VCPURig()
        let exit = rig.run([.vmcall(Hypercall.powerOff.rawValue, rbx: 0x1_0042)])
        #expect(exit == .powerOff(status: 0x42))
        #expect(!rig.hw.scriptExhausted)
    }

    @Test func readTSCReturnsTheGuestsTSC() throws {
        var rig = try VCPURig()
        rig.hw.tscStep = 0
        rig.hw.tsc = 0x1_0000_0000
        // WRMSR IA32_TSC moves the guest's TSC by the offset (SDM 26.3 "Changes to Instruction Behavior").
        _ = rig.run([.wrmsr(MSR.ia32TimeStampCounter.address, 0x5555_0000), .vmcall(Hypercall.readTSC.rawValue)])
        #expect(rig.vcpu.registers.rax == 0x5555_0000)
        #expect(rig.hw.cpu.msrWrites.isEmpty)
    }

    @Test(arguments: [UInt64(0), 31, 256, 0x1_0000_0040])
    func armTimerWithAVectorOutside32To255IsABadArgument(vector: UInt64) throws {
        var rig = try VCPURig()
        _ = rig.run([.vmcall(Hypercall.armTimer.rawValue, rbx: vector, rcx: 100)])
        #expect(rig.vcpu.registers.rax == bad)
        #expect(rig.entries[1].pinControls & PinBasedControls.activatePreemptionTimer.rawValue == 0)
    }

    @Test func armTimerWithPeriodZeroStopsIt() throws {
        var rig = try VCPURig { $0.rflags = 0x202 }
        var later = ScriptedExit(.pause, length: 2)
        later.guestCycles = 100_000
        _ = rig.run([.vmcall(Hypercall.armTimer.rawValue, rbx: 0x40, rcx: 1000),
                     .vmcall(Hypercall.armTimer.rawValue, rbx: 0x40, rcx: 0), later])
        #expect(rig.entries[1].pinControls & PinBasedControls.activatePreemptionTimer.rawValue != 0)
        #expect(rig.entries[2].pinControls & PinBasedControls.activatePreemptionTimer.rawValue == 0)
        #expect(rig.vcpu.registers.rax == 0)
        #expect(!rig.entries[3].injected.isValid)
    }

    @Test func theTimerInterruptsPeriodically() throws {
        var rig = try VCPURig { $0.rflags = 0x202 }
        var tick = ScriptedExit(.preemptionTimerExpired)
        tick.guestCycles = 1000
        _ = rig.run([.vmcall(Hypercall.armTimer.rawValue, rbx: 0x50, rcx: 1000), tick, tick])
        #expect(rig.entries[2].injected.raw == 0x8000_0050)
        #expect(rig.entries[3].injected.raw == 0x8000_0050)
    }

    @Test func whileTheGuestBlocksInterruptsTheTimerHoldsOneNotOnePerPeriod() throws {
        var rig = try VCPURig { $0.rflags = 0x2 }                   // IF = 0
        var tick = ScriptedExit(.preemptionTimerExpired)
        tick.guestCycles = 1000
        _ = rig.run([.vmcall(Hypercall.armTimer.rawValue, rbx: 0x50, rcx: 1000), tick, tick, tick])
        #expect(rig.vcpu.events.count == 1)
        #expect(rig.entries.allSatisfy { !$0.injected.isValid })
    }

    @Test func anUnknownNumberReturnsMinusOne() throws {
        var rig = try VCPURig()
        _ = rig.run([.vmcall(99)])
        #expect(rig.vcpu.registers.rax == unknown)
        #expect(rig.rip == 0x1003)
    }

    @Test func atCPL3EveryHypercallReturnsMinusOne() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest32.ssAccessRights, 0xC0F3)
        let exit = rig.run([.vmcall(Hypercall.powerOff.rawValue, rbx: 1)])
        #expect(exit == rig.scriptEnd)
        #expect(rig.vcpu.registers.rax == unknown)
        #expect(rig.rip == 0x1003)
    }
}

@Suite struct VMXInstructionExitTests {
    @Test(arguments: [ExitReason.vmclear, .vmlaunch, .vmptrld, .vmptrst, .vmread, .vmresume, .vmwrite, .vmxoff,
                      .vmxon, .invept, .invvpid, .vmfunc, .getsec, .mwait, .monitor, .rdtscp, .invpcid])
    func raisesUDWithoutAdvancing(reason: ExitReason) throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(reason, length: 3)])
        #expect(exit == rig.scriptEnd)
        #expect(rig.entries[1].injected.raw == injectUD)
        #expect(rig.entries[1].rip == 0x1000)
    }
}

@Suite struct StoppingExitTests {
    @Test func eptViolationStopsWithTheAddressQualificationAndRIP() throws {
        var rig = try VCPURig()
        let exit = rig.run([.eptViolation(gpa: 0xFEE0_0030, qualification: 0x182)])
        #expect(exit == .eptViolation(guestPhysical: 0xFEE0_0030, qualification: EPTViolationQualification(raw: 0x182),
                                      rip: 0x1000))
        #expect(!rig.hw.scriptExhausted)
    }

    @Test func eptMisconfigurationStops() throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(.eptMisconfiguration).with { $0.guestPhysicalAddress = 0x1234_5000 }])
        #expect(exit == .eptMisconfiguration(guestPhysical: 0x1234_5000, rip: 0x1000))
    }

    @Test func tripleFaultStopsAtTheRIP() throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(.tripleFault) { _, vmcs in vmcs.preset(VMCSFields.GuestNatural.rip, 0x2345) }])
        #expect(exit == .tripleFault(rip: 0x2345))
        #expect(!rig.hw.scriptExhausted)
    }

    @Test func anUnknownReasonIsReportedWithoutTrappingOrInjecting() throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(ExitReason(rawValue: 64), qualification: 0x55, length: 4)])
        #expect(exit == .unhandled(reason: ExitReason(rawValue: 64), qualification: 0x55, rip: 0x1000))
        #expect(rig.vcpu.events.isEmpty)
        #expect(rig.hw.entries.count == 1)
    }

    @Test func anEntryFailureIsReportedWithItsQualification() throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(rawReason: 0x8000_0021, qualification: 3)])
        #expect(exit == .entryFailure(ExitReasonField(rawValue: 0x8000_0021), qualification: 3))
        #expect(rig.vcpu.statistics.count(of: .entryFailureInvalidGuestState) == 1)
    }

    @Test func aFailedVMLAUNCHIsAnInstructionFailure() throws {
        var rig = try VCPURig()
        rig.hw.enterError = .vmFailValid(VMInstructionError(rawValue: 7))
        let exit = rig.run([.cpuid(leaf: 0)])
        #expect(exit == .instructionFailure(.vmFailValid(VMInstructionError(rawValue: 7))))
    }

    @Test func aFailedVMREADInAHandlerIsAnInstructionFailure() throws {
        var rig = try VCPURig()
        rig.hw.vmcs.fail(VMCSFields.ReadOnlyNatural.exitQualification, with: .vmFailInvalid)
        let exit = rig.run([.crAccess(cr: 3, type: .movFromCR)])
        #expect(exit == .instructionFailure(.vmFailInvalid))
    }
}

@Suite struct ResumingExitTests {
    @Test func theFirstEntryIsAVMLAUNCHAndTheRestVMRESUME() throws {
        var rig = try VCPURig()
        _ = rig.run([.cpuid(leaf: 0), .cpuid(leaf: 0)])
        #expect(rig.hw.resumeFlags == [false, true, true])
    }

    @Test func afterUnbindAndBindTheNextEntryLaunchesAgain() throws {
        var rig = try VCPURig()
        _ = rig.run([.cpuid(leaf: 0)])
        try rig.vcpu.unbind(rig.hw)
        try rig.vcpu.bind(rig.hw)
        _ = rig.run([])
        #expect(rig.hw.resumeFlags == [false, true, false])
    }

    @Test func anNMIExitHandsTheNMIToTheGuest() throws {
        var rig = try VCPURig()
        _ = rig.run([.exceptionOrNMI(info: 0x8000_0202)])
        #expect(rig.entries[1].injected.raw == 0x8000_0202)
        #expect(rig.entries[1].rip == 0x1000)
    }

    @Test func anInterceptedExceptionIsReflectedWithItsErrorCode() throws {
        var rig = try VCPURig()
        _ = rig.run([.exceptionOrNMI(info: 0x8000_0B0D, errorCode: 0x18)])
        #expect(rig.entries[1].injected.raw == 0x8000_0B0D)
        #expect(rig.entries[1].exceptionErrorCode == 0x18)
    }

    @Test func anExternalInterruptExitResumesWithoutInjectingOrAdvancing() throws {
        var rig = try VCPURig()
        _ = rig.run([ScriptedExit(.externalInterrupt, length: 2).with { $0.interruptionInformation = 0x8000_0020 }])
        #expect(!rig.entries[1].injected.isValid)
        #expect(rig.entries[1].rip == 0x1000)
    }

    @Test(arguments: [ExitReason.interruptWindow, .nmiWindow, .preemptionTimerExpired])
    func windowAndTimerExitsResumeInPlace(reason: ExitReason) throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(reason, length: 2)])
        #expect(exit == rig.scriptEnd)
        #expect(rig.entries[1].rip == 0x1000)
    }

    @Test(arguments: [ExitReason.invd, .wbinvd, .pause])
    func invdWbinvdAndPauseAreSkipped(reason: ExitReason) throws {
        var rig = try VCPURig()
        _ = rig.run([ScriptedExit(reason, length: 2)])
        #expect(rig.entries[1].rip == 0x1002)
    }

    @Test func initWaitsForSIPIAndSIPIStartsAtVector000() throws {
        var rig = try VCPURig(.real, rip: 0x7C00)
        _ = rig.run([ScriptedExit(.initSignal), ScriptedExit(.startupIPI, qualification: 0x9A)])
        #expect(rig.entries[1].activityState == 3)   // wait-for-SIPI
        // SDM 28.2.1: the SIPI vector VV starts the CPU at VV00:0000.
        #expect(rig.field(VMCSFields.Guest16.csSelector) == 0x9A00)
        #expect(rig.field(VMCSFields.GuestNatural.csBase) == 0x9_A000)
        #expect(rig.entries[2].rip == 0)
        #expect(rig.entries[2].activityState == 0)
    }

    @Test func initWithoutWaitForSIPIIsUnhandled() throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x485] = BochsCapabilities.corei7_skylake_x.misc & ~(1 << 8)
        var rig = try VCPURig(hw: hw)
        let exit = rig.run([ScriptedExit(.initSignal)])
        #expect(exit == .unhandled(reason: .initSignal, qualification: 0, rip: 0x1000))
    }
}

@Suite struct HostNMITests {
    @Test func anNMITheHostTookInRootModeIsDeliveredToTheGuest() throws {
        var rig = try VCPURig()
        rig.hw.hostNMIs = 1
        _ = rig.run([.cpuid(leaf: 0)])
        #expect(rig.entries[0].injected.raw == 0x8000_0202)   // valid | NMI | vector 2
        #expect(!rig.entries[1].injected.isValid)             // once
        #expect(rig.hw.hostNMIs == 0)
    }
}
