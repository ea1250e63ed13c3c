// VMCS field encodings and the typed field handles VMREAD/VMWRITE go through.
// SDM 25.11.2 "VMREAD, VMWRITE, and Encodings of VMCS Fields", Table 25-21
// "Structure of VMCS Component Encoding"; the tables themselves are in
// VMCSFieldTables.swift (SDM Appendix B "Field Encoding in VMCS").

import X86Arch

/// Bits 14:13 of an encoding.
public enum VMCSFieldWidth: UInt8, Sendable {
    case bits16 = 0
    case bits64 = 1
    case bits32 = 2
    case natural = 3
}

/// Bits 11:10 of an encoding: which area of the VMCS the field belongs to.
public enum VMCSFieldType: UInt8, Sendable {
    case control = 0
    /// VM-exit information; VMWRITE fails unless IA32_VMX_MISC bit 29 says otherwise.
    case readOnlyData = 1
    case guestState = 2
    case hostState = 3
}

/// Bit 0 of an encoding: a 64-bit field can also be reached 32 bits at a time.
public enum VMCSAccessType: UInt8, Sendable {
    case full = 0
    /// The upper 32 bits of a 64-bit field.
    case high = 1
}

/// A 32-bit VMCS component encoding, decoded into its parts.
/// SDM 25.11.2 Table 25-21: bit 0 access type, bits 9:1 index, bits 11:10 type,
/// bit 12 reserved (0), bits 14:13 width, bits 31:15 reserved (0).
@frozen
public struct VMCSFieldEncoding: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Composes an encoding from its parts; `index` keeps its low 9 bits.
    public init(width: VMCSFieldWidth, type: VMCSFieldType, index: UInt16, access: VMCSAccessType = .full) {
        rawValue = UInt32(width.rawValue) << 13 | UInt32(type.rawValue) << 10
            | UInt32(index & 0x1FF) << 1 | UInt32(access.rawValue)
    }

    /// Bits that must be zero in any encoding (bit 12 and bits 31:15).
    public static let reservedBits: UInt32 = 0xFFFF_9000

    public var accessType: VMCSAccessType { rawValue & 1 == 0 ? .full : .high }
    public var index: UInt16 { UInt16(truncatingIfNeeded: (rawValue >> 1) & 0x1FF) }
    public var type: VMCSFieldType { VMCSFieldType(rawValue: UInt8(truncatingIfNeeded: (rawValue >> 10) & 3)) ?? .control }
    public var width: VMCSFieldWidth { VMCSFieldWidth(rawValue: UInt8(truncatingIfNeeded: (rawValue >> 13) & 3)) ?? .bits16 }

    /// Reserved bits clear, and high access only on a 64-bit field (the only
    /// width the SDM gives two encodings).
    public var isWellFormed: Bool {
        rawValue & Self.reservedBits == 0 && (accessType == .full || width == .bits64)
    }
}

/// A VMCS field VMREAD may read; `Value` is its width.
public protocol VMCSReadableField: Sendable {
    associatedtype Value: FixedWidthInteger & UnsignedInteger
    /// The full-access encoding.
    var encoding: UInt32 { get }
    /// The SDM's name for the field, for reports.
    var name: StaticString { get }
    /// Whether the typed API lets VMWRITE reach this field (given by the protocols below).
    static var isWritable: Bool { get }
}

extension VMCSReadableField {
    public static var isWritable: Bool { false }
}

/// A VMCS field VMWRITE may write. Read-only data fields do not conform, so
/// `VMCSAccess.write` rejects them at compile time.
public protocol VMCSWritableField: VMCSReadableField {}

extension VMCSWritableField {
    public static var isWritable: Bool { true }
}

/// A control, guest-state or host-state field whose value is `Value`.
@frozen
public struct VMCSField<Value: FixedWidthInteger & UnsignedInteger & Sendable>: VMCSWritableField, Equatable {
    public let encoding: UInt32
    public let name: StaticString
    init(_ encoding: UInt32, _ name: StaticString) { self.encoding = encoding; self.name = name }
    public static func == (a: Self, b: Self) -> Bool { a.encoding == b.encoding }
}

/// A VM-exit information field: readable, never writable.
@frozen
public struct VMCSReadOnlyField<Value: FixedWidthInteger & UnsignedInteger & Sendable>: VMCSReadableField, Equatable {
    public let encoding: UInt32
    public let name: StaticString
    init(_ encoding: UInt32, _ name: StaticString) { self.encoding = encoding; self.name = name }
    public static func == (a: Self, b: Self) -> Bool { a.encoding == b.encoding }
}

// The widths of Appendix B. Natural width is 64 bits on this host, so a
// natural-width field and a 64-bit one share a type.
public typealias VMCSField16 = VMCSField<UInt16>
public typealias VMCSField32 = VMCSField<UInt32>
public typealias VMCSField64 = VMCSField<UInt64>
public typealias VMCSFieldNatural = VMCSField<UInt64>
public typealias VMCSReadOnlyField32 = VMCSReadOnlyField<UInt32>
public typealias VMCSReadOnlyField64 = VMCSReadOnlyField<UInt64>
public typealias VMCSReadOnlyFieldNatural = VMCSReadOnlyField<UInt64>

extension VMCSField where Value == UInt64 {
    /// The encoding of the upper 32 bits (access type "high"; 64-bit fields only).
    public var highEncoding: UInt32 { encoding | 1 }
}

extension VMCSReadOnlyField where Value == UInt64 {
    /// The encoding of the upper 32 bits (access type "high"; 64-bit fields only).
    public var highEncoding: UInt32 { encoding | 1 }
}

/// The table of Appendix B a field is declared in: its declared width and type.
public enum VMCSFieldGroup: Sendable {
    case control16, guest16, host16
    case control64, readOnly64, guest64, host64
    case control32, readOnly32, guest32, host32
    case controlNatural, readOnlyNatural, guestNatural, hostNatural

    public var width: VMCSFieldWidth {
        switch self {
        case .control16, .guest16, .host16: return .bits16
        case .control64, .readOnly64, .guest64, .host64: return .bits64
        case .control32, .readOnly32, .guest32, .host32: return .bits32
        case .controlNatural, .readOnlyNatural, .guestNatural, .hostNatural: return .natural
        }
    }

    public var type: VMCSFieldType {
        switch self {
        case .control16, .control64, .control32, .controlNatural: return .control
        case .readOnly64, .readOnly32, .readOnlyNatural: return .readOnlyData
        case .guest16, .guest64, .guest32, .guestNatural: return .guestState
        case .host16, .host64, .host32, .hostNatural: return .hostState
        }
    }
}

/// One row of an Appendix B table, as `VMCSFields.forEach` hands it out.
public struct VMCSFieldInfo: Sendable {
    public let name: StaticString
    public let encoding: VMCSFieldEncoding
    /// The table the field is declared in.
    public let group: VMCSFieldGroup
    /// The width of the Swift value type the typed API uses for this field.
    public let valueBitWidth: Int
    /// Whether the typed API accepts the field for VMWRITE.
    public let isWritable: Bool

    public init<F: VMCSReadableField>(_ field: F, group: VMCSFieldGroup) {
        name = field.name
        encoding = VMCSFieldEncoding(rawValue: field.encoding)
        self.group = group
        valueBitWidth = F.Value.bitWidth
        isWritable = F.isWritable
    }
}

/// Namespace for the VMCS field tables (see VMCSFieldTables.swift).
public enum VMCSFields {}
