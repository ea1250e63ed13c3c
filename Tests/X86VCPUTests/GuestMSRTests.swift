import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// RDMSR/WRMSR exits and the guest MSR policy (GuestMSRs.swift): each emulated
// MSR round-trips, each rule raises #GP, and no guest WRMSR reaches a host MSR.
@Suite struct GuestMSRTests {
    @Test func rdmsrSplitsTheValueIntoEDXAndEAXAndAdvances() throws {
        var rig = try VCPURig(.long64, rip: 0x1000)
        rig.preset(VMCSFields.Guest64.ia32PAT, 0x0007_0406_0007_0406)
        _ = rig.run([ScriptedExit.rdmsr(MSR.ia32PAT.address).then { r, _ in r.rax = ~0; r.rdx = ~0 }])
        #expect(rig.vcpu.registers.rax == 0x0007_0406)
        #expect(rig.vcpu.registers.rdx == 0x0007_0406)
        #expect(rig.rip == 0x1002)
    }

    @Test func rdmsrOfEFERIsTheGuestsNotTheHosts() throws {
        var rig = try VCPURig()
        _ = rig.run([.rdmsr(MSR.ia32EFER.address)])
        #expect(rig.edxeax == 0)   // the host's is 0xD01
    }

    static let roundTrips: [(MSR, UInt64)] = [
        (.ia32EFER, 0x901),                       // SCE | LME | NXE, paging off
        (.ia32PAT, 0x0001_0406_0507_0600),
        (.ia32DebugCtl, 0x3),
        (.ia32FSBase, 0xFFFF_8000_1234_0000),
        (.ia32GSBase, 0xFFFF_8000_5678_0000),
        (.ia32SysenterCS, 0x10),
        (.ia32SysenterESP, 0xFFFF_8000_0000_9000),
        (.ia32SysenterEIP, 0xFFFF_8000_0000_A000),
        (.ia32APICBase, 0xFEE0_0D00),             // enable, x2APIC, BSP
        (.ia32MiscEnable, 0x0085_0089),
        (.ia32MTRRDefType, 0xC06),
    ]

    @Test(arguments: roundTrips)
    func writtenValuesReadBack(msr: MSR, value: UInt64) throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(msr.address, value), .rdmsr(msr.address)])
        #expect(rig.edxeax == value)
        #expect(rig.rip == 0x1004)
        #expect(!rig.entries[1].injected.isValid && !rig.entries[2].injected.isValid)
        #expect(rig.hw.cpu.msrWrites.isEmpty)   // never the host's MSR
    }

    @Test(arguments: [(MSR.ia32FSBase, VMCSFields.GuestNatural.fsBase), (.ia32GSBase, VMCSFields.GuestNatural.gsBase),
                      (.ia32SysenterESP, VMCSFields.GuestNatural.ia32SysenterESP),
                      (.ia32SysenterEIP, VMCSFields.GuestNatural.ia32SysenterEIP)])
    func vmcsHeldMSRsAreWrittenToTheGuestStateArea(msr: MSR, field: VMCSFieldNatural) throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(msr.address, 0xFFFF_8000_0000_1000)])
        #expect(rig.field(field) == 0xFFFF_8000_0000_1000)
    }

    @Test(arguments: [(MSR.ia32FeatureControl, UInt64(1)),   // locked, VMX off: CPUID agrees
                      (.ia32APICBase, 0xFEE0_0900), (.ia32MiscEnable, 1), (.ia32MTRRCap, 0),
                      (.ia32MTRRDefType, 0), (.ia32SpecCtrl, 0), (.ia32PlatformID, 0), (.ia32BIOSSignID, 0)])
    func emulatedMSRsReadTheirInitialValues(msr: MSR, value: UInt64) throws {
        var rig = try VCPURig()
        _ = rig.run([.rdmsr(msr.address)])
        #expect(rig.edxeax == value)
    }

    @Test func rdmsrOfTheTSCAddsTheOffset() throws {
        var rig = try VCPURig()
        rig.hw.tscStep = 0
        rig.hw.tsc = 0x10_0000
        rig.preset(VMCSFields.Control64.tscOffset, 0x500)
        _ = rig.run([.rdmsr(MSR.ia32TimeStampCounter.address)])
        #expect(rig.edxeax == 0x10_0500)
    }

    @Test func wrmsrOfTheTSCSetsTheOffsetAndNeverTheHostsTSC() throws {
        var rig = try VCPURig()
        rig.hw.tscStep = 0
        rig.hw.tsc = 0x10_0000
        _ = rig.run([.wrmsr(MSR.ia32TimeStampCounter.address, 0x30_0000)])
        #expect(rig.field(VMCSFields.Control64.tscOffset) == 0x20_0000)
        #expect(rig.hw.cpu.msrWrites.isEmpty)
    }

    @Test(arguments: [UInt32(0x1234), 0x200, 0x480, 0x48D, 0x10A, 0xC000_0FFF, 0x4000_0000])
    func rdmsrOfAnUnknownMSRRaisesGPAndChangesNothing(msr: UInt32) throws {
        var rig = try VCPURig()
        _ = rig.run([ScriptedExit.rdmsr(msr).then { r, _ in r.rax = 0xAAAA; r.rdx = 0xBBBB }])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.entries[1].exceptionErrorCode == 0)
        #expect(rig.vcpu.registers.rax == 0xAAAA && rig.vcpu.registers.rdx == 0xBBBB)
        #expect(rig.rip == 0x1000)
    }

    @Test(arguments: [UInt32(0x1234), 0x3A, 0xFE, 0x480, 0x18B])
    func wrmsrOfAnUnknownOrReadOnlyMSRRaisesGP(msr: UInt32) throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(msr, 5)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.rip == 0x1000)
        #expect(rig.hw.cpu.msrWrites.isEmpty)
    }

    @Test(arguments: [MSR.ia32BIOSSignID.address, 0x79])
    func writeOnlyCommandsAreAcceptedAndIgnored(msr: UInt32) throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(msr, 1)])
        #expect(!rig.entries[1].injected.isValid)
        #expect(rig.rip == 0x1002)
        #expect(rig.hw.cpu.msrWrites.isEmpty)
    }

    // MARK: EFER (SDM 2.2.1)

    @Test func eferLMAIsReadOnly() throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(MSR.ia32EFER.address, 0x500)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == 0x100)
        #expect(!rig.entries[1].injected.isValid)
    }

    @Test func eferKeepsLMAInIA32eMode() throws {
        var rig = try VCPURig(.long64, rip: 0x1000)
        _ = rig.run([.wrmsr(MSR.ia32EFER.address, 0x901)])   // SCE | LME | NXE, LMA not written
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == 0xD01)
    }

    @Test func changingLMEWithPagingOnRaisesGP() throws {
        var rig = try VCPURig(.long64, rip: 0x1000)
        _ = rig.run([.wrmsr(MSR.ia32EFER.address, 0x400)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == 0x500)
    }

    @Test(arguments: [UInt64(0x2), 0x1000, 0x1_0000_0000])
    func eferReservedBitsRaiseGP(value: UInt64) throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(MSR.ia32EFER.address, value)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == 0)
    }

    // MARK: Other rules

    @Test(arguments: [UInt64(0x0007_0406_0207_0406), 0x0300_0000_0000_0000, 0x0000_0000_0000_0008])
    func patWithAnInvalidMemoryTypeRaisesGP(value: UInt64) throws {
        // SDM 12.12.2: types 2, 3 and 8-255 are reserved.
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(MSR.ia32PAT.address, value)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32PAT) == 0x0007_0406_0007_0406)
    }

    @Test(arguments: [(MSR.ia32DebugCtl, UInt64(0x4)), (.ia32APICBase, 0xFEE0_0A00), (.ia32APICBase, 0xFEE0_0901),
                      (.ia32MTRRDefType, 0x100)])
    func reservedBitsRaiseGP(msr: MSR, value: UInt64) throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(msr.address, value)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.rip == 0x1000)
    }

    @Test func sysenterCSKeepsThirtyTwoBits() throws {
        var rig = try VCPURig()
        _ = rig.run([.wrmsr(MSR.ia32SysenterCS.address, 0xFFFF_FFFF_0000_0023)])
        #expect(rig.field(VMCSFields.Guest32.ia32SysenterCS) == 0x23)
    }
}

@Suite struct GuestXSSTests {
    // SDM 14.4.4: IA32_XSS holds supervisor state components; the guest may
    // set only those the CPUID policy exposes (none by default). Linux writes
    // 0 whenever XSAVES is offered, which must not fault.
    @Test func xssAcceptsOnlyTheExposedSupervisorStates() throws {
        var rig = try VCPURig()
        #expect(rig.vcpu.features.xsaves)
        _ = rig.run([.wrmsr(MSR.ia32XSS.address, 0), ScriptedExit.rdmsr(MSR.ia32XSS.address).then { r, _ in r.rax = ~0; r.rdx = ~0 }])
        #expect(!rig.entries[1].injected.isValid)
        #expect(rig.edxeax == 0)
        var other = try VCPURig()
        _ = other.run([.wrmsr(MSR.ia32XSS.address, 1 << 8)])
        #expect(other.entries[1].injected.raw == injectGP)   // PT state is not exposed
        #expect(rig.hw.cpu.msrWrites.isEmpty && other.hw.cpu.msrWrites.isEmpty)
    }
}

/// IA32_SPEC_CTRL and IA32_PRED_CMD: the real MSRs when CPUID.(7,0):EDX
/// reports them, #GP otherwise, so a guest never believes in a mitigation
/// that is not there.
@Suite struct SpeculationControlMSRTests {
    @Test(arguments: [(MSR.ia32SpecCtrl.address, true), (MSR.ia32SpecCtrl.address, false),
                      (MSR.ia32PredCmd.address, true), (MSR.ia32PredCmd.address, false)])
    func withoutIBRSAndIBPBBothRaiseGP(msr: UInt32, write: Bool) throws {
        var rig = try VCPURig()
        #expect(rig.hw.cpu.cpuid(leaf: 7, subleaf: 0).edx & (1 << 26 | 1 << 27 | 1 << 31) == 0)
        _ = rig.run([write ? .wrmsr(msr, 1) : .rdmsr(msr)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.rip == 0x1000)
        #expect(rig.hw.cpu.msrWrites.isEmpty)
    }

    @Test func withIBRSSpecCtrlIsTheGuestsOwnSwitchedAtEntryAndExit() throws {
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        var leaf7 = hw.cpu.cpuid(leaf: 7, subleaf: 0)
        leaf7.edx |= 1 << 26
        hw.cpu.setCPUID(leaf: 7, leaf7)
        hw.cpu.msrs[MSR.ia32SpecCtrl.address] = 0x5   // the host's own setting
        let rig = try VCPURig(hw: hw)
        #expect(rig.vcpu.features.switchesSpecCtrl && rig.vcpu.features.predictionCommand)
        let count = Int(rig.field(VMCSFields.Control32.entryMSRLoadCount))
        func entries(_ address: UInt64) -> [(UInt64, UInt64)] {
            (0..<count).map { i in
                let p = rig.frames.pointer(to: address + UInt64(i) * 16)
                return (p.load(as: UInt64.self), p.load(fromByteOffset: 8, as: UInt64.self))
            }
        }
        let guest = entries(rig.field(VMCSFields.Control64.entryMSRLoadAddress))
        let host = entries(rig.field(VMCSFields.Control64.exitMSRLoadAddress))
        #expect(guest.contains { $0 == (0x48, 0) })   // the guest starts with SPEC_CTRL 0
        #expect(host.contains { $0 == (0x48, 0x5) })  // and the host gets its own back at exit
        #expect(rig.vcpu.msrBitmap.interceptsRead(msr: 0x48) == .bitmap(intercepted: false))
        #expect(rig.vcpu.msrBitmap.interceptsWrite(msr: 0x48) == .bitmap(intercepted: false))
        // PRED_CMD is write-only: writes reach the CPU, reads #GP through the handler.
        #expect(rig.vcpu.msrBitmap.interceptsWrite(msr: 0x49) == .bitmap(intercepted: false))
        #expect(rig.vcpu.msrBitmap.interceptsRead(msr: 0x49) == .bitmap(intercepted: true))
    }
}

@Suite struct GuestEFERTests {
    /// SDM 2.2.1: EFER.NXE exists only with CPUID 0x80000001 EDX.NX; without it the bit is reserved.
    @Test func nxeWithoutNXRaisesGP() throws {
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        hw.cpu.setCPUID(leaf: 0x8000_0001, CPUIDResult(edx: 1 << 11 | 1 << 29))   // SYSCALL, LM; no NX
        var rig = try VCPURig(hw: hw)
        _ = rig.run([.wrmsr(MSR.ia32EFER.address, EFER.nxe.rawValue)])
        #expect(rig.entries[1].injected.raw == injectGP)
        _ = rig.run([.wrmsr(MSR.ia32EFER.address, EFER.sce.rawValue)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == EFER.sce.rawValue)
    }
}
