/// The width of a general-purpose register operand, as decoded from an exit
/// qualification or an instruction: it decides which bits a read returns and
/// how a write merges into the 64-bit register.

import X86Arch
import VMX

/// The guest's general-purpose registers as the VM-exit trampoline saves them.
///
/// The 16 slots are in x86 register-number order, 8 bytes each (the assembly
/// stores register n at offset n*8; a test checks every offset). Slot 4 (RSP)
/// is left unused by the trampoline: the guest RSP lives in the VMCS guest-state
/// area, so every accessor here reports register 4 as "route to the VMCS"
/// instead of touching the slot.
@frozen
public struct GeneralRegisters: Equatable, Sendable {
    public var rax: UInt64
    public var rcx: UInt64
    public var rdx: UInt64
    public var rbx: UInt64
    /// Unused by the trampoline; the guest RSP is the VMCS guest RSP field.
    public var rsp: UInt64
    public var rbp: UInt64
    public var rsi: UInt64
    public var rdi: UInt64
    public var r8: UInt64
    public var r9: UInt64
    public var r10: UInt64
    public var r11: UInt64
    public var r12: UInt64
    public var r13: UInt64
    public var r14: UInt64
    public var r15: UInt64

    /// All registers zero.
    @inlinable
    public init() {
        rax = 0; rcx = 0; rdx = 0; rbx = 0; rsp = 0; rbp = 0; rsi = 0; rdi = 0
        r8 = 0; r9 = 0; r10 = 0; r11 = 0; r12 = 0; r13 = 0; r14 = 0; r15 = 0
    }

    /// The x86 register number of RSP: the vCPU layer reads and writes it in the VMCS.
    public static let stackPointerNumber = 4

    /// Where an operand named by a register number lives.
    public enum Location: Equatable, Sendable {
        /// Bits `shift ..< shift + width` of the saved register `number` (0...15, never 4).
        case saved(number: Int, shift: Int)
        /// Bits `shift ..< shift + width` of the guest RSP, which lives in the VMCS.
        case stackPointer(shift: Int)
        /// Not a register number (outside 0...15, or 8...15 as a legacy high byte).
        case invalid
    }

    /// Resolves register number `reg` at `width` to where its bits live.
    ///
    /// Without a REX prefix, 8-bit register numbers 4...7 name AH, CH, DH, BH:
    /// bits 15:8 of RAX, RCX, RDX, RBX (SDM 3.4.1.1 "General-Purpose Registers in
    /// 64-Bit Mode"); with REX they name SPL, BPL, SIL, DIL. Numbers 8...15 exist
    /// only with REX, so `rex` matters only for byte operands 4...7.
    @inlinable
    public static func location(of reg: Int, width: OperandWidth, rex: Bool = true) -> Location {
        guard reg >= 0, reg < 16 else { return .invalid }
        if width == .byte, !rex, reg >= 4 {
            guard reg < 8 else { return .invalid }
            return .saved(number: reg - 4, shift: 8)
        }
        if reg == stackPointerNumber { return .stackPointer(shift: 0) }
        return .saved(number: reg, shift: 0)
    }

    /// True when `reg` at `width` names (part of) RSP, which the caller must
    /// read or write in the VMCS guest RSP field instead of here.
    @inlinable
    public static func isStackPointer(_ reg: Int, width: OperandWidth = .qword, rex: Bool = true) -> Bool {
        if case .stackPointer = location(of: reg, width: width, rex: rex) { return true }
        return false
    }

    /// The operand of `width` taken from a full register value, shifted down
    /// (e.g. AH is bits 15:8): use it for the guest RSP read from the VMCS.
    @inlinable
    public static func extract(_ full: UInt64, width: OperandWidth, shift: Int = 0) -> UInt64 {
        (full >> UInt64(shift)) & width.mask
    }

    /// The new full register value after writing `value` at `width`.
    ///
    /// SDM 3.4.1.1 "General-Purpose Registers in 64-Bit Mode": 64-bit operands
    /// replace the register, 32-bit operands are zero-extended to 64 bits, 8- and
    /// 16-bit operands leave the other bits unchanged. Use it for the guest RSP.
    @inlinable @inline(__always)  // IN and MMIO reads: a call per exit
    public static func merge(_ value: UInt64, into old: UInt64, width: OperandWidth, shift: Int = 0) -> UInt64 {
        switch width {
        case .qword: return value
        case .dword: return value & 0xFFFF_FFFF
        case .word, .byte:
            let mask = width.mask << UInt64(shift)
            return (old & ~mask) | ((value << UInt64(shift)) & mask)
        }
    }

    /// The full 64-bit saved value of register `number` (0...15); nil for RSP (4),
    /// which the trampoline does not save, and for numbers outside 0...15.
    @inlinable @inline(__always)  // a call copied all the registers (128 bytes)
    public subscript(number: Int) -> UInt64? {
        get {
            switch number {
            case 0: return rax
            case 1: return rcx
            case 2: return rdx
            case 3: return rbx
            case 5: return rbp
            case 6: return rsi
            case 7: return rdi
            case 8: return r8
            case 9: return r9
            case 10: return r10
            case 11: return r11
            case 12: return r12
            case 13: return r13
            case 14: return r14
            case 15: return r15
            default: return nil
            }
        }
    }

    /// Stores a full 64-bit value into saved register `number`; returns false
    /// (and stores nothing) for RSP (4) and numbers outside 0...15.
    @inlinable
    public mutating func setFull(_ number: Int, _ value: UInt64) -> Bool {
        switch number {
        case 0: rax = value
        case 1: rcx = value
        case 2: rdx = value
        case 3: rbx = value
        case 5: rbp = value
        case 6: rsi = value
        case 7: rdi = value
        case 8: r8 = value
        case 9: r9 = value
        case 10: r10 = value
        case 11: r11 = value
        case 12: r12 = value
        case 13: r13 = value
        case 14: r14 = value
        case 15: r15 = value
        default: return false
        }
        return true
    }

    /// Reads register `reg` at `width`, zero-extended to 64 bits.
    ///
    /// Returns nil when the operand is (part of) RSP — read the VMCS guest RSP
    /// and apply `extract` — or when `reg` is not a register number.
    @inlinable
    public func read(_ reg: Int, width: OperandWidth, rex: Bool = true) -> UInt64? {
        guard case let .saved(number, shift) = Self.location(of: reg, width: width, rex: rex),
              let full = self[number] else { return nil }
        return Self.extract(full, width: width, shift: shift)
    }

    /// Writes `value` to register `reg` at `width` with the SDM's merge rules
    /// (see `merge`). Returns false, changing nothing, when the operand is (part
    /// of) RSP — write the VMCS guest RSP with `merge` — or `reg` is not a register.
    @inlinable
    public mutating func write(_ reg: Int, _ value: UInt64, width: OperandWidth, rex: Bool = true) -> Bool {
        guard case let .saved(number, shift) = Self.location(of: reg, width: width, rex: rex),
              let old = self[number] else { return false }
        return setFull(number, Self.merge(value, into: old, width: width, shift: shift))
    }
}
