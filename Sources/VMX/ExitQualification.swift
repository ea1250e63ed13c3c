// Decoded views of the exit qualification (a natural-width VMCS field) for the
// exit reasons whose handlers need it, and of the VM-exit instruction-information
// field for INS/OUTS. Each view keeps the raw value, so a handler that meets an
// unexpected encoding can still report it; nothing here traps on any input.

import X86Arch

/// The exit qualification of a control-register access exit (exit reason 28).
// SDM 28.2.1 "Basic VM-Exit Information", Table "Exit Qualification for Control-Register Accesses"
@frozen
public struct ControlRegisterAccessQualification: Equatable, Sendable {
    public let raw: UInt64

    @inlinable
    public init(raw: UInt64) { self.raw = raw }

    /// Which instruction caused the exit (bits 5:4; all four values are defined).
    public enum AccessType: UInt8, Sendable {
        case movToCR = 0
        case movFromCR = 1
        case clts = 2
        case lmsw = 3
    }

    /// Where LMSW took its operand from (bit 6).
    public enum LMSWOperandType: UInt8, Sendable {
        case register = 0
        case memory = 1
    }

    /// The control register (bits 3:0): 0, 3, 4 or 8; 0 for CLTS and LMSW.
    @inlinable
    public var controlRegister: Int { Int(raw & 0xF) }

    @inlinable
    public var accessType: AccessType {
        switch (raw >> 4) & 3 {
        case 0: return .movToCR
        case 1: return .movFromCR
        case 2: return .clts
        default: return .lmsw
        }
    }

    /// Meaningful for LMSW only (0 for the other access types).
    @inlinable
    public var lmswOperandType: LMSWOperandType { (raw >> 6) & 1 == 0 ? .register : .memory }

    /// The general-purpose register of MOV CR (bits 11:8) in x86 register-number
    /// order (4 is RSP, which lives in the VMCS); 0 for CLTS and LMSW.
    @inlinable
    public var generalRegister: Int { Int((raw >> 8) & 0xF) }

    /// The LMSW source operand (bits 31:16); 0 for the other access types.
    /// LMSW only loads CR0 bits 3:0 (PE, MP, EM, TS) and cannot clear PE.
    @inlinable
    public var lmswSourceData: UInt16 { UInt16(truncatingIfNeeded: raw >> 16) }
}

/// The exit qualification of an I/O instruction exit (exit reason 30).
// SDM 28.2.1 "Basic VM-Exit Information", Table "Exit Qualification for I/O Instructions"
@frozen
public struct IOInstructionQualification: Equatable, Sendable {
    public let raw: UInt64

    @inlinable
    public init(raw: UInt64) { self.raw = raw }

    public enum Direction: UInt8, Sendable {
        case out = 0
        case `in` = 1
    }

    /// Where the port number came from (bit 6).
    public enum OperandEncoding: UInt8, Sendable {
        case dx = 0
        case immediate = 1
    }

    /// The access size in bytes: bits 2:0 encode 0 = 1 byte, 1 = 2 bytes,
    /// 3 = 4 bytes; the other encodings are not used and give nil.
    @inlinable
    public var size: Int? {
        switch raw & 7 {
        case 0: return 1
        case 1: return 2
        case 3: return 4
        default: return nil
        }
    }

    /// The access size as the width of the AL/AX/EAX operand; nil when the
    /// size encoding is not one the SDM defines.
    @inlinable @inline(__always)  // every port exit: a call for a table look-up
    public var width: OperandWidth? {
        switch raw & 7 {
        case 0: return .byte
        case 1: return .word
        case 3: return .dword
        default: return nil
        }
    }

    /// Bit 3: 0 = OUT, 1 = IN.
    @inlinable
    public var direction: Direction { (raw >> 3) & 1 == 0 ? .out : .in }

    /// Bit 4: INS/OUTS.
    @inlinable
    public var isString: Bool { (raw >> 4) & 1 != 0 }

    /// Bit 5: REP prefix (meaningful for string instructions).
    @inlinable
    public var isRepeated: Bool { (raw >> 5) & 1 != 0 }

    @inlinable
    public var operandEncoding: OperandEncoding { (raw >> 6) & 1 == 0 ? .dx : .immediate }

    /// The I/O port (bits 31:16).
    @inlinable
    public var port: UInt16 { UInt16(truncatingIfNeeded: raw >> 16) }
}

/// The exit qualification of an EPT violation (exit reason 48).
// SDM 28.2.1 "Basic VM-Exit Information", Table "Exit Qualification for EPT Violations"
@frozen
public struct EPTViolationQualification: Equatable, Sendable {
    public let raw: UInt64

    @inlinable
    public init(raw: UInt64) { self.raw = raw }

    @inlinable
    func bit(_ n: UInt64) -> Bool { (raw >> n) & 1 != 0 }

    /// Bit 0: the access was a data read.
    @inlinable public var isRead: Bool { bit(0) }
    /// Bit 1: the access was a data write.
    @inlinable public var isWrite: Bool { bit(1) }
    /// Bit 2: the access was an instruction fetch.
    @inlinable public var isInstructionFetch: Bool { bit(2) }

    /// Bit 3: the guest-physical address was readable (AND of the read bits of
    /// the EPT paging-structure entries used to translate it).
    @inlinable public var entryReadable: Bool { bit(3) }
    /// Bit 4: the address was writable.
    @inlinable public var entryWritable: Bool { bit(4) }
    /// Bit 5: the address was executable (supervisor-mode executable when
    /// "mode-based execute control for EPT" is 1).
    @inlinable public var entryExecutable: Bool { bit(5) }
    /// Bit 6: user-mode executable. Defined only when "mode-based execute
    /// control for EPT" is 1; undefined otherwise.
    @inlinable public var entryUserExecutable: Bool { bit(6) }

    /// No EPT entry on the walk granted any access (bits 5:3 clear): the
    /// address is not mapped at all, e.g. emulated MMIO, rather than mapped
    /// with too few permissions.
    @inlinable public var isNotPresent: Bool { (raw >> 3) & 7 == 0 }

    /// Bit 7: the guest linear-address field holds a valid address.
    @inlinable public var guestLinearAddressValid: Bool { bit(7) }

    /// Bit 8, defined only when bit 7 is set: true when the access was to the
    /// translation of the linear address, false when it was to a guest
    /// paging-structure entry during the page walk (or an A/D update); nil when
    /// there is no linear address.
    @inlinable
    public var isTranslatedAccess: Bool? { guestLinearAddressValid ? bit(8) : nil }

    /// Bit 12: the exit happened while IRET was unblocking NMIs ("NMI unblocking
    /// due to IRET"); when the VMM resumes without re-executing that IRET it must
    /// set blocking by NMI in the guest interruptibility state.
    // SDM 28.2.3 "Information About NMI Unblocking Due to IRET"
    @inlinable public var nmiUnblockingDueToIRET: Bool { bit(12) }
}

/// The VM-exit instruction-information field for INS and OUTS.
// SDM 28.2.5 "Information for VM Exits Due to Instruction Execution",
// Table "Format of the VM-Exit Instruction-Information Field as Used for INS and OUTS"
@frozen
public struct StringIOInstructionInformation: Equatable, Sendable {
    public let raw: UInt32

    @inlinable
    public init(raw: UInt32) { self.raw = raw }

    /// Bits 9:7: 0 = 16-bit, 1 = 32-bit, 2 = 64-bit; nil for the unused encodings.
    @inlinable
    public var addressSize: OperandWidth? {
        switch (raw >> 7) & 7 {
        case 0: return .word
        case 1: return .dword
        case 2: return .qword
        default: return nil
        }
    }

    /// Bits 17:15, the segment of the source for OUTS; nil for unused encodings.
    /// Undefined for INS, which always writes through ES.
    @inlinable
    public var segment: SegmentRegister? { SegmentRegister(rawValue: UInt8((raw >> 15) & 7)) }
}

/// A segment register in the SDM's instruction-information numbering.
public enum SegmentRegister: UInt8, Sendable {
    case es = 0
    case cs = 1
    case ss = 2
    case ds = 3
    case fs = 4
    case gs = 5
}
