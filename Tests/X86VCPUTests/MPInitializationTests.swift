// The INIT / SIPI state machine of an application processor's vCPU: the
// wait-for-SIPI start, the guest's INIT (state of SDM Table 10-1, INIT
// column), its SIPI, and the hypervisor's own stop arriving as INIT or SIPI.
import Testing
import X86Arch
import VMX
@testable import X86VCPU
import TestSupport

@Suite struct MPInitializationTests {
    typealias G16 = VMCSFields.Guest16
    typealias G32 = VMCSFields.Guest32
    typealias GN = VMCSFields.GuestNatural

    /// The state VM entry would see passes every check the library knows.
    func entryAccepts(_ rig: borrowing VCPURig, sourceLocation: SourceLocation = #_sourceLocation) {
        rig.preset(VMCSFields.HostNatural.cr4, rig.field(VMCSFields.HostNatural.cr4) | CR4Bits.vmxe.rawValue)
        let violation = checkVMEntry(rig.hw.vmcs, capabilities: rig.vcpu.capabilities,
                                     physicalAddressWidth: rig.vcpu.features.physicalAddressBits)
        #expect(violation == nil, "\(violation.map { "\($0.rule)" } ?? "")", sourceLocation: sourceLocation)
    }

    /// Table 10-1's INIT state, whatever ran before.
    func expectINITState(_ rig: borrowing VCPURig, cr0: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(rig.field(GN.cr0) & (CR0Bits.pe.rawValue | CR0Bits.pg.rawValue) == 0, sourceLocation: sourceLocation)
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == cr0, sourceLocation: sourceLocation)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == 0, sourceLocation: sourceLocation)
        #expect(rig.field(GN.cr3) == 0, sourceLocation: sourceLocation)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == 0, sourceLocation: sourceLocation)
        #expect(rig.field(VMCSFields.Control32.entryControls) & UInt64(VMEntryControls.ia32eModeGuest.rawValue) == 0,
                sourceLocation: sourceLocation)
        #expect(rig.field(GN.rflags) == 2, sourceLocation: sourceLocation)
        #expect(rig.field(GN.rip) == 0xFFF0, sourceLocation: sourceLocation)
        #expect(rig.field(G16.csSelector) == 0xF000, sourceLocation: sourceLocation)
        #expect(rig.field(GN.csBase) == 0xFFFF_0000, sourceLocation: sourceLocation)
        #expect(rig.field(G32.csAccessRights) == 0x9B, sourceLocation: sourceLocation)
        #expect(rig.field(G32.ssAccessRights) == 0x93, sourceLocation: sourceLocation)
        #expect(rig.field(G32.trAccessRights) == 0x8B, sourceLocation: sourceLocation)
        #expect(rig.field(G32.ldtrAccessRights) == 0x82, sourceLocation: sourceLocation)
        #expect(rig.field(G32.gdtrLimit) == 0xFFFF && rig.field(G32.idtrLimit) == 0xFFFF, sourceLocation: sourceLocation)
        #expect(rig.field(GN.dr7) == 0x400, sourceLocation: sourceLocation)
        #expect(rig.field(G32.activityState) == ActivityState.waitForSIPI.rawValue, sourceLocation: sourceLocation)
        // EDX: the processor signature, CPUID.1:EAX.
        #expect(rig.vcpu.registers.rdx == UInt64(rig.hw.cpu.cpuid(leaf: 1, subleaf: 0).eax), sourceLocation: sourceLocation)
        #expect(rig.vcpu.registers.rax == 0 && rig.vcpu.registers.rbx == 0, sourceLocation: sourceLocation)
    }

    @Test func anApplicationProcessorsVCPUStartsWaitingForSIPIInThePowerUpState() throws {
        let rig = try VCPURig(.waitForSIPI, platform: .passthrough)
        expectINITState(rig, cr0: 0x6000_0010)
        #expect(rig.field(VMCSFields.Guest64.ia32PAT) == PAT.powerOn.rawValue)
        entryAccepts(rig)
    }

    @Test func theGuestsINITResetsARunningLongModeVCPUAndItsSIPIStartsItAtTheVectorsPage() throws {
        var rig = try VCPURig(.long64, rip: 0xFFFF_8000_0000_1000, platform: .passthrough)
        rig.vcpu.registers.rax = 0x1234
        rig.preset(VMCSFields.Guest64.ia32PAT, 0x0606_0606_0606_0606)
        rig.queue(.externalInterrupt(0x40))   // pending: must not survive INIT
        let exit = rig.run([ScriptedExit(.initSignal)])
        #expect(exit == rig.scriptEnd)
        // The entry after INIT: wait-for-SIPI, nothing injected.
        #expect(rig.entries[1].activityState == ActivityState.waitForSIPI.rawValue)
        #expect(!rig.entries[1].injected.isValid)
        expectINITState(rig, cr0: CR0Bits.et.rawValue)
        #expect(rig.field(VMCSFields.Guest64.ia32PAT) == 0x0606_0606_0606_0606)   // INIT keeps PAT
        entryAccepts(rig)

        var again = rig
        let before = again.entries.count
        let second = again.run([ScriptedExit(.startupIPI, qualification: 0x9A)])
        #expect(second == again.scriptEnd)
        #expect(again.field(G16.csSelector) == 0x9A00)
        #expect(again.field(GN.csBase) == 0x9_A000)
        #expect(again.entries[before + 1].rip == 0)
        #expect(again.entries[before + 1].activityState == ActivityState.active.rawValue)
        entryAccepts(again)
    }

    @Test func initKeepsTheGuestsCacheDisableBits() throws {
        var rig = try VCPURig(.real, rip: 0x7C00, platform: .passthrough)
        rig.preset(GN.cr0, rig.field(GN.cr0) | CR0Bits.cd.rawValue | CR0Bits.nw.rawValue)
        _ = rig.run([ScriptedExit(.initSignal)])
        expectINITState(rig, cr0: 0x6000_0010)
    }

    @Test(arguments: [ExitReason.initSignal, .startupIPI])
    func theHypervisorsStopEndsTheRunWithoutTouchingTheGuest(reason: ExitReason) throws {
        var rig = try VCPURig(.long64, rip: 0x2000, platform: .passthrough)
        rig.platform.stopRequested = false
        rig.hw.script = [ScriptedExit(reason, qualification: 0x10)]
        // The stop is asked while the guest runs: seen at the exit.
        var platform = StopAtExit()
        let exit = rig.vcpu.run(rig.hw, &platform)
        #expect(exit == .stopRequested)
        #expect(rig.field(G32.activityState) == ActivityState.active.rawValue)
        #expect(rig.field(GN.rip) == 0x2000)
        #expect(rig.entries.count == 1)
    }

    @Test func aStopAskedBeforeTheEntryIsSeenBeforeIt() throws {
        var rig = try VCPURig(.waitForSIPI, platform: .passthrough)
        rig.platform.stopRequested = true
        let exit = rig.run([ScriptedExit(.startupIPI, qualification: 0x10)])
        #expect(exit == .stopRequested)
        #expect(rig.entries.isEmpty)
    }

    @Test func anINITFromAnotherVCPUResetsAtTheNextExitWithoutCarryingItOut() throws {
        var rig = try VCPURig(.long64, rip: 0x3000, platform: .passthrough)
        rig.platform.startSignals = StartSignals(initialize: true)
        let exit = rig.run([ScriptedExit.cpuid(leaf: 0)])
        #expect(exit == rig.scriptEnd)
        expectINITState(rig, cr0: CR0Bits.et.rawValue)   // RIP FFF0: the CPUID was not completed
        #expect(rig.vcpu.registers.rax == 0)
        #expect(rig.platform.startSignals == nil)
    }

    @Test func aSTARTUPIPIPostedAfterTheINITStartsTheVCPUAtOnce() throws {
        var rig = try VCPURig(.long64, rip: 0x3000, platform: .passthrough)
        rig.platform.startSignals = StartSignals(initialize: true, startupVector: 0x9A)
        _ = rig.run([ScriptedExit.cpuid(leaf: 0)])
        #expect(rig.field(GN.csBase) == 0x9_A000 && rig.field(G16.csSelector) == 0x9A00)
        #expect(rig.entries[1].rip == 0)
        #expect(rig.entries[1].activityState == ActivityState.active.rawValue)
        #expect(rig.field(VMCSFields.Control32.entryControls) & UInt64(VMEntryControls.ia32eModeGuest.rawValue) == 0)
    }

    @Test func anINITBeforeTheSIPIIsTakenByTheWait() throws {
        var rig = try VCPURig(.waitForSIPI, platform: .passthrough)
        rig.platform.startSignals = StartSignals(initialize: true)
        _ = rig.run([ScriptedExit(.startupIPI, qualification: 0x9F)])
        #expect(rig.field(GN.csBase) == 0x9_F000)
        #expect(rig.entries[1].activityState == ActivityState.active.rawValue)
        #expect(rig.platform.startSignals == nil)
    }

    @Test func thePendingINITTheWaitHeldBackIsDroppedBeforeTheVCPURuns() throws {
        var rig = try VCPURig(.waitForSIPI, platform: .passthrough)
        // The INIT of INIT-SIPI-SIPI exits at the entry after the SIPI, with
        // the wait's SMI and NMI blocking saved (as Bochs does).
        _ = rig.run([ScriptedExit(.startupIPI, qualification: 0x9F), ScriptedExit(.initSignal)])
        #expect(rig.field(GN.csBase) == 0x9_F000 && rig.field(GN.rip) == 0)
        #expect(rig.entries[2].activityState == ActivityState.active.rawValue)
        #expect(rig.field(G32.interruptibilityState) == 0)
    }

    @Test func anINITAfterTheStartedVCPURanResetsIt() throws {
        var rig = try VCPURig(.waitForSIPI, platform: .passthrough)
        _ = rig.run([ScriptedExit(.startupIPI, qualification: 0x9F), ScriptedExit.cpuid(leaf: 0), ScriptedExit(.initSignal)])
        #expect(rig.field(G32.activityState) == ActivityState.waitForSIPI.rawValue)
        #expect(rig.field(GN.csBase) == 0xFFFF_0000)
    }

    @Test func exitStatisticsOfSeveralCPUsAddUp() {
        var a = ExitStatistics(), b = ExitStatistics()
        a.record(.cpuid, cycles: 100)
        a.recordFast(.cpuid, count: 3)
        b.record(.cpuid, cycles: 50)
        b.record(.initSignal, cycles: 7)
        a.add(b)
        #expect(a.count(of: .cpuid) == 5)
        #expect(a.fastCount(of: .cpuid) == 3)
        #expect(a.cycles(of: .cpuid) == 150)
        #expect(a.count(of: .initSignal) == 1)
        #expect(a.totalExits == 6)
        #expect(b.totalExits == 2)
    }
}

/// A platform whose stop request becomes true once the guest has run (the
/// first `stopRequested` read, before the entry, says false).
struct StopAtExit: GuestPlatform {
    final class Reads { var count = 0 }
    let reads = Reads()
    mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32 { 0 }
    mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit? { nil }
    mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer) {}
    var stopRequested: Bool { reads.count += 1; return reads.count > 1 }
}
