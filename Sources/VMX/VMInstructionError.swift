/// The VM-instruction error number a VMfailValid leaves in the VMCS
/// "VM-instruction error" field; it tells *why* a VMX instruction failed.
///
/// A struct over the raw number so that an unknown number (a newer CPU, a
/// corrupted read) is representable and reportable rather than a trap.
/// SDM 31.4 "VM Instruction Error Numbers", Table 31-1.

import X86Arch

@frozen
public struct VMInstructionError: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let vmcallInVMXRoot = VMInstructionError(rawValue: 1)
    public static let vmclearInvalidAddress = VMInstructionError(rawValue: 2)
    public static let vmclearVMXONPointer = VMInstructionError(rawValue: 3)
    public static let vmlaunchNonClearVMCS = VMInstructionError(rawValue: 4)
    public static let vmresumeNonLaunchedVMCS = VMInstructionError(rawValue: 5)
    public static let vmresumeAfterVMXOFF = VMInstructionError(rawValue: 6)
    public static let entryInvalidControlFields = VMInstructionError(rawValue: 7)
    public static let entryInvalidHostStateFields = VMInstructionError(rawValue: 8)
    public static let vmptrldInvalidAddress = VMInstructionError(rawValue: 9)
    public static let vmptrldVMXONPointer = VMInstructionError(rawValue: 10)
    public static let vmptrldIncorrectRevision = VMInstructionError(rawValue: 11)
    public static let unsupportedVMCSComponent = VMInstructionError(rawValue: 12)
    public static let vmwriteReadOnlyComponent = VMInstructionError(rawValue: 13)
    public static let vmxonInVMXRoot = VMInstructionError(rawValue: 15)
    public static let entryInvalidExecutiveVMCSPointer = VMInstructionError(rawValue: 16)
    public static let entryNonLaunchedExecutiveVMCS = VMInstructionError(rawValue: 17)
    public static let entryExecutiveVMCSPointerNotVMXONPointer = VMInstructionError(rawValue: 18)
    public static let vmcallNonClearVMCS = VMInstructionError(rawValue: 19)
    public static let vmcallInvalidExitControlFields = VMInstructionError(rawValue: 20)
    public static let vmcallIncorrectMSEGRevision = VMInstructionError(rawValue: 22)
    public static let vmxoffUnderDualMonitor = VMInstructionError(rawValue: 23)
    public static let vmcallInvalidSMMMonitorFeatures = VMInstructionError(rawValue: 24)
    public static let entryInvalidExecutiveVMCSControls = VMInstructionError(rawValue: 25)
    public static let entryEventsBlockedByMOVSS = VMInstructionError(rawValue: 26)
    public static let invalidINVEPTOrINVVPIDOperand = VMInstructionError(rawValue: 28)

    /// The description Table 31-1 gives for this number, or nil if it lists none.
    public var knownDescription: StaticString? {
        switch rawValue {
        case 1: return "VMCALL executed in VMX root operation"
        case 2: return "VMCLEAR with invalid physical address"
        case 3: return "VMCLEAR with VMXON pointer"
        case 4: return "VMLAUNCH with non-clear VMCS"
        case 5: return "VMRESUME with non-launched VMCS"
        case 6: return "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)"
        case 7: return "VM entry with invalid control field(s)"
        case 8: return "VM entry with invalid host-state field(s)"
        case 9: return "VMPTRLD with invalid physical address"
        case 10: return "VMPTRLD with VMXON pointer"
        case 11: return "VMPTRLD with incorrect VMCS revision identifier"
        case 12: return "VMREAD/VMWRITE from/to unsupported VMCS component"
        case 13: return "VMWRITE to read-only VMCS component"
        case 15: return "VMXON executed in VMX root operation"
        case 16: return "VM entry with invalid executive-VMCS pointer"
        case 17: return "VM entry with non-launched executive VMCS"
        case 18: return "VM entry with executive-VMCS pointer not VMXON pointer (when attempting to deactivate the dual-monitor treatment of SMIs and SMM)"
        case 19: return "VMCALL with non-clear VMCS (when attempting to activate the dual-monitor treatment of SMIs and SMM)"
        case 20: return "VMCALL with invalid VM-exit control fields"
        case 22: return "VMCALL with incorrect MSEG revision identifier (when attempting to activate the dual-monitor treatment of SMIs and SMM)"
        case 23: return "VMXOFF under dual-monitor treatment of SMIs and SMM"
        case 24: return "VMCALL with invalid SMM-monitor features (when attempting to activate the dual-monitor treatment of SMIs and SMM)"
        case 25: return "VM entry with invalid VM-execution control fields in executive VMCS (when attempting to return from SMM)"
        case 26: return "VM entry with events blocked by MOV SS"
        case 28: return "Invalid operand to INVEPT/INVVPID"
        default: return nil
        }
    }

    /// A printable description that is never empty.
    public var description: StaticString { knownDescription ?? "unknown VM-instruction error" }

    public var isKnown: Bool { knownDescription != nil }
}
