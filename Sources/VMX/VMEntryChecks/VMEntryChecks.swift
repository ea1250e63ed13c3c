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
//
// This file holds the shared types, the checker's helpers and its entry
// point; each SDM section's rules and checks are in the file named for it.

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

/// The SDM sections the checks come from, in the order VM entry applies them.
public enum VMEntryCheckSection: Sendable, Equatable {
    case vmread
    case executionControls, exitControls, entryControls
    case hostControlRegistersAndMSRs, hostSegments, addressSpaceSize
    case guestControlRegistersAndMSRs, guestSegments, guestDescriptorTables, guestRIPAndRFLAGS
    case guestNonRegisterState, guestPDPTEs

    /// The section's number and title.
    public var title: StaticString {
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

    /// The area whose failure the CPU reports; nil for a failed VMREAD.
    public var area: VMEntryCheckArea? {
        switch self {
        case .vmread: return nil
        case .executionControls, .exitControls, .entryControls: return .controls
        case .hostControlRegistersAndMSRs, .hostSegments, .addressSpaceSize: return .hostState
        case .guestControlRegistersAndMSRs, .guestSegments, .guestDescriptorTables, .guestRIPAndRFLAGS,
             .guestNonRegisterState, .guestPDPTEs: return .guestState
        }
    }
}

/// One VM-entry check: the SDM section that states it and the rule as one
/// readable statement. Each rule is a `static let` beside the checks of its
/// section, so it is written once; two rules are equal when their section and
/// statement are.
public struct VMEntryRule: Sendable, Equatable {
    public let section: VMEntryCheckSection
    /// The rule, as one readable statement.
    public let statement: StaticString

    init(_ section: VMEntryCheckSection, _ statement: StaticString) {
        self.section = section; self.statement = statement
    }

    /// The area whose failure the CPU reports for this rule; nil for
    /// `.vmreadFailed`, which depends on the field.
    public var area: VMEntryCheckArea? { section.area }

    // StaticString has no ==: compare the text. Copies of one rule share its
    // storage, so the address usually settles it.
    public static func == (a: VMEntryRule, b: VMEntryRule) -> Bool {
        a.section == b.section && a.statement.withUTF8Buffer { x in
            b.statement.withUTF8Buffer { y in
                guard x.count == y.count else { return false }
                if x.baseAddress == y.baseAddress { return true }
                for i in 0..<x.count where x[i] != y[i] { return false }
                return true
            }
        }
    }

    /// A VMREAD of a field the checker needs failed.
    public static let vmreadFailed = VMEntryRule(.vmread, "VMREAD of a field the check needs failed")
}

/// The first VM-entry rule the current VMCS breaks: which rule, and the field
/// and value that break it.
public struct VMEntryViolation: Error, Sendable {
    /// Which check failed.
    public let ruleID: VMEntryRule
    /// The VMCS encoding of the offending field.
    public let fieldEncoding: UInt32
    /// Its value (0 when the VMREAD failed).
    public let value: UInt64
    /// Why the VMREAD failed, for `.vmreadFailed`; nil otherwise.
    public let readError: VMXError?

    public init(ruleID: VMEntryRule, fieldEncoding: UInt32, value: UInt64, readError: VMXError? = nil) {
        self.ruleID = ruleID; self.fieldEncoding = fieldEncoding; self.value = value; self.readError = readError
    }

    /// The SDM name of the offending field, from the Appendix B tables (looked
    /// up here rather than carried, which keeps every throw in the checker small).
    public var fieldName: StaticString {
        var name: StaticString = "unknown VMCS field"
        VMCSFields.forEach { if $0.encoding.rawValue == fieldEncoding { name = $0.name } }
        return name
    }

    /// The rule, as one readable statement.
    public var rule: StaticString { ruleID.statement }
    /// The SDM section title that states the rule.
    public var section: StaticString { ruleID.section.title }

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
            let controls = try checkControls()                                  // 27.2.1
            try checkHostState(controls)                                        // 27.2.2-27.2.4
            let guest = try checkGuestRegisters(controls)                       // 27.3.1.1-27.3.1.4
            try checkNonRegisterState(controls, ss: guest.ss, rflags: guest.rflags)  // 27.3.1.5
            try checkPDPTEs(controls, cr0: guest.cr0, cr4: guest.cr4)           // 27.3.1.6
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
        var injecting: Bool { VMEntryInterruptionInfo(raw: injection).isValid }
        var injectionType: InterruptionType { InterruptionType(field: injection) }
        var injectionVector: UInt8 { VMEntryInterruptionInfo(raw: injection).vector }
    }

    func read<F: VMCSReadableField>(_ field: F) throws(VMEntryViolation) -> F.Value {
        do {
            return try vmcs.read(field)
        } catch {
            throw VMEntryViolation(ruleID: .vmreadFailed, fieldEncoding: field.encoding, value: 0,
                                   readError: error)
        }
    }

    func require<F: VMCSReadableField>(_ condition: Bool, _ rule: VMEntryRule, _ field: F, _ value: F.Value)
        throws(VMEntryViolation)
    {
        if !condition {
            throw VMEntryViolation(ruleID: rule, fieldEncoding: field.encoding, value: UInt64(value))
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
        address & pageOffsetMask4KiB == 0 && fits(address, width: structureAddressWidth)
    }

    /// Canonical for this processor's linear-address width.
    func canonical(_ address: UInt64) -> Bool { isCanonical(address, linearBits: linearAddressWidth) }

    /// IA32_EFER bits other than SCE, LME, LMA and NXE, reserved on Intel 64.
    static var eferReservedBits: UInt64 {
        ~(EFER.sce.rawValue | EFER.lme.rawValue | EFER.lma.rawValue | EFER.nxe.rawValue)
    }

    /// An MSR-load/store area: 16-byte aligned, and its last byte within the width.
    func isMSRArea(_ address: UInt64, count: UInt32) -> Bool {
        address & 0xF == 0 && fits(address, width: structureAddressWidth)
            && fits(address + UInt64(count) * 16 - 1, width: structureAddressWidth)
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
