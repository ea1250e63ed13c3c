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

@Suite struct ControlRegisterExitTests {
    let lme = EFER.lme.rawValue, lma = EFER.lma.rawValue
    let pae = CR4Bits.pae.rawValue, vmxe = CR4Bits.vmxe.rawValue

    func ia32eMode(_ hw: FakeHardware) -> Bool {
        VMEntryControls(rawValue: UInt32(hw.vmcs.value(VMCSFields.Control32.entryControls) ?? 0)).contains(.ia32eModeGuest)
    }

    func setCR4(_ rig: borrowing VCPURig, _ value: UInt64) {
        rig.preset(VMCSFields.GuestNatural.cr4, value | vmxe)
        rig.preset(VMCSFields.ControlNatural.cr4ReadShadow, value)
    }

    @Test func pagingOnWithEFERLMEAndCR4PAEActivatesIA32eMode() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest64.ia32EFER, lme)
        setCR4(rig, pae)
        _ = rig.run([.movToCR(0, 0x8000_0011, gpr: 3, length: 3)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == lme | lma)
        #expect(ia32eMode(rig.hw))
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x8000_0011)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) == 0x8000_0031)   // NE forced
        #expect(rig.rip == 0x1003)
    }

    @Test func pagingOnWithoutEFERLMEStaysInLegacyMode() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) & lma == 0)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x8000_0011)
    }

    @Test func pagingOnWithEFERLMEButNoPAERaisesGP() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest64.ia32EFER, lme)
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == lme)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.rip == 0x1000)
    }

    @Test func pagingWithoutProtectionRaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(0, 0x8000_0010)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.entries[1].exceptionErrorCode == 0)
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.rip == 0x1000)
    }

    @Test(arguments: [UInt64(0x1_0000_0011), 0x2000_0011])   // bits 63:32; NW without CD
    func invalidCR0ValuesRaiseGP(value: UInt64) throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(0, value)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
    }

    @Test func pagingOffInCompatibilityModeLeavesIA32eMode() throws {
        var rig = try VCPURig(.long64, rip: 0x1000)
        rig.preset(VMCSFields.Guest32.csAccessRights, 0xC09B)   // compatibility mode: L = 0
        _ = rig.run([.movToCR(0, 0x11)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) & (lme | lma) == lme)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
    }

    @Test func pagingOffIn64BitModeRaisesGP() throws {
        // SDM "MOV—Move to/from Control Registers", 64-bit mode: #GP(0) on an
        // attempt to clear CR0.PG (IA-32e mode is left from compatibility mode).
        var rig = try VCPURig(.long64, rip: 0x1000)
        _ = rig.run([.movToCR(0, 0x11)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) & lma != 0)
        #expect(ia32eMode(rig.hw))
    }

    @Test func movToCR4WithVMXERaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(4, pae | vmxe)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == 0)
        #expect(rig.rip == 0x1000)
    }

    @Test func movToCR4WithABitTheCPULacksRaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(4, CR4Bits.la57.rawValue)])   // not in CR4 FIXED1 0x3727FF
        #expect(rig.entries[1].injected.raw == injectGP)
    }

    @Test func movToCR4ClearingPAEInIA32eModeRaisesGP() throws {
        var rig = try VCPURig(.long64, rip: 0x1000)
        _ = rig.run([.movToCR(4, 0)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == pae)
    }

    @Test func movToCR4KeepsVMXESetButHidden() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(4, 0x220, gpr: 9)])
        #expect(rig.field(VMCSFields.GuestNatural.cr4) == 0x2220)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == 0x220)
        #expect(rig.rip == 0x1003)
    }

    @Test func movToCR3FromRSPReadsTheVMCSGuestRSP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(3, 0x0012_3000, gpr: 4)])
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0x0012_3000)
        #expect(rig.vcpu.registers.rsp == 0)
    }

    @Test func movFromCR3ToRSPWritesTheVMCSGuestRSP() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.cr3, 0xABC000)
        _ = rig.run([.crAccess(cr: 3, type: .movFromCR, gpr: 4)])
        #expect(rig.field(VMCSFields.GuestNatural.rsp) == 0xABC000)
        #expect(rig.vcpu.registers.rsp == 0)
        #expect(rig.rip == 0x1003)
    }

    @Test func movFromCR3ToAnyRegister() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.cr3, 0xABC000)
        _ = rig.run([.crAccess(cr: 3, type: .movFromCR, gpr: 13, length: 4)])
        #expect(rig.vcpu.registers.r13 == 0xABC000)
        #expect(rig.rip == 0x1004)
    }

    @Test func cltsClearsTS() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x19)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x39)
        _ = rig.run([.crAccess(cr: 0, type: .clts, length: 2)])
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) == 0x31)
        #expect(rig.rip == 0x1002)
    }

    @Test func lmswLoadsMPEMTSButCannotClearPE() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x1F)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x3F)
        _ = rig.run([.crAccess(cr: 0, type: .lmsw, lmswSource: 0xFFF0)])
        // PE stays 1; MP, EM, TS come from the (zero) source; bits 15:4 are ignored.
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
    }

    @Test func lmswCanSetPE() throws {
        var rig = try VCPURig(.real, rip: 0x7C00)
        _ = rig.run([.crAccess(cr: 0, type: .lmsw, lmswSource: 0x1)])
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) & 1 == 1)
    }

    @Test func movToCR8AboveFifteenRaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(8, 16, length: 4)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.rip == 0x1000)
    }

    @Test func cr8KeepsTheTaskPriority() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(8, 9, length: 4), .crAccess(cr: 8, type: .movFromCR, gpr: 2, length: 4)])
        #expect(rig.vcpu.registers.rdx == 9)
        #expect(rig.rip == 0x1008)
    }

    @Test(arguments: [(2, ControlRegisterAccessQualification.AccessType.movToCR), (0, .movFromCR), (4, .movFromCR)])
    func accessesThatCannotExitRaiseUD(cr: Int, type: ControlRegisterAccessQualification.AccessType) throws {
        var rig = try VCPURig()
        _ = rig.run([.crAccess(cr: cr, type: type)])
        #expect(rig.entries[1].injected.raw == injectUD)
    }

    @Test func paePagingLoadsTheFourPDPTEsIntoTheVMCS() throws {
        // SDM 4.4.1 "PDPTE Registers"; with EPT, VM entry loads them from the VMCS (27.3.2.4).
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x8000)
        let pdptes: [UInt64] = [0x9001, 0xA001, 0xB001, 0xC001]
        for (i, e) in pdptes.enumerated() { rig.memory.store64(e, at: 0x8000 + UInt64(i) * 8) }
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.field(VMCSFields.Guest64.pdpte0) == 0x9001)
        #expect(rig.field(VMCSFields.Guest64.pdpte1) == 0xA001)
        #expect(rig.field(VMCSFields.Guest64.pdpte2) == 0xB001)
        #expect(rig.field(VMCSFields.Guest64.pdpte3) == 0xC001)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.rip == 0x1003)
    }

    @Test func paePagingWithTheTableOutsideGuestRAMRaisesGP() throws {
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x7FF0_0000)
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.entries[1].injected.raw == injectGP)
        // The faulting MOV changed nothing: paging is still off.
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) & CR0Bits.pg.rawValue == 0)
    }

    @Test func movToCR3UnderPAEPagingWithTheTableOutsideGuestRAMRaisesGPAndKeepsCR3() throws {
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x8000_0031)
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x8000_0011)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x8000)
        _ = rig.run([.movToCR(3, 0x7FF0_0000)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0x8000)
        #expect(rig.rip == 0x1000)
    }

    @Test func movToCR3UnderPAEPagingReloadsThePDPTEs() throws {
        // SDM 4.4.1: MOV to CR3 with PAE paging loads the PDPTEs.
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x8000_0031)
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x8000_0011)
        for i in 0..<4 { rig.memory.store64(0xD001 + UInt64(i) * 0x1000, at: 0xE000 + UInt64(i) * 8) }
        _ = rig.run([.movToCR(3, 0xE000)])
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0xE000)
        #expect(rig.field(VMCSFields.Guest64.pdpte0) == 0xD001)
        #expect(rig.field(VMCSFields.Guest64.pdpte3) == 0x1_0001)
    }
}

@Suite struct IOExitTests {
    @Test func outWritesOnlyTheOperandWidth() throws {
        var rig = try VCPURig()
        _ = rig.run([.out(0x3F8, 0x1234_5641), .out(0x80, 0xFFFF_BEEF, width: .word, length: 2),
                     .out(0xCFC, 0x1_8000_0000, width: .dword)])
        #expect(rig.platform.outs == [.init(port: 0x3F8, width: .byte, value: 0x41),
                                      .init(port: 0x80, width: .word, value: 0xBEEF),
                                      .init(port: 0xCFC, width: .dword, value: 0x8000_0000)])
        #expect(rig.rip == 0x1004)
    }

    @Test func inALAndAXMergeIntoRAX() throws {
        var rig = try VCPURig()
        rig.platform.inValues = [0x60: [0x5A], 0x1F0: [0xC0DE]]
        _ = rig.run([ScriptedExit.io(port: 0x60, width: .byte, in: true).then { r, _ in r.rax = 0xFFFF_FFFF_FFFF_FF00 }])
        #expect(rig.vcpu.registers.rax == 0xFFFF_FFFF_FFFF_FF5A)
        _ = rig.run([ScriptedExit.io(port: 0x1F0, width: .word, in: true).then { r, _ in r.rax = 0x1111_2222_3333_4444 }])
        #expect(rig.vcpu.registers.rax == 0x1111_2222_3333_C0DE)
    }

    @Test func inEAXZeroExtends() throws {
        var rig = try VCPURig()
        rig.platform.inValues = [0xCFC: [0x1234_5678]]
        _ = rig.run([ScriptedExit.io(port: 0xCFC, width: .dword, in: true).then { r, _ in r.rax = 0xFFFF_FFFF_0000_0000 }])
        #expect(rig.vcpu.registers.rax == 0x1234_5678)
        #expect(rig.platform.ins == [.init(port: 0xCFC, width: .dword, value: 0x1234_5678)])
        #expect(rig.rip == 0x1001)
    }

    @Test func theExitPortPowersOffWithTheStatus() throws {
        var rig = try VCPURig()
        let exit = rig.run([.exitPort(3)])
        #expect(exit == .powerOff(status: 3))
        #expect(!rig.hw.scriptExhausted)
        #expect(rig.rip == 0x1002)   // the OUT completed
    }

    @Test func anUndefinedSizeEncodingIsUnhandled() throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(.ioInstruction, qualification: 0x0080_0002, length: 1)])
        #expect(exit == .unhandled(reason: .ioInstruction, qualification: 0x0080_0002, rip: 0x1000))
    }

    /// REP OUTSB/INSB with 32-bit addressing (instruction information bits 9:7 = 1).
    func string(port: UInt16, width: OperandWidth = .byte, in isIn: Bool, rep: Bool = true,
                addressSize: UInt32 = 1) -> ScriptedExit {
        ScriptedExit.io(port: port, width: width, in: isIn, string: true, rep: rep, length: 2)
            .with { $0.instructionInformation = addressSize << 7 }
    }

    @Test func repOutsbForwardsWalksRSIUpAndExhaustsRCX() throws {
        var rig = try VCPURig()
        rig.memory.store(Array("ABC".utf8), at: 0x3000)
        _ = rig.run([string(port: 0x3F8, in: false).then { r, _ in r.rsi = 0x3000; r.rcx = 3 }])
        #expect(rig.platform.outs.map(\.value) == [0x41, 0x42, 0x43])
        #expect(rig.vcpu.registers.rsi == 0x3003)
        #expect(rig.vcpu.registers.rcx == 0)
        #expect(rig.rip == 0x1002)
    }

    @Test func repOutsbWithDFSetWalksRSIDown() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.rflags, 0x402)
        rig.memory.store(Array("ABC".utf8), at: 0x3000)
        _ = rig.run([string(port: 0x3F8, in: false).then { r, _ in r.rsi = 0x3002; r.rcx = 3 }])
        #expect(rig.platform.outs.map(\.value) == [0x43, 0x42, 0x41])
        #expect(rig.vcpu.registers.rsi == 0x2FFF)
        #expect(rig.vcpu.registers.rcx == 0)
    }

    @Test func outswWithoutRepMovesOneElementAndLeavesRCX() throws {
        var rig = try VCPURig()
        rig.memory.store([0xEF, 0xBE], at: 0x3000)
        _ = rig.run([string(port: 0x80, width: .word, in: false, rep: false).then { r, _ in r.rsi = 0x3000; r.rcx = 0x77 }])
        #expect(rig.platform.outs == [.init(port: 0x80, width: .word, value: 0xBEEF)])
        #expect(rig.vcpu.registers.rsi == 0x3002)
        #expect(rig.vcpu.registers.rcx == 0x77)
    }

    @Test func repInsbWritesGuestRAMThroughES() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.esBase, 0x100)
        rig.platform.inValues = [0x60: [1, 2, 3]]
        _ = rig.run([string(port: 0x60, in: true).then { r, _ in r.rdi = 0x4000; r.rcx = 3 }])
        let memory = rig.memory
        #expect((0..<3).map { memory.load8(0x4100 + UInt64($0)) } == [1, 2, 3])
        #expect(rig.vcpu.registers.rdi == 0x4003)
        #expect(rig.vcpu.registers.rcx == 0)
        #expect(rig.rip == 0x1002)
    }

    @Test func insdStoresLittleEndian() throws {
        var rig = try VCPURig()
        rig.platform.inValues = [0xCFC: [0x1122_3344]]
        _ = rig.run([string(port: 0xCFC, width: .dword, in: true, rep: false).then { r, _ in r.rdi = 0x5000 }])
        let memory = rig.memory
        #expect((0..<4).map { memory.load8(0x5000 + UInt64($0)) } == [0x44, 0x33, 0x22, 0x11])
        #expect(rig.vcpu.registers.rdi == 0x5004)
    }

    @Test func outsReadsThroughDS() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.dsBase, 0x100)
        rig.memory.store([0x99], at: 0x110)
        _ = rig.run([string(port: 0x80, in: false, rep: false).then { r, _ in r.rsi = 0x10 }])
        #expect(rig.platform.outs.map(\.value) == [0x99])
    }

    @Test func aLongRepStopsAfterAPageAndResumesTheSameInstruction() throws {
        var rig = try VCPURig()
        _ = rig.run([string(port: 0x80, in: false).then { r, _ in r.rsi = 0x1_0000; r.rcx = 5000 }])
        #expect(rig.platform.outs.count == 4096)
        #expect(rig.vcpu.registers.rcx == 904)
        #expect(rig.vcpu.registers.rsi == 0x1_1000)
        #expect(rig.rip == 0x1000)   // the guest runs REP OUTSB again for the rest
    }

    @Test func sixteenBitAddressingWrapsSIAndCXAndKeepsTheUpperBits() throws {
        var rig = try VCPURig()
        rig.memory.store([0x11], at: 0xFFFF)
        rig.memory.store([0x22], at: 0)
        _ = rig.run([string(port: 0x80, in: false, addressSize: 0).then { r, _ in r.rsi = 0x1_FFFF; r.rcx = 0x1_0002 }])
        #expect(rig.platform.outs.map(\.value) == [0x11, 0x22])
        #expect(rig.vcpu.registers.rsi == 0x1_0001)
        #expect(rig.vcpu.registers.rcx == 0x1_0000)
    }

    @Test func withoutInstructionInformationTheAddressSizeComesFromCS() throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x480] = 0x0098_1000_0000_002B   // IA32_VMX_BASIC bit 54 clear
        var rig = try VCPURig(hw: hw)
        rig.memory.store([0x5A], at: 0x1_0000)
        // CS.D = 1 (flat 32-bit code): ESI is used whole.
        _ = rig.run([string(port: 0x80, in: false, rep: false, addressSize: 7).then { r, _ in r.rsi = 0x1_0000 }])
        #expect(rig.platform.outs.map(\.value) == [0x5A])
        #expect(rig.vcpu.registers.rsi == 0x1_0001)
    }

    @Test func withoutInstructionInformationA64BitCSUsesRSIWhole() throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x480] = 0x0098_1000_0000_002B   // IA32_VMX_BASIC bit 54 clear
        var rig = try VCPURig(.long64, rip: 0x1000, hw: hw) { $0.cr3 = 0x10000 }
        // Linear 4 GiB + x maps to guest-physical x (a 1 GiB page).
        rig.memory.store64(0x11000 | 3, at: 0x10000)
        rig.memory.store64(0x0 | 0x83, at: 0x11000 + 4 * 8)
        rig.memory.store([0x64], at: 0x3000)
        _ = rig.run([string(port: 0x80, in: false, rep: false).then { r, _ in r.rsi = 0x1_0000_3000 }])
        #expect(rig.platform.outs.map(\.value) == [0x64])
        #expect(rig.vcpu.registers.rsi == 0x1_0000_3001)
    }

    @Test func anAddressOutsideGuestRAMStopsTheGuest() throws {
        var rig = try VCPURig()
        let exit = rig.run([string(port: 0x3F8, in: false).then { r, _ in r.rsi = 0x30_0000; r.rcx = 2 }])
        #expect(exit == .badGuestAddress(linear: 0x30_0000, rip: 0x1000))
        #expect(rig.platform.outs.isEmpty)
    }

    @Test func outsbToTheExitPortPowersOff() throws {
        var rig = try VCPURig()
        rig.memory.store([7], at: 0x3000)
        let exit = rig.run([string(port: FakePlatform.exitPort, in: false, rep: false).then { r, _ in r.rsi = 0x3000 }])
        #expect(exit == .powerOff(status: 7))
    }

    @Test func repWithRCXZeroDoesNothing() throws {
        var rig = try VCPURig()
        _ = rig.run([string(port: 0x80, in: false).then { r, _ in r.rsi = 0x3000; r.rcx = 0 }])
        #expect(rig.platform.outs.isEmpty)
        #expect(rig.rip == 0x1002)
    }
}
