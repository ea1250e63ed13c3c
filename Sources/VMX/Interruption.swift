// Interruption information: the 32-bit format shared by the VM-entry
// interruption-information field (what the VMM injects), the VM-exit
// interruption-information field (the event that caused the exit) and the
// IDT-vectoring information field (the event that was being delivered when the
// exit happened). Layout, common to all three:
//   7:0 vector, 10:8 type, 11 error code (deliver / valid),
//   12 NMI unblocking due to IRET (exit interruption info only), 31 valid.

import X86Arch

/// The interruption type, bits 10:8.
// SDM 25.8.3 "VM-Entry Controls for Event Injection", Table "Format of the VM-Entry Interruption-Information Field"
public enum InterruptionType: UInt8, Sendable {
    case externalInterrupt = 0
    /// Type 1 is not used by any of the three fields.
    case reserved = 1
    case nmi = 2
    case hardwareException = 3
    /// INT n (VM entry and IDT-vectoring only).
    case softwareInterrupt = 4
    /// INT1 (ICEBP).
    case privilegedSoftwareException = 5
    /// INT3 and INTO.
    case softwareException = 6
    /// Injection only: vector 0 means "pending MTF VM exit".
    case otherEvent = 7

    /// The type in bits 10:8 of an interruption-information value; every
    /// 3-bit value is representable.
    @inlinable
    public init(field: UInt32) {
        switch (field >> 8) & 7 {
        case 0: self = .externalInterrupt
        case 1: self = .reserved
        case 2: self = .nmi
        case 3: self = .hardwareException
        case 4: self = .softwareInterrupt
        case 5: self = .privilegedSoftwareException
        case 6: self = .softwareException
        default: self = .otherEvent
        }
    }

    /// Events of these types are caused by an instruction, so injecting them
    /// needs the VM-entry instruction length (RIP pushed = guest RIP + length).
    // SDM 27.6.1.1 "Details of Vectored-Event Injection" / 25.8.3 "VM-entry instruction length"
    @inlinable
    public var needsInstructionLength: Bool {
        self == .softwareInterrupt || self == .privilegedSoftwareException || self == .softwareException
    }

    /// Whether delivering `vector` with this type pushes an error code, i.e.
    /// whether the VM-entry deliver-error-code bit must be set.
    ///
    /// Only hardware exceptions #DF, #TS, #NP, #SS, #GP, #PF, #AC and #CP push
    /// one, and only in protected mode: with "unrestricted guest" and CR0.PE=0
    /// the bit must be 0 (a real-mode exception pushes no error code).
    // SDM 27.2.1.3 "Checks on VM-Entry Control Fields" (event injection)
    @inlinable
    public func deliversErrorCode(vector: UInt8, protectedMode: Bool) -> Bool {
        guard self == .hardwareException, protectedMode else { return false }
        switch vector {
        case 8, 10, 11, 12, 13, 14, 17, 21: return true
        default: return false
        }
    }

    /// A short name for reports.
    public var name: StaticString {
        switch self {
        case .externalInterrupt: return "external interrupt"
        case .reserved: return "reserved type 1"
        case .nmi: return "NMI"
        case .hardwareException: return "hardware exception"
        case .softwareInterrupt: return "software interrupt"
        case .privilegedSoftwareException: return "privileged software exception"
        case .softwareException: return "software exception"
        case .otherEvent: return "other event"
        }
    }
}

/// The class of an exception for the double-fault rules.
// SDM 7.15 "Exception and Interrupt Reference", Interrupt 8 "Double Fault Exception (#DF)",
// Table "Interrupt and Exception Classes"
public enum ExceptionClass: Sendable {
    /// #DB, NMI, #BP, #OF, #BR, #UD, #NM, 9, #MF, #AC, #MC, #XM, every
    /// reserved vector, and all external and software interrupts.
    case benign
    /// #DE, #TS, #NP, #SS, #GP, #CP.
    case contributory
    /// #PF and #VE.
    case pageFault
    /// #DF itself: any further exception while delivering it is a triple fault.
    case doubleFault

    /// The class of a hardware exception with `vector`.
    @inlinable
    public init(vector: UInt8) {
        switch vector {
        case 0, 10, 11, 12, 13, 21: self = .contributory
        case 14, 20: self = .pageFault
        case 8: self = .doubleFault
        default: self = .benign
        }
    }

    /// The class of an event of `type`: only hardware exceptions can be
    /// contributory or page faults; interrupts, NMIs and software-raised
    /// exceptions (INT n, INT3, INTO, INT1) are benign.
    @inlinable
    public init(vector: UInt8, type: InterruptionType) {
        self = type == .hardwareException ? ExceptionClass(vector: vector) : .benign
    }
}

/// A value for the VM-entry interruption-information field.
// SDM 25.8.3 "VM-Entry Controls for Event Injection", Table "Format of the VM-Entry Interruption-Information Field"
@frozen
public struct VMEntryInterruptionInfo: Equatable, Sendable {
    public let raw: UInt32

    @inlinable
    public init(raw: UInt32) { self.raw = raw }

    /// A valid injection (bit 31) of `vector` with `type`; `deliverErrorCode`
    /// sets bit 11. Bits 30:12 stay 0 as VM entry requires.
    @inlinable
    public init(vector: UInt8, type: InterruptionType, deliverErrorCode: Bool) {
        raw = Self.validBit | (deliverErrorCode ? Self.deliverErrorCodeBit : 0) | UInt32(type.rawValue) << 8
            | UInt32(vector)
    }

    /// Bit 31: valid.
    public static let validBit: UInt32 = 1 << 31
    /// Bit 11: deliver error code.
    public static let deliverErrorCodeBit: UInt32 = 1 << 11
    /// Bits 30:12: reserved, must be 0.
    public static let reservedMask: UInt32 = 0x7FFF_F000

    /// Nothing to inject (valid bit clear).
    public static var none: VMEntryInterruptionInfo { VMEntryInterruptionInfo(raw: 0) }

    @inlinable public var isValid: Bool { raw >> 31 != 0 }
    @inlinable public var vector: UInt8 { UInt8(truncatingIfNeeded: raw) }
    @inlinable public var type: InterruptionType { InterruptionType(field: raw) }
    @inlinable public var deliversErrorCode: Bool { raw & Self.deliverErrorCodeBit != 0 }
}

/// The VM-exit interruption-information field: the exception or NMI (exit
/// reason 0) or external interrupt (exit reason 1, with "acknowledge interrupt
/// on exit") that caused the exit.
// SDM 28.2.2 "Information for VM Exits Due to Vectored Events"
@frozen
public struct VMExitInterruptionInfo: Equatable, Sendable {
    public let raw: UInt32

    @inlinable
    public init(raw: UInt32) { self.raw = raw }

    @inlinable public var isValid: Bool { raw >> 31 != 0 }
    @inlinable public var vector: UInt8 { UInt8(truncatingIfNeeded: raw) }
    @inlinable public var type: InterruptionType { InterruptionType(field: raw) }
    /// Bit 11: the VM-exit interruption error code field holds the error code.
    @inlinable public var hasErrorCode: Bool { (raw >> 11) & 1 != 0 }
    /// Bit 12: the exception happened while IRET was unblocking NMIs; if the
    /// VMM does not re-execute that IRET it must set blocking by NMI.
    // SDM 28.2.3 "Information About NMI Unblocking Due to IRET"
    @inlinable public var nmiUnblockingDueToIRET: Bool { (raw >> 12) & 1 != 0 }

    /// True when the guest's IRET unblocked NMIs and then faulted: the IRET
    /// will not complete as executed, so before resuming the guest the VMM must
    /// set blocking by NMI in the interruptibility state. Bit 12 is undefined
    /// for #DF and is not reported when the exit happened during event delivery.
    // SDM 28.2.3 "Information About NMI Unblocking Due to IRET"
    @inlinable
    public func requiresNMIBlocking(idtVectoring: IDTVectoringInfo) -> Bool {
        guard isValid, nmiUnblockingDueToIRET, !idtVectoring.isValid else { return false }
        return !(type == .hardwareException && vector == 8)
    }
}

/// The IDT-vectoring information field: the event whose delivery the VM exit
/// interrupted. When valid, the event was not delivered and must be
/// re-injected. Bit 12 is undefined here.
// SDM 28.2.4 "Information for VM Exits During Event Delivery"
@frozen
public struct IDTVectoringInfo: Equatable, Sendable {
    public let raw: UInt32

    @inlinable
    public init(raw: UInt32) { self.raw = raw }

    @inlinable public var isValid: Bool { raw >> 31 != 0 }
    @inlinable public var vector: UInt8 { UInt8(truncatingIfNeeded: raw) }
    @inlinable public var type: InterruptionType { InterruptionType(field: raw) }
    /// Bit 11: the IDT-vectoring error code field holds the error code.
    @inlinable public var hasErrorCode: Bool { (raw >> 11) & 1 != 0 }

    /// The injection that resumes the interrupted delivery, or nil when no
    /// event was being delivered.
    ///
    /// - Parameters:
    ///   - errorCode: the IDT-vectoring error code field (used only when bit 11 is set).
    ///   - instructionLength: the VM-exit instruction-length field; the
    ///     processor saves it for exits during delivery of software interrupts
    ///     and (privileged) software exceptions, and injection of those types
    ///     needs it to push the right return RIP.
    // SDM 27.6 "Event Injection" / 28.2.4 "Information for VM Exits During Event Delivery"
    @inlinable
    public func reinjection(errorCode: UInt32, instructionLength: UInt32) -> EventInjection? {
        guard isValid else { return nil }
        let t = type
        return EventInjection(
            entryInfo: VMEntryInterruptionInfo(vector: vector, type: t, deliverErrorCode: hasErrorCode),
            errorCode: hasErrorCode ? errorCode : nil,
            instructionLength: t.needsInstructionLength ? instructionLength : nil)
    }
}

/// Everything the vCPU writes to the VMCS to inject one event.
// SDM 27.6 "Event Injection"
@frozen
public struct EventInjection: Equatable, Sendable {
    /// For the VM-entry interruption-information field.
    public var entryInfo: VMEntryInterruptionInfo
    /// For the VM-entry exception error code field; non-nil exactly when
    /// `entryInfo.deliversErrorCode`.
    public var errorCode: UInt32?
    /// For the VM-entry instruction-length field; non-nil exactly when the
    /// type needs it (software interrupts and exceptions).
    public var instructionLength: UInt32?

    @inlinable
    public init(entryInfo: VMEntryInterruptionInfo, errorCode: UInt32?, instructionLength: UInt32?) {
        self.entryInfo = entryInfo
        self.errorCode = errorCode
        self.instructionLength = instructionLength
    }
}
