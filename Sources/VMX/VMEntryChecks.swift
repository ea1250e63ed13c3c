// A software statement of the checks VMLAUNCH/VMRESUME perform before they
// enter the guest, run over the current VMCS through the accessor, so that a
// failed VM entry (VMfailValid 7 or 8, or exit reason 33) can be explained by
// name instead of by number. SDM 27.2 "Checks on VMX Controls and Host-State
// Area" and 27.3 "Checking and Loading Guest State".
//
// Not exhaustive. Left out: checks that need memory (the TPR threshold against
// the virtual-APIC page, the revision identifier at the VMCS link pointer, the
// PDPTEs in memory when EPT is off, the MSR-load lists' contents); model-specific
// reserved bits (IA32_DEBUGCTL, pending-debug RTM bit 16, enclave interruption);
// tertiary controls; SMM, CET, PKRS, PERF_GLOBAL_CTRL, FRED, LBR, UINV and
// Intel PT state; CR3 bits 62:61 (LAM), which this checker treats as reserved.
// Every check that is here states an SDM rule exactly, and they run in the
// SDM's order, so the first violation reported is the one to fix first.

import X86Arch

/// Which part of VM entry rejects a violation, and so what the CPU reports.
public enum VMEntryCheckArea: Sendable, Equatable {
    /// VMX controls: VMfailValid with VM-instruction error 7.
    case controls
    /// Host-state area: VMfailValid with VM-instruction error 8.
    case hostState
    /// Guest-state area: a VM exit with basic exit reason 33 and bit 31 set.
    case guestState

    /// How the CPU reports a violation of this area.
    public var outcome: StaticString {
        switch self {
        case .controls: return "VMfailValid 7 (VM entry with invalid control field(s))"
        case .hostState: return "VMfailValid 8 (VM entry with invalid host-state field(s))"
        case .guestState: return "VM exit 33 (VM-entry failure due to invalid guest state)"
        }
    }
}

/// One VM-entry check. `statement` says the rule; `section` names the SDM
/// section that states it.
public enum VMEntryRule: Sendable, Equatable {
    /// A VMREAD of a field the checker needs failed.
    case vmreadFailed

    // 27.2.1.1 Checks on VM-Execution Control Fields
    case pinBasedControlsUnsupported
    case primaryControlsUnsupported
    case secondaryControlsUnsupported
    case cr3TargetCountTooLarge
    case ioBitmapAddressInvalid
    case msrBitmapAddressInvalid
    case virtualAPICAddressInvalid
    case tprThresholdReservedBits
    case apicVirtualizationWithoutTPRShadow
    case virtualNMIsWithoutNMIExiting
    case nmiWindowExitingWithoutVirtualNMIs
    case apicAccessAddressInvalid
    case x2APICModeWithAPICAccesses
    case virtualInterruptDeliveryWithoutExternalInterruptExiting
    case postedInterruptsWithoutVirtualInterruptDelivery
    case postedInterruptsWithoutAcknowledgeOnExit
    case postedInterruptVectorReservedBits
    case postedInterruptDescriptorAddressInvalid
    case vpidZero
    case eptpMemoryTypeUnsupported
    case eptpWalkLengthUnsupported
    case eptpAccessedDirtyUnsupported
    case eptpShadowStackUnsupported
    case eptpReservedBits
    case pmlWithoutEPT
    case pmlAddressInvalid
    case unrestrictedGuestWithoutEPT
    case eptSubfeatureWithoutEPT
    case vmFunctionControlsUnsupported
    case eptpSwitchingWithoutEPT
    case eptpListAddressInvalid
    case vmcsShadowingBitmapAddressInvalid
    case virtualizationExceptionAddressInvalid

    // 27.2.1.2 Checks on VM-Exit Control Fields
    case exitControlsUnsupported
    case savePreemptionTimerWithoutTimer
    case exitMSRStoreAddressInvalid
    case exitMSRLoadAddressInvalid

    // 27.2.1.3 Checks on VM-Entry Control Fields
    case entryControlsUnsupported
    case injectionReservedBits
    case injectionTypeInvalid
    case injectionNMIVector
    case injectionHardwareExceptionVector
    case injectionOtherEventVector
    case injectionErrorCodeRequired
    case injectionErrorCodeNotAllowed
    case injectionErrorCodeReservedBits
    case injectionInstructionLength
    case entryMSRLoadAddressInvalid
    case smmControlsOutsideSMM

    // 27.2.2 Checks on Host Control Registers, MSRs, and SSP
    case hostCR0FixedBits
    case hostCR4FixedBits
    case hostCR3Width
    case hostSysenterNotCanonical
    case hostPATInvalid
    case hostEFERReservedBits
    case hostEFERModeMismatch

    // 27.2.3 Checks on Host Segment and Descriptor-Table Registers
    case hostSelectorRPLOrTI
    case hostCSNull
    case hostTRNull
    case hostSSNull
    case hostBaseNotCanonical

    // 27.2.4 Checks Related to Address-Space Size
    case ia32eModeGuestOutsideIA32eMode
    case hostAddressSpaceSizeOutsideIA32eMode
    case hostAddressSpaceSizeRequired
    case hostPCIDEWithoutHostAddressSpaceSize
    case hostRIPUpperBits
    case hostCR4PAERequired
    case hostRIPNotCanonical

    // 27.3.1.1 Checks on Guest Control Registers, Debug Registers, and MSRs
    case guestCR0FixedBits
    case guestCR0PagingWithoutProtection
    case guestCR4FixedBits
    case guestCETWithoutWriteProtect
    case guestIA32eModeWithoutPaging
    case guestIA32eModeWithoutPAE
    case guestPCIDEOutsideIA32eMode
    case guestCR3Width
    case guestDR7UpperBits
    case guestSysenterNotCanonical
    case guestPATInvalid
    case guestEFERReservedBits
    case guestEFERLMAMismatch
    case guestEFERLMEMismatch

    // 27.3.1.2 Checks on Guest Segment Registers
    case guestTRTableIndicator
    case guestLDTRTableIndicator
    case guestSSRPLNotCSRPL
    case guestVirtual8086Base
    case guestBaseNotCanonical
    case guestBaseUpperBits
    case guestVirtual8086Limit
    case guestVirtual8086AccessRights
    case guestCSType
    case guestCSTypeUnrestricted
    case guestSSType
    case guestDataSegmentNotAccessed
    case guestCodeSegmentNotReadable
    case guestSegmentNotCodeOrData
    case guestCSDPLForType3
    case guestCSDPLNonConforming
    case guestCSDPLConforming
    case guestSSDPLNotRPL
    case guestSSDPLNotZero
    case guestDataSegmentDPLBelowRPL
    case guestSegmentNotPresent
    case guestSegmentReservedBits
    case guestCSLongAndDefault
    case guestSegmentGranularity
    case guestTRUnusable
    case guestTRType
    case guestLDTRType
    case guestSystemSegmentS

    // 27.3.1.3 Checks on Guest Descriptor-Table Registers
    case guestDescriptorTableBaseNotCanonical
    case guestDescriptorTableLimit

    // 27.3.1.4 Checks on Guest RIP, RFLAGS, and SSP
    case guestRIPUpperBits
    case guestRIPHighBitsNotIdentical
    case guestRFLAGSReservedBits
    case guestRFLAGSVirtual8086
    case guestRFLAGSInterruptFlag

    // 27.3.1.5 Checks on Guest Non-Register State
    case guestActivityStateInvalid
    case guestActivityHLTWithSSDPL
    case guestActivityHLTWithBlocking
    case guestActivityStateRejectsInjection
    case guestInterruptibilityReservedBits
    case guestInterruptibilitySTIAndMOVSS
    case guestInterruptibilitySTIWithoutIF
    case guestInterruptibilityExternalInterruptInjection
    case guestInterruptibilityNMIInjection
    case guestInterruptibilitySMIOutsideSMM
    case guestInterruptibilityVirtualNMIInjection
    case guestPendingDebugReservedBits
    case guestPendingDebugBSRequired
    case guestPendingDebugBSNotAllowed
    case guestVMCSLinkPointerAddress
    case guestVMCSLinkPointerNotInvalid

    // 27.3.1.6 Checks on Guest Page-Directory-Pointer-Table Entries
    case guestPDPTEReservedBits

    /// The rule, as one readable statement.
    public var statement: StaticString {
        switch self {
        case .vmreadFailed: return "VMREAD of a field the check needs failed"
        case .pinBasedControlsUnsupported: return "pin-based VM-execution controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)PINBASED_CTLS"
        case .primaryControlsUnsupported: return "primary processor-based VM-execution controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)PROCBASED_CTLS"
        case .secondaryControlsUnsupported: return "secondary processor-based VM-execution controls: every bit must be an allowed 0-/1-setting of IA32_VMX_PROCBASED_CTLS2"
        case .cr3TargetCountTooLarge: return "CR3-target count must not be greater than 4"
        case .ioBitmapAddressInvalid: return "I/O bitmap A/B address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when use I/O bitmaps is 1"
        case .msrBitmapAddressInvalid: return "MSR-bitmap address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when use MSR bitmaps is 1"
        case .virtualAPICAddressInvalid: return "virtual-APIC address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when use TPR shadow is 1"
        case .tprThresholdReservedBits: return "TPR threshold: bits 31:4 must be 0 when use TPR shadow is 1 and virtual-interrupt delivery is 0"
        case .apicVirtualizationWithoutTPRShadow: return "virtualize x2APIC mode, APIC-register virtualization and virtual-interrupt delivery must be 0 when use TPR shadow is 0"
        case .virtualNMIsWithoutNMIExiting: return "virtual NMIs must be 0 when NMI exiting is 0"
        case .nmiWindowExitingWithoutVirtualNMIs: return "NMI-window exiting must be 0 when virtual NMIs is 0"
        case .apicAccessAddressInvalid: return "APIC-access address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when virtualize APIC accesses is 1"
        case .x2APICModeWithAPICAccesses: return "virtualize APIC accesses must be 0 when virtualize x2APIC mode is 1"
        case .virtualInterruptDeliveryWithoutExternalInterruptExiting: return "external-interrupt exiting must be 1 when virtual-interrupt delivery is 1"
        case .postedInterruptsWithoutVirtualInterruptDelivery: return "virtual-interrupt delivery must be 1 when process posted interrupts is 1"
        case .postedInterruptsWithoutAcknowledgeOnExit: return "acknowledge interrupt on exit must be 1 when process posted interrupts is 1"
        case .postedInterruptVectorReservedBits: return "posted-interrupt notification vector: bits 15:8 must be 0 when process posted interrupts is 1"
        case .postedInterruptDescriptorAddressInvalid: return "posted-interrupt descriptor address: bits 5:0 must be 0 and no bit beyond the physical-address width may be set"
        case .vpidZero: return "VPID must not be 0000H when enable VPID is 1"
        case .eptpMemoryTypeUnsupported: return "EPTP bits 2:0: the EPT paging-structure memory type must be UC (0) or WB (6) as IA32_VMX_EPT_VPID_CAP allows"
        case .eptpWalkLengthUnsupported: return "EPTP bits 5:3 must be 3 (4-level walk), or 4 when 5-level EPT is supported"
        case .eptpAccessedDirtyUnsupported: return "EPTP bit 6 (enable accessed/dirty flags) must be 0 when IA32_VMX_EPT_VPID_CAP[21] is 0"
        case .eptpShadowStackUnsupported: return "EPTP bit 7 (supervisor shadow-stack control) must be 0 when IA32_VMX_EPT_VPID_CAP[23] is 0"
        case .eptpReservedBits: return "EPTP bits 11:8 and bits beyond the physical-address width must be 0"
        case .pmlWithoutEPT: return "enable EPT must be 1 when enable PML is 1"
        case .pmlAddressInvalid: return "PML address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set"
        case .unrestrictedGuestWithoutEPT: return "enable EPT must be 1 when unrestricted guest is 1"
        case .eptSubfeatureWithoutEPT: return "enable EPT must be 1 when mode-based execute control or sub-page write permissions is 1"
        case .vmFunctionControlsUnsupported: return "VM-function controls: bits IA32_VMX_VMFUNC does not allow must be 0"
        case .eptpSwitchingWithoutEPT: return "enable EPT must be 1 when the EPTP-switching VM function is enabled"
        case .eptpListAddressInvalid: return "EPTP-list address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set"
        case .vmcsShadowingBitmapAddressInvalid: return "VMREAD-/VMWRITE-bitmap address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when VMCS shadowing is 1"
        case .virtualizationExceptionAddressInvalid: return "virtualization-exception information address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when EPT-violation #VE is 1"
        case .exitControlsUnsupported: return "primary VM-exit controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)EXIT_CTLS"
        case .savePreemptionTimerWithoutTimer: return "save VMX-preemption timer value must be 0 when activate VMX-preemption timer is 0"
        case .exitMSRStoreAddressInvalid: return "VM-exit MSR-store address: bits 3:0 must be 0 and the whole list within the physical-address width when the count is not 0"
        case .exitMSRLoadAddressInvalid: return "VM-exit MSR-load address: bits 3:0 must be 0 and the whole list within the physical-address width when the count is not 0"
        case .entryControlsUnsupported: return "VM-entry controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)ENTRY_CTLS"
        case .injectionReservedBits: return "VM-entry interruption information: reserved bits 30:12 must be 0"
        case .injectionTypeInvalid: return "VM-entry interruption information: type 1 is reserved, and type 7 (other event) needs monitor-trap-flag support"
        case .injectionNMIVector: return "VM-entry interruption information: an NMI must have vector 2"
        case .injectionHardwareExceptionVector: return "VM-entry interruption information: a hardware exception must have a vector of at most 31"
        case .injectionOtherEventVector: return "VM-entry interruption information: other event (pending MTF VM exit) must have vector 0"
        case .injectionErrorCodeRequired: return "VM-entry interruption information: deliver error code must be 1 for #DF, #TS, #NP, #SS, #GP, #PF, #AC injected with guest CR0.PE = 1"
        case .injectionErrorCodeNotAllowed: return "VM-entry interruption information: deliver error code must be 0 unless a hardware exception that has an error code is injected with guest CR0.PE = 1"
        case .injectionErrorCodeReservedBits: return "VM-entry exception error code: bits 31:16 must be 0 when deliver error code is 1"
        case .injectionInstructionLength: return "VM-entry instruction length must be 1 to 15 for software interrupts and exceptions (0 only with IA32_VMX_MISC[30])"
        case .entryMSRLoadAddressInvalid: return "VM-entry MSR-load address: bits 3:0 must be 0 and the whole list within the physical-address width when the count is not 0"
        case .smmControlsOutsideSMM: return "entry to SMM and deactivate dual-monitor treatment must be 0 outside SMM"
        case .hostCR0FixedBits: return "host CR0: every bit must be a value IA32_VMX_CR0_FIXED0/FIXED1 allow"
        case .hostCR4FixedBits: return "host CR4: every bit must be a value IA32_VMX_CR4_FIXED0/FIXED1 allow"
        case .hostCR3Width: return "host CR3: bits beyond the physical-address width must be 0"
        case .hostSysenterNotCanonical: return "host IA32_SYSENTER_ESP and IA32_SYSENTER_EIP must be canonical"
        case .hostPATInvalid: return "host IA32_PAT: every byte must be 0, 1, 4, 5, 6 or 7 when load IA32_PAT (exit) is 1"
        case .hostEFERReservedBits: return "host IA32_EFER: reserved bits must be 0 when load IA32_EFER (exit) is 1"
        case .hostEFERModeMismatch: return "host IA32_EFER: LMA and LME must each equal host address-space size when load IA32_EFER (exit) is 1"
        case .hostSelectorRPLOrTI: return "host ES, CS, SS, DS, FS, GS and TR selectors: RPL and TI (bits 2:0) must be 0"
        case .hostCSNull: return "host CS selector must not be 0000H"
        case .hostTRNull: return "host TR selector must not be 0000H"
        case .hostSSNull: return "host SS selector must not be 0000H when host address-space size is 0"
        case .hostBaseNotCanonical: return "host FS, GS, GDTR, IDTR and TR bases must be canonical"
        case .ia32eModeGuestOutsideIA32eMode: return "IA-32e mode guest must be 0 when VM entry runs outside IA-32e mode"
        case .hostAddressSpaceSizeOutsideIA32eMode: return "host address-space size must be 0 when VM entry runs outside IA-32e mode"
        case .hostAddressSpaceSizeRequired: return "host address-space size must be 1 when VM entry runs in IA-32e mode"
        case .hostPCIDEWithoutHostAddressSpaceSize: return "host CR4.PCIDE must be 0 when host address-space size is 0"
        case .hostRIPUpperBits: return "host RIP: bits 63:32 must be 0 when host address-space size is 0"
        case .hostCR4PAERequired: return "host CR4.PAE must be 1 when host address-space size is 1"
        case .hostRIPNotCanonical: return "host RIP must be canonical when host address-space size is 1"
        case .guestCR0FixedBits: return "guest CR0: every bit must be a value IA32_VMX_CR0_FIXED0/FIXED1 allow (PE and PG exempt with unrestricted guest, NW and CD never checked)"
        case .guestCR0PagingWithoutProtection: return "guest CR0: PG set requires PE set"
        case .guestCR4FixedBits: return "guest CR4: every bit must be a value IA32_VMX_CR4_FIXED0/FIXED1 allow"
        case .guestCETWithoutWriteProtect: return "guest CR4.CET set requires CR0.WP set"
        case .guestIA32eModeWithoutPaging: return "guest CR0.PG must be 1 when IA-32e mode guest is 1"
        case .guestIA32eModeWithoutPAE: return "guest CR4.PAE must be 1 when IA-32e mode guest is 1"
        case .guestPCIDEOutsideIA32eMode: return "guest CR4.PCIDE must be 0 when IA-32e mode guest is 0"
        case .guestCR3Width: return "guest CR3: bits beyond the physical-address width must be 0"
        case .guestDR7UpperBits: return "guest DR7: bits 63:32 must be 0 when load debug controls is 1"
        case .guestSysenterNotCanonical: return "guest IA32_SYSENTER_ESP and IA32_SYSENTER_EIP must be canonical"
        case .guestPATInvalid: return "guest IA32_PAT: every byte must be 0, 1, 4, 5, 6 or 7 when load IA32_PAT (entry) is 1"
        case .guestEFERReservedBits: return "guest IA32_EFER: reserved bits must be 0 when load IA32_EFER (entry) is 1"
        case .guestEFERLMAMismatch: return "guest IA32_EFER.LMA must equal IA-32e mode guest when load IA32_EFER (entry) is 1"
        case .guestEFERLMEMismatch: return "guest IA32_EFER.LME must equal LMA when guest CR0.PG is 1 and load IA32_EFER (entry) is 1"
        case .guestTRTableIndicator: return "guest TR selector: TI (bit 2) must be 0"
        case .guestLDTRTableIndicator: return "guest LDTR selector: TI (bit 2) must be 0 when LDTR is usable"
        case .guestSSRPLNotCSRPL: return "guest SS selector: RPL must equal CS RPL when neither virtual-8086 nor unrestricted guest"
        case .guestVirtual8086Base: return "guest segment base must be the selector shifted left 4 bits in virtual-8086 mode"
        case .guestBaseNotCanonical: return "guest TR, FS, GS and usable LDTR bases must be canonical"
        case .guestBaseUpperBits: return "guest CS base, and SS, DS, ES bases when usable: bits 63:32 must be 0"
        case .guestVirtual8086Limit: return "guest segment limit must be 0000FFFFH in virtual-8086 mode"
        case .guestVirtual8086AccessRights: return "guest segment access rights must be 000000F3H in virtual-8086 mode"
        case .guestCSType: return "guest CS access rights: type must be 9, 11, 13 or 15 when unrestricted guest is off"
        case .guestCSTypeUnrestricted: return "guest CS access rights: type must be 3, 9, 11, 13 or 15 with unrestricted guest"
        case .guestSSType: return "guest SS access rights: type must be 3 or 7 when SS is usable"
        case .guestDataSegmentNotAccessed: return "guest DS, ES, FS, GS access rights: type bit 0 (accessed) must be 1 when usable"
        case .guestCodeSegmentNotReadable: return "guest DS, ES, FS, GS access rights: a code type (bit 3) must be readable (bit 1) when usable"
        case .guestSegmentNotCodeOrData: return "guest CS, and SS, DS, ES, FS, GS when usable, access rights: S (bit 4) must be 1"
        case .guestCSDPLForType3: return "guest CS access rights: DPL must be 0 when the type is 3"
        case .guestCSDPLNonConforming: return "guest CS access rights: DPL must equal SS DPL when the type is 9 or 11 (non-conforming)"
        case .guestCSDPLConforming: return "guest CS access rights: DPL must not exceed SS DPL when the type is 13 or 15 (conforming)"
        case .guestSSDPLNotRPL: return "guest SS access rights: DPL must equal the selector RPL when unrestricted guest is off"
        case .guestSSDPLNotZero: return "guest SS access rights: DPL must be 0 when CS type is 3 or CR0.PE is 0"
        case .guestDataSegmentDPLBelowRPL: return "guest DS, ES, FS, GS access rights: DPL must not be less than RPL for a usable data or non-conforming code segment when unrestricted guest is off"
        case .guestSegmentNotPresent: return "guest segment access rights: P (bit 7) must be 1 for CS, TR and every usable segment"
        case .guestSegmentReservedBits: return "guest segment access rights: reserved bits 11:8 and 31:17 must be 0 for CS, TR and every usable segment"
        case .guestCSLongAndDefault: return "guest CS access rights: L and D/B must not both be 1 when IA-32e mode guest is 1"
        case .guestSegmentGranularity: return "guest segment access rights: G must be 0 if any limit bit 11:0 is 0, and 1 if any limit bit 31:20 is 1"
        case .guestTRUnusable: return "guest TR access rights: the unusable bit (16) must be 0"
        case .guestTRType: return "guest TR access rights: type must be 11 (busy 32/64-bit TSS), or 3 (busy 16-bit TSS) when IA-32e mode guest is 0"
        case .guestLDTRType: return "guest LDTR access rights: type must be 2 (LDT) when LDTR is usable"
        case .guestSystemSegmentS: return "guest TR, and LDTR when usable, access rights: S (bit 4) must be 0"
        case .guestDescriptorTableBaseNotCanonical: return "guest GDTR and IDTR bases must be canonical"
        case .guestDescriptorTableLimit: return "guest GDTR and IDTR limits: bits 31:16 must be 0"
        case .guestRIPUpperBits: return "guest RIP: bits 63:32 must be 0 when IA-32e mode guest is 0 or CS.L is 0"
        case .guestRIPHighBitsNotIdentical: return "guest RIP: bits 63:N (N = linear-address width) must be identical when IA-32e mode guest is 1 and CS.L is 1"
        case .guestRFLAGSReservedBits: return "guest RFLAGS: bits 63:22, 15, 5 and 3 must be 0 and bit 1 must be 1"
        case .guestRFLAGSVirtual8086: return "guest RFLAGS.VM must be 0 when IA-32e mode guest is 1 or CR0.PE is 0"
        case .guestRFLAGSInterruptFlag: return "guest RFLAGS.IF must be 1 when an external interrupt is injected"
        case .guestActivityStateInvalid: return "guest activity state must be 0 (active), or 1 (HLT), 2 (shutdown), 3 (wait-for-SIPI) as IA32_VMX_MISC supports"
        case .guestActivityHLTWithSSDPL: return "guest activity state: HLT requires SS DPL 0"
        case .guestActivityHLTWithBlocking: return "guest activity state must not be HLT with blocking by STI or by MOV SS"
        case .guestActivityStateRejectsInjection: return "guest activity state must allow the injected event (HLT: external interrupt, NMI, #DB, #MC, MTF; shutdown: NMI, #MC; wait-for-SIPI: none)"
        case .guestInterruptibilityReservedBits: return "guest interruptibility state: reserved bits 31:5 must be 0"
        case .guestInterruptibilitySTIAndMOVSS: return "guest interruptibility state: blocking by STI and by MOV SS must not both be 1"
        case .guestInterruptibilitySTIWithoutIF: return "guest interruptibility state: blocking by STI must be 0 when RFLAGS.IF is 0"
        case .guestInterruptibilityExternalInterruptInjection: return "guest interruptibility state: blocking by STI and by MOV SS must be 0 when an external interrupt is injected"
        case .guestInterruptibilityNMIInjection: return "guest interruptibility state: blocking by MOV SS must be 0 when an NMI is injected"
        case .guestInterruptibilitySMIOutsideSMM: return "guest interruptibility state: blocking by SMI must be 0 outside SMM"
        case .guestInterruptibilityVirtualNMIInjection: return "guest interruptibility state: blocking by NMI must be 0 when an NMI is injected with virtual NMIs"
        case .guestPendingDebugReservedBits: return "guest pending debug exceptions: bits 63:17, 15, 13 and 11:4 must be 0"
        case .guestPendingDebugBSRequired: return "guest pending debug exceptions: BS must be 1 with RFLAGS.TF 1 and DEBUGCTL.BTF 0 when blocked by STI/MOV SS or in HLT"
        case .guestPendingDebugBSNotAllowed: return "guest pending debug exceptions: BS must be 0 with RFLAGS.TF 0 or DEBUGCTL.BTF 1 when blocked by STI/MOV SS or in HLT"
        case .guestVMCSLinkPointerAddress: return "VMCS link pointer other than FFFFFFFF_FFFFFFFFH: bits 11:0 must be 0 and no bit beyond the physical-address width may be set"
        case .guestVMCSLinkPointerNotInvalid: return "VMCS link pointer must be FFFFFFFF_FFFFFFFFH when VMCS shadowing is 0 (VM entry would check a VMCS revision identifier there)"
        case .guestPDPTEReservedBits: return "guest PDPTEs (PAE paging with EPT): a present entry must have bits 2:1, 8:5 and bits beyond the physical-address width 0"
        }
    }

    /// The SDM section title that states the rule.
    public var section: StaticString { sectionKind.title }

    /// The area whose failure the CPU reports for this rule; nil for
    /// `.vmreadFailed`, which depends on the field.
    public var area: VMEntryCheckArea? { sectionKind.area }

    var sectionKind: VMEntryCheckSection {
        switch self {
        case .vmreadFailed:
            return .vmread
        case .pinBasedControlsUnsupported, .primaryControlsUnsupported, .secondaryControlsUnsupported,
             .cr3TargetCountTooLarge, .ioBitmapAddressInvalid, .msrBitmapAddressInvalid,
             .virtualAPICAddressInvalid, .tprThresholdReservedBits, .apicVirtualizationWithoutTPRShadow,
             .virtualNMIsWithoutNMIExiting, .nmiWindowExitingWithoutVirtualNMIs, .apicAccessAddressInvalid,
             .x2APICModeWithAPICAccesses, .virtualInterruptDeliveryWithoutExternalInterruptExiting,
             .postedInterruptsWithoutVirtualInterruptDelivery, .postedInterruptsWithoutAcknowledgeOnExit,
             .postedInterruptVectorReservedBits, .postedInterruptDescriptorAddressInvalid, .vpidZero,
             .eptpMemoryTypeUnsupported, .eptpWalkLengthUnsupported, .eptpAccessedDirtyUnsupported,
             .eptpShadowStackUnsupported, .eptpReservedBits, .pmlWithoutEPT, .pmlAddressInvalid,
             .unrestrictedGuestWithoutEPT, .eptSubfeatureWithoutEPT, .vmFunctionControlsUnsupported,
             .eptpSwitchingWithoutEPT, .eptpListAddressInvalid, .vmcsShadowingBitmapAddressInvalid,
             .virtualizationExceptionAddressInvalid:
            return .executionControls
        case .exitControlsUnsupported, .savePreemptionTimerWithoutTimer, .exitMSRStoreAddressInvalid,
             .exitMSRLoadAddressInvalid:
            return .exitControls
        case .entryControlsUnsupported, .injectionReservedBits, .injectionTypeInvalid, .injectionNMIVector,
             .injectionHardwareExceptionVector, .injectionOtherEventVector, .injectionErrorCodeRequired,
             .injectionErrorCodeNotAllowed, .injectionErrorCodeReservedBits, .injectionInstructionLength,
             .entryMSRLoadAddressInvalid, .smmControlsOutsideSMM:
            return .entryControls
        case .hostCR0FixedBits, .hostCR4FixedBits, .hostCR3Width, .hostSysenterNotCanonical,
             .hostPATInvalid, .hostEFERReservedBits, .hostEFERModeMismatch:
            return .hostControlRegistersAndMSRs
        case .hostSelectorRPLOrTI, .hostCSNull, .hostTRNull, .hostSSNull, .hostBaseNotCanonical:
            return .hostSegments
        case .ia32eModeGuestOutsideIA32eMode, .hostAddressSpaceSizeOutsideIA32eMode,
             .hostAddressSpaceSizeRequired, .hostPCIDEWithoutHostAddressSpaceSize, .hostRIPUpperBits,
             .hostCR4PAERequired, .hostRIPNotCanonical:
            return .addressSpaceSize
        case .guestCR0FixedBits, .guestCR0PagingWithoutProtection, .guestCR4FixedBits,
             .guestCETWithoutWriteProtect, .guestIA32eModeWithoutPaging, .guestIA32eModeWithoutPAE,
             .guestPCIDEOutsideIA32eMode, .guestCR3Width, .guestDR7UpperBits, .guestSysenterNotCanonical,
             .guestPATInvalid, .guestEFERReservedBits, .guestEFERLMAMismatch, .guestEFERLMEMismatch:
            return .guestControlRegistersAndMSRs
        case .guestTRTableIndicator, .guestLDTRTableIndicator, .guestSSRPLNotCSRPL, .guestVirtual8086Base,
             .guestBaseNotCanonical, .guestBaseUpperBits, .guestVirtual8086Limit,
             .guestVirtual8086AccessRights, .guestCSType, .guestCSTypeUnrestricted, .guestSSType,
             .guestDataSegmentNotAccessed, .guestCodeSegmentNotReadable, .guestSegmentNotCodeOrData,
             .guestCSDPLForType3, .guestCSDPLNonConforming, .guestCSDPLConforming, .guestSSDPLNotRPL,
             .guestSSDPLNotZero, .guestDataSegmentDPLBelowRPL, .guestSegmentNotPresent,
             .guestSegmentReservedBits, .guestCSLongAndDefault, .guestSegmentGranularity, .guestTRUnusable,
             .guestTRType, .guestLDTRType, .guestSystemSegmentS:
            return .guestSegments
        case .guestDescriptorTableBaseNotCanonical, .guestDescriptorTableLimit:
            return .guestDescriptorTables
        case .guestRIPUpperBits, .guestRIPHighBitsNotIdentical, .guestRFLAGSReservedBits, .guestRFLAGSVirtual8086,
             .guestRFLAGSInterruptFlag:
            return .guestRIPAndRFLAGS
        case .guestActivityStateInvalid, .guestActivityHLTWithSSDPL, .guestActivityHLTWithBlocking,
             .guestActivityStateRejectsInjection, .guestInterruptibilityReservedBits,
             .guestInterruptibilitySTIAndMOVSS, .guestInterruptibilitySTIWithoutIF,
             .guestInterruptibilityExternalInterruptInjection, .guestInterruptibilityNMIInjection,
             .guestInterruptibilitySMIOutsideSMM, .guestInterruptibilityVirtualNMIInjection,
             .guestPendingDebugReservedBits, .guestPendingDebugBSRequired, .guestPendingDebugBSNotAllowed,
             .guestVMCSLinkPointerAddress, .guestVMCSLinkPointerNotInvalid:
            return .guestNonRegisterState
        case .guestPDPTEReservedBits:
            return .guestPDPTEs
        }
    }
}

/// The SDM sections the checks come from, in the order VM entry applies them.
enum VMEntryCheckSection {
    case vmread
    case executionControls, exitControls, entryControls
    case hostControlRegistersAndMSRs, hostSegments, addressSpaceSize
    case guestControlRegistersAndMSRs, guestSegments, guestDescriptorTables, guestRIPAndRFLAGS
    case guestNonRegisterState, guestPDPTEs

    var title: StaticString {
        switch self {
        case .vmread: return "31.3 \"VMX Instructions\" (VMREAD)"
        case .executionControls: return "27.2.1.1 \"VM-Execution Control Fields\""
        case .exitControls: return "27.2.1.2 \"VM-Exit Control Fields\""
        case .entryControls: return "27.2.1.3 \"VM-Entry Control Fields\""
        case .hostControlRegistersAndMSRs: return "27.2.2 \"Checks on Host Control Registers, MSRs, and SSP\""
        case .hostSegments: return "27.2.3 \"Checks on Host Segment and Descriptor-Table Registers\""
        case .addressSpaceSize: return "27.2.4 \"Checks Related to Address-Space Size\""
        case .guestControlRegistersAndMSRs: return "27.3.1.1 \"Checks on Guest Control Registers, Debug Registers, and MSRs\""
        case .guestSegments: return "27.3.1.2 \"Checks on Guest Segment Registers\""
        case .guestDescriptorTables: return "27.3.1.3 \"Checks on Guest Descriptor-Table Registers\""
        case .guestRIPAndRFLAGS: return "27.3.1.4 \"Checks on Guest RIP, RFLAGS, and SSP\""
        case .guestNonRegisterState: return "27.3.1.5 \"Checks on Guest Non-Register State\""
        case .guestPDPTEs: return "27.3.1.6 \"Checks on Guest Page-Directory-Pointer-Table Entries\""
        }
    }

    var area: VMEntryCheckArea? {
        switch self {
        case .vmread: return nil
        case .executionControls, .exitControls, .entryControls: return .controls
        case .hostControlRegistersAndMSRs, .hostSegments, .addressSpaceSize: return .hostState
        case .guestControlRegistersAndMSRs, .guestSegments, .guestDescriptorTables, .guestRIPAndRFLAGS,
             .guestNonRegisterState, .guestPDPTEs: return .guestState
        }
    }
}

/// The first VM-entry rule the current VMCS breaks: which rule, and the field
/// and value that break it.
public struct VMEntryViolation: Error, Sendable {
    /// Which check failed.
    public let ruleID: VMEntryRule
    /// The SDM name of the offending field.
    public let fieldName: StaticString
    /// Its VMCS encoding.
    public let fieldEncoding: UInt32
    /// Its value (0 when the VMREAD failed).
    public let value: UInt64
    /// Why the VMREAD failed, for `.vmreadFailed`; nil otherwise.
    public let readError: VMXError?

    public init(ruleID: VMEntryRule, fieldName: StaticString, fieldEncoding: UInt32, value: UInt64,
                readError: VMXError? = nil) {
        self.ruleID = ruleID; self.fieldName = fieldName; self.fieldEncoding = fieldEncoding
        self.value = value; self.readError = readError
    }

    /// The rule, as one readable statement.
    public var rule: StaticString { ruleID.statement }
    /// The SDM section title that states the rule.
    public var section: StaticString { ruleID.section }

    /// What the CPU would report. A failed VMREAD is attributed to the area
    /// of the field it tried to read.
    public var area: VMEntryCheckArea {
        if let area = ruleID.area { return area }
        switch VMCSFieldEncoding(rawValue: fieldEncoding).type {
        case .hostState: return .hostState
        case .guestState: return .guestState
        case .control, .readOnlyData: return .controls
        }
    }
}

/// Checks the current VMCS as VMLAUNCH/VMRESUME would, in the SDM's order,
/// and reports the first rule it breaks.
public struct VMEntryChecker<V: VMCSAccess> {
    public let vmcs: V
    public let capabilities: VMXCapabilities
    /// CPUID.80000008H:EAX[7:0] (MAXPHYADDR).
    public let physicalAddressWidth: Int
    /// CPUID.80000008H:EAX[15:8]: 48, or 57 with 5-level paging; defines canonical.
    public let linearAddressWidth: Int
    /// Whether the processor runs VMLAUNCH in IA-32e mode (always, for this 64-bit kernel).
    public let processorInIA32eMode: Bool

    public init(vmcs: V, capabilities: VMXCapabilities, physicalAddressWidth: Int = 52,
                linearAddressWidth: Int = 48, processorInIA32eMode: Bool = true) {
        self.vmcs = vmcs; self.capabilities = capabilities
        // Kept within 1...64 so that no shift or conversion below can trap.
        self.physicalAddressWidth = max(1, min(64, physicalAddressWidth))
        self.linearAddressWidth = max(1, min(64, linearAddressWidth))
        self.processorInIA32eMode = processorInIA32eMode
    }

    /// The first violated rule, or nil when every check here passes.
    public func check() -> VMEntryViolation? {
        do {
            let controls = try checkControls()
            try checkHostState(controls)
            try checkGuestState(controls)
            return nil
        } catch {
            return error
        }
    }

    // MARK: Helpers

    /// The five control fields and what the later checks need from them.
    struct Controls {
        var pin: PinBasedControls
        var primary: PrimaryProcessorBasedControls
        var secondary: SecondaryProcessorBasedControls
        var exit: VMExitControls
        var entry: VMEntryControls
        var injection: UInt32
        var unrestrictedGuest: Bool { secondary.contains(.unrestrictedGuest) }
        var ia32eModeGuest: Bool { entry.contains(.ia32eModeGuest) }
        var hostAddressSpaceSize: Bool { exit.contains(.hostAddressSpaceSize) }
        var injecting: Bool { injection >> 31 != 0 }
        var injectionType: InterruptionType { InterruptionType(field: injection) }
        var injectionVector: UInt32 { injection & 0xFF }
    }

    func read<F: VMCSReadableField>(_ field: F) throws(VMEntryViolation) -> F.Value {
        do {
            return try vmcs.read(field)
        } catch {
            throw VMEntryViolation(ruleID: .vmreadFailed, fieldName: field.name, fieldEncoding: field.encoding,
                                   value: 0, readError: error)
        }
    }

    func require<F: VMCSReadableField>(_ condition: Bool, _ rule: VMEntryRule, _ field: F, _ value: F.Value)
        throws(VMEntryViolation)
    {
        if !condition {
            throw VMEntryViolation(ruleID: rule, fieldName: field.name, fieldEncoding: field.encoding,
                                   value: UInt64(value))
        }
    }

    /// Bits at or above `width` are clear.
    func fits(_ value: UInt64, width: Int) -> Bool { width >= 64 || value >> UInt64(width) == 0 }

    /// Addresses of structures a VMCS points to are limited to 32 bits when
    /// IA32_VMX_BASIC[48] is 1. SDM A.1 "Basic VMX Information".
    var structureAddressWidth: Int {
        capabilities.basic.addressesLimitedTo32Bits ? min(32, physicalAddressWidth) : physicalAddressWidth
    }

    /// 4 KiB aligned and within the physical-address width.
    func isPageAddress(_ address: UInt64) -> Bool {
        address & 0xFFF == 0 && fits(address, width: structureAddressWidth)
    }

    /// Bits 63:N-1 all equal, N the linear-address width.
    func isCanonical(_ address: UInt64) -> Bool {
        let shift = UInt64(64 - linearAddressWidth)
        return UInt64(bitPattern: Int64(bitPattern: address << shift) >> shift) == address
    }

    /// Each byte a memory type WRMSR accepts in IA32_PAT: UC, WC, WT, WP, WB, UC-.
    func isValidPAT(_ value: UInt64) -> Bool {
        var bytes = value
        for _ in 0..<8 {
            switch bytes & 0xFF {
            case 0, 1, 4, 5, 6, 7: break
            default: return false
            }
            bytes >>= 8
        }
        return true
    }

    /// IA32_EFER bits other than SCE, LME, LMA and NXE, reserved on Intel 64.
    static var eferReservedBits: UInt64 {
        ~(EFER.sce.rawValue | EFER.lme.rawValue | EFER.lma.rawValue | EFER.nxe.rawValue)
    }

    /// An MSR-load/store area: 16-byte aligned, and its last byte within the width.
    func isMSRArea(_ address: UInt64, count: UInt32) -> Bool {
        address & 0xF == 0 && fits(address, width: structureAddressWidth)
            && fits(address + UInt64(count) * 16 - 1, width: structureAddressWidth)
    }

    // MARK: 27.2.1 Checks on VMX Controls

    func checkControls() throws(VMEntryViolation) -> Controls {
        let pinField = VMCSFields.Control32.pinBasedControls
        let primaryField = VMCSFields.Control32.primaryProcessorBasedControls
        let secondaryField = VMCSFields.Control32.secondaryProcessorBasedControls
        let exitField = VMCSFields.Control32.primaryExitControls
        let entryField = VMCSFields.Control32.entryControls

        // SDM 27.2.1.1 "VM-Execution Control Fields": reserved bits per the capability MSRs.
        let pin = PinBasedControls(rawValue: try read(pinField))
        try require(capabilities.pinBased.isValid(pin), .pinBasedControlsUnsupported, pinField, pin.rawValue)
        let primary = PrimaryProcessorBasedControls(rawValue: try read(primaryField))
        try require(capabilities.primary.isValid(primary), .primaryControlsUnsupported, primaryField, primary.rawValue)
        // SDM 27.2.1.1: secondary controls count as 0 unless "activate secondary controls" is 1.
        var secondary = SecondaryProcessorBasedControls.empty
        if primary.contains(.activateSecondaryControls) {
            secondary = SecondaryProcessorBasedControls(rawValue: try read(secondaryField))
            let valid = capabilities.secondary?.isValid(secondary) ?? false
            try require(valid, .secondaryControlsUnsupported, secondaryField, secondary.rawValue)
        }

        // SDM 27.2.1.1: CR3-target count.
        let cr3Targets = try read(VMCSFields.Control32.cr3TargetCount)
        try require(cr3Targets <= 4, .cr3TargetCountTooLarge, VMCSFields.Control32.cr3TargetCount, cr3Targets)

        // SDM 27.2.1.1: I/O-bitmap addresses.
        if primary.contains(.useIOBitmaps) {
            let a = try read(VMCSFields.Control64.ioBitmapA)
            try require(isPageAddress(a), .ioBitmapAddressInvalid, VMCSFields.Control64.ioBitmapA, a)
            let b = try read(VMCSFields.Control64.ioBitmapB)
            try require(isPageAddress(b), .ioBitmapAddressInvalid, VMCSFields.Control64.ioBitmapB, b)
        }
        // SDM 27.2.1.1: MSR-bitmap address.
        if primary.contains(.useMSRBitmaps) {
            let address = try read(VMCSFields.Control64.msrBitmaps)
            try require(isPageAddress(address), .msrBitmapAddressInvalid, VMCSFields.Control64.msrBitmaps, address)
        }
        // SDM 27.2.1.1: TPR shadow, virtual-APIC address and TPR threshold.
        let apicVirtualization: SecondaryProcessorBasedControls =
            .virtualizeX2APICMode | .apicRegisterVirtualization | .virtualInterruptDelivery
        if primary.contains(.useTPRShadow) {
            let address = try read(VMCSFields.Control64.virtualAPICAddress)
            try require(isPageAddress(address), .virtualAPICAddressInvalid, VMCSFields.Control64.virtualAPICAddress, address)
            if !secondary.contains(.virtualInterruptDelivery) {
                let threshold = try read(VMCSFields.Control32.tprThreshold)
                try require(threshold & ~0xF == 0, .tprThresholdReservedBits, VMCSFields.Control32.tprThreshold, threshold)
            }
        } else {
            try require(!secondary.intersects(apicVirtualization), .apicVirtualizationWithoutTPRShadow,
                        secondaryField, secondary.rawValue)
        }
        // SDM 27.2.1.1: NMI exiting, virtual NMIs and NMI-window exiting.
        try require(pin.contains(.nmiExiting) || !pin.contains(.virtualNMIs), .virtualNMIsWithoutNMIExiting,
                    pinField, pin.rawValue)
        try require(pin.contains(.virtualNMIs) || !primary.contains(.nmiWindowExiting),
                    .nmiWindowExitingWithoutVirtualNMIs, primaryField, primary.rawValue)
        // SDM 27.2.1.1: APIC-access address, and x2APIC mode excludes APIC-access virtualization.
        if secondary.contains(.virtualizeAPICAccesses) {
            let address = try read(VMCSFields.Control64.apicAccessAddress)
            try require(isPageAddress(address), .apicAccessAddressInvalid, VMCSFields.Control64.apicAccessAddress, address)
        }
        try require(!secondary.contains(.virtualizeX2APICMode | .virtualizeAPICAccesses),
                    .x2APICModeWithAPICAccesses, secondaryField, secondary.rawValue)
        // SDM 27.2.1.1: virtual-interrupt delivery needs external-interrupt exiting.
        try require(!secondary.contains(.virtualInterruptDelivery) || pin.contains(.externalInterruptExiting),
                    .virtualInterruptDeliveryWithoutExternalInterruptExiting, pinField, pin.rawValue)

        let exit = VMExitControls(rawValue: try read(exitField))
        // SDM 27.2.1.1: process posted interrupts.
        if pin.contains(.processPostedInterrupts) {
            try require(secondary.contains(.virtualInterruptDelivery), .postedInterruptsWithoutVirtualInterruptDelivery,
                        secondaryField, secondary.rawValue)
            try require(exit.contains(.acknowledgeInterruptOnExit), .postedInterruptsWithoutAcknowledgeOnExit,
                        exitField, exit.rawValue)
            let vectorField = VMCSFields.Control16.postedInterruptNotificationVector
            let vector = try read(vectorField)
            try require(vector & 0xFF00 == 0, .postedInterruptVectorReservedBits, vectorField, vector)
            let descriptorField = VMCSFields.Control64.postedInterruptDescriptorAddress
            let descriptor = try read(descriptorField)
            try require(descriptor & 0x3F == 0 && fits(descriptor, width: structureAddressWidth),
                        .postedInterruptDescriptorAddressInvalid, descriptorField, descriptor)
        }
        // SDM 27.2.1.1: VPID.
        if secondary.contains(.enableVPID) {
            let vpid = try read(VMCSFields.Control16.virtualProcessorID)
            try require(vpid != 0, .vpidZero, VMCSFields.Control16.virtualProcessorID, vpid)
        }
        // SDM 27.2.1.1 and 25.6.11 "Extended-Page-Table Pointer (EPTP)".
        let ept = secondary.contains(.enableEPT)
        if ept { try checkEPTP() }
        // SDM 27.2.1.1: PML.
        if secondary.contains(.enablePML) {
            try require(ept, .pmlWithoutEPT, secondaryField, secondary.rawValue)
            let address = try read(VMCSFields.Control64.pmlAddress)
            try require(isPageAddress(address), .pmlAddressInvalid, VMCSFields.Control64.pmlAddress, address)
        }
        // SDM 27.2.1.1: unrestricted guest, mode-based execute and sub-page permissions need EPT.
        try require(ept || !secondary.contains(.unrestrictedGuest), .unrestrictedGuestWithoutEPT,
                    secondaryField, secondary.rawValue)
        try require(ept || !secondary.intersects(.modeBasedExecuteControl | .subPageWritePermissions),
                    .eptSubfeatureWithoutEPT, secondaryField, secondary.rawValue)
        // SDM 27.2.1.1: VM functions.
        if secondary.contains(.enableVMFunctions) {
            let field = VMCSFields.Control64.vmFunctionControls
            let functions = try read(field)
            try require(functions & ~(capabilities.vmFunctions ?? 0) == 0, .vmFunctionControlsUnsupported, field, functions)
            if functions & 1 != 0 {
                try require(ept, .eptpSwitchingWithoutEPT, secondaryField, secondary.rawValue)
                let list = try read(VMCSFields.Control64.eptpListAddress)
                try require(isPageAddress(list), .eptpListAddressInvalid, VMCSFields.Control64.eptpListAddress, list)
            }
        }
        // SDM 27.2.1.1: VMCS shadowing bitmaps.
        if secondary.contains(.vmcsShadowing) {
            let readBitmap = try read(VMCSFields.Control64.vmreadBitmapAddress)
            try require(isPageAddress(readBitmap), .vmcsShadowingBitmapAddressInvalid,
                        VMCSFields.Control64.vmreadBitmapAddress, readBitmap)
            let writeBitmap = try read(VMCSFields.Control64.vmwriteBitmapAddress)
            try require(isPageAddress(writeBitmap), .vmcsShadowingBitmapAddressInvalid,
                        VMCSFields.Control64.vmwriteBitmapAddress, writeBitmap)
        }
        // SDM 27.2.1.1: EPT-violation #VE.
        if secondary.contains(.eptViolationVE) {
            let field = VMCSFields.Control64.virtualizationExceptionInformationAddress
            let address = try read(field)
            try require(isPageAddress(address), .virtualizationExceptionAddressInvalid, field, address)
        }

        // SDM 27.2.1.2 "VM-Exit Control Fields".
        try require(capabilities.exit.isValid(exit), .exitControlsUnsupported, exitField, exit.rawValue)
        try require(pin.contains(.activatePreemptionTimer) || !exit.contains(.savePreemptionTimerValue),
                    .savePreemptionTimerWithoutTimer, exitField, exit.rawValue)
        let storeCount = try read(VMCSFields.Control32.exitMSRStoreCount)
        if storeCount != 0 {
            let address = try read(VMCSFields.Control64.exitMSRStoreAddress)
            try require(isMSRArea(address, count: storeCount), .exitMSRStoreAddressInvalid,
                        VMCSFields.Control64.exitMSRStoreAddress, address)
        }
        let exitLoadCount = try read(VMCSFields.Control32.exitMSRLoadCount)
        if exitLoadCount != 0 {
            let address = try read(VMCSFields.Control64.exitMSRLoadAddress)
            try require(isMSRArea(address, count: exitLoadCount), .exitMSRLoadAddressInvalid,
                        VMCSFields.Control64.exitMSRLoadAddress, address)
        }

        // SDM 27.2.1.3 "VM-Entry Control Fields".
        let entry = VMEntryControls(rawValue: try read(entryField))
        try require(capabilities.entry.isValid(entry), .entryControlsUnsupported, entryField, entry.rawValue)
        let injection = try read(VMCSFields.Control32.entryInterruptionInformation)
        let controls = Controls(pin: pin, primary: primary, secondary: secondary, exit: exit, entry: entry,
                                injection: injection)
        if controls.injecting { try checkEventInjection(controls) }
        let entryLoadCount = try read(VMCSFields.Control32.entryMSRLoadCount)
        if entryLoadCount != 0 {
            let address = try read(VMCSFields.Control64.entryMSRLoadAddress)
            try require(isMSRArea(address, count: entryLoadCount), .entryMSRLoadAddressInvalid,
                        VMCSFields.Control64.entryMSRLoadAddress, address)
        }
        // SDM 27.2.1.3: this hypervisor never runs VM entry in SMM.
        try require(!entry.intersects(.entryToSMM | .deactivateDualMonitorTreatment), .smmControlsOutsideSMM,
                    entryField, entry.rawValue)
        return controls
    }

    // SDM 27.2.1.1 "VM-Execution Control Fields" (EPTP), 25.6.11 "Extended-Page-Table Pointer (EPTP)"
    func checkEPTP() throws(VMEntryViolation) {
        let field = VMCSFields.Control64.eptPointer
        let eptp = try read(field)
        let caps = capabilities.eptVPID ?? EPTVPIDCapabilities(rawValue: 0)
        let memoryType = eptp & 7
        try require((memoryType == 0 && caps.uncacheable) || (memoryType == 6 && caps.writeBack),
                    .eptpMemoryTypeUnsupported, field, eptp)
        let walk = (eptp >> 3) & 7
        try require((walk == 3 && caps.pageWalkLength4) || (walk == 4 && caps.pageWalkLength5),
                    .eptpWalkLengthUnsupported, field, eptp)
        try require(eptp & (1 << 6) == 0 || caps.accessedDirtyFlags, .eptpAccessedDirtyUnsupported, field, eptp)
        try require(eptp & (1 << 7) == 0 || caps.supervisorShadowStack, .eptpShadowStackUnsupported, field, eptp)
        try require(eptp & 0xF00 == 0 && fits(eptp, width: physicalAddressWidth), .eptpReservedBits, field, eptp)
    }

    // SDM 27.2.1.3 "VM-Entry Control Fields" (VM-entry interruption-information field)
    func checkEventInjection(_ c: Controls) throws(VMEntryViolation) {
        let field = VMCSFields.Control32.entryInterruptionInformation
        let info = c.injection
        try require(info & 0x7FFF_F000 == 0, .injectionReservedBits, field, info)
        let type = c.injectionType
        let vector = c.injectionVector
        let typeValid = type != .reserved
            && (type != .otherEvent || capabilities.primary.allows(.monitorTrapFlag))
        try require(typeValid, .injectionTypeInvalid, field, info)
        try require(type != .nmi || vector == 2, .injectionNMIVector, field, info)
        try require(type != .hardwareException || vector <= 31, .injectionHardwareExceptionVector, field, info)
        try require(type != .otherEvent || vector == 0, .injectionOtherEventVector, field, info)

        // The deliver-error-code bit against the type, guest CR0.PE, the vector
        // and IA32_VMX_BASIC[56] (any hardware exception may go either way).
        let cr0 = try read(VMCSFields.GuestNatural.cr0)
        let protectedHardwareException = type == .hardwareException && cr0 & CR0Bits.pe.rawValue != 0
        let strict = !capabilities.basic.hardwareExceptionWithoutErrorCode
        let errorCodeVector: Bool
        switch vector {
        case 8, 10, 11, 12, 13, 14, 17: errorCodeVector = true
        default: errorCodeVector = false
        }
        let deliver = info & (1 << 11) != 0
        if deliver {
            try require(protectedHardwareException && (!strict || errorCodeVector), .injectionErrorCodeNotAllowed,
                        field, info)
            let codeField = VMCSFields.Control32.entryExceptionErrorCode
            let code = try read(codeField)
            try require(code & 0xFFFF_0000 == 0, .injectionErrorCodeReservedBits, codeField, code)
        } else {
            try require(!(protectedHardwareException && strict && errorCodeVector), .injectionErrorCodeRequired,
                        field, info)
        }
        if type.needsInstructionLength {
            let lengthField = VMCSFields.Control32.entryInstructionLength
            let length = try read(lengthField)
            try require((length >= 1 || capabilities.misc.zeroLengthInstructionInjection) && length <= 15,
                        .injectionInstructionLength, lengthField, length)
        }
    }

    // MARK: 27.2.2-27.2.4 Checks on the Host-State Area

    func checkHostState(_ c: Controls) throws(VMEntryViolation) {
        let hostAS = c.hostAddressSpaceSize
        // SDM 27.2.2 "Checks on Host Control Registers, MSRs, and SSP".
        let cr0 = try read(VMCSFields.HostNatural.cr0)
        try require(capabilities.cr0Fixed.isValid(cr0), .hostCR0FixedBits, VMCSFields.HostNatural.cr0, cr0)
        let cr4 = try read(VMCSFields.HostNatural.cr4)
        try require(capabilities.cr4Fixed.isValid(cr4), .hostCR4FixedBits, VMCSFields.HostNatural.cr4, cr4)
        let cr3 = try read(VMCSFields.HostNatural.cr3)
        try require(fits(cr3, width: physicalAddressWidth), .hostCR3Width, VMCSFields.HostNatural.cr3, cr3)
        let sysenterESP = try read(VMCSFields.HostNatural.ia32SysenterESP)
        try require(isCanonical(sysenterESP), .hostSysenterNotCanonical, VMCSFields.HostNatural.ia32SysenterESP, sysenterESP)
        let sysenterEIP = try read(VMCSFields.HostNatural.ia32SysenterEIP)
        try require(isCanonical(sysenterEIP), .hostSysenterNotCanonical, VMCSFields.HostNatural.ia32SysenterEIP, sysenterEIP)
        if c.exit.contains(.loadIA32PAT) {
            let pat = try read(VMCSFields.Host64.ia32PAT)
            try require(isValidPAT(pat), .hostPATInvalid, VMCSFields.Host64.ia32PAT, pat)
        }
        if c.exit.contains(.loadIA32EFER) {
            let field = VMCSFields.Host64.ia32EFER
            let efer = try read(field)
            try require(efer & Self.eferReservedBits == 0, .hostEFERReservedBits, field, efer)
            let lma = efer & EFER.lma.rawValue != 0, lme = efer & EFER.lme.rawValue != 0
            try require(lma == hostAS && lme == hostAS, .hostEFERModeMismatch, field, efer)
        }

        // SDM 27.2.3 "Checks on Host Segment and Descriptor-Table Registers".
        try checkHostSelector(VMCSFields.Host16.esSelector)
        let cs = try checkHostSelector(VMCSFields.Host16.csSelector)
        let ss = try checkHostSelector(VMCSFields.Host16.ssSelector)
        try checkHostSelector(VMCSFields.Host16.dsSelector)
        try checkHostSelector(VMCSFields.Host16.fsSelector)
        try checkHostSelector(VMCSFields.Host16.gsSelector)
        let tr = try checkHostSelector(VMCSFields.Host16.trSelector)
        try require(cs != 0, .hostCSNull, VMCSFields.Host16.csSelector, cs)
        try require(tr != 0, .hostTRNull, VMCSFields.Host16.trSelector, tr)
        try require(hostAS || ss != 0, .hostSSNull, VMCSFields.Host16.ssSelector, ss)
        try checkHostBase(VMCSFields.HostNatural.fsBase)
        try checkHostBase(VMCSFields.HostNatural.gsBase)
        try checkHostBase(VMCSFields.HostNatural.gdtrBase)
        try checkHostBase(VMCSFields.HostNatural.idtrBase)
        try checkHostBase(VMCSFields.HostNatural.trBase)

        // SDM 27.2.4 "Checks Related to Address-Space Size".
        let exitField = VMCSFields.Control32.primaryExitControls
        if processorInIA32eMode {
            try require(hostAS, .hostAddressSpaceSizeRequired, exitField, c.exit.rawValue)
        } else {
            try require(!c.ia32eModeGuest, .ia32eModeGuestOutsideIA32eMode, VMCSFields.Control32.entryControls,
                        c.entry.rawValue)
            try require(!hostAS, .hostAddressSpaceSizeOutsideIA32eMode, exitField, c.exit.rawValue)
        }
        let rip = try read(VMCSFields.HostNatural.rip)
        if hostAS {
            try require(cr4 & CR4Bits.pae.rawValue != 0, .hostCR4PAERequired, VMCSFields.HostNatural.cr4, cr4)
            try require(isCanonical(rip), .hostRIPNotCanonical, VMCSFields.HostNatural.rip, rip)
        } else {
            try require(cr4 & CR4Bits.pcide.rawValue == 0, .hostPCIDEWithoutHostAddressSpaceSize,
                        VMCSFields.HostNatural.cr4, cr4)
            try require(rip >> 32 == 0, .hostRIPUpperBits, VMCSFields.HostNatural.rip, rip)
        }
    }

    // SDM 27.2.3 "Checks on Host Segment and Descriptor-Table Registers": RPL and TI 0
    @discardableResult
    func checkHostSelector(_ field: VMCSField16) throws(VMEntryViolation) -> UInt16 {
        let selector = try read(field)
        try require(selector & 7 == 0, .hostSelectorRPLOrTI, field, selector)
        return selector
    }

    // SDM 27.2.3 "Checks on Host Segment and Descriptor-Table Registers": canonical bases
    func checkHostBase(_ field: VMCSFieldNatural) throws(VMEntryViolation) {
        let base = try read(field)
        try require(isCanonical(base), .hostBaseNotCanonical, field, base)
    }

    // MARK: 27.3.1 Checks on the Guest-State Area

    /// One guest segment register as the VMCS holds it.
    struct Segment {
        var selectorField: VMCSField16
        var baseField: VMCSFieldNatural
        var limitField: VMCSField32
        var rightsField: VMCSField32
        var selector: UInt16 = 0
        var base: UInt64 = 0
        var limit: UInt32 = 0
        var rights = SegmentAccessRights(rawValue: 0)

        var rpl: UInt32 { UInt32(selector & 3) }
        var usable: Bool { !rights.isUnusable }
    }

    func readSegment(_ selector: VMCSField16, _ base: VMCSFieldNatural, _ limit: VMCSField32,
                     _ rights: VMCSField32) throws(VMEntryViolation) -> Segment {
        var s = Segment(selectorField: selector, baseField: base, limitField: limit, rightsField: rights)
        s.selector = try read(selector)
        s.base = try read(base)
        s.limit = try read(limit)
        s.rights = SegmentAccessRights(rawValue: try read(rights))
        return s
    }

    func checkGuestState(_ c: Controls) throws(VMEntryViolation) {
        typealias G16 = VMCSFields.Guest16
        typealias G32 = VMCSFields.Guest32
        typealias G64 = VMCSFields.Guest64
        typealias GN = VMCSFields.GuestNatural
        let ia32e = c.ia32eModeGuest

        // SDM 27.3.1.1 "Checks on Guest Control Registers, Debug Registers, and MSRs".
        let cr0 = try read(GN.cr0)
        let pe = CR0Bits.pe.rawValue, pg = CR0Bits.pg.rawValue
        let cr0Rule = c.unrestrictedGuest ? capabilities.cr0Fixed.exempting(mustBeOne: pe | pg) : capabilities.cr0Fixed
        let cr0Violations = cr0Rule.violations(in: cr0) & ~(CR0Bits.nw.rawValue | CR0Bits.cd.rawValue)
        try require(cr0Violations == 0, .guestCR0FixedBits, GN.cr0, cr0)
        try require(cr0 & pg == 0 || cr0 & pe != 0, .guestCR0PagingWithoutProtection, GN.cr0, cr0)
        let cr4 = try read(GN.cr4)
        try require(capabilities.cr4Fixed.isValid(cr4), .guestCR4FixedBits, GN.cr4, cr4)
        try require(cr4 & CR4Bits.cet.rawValue == 0 || cr0 & CR0Bits.wp.rawValue != 0, .guestCETWithoutWriteProtect,
                    GN.cr0, cr0)
        if ia32e {
            try require(cr0 & pg != 0, .guestIA32eModeWithoutPaging, GN.cr0, cr0)
            try require(cr4 & CR4Bits.pae.rawValue != 0, .guestIA32eModeWithoutPAE, GN.cr4, cr4)
        } else {
            try require(cr4 & CR4Bits.pcide.rawValue == 0, .guestPCIDEOutsideIA32eMode, GN.cr4, cr4)
        }
        let cr3 = try read(GN.cr3)
        try require(fits(cr3, width: physicalAddressWidth), .guestCR3Width, GN.cr3, cr3)
        if c.entry.contains(.loadDebugControls) {
            let dr7 = try read(GN.dr7)
            try require(dr7 >> 32 == 0, .guestDR7UpperBits, GN.dr7, dr7)
        }
        let sysenterESP = try read(GN.ia32SysenterESP)
        try require(isCanonical(sysenterESP), .guestSysenterNotCanonical, GN.ia32SysenterESP, sysenterESP)
        let sysenterEIP = try read(GN.ia32SysenterEIP)
        try require(isCanonical(sysenterEIP), .guestSysenterNotCanonical, GN.ia32SysenterEIP, sysenterEIP)
        if c.entry.contains(.loadIA32PAT) {
            let pat = try read(G64.ia32PAT)
            try require(isValidPAT(pat), .guestPATInvalid, G64.ia32PAT, pat)
        }
        if c.entry.contains(.loadIA32EFER) {
            let efer = try read(G64.ia32EFER)
            try require(efer & Self.eferReservedBits == 0, .guestEFERReservedBits, G64.ia32EFER, efer)
            let lma = efer & EFER.lma.rawValue != 0, lme = efer & EFER.lme.rawValue != 0
            try require(lma == ia32e, .guestEFERLMAMismatch, G64.ia32EFER, efer)
            try require(cr0 & pg == 0 || lme == lma, .guestEFERLMEMismatch, G64.ia32EFER, efer)
        }

        // SDM 27.3.1.2 "Checks on Guest Segment Registers".
        let rflags = try read(GN.rflags)
        let v8086 = rflags & (1 << 17) != 0
        let cs = try readSegment(G16.csSelector, GN.csBase, G32.csLimit, G32.csAccessRights)
        let ss = try readSegment(G16.ssSelector, GN.ssBase, G32.ssLimit, G32.ssAccessRights)
        let ds = try readSegment(G16.dsSelector, GN.dsBase, G32.dsLimit, G32.dsAccessRights)
        let es = try readSegment(G16.esSelector, GN.esBase, G32.esLimit, G32.esAccessRights)
        let fs = try readSegment(G16.fsSelector, GN.fsBase, G32.fsLimit, G32.fsAccessRights)
        let gs = try readSegment(G16.gsSelector, GN.gsBase, G32.gsLimit, G32.gsAccessRights)
        let tr = try readSegment(G16.trSelector, GN.trBase, G32.trLimit, G32.trAccessRights)
        let ldtr = try readSegment(G16.ldtrSelector, GN.ldtrBase, G32.ldtrLimit, G32.ldtrAccessRights)
        let sixSegments: InlineArray<6, Segment> = [cs, ss, ds, es, fs, gs]

        // Selector fields.
        try require(tr.selector & 4 == 0, .guestTRTableIndicator, tr.selectorField, tr.selector)
        try require(!ldtr.usable || ldtr.selector & 4 == 0, .guestLDTRTableIndicator, ldtr.selectorField, ldtr.selector)
        if !v8086 && !c.unrestrictedGuest {
            try require(ss.rpl == cs.rpl, .guestSSRPLNotCSRPL, ss.selectorField, ss.selector)
        }
        // Base-address fields.
        if v8086 {
            for i in sixSegments.indices {
                let s = sixSegments[i]
                try require(s.base == UInt64(s.selector) << 4, .guestVirtual8086Base, s.baseField, s.base)
            }
        }
        try require(isCanonical(tr.base), .guestBaseNotCanonical, tr.baseField, tr.base)
        try require(isCanonical(fs.base), .guestBaseNotCanonical, fs.baseField, fs.base)
        try require(isCanonical(gs.base), .guestBaseNotCanonical, gs.baseField, gs.base)
        try require(!ldtr.usable || isCanonical(ldtr.base), .guestBaseNotCanonical, ldtr.baseField, ldtr.base)
        try require(cs.base >> 32 == 0, .guestBaseUpperBits, cs.baseField, cs.base)
        let upperChecked: InlineArray<3, Segment> = [ss, ds, es]
        for i in upperChecked.indices {
            let s = upperChecked[i]
            try require(!s.usable || s.base >> 32 == 0, .guestBaseUpperBits, s.baseField, s.base)
        }
        // Limit and access-rights fields.
        if v8086 {
            for i in sixSegments.indices {
                let s = sixSegments[i]
                try require(s.limit == 0xFFFF, .guestVirtual8086Limit, s.limitField, s.limit)
            }
            for i in sixSegments.indices {
                let s = sixSegments[i]
                try require(s.rights.rawValue == 0xF3, .guestVirtual8086AccessRights, s.rightsField, s.rights.rawValue)
            }
        } else {
            try checkCodeSegment(cs, ss: ss, c)
            try checkStackSegment(ss, cs: cs, cr0: cr0, c)
            try checkDataSegment(ds, c)
            try checkDataSegment(es, c)
            try checkDataSegment(fs, c)
            try checkDataSegment(gs, c)
        }
        try checkTaskRegister(tr, ia32e: ia32e)
        if ldtr.usable { try checkLDTR(ldtr) }

        // SDM 27.3.1.3 "Checks on Guest Descriptor-Table Registers".
        let gdtrBase = try read(GN.gdtrBase)
        try require(isCanonical(gdtrBase), .guestDescriptorTableBaseNotCanonical, GN.gdtrBase, gdtrBase)
        let idtrBase = try read(GN.idtrBase)
        try require(isCanonical(idtrBase), .guestDescriptorTableBaseNotCanonical, GN.idtrBase, idtrBase)
        let gdtrLimit = try read(G32.gdtrLimit)
        try require(gdtrLimit >> 16 == 0, .guestDescriptorTableLimit, G32.gdtrLimit, gdtrLimit)
        let idtrLimit = try read(G32.idtrLimit)
        try require(idtrLimit >> 16 == 0, .guestDescriptorTableLimit, G32.idtrLimit, idtrLimit)

        // SDM 27.3.1.4 "Checks on Guest RIP, RFLAGS, and SSP".
        let rip = try read(GN.rip)
        if ia32e && cs.rights.isLong {
            // Bits 63:N, not 63:N-1: a RIP with only bit N-1 wrong enters and faults on the fetch.
            let high = rip >> UInt64(linearAddressWidth)
            try require(high == 0 || high == UInt64.max >> UInt64(linearAddressWidth), .guestRIPHighBitsNotIdentical,
                        GN.rip, rip)
        } else {
            try require(rip >> 32 == 0, .guestRIPUpperBits, GN.rip, rip)
        }
        try require(rflags & 0xFFFF_FFFF_FFC0_8028 == 0 && rflags & 2 != 0, .guestRFLAGSReservedBits, GN.rflags, rflags)
        try require(!v8086 || (!ia32e && cr0 & pe != 0), .guestRFLAGSVirtual8086, GN.rflags, rflags)
        let injectsExternalInterrupt = c.injecting && c.injectionType == .externalInterrupt
        try require(!injectsExternalInterrupt || rflags & (1 << 9) != 0, .guestRFLAGSInterruptFlag, GN.rflags, rflags)

        try checkNonRegisterState(c, ss: ss, rflags: rflags)

        // SDM 27.3.1.6 "Checks on Guest Page-Directory-Pointer-Table Entries" (EPT only:
        // without EPT they come from guest memory, which this checker cannot read).
        if c.secondary.contains(.enableEPT) && cr0 & pg != 0 && cr4 & CR4Bits.pae.rawValue != 0 && !ia32e {
            let pdptes: InlineArray<4, VMCSField64> = [G64.pdpte0, G64.pdpte1, G64.pdpte2, G64.pdpte3]
            for i in pdptes.indices {
                let field = pdptes[i]
                let pdpte = try read(field)
                let reserved = pdpte & 0x1E6 != 0 || !fits(pdpte, width: physicalAddressWidth)
                try require(pdpte & 1 == 0 || !reserved, .guestPDPTEReservedBits, field, pdpte)
            }
        }
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": CS access rights
    func checkCodeSegment(_ cs: Segment, ss: Segment, _ c: Controls) throws(VMEntryViolation) {
        let rights = cs.rights
        let value = rights.rawValue
        switch rights.type {
        case 9, 11, 13, 15: break
        case 3: try require(c.unrestrictedGuest, .guestCSType, cs.rightsField, value)
        default:
            try require(false, c.unrestrictedGuest ? .guestCSTypeUnrestricted : .guestCSType, cs.rightsField, value)
        }
        try require(rights.isCodeOrData, .guestSegmentNotCodeOrData, cs.rightsField, value)
        switch rights.type {
        case 3: try require(rights.dpl == 0, .guestCSDPLForType3, cs.rightsField, value)
        case 9, 11: try require(rights.dpl == ss.rights.dpl, .guestCSDPLNonConforming, cs.rightsField, value)
        default: try require(rights.dpl <= ss.rights.dpl, .guestCSDPLConforming, cs.rightsField, value)
        }
        try require(rights.isPresent, .guestSegmentNotPresent, cs.rightsField, value)
        try require(rights.reservedBits == 0, .guestSegmentReservedBits, cs.rightsField, value)
        try require(!(c.ia32eModeGuest && rights.isLong && rights.isDefaultBig), .guestCSLongAndDefault,
                    cs.rightsField, value)
        try checkGranularity(cs)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": SS access rights
    func checkStackSegment(_ ss: Segment, cs: Segment, cr0: UInt64, _ c: Controls) throws(VMEntryViolation) {
        let rights = ss.rights
        let value = rights.rawValue
        if ss.usable {
            try require(rights.type == 3 || rights.type == 7, .guestSSType, ss.rightsField, value)
            try require(rights.isCodeOrData, .guestSegmentNotCodeOrData, ss.rightsField, value)
        }
        if !c.unrestrictedGuest {
            try require(rights.dpl == ss.rpl, .guestSSDPLNotRPL, ss.rightsField, value)
        }
        if cs.rights.type == 3 || cr0 & CR0Bits.pe.rawValue == 0 {
            try require(rights.dpl == 0, .guestSSDPLNotZero, ss.rightsField, value)
        }
        if ss.usable { try checkUsableCommon(ss) }
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": DS, ES, FS, GS access rights
    func checkDataSegment(_ s: Segment, _ c: Controls) throws(VMEntryViolation) {
        guard s.usable else { return }
        let rights = s.rights
        let value = rights.rawValue
        try require(rights.type & 1 != 0, .guestDataSegmentNotAccessed, s.rightsField, value)
        try require(rights.type & 8 == 0 || rights.type & 2 != 0, .guestCodeSegmentNotReadable, s.rightsField, value)
        try require(rights.isCodeOrData, .guestSegmentNotCodeOrData, s.rightsField, value)
        if !c.unrestrictedGuest && rights.type <= 11 {
            try require(rights.dpl >= s.rpl, .guestDataSegmentDPLBelowRPL, s.rightsField, value)
        }
        try checkUsableCommon(s)
    }

    /// P, reserved bits and granularity of a usable segment.
    func checkUsableCommon(_ s: Segment) throws(VMEntryViolation) {
        try require(s.rights.isPresent, .guestSegmentNotPresent, s.rightsField, s.rights.rawValue)
        try require(s.rights.reservedBits == 0, .guestSegmentReservedBits, s.rightsField, s.rights.rawValue)
        try checkGranularity(s)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": G against the limit
    func checkGranularity(_ s: Segment) throws(VMEntryViolation) {
        let g = s.rights.isPageGranular
        let consistent = (s.limit & 0xFFF == 0xFFF || !g) && (s.limit >> 20 == 0 || g)
        try require(consistent, .guestSegmentGranularity, s.rightsField, s.rights.rawValue)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": TR access rights
    func checkTaskRegister(_ tr: Segment, ia32e: Bool) throws(VMEntryViolation) {
        let value = tr.rights.rawValue
        let typeValid = tr.rights.type == 11 || (tr.rights.type == 3 && !ia32e)
        try require(typeValid, .guestTRType, tr.rightsField, value)
        try require(!tr.rights.isCodeOrData, .guestSystemSegmentS, tr.rightsField, value)
        try require(tr.rights.isPresent, .guestSegmentNotPresent, tr.rightsField, value)
        try require(tr.rights.reservedBits == 0, .guestSegmentReservedBits, tr.rightsField, value)
        try checkGranularity(tr)
        try require(tr.usable, .guestTRUnusable, tr.rightsField, value)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": LDTR access rights (when usable)
    func checkLDTR(_ ldtr: Segment) throws(VMEntryViolation) {
        let value = ldtr.rights.rawValue
        try require(ldtr.rights.type == 2, .guestLDTRType, ldtr.rightsField, value)
        try require(!ldtr.rights.isCodeOrData, .guestSystemSegmentS, ldtr.rightsField, value)
        try checkUsableCommon(ldtr)
    }

    // SDM 27.3.1.5 "Checks on Guest Non-Register State"
    func checkNonRegisterState(_ c: Controls, ss: Segment, rflags: UInt64) throws(VMEntryViolation) {
        typealias G32 = VMCSFields.Guest32
        typealias GN = VMCSFields.GuestNatural
        let activityField = G32.activityState
        let interruptibilityField = G32.interruptibilityState
        let activity = try read(activityField)
        let interruptibility = try read(interruptibilityField)
        let misc = capabilities.misc
        let blockingBySTI = interruptibility & 1 != 0
        let blockingByMOVSS = interruptibility & 2 != 0

        // Activity state.
        let supported: Bool
        switch activity {
        case 0: supported = true
        case 1: supported = misc.supportsActivityHLT
        case 2: supported = misc.supportsActivityShutdown
        case 3: supported = misc.supportsActivityWaitForSIPI
        default: supported = false
        }
        try require(supported, .guestActivityStateInvalid, activityField, activity)
        if activity == 1 {
            try require(ss.rights.dpl == 0, .guestActivityHLTWithSSDPL, activityField, activity)
            try require(!blockingBySTI && !blockingByMOVSS, .guestActivityHLTWithBlocking, activityField, activity)
        }
        if c.injecting && activity != 0 {
            let type = c.injectionType, vector = c.injectionVector
            let allowed: Bool
            switch activity {
            case 1:
                allowed = type == .externalInterrupt || type == .nmi
                    || (type == .hardwareException && (vector == 1 || vector == 18))
                    || (type == .otherEvent && vector == 0)
            case 2:
                allowed = type == .nmi || (type == .hardwareException && vector == 18)
            default:
                allowed = false
            }
            try require(allowed, .guestActivityStateRejectsInjection, activityField, activity)
        }

        // Interruptibility state.
        try require(interruptibility >> 5 == 0, .guestInterruptibilityReservedBits, interruptibilityField, interruptibility)
        try require(!(blockingBySTI && blockingByMOVSS), .guestInterruptibilitySTIAndMOVSS,
                    interruptibilityField, interruptibility)
        try require(!blockingBySTI || rflags & (1 << 9) != 0, .guestInterruptibilitySTIWithoutIF,
                    interruptibilityField, interruptibility)
        if c.injecting && c.injectionType == .externalInterrupt {
            try require(!blockingBySTI && !blockingByMOVSS, .guestInterruptibilityExternalInterruptInjection,
                        interruptibilityField, interruptibility)
        }
        if c.injecting && c.injectionType == .nmi {
            try require(!blockingByMOVSS, .guestInterruptibilityNMIInjection, interruptibilityField, interruptibility)
        }
        try require(interruptibility & 4 == 0, .guestInterruptibilitySMIOutsideSMM, interruptibilityField, interruptibility)
        if c.injecting && c.injectionType == .nmi && c.pin.contains(.virtualNMIs) {
            try require(interruptibility & 8 == 0, .guestInterruptibilityVirtualNMIInjection,
                        interruptibilityField, interruptibility)
        }

        // Pending debug exceptions.
        let pendingField = GN.pendingDebugExceptions
        let pending = try read(pendingField)
        try require(pending & 0xFFFF_FFFF_FFFE_AFF0 == 0, .guestPendingDebugReservedBits, pendingField, pending)
        if blockingBySTI || blockingByMOVSS || activity == 1 {
            let debugCtl = try read(VMCSFields.Guest64.ia32DebugCtl)
            let bs = pending & (1 << 14) != 0
            let singleStepping = rflags & (1 << 8) != 0 && debugCtl & (1 << 1) == 0
            try require(bs || !singleStepping, .guestPendingDebugBSRequired, pendingField, pending)
            try require(!bs || singleStepping, .guestPendingDebugBSNotAllowed, pendingField, pending)
        }

        // VMCS link pointer.
        let linkField = VMCSFields.Guest64.vmcsLinkPointer
        let link = try read(linkField)
        if link != UInt64.max {
            try require(link & 0xFFF == 0 && fits(link, width: structureAddressWidth), .guestVMCSLinkPointerAddress,
                        linkField, link)
            try require(c.secondary.contains(.vmcsShadowing), .guestVMCSLinkPointerNotInvalid, linkField, link)
        }
    }
}

/// Checks the current VMCS as VM entry would; nil when every check here passes.
/// `physicalAddressWidth` is CPUID.80000008H:EAX[7:0]; pass it when known.
public func checkVMEntry<V: VMCSAccess>(_ vmcs: V, capabilities: VMXCapabilities,
                                        physicalAddressWidth: Int = 52,
                                        linearAddressWidth: Int = 48) -> VMEntryViolation? {
    VMEntryChecker(vmcs: vmcs, capabilities: capabilities, physicalAddressWidth: physicalAddressWidth,
                   linearAddressWidth: linearAddressWidth).check()
}
