import Testing
import TestSupport
import X86Arch
import VMX

// Each case starts from a complete, valid VMCS (GuestStateFixtures.swift),
// breaks one thing, and expects exactly one named rule on one named field.
// Where a rule needs a precondition (an injected event, a HLT activity state,
// a capability the Bochs CPU lacks), `prepare` sets it first and the suite
// checks that the prepared state alone still passes, so the break is what
// the checker reports.

private typealias C16 = VMCSFields.Control16
private typealias C32 = VMCSFields.Control32
private typealias C64 = VMCSFields.Control64
private typealias H16 = VMCSFields.Host16
private typealias H64 = VMCSFields.Host64
private typealias HN = VMCSFields.HostNatural
private typealias G16 = VMCSFields.Guest16
private typealias G32 = VMCSFields.Guest32
private typealias G64 = VMCSFields.Guest64
private typealias GN = VMCSFields.GuestNatural

/// A change to the VMCS or to the environment.
typealias Mutation = @Sendable (FakeVMCS, inout CheckEnvironment) -> Void

/// One broken rule: the base state, an optional valid precondition, the break,
/// and the rule and field the checker must name.
struct Breakage: Sendable, CustomTestStringConvertible {
    let label: String
    let base: GuestStateFixture
    let prepare: Mutation?
    let breakIt: Mutation
    let rule: VMEntryRule
    let field: UInt32

    var testDescription: String { "\(label) [\(base)]" }
}

private func set<F: VMCSReadableField>(_ field: F, _ value: UInt64) -> Mutation {
    { v, _ in v.preset(field.encoding, value) }
}

private func orBits<F: VMCSReadableField>(_ field: F, _ bits: UInt64, clear: UInt64 = 0) -> Mutation {
    { v, _ in v.preset(field.encoding, ((v.value(field.encoding) ?? 0) | bits) & ~clear) }
}

private func both(_ a: @escaping Mutation, _ b: @escaping Mutation) -> Mutation {
    { v, env in a(v, &env); b(v, &env) }
}

/// Breaks `field` by setting it to `value`; the checker must name that field.
private func brk<F: VMCSReadableField>(_ label: String, _ base: GuestStateFixture, _ field: F, _ value: UInt64,
                                       _ rule: VMEntryRule, prepare: Mutation? = nil) -> Breakage {
    Breakage(label: label, base: base, prepare: prepare, breakIt: set(field, value), rule: rule, field: field.encoding)
}

/// Breaks with an arbitrary mutation; the checker must name `reported`.
private func brk<F: VMCSReadableField>(_ label: String, _ base: GuestStateFixture, reported: F, _ rule: VMEntryRule,
                                       prepare: Mutation? = nil, _ breakIt: @escaping Mutation) -> Breakage {
    Breakage(label: label, base: base, prepare: prepare, breakIt: breakIt, rule: rule, field: reported.encoding)
}

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
private let ug = UInt64(SecondaryProcessorBasedControls.unrestrictedGuest.rawValue)
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
private func inject(_ info: UInt64, errorCode: UInt64 = 0, length: UInt64 = 0) -> Mutation {
    both(set(C32.entryInterruptionInformation, info),
         both(set(C32.entryExceptionErrorCode, errorCode), set(C32.entryInstructionLength, length)))
}
private let hlt: Mutation = set(G32.activityState, 1)
private let interruptsEnabled: Mutation = set(GN.rflags, 0x202)

private let controlCases: [Breakage] = [
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

private let hostCases: [Breakage] = [
    // 27.2.2 host control registers and MSRs.
    brk("host CR0.NE clear", .long, HN.cr0, 0x8001_0013, .hostCR0FixedBits),
    brk("host CR4.VMXE clear", .long, HN.cr4, 0x0620, .hostCR4FixedBits),
    brk("host CR3 beyond MAXPHYADDR", .long, HN.cr3, 1 << 40 | 0x1000, .hostCR3Width),
    brk("host SYSENTER_ESP not canonical", .long, HN.ia32SysenterESP, 0x0000_8000_0000_0000, .hostSysenterNotCanonical),
    brk("host SYSENTER_EIP not canonical", .long, HN.ia32SysenterEIP, 0xFFFF_7FFF_FFFF_0000, .hostSysenterNotCanonical),
    brk("host PAT byte 2", .long, H64.ia32PAT, 0x0007_0406_0007_0402, .hostPATInvalid),
    brk("host EFER reserved bit 1", .long, H64.ia32EFER, 0xD02, .hostEFERReservedBits),
    brk("host EFER LME without LMA", .long, H64.ia32EFER, 0x900, .hostEFERModeMismatch),
    brk("32-bit host EFER.LMA", .host32, H64.ia32EFER, 0x500, .hostEFERModeMismatch),
    // 27.2.3 host segment and descriptor-table registers.
    brk("host DS RPL 3", .long, H16.dsSelector, 0x13, .hostSelectorRPLOrTI),
    brk("host TR TI set", .long, H16.trSelector, 0x1C, .hostSelectorRPLOrTI),
    brk("host CS 0", .long, H16.csSelector, 0, .hostCSNull),
    brk("host TR 0", .long, H16.trSelector, 0, .hostTRNull),
    brk("32-bit host SS 0", .host32, H16.ssSelector, 0, .hostSSNull),
    brk("host GS base not canonical", .long, HN.gsBase, 0x8000_0000_0000_0000, .hostBaseNotCanonical),
    brk("host IDTR base not canonical", .long, HN.idtrBase, 0x0001_0000_0000_0000, .hostBaseNotCanonical),
    // 27.2.4 address-space size.
    brk("64-bit processor, host address-space size 0", .real, reported: C32.primaryExitControls,
        .hostAddressSpaceSizeRequired, orBits(C32.primaryExitControls, 0, clear: 1 << 9 | 1 << 21)),
    brk("IA-32e mode guest from a 32-bit processor", .long, reported: C32.entryControls, .ia32eModeGuestOutsideIA32eMode,
        { _, env in env.processorInIA32eMode = false }),
    brk("host address-space size from a 32-bit processor", .real, reported: C32.primaryExitControls,
        .hostAddressSpaceSizeOutsideIA32eMode, { _, env in env.processorInIA32eMode = false }),
    brk("64-bit host without CR4.PAE", .long, HN.cr4, 0x2600, .hostCR4PAERequired),
    brk("64-bit host RIP not canonical", .long, HN.rip, 0x0000_8000_0000_1000, .hostRIPNotCanonical),
    brk("32-bit host with CR4.PCIDE", .host32, HN.cr4, 0x2_2610, .hostPCIDEWithoutHostAddressSpaceSize),
    brk("32-bit host RIP above 4 GiB", .host32, HN.rip, 0x1_0010_2000, .hostRIPUpperBits),
]

private let guestRegisterCases: [Breakage] = [
    // 27.3.1.1 control registers, debug registers and MSRs.
    brk("long-mode CR0.NE clear", .long, GN.cr0, 0x8001_0011, .guestCR0FixedBits),
    brk("real mode without unrestricted guest", .longRestricted, GN.cr0, 0x30, .guestCR0FixedBits),
    brk("CR0.PG without PE", .real, GN.cr0, 0x8000_0030, .guestCR0PagingWithoutProtection),
    brk("CR4.VMXE clear", .real, GN.cr4, 0, .guestCR4FixedBits),
    brk("CR4.CET without CR0.WP", .long, GN.cr0, 0x8000_0031, .guestCETWithoutWriteProtect,
        prepare: both({ _, env in
            env.capabilities.cr4Fixed = FixedBits(fixed0: env.capabilities.cr4Fixed.fixed0,
                                                  fixed1: env.capabilities.cr4Fixed.fixed1 | 1 << 23)
        }, set(GN.cr4, 0x80_2020))),
    brk("IA-32e mode guest with paging off", .long, GN.cr0, 0x31, .guestIA32eModeWithoutPaging),
    brk("IA-32e mode guest without PAE", .long, GN.cr4, 0x2000, .guestIA32eModeWithoutPAE),
    brk("CR4.PCIDE in real mode", .real, GN.cr4, 0x2_2000, .guestPCIDEOutsideIA32eMode),
    brk("CR3 beyond MAXPHYADDR", .long, GN.cr3, 1 << 40 | 0x1000, .guestCR3Width),
    brk("DR7 upper half", .long, GN.dr7, 1 << 32 | 0x400, .guestDR7UpperBits),
    brk("SYSENTER_ESP not canonical", .long, GN.ia32SysenterESP, 0x0080_0000_0000_0000, .guestSysenterNotCanonical),
    brk("SYSENTER_EIP not canonical", .real, GN.ia32SysenterEIP, 0x8000_0000_0000_0000, .guestSysenterNotCanonical),
    brk("PAT entry 3 (reserved type)", .long, G64.ia32PAT, 0x0007_0406_0307_0406, .guestPATInvalid),
    brk("EFER reserved bit 12", .long, G64.ia32EFER, 0x1500, .guestEFERReservedBits),
    brk("EFER.LMA in real mode", .real, G64.ia32EFER, 0x400, .guestEFERLMAMismatch),
    brk("EFER.LMA clear in IA-32e mode", .long, G64.ia32EFER, 0x100, .guestEFERLMAMismatch),
    brk("EFER.LME clear with paging", .long, G64.ia32EFER, 0x400, .guestEFERLMEMismatch),
    // 27.3.1.3 descriptor tables.
    brk("GDTR base not canonical", .long, GN.gdtrBase, 0x0000_8000_0000_0000, .guestDescriptorTableBaseNotCanonical),
    brk("IDTR base not canonical", .real, GN.idtrBase, 0x1_0000_0000_0000, .guestDescriptorTableBaseNotCanonical),
    brk("GDTR limit 10000H", .long, G32.gdtrLimit, 0x1_0000, .guestDescriptorTableLimit),
    brk("IDTR limit 10000H", .real, G32.idtrLimit, 0x1_0000, .guestDescriptorTableLimit),
    // 27.3.1.4 RIP and RFLAGS.
    brk("real-mode RIP above 4 GiB", .real, GN.rip, 0x1_0000_7C00, .guestRIPUpperBits),
    brk("64-bit RIP with bit 48 alone set", .long, GN.rip, 0x0001_0000_0000_0000, .guestRIPHighBitsNotIdentical),
    brk("64-bit RIP with bit 63 alone set", .long, GN.rip, 0x8000_0000_0000_0000, .guestRIPHighBitsNotIdentical),
    brk("compatibility-mode RIP above 4 GiB", .long, GN.rip, 0x1_0000_0000, .guestRIPUpperBits,
        prepare: set(G32.csAccessRights, 0xC09B)),
    brk("RFLAGS bit 1 clear", .long, GN.rflags, 0, .guestRFLAGSReservedBits),
    brk("RFLAGS bit 3 set", .real, GN.rflags, 0xA, .guestRFLAGSReservedBits),
    brk("RFLAGS bit 22 set", .long, GN.rflags, 0x40_0002, .guestRFLAGSReservedBits),
    brk("RFLAGS.VM with CR0.PE clear", .virtual8086, reported: GN.rflags, .guestRFLAGSVirtual8086, set(GN.cr0, 0x30)),
    brk("external interrupt with RFLAGS.IF clear", .long, GN.rflags, 0x2, .guestRFLAGSInterruptFlag,
        prepare: both(interruptsEnabled, inject(0x8000_0020))),
    // 27.3.1.6 PDPTEs.
    brk("PDPTE1 with reserved bit 1", .pae, G64.pdpte1, 0x5003, .guestPDPTEReservedBits),
    brk("PDPTE3 beyond MAXPHYADDR", .pae, G64.pdpte3, 1 << 40 | 0x7001, .guestPDPTEReservedBits),
]

private let guestSegmentCases: [Breakage] = [
    // Selectors.
    brk("TR TI set", .long, G16.trSelector, 0x1C, .guestTRTableIndicator),
    brk("usable LDTR TI set", .long, G16.ldtrSelector, 0x2C, .guestLDTRTableIndicator,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("SS RPL 3 with CS RPL 0", .longRestricted, G16.ssSelector, 0x13, .guestSSRPLNotCSRPL),
    // Bases.
    brk("virtual-8086 DS base not selector << 4", .virtual8086, GN.dsBase, 0x1_0010, .guestVirtual8086Base),
    brk("TR base not canonical", .long, GN.trBase, 0x0000_8000_0000_2000, .guestBaseNotCanonical),
    brk("FS base not canonical", .real, GN.fsBase, 0x8000_0000_0000_0000, .guestBaseNotCanonical),
    brk("usable LDTR base not canonical", .long, GN.ldtrBase, 0x0000_8000_0000_0000, .guestBaseNotCanonical,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("CS base above 4 GiB", .long, GN.csBase, 0x1_0000_0000, .guestBaseUpperBits),
    brk("usable ES base above 4 GiB", .real, GN.esBase, 0x1_0000_0000, .guestBaseUpperBits),
    // Virtual-8086 limits and access rights.
    brk("virtual-8086 SS limit FFFEH", .virtual8086, G32.ssLimit, 0xFFFE, .guestVirtual8086Limit),
    brk("virtual-8086 GS access rights F1H", .virtual8086, G32.gsAccessRights, 0xF1, .guestVirtual8086AccessRights),
    // CS.
    brk("CS type 3 without unrestricted guest", .longRestricted, G32.csAccessRights, 0xA093, .guestCSType),
    brk("CS type 1 without unrestricted guest", .longRestricted, G32.csAccessRights, 0xA091, .guestCSType),
    brk("CS type 1 with unrestricted guest", .real, G32.csAccessRights, 0x91, .guestCSTypeUnrestricted),
    brk("CS system descriptor", .long, G32.csAccessRights, 0xA08B, .guestSegmentNotCodeOrData),
    brk("CS type 3 with DPL 1", .real, G32.csAccessRights, 0xB3, .guestCSDPLForType3),
    brk("non-conforming CS DPL 1, SS DPL 0", .long, G32.csAccessRights, 0xA0BB, .guestCSDPLNonConforming),
    brk("conforming CS DPL 3, SS DPL 0", .long, G32.csAccessRights, 0xA0FF, .guestCSDPLConforming),
    brk("CS not present", .long, G32.csAccessRights, 0xA01B, .guestSegmentNotPresent),
    brk("CS reserved bit 8", .long, G32.csAccessRights, 0xA19B, .guestSegmentReservedBits),
    brk("CS L and D both set", .long, G32.csAccessRights, 0xE09B, .guestCSLongAndDefault),
    brk("CS byte-granular with limit above 1 MiB", .long, G32.csAccessRights, 0x209B, .guestSegmentGranularity),
    // SS.
    brk("SS code type", .long, G32.ssAccessRights, 0xC09B, .guestSSType),
    brk("SS system descriptor", .long, G32.ssAccessRights, 0xC083, .guestSegmentNotCodeOrData),
    brk("SS DPL 3 with RPL 0 (conforming CS)", .longRestricted, G32.ssAccessRights, 0xC0F3, .guestSSDPLNotRPL,
        prepare: set(G32.csAccessRights, 0xA09F)),
    brk("real-mode SS DPL 1", .real, G32.ssAccessRights, 0xB3, .guestSSDPLNotZero,
        prepare: set(G32.csAccessRights, 0x9F)),
    brk("SS not present", .real, G32.ssAccessRights, 0x13, .guestSegmentNotPresent),
    brk("SS byte-granular with a 4 GiB limit", .long, G32.ssAccessRights, 0x4093, .guestSegmentGranularity),
    // DS, ES, FS, GS.
    brk("DS not accessed", .long, G32.dsAccessRights, 0xC092, .guestDataSegmentNotAccessed),
    brk("ES execute-only code", .long, G32.esAccessRights, 0xC099, .guestCodeSegmentNotReadable),
    brk("FS system descriptor", .long, G32.fsAccessRights, 0xC083, .guestSegmentNotCodeOrData),
    brk("DS RPL 3 above DPL 0", .longRestricted, reported: G32.dsAccessRights, .guestDataSegmentDPLBelowRPL,
        set(G16.dsSelector, 0x13)),
    brk("FS not present", .long, G32.fsAccessRights, 0xC013, .guestSegmentNotPresent),
    brk("GS reserved bit 17", .long, G32.gsAccessRights, 0x2_C093, .guestSegmentReservedBits),
    brk("DS page-granular with limit FFFFF000H", .long, reported: G32.dsAccessRights, .guestSegmentGranularity,
        set(G32.dsLimit, 0xFFFF_F000)),
    // TR and LDTR.
    brk("TR 16-bit busy TSS in IA-32e mode", .long, G32.trAccessRights, 0x83, .guestTRType),
    brk("TR available TSS", .real, G32.trAccessRights, 0x89, .guestTRType),
    brk("TR code/data descriptor", .long, G32.trAccessRights, 0x9B, .guestSystemSegmentS),
    brk("TR not present", .long, G32.trAccessRights, 0x0B, .guestSegmentNotPresent),
    brk("TR reserved bit 9", .long, G32.trAccessRights, 0x28B, .guestSegmentReservedBits),
    brk("TR limit above 1 MiB, byte granular", .long, reported: G32.trAccessRights, .guestSegmentGranularity,
        set(G32.trLimit, 0x10_0000)),
    brk("TR unusable", .long, G32.trAccessRights, 0x1_008B, .guestTRUnusable),
    brk("usable LDTR of type 3", .long, G32.ldtrAccessRights, 0x83, .guestLDTRType,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("usable LDTR with S set", .long, G32.ldtrAccessRights, 0x92, .guestSystemSegmentS,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("usable LDTR not present", .long, G32.ldtrAccessRights, 0x02, .guestSegmentNotPresent,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
]

private let guestNonRegisterCases: [Breakage] = [
    // Activity state.
    brk("activity state 4", .long, G32.activityState, 4, .guestActivityStateInvalid),
    brk("HLT on a CPU without it", .long, G32.activityState, 1, .guestActivityStateInvalid,
        prepare: { _, env in env.capabilities.misc = VMXMisc(rawValue: env.capabilities.misc.rawValue & ~(1 << 6)) }),
    brk("HLT with SS DPL 3", .virtual8086, G32.activityState, 1, .guestActivityHLTWithSSDPL),
    brk("HLT with blocking by MOV SS", .long, reported: G32.activityState, .guestActivityHLTWithBlocking,
        prepare: hlt, set(G32.interruptibilityState, 2)),
    brk("shutdown state with #UD injected", .long, G32.activityState, 2, .guestActivityStateRejectsInjection,
        prepare: inject(0x8000_0306)),
    brk("wait-for-SIPI with NMI injected", .long, G32.activityState, 3, .guestActivityStateRejectsInjection,
        prepare: inject(0x8000_0202)),
    brk("HLT with #GP injected", .long, G32.activityState, 1, .guestActivityStateRejectsInjection,
        prepare: inject(0x8000_0B0D)),
    // Interruptibility state.
    brk("interruptibility bit 5", .long, G32.interruptibilityState, 0x20, .guestInterruptibilityReservedBits),
    brk("blocking by STI and MOV SS", .long, G32.interruptibilityState, 3, .guestInterruptibilitySTIAndMOVSS,
        prepare: interruptsEnabled),
    brk("blocking by STI with IF clear", .long, G32.interruptibilityState, 1, .guestInterruptibilitySTIWithoutIF),
    brk("external interrupt under blocking by STI", .long, G32.interruptibilityState, 1,
        .guestInterruptibilityExternalInterruptInjection, prepare: both(interruptsEnabled, inject(0x8000_0030))),
    brk("NMI under blocking by MOV SS", .long, G32.interruptibilityState, 2, .guestInterruptibilityNMIInjection,
        prepare: inject(0x8000_0202)),
    brk("blocking by SMI outside SMM", .long, G32.interruptibilityState, 4, .guestInterruptibilitySMIOutsideSMM),
    brk("virtual NMI injected under blocking by NMI", .long, G32.interruptibilityState, 8,
        .guestInterruptibilityVirtualNMIInjection, prepare: inject(0x8000_0202)),
    // Pending debug exceptions.
    brk("pending debug bit 4", .long, GN.pendingDebugExceptions, 0x10, .guestPendingDebugReservedBits),
    brk("pending debug bit 16 and up", .real, GN.pendingDebugExceptions, 0x2_0000, .guestPendingDebugReservedBits),
    brk("single-step under MOV SS without BS", .long, reported: GN.pendingDebugExceptions, .guestPendingDebugBSRequired,
        prepare: set(G32.interruptibilityState, 2), set(GN.rflags, 0x102)),
    brk("BS pending without single-step in HLT", .long, GN.pendingDebugExceptions, 0x4000,
        .guestPendingDebugBSNotAllowed, prepare: hlt),
    brk("BS with DEBUGCTL.BTF under MOV SS", .long, reported: GN.pendingDebugExceptions, .guestPendingDebugBSNotAllowed,
        prepare: both(set(G32.interruptibilityState, 2), both(set(GN.rflags, 0x102),
                                                              set(GN.pendingDebugExceptions, 0x4000))),
        set(G64.ia32DebugCtl, 2)),
    // VMCS link pointer.
    brk("link pointer not aligned", .long, G64.vmcsLinkPointer, 0x0030_D010, .guestVMCSLinkPointerAddress),
    brk("link pointer beyond MAXPHYADDR", .long, G64.vmcsLinkPointer, 1 << 45, .guestVMCSLinkPointerAddress),
    brk("link pointer set without VMCS shadowing", .real, G64.vmcsLinkPointer, 0x0030_D000,
        .guestVMCSLinkPointerNotInvalid),
]

private let allCases = controlCases + hostCases + guestRegisterCases + guestSegmentCases + guestNonRegisterCases

@Suite struct VMEntryChecksTests {
    // MARK: The valid states pass.

    @Test(arguments: [GuestStateFixture.real, .long, .longRestricted, .virtual8086, .pae, .host32])
    func validStatePasses(_ fixture: GuestStateFixture) {
        let vmcs = Fixture.vmcs(fixture)
        let violation = Fixture.environment(for: fixture).check(vmcs)
        #expect(violation == nil, "\(fixture): \(violation.map { "\($0.rule) on \($0.fieldName)" } ?? "")")
    }

    @Test func freeFunctionAgreesWithTheChecker() {
        let vmcs = Fixture.vmcs(.long)
        #expect(checkVMEntry(vmcs, capabilities: Fixture.skylake(), physicalAddressWidth: 40) == nil)
        vmcs.preset(GN.rip, 0x0001_0000_0000_0000)
        #expect(checkVMEntry(vmcs, capabilities: Fixture.skylake())?.ruleID == .guestRIPHighBitsNotIdentical)
    }

    // MARK: One broken rule at a time.

    @Test(arguments: allCases)
    func brokenRuleIsNamed(_ c: Breakage) {
        let vmcs = Fixture.vmcs(c.base)
        var env = Fixture.environment(for: c.base)
        if let prepare = c.prepare {
            prepare(vmcs, &env)
            let prepared = env.check(vmcs)
            #expect(prepared == nil, "precondition alone fails: \(prepared.map { "\($0.rule) on \($0.fieldName)" } ?? "")")
        }
        c.breakIt(vmcs, &env)
        let violation = env.check(vmcs)
        #expect(violation?.ruleID == c.rule, "got \(violation.map { "\($0.rule) on \($0.fieldName)" } ?? "no violation")")
        #expect(violation?.fieldEncoding == c.field)
        if let violation {
            // The report names the field by its SDM name and says the rule in words.
            var name: StaticString = "?"
            VMCSFields.forEach { if $0.encoding.rawValue == c.field { name = $0.name } }
            #expect(String(describing: violation.fieldName) == "\(name)")
            #expect(violation.readError == nil)
            #expect(violation.rule.utf8CodeUnitCount > 20)
            #expect(String(describing: violation.section).hasPrefix("27."))
        }
    }

    @Test func everyRuleIsExercised() {
        // The table names each rule at least once (except VMREAD failure, tested below).
        var seen: [String: Int] = [:]
        for c in allCases { seen["\(c.rule)", default: 0] += 1 }
        #expect(seen.count == 134)
    }

    // MARK: Details of individual rules.

    @Test func reportedValueIsTheFieldValue() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(G32.csAccessRights, 0xE09B)
        let violation = Fixture.environment(for: .long).check(vmcs)
        #expect(violation?.value == 0xE09B)
        #expect(String(describing: violation?.fieldName ?? "") == "Guest CS access rights")
        #expect(String(describing: violation?.rule ?? "") == "guest CS access rights: L and D/B must not both be 1 when IA-32e mode guest is 1")
        #expect(String(describing: violation?.section ?? "") == "27.3.1.2 \"Checks on Guest Segment Registers\"")
        #expect(violation?.area == .guestState)
    }

    @Test func areasMatchWhatTheCPUReports() {
        let env = Fixture.environment(for: .long)
        let controls = Fixture.vmcs(.long)
        controls.preset(C16.virtualProcessorID, 0)
        #expect(env.check(controls)?.area == .controls)
        let host = Fixture.vmcs(.long)
        host.preset(H16.csSelector, 0)
        #expect(env.check(host)?.area == .hostState)
        let size = Fixture.vmcs(.long)
        size.preset(HN.rip, 0x0000_8000_0000_0000)
        #expect(env.check(size)?.area == .hostState)
        let guest = Fixture.vmcs(.long)
        guest.preset(G32.activityState, 9)
        #expect(env.check(guest)?.area == .guestState)
        #expect(String(describing: VMEntryCheckArea.controls.outcome).hasPrefix("VMfailValid 7"))
        #expect(String(describing: VMEntryCheckArea.hostState.outcome).hasPrefix("VMfailValid 8"))
        #expect(String(describing: VMEntryCheckArea.guestState.outcome).hasPrefix("VM exit 33"))
    }

    @Test(arguments: [
        (C32.pinBasedControls.encoding, VMEntryCheckArea.controls),
        (HN.cr0.encoding, .hostState),
        (GN.rip.encoding, .guestState),
        (G32.csAccessRights.encoding, .guestState),
        (C64.eptPointer.encoding, .controls),
    ])
    func failedVMREADIsReportedAsTheViolation(_ encoding: UInt32, _ area: VMEntryCheckArea) {
        let vmcs = Fixture.vmcs(.long)
        vmcs.fail(encoding, with: .vmFailValid(.unsupportedVMCSComponent))
        let violation = Fixture.environment(for: .long).check(vmcs)
        #expect(violation?.ruleID == .vmreadFailed)
        #expect(violation?.fieldEncoding == encoding)
        #expect(violation?.readError == .vmFailValid(.unsupportedVMCSComponent))
        #expect(violation?.value == 0)
        #expect(violation?.area == area)
        let section = String(describing: violation?.section ?? "")
        #expect(section.hasPrefix("31.3"))
        #expect(String(describing: violation?.rule ?? "") == "VMREAD of a field the check needs failed")
    }

    @Test func noCurrentVMCSFailsOnTheFirstRead() {
        let vmcs = Fixture.vmcs(.real)
        vmcs.fail(C32.pinBasedControls, with: .vmFailInvalid)
        let violation = Fixture.environment(for: .real).check(vmcs)
        #expect(violation?.readError == .vmFailInvalid)
        #expect(String(describing: violation?.fieldName ?? "") == "Pin-based VM-execution controls")
    }

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

    @Test func unrestrictedGuestExemptsPEAndPGButNotNE() {
        var env = Fixture.environment(for: .real)
        let vmcs = Fixture.vmcs(.real)
        #expect(env.check(vmcs) == nil)                         // PE = PG = 0 accepted
        vmcs.preset(GN.cr0, 0x10)
        #expect(env.check(vmcs)?.ruleID == .guestCR0FixedBits)  // NE still required
        // CD and NW are never checked, even where FIXED1 forbids them.
        vmcs.preset(GN.cr0, 0x6000_0030)
        env.capabilities.cr0Fixed = FixedBits(fixed0: 0x8000_0021, fixed1: 0x9FFF_FFFF)
        #expect(env.check(vmcs) == nil)
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

    @Test func validActivityAndInterruptibilityCombinationsPass() {
        let env = Fixture.environment(for: .long)
        let states: [(activity: UInt32, interruptibility: UInt32, rflags: UInt64, pending: UInt64, info: UInt32)] = [
            (1, 0, 0x2, 0, 0),                     // HLT
            (1, 0, 0x202, 0, 0x8000_0020),         // HLT, external interrupt injected
            (1, 0, 0x2, 0, 0x8000_0301),           // HLT, #DB injected
            (1, 0, 0x2, 0, 0x8000_0312),           // HLT, #MC injected
            (2, 0, 0x2, 0, 0x8000_0202),           // shutdown, NMI injected
            (2, 0, 0x2, 0, 0x8000_0312),           // shutdown, #MC injected
            (3, 0, 0x2, 0, 0),                     // wait-for-SIPI
            (0, 1, 0x202, 0, 0),                   // blocking by STI, IF = 1
            (0, 2, 0x102, 0x4000, 0),              // MOV SS blocking while single-stepping: BS set
            (0, 8, 0x2, 0, 0),                     // blocking by NMI, nothing injected
        ]
        for s in states {
            let vmcs = Fixture.vmcs(.long)
            vmcs.preset(G32.activityState, s.activity)
            vmcs.preset(G32.interruptibilityState, s.interruptibility)
            vmcs.preset(GN.rflags, s.rflags)
            vmcs.preset(GN.pendingDebugExceptions, s.pending)
            vmcs.preset(C32.entryInterruptionInformation, s.info)
            let violation = env.check(vmcs)
            #expect(violation == nil, "\(s): \(violation.map { "\($0.rule)" } ?? "")")
        }
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

    @Test func canonicalityFollowsTheLinearAddressWidth() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(GN.rip, 0x00FF_0000_0000_0000)
        let caps = Fixture.skylake()
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40)?.ruleID == .guestRIPHighBitsNotIdentical)
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40, linearAddressWidth: 57) == nil)
        vmcs.preset(GN.rip, 0xFFFF_FFFF_8000_0000)                       // a kernel address
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40) == nil)
        // VM entry checks RIP bits 63:N only: bit 47 alone wrong enters (and faults on the fetch).
        vmcs.preset(GN.rip, 0x0000_8000_0000_0000)
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40) == nil)
        // The host RIP must be truly canonical.
        vmcs.preset(GN.rip, 0x0010_0000)
        vmcs.preset(HN.rip, 0x0000_8000_0000_0000)
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40)?.ruleID == .hostRIPNotCanonical)
    }

    @Test func outOfRangeWidthsAreClampedNotTrapped() {
        let vmcs = Fixture.vmcs(.long)
        let caps = Fixture.skylake()
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 200, linearAddressWidth: -3) != nil)
        let wide = VMEntryChecker(vmcs: vmcs, capabilities: caps, physicalAddressWidth: 99, linearAddressWidth: 99)
        #expect(wide.physicalAddressWidth == 64 && wide.linearAddressWidth == 64)
        #expect(wide.check() == nil)
    }

    @Test func segmentVariantsThatPass() {
        let env = Fixture.environment(for: .long)
        let cases: [(GuestStateFixture, [(UInt32, UInt64)])] = [
            // Unusable data segments are not checked (a null DS/ES in 64-bit mode).
            (.long, [(G32.dsAccessRights.encoding, 0x1_0000), (GN.dsBase.encoding, 0x1_0000_0000),
                     (G16.dsSelector.encoding, 0)]),
            // A null SS in 64-bit mode (unusable), as after a SYSCALL-less ring transition.
            (.long, [(G32.ssAccessRights.encoding, 0x1_0000), (G16.ssSelector.encoding, 0)]),
            // CS type 3 (data) is allowed in real mode with unrestricted guest, DPL 0.
            (.real, [(G32.csAccessRights.encoding, 0x93)]),
            // A 16-bit busy TSS outside IA-32e mode.
            (.real, [(G32.trAccessRights.encoding, 0x83)]),
            // A usable LDT.
            (.long, [(G32.ldtrAccessRights.encoding, 0x82), (G16.ldtrSelector.encoding, 0x28),
                     (G32.ldtrLimit.encoding, 0xFFF)]),
            // A conforming CS with DPL 0 under SS DPL 0; a readable code segment in FS.
            (.long, [(G32.csAccessRights.encoding, 0xA09F), (G32.fsAccessRights.encoding, 0xC09B)]),
            // EFER.LME set while paging is off (between setting LME and CR0.PG).
            (.real, [(G64.ia32EFER.encoding, 0x100)]),
            // PDPTEs that are not present are not checked.
            (.pae, [(G64.pdpte2.encoding, 0xFFFF_FFFF_FFFF_FFFE)]),
        ]
        for (fixture, fields) in cases {
            let vmcs = Fixture.vmcs(fixture)
            for (encoding, value) in fields { vmcs.preset(encoding, value) }
            let violation = Fixture.environment(for: fixture).check(vmcs)
            #expect(violation == nil, "\(fixture) \(fields): \(violation.map { "\($0.rule)" } ?? "")")
        }
        _ = env
    }

    @Test func disabledLoadControlsSkipTheirFields() {
        // Without "load debug controls", "load IA32_PAT" and "load IA32_EFER"
        // (entry and exit), DR7, PAT and EFER fields are not checked.
        let vmcs = Fixture.vmcs(.long)
        let entry = UInt32(vmcs.value(C32.entryControls) ?? 0) & ~(1 << 2 | 1 << 14 | 1 << 15)
        vmcs.preset(C32.entryControls, entry)
        let exit = UInt32(vmcs.value(C32.primaryExitControls) ?? 0) & ~(1 << 19 | 1 << 21)
        vmcs.preset(C32.primaryExitControls, exit)
        vmcs.preset(GN.dr7, 1 << 40)
        vmcs.preset(G64.ia32PAT, 0x0202_0202_0202_0202)
        vmcs.preset(G64.ia32EFER, 0xFFFF)
        vmcs.preset(H64.ia32PAT, 0x0202_0202_0202_0202)
        vmcs.preset(H64.ia32EFER, 0xFFFF)
        #expect(Fixture.environment(for: .long).check(vmcs) == nil)
    }

    @Test func segmentAccessRightsDecodeTable25_2() {
        let code = SegmentAccessRights(rawValue: 0xA09B)
        #expect(code.type == 11 && code.isCodeOrData && code.dpl == 0 && code.isPresent)
        #expect(code.isLong && !code.isDefaultBig && code.isPageGranular && !code.isUnusable)
        #expect(code.reservedBits == 0)
        let odd = SegmentAccessRights(rawValue: 0x3_5F60)
        #expect(odd.type == 0 && !odd.isCodeOrData && odd.dpl == 3 && !odd.isPresent)
        #expect(odd.isDefaultBig && !odd.isPageGranular && odd.isUnusable && odd.reservedBits == 0x2_0F00)
    }
}
