import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct VMXCapabilitiesTests {
    @Test func basicDecodesTheA1Layout() {
        let basic = VMXBasic(rawValue: BochsCapabilities.corei7_skylake_x.vmxBasic)
        #expect(basic.revisionID == 0x2B)
        #expect(basic.regionSize == 4096)          // at most 4096 by SDM A.1
        #expect(basic.memoryType == 6 && basic.vmcsMemoryIsWriteBack)
        #expect(basic.hasTrueControls)             // bit 55
        #expect(basic.reportsINSOUTSInformation)   // bit 54
        #expect(!basic.addressesLimitedTo32Bits)   // bit 48 is 0 on 64-bit CPUs
        #expect(!basic.dualMonitorTreatment)
        #expect(!basic.hardwareExceptionWithoutErrorCode)
        // Bit 31 of the MSR is always 0, so it is not part of the revision.
        let synthetic = VMXBasic(rawValue: 1 << 56 | 1 << 49 | 1 << 48 | 0x8000_0001)
        #expect(synthetic.revisionID == 1)
        #expect(synthetic.addressesLimitedTo32Bits && synthetic.dualMonitorTreatment)
        #expect(synthetic.hardwareExceptionWithoutErrorCode && !synthetic.vmcsMemoryIsWriteBack)
    }

    @Test func miscDecodesTheA6Layout() {
        let misc = VMXMisc(rawValue: BochsCapabilities.corei7_skylake_x.misc)
        #expect(misc.preemptionTimerTSCShift == 0)
        #expect(misc.storesEFERLMAOnExit)
        #expect(misc.supportsActivityHLT && misc.supportsActivityShutdown && misc.supportsActivityWaitForSIPI)
        #expect(misc.cr3TargetCount == 4)
        #expect(misc.maxMSRListEntries == 512)
        #expect(misc.vmwriteToAnyField && misc.zeroLengthInstructionInjection)
        #expect(!misc.intelPTInVMX && !misc.rdmsrReadsSMBASEInSMM && !misc.smmMonitorCtlBit2)
        #expect(misc.msegRevision == 0)
        // Bits 4:0 = 5: timer ticks every 32 TSC ticks; bits 27:25 = 3: 4 * 512 entries.
        let other = VMXMisc(rawValue: 0x0000_00AB_0600_C005)
        #expect(other.preemptionTimerTSCShift == 5)
        #expect(other.maxMSRListEntries == 2048)
        #expect(other.intelPTInVMX && other.rdmsrReadsSMBASEInSMM)
        #expect(other.msegRevision == 0xAB)
        #expect(!other.storesEFERLMAOnExit)
    }

    @Test func eptVPIDCapabilitiesDecodeTheA10Layout() {
        let skylake = EPTVPIDCapabilities(rawValue: BochsCapabilities.corei7_skylake_x.eptVPIDCap ?? 0)
        #expect(skylake.executeOnly && skylake.pageWalkLength4 && !skylake.pageWalkLength5)
        #expect(skylake.uncacheable && skylake.writeBack)
        #expect(skylake.pages2MiB && skylake.pages1GiB)
        #expect(skylake.invept && skylake.inveptSingleContext && skylake.inveptAllContext)
        #expect(skylake.accessedDirtyFlags && !skylake.advancedEPTViolationInformation)
        #expect(!skylake.supervisorShadowStack)
        #expect(skylake.invvpid && skylake.invvpidIndividualAddress && skylake.invvpidSingleContext)
        #expect(skylake.invvpidAllContext && skylake.invvpidSingleContextRetainingGlobals)
        #expect(skylake.maxHLATPrefixSize == 0)
        // Lynnfield: no 1 GiB EPT pages, no A/D flags.
        let lynnfield = EPTVPIDCapabilities(rawValue: BochsCapabilities.corei5_lynnfield_750.eptVPIDCap ?? 0)
        #expect(lynnfield.pages2MiB && !lynnfield.pages1GiB && !lynnfield.accessedDirtyFlags)
        let fiveLevel = EPTVPIDCapabilities(rawValue: 1 << 7 | 1 << 22 | 1 << 23 | 3 << 48)
        #expect(fiveLevel.pageWalkLength5 && fiveLevel.advancedEPTViolationInformation)
        #expect(fiveLevel.supervisorShadowStack && fiveLevel.maxHLATPrefixSize == 3)
    }

    @Test func readingSkylakeUsesTheTrueMSRsAndFindsEverything() throws {
        let cpu = FakeCPU(bochs: BochsCapabilities.corei7_skylake_x)
        let caps = try VMXCapabilities.read(from: cpu)
        #expect(cpu.gpFaults.isEmpty)
        // Bit 55 of IA32_VMX_BASIC is set: the TRUE MSRs replace 481H-484H.
        for address: UInt32 in [0x48D, 0x48E, 0x48F, 0x490] { #expect(cpu.msrReads.contains(address)) }
        for address: UInt32 in [0x481, 0x482, 0x483, 0x484] { #expect(!cpu.msrReads.contains(address)) }
        #expect(caps.primary.msrValue == BochsCapabilities.corei7_skylake_x.trueProcbasedCtls)
        #expect(caps.secondary?.allows(.unrestrictedGuest | .enableEPT | .enableVPID) == true)
        #expect(caps.eptVPID?.pages1GiB == true)
        #expect(caps.vmFunctions == 1)   // EPTP switching
        #expect(caps.cr0Fixed == FixedBits(fixed0: 0x8000_0021, fixed1: 0xFFFF_FFFF))
        #expect(caps.cr4Fixed.fixed0 == CR4Bits.vmxe.rawValue)
        #expect(caps.vmcsEnum >> 1 & 0x1FF == 0x1A)   // highest index, bits 9:1
        #expect(caps.misc.cr3TargetCount == 4)
    }

    @Test func readingWithoutTrueControlsUsesTheBaseMSRs() throws {
        let cpu = FakeCPU(bochs: BochsCapabilities.corei7_skylake_x)
        cpu.msrs[0x480] = BochsCapabilities.corei7_skylake_x.vmxBasic & ~(1 << 55)
        let caps = try VMXCapabilities.read(from: cpu)
        for address: UInt32 in [0x481, 0x482, 0x483, 0x484] { #expect(cpu.msrReads.contains(address)) }
        for address: UInt32 in [0x48D, 0x48E, 0x48F, 0x490] { #expect(!cpu.msrReads.contains(address)) }
        // Without TRUE controls, the default1 CR3-load/store exiting bits must be 1.
        #expect(caps.primary.mustBeOne.contains(.cr3LoadExiting | .cr3StoreExiting))
    }

    @Test func penrynHasNoEPTSoItsEPTCapabilityMSRIsNeverRead() throws {
        let cpu = FakeCPU(bochs: BochsCapabilities.core2_penryn_t9600)
        let caps = try VMXCapabilities.read(from: cpu)
        #expect(cpu.gpFaults.isEmpty)
        #expect(!cpu.msrReads.contains(0x48C) && !cpu.msrReads.contains(0x491))
        #expect(caps.secondary?.mayBeOne == .virtualizeAPICAccesses | .wbinvdExiting)
        #expect(caps.eptVPID == nil && caps.vmFunctions == nil)
    }

    @Test func lynnfieldHasEPTButNoVMFunctions() throws {
        let cpu = FakeCPU(bochs: BochsCapabilities.corei5_lynnfield_750)
        let caps = try VMXCapabilities.read(from: cpu)
        #expect(cpu.gpFaults.isEmpty)
        #expect(caps.eptVPID != nil && caps.vmFunctions == nil)
        #expect(caps.secondary?.allows(.unrestrictedGuest) == false)
    }

    @Test func withoutSecondaryControlsTheSecondaryMSRIsNeverRead() throws {
        // SDM A.3.3: IA32_VMX_PROCBASED_CTLS2 exists only if bit 63 of
        // IA32_VMX_PROCBASED_CTLS (allowed-1 of bit 31) is 1.
        let cpu = FakeCPU(bochs: BochsCapabilities.core2_penryn_t9600)
        cpu.msrs[0x48E] = BochsCapabilities.core2_penryn_t9600.trueProcbasedCtls & ~(1 << 63)
        cpu.msrs[0x48B] = nil
        let caps = try VMXCapabilities.read(from: cpu)
        #expect(cpu.gpFaults.isEmpty)
        #expect(caps.secondary == nil)
    }

    @Test func everyBochsModelReadsWithoutTouchingAnAbsentMSR() throws {
        for model in BochsCapabilities.all {
            let cpu = FakeCPU(bochs: model)
            _ = try VMXCapabilities.read(from: cpu)
            #expect(cpu.gpFaults.isEmpty, "\(model.name)")
        }
    }

    @Test func noVMXMeansNoMSRIsRead() {
        let cpu = FakeCPU()
        cpu.msrs = BochsCapabilities.corei7_skylake_x.msrs
        #expect(throws: VMXError.vmxNotSupported) { try VMXCapabilities.read(from: cpu) }
        #expect(cpu.msrReads.isEmpty)
    }
}
