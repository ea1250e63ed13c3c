import Testing
import TestSupport
import X86Arch
import VMX

// SDM 27.2.1 "Checks on VMX Controls": one broken rule per case, and the
// valid control settings that must pass.

private typealias C16 = VMCSFields.Control16
private typealias C32 = VMCSFields.Control32
private typealias C64 = VMCSFields.Control64
private typealias G32 = VMCSFields.Guest32
private typealias G64 = VMCSFields.Guest64
private typealias GN = VMCSFields.GuestNatural

// Capability edits for rules the Bochs Skylake-X CPU cannot reach otherwise.
private func allowPin(_ bits: UInt32) -> Mutation {
    { _, env in env.capabilities.pinBased = VMXControlCapability(msrValue: env.capabilities.pinBased.msrValue | UInt64(bits) << 32) }
}
private func allowSecondary(_ bits: UInt32) -> Mutation {
    { _, env in
        let old = env.capabilities.secondary?.msrValue ?? 0
        env.capabilities.secondary = VMXControlCapability(msrValue: old | UInt64(bits) << 32)
    }
}
private func allowPrimary(_ bits: UInt32) -> Mutation {
    { _, env in env.capabilities.primary = VMXControlCapability(msrValue: env.capabilities.primary.msrValue | UInt64(bits) << 32) }
}
private func eptCapabilities(clearing bits: UInt64 = 0, setting more: UInt64 = 0) -> Mutation {
    { _, env in
        let raw = env.capabilities.eptVPID?.rawValue ?? 0
        env.capabilities.eptVPID = EPTVPIDCapabilities(rawValue: (raw & ~bits) | more)
    }
}

private let sec = UInt64(SecondaryProcessorBasedControls.enableEPT.rawValue)
private let tprShadow = UInt64(PrimaryProcessorBasedControls.useTPRShadow.rawValue)
private let vid = UInt64(SecondaryProcessorBasedControls.virtualInterruptDelivery.rawValue)
private let postedInterrupts = UInt64(PinBasedControls.processPostedInterrupts.rawValue)
/// Use TPR shadow with a valid virtual-APIC page.
private let withTPRShadow: Mutation = both(orBits(C32.primaryProcessorBasedControls, tprShadow),
                                           set(C64.virtualAPICAddress, 0x0030_5000))
/// Process posted interrupts with everything it needs (allowed in the capabilities).
private let withPostedInterrupts: Mutation = both(both(allowPin(1 << 7), withTPRShadow), both(
    orBits(C32.pinBasedControls, postedInterrupts), both(orBits(C32.secondaryProcessorBasedControls, vid), both(
        set(C16.postedInterruptNotificationVector, 0xF2), set(C64.postedInterruptDescriptorAddress, 0x0030_6040)))))

let controlCases: [Breakage] = [
    // 27.2.1.1 VM-execution controls.
    brk("pin-based default1 bit cleared", .long, reported: C32.pinBasedControls, .pinBasedControlsUnsupported,
        orBits(C32.pinBasedControls, 0, clear: 0x10)),
    brk("pin-based posted interrupts not offered", .long, reported: C32.pinBasedControls, .pinBasedControlsUnsupported,
        orBits(C32.pinBasedControls, postedInterrupts)),
    brk("primary monitor trap flag not offered", .long, reported: C32.primaryProcessorBasedControls,
        .primaryControlsUnsupported, orBits(C32.primaryProcessorBasedControls, 1 << 27)),
    brk("secondary ENCLS exiting not offered", .long, reported: C32.secondaryProcessorBasedControls,
        .secondaryControlsUnsupported, orBits(C32.secondaryProcessorBasedControls, 1 << 15)),
    brk("five CR3 targets", .long, C32.cr3TargetCount, 5, .cr3TargetCountTooLarge),
    brk("I/O bitmap A not page aligned", .real, C64.ioBitmapA, 0x0030_0800, .ioBitmapAddressInvalid),
    brk("I/O bitmap B beyond MAXPHYADDR", .real, C64.ioBitmapB, 1 << 40, .ioBitmapAddressInvalid),
    brk("MSR bitmap not page aligned", .long, C64.msrBitmaps, 0x0030_2008, .msrBitmapAddressInvalid),
    brk("virtual-APIC page not aligned", .long, C64.virtualAPICAddress, 0x0030_5010, .virtualAPICAddressInvalid,
        prepare: withTPRShadow),
    brk("TPR threshold 16", .long, C32.tprThreshold, 0x10, .tprThresholdReservedBits, prepare: withTPRShadow),
    brk("x2APIC virtualization without TPR shadow", .long, reported: C32.secondaryProcessorBasedControls,
        .apicVirtualizationWithoutTPRShadow, orBits(C32.secondaryProcessorBasedControls, 1 << 4)),
    brk("virtual NMIs without NMI exiting", .long, reported: C32.pinBasedControls, .virtualNMIsWithoutNMIExiting,
        orBits(C32.pinBasedControls, 0, clear: 1 << 3)),
    brk("NMI-window exiting without virtual NMIs", .long, reported: C32.primaryProcessorBasedControls,
        .nmiWindowExitingWithoutVirtualNMIs, prepare: orBits(C32.pinBasedControls, 0, clear: 1 << 5),
        orBits(C32.primaryProcessorBasedControls, 1 << 22)),
    brk("APIC-access page not aligned", .long, C64.apicAccessAddress, 0x0030_7001, .apicAccessAddressInvalid,
        prepare: orBits(C32.secondaryProcessorBasedControls, 1 << 0)),
    brk("x2APIC mode together with APIC-access virtualization", .long, reported: C32.secondaryProcessorBasedControls,
        .x2APICModeWithAPICAccesses,
        prepare: both(withTPRShadow, both(orBits(C32.secondaryProcessorBasedControls, 1 << 0),
                                          set(C64.apicAccessAddress, 0x0030_7000))),
        orBits(C32.secondaryProcessorBasedControls, 1 << 4)),
    brk("virtual-interrupt delivery without external-interrupt exiting", .long, reported: C32.pinBasedControls,
        .virtualInterruptDeliveryWithoutExternalInterruptExiting,
        prepare: both(withTPRShadow, orBits(C32.secondaryProcessorBasedControls, vid)),
        orBits(C32.pinBasedControls, 0, clear: 1)),
    brk("posted interrupts without virtual-interrupt delivery", .long, reported: C32.secondaryProcessorBasedControls,
        .postedInterruptsWithoutVirtualInterruptDelivery, prepare: withPostedInterrupts,
        orBits(C32.secondaryProcessorBasedControls, 0, clear: vid)),
    brk("posted interrupts without acknowledge interrupt on exit", .long, reported: C32.primaryExitControls,
        .postedInterruptsWithoutAcknowledgeOnExit, prepare: withPostedInterrupts,
        orBits(C32.primaryExitControls, 0, clear: 1 << 15)),
    brk("posted-interrupt notification vector 1F2H", .long, C16.postedInterruptNotificationVector, 0x1F2,
        .postedInterruptVectorReservedBits, prepare: withPostedInterrupts),
    brk("posted-interrupt descriptor not 64-byte aligned", .long, C64.postedInterruptDescriptorAddress, 0x0030_6020,
        .postedInterruptDescriptorAddressInvalid, prepare: withPostedInterrupts),
    brk("VPID 0", .long, C16.virtualProcessorID, 0, .vpidZero),
    brk("EPTP memory type WC", .long, C64.eptPointer, Fixture.eptPointer & ~7 | 1, .eptpMemoryTypeUnsupported),
    brk("EPTP memory type UC the CPU cannot use", .long, C64.eptPointer, Fixture.eptPointer & ~7,
        .eptpMemoryTypeUnsupported, prepare: eptCapabilities(clearing: 1 << 8)),
    brk("EPTP 5-level walk without 5-level support", .long, C64.eptPointer, Fixture.eptPointer & ~0x38 | 4 << 3,
        .eptpWalkLengthUnsupported),
    brk("EPTP A/D flags without A/D support", .long, C64.eptPointer, Fixture.eptPointer | 1 << 6,
        .eptpAccessedDirtyUnsupported, prepare: eptCapabilities(clearing: 1 << 21)),
    brk("EPTP supervisor shadow-stack bit", .long, C64.eptPointer, Fixture.eptPointer | 1 << 7,
        .eptpShadowStackUnsupported),
    brk("EPTP reserved bit 8", .long, C64.eptPointer, Fixture.eptPointer | 1 << 8, .eptpReservedBits),
    brk("EPTP beyond MAXPHYADDR", .long, C64.eptPointer, Fixture.eptPointer | 1 << 40, .eptpReservedBits),
    brk("PML without EPT", .long, reported: C32.secondaryProcessorBasedControls, .pmlWithoutEPT,
        orBits(C32.secondaryProcessorBasedControls, 1 << 17, clear: sec)),
    brk("PML address not aligned", .long, C64.pmlAddress, 0x0030_8800, .pmlAddressInvalid,
        prepare: orBits(C32.secondaryProcessorBasedControls, 1 << 17)),
    brk("unrestricted guest without EPT", .real, reported: C32.secondaryProcessorBasedControls,
        .unrestrictedGuestWithoutEPT, orBits(C32.secondaryProcessorBasedControls, 0, clear: sec)),
    brk("mode-based execute control without EPT", .longRestricted, reported: C32.secondaryProcessorBasedControls,
        .eptSubfeatureWithoutEPT, prepare: allowSecondary(1 << 22),
        orBits(C32.secondaryProcessorBasedControls, 1 << 22, clear: sec)),
    brk("VM function 1 (not offered)", .long, C64.vmFunctionControls, 2, .vmFunctionControlsUnsupported,
        prepare: orBits(C32.secondaryProcessorBasedControls, 1 << 13)),
    brk("EPTP switching without EPT", .longRestricted, reported: C32.secondaryProcessorBasedControls,
        .eptpSwitchingWithoutEPT,
        prepare: both(orBits(C32.secondaryProcessorBasedControls, 1 << 13),
                      both(set(C64.vmFunctionControls, 1), set(C64.eptpListAddress, 0x0030_9000))),
        orBits(C32.secondaryProcessorBasedControls, 0, clear: sec)),
    brk("EPTP list not aligned", .long, C64.eptpListAddress, 0x0030_9010, .eptpListAddressInvalid,
        prepare: both(orBits(C32.secondaryProcessorBasedControls, 1 << 13), set(C64.vmFunctionControls, 1))),
    brk("VMWRITE bitmap not aligned", .long, C64.vmwriteBitmapAddress, 0x0030_B004, .vmcsShadowingBitmapAddressInvalid,
        prepare: both(orBits(C32.secondaryProcessorBasedControls, 1 << 14),
                      both(set(C64.vmreadBitmapAddress, 0x0030_A000), set(C64.vmwriteBitmapAddress, 0x0030_B000)))),
    brk("VMREAD bitmap beyond MAXPHYADDR", .long, C64.vmreadBitmapAddress, 1 << 41, .vmcsShadowingBitmapAddressInvalid,
        prepare: both(orBits(C32.secondaryProcessorBasedControls, 1 << 14),
                      both(set(C64.vmreadBitmapAddress, 0x0030_A000), set(C64.vmwriteBitmapAddress, 0x0030_B000)))),
    brk("#VE information address not aligned", .long, C64.virtualizationExceptionInformationAddress, 0x0030_C100,
        .virtualizationExceptionAddressInvalid, prepare: orBits(C32.secondaryProcessorBasedControls, 1 << 18)),

    // 27.2.1.2 VM-exit controls.
    brk("exit control bit 23 not offered", .long, reported: C32.primaryExitControls, .exitControlsUnsupported,
        orBits(C32.primaryExitControls, 1 << 23)),
    brk("save preemption timer without the timer", .long, reported: C32.primaryExitControls,
        .savePreemptionTimerWithoutTimer, orBits(C32.primaryExitControls, 1 << 22)),
    brk("MSR-store area not 16-byte aligned", .long, C64.exitMSRStoreAddress, 0x0030_4008, .exitMSRStoreAddressInvalid),
    brk("MSR-load area ends beyond MAXPHYADDR", .long, C64.exitMSRLoadAddress, (1 << 40) - 0x30,
        .exitMSRLoadAddressInvalid),

    // 27.2.1.3 VM-entry controls and event injection.
    brk("entry control bit 16 not offered", .long, reported: C32.entryControls, .entryControlsUnsupported,
        orBits(C32.entryControls, 1 << 16)),
    brk("injection reserved bit 12", .long, C32.entryInterruptionInformation, 0x8000_1020, .injectionReservedBits,
        prepare: interruptsEnabled),
    brk("injection type 1", .long, C32.entryInterruptionInformation, 0x8000_0120, .injectionTypeInvalid),
    brk("injection other event without MTF", .long, C32.entryInterruptionInformation, 0x8000_0700, .injectionTypeInvalid),
    brk("NMI with vector 3", .long, C32.entryInterruptionInformation, 0x8000_0203, .injectionNMIVector),
    brk("hardware exception vector 32", .long, C32.entryInterruptionInformation, 0x8000_0320,
        .injectionHardwareExceptionVector),
    brk("other event with vector 5", .long, C32.entryInterruptionInformation, 0x8000_0705, .injectionOtherEventVector,
        prepare: allowPrimary(1 << 27)),
    brk("#GP without error code in protected mode", .long, C32.entryInterruptionInformation, 0x8000_030D,
        .injectionErrorCodeRequired),
    brk("#UD with error code", .long, C32.entryInterruptionInformation, 0x8000_0B06, .injectionErrorCodeNotAllowed),
    brk("#GP with error code in real mode", .real, C32.entryInterruptionInformation, 0x8000_0B0D,
        .injectionErrorCodeNotAllowed),
    brk("NMI with error code", .long, C32.entryInterruptionInformation, 0x8000_0A02, .injectionErrorCodeNotAllowed),
    brk("#PF error code above 16 bits", .long, C32.entryExceptionErrorCode, 0x1_0002, .injectionErrorCodeReservedBits,
        prepare: inject(0x8000_0B0E, errorCode: 2)),
    brk("INT 21h with instruction length 16", .real, C32.entryInstructionLength, 16, .injectionInstructionLength,
        prepare: inject(0x8000_0421, length: 2)),
    brk("INT3 with length 0 without IA32_VMX_MISC[30]", .long, C32.entryInstructionLength, 0,
        .injectionInstructionLength,
        prepare: both(inject(0x8000_0603, length: 1),
                      { _, env in env.capabilities.misc = VMXMisc(rawValue: env.capabilities.misc.rawValue & ~(1 << 30)) })),
    brk("entry MSR-load area not aligned", .long, C64.entryMSRLoadAddress, 0x0030_4004, .entryMSRLoadAddressInvalid),
    brk("entry to SMM", .long, reported: C32.entryControls, .smmControlsOutsideSMM, orBits(C32.entryControls, 1 << 10)),
]

@Suite struct VMEntryControlChecksTests {
    @Test func secondaryControlsAreIgnoredUnlessActivated() {
        // "Activate secondary controls" 0: the secondary field counts as 0,
        // whatever it holds (here an unsupported bit), and is not read.
        let vmcs = Fixture.vmcs(.longRestricted)
        let primary = vmcs.value(C32.primaryProcessorBasedControls) ?? 0
        vmcs.preset(C32.primaryProcessorBasedControls, UInt32(primary) & ~(1 << 31))
        vmcs.preset(C32.secondaryProcessorBasedControls, 1 << 15)
        vmcs.fail(C32.secondaryProcessorBasedControls, with: .vmFailValid(.unsupportedVMCSComponent))
        #expect(Fixture.environment(for: .longRestricted).check(vmcs) == nil)
    }

    @Test func secondaryControlsOnACPUWithoutThemAreRejected() {
        // A CPU without IA32_VMX_PROCBASED_CTLS2: the primary check already
        // refuses "activate secondary controls"; a nil capability refuses any value.
        var env = Fixture.environment(for: .long)
        env.capabilities.secondary = nil
        env.capabilities.primary = VMXControlCapability(msrValue: env.capabilities.primary.msrValue)
        let vmcs = Fixture.vmcs(.long)
        #expect(env.check(vmcs)?.ruleID == .secondaryControlsUnsupported)
    }

    @Test func validInjectionsPass() {
        let env = Fixture.environment(for: .long)
        let injections: [(UInt64, UInt64, UInt64, UInt64)] = [
            // info, error code, instruction length, RFLAGS
            (0x8000_0020, 0, 0, 0x202),        // external interrupt 20H, IF = 1
            (0x8000_0202, 0, 0, 0x2),          // NMI
            (0x8000_0B0E, 0x2, 0, 0x2),        // #PF with error code
            (0x8000_0B08, 0, 0, 0x2),          // #DF with error code 0
            (0x8000_0306, 0, 0, 0x2),          // #UD
            (0x8000_0480, 0, 2, 0x2),          // INT 80h, 2 bytes
            (0x8000_0603, 0, 1, 0x2),          // INT3
            (0x8000_0501, 0, 1, 0x2),          // INT1
            (0x8000_0603, 0, 0, 0x2),          // INT3 with length 0: IA32_VMX_MISC[30] is 1 here
            (0x0000_0B0D, 0, 0, 0x2),          // valid bit clear: nothing is checked
        ]
        for (info, code, length, rflags) in injections {
            let vmcs = Fixture.vmcs(.long)
            vmcs.preset(C32.entryInterruptionInformation, UInt32(info))
            vmcs.preset(C32.entryExceptionErrorCode, UInt32(code))
            vmcs.preset(C32.entryInstructionLength, UInt32(length))
            vmcs.preset(GN.rflags, rflags)
            let violation = env.check(vmcs)
            #expect(violation == nil, "info \(info): \(violation.map { "\($0.rule)" } ?? "")")
        }
        // Real mode: #GP without an error code is right.
        let real = Fixture.vmcs(.real)
        real.preset(C32.entryInterruptionInformation, 0x8000_030D)
        #expect(Fixture.environment(for: .real).check(real) == nil)
    }

    @Test func basicBit56LetsAnyHardwareExceptionChooseItsErrorCode() {
        var env = Fixture.environment(for: .long)
        env.capabilities.basic = VMXBasic(rawValue: env.capabilities.basic.rawValue | 1 << 56)
        for info: UInt32 in [0x8000_030D, 0x8000_0B06, 0x8000_0B15] {     // #GP without, #UD with, #CP with
            let vmcs = Fixture.vmcs(.long)
            vmcs.preset(C32.entryInterruptionInformation, info)
            #expect(env.check(vmcs) == nil)
        }
        // Still only hardware exceptions, and only with CR0.PE = 1.
        let nmi = Fixture.vmcs(.long)
        nmi.preset(C32.entryInterruptionInformation, 0x8000_0A02)
        #expect(env.check(nmi)?.ruleID == .injectionErrorCodeNotAllowed)
    }

    @Test func otherEventInjectionPassesWithMonitorTrapFlag() {
        var env = Fixture.environment(for: .long)
        env.capabilities.primary = VMXControlCapability(msrValue: env.capabilities.primary.msrValue | 1 << 59)
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(C32.entryInterruptionInformation, 0x8000_0700)
        #expect(env.check(vmcs) == nil)
        vmcs.preset(G32.activityState, 1)                    // pending MTF is allowed in HLT
        #expect(env.check(vmcs) == nil)
    }

    @Test func optionalControlsWithValidFieldsPass() {
        var env = Fixture.environment(for: .long)
        let vmcs = Fixture.vmcs(.long)
        // TPR shadow and APIC virtualization, posted interrupts, PML, VM functions,
        // VMCS shadowing (with a shadow VMCS link), #VE, save preemption timer.
        withPostedInterrupts(vmcs, &env)
        vmcs.preset(C32.secondaryProcessorBasedControls,
                    UInt32(vmcs.value(C32.secondaryProcessorBasedControls) ?? 0) | 1 << 8 | 1 << 13 | 1 << 14 | 1 << 17 | 1 << 18)
        vmcs.preset(C64.pmlAddress, 0x0030_8000)
        vmcs.preset(C64.vmFunctionControls, 1)
        vmcs.preset(C64.eptpListAddress, 0x0030_9000)
        vmcs.preset(C64.vmreadBitmapAddress, 0x0030_A000)
        vmcs.preset(C64.vmwriteBitmapAddress, 0x0030_B000)
        vmcs.preset(C64.virtualizationExceptionInformationAddress, 0x0030_C000)
        vmcs.preset(G64.vmcsLinkPointer, 0x0030_D000)
        vmcs.preset(C32.pinBasedControls, UInt32(vmcs.value(C32.pinBasedControls) ?? 0) | 1 << 6)
        vmcs.preset(C32.primaryExitControls, UInt32(vmcs.value(C32.primaryExitControls) ?? 0) | 1 << 22)
        vmcs.preset(C32.tprThreshold, 0x1F)      // ignored with virtual-interrupt delivery
        #expect(env.check(vmcs) == nil)
        // EPTP with A/D flags on a CPU that has them, UC paging structures.
        vmcs.preset(C64.eptPointer, 0x0030_3000 | 0 | 3 << 3 | 1 << 6)
        #expect(env.check(vmcs) == nil)
        // Empty MSR lists are not checked at all.
        vmcs.preset(C32.exitMSRStoreCount, 0)
        vmcs.preset(C64.exitMSRStoreAddress, 0x7)
        #expect(env.check(vmcs) == nil)
    }

    @Test func addressesAreLimitedTo32BitsWhenBasicBit48IsSet() {
        var env = Fixture.environment(for: .long)
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(C64.msrBitmaps, 0x1_0000_0000)
        #expect(env.check(vmcs) == nil)                                  // 40-bit MAXPHYADDR
        env.capabilities.basic = VMXBasic(rawValue: env.capabilities.basic.rawValue | 1 << 48)
        #expect(env.check(vmcs)?.ruleID == .msrBitmapAddressInvalid)
    }
}
