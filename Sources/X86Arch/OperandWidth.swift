// Operand and address sizes. SDM Vol. 1 3.6 "Operand-Size and Address-Size Attributes".

public enum OperandWidth: UInt8, Sendable {
    case byte = 1
    case word = 2
    case dword = 4
    case qword = 8

    /// The operand width for an access of `bytes` bytes (1, 2, 4, 8); nil otherwise.
    @inlinable
    public init?(bytes: Int) {
        switch bytes {
        case 1: self = .byte
        case 2: self = .word
        case 4: self = .dword
        case 8: self = .qword
        default: return nil
        }
    }

    /// Size of the operand in bytes.
    @inlinable
    public var bytes: Int { Int(rawValue) }

    /// The bits an operand of this width occupies.
    @inlinable
    public var mask: UInt64 {
        switch self {
        case .byte: return 0xFF
        case .word: return 0xFFFF
        case .dword: return 0xFFFF_FFFF
        case .qword: return ~0
        }
    }
}
