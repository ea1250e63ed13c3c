// The instruction behind an EPT violation on an emulated MMIO page (the
// virtual local APIC and IOAPIC, where the processor offers no APIC
// virtualization): which register or immediate moves, how wide, and how long
// the instruction is. Pure decoding; the exit handler fetches the bytes at the
// guest's RIP, performs the device access at the exit's guest-physical
// address, and then calls `completeRead` and advances RIP by `length`.
// SDM Vol. 2A 2.1 "Instruction Format for Protected Mode, Real-Address Mode,
// and Virtual-8086 Mode", 2.2.1 "REX Prefixes"; Vol. 2B "MOV", "MOVZX", "MOVSX".
//
// Supported: MOV 88/89/8A/8B (r/m <-> reg), C6/C7 /0 (immediate to memory),
// A0-A3 (moffs), MOVZX 0F B6/B7, MOVSX 0F BE/BF.
// Unsupported (`.unsupported*`; the caller injects #UD or stops the guest):
// read-modify-write instructions (ADD/OR/ADC/SBB/AND/SUB/XOR 00-3F, 80-83,
// INC/DEC/NOT/NEG F6/F7/FE/FF, XCHG 86/87, XADD/CMPXCHG 0F C0/C1/B0/B1,
// BT/BTS/BTR/BTC 0F A3/AB/B3/BB/BA), CMP and TEST on memory, string
// instructions (MOVS/STOS/LODS/CMPS/SCAS), REP/REPNE (F2/F3) on anything,
// MOVSXD 63, MOVNTI 0F C3, MOVBE, MOV to/from segment registers 8C/8E,
// PUSH/POP m (FF /6, 8F), x87/SSE/AVX loads and stores (VEX/EVEX), and
// anything else.

import X86Arch
import VMX

/// The CPU mode the instruction was fetched in: its default operand and
/// address size, and whether REX prefixes exist (64-bit mode only).
public enum MMIOCodeSize: Equatable, Sendable {
    case bits16, bits32, bits64

    /// The code size CS selects. SDM Vol. 3A 3.4.5 "Segment Descriptors" (L and
    /// D flags): 64-bit with IA32_EFER.LMA and CS.L; otherwise CS.D picks 32 or
    /// 16 bits; real-address and virtual-8086 mode are always 16-bit.
    public init(protectedMode: Bool, virtual8086: Bool, longModeActive: Bool, cs: SegmentAccessRights) {
        if !protectedMode || virtual8086 { self = .bits16 }
        else if longModeActive && cs.isLong { self = .bits64 }
        else { self = cs.isDefaultBig ? .bits32 : .bits16 }
    }
}

/// A general-purpose register operand of a decoded MMIO access.
public struct MMIORegister: Equatable, Sendable {
    /// The register number 0...15 (ModR/M.reg with REX.R; 0 for the moffs forms).
    public var number: Int
    /// The register's width in bytes (1, 2, 4, 8); wider than the access for MOVZX/MOVSX.
    public var size: Int
    /// A REX prefix was present: byte registers 4...7 are SPL, BPL, SIL, DIL,
    /// not AH, CH, DH, BH (SDM 2.2.1.2 "More on REX Prefix Fields").
    public var rex: Bool

    public init(number: Int, size: Int, rex: Bool) {
        self.number = number
        self.size = size
        self.rex = rex
    }

    /// Where the register's bits live.
    public var location: GeneralRegisters.Location {
        guard let width = OperandWidth(bytes: size) else { return .invalid }
        return GeneralRegisters.location(of: number, width: width, rex: rex)
    }

    /// The operand is (part of) RSP, which lives in the VMCS, not in `GeneralRegisters`.
    public var isStackPointer: Bool {
        if case .stackPointer = location { return true }
        return false
    }
}

/// Where the memory operand's address comes from, for cross-checking the
/// exit's guest-linear address. The address is computed modulo the address size.
// SDM 2.1.5 "Addressing-Mode Encoding of ModR/M and SIB Bytes"
public struct MMIOMemoryOperand: Equatable, Sendable {
    /// The base register number 0...15 (REX.B applied); nil for none.
    public var base: Int?
    /// The index register number 0...15 (REX.X applied); nil for none.
    public var index: Int?
    /// 1, 2, 4 or 8 (always 1 in 16-bit addressing).
    public var scale: Int
    /// The displacement sign-extended to 64 bits, or the moffs offset (zero-extended).
    public var displacement: UInt64
    /// RIP-relative (64-bit mode, mod = 00, r/m = 101): the address is the
    /// next instruction's RIP plus `displacement`.
    public var ripRelative: Bool

    public init(base: Int? = nil, index: Int? = nil, scale: Int = 1, displacement: UInt64 = 0, ripRelative: Bool = false) {
        self.base = base
        self.index = index
        self.scale = scale
        self.displacement = displacement
        self.ripRelative = ripRelative
    }
}

/// One decoded MMIO access.
public struct MMIOAccess: Equatable, Sendable {
    public enum Kind: Equatable, Sendable { case read, write }
    /// How a read's `size` bytes fill a wider destination register.
    public enum Widening: Equatable, Sendable {
        /// MOV: the destination is as wide as the access.
        case none
        /// MOVZX.
        case zero
        /// MOVSX.
        case sign
    }

    public var kind: Kind
    /// The bytes accessed in memory: 1, 2, 4 or 8.
    public var size: Int
    /// The instruction's length in bytes, prefixes included: advance RIP by it.
    public var length: Int
    /// A read's destination or a write's source; nil for a write of an immediate.
    public var register: MMIORegister?
    /// A write's immediate, sign-extended to `size` bytes (C7 with REX.W sign-extends its imm32).
    public var immediate: UInt64?
    public var widening: Widening
    public var memory: MMIOMemoryOperand
    /// The segment-override prefix (the last one given); nil for the default segment.
    public var segmentOverride: SegmentRegister?
    /// The address size in bytes: 2, 4 or 8.
    public var addressSize: Int

    public init(kind: Kind, size: Int, length: Int, register: MMIORegister?, immediate: UInt64? = nil,
                widening: Widening = .none, memory: MMIOMemoryOperand, segmentOverride: SegmentRegister? = nil,
                addressSize: Int) {
        self.kind = kind
        self.size = size
        self.length = length
        self.register = register
        self.immediate = immediate
        self.widening = widening
        self.memory = memory
        self.segmentOverride = segmentOverride
        self.addressSize = addressSize
    }

    /// The register operand is (part of) RSP: pass the VMCS guest RSP to
    /// `writeValue`/`completeRead` and write it back after a read.
    public var usesStackPointer: Bool { register?.isStackPointer ?? false }
}

public enum MMIODecodeError: Error, Equatable, Sendable {
    /// A one-byte opcode this decoder does not emulate (see the list at the top).
    case unsupported(opcode: UInt8)
    /// A two-byte opcode 0F xx this decoder does not emulate; `opcode` is the second byte.
    case unsupportedTwoByte(opcode: UInt8)
    /// REP/REPNE (F2, F3): string instructions, HLE and mandatory prefixes are not emulated.
    case unsupportedPrefix(UInt8)
    /// The bytes end before the instruction does (the fetch was cut short).
    case truncated
    /// More than 15 bytes: the processor raises #GP(0) (SDM 2.1 "Instruction Format ...").
    case tooLong
    /// ModR/M mod = 11 names a register: the instruction touches no memory, so it did not cause the exit.
    case registerOperand
    /// The processor raises #UD for this encoding (LOCK with MOV, C6/C7 with ModR/M.reg != 0): inject #UD.
    case undefinedOpcode
}

public enum MMIOInstruction {
    /// The architectural instruction-length limit.
    public static let maximumLength = 15

    /// Decodes the instruction at the start of `bytes` (up to 15 bytes fetched from the guest's RIP).
    public static func decode(_ bytes: UnsafeRawBufferPointer, codeSize: MMIOCodeSize) throws(MMIODecodeError) -> MMIOAccess {
        var cursor = MMIOCursor(bytes: bytes)
        var operandOverride = false, addressOverride = false, lock = false
        var segment: SegmentRegister?
        var rex: UInt8 = 0, hasREX = false
        var opcode: UInt8
        // SDM 2.1.1 "Instruction Prefixes": legacy prefixes in any order; 2.2.1
        // "REX Prefixes": a REX not immediately before the opcode is ignored.
        prefixes: while true {
            let b = try cursor.next()
            switch b {
            case 0x66: operandOverride = true
            case 0x67: addressOverride = true
            case 0xF0: lock = true
            case 0xF2, 0xF3: throw .unsupportedPrefix(b)
            case 0x26: segment = .es
            case 0x2E: segment = .cs
            case 0x36: segment = .ss
            case 0x3E: segment = .ds
            case 0x64: segment = .fs
            case 0x65: segment = .gs
            case 0x40...0x4F where codeSize == .bits64:
                rex = b; hasREX = true
                continue prefixes
            default:
                opcode = b
                break prefixes
            }
            rex = 0; hasREX = false
        }
        let rexW = rex & 0x8 != 0, rexR = rex & 0x4 != 0
        // SDM 2.2.1.2 "More on REX Prefix Fields" (Table 2-4), 3.6 "Operand-Size and Address-Size Attributes".
        let wide = rexW ? 8 : (codeSize == .bits16) != operandOverride ? 2 : 4
        let addressSize: Int
        switch codeSize {
        case .bits64: addressSize = addressOverride ? 4 : 8
        case .bits32: addressSize = addressOverride ? 2 : 4
        case .bits16: addressSize = addressOverride ? 4 : 2
        }

        let kind: MMIOAccess.Kind
        var size: Int
        var registerSize: Int
        var widening = MMIOAccess.Widening.none
        var form = Form.modRMRegister
        switch opcode {
        case 0x88: kind = .write; size = 1
        case 0x89: kind = .write; size = wide
        case 0x8A: kind = .read; size = 1
        case 0x8B: kind = .read; size = wide
        case 0xC6: kind = .write; size = 1; form = .immediate
        case 0xC7: kind = .write; size = wide; form = .immediate
        case 0xA0: kind = .read; size = 1; form = .offset
        case 0xA1: kind = .read; size = wide; form = .offset
        case 0xA2: kind = .write; size = 1; form = .offset
        case 0xA3: kind = .write; size = wide; form = .offset
        case 0x0F:
            let second = try cursor.next()
            switch second {
            case 0xB6: size = 1; widening = .zero
            case 0xB7: size = 2; widening = .zero
            case 0xBE: size = 1; widening = .sign
            case 0xBF: size = 2; widening = .sign
            default: throw .unsupportedTwoByte(opcode: second)
            }
            kind = .read
        default: throw .unsupported(opcode: opcode)
        }
        registerSize = widening == .none ? size : wide
        // "MOV": #UD if the LOCK prefix is used (likewise MOVZX, MOVSX).
        if lock { throw .undefinedOpcode }

        var access = MMIOAccess(kind: kind, size: size, length: 0, register: nil, widening: widening,
                                memory: MMIOMemoryOperand(), segmentOverride: segment, addressSize: addressSize)
        if form == .offset {
            // "MOV" moffs: an offset of the address size, no ModR/M; the register is AL/AX/EAX/RAX.
            access.memory.displacement = try cursor.little(addressSize)
            access.register = MMIORegister(number: 0, size: size, rex: hasREX)
        } else {
            let modRM = try cursor.next()
            let reg = Int((modRM >> 3) & 7)
            access.memory = try memoryOperand(modRM, &cursor, addressSize: addressSize, rex: rex, codeSize: codeSize)
            if form == .immediate {
                // C6 /0, C7 /0: other reg values with a memory operand are #UD.
                if reg != 0 { throw .undefinedOpcode }
                let count = min(size, 4)
                let raw = try cursor.little(count)
                access.immediate = signExtend(raw, fromBytes: count) & mask(size)
            } else {
                access.register = MMIORegister(number: reg | (rexR ? 8 : 0), size: registerSize, rex: hasREX)
            }
        }
        access.length = cursor.offset
        return access
    }

    /// The value a write stores (from the registers or the immediate), masked
    /// to the access size; 0 for a read. `stackPointer` is the guest RSP (from
    /// the VMCS), used when the source is SPL/SP/ESP/RSP.
    public static func writeValue(_ access: MMIOAccess, registers: GeneralRegisters, stackPointer: UInt64) -> UInt64 {
        guard access.kind == .write else { return 0 }
        if let immediate = access.immediate { return immediate & mask(access.size) }
        guard let register = access.register, let width = OperandWidth(bytes: register.size) else { return 0 }
        switch register.location {
        case .saved(let number, let shift):
            return GeneralRegisters.extract(registers[number] ?? 0, width: width, shift: shift) & mask(access.size)
        case .stackPointer(let shift):
            return GeneralRegisters.extract(stackPointer, width: width, shift: shift) & mask(access.size)
        case .invalid:
            return 0
        }
    }

    /// Stores a read's result (its low `size` bytes) into the destination
    /// register with the rules of SDM Vol. 1 3.4.1.1 "General-Purpose Registers
    /// in 64-Bit Mode": a 32-bit destination zero-extends to 64 bits, 8- and
    /// 16-bit destinations keep the other bits; MOVZX/MOVSX extend first; byte
    /// registers 4...7 are AH..BH without REX. A destination of (part of) RSP
    /// is merged into `stackPointer` instead (write it back to the VMCS).
    /// Does nothing for a write.
    public static func completeRead(_ access: MMIOAccess, value: UInt64, registers: inout GeneralRegisters,
                                    stackPointer: inout UInt64) {
        guard access.kind == .read, let register = access.register,
              let width = OperandWidth(bytes: register.size) else { return }
        var result = value & mask(access.size)
        if access.widening == .sign { result = signExtend(result, fromBytes: access.size) }
        switch register.location {
        case .saved(let number, let shift):
            _ = registers.setFull(number, GeneralRegisters.merge(result, into: registers[number] ?? 0,
                                                                 width: width, shift: shift))
        case .stackPointer(let shift):
            stackPointer = GeneralRegisters.merge(result, into: stackPointer, width: width, shift: shift)
        case .invalid:
            return
        }
    }

    // MARK: - Decoding helpers

    enum Form { case modRMRegister, immediate, offset }

    @inline(__always)
    static func mask(_ bytes: Int) -> UInt64 {
        bytes >= 8 ? ~0 : (1 << UInt64(bytes * 8)) - 1
    }

    @inline(__always)
    static func signExtend(_ value: UInt64, fromBytes bytes: Int) -> UInt64 {
        guard bytes < 8 else { return value }
        let shift = UInt64(64 - bytes * 8)
        return UInt64(bitPattern: Int64(bitPattern: value << shift) >> shift)
    }

    /// The memory operand named by ModR/M (and SIB and displacement).
    // SDM 2.1.5 "Addressing-Mode Encoding of ModR/M and SIB Bytes" (Tables 2-1, 2-2, 2-3),
    // 2.2.1.6 "RIP-Relative Addressing"
    static func memoryOperand(_ modRM: UInt8, _ cursor: inout MMIOCursor, addressSize: Int, rex: UInt8,
                              codeSize: MMIOCodeSize) throws(MMIODecodeError) -> MMIOMemoryOperand {
        let mod = modRM >> 6, rm = modRM & 7
        if mod == 3 { throw .registerOperand }
        var operand = MMIOMemoryOperand()
        if addressSize == 2 {
            // Table 2-1: [BX+SI], [BX+DI], [BP+SI], [BP+DI], [SI], [DI], [BP] (disp16 alone with mod = 00), [BX].
            switch rm {
            case 0: operand.base = 3; operand.index = 6
            case 1: operand.base = 3; operand.index = 7
            case 2: operand.base = 5; operand.index = 6
            case 3: operand.base = 5; operand.index = 7
            case 4: operand.base = 6
            case 5: operand.base = 7
            case 6: operand.base = mod == 0 ? nil : 5
            default: operand.base = 3
            }
            let count = mod == 1 ? 1 : mod == 2 || (mod == 0 && rm == 6) ? 2 : 0
            operand.displacement = signExtend(try cursor.little(count), fromBytes: count)
            return operand
        }
        let rexB = Int(rex & 1) << 3, rexX = Int(rex & 2) << 2
        var noBaseDisp32 = false
        if rm == 4 {
            // Table 2-3: SIB. Index 100 without REX.X is none; base 101 with mod = 00 is disp32 alone.
            let sib = try cursor.next()
            let index = Int((sib >> 3) & 7) | rexX
            operand.index = index == 4 ? nil : index
            operand.scale = 1 << Int(sib >> 6)
            if sib & 7 == 5 && mod == 0 { noBaseDisp32 = true } else { operand.base = Int(sib & 7) | rexB }
        } else if rm == 5 && mod == 0 {
            // Table 2-2: disp32 alone; RIP-relative in 64-bit mode (whatever REX.B).
            noBaseDisp32 = true
            operand.ripRelative = codeSize == .bits64
        } else {
            operand.base = Int(rm) | rexB
        }
        let count = mod == 1 ? 1 : mod == 2 || noBaseDisp32 ? 4 : 0
        operand.displacement = signExtend(try cursor.little(count), fromBytes: count)
        return operand
    }
}

/// Reads instruction bytes, enforcing the 15-byte limit before the end of the fetched bytes.
struct MMIOCursor {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func next() throws(MMIODecodeError) -> UInt8 {
        guard offset < MMIOInstruction.maximumLength else { throw .tooLong }
        guard offset < bytes.count else { throw .truncated }
        let b = bytes[offset]
        offset += 1
        return b
    }

    /// `count` (0...8) bytes, little-endian.
    mutating func little(_ count: Int) throws(MMIODecodeError) -> UInt64 {
        var value: UInt64 = 0
        var i = 0
        while i < count {
            value |= UInt64(try next()) << UInt64(8 * i)
            i += 1
        }
        return value
    }
}
