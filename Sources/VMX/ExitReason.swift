/// A basic VM-exit reason (bits 15:0 of the exit-reason field).
///
/// A struct over the raw number rather than a closed enum, so that a reason
/// this code does not know (a newer CPU, a reserved number) is still a value
/// the exit dispatcher can report instead of trapping.
/// SDM Appendix C "VMX Basic Exit Reasons", Table C-1.

import X86Arch

@frozen
public struct ExitReason: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let exceptionOrNMI = ExitReason(rawValue: 0)
    public static let externalInterrupt = ExitReason(rawValue: 1)
    public static let tripleFault = ExitReason(rawValue: 2)
    public static let initSignal = ExitReason(rawValue: 3)
    public static let startupIPI = ExitReason(rawValue: 4)
    public static let ioSMI = ExitReason(rawValue: 5)
    public static let otherSMI = ExitReason(rawValue: 6)
    public static let interruptWindow = ExitReason(rawValue: 7)
    public static let nmiWindow = ExitReason(rawValue: 8)
    public static let taskSwitch = ExitReason(rawValue: 9)
    public static let cpuid = ExitReason(rawValue: 10)
    public static let getsec = ExitReason(rawValue: 11)
    public static let hlt = ExitReason(rawValue: 12)
    public static let invd = ExitReason(rawValue: 13)
    public static let invlpg = ExitReason(rawValue: 14)
    public static let rdpmc = ExitReason(rawValue: 15)
    public static let rdtsc = ExitReason(rawValue: 16)
    public static let rsm = ExitReason(rawValue: 17)
    public static let vmcall = ExitReason(rawValue: 18)
    public static let vmclear = ExitReason(rawValue: 19)
    public static let vmlaunch = ExitReason(rawValue: 20)
    public static let vmptrld = ExitReason(rawValue: 21)
    public static let vmptrst = ExitReason(rawValue: 22)
    public static let vmread = ExitReason(rawValue: 23)
    public static let vmresume = ExitReason(rawValue: 24)
    public static let vmwrite = ExitReason(rawValue: 25)
    public static let vmxoff = ExitReason(rawValue: 26)
    public static let vmxon = ExitReason(rawValue: 27)
    public static let controlRegisterAccess = ExitReason(rawValue: 28)
    public static let movDR = ExitReason(rawValue: 29)
    public static let ioInstruction = ExitReason(rawValue: 30)
    public static let rdmsr = ExitReason(rawValue: 31)
    public static let wrmsr = ExitReason(rawValue: 32)
    public static let entryFailureInvalidGuestState = ExitReason(rawValue: 33)
    public static let entryFailureMSRLoading = ExitReason(rawValue: 34)
    public static let mwait = ExitReason(rawValue: 36)
    public static let monitorTrapFlag = ExitReason(rawValue: 37)
    public static let monitor = ExitReason(rawValue: 39)
    public static let pause = ExitReason(rawValue: 40)
    public static let entryFailureMachineCheck = ExitReason(rawValue: 41)
    public static let tprBelowThreshold = ExitReason(rawValue: 43)
    public static let apicAccess = ExitReason(rawValue: 44)
    public static let virtualizedEOI = ExitReason(rawValue: 45)
    public static let gdtrOrIDTRAccess = ExitReason(rawValue: 46)
    public static let ldtrOrTRAccess = ExitReason(rawValue: 47)
    public static let eptViolation = ExitReason(rawValue: 48)
    public static let eptMisconfiguration = ExitReason(rawValue: 49)
    public static let invept = ExitReason(rawValue: 50)
    public static let rdtscp = ExitReason(rawValue: 51)
    public static let preemptionTimerExpired = ExitReason(rawValue: 52)
    public static let invvpid = ExitReason(rawValue: 53)
    public static let wbinvd = ExitReason(rawValue: 54)
    public static let xsetbv = ExitReason(rawValue: 55)
    public static let apicWrite = ExitReason(rawValue: 56)
    public static let rdrand = ExitReason(rawValue: 57)
    public static let invpcid = ExitReason(rawValue: 58)
    public static let vmfunc = ExitReason(rawValue: 59)
    public static let encls = ExitReason(rawValue: 60)
    public static let rdseed = ExitReason(rawValue: 61)
    public static let pageModificationLogFull = ExitReason(rawValue: 62)
    public static let xsaves = ExitReason(rawValue: 63)
    public static let xrstors = ExitReason(rawValue: 64)
    public static let pconfig = ExitReason(rawValue: 65)
    public static let sppRelatedEvent = ExitReason(rawValue: 66)
    public static let umwait = ExitReason(rawValue: 67)
    public static let tpause = ExitReason(rawValue: 68)
    public static let loadiwkey = ExitReason(rawValue: 69)
    public static let enclv = ExitReason(rawValue: 70)
    public static let enqcmdPASIDTranslationFailure = ExitReason(rawValue: 72)
    public static let enqcmdsPASIDTranslationFailure = ExitReason(rawValue: 73)
    public static let busLock = ExitReason(rawValue: 74)
    public static let instructionTimeout = ExitReason(rawValue: 75)
    public static let seamcall = ExitReason(rawValue: 76)
    public static let tdcall = ExitReason(rawValue: 77)
    public static let rdmsrlist = ExitReason(rawValue: 78)
    public static let wrmsrlist = ExitReason(rawValue: 79)
    public static let urdmsr = ExitReason(rawValue: 80)
    public static let uwrmsr = ExitReason(rawValue: 81)
    public static let rdmsrImmediate = ExitReason(rawValue: 84)
    public static let wrmsrnsImmediate = ExitReason(rawValue: 85)

    /// The largest basic exit reason Table C-1 defines; numbers above it are unknown.
    public static let highestKnown: UInt16 = 85

    /// The SDM's name for this reason, or nil for a reserved or unknown number.
    public var knownName: StaticString? {
        switch rawValue {
        case 0: return "Exception or non-maskable interrupt (NMI)"
        case 1: return "External interrupt"
        case 2: return "Triple fault"
        case 3: return "INIT signal"
        case 4: return "Start-up IPI (SIPI)"
        case 5: return "I/O system-management interrupt (SMI)"
        case 6: return "Other SMI"
        case 7: return "Interrupt window"
        case 8: return "NMI window"
        case 9: return "Task switch"
        case 10: return "CPUID"
        case 11: return "GETSEC"
        case 12: return "HLT"
        case 13: return "INVD"
        case 14: return "INVLPG"
        case 15: return "RDPMC"
        case 16: return "RDTSC"
        case 17: return "RSM"
        case 18: return "VMCALL"
        case 19: return "VMCLEAR"
        case 20: return "VMLAUNCH"
        case 21: return "VMPTRLD"
        case 22: return "VMPTRST"
        case 23: return "VMREAD"
        case 24: return "VMRESUME"
        case 25: return "VMWRITE"
        case 26: return "VMXOFF"
        case 27: return "VMXON"
        case 28: return "Control-register accesses"
        case 29: return "MOV DR"
        case 30: return "I/O instruction"
        case 31: return "RDMSR"
        case 32: return "WRMSR"
        case 33: return "VM-entry failure due to invalid guest state"
        case 34: return "VM-entry failure due to MSR loading"
        case 36: return "MWAIT"
        case 37: return "Monitor trap flag"
        case 39: return "MONITOR"
        case 40: return "PAUSE"
        case 41: return "VM-entry failure due to machine-check event"
        case 43: return "TPR below threshold"
        case 44: return "APIC access"
        case 45: return "Virtualized EOI"
        case 46: return "Access to GDTR or IDTR"
        case 47: return "Access to LDTR or TR"
        case 48: return "EPT violation"
        case 49: return "EPT misconfiguration"
        case 50: return "INVEPT"
        case 51: return "RDTSCP"
        case 52: return "VMX-preemption timer expired"
        case 53: return "INVVPID"
        case 54: return "WBINVD or WBNOINVD"
        case 55: return "XSETBV"
        case 56: return "APIC write"
        case 57: return "RDRAND"
        case 58: return "INVPCID"
        case 59: return "VMFUNC"
        case 60: return "ENCLS"
        case 61: return "RDSEED"
        case 62: return "Page-modification log full"
        case 63: return "XSAVES"
        case 64: return "XRSTORS"
        case 65: return "PCONFIG"
        case 66: return "SPP-related event"
        case 67: return "UMWAIT"
        case 68: return "TPAUSE"
        case 69: return "LOADIWKEY"
        case 70: return "ENCLV"
        case 72: return "ENQCMD PASID translation failure"
        case 73: return "ENQCMDS PASID translation failure"
        case 74: return "Bus lock"
        case 75: return "Instruction timeout"
        case 76: return "SEAMCALL"
        case 77: return "TDCALL"
        case 78: return "RDMSRLIST"
        case 79: return "WRMSRLIST"
        case 80: return "URDMSR"
        case 81: return "UWRMSR"
        case 84: return "RDMSR with immediate operand"
        case 85: return "WRMSRNS with immediate operand"
        default: return nil
        }
    }

    /// A printable name that is never empty: unknown numbers read "unknown exit reason".
    public var name: StaticString { knownName ?? "unknown exit reason" }

    public var isKnown: Bool { knownName != nil }

    /// Whether this reason is reported only by a failed VM entry (exit-reason bit 31 set).
    /// SDM 27.8 "VM-Entry Failure During or After Loading Guest State".
    public var isEntryFailure: Bool {
        self == .entryFailureInvalidGuestState || self == .entryFailureMSRLoading
            || self == .entryFailureMachineCheck
    }
}

/// The whole 32-bit exit-reason VMCS field, decoded.
/// SDM 25.9.1 "Basic VM-Exit Information", Table 25-18 "Format of Exit Reason".
@frozen
public struct ExitReasonField: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bits 15:0.
    public var basicReason: ExitReason { ExitReason(rawValue: UInt16(truncatingIfNeeded: rawValue)) }
    /// Bit 26: a bus lock was asserted while the guest ran ("VMM bus-lock detection").
    public var busLockDetected: Bool { rawValue & (1 << 26) != 0 }
    /// Bit 27: the exit was incident to enclave mode.
    public var enclaveMode: Bool { rawValue & (1 << 27) != 0 }
    /// Bit 28: a pending MTF VM exit (SMM VM exits only).
    public var pendingMTF: Bool { rawValue & (1 << 28) != 0 }
    /// Bit 29: the exit came from VMX root operation (SMM VM exits only).
    public var exitFromVMXRoot: Bool { rawValue & (1 << 29) != 0 }
    /// Bit 31: VM entry failed; the guest never ran and host state was loaded.
    public var isEntryFailure: Bool { rawValue & (1 << 31) != 0 }
}
