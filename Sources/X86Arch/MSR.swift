// Model-specific registers the VMX layer names, with their SDM names.
// SDM Vol. 4 "Model-Specific Registers (MSRs)", Table 2-2 "IA-32 Architectural MSRs".

/// An MSR address with its architectural name, for code and for reports.
@frozen
public struct MSR: Hashable, Sendable {
    public let address: UInt32
    public let name: StaticString
    public init(_ address: UInt32, _ name: StaticString) { self.address = address; self.name = name }

    public static func == (a: MSR, b: MSR) -> Bool { a.address == b.address }
    public func hash(into hasher: inout Hasher) { hasher.combine(address) }

    public static let ia32TimeStampCounter = MSR(0x10, "IA32_TIME_STAMP_COUNTER")
    public static let ia32PlatformID = MSR(0x17, "IA32_PLATFORM_ID")
    public static let ia32APICBase = MSR(0x1B, "IA32_APIC_BASE")
    public static let ia32FeatureControl = MSR(0x3A, "IA32_FEATURE_CONTROL")
    public static let ia32TSCAdjust = MSR(0x3B, "IA32_TSC_ADJUST")
    public static let ia32SpecCtrl = MSR(0x48, "IA32_SPEC_CTRL")
    public static let ia32PredCmd = MSR(0x49, "IA32_PRED_CMD")
    public static let ia32BIOSUpdtTrig = MSR(0x79, "IA32_BIOS_UPDT_TRIG")
    public static let ia32BIOSSignID = MSR(0x8B, "IA32_BIOS_SIGN_ID")
    public static let ia32MPerf = MSR(0xE7, "IA32_MPERF")
    public static let ia32APerf = MSR(0xE8, "IA32_APERF")
    public static let ia32MTRRCap = MSR(0xFE, "IA32_MTRRCAP")
    public static let ia32ArchCapabilities = MSR(0x10A, "IA32_ARCH_CAPABILITIES")
    public static let ia32FlushCmd = MSR(0x10B, "IA32_FLUSH_CMD")
    public static let ia32SysenterCS = MSR(0x174, "IA32_SYSENTER_CS")
    public static let ia32SysenterESP = MSR(0x175, "IA32_SYSENTER_ESP")
    public static let ia32SysenterEIP = MSR(0x176, "IA32_SYSENTER_EIP")
    public static let ia32MCGCap = MSR(0x179, "IA32_MCG_CAP")
    public static let ia32MCGStatus = MSR(0x17A, "IA32_MCG_STATUS")
    public static let ia32MiscEnable = MSR(0x1A0, "IA32_MISC_ENABLE")
    public static let ia32DebugCtl = MSR(0x1D9, "IA32_DEBUGCTL")
    public static let ia32MTRRPhysBase0 = MSR(0x200, "IA32_MTRR_PHYSBASE0")
    public static let ia32MTRRPhysMask0 = MSR(0x201, "IA32_MTRR_PHYSMASK0")
    public static let ia32MTRRFix64K00000 = MSR(0x250, "IA32_MTRR_FIX64K_00000")
    public static let ia32MTRRFix16K80000 = MSR(0x258, "IA32_MTRR_FIX16K_80000")
    public static let ia32MTRRFix16KA0000 = MSR(0x259, "IA32_MTRR_FIX16K_A0000")
    public static let ia32MTRRFix4KC0000 = MSR(0x268, "IA32_MTRR_FIX4K_C0000")
    public static let ia32MTRRFix4KF8000 = MSR(0x26F, "IA32_MTRR_FIX4K_F8000")
    public static let ia32PAT = MSR(0x277, "IA32_PAT")
    public static let ia32MTRRDefType = MSR(0x2FF, "IA32_MTRR_DEF_TYPE")
    public static let ia32PerfGlobalCtrl = MSR(0x38F, "IA32_PERF_GLOBAL_CTRL")

    // SDM Appendix A "VMX Capability Reporting Facility".
    public static let ia32VMXBasic = MSR(0x480, "IA32_VMX_BASIC")
    public static let ia32VMXPinbasedCtls = MSR(0x481, "IA32_VMX_PINBASED_CTLS")
    public static let ia32VMXProcbasedCtls = MSR(0x482, "IA32_VMX_PROCBASED_CTLS")
    public static let ia32VMXExitCtls = MSR(0x483, "IA32_VMX_EXIT_CTLS")
    public static let ia32VMXEntryCtls = MSR(0x484, "IA32_VMX_ENTRY_CTLS")
    public static let ia32VMXMisc = MSR(0x485, "IA32_VMX_MISC")
    public static let ia32VMXCR0Fixed0 = MSR(0x486, "IA32_VMX_CR0_FIXED0")
    public static let ia32VMXCR0Fixed1 = MSR(0x487, "IA32_VMX_CR0_FIXED1")
    public static let ia32VMXCR4Fixed0 = MSR(0x488, "IA32_VMX_CR4_FIXED0")
    public static let ia32VMXCR4Fixed1 = MSR(0x489, "IA32_VMX_CR4_FIXED1")
    public static let ia32VMXVMCSEnum = MSR(0x48A, "IA32_VMX_VMCS_ENUM")
    public static let ia32VMXProcbasedCtls2 = MSR(0x48B, "IA32_VMX_PROCBASED_CTLS2")
    public static let ia32VMXEPTVPIDCap = MSR(0x48C, "IA32_VMX_EPT_VPID_CAP")
    public static let ia32VMXTruePinbasedCtls = MSR(0x48D, "IA32_VMX_TRUE_PINBASED_CTLS")
    public static let ia32VMXTrueProcbasedCtls = MSR(0x48E, "IA32_VMX_TRUE_PROCBASED_CTLS")
    public static let ia32VMXTrueExitCtls = MSR(0x48F, "IA32_VMX_TRUE_EXIT_CTLS")
    public static let ia32VMXTrueEntryCtls = MSR(0x490, "IA32_VMX_TRUE_ENTRY_CTLS")
    public static let ia32VMXVMFunc = MSR(0x491, "IA32_VMX_VMFUNC")
    public static let ia32VMXProcbasedCtls3 = MSR(0x492, "IA32_VMX_PROCBASED_CTLS3")
    public static let ia32VMXExitCtls2 = MSR(0x493, "IA32_VMX_EXIT_CTLS2")

    public static let ia32RTITCtl = MSR(0x570, "IA32_RTIT_CTL")
    public static let ia32UCET = MSR(0x6A0, "IA32_U_CET")
    public static let ia32SCET = MSR(0x6A2, "IA32_S_CET")
    public static let ia32TSCDeadline = MSR(0x6E0, "IA32_TSC_DEADLINE")
    public static let ia32PKRS = MSR(0x6E1, "IA32_PKRS")
    public static let ia32BNDCFGS = MSR(0xD90, "IA32_BNDCFGS")
    public static let ia32XSS = MSR(0xDA0, "IA32_XSS")
    public static let ia32LBRCtl = MSR(0x14CE, "IA32_LBR_CTL")

    public static let ia32EFER = MSR(0xC000_0080, "IA32_EFER")
    public static let ia32STAR = MSR(0xC000_0081, "IA32_STAR")
    public static let ia32LSTAR = MSR(0xC000_0082, "IA32_LSTAR")
    public static let ia32CSTAR = MSR(0xC000_0083, "IA32_CSTAR")
    public static let ia32FMask = MSR(0xC000_0084, "IA32_FMASK")
    public static let ia32FSBase = MSR(0xC000_0100, "IA32_FS_BASE")
    public static let ia32GSBase = MSR(0xC000_0101, "IA32_GS_BASE")
    public static let ia32KernelGSBase = MSR(0xC000_0102, "IA32_KERNEL_GS_BASE")
    public static let ia32TSCAux = MSR(0xC000_0103, "IA32_TSC_AUX")

    /// Every MSR named above, in the order declared: the one list `forEach`,
    /// `named` and `count` read. MSRTests checks it against the declarations.
    public static let all: [_ of MSR] = [
        ia32TimeStampCounter, ia32PlatformID, ia32APICBase, ia32FeatureControl, ia32TSCAdjust, ia32SpecCtrl,
        ia32PredCmd, ia32BIOSUpdtTrig, ia32BIOSSignID, ia32MPerf, ia32APerf, ia32MTRRCap, ia32ArchCapabilities,
        ia32FlushCmd, ia32SysenterCS, ia32SysenterESP, ia32SysenterEIP, ia32MCGCap, ia32MCGStatus, ia32MiscEnable,
        ia32DebugCtl, ia32MTRRPhysBase0, ia32MTRRPhysMask0, ia32MTRRFix64K00000, ia32MTRRFix16K80000,
        ia32MTRRFix16KA0000, ia32MTRRFix4KC0000, ia32MTRRFix4KF8000, ia32PAT, ia32MTRRDefType, ia32PerfGlobalCtrl,
        ia32VMXBasic, ia32VMXPinbasedCtls, ia32VMXProcbasedCtls, ia32VMXExitCtls, ia32VMXEntryCtls, ia32VMXMisc,
        ia32VMXCR0Fixed0, ia32VMXCR0Fixed1, ia32VMXCR4Fixed0, ia32VMXCR4Fixed1, ia32VMXVMCSEnum,
        ia32VMXProcbasedCtls2, ia32VMXEPTVPIDCap, ia32VMXTruePinbasedCtls, ia32VMXTrueProcbasedCtls,
        ia32VMXTrueExitCtls, ia32VMXTrueEntryCtls, ia32VMXVMFunc, ia32VMXProcbasedCtls3, ia32VMXExitCtls2,
        ia32RTITCtl, ia32UCET, ia32SCET, ia32TSCDeadline, ia32PKRS, ia32BNDCFGS, ia32XSS, ia32LBRCtl, ia32EFER,
        ia32STAR, ia32LSTAR, ia32CSTAR, ia32FMask, ia32FSBase, ia32GSBase, ia32KernelGSBase, ia32TSCAux
    ]
    /// How many MSRs the table names.
    public static var count: Int { all.count }

    /// Calls `body` with every MSR of the table.
    public static func forEach(_ body: (MSR) -> Void) {
        for i in all.indices { body(all[i]) }
    }

    /// The named MSR at `address`, or nil: lets reports print "IA32_LSTAR" for C0000082H.
    public static func named(_ address: UInt32) -> MSR? {
        var found: MSR? = nil
        forEach { msr in if msr.address == address { found = msr } }
        return found
    }
}

/// IA32_FEATURE_CONTROL (MSR 3AH): whether firmware lets VMXON run.
/// SDM 24.7 "Enabling and Entering VMX Operation": VMXON #GPs unless the lock
/// bit is set and the enable bit for the current mode is set; once locked,
/// the MSR cannot be written until reset.
@frozen
public struct FeatureControl: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0.
    public static let lockBit: UInt64 = 1 << 0
    /// Bit 1: VMXON allowed inside SMX operation.
    public static let vmxInsideSMXBit: UInt64 = 1 << 1
    /// Bit 2: VMXON allowed outside SMX operation.
    public static let vmxOutsideSMXBit: UInt64 = 1 << 2

    public var isLocked: Bool { rawValue & Self.lockBit != 0 }
    public var vmxInsideSMX: Bool { rawValue & Self.vmxInsideSMXBit != 0 }
    public var vmxOutsideSMX: Bool { rawValue & Self.vmxOutsideSMXBit != 0 }

    /// The value to write to lock the MSR with VMX enabled outside SMX,
    /// keeping every other bit firmware set.
    public var lockedWithVMXOutsideSMX: FeatureControl {
        FeatureControl(rawValue: rawValue | Self.lockBit | Self.vmxOutsideSMXBit)
    }

    /// What enabling VMX outside SMX needs, given this value.
    public enum VMXEnablement: Equatable, Sendable {
        /// Locked with VMX outside SMX: nothing to write.
        case enabled
        /// Unlocked: write this value (it locks the MSR) before VMXON.
        case needsWrite(FeatureControl)
        /// Locked without VMX outside SMX: VMXON would #GP until reset.
        case disabledByFirmware
    }

    public var vmxEnablement: VMXEnablement {
        if isLocked { return vmxOutsideSMX ? .enabled : .disabledByFirmware }
        return .needsWrite(lockedWithVMXOutsideSMX)
    }
}

/// IA32_EFER (MSR C0000080H). SDM Vol. 3A 2.2.1 "Extended Feature Enable Register".
@frozen
public struct EFER: BitFlags {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: SYSCALL/SYSRET enable.
    public static let sce = EFER(rawValue: 1 << 0)
    /// Bit 8: IA-32e mode enable.
    public static let lme = EFER(rawValue: 1 << 8)
    /// Bit 10: IA-32e mode active (set by the CPU when paging turns on with LME).
    public static let lma = EFER(rawValue: 1 << 10)
    /// Bit 11: execute-disable bit enable.
    public static let nxe = EFER(rawValue: 1 << 11)
}
