// Decoded VMX capability MSRs. SDM Appendix A "VMX Capability Reporting Facility".

import X86Arch

/// IA32_VMX_BASIC (MSR 480H). SDM A.1 "Basic VMX Information".
@frozen
public struct VMXBasic: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bits 30:0: the revision identifier VMXON and VMCS regions must start with.
    public var revisionID: UInt32 { UInt32(truncatingIfNeeded: rawValue) & 0x7FFF_FFFF }
    /// Bits 44:32: bytes to allocate for the VMXON region and each VMCS (at most 4096).
    public var regionSize: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 32) & 0x1FFF }
    /// Bit 48: VMXON, VMCS and related addresses are limited to 32 bits.
    public var addressesLimitedTo32Bits: Bool { bit(48) }
    /// Bit 49: the dual-monitor treatment of SMIs and SMM is supported.
    public var dualMonitorTreatment: Bool { bit(49) }
    /// Bits 53:50: memory type the CPU uses to access the VMCS (0 = UC, 6 = WB).
    public var memoryType: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 50) & 0xF }
    public var vmcsMemoryIsWriteBack: Bool { memoryType == 6 }
    /// Bit 54: VM exits for INS/OUTS report the instruction-information field.
    public var reportsINSOUTSInformation: Bool { bit(54) }
    /// Bit 55: default1 controls may be 0; the IA32_VMX_TRUE_*_CTLS MSRs exist.
    public var hasTrueControls: Bool { bit(55) }
    /// Bit 56: VM entry may deliver any hardware exception with or without an error code.
    public var hardwareExceptionWithoutErrorCode: Bool { bit(56) }

    private func bit(_ n: UInt64) -> Bool { rawValue & (1 << n) != 0 }
}

/// IA32_VMX_MISC (MSR 485H). SDM A.6 "Miscellaneous Data".
@frozen
public struct VMXMisc: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bits 4:0: the preemption timer counts down once per change of TSC bit X (rate = TSC >> X).
    public var preemptionTimerTSCShift: UInt8 { UInt8(truncatingIfNeeded: rawValue) & 0x1F }
    /// Bit 5: VM exits store EFER.LMA into the "IA-32e mode guest" entry control.
    public var storesEFERLMAOnExit: Bool { bit(5) }
    /// Bit 6: VM entry may put the guest in the HLT activity state.
    public var supportsActivityHLT: Bool { bit(6) }
    /// Bit 7: ... in the shutdown activity state.
    public var supportsActivityShutdown: Bool { bit(7) }
    /// Bit 8: ... in the wait-for-SIPI activity state.
    public var supportsActivityWaitForSIPI: Bool { bit(8) }
    /// Bit 14: Intel PT can be used in VMX operation.
    public var intelPTInVMX: Bool { bit(14) }
    /// Bit 15: RDMSR can read IA32_SMBASE in SMM.
    public var rdmsrReadsSMBASEInSMM: Bool { bit(15) }
    /// Bits 24:16: number of CR3-target values supported.
    public var cr3TargetCount: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 16) & 0x1FF }
    /// Bits 27:25 (N): recommended maximum entries in each MSR list, 512 * (N + 1).
    public var maxMSRListEntries: UInt32 { 512 * (UInt32(truncatingIfNeeded: rawValue >> 25 & 7) + 1) }
    /// Bit 28: bit 2 of IA32_SMM_MONITOR_CTL can be set to 1.
    public var smmMonitorCtlBit2: Bool { bit(28) }
    /// Bit 29: VMWRITE may write any field, including VM-exit information fields.
    public var vmwriteToAnyField: Bool { bit(29) }
    /// Bit 30: VM entry may inject software interrupts/exceptions with instruction length 0.
    public var zeroLengthInstructionInjection: Bool { bit(30) }
    /// Bits 63:32: MSEG revision identifier.
    public var msegRevision: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 32) }

    private func bit(_ n: UInt64) -> Bool { rawValue & (1 << n) != 0 }
}

/// IA32_VMX_EPT_VPID_CAP (MSR 48CH). SDM A.10 "VPID and EPT Capabilities".
@frozen
public struct EPTVPIDCapabilities: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: EPT entries may be execute-only.
    public var executeOnly: Bool { bit(0) }
    /// Bit 6: 4-level EPT page walk.
    public var pageWalkLength4: Bool { bit(6) }
    /// Bit 7: 5-level EPT page walk.
    public var pageWalkLength5: Bool { bit(7) }
    /// Bit 8: the EPT paging structures may be uncacheable (EPTP memory type 0).
    public var uncacheable: Bool { bit(8) }
    /// Bit 14: the EPT paging structures may be write-back (EPTP memory type 6).
    public var writeBack: Bool { bit(14) }
    /// Bit 16: EPT PDEs may map 2-MByte pages.
    public var pages2MiB: Bool { bit(16) }
    /// Bit 17: EPT PDPTEs may map 1-GByte pages.
    public var pages1GiB: Bool { bit(17) }
    /// Bit 20: INVEPT is supported.
    public var invept: Bool { bit(20) }
    /// Bit 21: EPT accessed and dirty flags.
    public var accessedDirtyFlags: Bool { bit(21) }
    /// Bit 22: advanced VM-exit information for EPT violations.
    public var advancedEPTViolationInformation: Bool { bit(22) }
    /// Bit 23: supervisor shadow-stack control.
    public var supervisorShadowStack: Bool { bit(23) }
    /// Bit 25: single-context INVEPT.
    public var inveptSingleContext: Bool { bit(25) }
    /// Bit 26: all-context INVEPT.
    public var inveptAllContext: Bool { bit(26) }
    /// Bit 32: INVVPID is supported.
    public var invvpid: Bool { bit(32) }
    /// Bit 40: individual-address INVVPID.
    public var invvpidIndividualAddress: Bool { bit(40) }
    /// Bit 41: single-context INVVPID.
    public var invvpidSingleContext: Bool { bit(41) }
    /// Bit 42: all-context INVVPID.
    public var invvpidAllContext: Bool { bit(42) }
    /// Bit 43: single-context-retaining-globals INVVPID.
    public var invvpidSingleContextRetainingGlobals: Bool { bit(43) }
    /// Bits 53:48: maximum HLAT prefix size.
    public var maxHLATPrefixSize: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 48) & 0x3F }

    private func bit(_ n: UInt64) -> Bool { rawValue & (1 << n) != 0 }
}

/// Everything the VMX capability MSRs say, read in the order the SDM allows:
/// an MSR is only read when another MSR has said it exists, because reading
/// an absent one raises #GP. SDM Appendix A and A.3.3 "Secondary
/// Processor-Based VM-Execution Controls".
public struct VMXCapabilities: Equatable, Sendable {
    public var basic: VMXBasic
    public var pinBased: VMXControlCapability<PinBasedControls>
    public var primary: VMXControlCapability<PrimaryProcessorBasedControls>
    /// nil when "activate secondary controls" may not be 1 (IA32_VMX_PROCBASED_CTLS2 absent).
    public var secondary: VMXControlCapability<SecondaryProcessorBasedControls>?
    public var exit: VMXControlCapability<VMExitControls>
    public var entry: VMXControlCapability<VMEntryControls>
    public var misc: VMXMisc
    public var cr0Fixed: FixedBits
    public var cr4Fixed: FixedBits
    /// IA32_VMX_VMCS_ENUM; bits 9:1 give the highest field index used.
    public var vmcsEnum: UInt64
    /// nil unless "enable EPT" or "enable VPID" may be 1 (IA32_VMX_EPT_VPID_CAP absent).
    public var eptVPID: EPTVPIDCapabilities?
    /// nil unless "enable VM functions" may be 1 (IA32_VMX_VMFUNC absent).
    public var vmFunctions: UInt64?

    public init(basic: VMXBasic,
                pinBased: VMXControlCapability<PinBasedControls>,
                primary: VMXControlCapability<PrimaryProcessorBasedControls>,
                secondary: VMXControlCapability<SecondaryProcessorBasedControls>?,
                exit: VMXControlCapability<VMExitControls>,
                entry: VMXControlCapability<VMEntryControls>,
                misc: VMXMisc, cr0Fixed: FixedBits, cr4Fixed: FixedBits, vmcsEnum: UInt64,
                eptVPID: EPTVPIDCapabilities?, vmFunctions: UInt64?) {
        self.basic = basic; self.pinBased = pinBased; self.primary = primary
        self.secondary = secondary; self.exit = exit; self.entry = entry; self.misc = misc
        self.cr0Fixed = cr0Fixed; self.cr4Fixed = cr4Fixed; self.vmcsEnum = vmcsEnum
        self.eptVPID = eptVPID; self.vmFunctions = vmFunctions
    }

    /// Reads the capability MSRs of this CPU, choosing the TRUE control MSRs
    /// when IA32_VMX_BASIC bit 55 says they exist. Throws `.vmxNotSupported`
    /// before touching any VMX MSR when CPUID says there is no VMX.
    public static func read<C: CPUAccess>(from cpu: C) throws(VMXError) -> VMXCapabilities {
        guard cpu.supportsVMX else { throw .vmxNotSupported }
        let basic = VMXBasic(rawValue: cpu.readMSR(.ia32VMXBasic))
        let primary = VMXControlCapability<PrimaryProcessorBasedControls>(
            msrValue: cpu.readMSR(VMXControlKind.primaryProcessorBased.capabilityMSR(basic: basic)))
        var secondary: VMXControlCapability<SecondaryProcessorBasedControls>? = nil
        var eptVPID: EPTVPIDCapabilities? = nil
        var vmFunctions: UInt64? = nil
        // SDM A.3.3: IA32_VMX_PROCBASED_CTLS2 exists only if bit 63 of
        // IA32_VMX_PROCBASED_CTLS is 1.
        if primary.allows(.activateSecondaryControls) {
            let caps = VMXControlCapability<SecondaryProcessorBasedControls>(
                msrValue: cpu.readMSR(.ia32VMXProcbasedCtls2))
            secondary = caps
            // SDM A.10: IA32_VMX_EPT_VPID_CAP exists only if bit 33 or bit 37
            // of IA32_VMX_PROCBASED_CTLS2 is 1.
            if caps.mayBeOne.contains(.enableEPT) || caps.mayBeOne.contains(.enableVPID) {
                eptVPID = EPTVPIDCapabilities(rawValue: cpu.readMSR(.ia32VMXEPTVPIDCap))
            }
            // SDM A.11 "VM Functions": IA32_VMX_VMFUNC exists only if bit 45 of
            // IA32_VMX_PROCBASED_CTLS2 is 1.
            if caps.mayBeOne.contains(.enableVMFunctions) {
                vmFunctions = cpu.readMSR(.ia32VMXVMFunc)
            }
        }
        return VMXCapabilities(
            basic: basic,
            pinBased: VMXControlCapability(msrValue: cpu.readMSR(VMXControlKind.pinBased.capabilityMSR(basic: basic))),
            primary: primary,
            secondary: secondary,
            exit: VMXControlCapability(msrValue: cpu.readMSR(VMXControlKind.vmExit.capabilityMSR(basic: basic))),
            entry: VMXControlCapability(msrValue: cpu.readMSR(VMXControlKind.vmEntry.capabilityMSR(basic: basic))),
            misc: VMXMisc(rawValue: cpu.readMSR(.ia32VMXMisc)),
            cr0Fixed: FixedBits(fixed0: cpu.readMSR(.ia32VMXCR0Fixed0), fixed1: cpu.readMSR(.ia32VMXCR0Fixed1)),
            cr4Fixed: FixedBits(fixed0: cpu.readMSR(.ia32VMXCR4Fixed0), fixed1: cpu.readMSR(.ia32VMXCR4Fixed1)),
            vmcsEnum: cpu.readMSR(.ia32VMXVMCSEnum),
            eptVPID: eptVPID,
            vmFunctions: vmFunctions)
    }

    /// Adjusts all five control fields at once. Secondary controls are only
    /// used when some are needed; then "activate secondary controls" becomes a
    /// required primary control. Required secondary controls on a CPU without
    /// secondary controls fail, naming them all.
    public func adjust(required: VMXControlSettings, optional: VMXControlSettings = VMXControlSettings())
        throws(ControlAdjustmentError) -> VMXControlSettings
    {
        var result = VMXControlSettings()
        if let secondary {
            result.secondary = try secondary.adjust(required: required.secondary, optional: optional.secondary)
        } else if !required.secondary.isEmpty {
            throw ControlAdjustmentError(kind: .secondaryProcessorBased, missing: required.secondary.rawValue)
        }
        var requiredPrimary = required.primary
        var optionalPrimary = optional.primary
        if result.secondary.isEmpty {
            // Nothing to activate: never turn on an empty secondary field.
            requiredPrimary.remove(.activateSecondaryControls)
            optionalPrimary.remove(.activateSecondaryControls)
        } else {
            requiredPrimary.insert(.activateSecondaryControls)
        }
        result.primary = try primary.adjust(required: requiredPrimary, optional: optionalPrimary)
        result.pinBased = try pinBased.adjust(required: required.pinBased, optional: optional.pinBased)
        result.exit = try exit.adjust(required: required.exit, optional: optional.exit)
        result.entry = try entry.adjust(required: required.entry, optional: optional.entry)
        return result
    }
}
