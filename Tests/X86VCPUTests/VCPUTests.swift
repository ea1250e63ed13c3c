import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// Creation and setup: the controls, the MSR lists and bitmaps, host state and
// guest state for each kind of start. SDM 25 "Virtual Machine Control
// Structures", 27.2-27.3 "Checks on ... / Loading Guest State" (VM entry).
@Suite struct VCPUTests {
    static let workingModels = [BochsCapabilities.corei7_skylake_x, BochsCapabilities.corei7_haswell_4770]

    /// The kernel sizes the passthrough pool with `frameCount` per CPU: it
    /// must be what creation really takes.
    @Test func creationTakesFrameCountFrames() throws {
        let hw = FakeHardware()
        let frames = HostFrameAllocator(frames: 32)
        let memory = FakeGuestMemory()
        let caps = try VMXCapabilities.read(from: hw)
        let vcpu = try VCPU(hw, allocator: frames, capabilities: caps, ram: memory.ram, platform: .passthrough)
        #expect(frames.liveFrames == VCPU<HostFrameAllocator>.frameCount)
        _ = consume vcpu
    }

    // MARK: Controls

    @Test(arguments: workingModels)
    func controlsWrittenSatisfyTheCapabilityMSRs(model: BochsCPUModel) throws {
        let rig = try VCPURig(hw: FakeHardware(bochs: model))
        let caps = try VMXCapabilities.read(from: rig.hw)
        let pin = PinBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.pinBasedControls)))
        let primary = PrimaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.primaryProcessorBasedControls)))
        let secondary = SecondaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.secondaryProcessorBasedControls)))
        let exit = VMExitControls(rawValue: UInt32(rig.field(VMCSFields.Control32.primaryExitControls)))
        let entry = VMEntryControls(rawValue: UInt32(rig.field(VMCSFields.Control32.entryControls)))
        #expect(caps.pinBased.isValid(pin))
        #expect(caps.primary.isValid(primary))
        #expect(try #require(caps.secondary).isValid(secondary))
        #expect(caps.exit.isValid(exit))
        #expect(caps.entry.isValid(entry))
        // What the vCPU relies on.
        #expect(pin.contains(.externalInterruptExiting))
        #expect(primary.isSuperset(of: .hltExiting | .useIOBitmaps | .useMSRBitmaps | .activateSecondaryControls))
        #expect(secondary.isSuperset(of: .enableEPT | .unrestrictedGuest))
        #expect(exit.isSuperset(of: .hostAddressSpaceSize | .acknowledgeInterruptOnExit | .saveIA32EFER | .loadIA32EFER
                                    | .saveIA32PAT | .loadIA32PAT))
        #expect(entry.isSuperset(of: .loadIA32EFER | .loadIA32PAT))
        // The preemption timer runs only while the guest's timer is armed.
        #expect(!pin.contains(.activatePreemptionTimer))
        // Windows are opened on demand only.
        #expect(!primary.contains(.interruptWindowExiting))
        // SDM 27.2.1.1: virtual NMIs only with NMI exiting.
        #expect(!pin.contains(.virtualNMIs) || pin.contains(.nmiExiting))
    }

    @Test func cr8AccessesExitSoTheGuestNeverReachesTheHostsTPR() throws {
        // SDM 26.3: with CR8-load exiting and "use TPR shadow" both 0, a
        // 64-bit guest's MOV to CR8 writes the real APIC TPR.
        let rig = try VCPURig()
        let primary = PrimaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.primaryProcessorBasedControls)))
        #expect(primary.isSuperset(of: .cr8LoadExiting | .cr8StoreExiting))
    }

    @Test(arguments: [BochsCapabilities.corei5_lynnfield_750, BochsCapabilities.core2_penryn_t9600])
    func aCPUWithoutUnrestrictedGuestOrEPTIsRefused(model: BochsCPUModel) throws {
        let hw = FakeHardware(bochs: model)
        let frames = HostFrameAllocator()
        let memory = FakeGuestMemory()
        let caps = try VMXCapabilities.read(from: hw)
        do {
            _ = try VCPU(hw, allocator: frames, capabilities: caps, ram: memory.ram)
            Issue.record("\(model.name): created")
        } catch {
            guard case .controlsUnsupported(let missing) = error else { Issue.record("\(error)"); return }
            #expect(missing.kind == .secondaryProcessorBased)
            // Lynnfield lacks unrestricted guest (bit 7); Penryn EPT (bit 1) too.
            #expect(missing.missing & SecondaryProcessorBasedControls.unrestrictedGuest.rawValue != 0)
        }
        #expect(frames.liveFrames == 0)
        #expect(frames.misuse.isEmpty)
    }

    @Test(arguments: 0..<5)
    func runningOutOfFramesAtAnyAllocationReturnsEveryFrame(succeeding: Int) throws {
        let hw = FakeHardware()
        let frames = HostFrameAllocator()
        let memory = FakeGuestMemory()
        let caps = try VMXCapabilities.read(from: hw)
        frames.failAfter = succeeding
        #expect(throws: VMXError.outOfMemory) {
            _ = try VCPU(hw, allocator: frames, capabilities: caps, ram: memory.ram)
        }
        #expect(frames.liveFrames == 0)
        #expect(frames.misuse.isEmpty)
    }

    @Test func theVCPUOwnsEightFramesAndReturnsThemWhenDropped() throws {
        let frames: HostFrameAllocator
        do {
            let rig = try VCPURig()
            frames = rig.frames
            // VMCS, I/O bitmaps A and B, MSR bitmap, MSR lists, fast-path block,
            // virtual-APIC page, APIC-access page.
            #expect(frames.liveFrames == 8)
        }
        #expect(frames.liveFrames == 0)
        #expect(frames.misuse.isEmpty)
    }

    @Test func setupClearsThenLoadsTheVMCSWhichHoldsTheRevisionIdentifier() throws {
        let rig = try VCPURig()
        guard rig.hw.calls.count == 3, case .vmclear(let cleared) = rig.hw.calls[0],
              case .vmptrld(let loaded) = rig.hw.calls[1] else {
            Issue.record("calls: \(rig.hw.calls)"); return
        }
        #expect(cleared == loaded)
        #expect(rig.frames.pointer(to: loaded).load(as: UInt32.self) == 0x2B)
    }

    @Test func setupInvalidatesWhatTheCPUMayHaveCachedForTheEPTPointer() throws {
        let rig = try VCPURig()   // Bochs's capabilities offer single-context INVEPT
        guard case .invept(let eptp) = rig.hw.calls.last else { Issue.record("calls: \(rig.hw.calls)"); return }
        #expect(eptp == VCPURig.eptPointer)
    }

    @Test func theEPTPointerAndBitmapAddressesAreWritten() throws {
        let rig = try VCPURig()
        #expect(rig.field(VMCSFields.Control64.eptPointer) == VCPURig.eptPointer)
        #expect(rig.field(VMCSFields.Control64.ioBitmapA) == rig.vcpu.ioBitmap.addressA)
        #expect(rig.field(VMCSFields.Control64.ioBitmapB) == rig.vcpu.ioBitmap.addressB)
        #expect(rig.field(VMCSFields.Control64.msrBitmaps) == rig.vcpu.msrBitmap.address)
        #expect(rig.field(VMCSFields.Control32.exceptionBitmap) == 0)
        // VPID stays off: emulated CR writes then need no INVVPID (SDM 28.3.3.3).
        let secondary = SecondaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.secondaryProcessorBasedControls)))
        #expect(!secondary.contains(.enableVPID))
        #expect(rig.field(VMCSFields.Guest64.vmcsLinkPointer) == UInt64.max)
    }

    @Test func everyPortIsIntercepted() throws {
        let rig = try VCPURig()
        for port: UInt16 in [0, 0x60, 0x3F8, 0x7FFF, 0x8000, 0xCF8, FakePlatform.exitPort, 0xFFFF] {
            let intercepted = rig.vcpu.ioBitmap.intercepts(port: port)
            #expect(intercepted, "port \(port)")
        }
    }

    // MARK: Host state

    @Test func hostStateIsTheHostsOwn() throws {
        let rig = try VCPURig()
        let hw = rig.hw
        let s = hw.segments
        #expect(rig.field(VMCSFields.HostNatural.rip) == hw.exitEntryPoint)
        #expect(rig.field(VMCSFields.HostNatural.cr0) == hw.cpu.cr0)
        #expect(rig.field(VMCSFields.HostNatural.cr3) == hw.cpu.cr3)
        #expect(rig.field(VMCSFields.HostNatural.cr4) == hw.cpu.cr4)
        #expect(rig.field(VMCSFields.Host16.csSelector) == UInt64(s.cs))
        #expect(rig.field(VMCSFields.Host16.ssSelector) == UInt64(s.ss))
        #expect(rig.field(VMCSFields.Host16.dsSelector) == UInt64(s.ds))
        #expect(rig.field(VMCSFields.Host16.esSelector) == UInt64(s.es))
        #expect(rig.field(VMCSFields.Host16.fsSelector) == UInt64(s.fs))
        #expect(rig.field(VMCSFields.Host16.gsSelector) == UInt64(s.gs))
        #expect(rig.field(VMCSFields.Host16.trSelector) == UInt64(s.tr))
        #expect(rig.field(VMCSFields.HostNatural.fsBase) == s.fsBase)
        #expect(rig.field(VMCSFields.HostNatural.gsBase) == s.gsBase)
        #expect(rig.field(VMCSFields.HostNatural.trBase) == s.trBase)
        #expect(rig.field(VMCSFields.HostNatural.gdtrBase) == s.gdtrBase)
        #expect(rig.field(VMCSFields.HostNatural.idtrBase) == s.idtrBase)
        #expect(rig.field(VMCSFields.Host32.ia32SysenterCS) == FakeHardware.hostMSRs[0x174])
        #expect(rig.field(VMCSFields.HostNatural.ia32SysenterESP) == FakeHardware.hostMSRs[0x175])
        #expect(rig.field(VMCSFields.HostNatural.ia32SysenterEIP) == FakeHardware.hostMSRs[0x176])
        #expect(rig.field(VMCSFields.Host64.ia32EFER) == FakeHardware.hostMSRs[0xC000_0080])
        #expect(rig.field(VMCSFields.Host64.ia32PAT) == FakeHardware.hostMSRs[0x277])
        // Only MSRs the CPU has were touched, and none was written.
        #expect(hw.cpu.gpFaults.isEmpty)
        #expect(hw.cpu.msrWrites.isEmpty)
    }

    // MARK: MSR lists and bitmap

    static let switched: [UInt32] = [0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084, 0xC000_0102, 0xC000_0103]

    /// The MSR list at `address`: (index, value) pairs of 16 bytes (SDM 25.7.2 Table 25-15).
    func list(_ rig: borrowing VCPURig, at address: UInt64, count: Int) -> [(msr: UInt64, value: UInt64)] {
        (0..<count).map { i in
            let p = rig.frames.pointer(to: address + UInt64(i) * 16)
            return (p.load(as: UInt64.self), p.load(fromByteOffset: 8, as: UInt64.self))
        }
    }

    @Test func theSyscallMSRsAreSwitchedWithHostValuesRestoredOnExit() throws {
        let rig = try VCPURig()
        let count = Int(rig.field(VMCSFields.Control32.entryMSRLoadCount))
        #expect(count == 6)
        #expect(rig.field(VMCSFields.Control32.exitMSRStoreCount) == UInt64(count))
        #expect(rig.field(VMCSFields.Control32.exitMSRLoadCount) == UInt64(count))
        // What the guest leaves (exit store) is what it gets back (entry load).
        let guestList = rig.field(VMCSFields.Control64.entryMSRLoadAddress)
        #expect(rig.field(VMCSFields.Control64.exitMSRStoreAddress) == guestList)
        let hostList = rig.field(VMCSFields.Control64.exitMSRLoadAddress)
        #expect(hostList != guestList)
        #expect(guestList % 16 == 0 && hostList % 16 == 0)   // SDM 27.2.1.2: 16-byte aligned

        let guest = list(rig, at: guestList, count: count)
        let host = list(rig, at: hostList, count: count)
        #expect(guest.map(\.msr) == Self.switched.map(UInt64.init))
        #expect(host.map(\.msr) == Self.switched.map(UInt64.init))
        // The guest starts with its own (zero) values, never the host's.
        #expect(guest.allSatisfy { $0.value == 0 })
        // The exit-load list restores the HOST values (the Rust reference let
        // the guest's LSTAR stay live in the host).
        for entry in host { #expect(entry.value == FakeHardware.hostMSRs[UInt32(entry.msr)], "MSR \(entry.msr)") }
    }

    @Test func withoutRDTSCPTheTSCAuxIsNotSwitched() throws {
        let hw = FakeHardware()
        hw.cpu.setCPUID(leaf: 0x8000_0001, CPUIDResult(ecx: 1, edx: 1 << 29 | 1 << 20 | 1 << 11))
        let rig = try VCPURig(hw: hw)
        #expect(rig.field(VMCSFields.Control32.entryMSRLoadCount) == 5)
        let host = list(rig, at: rig.field(VMCSFields.Control64.exitMSRLoadAddress), count: 5)
        #expect(!host.contains { $0.msr == 0xC000_0103 })
        #expect(!rig.vcpu.features.switchesTSCAux)
        let stillIntercepted = rig.vcpu.msrBitmap.interceptsRead(msr: 0xC000_0103)
        #expect(stillIntercepted == .bitmap(intercepted: true))
    }

    @Test(arguments: switched)
    func switchedMSRsPassThroughTheBitmap(msr: UInt32) throws {
        let rig = try VCPURig()
        let read = rig.vcpu.msrBitmap.interceptsRead(msr: msr)
        let write = rig.vcpu.msrBitmap.interceptsWrite(msr: msr)
        #expect(read == .bitmap(intercepted: false))
        #expect(write == .bitmap(intercepted: false))
    }

    @Test(arguments: [MSR.ia32FSBase, .ia32GSBase, .ia32SysenterCS, .ia32SysenterESP, .ia32SysenterEIP])
    func vmcsHeldMSRsPassThroughTheBitmap(msr: MSR) throws {
        let rig = try VCPURig()
        let read = rig.vcpu.msrBitmap.interceptsRead(msr: msr.address)
        let write = rig.vcpu.msrBitmap.interceptsWrite(msr: msr.address)
        #expect(read == .bitmap(intercepted: false))
        #expect(write == .bitmap(intercepted: false))
    }

    @Test(arguments: [MSR.ia32EFER, .ia32APICBase, .ia32FeatureControl, .ia32TimeStampCounter, .ia32PAT,
                      .ia32MiscEnable, .ia32DebugCtl, .ia32MTRRDefType, .ia32VMXBasic, .ia32SpecCtrl])
    func writesOfMSRsTheHostDependsOnStayIntercepted(msr: MSR) throws {
        let rig = try VCPURig()
        let write = rig.vcpu.msrBitmap.interceptsWrite(msr: msr.address)
        #expect(write == .bitmap(intercepted: true))
    }

    @Test(arguments: [MSR.ia32PAT, .ia32TimeStampCounter])
    func patAndTSCAreReadDirectly(msr: MSR) throws {
        let rig = try VCPURig()
        let read = rig.vcpu.msrBitmap.interceptsRead(msr: msr.address)
        #expect(read == .bitmap(intercepted: false))
    }

    @Test(arguments: [MSR.ia32EFER, .ia32APICBase, .ia32FeatureControl, .ia32VMXBasic])
    func readsOfEmulatedMSRsStayIntercepted(msr: MSR) throws {
        let rig = try VCPURig()
        let read = rig.vcpu.msrBitmap.interceptsRead(msr: msr.address)
        #expect(read == .bitmap(intercepted: true))
    }

    // MARK: Guest state

    @Test func realModeStartHasPEClearInTheShadowAndNEForcedInTheRealCR0() throws {
        let rig = try VCPURig(.real, rip: 0x7C00)
        let cr0 = rig.field(VMCSFields.GuestNatural.cr0)
        let shadow = rig.field(VMCSFields.ControlNatural.cr0ReadShadow)
        #expect(shadow & CR0Bits.pe.rawValue == 0)
        #expect(shadow & CR0Bits.pg.rawValue == 0)
        #expect(shadow & CR0Bits.ne.rawValue == 0)
        // Unrestricted guest lets PE and PG be 0 (SDM 27.3.1.1); NE stays fixed.
        #expect(cr0 & CR0Bits.pe.rawValue == 0)
        #expect(cr0 & CR0Bits.pg.rawValue == 0)
        #expect(cr0 & CR0Bits.ne.rawValue != 0)
        // NE is host-owned, so the guest reads the shadow's 0.
        #expect(rig.field(VMCSFields.ControlNatural.cr0GuestHostMask) & CR0Bits.ne.rawValue != 0)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == 0)
        let entry = VMEntryControls(rawValue: UInt32(rig.field(VMCSFields.Control32.entryControls)))
        #expect(!entry.contains(.ia32eModeGuest))
    }

    @Test func realModeStartAt7C00IsCS0IP7C00() throws {
        let rig = try VCPURig(.real, rip: 0x7C00)
        #expect(rig.field(VMCSFields.Guest16.csSelector) == 0)
        #expect(rig.field(VMCSFields.GuestNatural.csBase) == 0)
        #expect(rig.rip == 0x7C00)
        #expect(rig.field(VMCSFields.Guest32.csLimit) == 0xFFFF)
        #expect(rig.field(VMCSFields.Guest32.csAccessRights) == 0x9B)
        #expect(rig.field(VMCSFields.Guest32.ssAccessRights) == 0x93)
        #expect(rig.field(VMCSFields.GuestNatural.rsp) == 0x8000)
    }

    @Test func realModeStartAtTheResetVectorIsCSF000() throws {
        // Real mode: CS base = selector << 4 (SDM 21.1.1 "Address Translation in Real-Address Mode").
        let rig = try VCPURig(.real, rip: 0xF_FFF0)
        #expect(rig.field(VMCSFields.Guest16.csSelector) == 0xF000)
        #expect(rig.field(VMCSFields.GuestNatural.csBase) == 0xF_0000)
        #expect(rig.rip == 0xFFF0)
    }

    @Test func protected32StartIsFlatWithPagingOff() throws {
        let rig = try VCPURig(.protected32, rip: 0x10_0000) { $0.codeSelector = 0x18; $0.dataSelector = 0x20 }
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) & 0x8000_0001 == 0x1)
        #expect(rig.field(VMCSFields.Guest16.csSelector) == 0x18)
        #expect(rig.field(VMCSFields.Guest16.dsSelector) == 0x20)
        #expect(rig.field(VMCSFields.Guest16.ssSelector) == 0x20)
        #expect(rig.field(VMCSFields.GuestNatural.csBase) == 0)
        #expect(rig.field(VMCSFields.Guest32.csLimit) == 0xFFFF_FFFF)
        #expect(rig.field(VMCSFields.Guest32.csAccessRights) == 0xC09B)
        #expect(rig.rip == 0x10_0000)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == 0)
    }

    @Test func long64StartSetsIA32eModeAndEFERLMEAndLMA() throws {
        let rig = try VCPURig(.long64, rip: 0xFFFF_8000_0000_1000) { $0.cr3 = 0x9000 }
        let entry = VMEntryControls(rawValue: UInt32(rig.field(VMCSFields.Control32.entryControls)))
        #expect(entry.contains(.ia32eModeGuest))
        let efer = rig.field(VMCSFields.Guest64.ia32EFER)
        #expect(efer & (EFER.lme.rawValue | EFER.lma.rawValue) == EFER.lme.rawValue | EFER.lma.rawValue)
        // SDM 27.3.1.1: IA-32e mode guest needs CR0.PG and CR4.PAE.
        #expect(rig.field(VMCSFields.GuestNatural.cr0) & 0x8000_0001 == 0x8000_0001)
        #expect(rig.field(VMCSFields.GuestNatural.cr4) & CR4Bits.pae.rawValue != 0)
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0x9000)
        // 64-bit code segment: L = 1, D = 0.
        let cs = rig.field(VMCSFields.Guest32.csAccessRights)
        #expect(cs & (1 << 13) != 0 && cs & (1 << 14) == 0)
        #expect(rig.rip == 0xFFFF_8000_0000_1000)
        // The setup's entry controls are the adjusted ones plus IA-32e only.
        let caps = try VMXCapabilities.read(from: rig.hw)
        #expect(caps.entry.isValid(entry))
    }

    @Test func cr4VMXEIsSetForTheCPUButHiddenFromTheGuest() throws {
        let rig = try VCPURig(.long64, rip: 0x1000)
        #expect(rig.field(VMCSFields.GuestNatural.cr4) & CR4Bits.vmxe.rawValue != 0)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) & CR4Bits.vmxe.rawValue == 0)
        #expect(rig.field(VMCSFields.ControlNatural.cr4GuestHostMask) & CR4Bits.vmxe.rawValue != 0)
    }

    @Test func startRegistersAndFlagsReachTheGuest() throws {
        let rig = try VCPURig(.real, rip: 0x7C00) {
            $0.registers.rdx = 0x80
            $0.rflags = 0x200
            $0.gdtrBase = 0x500; $0.gdtrLimit = 0x27; $0.idtrBase = 0; $0.idtrLimit = 0x3FF
        }
        #expect(rig.vcpu.registers.rdx == 0x80)
        #expect(rig.field(VMCSFields.GuestNatural.rflags) == 0x202)   // bit 1 is always 1
        #expect(rig.field(VMCSFields.GuestNatural.gdtrBase) == 0x500)
        #expect(rig.field(VMCSFields.Guest32.gdtrLimit) == 0x27)
        #expect(rig.field(VMCSFields.Guest32.idtrLimit) == 0x3FF)
        // LDTR unusable, TR a busy TSS (SDM 27.3.1.2).
        #expect(rig.field(VMCSFields.Guest32.ldtrAccessRights) == 0x1_0000)
        #expect(rig.field(VMCSFields.Guest32.trAccessRights) & 0xF == 0xB)
    }

    @Test func rdtscpIsShownToTheGuestBecauseTheControlIsOn() throws {
        var rig = try VCPURig()
        #expect(rig.vcpu.features.rdtscp)
        let exit = rig.run([.cpuid(leaf: 0x8000_0001)])
        #expect(exit == rig.scriptEnd)
        #expect(rig.vcpu.registers.rdx & (1 << 27) != 0)
    }

    @Test func aVMCSWriteFailureDuringSetupIsThrown() throws {
        let hw = FakeHardware()
        hw.vmcs.fail(VMCSFields.HostNatural.rip, with: .vmFailValid(VMInstructionError(rawValue: 12)))
        #expect(throws: VMXError.vmFailValid(VMInstructionError(rawValue: 12))) { _ = try VCPURig(hw: hw) }
    }

    @Test func aFailedVMPTRLDIsThrown() throws {
        let hw = FakeHardware()
        hw.vmptrldError = .vmFailInvalid
        #expect(throws: VMXError.vmFailInvalid) { _ = try VCPURig(hw: hw) }
    }
}
