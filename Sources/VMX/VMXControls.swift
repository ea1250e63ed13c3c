// VM-execution, VM-exit and VM-entry control sets, and their adjustment to
// what the CPU allows. SDM 25.6 "VM-Execution Control Fields", 25.7.1
// "VM-Exit Controls", 25.8.1 "VM-Entry Controls", and Appendix A.3-A.5
// (allowed 0-settings in bits 31:0, allowed 1-settings in bits 63:32).

import X86Arch

/// Which 32-bit control field a set belongs to.
public enum VMXControlKind: Sendable, Equatable {
    case pinBased, primaryProcessorBased, secondaryProcessorBased, vmExit, vmEntry

    public var name: StaticString {
        switch self {
        case .pinBased: return "pin-based VM-execution controls"
        case .primaryProcessorBased: return "primary processor-based VM-execution controls"
        case .secondaryProcessorBased: return "secondary processor-based VM-execution controls"
        case .vmExit: return "primary VM-exit controls"
        case .vmEntry: return "VM-entry controls"
        }
    }

    /// The capability MSR to read for this set. The TRUE MSRs exist, and must be
    /// used to learn which default1 controls may be 0, iff IA32_VMX_BASIC bit 55
    /// is 1; the secondary controls have no TRUE variant.
    /// SDM A.2 "Reserved Controls and Default Settings".
    public func capabilityMSR(trueControls: Bool) -> MSR {
        switch self {
        case .pinBased: return trueControls ? .ia32VMXTruePinbasedCtls : .ia32VMXPinbasedCtls
        case .primaryProcessorBased: return trueControls ? .ia32VMXTrueProcbasedCtls : .ia32VMXProcbasedCtls
        case .secondaryProcessorBased: return .ia32VMXProcbasedCtls2
        case .vmExit: return trueControls ? .ia32VMXTrueExitCtls : .ia32VMXExitCtls
        case .vmEntry: return trueControls ? .ia32VMXTrueEntryCtls : .ia32VMXEntryCtls
        }
    }

    public func capabilityMSR(basic: VMXBasic) -> MSR { capabilityMSR(trueControls: basic.hasTrueControls) }

    /// The SDM name of bit `bit` of this set, or nil for a reserved bit.
    public func name(ofBit bit: Int) -> StaticString? {
        switch self {
        case .pinBased: return PinBasedControls.name(ofBit: bit)
        case .primaryProcessorBased: return PrimaryProcessorBasedControls.name(ofBit: bit)
        case .secondaryProcessorBased: return SecondaryProcessorBasedControls.name(ofBit: bit)
        case .vmExit: return VMExitControls.name(ofBit: bit)
        case .vmEntry: return VMEntryControls.name(ofBit: bit)
        }
    }
}

/// A 32-bit VMX control field as an option set with named bits.
public protocol VMXControlSet: BitFlags where RawValue == UInt32 {
    static var kind: VMXControlKind { get }
    /// The SDM name of bit `bit`, or nil for a reserved bit.
    static func name(ofBit bit: Int) -> StaticString?
}

/// Pin-based VM-execution controls. SDM 25.6.1, Table 25-5.
@frozen
public struct PinBasedControls: VMXControlSet {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static var kind: VMXControlKind { .pinBased }

    public static let externalInterruptExiting = Self(rawValue: 1 << 0)
    public static let nmiExiting = Self(rawValue: 1 << 3)
    public static let virtualNMIs = Self(rawValue: 1 << 5)
    public static let activatePreemptionTimer = Self(rawValue: 1 << 6)
    public static let processPostedInterrupts = Self(rawValue: 1 << 7)

    public static func name(ofBit bit: Int) -> StaticString? {
        switch bit {
        case 0: return "External-interrupt exiting"
        case 3: return "NMI exiting"
        case 5: return "Virtual NMIs"
        case 6: return "Activate VMX-preemption timer"
        case 7: return "Process posted interrupts"
        default: return nil
        }
    }
}

/// Primary processor-based VM-execution controls. SDM 25.6.2, Table 25-6.
@frozen
public struct PrimaryProcessorBasedControls: VMXControlSet {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static var kind: VMXControlKind { .primaryProcessorBased }

    public static let interruptWindowExiting = Self(rawValue: 1 << 2)
    public static let useTSCOffsetting = Self(rawValue: 1 << 3)
    public static let hltExiting = Self(rawValue: 1 << 7)
    public static let invlpgExiting = Self(rawValue: 1 << 9)
    public static let mwaitExiting = Self(rawValue: 1 << 10)
    public static let rdpmcExiting = Self(rawValue: 1 << 11)
    public static let rdtscExiting = Self(rawValue: 1 << 12)
    public static let cr3LoadExiting = Self(rawValue: 1 << 15)
    public static let cr3StoreExiting = Self(rawValue: 1 << 16)
    public static let activateTertiaryControls = Self(rawValue: 1 << 17)
    public static let cr8LoadExiting = Self(rawValue: 1 << 19)
    public static let cr8StoreExiting = Self(rawValue: 1 << 20)
    public static let useTPRShadow = Self(rawValue: 1 << 21)
    public static let nmiWindowExiting = Self(rawValue: 1 << 22)
    public static let movDRExiting = Self(rawValue: 1 << 23)
    public static let unconditionalIOExiting = Self(rawValue: 1 << 24)
    public static let useIOBitmaps = Self(rawValue: 1 << 25)
    public static let monitorTrapFlag = Self(rawValue: 1 << 27)
    public static let useMSRBitmaps = Self(rawValue: 1 << 28)
    public static let monitorExiting = Self(rawValue: 1 << 29)
    public static let pauseExiting = Self(rawValue: 1 << 30)
    public static let activateSecondaryControls = Self(rawValue: 1 << 31)

    public static func name(ofBit bit: Int) -> StaticString? {
        switch bit {
        case 2: return "Interrupt-window exiting"
        case 3: return "Use TSC offsetting"
        case 7: return "HLT exiting"
        case 9: return "INVLPG exiting"
        case 10: return "MWAIT exiting"
        case 11: return "RDPMC exiting"
        case 12: return "RDTSC exiting"
        case 15: return "CR3-load exiting"
        case 16: return "CR3-store exiting"
        case 17: return "Activate tertiary controls"
        case 19: return "CR8-load exiting"
        case 20: return "CR8-store exiting"
        case 21: return "Use TPR shadow"
        case 22: return "NMI-window exiting"
        case 23: return "MOV-DR exiting"
        case 24: return "Unconditional I/O exiting"
        case 25: return "Use I/O bitmaps"
        case 27: return "Monitor trap flag"
        case 28: return "Use MSR bitmaps"
        case 29: return "MONITOR exiting"
        case 30: return "PAUSE exiting"
        case 31: return "Activate secondary controls"
        default: return nil
        }
    }
}

/// Secondary processor-based VM-execution controls. SDM 25.6.2, Table 25-7.
@frozen
public struct SecondaryProcessorBasedControls: VMXControlSet {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static var kind: VMXControlKind { .secondaryProcessorBased }

    public static let virtualizeAPICAccesses = Self(rawValue: 1 << 0)
    public static let enableEPT = Self(rawValue: 1 << 1)
    public static let descriptorTableExiting = Self(rawValue: 1 << 2)
    public static let enableRDTSCP = Self(rawValue: 1 << 3)
    public static let virtualizeX2APICMode = Self(rawValue: 1 << 4)
    public static let enableVPID = Self(rawValue: 1 << 5)
    public static let wbinvdExiting = Self(rawValue: 1 << 6)
    public static let unrestrictedGuest = Self(rawValue: 1 << 7)
    public static let apicRegisterVirtualization = Self(rawValue: 1 << 8)
    public static let virtualInterruptDelivery = Self(rawValue: 1 << 9)
    public static let pauseLoopExiting = Self(rawValue: 1 << 10)
    public static let rdrandExiting = Self(rawValue: 1 << 11)
    public static let enableINVPCID = Self(rawValue: 1 << 12)
    public static let enableVMFunctions = Self(rawValue: 1 << 13)
    public static let vmcsShadowing = Self(rawValue: 1 << 14)
    public static let enableENCLSExiting = Self(rawValue: 1 << 15)
    public static let rdseedExiting = Self(rawValue: 1 << 16)
    public static let enablePML = Self(rawValue: 1 << 17)
    public static let eptViolationVE = Self(rawValue: 1 << 18)
    public static let concealVMXFromPT = Self(rawValue: 1 << 19)
    public static let enableXSAVES = Self(rawValue: 1 << 20)
    public static let pasidTranslation = Self(rawValue: 1 << 21)
    public static let modeBasedExecuteControl = Self(rawValue: 1 << 22)
    public static let subPageWritePermissions = Self(rawValue: 1 << 23)
    public static let ptUsesGuestPhysicalAddresses = Self(rawValue: 1 << 24)
    public static let useTSCScaling = Self(rawValue: 1 << 25)
    public static let enableUserWaitAndPause = Self(rawValue: 1 << 26)
    public static let enablePCONFIG = Self(rawValue: 1 << 27)
    public static let enableENCLVExiting = Self(rawValue: 1 << 28)
    public static let busLockDetection = Self(rawValue: 1 << 30)
    public static let instructionTimeout = Self(rawValue: 1 << 31)

    public static func name(ofBit bit: Int) -> StaticString? {
        switch bit {
        case 0: return "Virtualize APIC accesses"
        case 1: return "Enable EPT"
        case 2: return "Descriptor-table exiting"
        case 3: return "Enable RDTSCP"
        case 4: return "Virtualize x2APIC mode"
        case 5: return "Enable VPID"
        case 6: return "WBINVD exiting"
        case 7: return "Unrestricted guest"
        case 8: return "APIC-register virtualization"
        case 9: return "Virtual-interrupt delivery"
        case 10: return "PAUSE-loop exiting"
        case 11: return "RDRAND exiting"
        case 12: return "Enable INVPCID"
        case 13: return "Enable VM functions"
        case 14: return "VMCS shadowing"
        case 15: return "Enable ENCLS exiting"
        case 16: return "RDSEED exiting"
        case 17: return "Enable PML"
        case 18: return "EPT-violation #VE"
        case 19: return "Conceal VMX from PT"
        case 20: return "Enable XSAVES/XRSTORS"
        case 21: return "PASID translation"
        case 22: return "Mode-based execute control for EPT"
        case 23: return "Sub-page write permissions for EPT"
        case 24: return "Intel PT uses guest physical addresses"
        case 25: return "Use TSC scaling"
        case 26: return "Enable user wait and pause"
        case 27: return "Enable PCONFIG"
        case 28: return "Enable ENCLV exiting"
        case 30: return "VMM bus-lock detection"
        case 31: return "Instruction timeout"
        default: return nil
        }
    }
}

/// Tertiary processor-based VM-execution controls (a 64-bit field whose
/// capability MSR reports allowed 1-settings only). SDM 25.6.2, Table 25-8.
@frozen
public struct TertiaryProcessorBasedControls: BitFlags {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let loadIWKeyExiting = Self(rawValue: 1 << 0)
    public static let enableHLAT = Self(rawValue: 1 << 1)
    public static let eptPagingWriteControl = Self(rawValue: 1 << 2)
    public static let guestPagingVerification = Self(rawValue: 1 << 3)
    public static let ipiVirtualization = Self(rawValue: 1 << 4)
    public static let virtualizeIA32SpecCtrl = Self(rawValue: 1 << 7)
}

/// Primary VM-exit controls. SDM 25.7.1, Table 25-14.
@frozen
public struct VMExitControls: VMXControlSet {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static var kind: VMXControlKind { .vmExit }

    public static let saveDebugControls = Self(rawValue: 1 << 2)
    public static let hostAddressSpaceSize = Self(rawValue: 1 << 9)
    public static let loadIA32PerfGlobalCtrl = Self(rawValue: 1 << 12)
    public static let acknowledgeInterruptOnExit = Self(rawValue: 1 << 15)
    public static let saveIA32PAT = Self(rawValue: 1 << 18)
    public static let loadIA32PAT = Self(rawValue: 1 << 19)
    public static let saveIA32EFER = Self(rawValue: 1 << 20)
    public static let loadIA32EFER = Self(rawValue: 1 << 21)
    public static let savePreemptionTimerValue = Self(rawValue: 1 << 22)
    public static let clearIA32BNDCFGS = Self(rawValue: 1 << 23)
    public static let concealVMXFromPT = Self(rawValue: 1 << 24)
    public static let clearIA32RTITCtl = Self(rawValue: 1 << 25)
    public static let clearIA32LBRCtl = Self(rawValue: 1 << 26)
    public static let clearUINV = Self(rawValue: 1 << 27)
    public static let loadCETState = Self(rawValue: 1 << 28)
    public static let loadPKRS = Self(rawValue: 1 << 29)
    public static let saveIA32PerfGlobalCtrl = Self(rawValue: 1 << 30)
    public static let activateSecondaryControls = Self(rawValue: 1 << 31)

    public static func name(ofBit bit: Int) -> StaticString? {
        switch bit {
        case 2: return "Save debug controls"
        case 9: return "Host address-space size"
        case 12: return "Load IA32_PERF_GLOBAL_CTRL"
        case 15: return "Acknowledge interrupt on exit"
        case 18: return "Save IA32_PAT"
        case 19: return "Load IA32_PAT"
        case 20: return "Save IA32_EFER"
        case 21: return "Load IA32_EFER"
        case 22: return "Save VMX-preemption timer value"
        case 23: return "Clear IA32_BNDCFGS"
        case 24: return "Conceal VMX from PT"
        case 25: return "Clear IA32_RTIT_CTL"
        case 26: return "Clear IA32_LBR_CTL"
        case 27: return "Clear UINV"
        case 28: return "Load CET state"
        case 29: return "Load PKRS"
        case 30: return "Save IA32_PERF_GLOBAL_CTRL"
        case 31: return "Activate secondary controls"
        default: return nil
        }
    }
}

/// VM-entry controls. SDM 25.8.1, Table 25-16.
@frozen
public struct VMEntryControls: VMXControlSet {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static var kind: VMXControlKind { .vmEntry }

    public static let loadDebugControls = Self(rawValue: 1 << 2)
    public static let ia32eModeGuest = Self(rawValue: 1 << 9)
    public static let entryToSMM = Self(rawValue: 1 << 10)
    public static let deactivateDualMonitorTreatment = Self(rawValue: 1 << 11)
    public static let loadIA32PerfGlobalCtrl = Self(rawValue: 1 << 13)
    public static let loadIA32PAT = Self(rawValue: 1 << 14)
    public static let loadIA32EFER = Self(rawValue: 1 << 15)
    public static let loadIA32BNDCFGS = Self(rawValue: 1 << 16)
    public static let concealVMXFromPT = Self(rawValue: 1 << 17)
    public static let loadIA32RTITCtl = Self(rawValue: 1 << 18)
    public static let loadUINV = Self(rawValue: 1 << 19)
    public static let loadCETState = Self(rawValue: 1 << 20)
    public static let loadIA32LBRCtl = Self(rawValue: 1 << 21)
    public static let loadPKRS = Self(rawValue: 1 << 22)
    public static let loadFRED = Self(rawValue: 1 << 23)

    public static func name(ofBit bit: Int) -> StaticString? {
        switch bit {
        case 2: return "Load debug controls"
        case 9: return "IA-32e mode guest"
        case 10: return "Entry to SMM"
        case 11: return "Deactivate dual-monitor treatment"
        case 13: return "Load IA32_PERF_GLOBAL_CTRL"
        case 14: return "Load IA32_PAT"
        case 15: return "Load IA32_EFER"
        case 16: return "Load IA32_BNDCFGS"
        case 17: return "Conceal VMX from PT"
        case 18: return "Load IA32_RTIT_CTL"
        case 19: return "Load UINV"
        case 20: return "Load CET state"
        case 21: return "Load guest IA32_LBR_CTL"
        case 22: return "Load PKRS"
        case 23: return "Load FRED"
        default: return nil
        }
    }
}

/// Required controls the CPU cannot set to 1.
public struct ControlAdjustmentError: Error, Equatable, Sendable {
    /// Which control field.
    public let kind: VMXControlKind
    /// The required bits whose allowed 1-setting is 0 (or all required
    /// secondary bits, when the CPU has no secondary controls at all).
    public let missing: UInt32

    public init(kind: VMXControlKind, missing: UInt32) { self.kind = kind; self.missing = missing }

    /// Calls `body` with the SDM name of every missing bit (reserved bits read "reserved bit").
    public func forEachMissingBitName(_ body: (StaticString) -> Void) {
        var bits = missing
        while bits != 0 {
            let bit = bits.trailingZeroBitCount
            body(kind.name(ofBit: bit) ?? "reserved bit")
            bits &= bits - 1
        }
    }
}

/// What a capability MSR says about one control field.
/// SDM A.3 "VM-Execution Controls" (and A.4, A.5): bits 31:0 are the allowed
/// 0-settings (a 1 there means the control must be 1); bits 63:32 are the
/// allowed 1-settings (a 0 there means the control must be 0).
@frozen
public struct VMXControlCapability<Controls: VMXControlSet>: Equatable, Sendable {
    /// Controls that must be 1 (low half of the MSR).
    public let mustBeOne: Controls
    /// Controls that may be 1 (high half of the MSR).
    public let mayBeOne: Controls

    public init(msrValue: UInt64) {
        mustBeOne = Controls(rawValue: UInt32(truncatingIfNeeded: msrValue))
        mayBeOne = Controls(rawValue: UInt32(truncatingIfNeeded: msrValue >> 32))
    }

    public var msrValue: UInt64 { UInt64(mayBeOne.rawValue) << 32 | UInt64(mustBeOne.rawValue) }

    /// Whether every control in `controls` may be 1.
    public func allows(_ controls: Controls) -> Bool { mayBeOne.isSuperset(of: controls) }

    /// Whether `value` satisfies both halves of the MSR, so VM entry accepts it.
    public func isValid(_ value: Controls) -> Bool {
        value.isSuperset(of: mustBeOne) && mayBeOne.isSuperset(of: value)
    }

    /// The value to write: every required control, the optional ones the CPU
    /// allows, and the ones the CPU forces to 1. Throws, naming the set and
    /// the bits, when a required control may not be 1.
    public func adjust(required: Controls, optional: Controls = .empty) throws(ControlAdjustmentError) -> Controls {
        let missing = required.rawValue & ~mayBeOne.rawValue
        if missing != 0 { throw ControlAdjustmentError(kind: Controls.kind, missing: missing) }
        return Controls(rawValue: required.rawValue | (optional.rawValue & mayBeOne.rawValue) | mustBeOne.rawValue)
    }
}

/// A value for each of the five 32-bit control fields.
public struct VMXControlSettings: Equatable, Sendable {
    public var pinBased: PinBasedControls
    public var primary: PrimaryProcessorBasedControls
    public var secondary: SecondaryProcessorBasedControls
    public var exit: VMExitControls
    public var entry: VMEntryControls

    public init(pinBased: PinBasedControls = .empty, primary: PrimaryProcessorBasedControls = .empty,
                secondary: SecondaryProcessorBasedControls = .empty, exit: VMExitControls = .empty,
                entry: VMEntryControls = .empty) {
        self.pinBased = pinBased; self.primary = primary; self.secondary = secondary
        self.exit = exit; self.entry = entry
    }
}
