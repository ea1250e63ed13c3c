import Testing
import X86Arch
import VMX
import X86VCPU

// Every encoding below was assembled with nasm (`bits 16/32/64`) unless its
// comment says it is hand-built; the comment is the nasm source.

private func decode(_ bytes: [UInt8], _ codeSize: MMIOCodeSize) -> Result<MMIOAccess, MMIODecodeError> {
    bytes.withUnsafeBytes { raw in
        do throws(MMIODecodeError) {
            return .success(try MMIOInstruction.decode(raw, codeSize: codeSize))
        } catch {
            return .failure(error)
        }
    }
}

private func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        out.append(UInt8(s[i ..< j], radix: 16)!)
        i = j
    }
    return out
}

private func reg(_ n: Int, _ size: Int, rex: Bool = false) -> MMIORegister { MMIORegister(number: n, size: size, rex: rex) }

private func mem(base: Int? = nil, index: Int? = nil, scale: Int = 1, disp: Int64 = 0, rip: Bool = false) -> MMIOMemoryOperand {
    MMIOMemoryOperand(base: base, index: index, scale: scale, displacement: UInt64(bitPattern: disp), ripRelative: rip)
}

private func read(_ size: Int, _ length: Int, _ r: MMIORegister, _ m: MMIOMemoryOperand, widen: MMIOAccess.Widening = .none,
                  seg: SegmentRegister? = nil, addr: Int = 8) -> MMIOAccess {
    MMIOAccess(kind: .read, size: size, length: length, register: r, widening: widen, memory: m, segmentOverride: seg, addressSize: addr)
}

private func write(_ size: Int, _ length: Int, _ r: MMIORegister, _ m: MMIOMemoryOperand, seg: SegmentRegister? = nil,
                   addr: Int = 8) -> MMIOAccess {
    MMIOAccess(kind: .write, size: size, length: length, register: r, memory: m, segmentOverride: seg, addressSize: addr)
}

private func store(_ size: Int, _ length: Int, imm: UInt64, _ m: MMIOMemoryOperand, addr: Int = 8) -> MMIOAccess {
    MMIOAccess(kind: .write, size: size, length: length, register: nil, immediate: imm, memory: m, addressSize: addr)
}

struct MMIOCase: Sendable, CustomTestStringConvertible {
    var source: String
    var bytes: [UInt8]
    var codeSize: MMIOCodeSize
    var expected: MMIOAccess
    var testDescription: String { source }

    init(_ source: String, _ bytes: String, _ codeSize: MMIOCodeSize, _ expected: MMIOAccess) {
        self.source = source
        self.bytes = hex(bytes)
        self.codeSize = codeSize
        self.expected = expected
    }
}

private let b64 = MMIOCodeSize.bits64, b32 = MMIOCodeSize.bits32, b16 = MMIOCodeSize.bits16

private let cases: [MMIOCase] = [
    // Linux readl/writel and the APIC/IOAPIC accesses of test kernels.
    .init("mov eax, [rdi+0x20]", "8b4720", b64, read(4, 3, reg(0, 4), mem(base: 7, disp: 0x20))),
    .init("mov [rdx+0x300], ecx", "898a00030000", b64, write(4, 6, reg(1, 4), mem(base: 2, disp: 0x300))),
    .init("mov dword [rax+0xb0], 0", "c780b000000000000000", b64, store(4, 10, imm: 0, mem(base: 0, disp: 0xB0))),
    .init("mov eax, [0xfee00020] (32-bit, A1 moffs32)", "a12000e0fe", b32, read(4, 5, reg(0, 4), mem(disp: 0xFEE0_0020), addr: 4)),
    .init("mov eax, [qword 0xfee00020] (A1 moffs64)", "a12000e0fe00000000", b64, read(4, 9, reg(0, 4), mem(disp: 0xFEE0_0020))),
    .init("mov rax, [qword 0xfee00020]", "48a12000e0fe00000000", b64, read(8, 10, reg(0, 8, rex: true), mem(disp: 0xFEE0_0020))),
    .init("a32 mov eax, [dword 0xfee00020]", "67a12000e0fe", b64, read(4, 6, reg(0, 4), mem(disp: 0xFEE0_0020), addr: 4)),
    .init("mov al, [qword 0xfee00020]", "a02000e0fe00000000", b64, read(1, 9, reg(0, 1), mem(disp: 0xFEE0_0020))),
    .init("mov [qword 0xfec00000], eax", "a30000c0fe00000000", b64, write(4, 9, reg(0, 4), mem(disp: 0xFEC0_0000))),
    .init("a32 mov [0xfee000b0], eax", "67a3b000e0fe", b64, write(4, 6, reg(0, 4), mem(disp: 0xFEE0_00B0), addr: 4)),
    .init("mov [0xfec00010], ax (32-bit)", "66a31000c0fe", b32, write(2, 6, reg(0, 2), mem(disp: 0xFEC0_0010), addr: 4)),
    .init("mov dword [eax+0x300], 0x000c4500 (32-bit)", "c7800003000000450c00", b32,
          store(4, 10, imm: 0x000C_4500, mem(base: 0, disp: 0x300), addr: 4)),
    .init("mov ax, [esi] (32-bit)", "668b06", b32, read(2, 3, reg(0, 2), mem(base: 6), addr: 4)),
    .init("mov word [esi+0x10], 0x1234 (32-bit)", "66c746103412", b32, store(2, 6, imm: 0x1234, mem(base: 6, disp: 0x10), addr: 4)),
    // 32-bit code: mod = 00, r/m = 101 is an absolute disp32, not RIP-relative (hand-built).
    .init("mov eax, [0xfee00020] via ModR/M (32-bit)", "8b052000e0fe", b32,
          read(4, 6, reg(0, 4), mem(disp: Int64(Int32(bitPattern: 0xFEE0_0020))), addr: 4)),
    .init("mov eax, [ebp+eax*8+0x12345678] (32-bit)", "8b84c578563412", b32,
          read(4, 7, reg(0, 4), mem(base: 5, index: 0, scale: 8, disp: 0x1234_5678), addr: 4)),

    // 16-bit code: Table 2-1, default operand size 2, 66h selects 4.
    .init("mov ax, [bx+si+4]", "8b4004", b16, read(2, 3, reg(0, 2), mem(base: 3, index: 6, disp: 4), addr: 2)),
    .init("mov eax, [bx+si+4]", "668b4004", b16, read(4, 4, reg(0, 4), mem(base: 3, index: 6, disp: 4), addr: 2)),
    .init("mov [bp], dl", "885600", b16, write(1, 3, reg(2, 1), mem(base: 5), addr: 2)),
    .init("mov [0x1234], ax", "a33412", b16, write(2, 3, reg(0, 2), mem(disp: 0x1234), addr: 2)),
    .init("mov bx, [bp+di+0x1234]", "8b9b3412", b16, read(2, 4, reg(3, 2), mem(base: 5, index: 7, disp: 0x1234), addr: 2)),
    .init("mov cl, [0x0300]", "8a0e0003", b16, read(1, 4, reg(1, 1), mem(disp: 0x300), addr: 2)),
    .init("mov al, [0x20]", "a02000", b16, read(1, 3, reg(0, 1), mem(disp: 0x20), addr: 2)),
    .init("mov byte [bx+0x10], 0xff", "c64710ff", b16, store(1, 4, imm: 0xFF, mem(base: 3, disp: 0x10), addr: 2)),
    .init("mov dword [si], 0xfee00000", "66c7040000e0fe", b16, store(4, 7, imm: 0xFEE0_0000, mem(base: 6), addr: 2)),
    .init("movsx ax, byte [bx]", "0fbe07", b16, read(1, 3, reg(0, 2), mem(base: 3), widen: .sign, addr: 2)),
    .init("a32 mov eax, [ebx+ecx*2+0x300]", "66678b844b00030000", b16,
          read(4, 9, reg(0, 4), mem(base: 3, index: 1, scale: 2, disp: 0x300), addr: 4)),
    .init("a32 mov eax, [0xfee00020] (16-bit)", "6667a12000e0fe", b16, read(4, 7, reg(0, 4), mem(disp: 0xFEE0_0020), addr: 4)),

    // REX.R / REX.B / REX.X: r8-r15.
    .init("mov r9d, [r12+0x20]", "458b4c2420", b64, read(4, 5, reg(9, 4, rex: true), mem(base: 12, disp: 0x20))),
    .init("mov [r13], r10", "4d895500", b64, write(8, 4, reg(10, 8, rex: true), mem(base: 13))),
    .init("mov [r15+r14*8+0x10], r11w", "6647895cf710", b64,
          write(2, 6, reg(11, 2, rex: true), mem(base: 15, index: 14, scale: 8, disp: 0x10))),
    .init("mov eax, [r12+r9*2-8]", "438b444cf8", b64, read(4, 5, reg(0, 4, rex: true), mem(base: 12, index: 9, scale: 2, disp: -8))),
    .init("mov eax, [rbp+r12*1] (REX.X makes index 100 r12)", "428b442500", b64,
          read(4, 5, reg(0, 4, rex: true), mem(base: 5, index: 12, disp: 0))),
    .init("mov eax, [r13] (needs disp8 as [rbp])", "418b4500", b64, read(4, 4, reg(0, 4, rex: true), mem(base: 13))),
    .init("mov eax, [rbp]", "8b4500", b64, read(4, 3, reg(0, 4), mem(base: 5))),

    // Byte registers: AH..BH without REX, SPL..DIL with it.
    .init("mov ah, [rax]", "8a20", b64, read(1, 2, reg(4, 1), mem(base: 0))),
    .init("mov spl, [rax]", "408a20", b64, read(1, 3, reg(4, 1, rex: true), mem(base: 0))),
    .init("mov [rbx], bh", "883b", b64, write(1, 2, reg(7, 1), mem(base: 3))),
    .init("mov [rbx], dil", "40883b", b64, write(1, 3, reg(7, 1, rex: true), mem(base: 3))),

    // MOVZX / MOVSX: the access is 1 or 2 bytes, the destination the operand size.
    .init("movzx eax, byte [rdi+1]", "0fb64701", b64, read(1, 4, reg(0, 4), mem(base: 7, disp: 1), widen: .zero)),
    .init("movzx ecx, word [rdi+2]", "0fb74f02", b64, read(2, 4, reg(1, 4), mem(base: 7, disp: 2), widen: .zero)),
    .init("movzx r8, byte [rdi]", "4c0fb607", b64, read(1, 4, reg(8, 8, rex: true), mem(base: 7), widen: .zero)),
    .init("movzx ax, byte [rdi]", "660fb607", b64, read(1, 4, reg(0, 2), mem(base: 7), widen: .zero)),
    .init("movsx eax, byte [rdi]", "0fbe07", b64, read(1, 3, reg(0, 4), mem(base: 7), widen: .sign)),
    .init("movsx rdx, word [rsi+0x10]", "480fbf5610", b64, read(2, 5, reg(2, 8, rex: true), mem(base: 6, disp: 0x10), widen: .sign)),
    .init("movsx r15, byte [r8+r9]", "4f0fbe3c08", b64, read(1, 5, reg(15, 8, rex: true), mem(base: 8, index: 9), widen: .sign)),

    // RIP-relative and SIB forms.
    .init("mov eax, [rel $+0x100]", "8b05fa000000", b64, read(4, 6, reg(0, 4), mem(disp: 0xFA, rip: true))),
    .init("mov [rel $-0x10], r8b", "448805e9ffffff", b64, write(1, 7, reg(8, 1, rex: true), mem(disp: -0x17, rip: true))),
    .init("mov eax, [rsp+8] (SIB, disp8)", "8b442408", b64, read(4, 4, reg(0, 4), mem(base: 4, disp: 8))),
    .init("mov eax, [rbx+rcx*4+0x12345678] (SIB, disp32)", "8b848b78563412", b64,
          read(4, 7, reg(0, 4), mem(base: 3, index: 1, scale: 4, disp: 0x1234_5678))),
    .init("mov eax, [rcx*4+0x300] (SIB, no base)", "8b048d00030000", b64, read(4, 7, reg(0, 4), mem(index: 1, scale: 4, disp: 0x300))),
    .init("mov [0xfee000b0], al (SIB, no base or index: disp32 sign-extends)", "880425b000e0fe", b64,
          write(1, 7, reg(0, 1), mem(disp: Int64(Int32(bitPattern: 0xFEE0_00B0))))),

    // Segment overrides and 67h.
    .init("mov [fs:rax+0x20], ecx", "64894820", b64, write(4, 4, reg(1, 4), mem(base: 0, disp: 0x20), seg: .fs)),
    .init("mov eax, [ss:ebp-4] (32-bit)", "368b45fc", b32, read(4, 4, reg(0, 4), mem(base: 5, disp: -4), seg: .ss, addr: 4)),
    .init("mov eax, [fs:0x10] (32-bit)", "64a110000000", b32, read(4, 6, reg(0, 4), mem(disp: 0x10), seg: .fs, addr: 4)),
    .init("mov eax, [gs:bx+si] (32-bit, 67h: 16-bit addressing)", "65678b00", b32,
          read(4, 4, reg(0, 4), mem(base: 3, index: 6), seg: .gs, addr: 2)),
    .init("mov eax, [gs:eax+8]", "65678b4008", b64, read(4, 5, reg(0, 4), mem(base: 0, disp: 8), seg: .gs, addr: 4)),
    // Hand-built: the last segment override wins.
    .init("es cs mov eax, [rax]", "262e8b00", b64, read(4, 4, reg(0, 4), mem(base: 0), seg: .cs)),

    // Immediates: imm32 sign-extends to a 64-bit operand.
    .init("mov qword [rax], -1", "48c700ffffffff", b64, store(8, 7, imm: ~0, mem(base: 0))),
    .init("mov qword [rax], 0x7fffffff", "48c700ffffff7f", b64, store(8, 7, imm: 0x7FFF_FFFF, mem(base: 0))),
    .init("mov dword [rax], 0x80000000 (hand-built)", "c70000000080", b64, store(4, 6, imm: 0x8000_0000, mem(base: 0))),
    .init("mov qword [rax], -0x80000000 (hand-built)", "48c70000000080", b64, store(8, 7, imm: 0xFFFF_FFFF_8000_0000, mem(base: 0))),
    .init("mov byte [rax+1], 0x80", "c6400180", b64, store(1, 4, imm: 0x80, mem(base: 0, disp: 1))),
    .init("mov word [rax], 0x8001", "66c7000180", b64, store(2, 5, imm: 0x8001, mem(base: 0))),

    // Prefix order (hand-built): REX counts only immediately before the opcode; REX.W beats 66h.
    .init("rex.w o16 mov [rax], ax (REX ignored)", "48668900", b64, write(2, 4, reg(0, 2), mem(base: 0))),
    .init("o16 rex.w mov [rax], rax", "66488900", b64, write(8, 4, reg(0, 8, rex: true), mem(base: 0))),
    .init("rex.b rex.w mov rax, [rax] (only the last REX)", "41488b00", b64, read(8, 4, reg(0, 8, rex: true), mem(base: 0))),
    .init("o16 rex.b ds mov ax, [rax] (REX.B ignored)", "66413e8b00", b64, read(2, 5, reg(0, 2), mem(base: 0), seg: .ds)),
    .init("12 prefixes: exactly 15 bytes", "3e3e3e3e3e3e3e3e3e3e3e3e8b4020", b64, read(4, 15, reg(0, 4), mem(base: 0, disp: 0x20), seg: .ds)),

    // RSP operands.
    .init("mov esp, [rax]", "8b20", b64, read(4, 2, reg(4, 4), mem(base: 0))),
    .init("mov [rax], sp", "668920", b64, write(2, 3, reg(4, 2), mem(base: 0))),
]

@Suite struct MMIOInstructionTests {
    @Test(arguments: cases)
    func decodes(_ c: MMIOCase) {
        #expect(decode(c.bytes, c.codeSize) == .success(c.expected))
        // What follows the instruction (the rest of a 15-byte fetch) changes nothing.
        let padded = c.bytes + [UInt8](repeating: 0x90, count: max(0, 15 - c.bytes.count))
        #expect(decode(padded, c.codeSize) == .success(c.expected))
        #expect(c.expected.length == c.bytes.count)
    }

    /// Every strict prefix of a valid encoding ends early.
    @Test(arguments: cases)
    func everyShortFetchIsTruncated(_ c: MMIOCase) {
        for n in 0 ..< c.bytes.count {
            #expect(decode(Array(c.bytes[..<n]), c.codeSize) == .failure(.truncated), "\(n) bytes")
        }
    }

    @Test(arguments: [
        ("or dword [rax], 1", "830801", MMIODecodeError.unsupported(opcode: 0x83)),
        ("or [rax], ecx", "0908", .unsupported(opcode: 0x09)),
        ("xchg [rax], eax", "8700", .unsupported(opcode: 0x87)),
        ("movsxd rax, [rax]", "486300", .unsupported(opcode: 0x63)),
        ("inc eax (32-bit 40 is no REX)", "40", .unsupported(opcode: 0x40)),
        ("rep movsd", "f3a5", .unsupportedPrefix(0xF3)),
        ("repne scasb", "f2ae", .unsupportedPrefix(0xF2)),
        ("movnti [rax], eax", "0fc300", .unsupportedTwoByte(opcode: 0xC3)),
        ("lock mov [rax], eax", "f08900", .undefinedOpcode),
        ("lock movzx eax, byte [rax]", "f00fb600", .undefinedOpcode),
        ("C7 /1 with memory", "c7481000000000", .undefinedOpcode),
        ("C6 /7 with memory", "c63800", .undefinedOpcode),
        ("mov eax, ecx", "8bc1", .registerOperand),
        ("mov [rax] via C7 with mod=11 (mov ecx, 1)", "c7c101000000", .registerOperand),
        ("movzx eax, cl", "0fb6c1", .registerOperand),
        ("13 prefixes: 16 bytes", "3e3e3e3e3e3e3e3e3e3e3e3e3e8b4020", .tooLong),
        ("15 prefixes and no opcode", "3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e", .tooLong),
        ("A1 whose moffs64 crosses byte 15", "3e3e3e3e3e3e48a12000e0fe00000000", .tooLong),
        ("empty", "", .truncated),
        ("prefixes only", "6667", .truncated),
    ] as [(String, String, MMIODecodeError)])
    func rejects(_ source: String, _ bytes: String, _ error: MMIODecodeError) {
        let codeSize: MMIOCodeSize = source.contains("32-bit") ? .bits32 : .bits64
        #expect(decode(hex(bytes), codeSize) == .failure(error), "\(source)")
    }

    // MARK: completeRead

    private func completed(_ bytes: String, _ codeSize: MMIOCodeSize = .bits64, value: UInt64,
                           _ setUp: (inout GeneralRegisters) -> Void = { _ in },
                           rsp: UInt64 = 0x5555_6666_7777_8888) -> (GeneralRegisters, UInt64) {
        var regs = GeneralRegisters()
        setUp(&regs)
        var stackPointer = rsp
        guard case .success(let access) = decode(hex(bytes), codeSize) else {
            Issue.record("\(bytes) does not decode")
            return (regs, stackPointer)
        }
        MMIOInstruction.completeRead(access, value: value, registers: &regs, stackPointer: &stackPointer)
        return (regs, stackPointer)
    }

    /// SDM 3.4.1.1: a 32-bit destination zero-extends; the value is cut to the access size.
    @Test func dwordReadZeroExtends() {
        let (regs, rsp) = completed("8b4720", value: 0x1_2345_6789) { $0.rax = ~0 }
        #expect(regs.rax == 0x2345_6789)
        #expect(rsp == 0x5555_6666_7777_8888)
        let (r9, _) = completed("458b4c2420", value: 0xFEE0_0000) { $0.r9 = 0xAAAA_AAAA_AAAA_AAAA; $0.r12 = 7 }
        #expect(r9.r9 == 0xFEE0_0000)
        #expect(r9.r12 == 7)
    }

    @Test func qwordReadReplaces() {
        let (regs, _) = completed("48a12000e0fe00000000", value: 0x0123_4567_89AB_CDEF) { $0.rax = 1 }
        #expect(regs.rax == 0x0123_4567_89AB_CDEF)
    }

    @Test func wordAndByteReadsPreserveTheRest() {
        let (word, _) = completed("8b4004", .bits16, value: 0xABCD_EF01) { $0.rax = 0x1111_2222_3333_4444 }
        #expect(word.rax == 0x1111_2222_3333_EF01)
        let (cl, _) = completed("8a0e0003", .bits16, value: 0x1234_56AB) { $0.rcx = 0x1111_2222_3333_4444 }
        #expect(cl.rcx == 0x1111_2222_3333_44AB)
    }

    /// Without REX, byte register 4 is AH; with REX it is SPL, which lives in the VMCS.
    @Test func highByteWithoutREXAndSPLWithIt() {
        let (ah, rsp1) = completed("8a20", value: 0x1AB) { $0.rax = 0x1122_3344_5566_7788 }
        #expect(ah.rax == 0x1122_3344_5566_AB88)
        #expect(rsp1 == 0x5555_6666_7777_8888)
        let (spl, rsp2) = completed("408a20", value: 0xAB) { $0.rax = 0x1122_3344_5566_7788 }
        #expect(spl.rax == 0x1122_3344_5566_7788)
        #expect(rsp2 == 0x5555_6666_7777_88AB)
    }

    @Test func stackPointerDestinationZeroExtends() {
        let (regs, rsp) = completed("8b20", value: 0xFFFF_0000_0000_1000) { $0.rax = 0xFEE0_0000 }
        #expect(rsp == 0x1000)
        #expect(regs.rax == 0xFEE0_0000)
        #expect(regs.rsp == 0)
    }

    @Test func movsxSignExtendsToTheDestination() {
        let (eax, _) = completed("0fbe07", value: 0x80) { $0.rax = 0xFFFF_FFFF_0000_0000 }
        #expect(eax.rax == 0x0000_0000_FFFF_FF80)
        let (pos, _) = completed("0fbe07", value: 0x17F) { $0.rax = ~0 }
        #expect(pos.rax == 0x7F)
        let (rdx, _) = completed("480fbf5610", value: 0x8001) { $0.rdx = 0 }
        #expect(rdx.rdx == 0xFFFF_FFFF_FFFF_8001)
        let (ax, _) = completed("0fbe07", .bits16, value: 0xFE) { $0.rax = 0x1111_2222_3333_4444 }
        #expect(ax.rax == 0x1111_2222_3333_FFFE)
    }

    @Test func movzxZeroExtendsToTheDestination() {
        let (r8, _) = completed("4c0fb607", value: 0x1FF) { $0.r8 = ~0 }
        #expect(r8.r8 == 0xFF)
        let (ax, _) = completed("660fb607", value: 0x80) { $0.rax = 0x1111_2222_3333_4444 }
        #expect(ax.rax == 0x1111_2222_3333_0080)
        let (ecx, _) = completed("0fb74f02", value: 0xFFFF_8001) { $0.rcx = ~0 }
        #expect(ecx.rcx == 0x8001)
    }

    @Test func completeReadIgnoresWrites() {
        let (regs, rsp) = completed("898a00030000", value: 0x1234) { $0.rcx = 0x99 }
        #expect(regs.rcx == 0x99)
        #expect(rsp == 0x5555_6666_7777_8888)
    }

    // MARK: writeValue

    private func stored(_ bytes: String, _ codeSize: MMIOCodeSize = .bits64, rsp: UInt64 = 0x5555_6666_7777_8888) -> UInt64? {
        var regs = GeneralRegisters()
        regs.rax = 0x1111_1111_1111_1180
        regs.rcx = 0x1122_3344_5566_7788
        regs.rbx = 0xA1A2_A3A4_A5A6_A7A8
        regs.rdx = 0x2222_2222_2222_22D8
        regs.rdi = 0xD1D2_D3D4_D5D6_D7D8
        regs.r8 = 0x8888_8888_8888_88F8
        regs.r10 = 0x0102_0304_0506_0708
        regs.r11 = 0xB1B2_B3B4_B5B6_B7B8
        guard case .success(let access) = decode(hex(bytes), codeSize) else { return nil }
        return MMIOInstruction.writeValue(access, registers: regs, stackPointer: rsp)
    }

    @Test func writeValueTakesTheRegisterAtTheAccessSize() {
        #expect(stored("898a00030000") == 0x5566_7788)                  // mov [rdx+0x300], ecx
        #expect(stored("4d895500") == 0x0102_0304_0506_0708)            // mov [r13], r10
        #expect(stored("6647895cf710") == 0xB7B8)                       // mov [...], r11w
        #expect(stored("883b") == 0xA7)                                 // mov [rbx], bh
        #expect(stored("40883b") == 0xD8)                               // mov [rbx], dil
        #expect(stored("448805e9ffffff") == 0xF8)                       // mov [rel], r8b
        #expect(stored("a30000c0fe00000000") == 0x1111_1180)            // mov [moffs], eax
        #expect(stored("885600", .bits16) == 0xD8)                      // mov [bp], dl
        #expect(stored("668920", rsp: 0x1234_5678_9ABC_DEF0) == 0xDEF0) // mov [rax], sp
    }

    @Test func writeValueTakesTheImmediateSignExtendedAndMasked() {
        #expect(stored("48c700ffffffff") == 0xFFFF_FFFF_FFFF_FFFF)
        #expect(stored("48c70000000080") == 0xFFFF_FFFF_8000_0000)
        #expect(stored("c70000000080") == 0x8000_0000)
        #expect(stored("c780b000000000000000") == 0)
        #expect(stored("c6400180") == 0x80)
        #expect(stored("66c7000180") == 0x8001)
        #expect(stored("66c7040000e0fe", .bits16) == 0xFEE0_0000)
    }

    @Test func writeValueMasksAHandBuiltImmediate() {
        let access = MMIOAccess(kind: .write, size: 2, length: 6, register: nil, immediate: 0xFFFF_1234,
                                memory: MMIOMemoryOperand(base: 0), addressSize: 8)
        #expect(MMIOInstruction.writeValue(access, registers: GeneralRegisters(), stackPointer: 0) == 0x1234)
    }

    @Test func writeValueOfAReadIsZero() {
        #expect(stored("8b4720") == 0)
    }

    @Test func usesStackPointer() {
        guard case .success(let esp) = decode(hex("8b20"), .bits64),
              case .success(let ah) = decode(hex("8a20"), .bits64),
              case .success(let spl) = decode(hex("408a20"), .bits64),
              case .success(let imm) = decode(hex("c6400180"), .bits64) else {
            Issue.record("decode failed")
            return
        }
        #expect(esp.usesStackPointer)
        #expect(!ah.usesStackPointer)
        #expect(ah.register?.location == .saved(number: 0, shift: 8))
        #expect(spl.usesStackPointer)
        #expect(!imm.usesStackPointer)
    }

    // MARK: code size

    @Test func codeSizeFromCS() {
        let long = SegmentAccessRights(rawValue: 0x9B | SegmentAccessRights.longBit)
        let big = SegmentAccessRights(rawValue: 0x9B | SegmentAccessRights.defaultBigBit)
        let small = SegmentAccessRights(rawValue: 0x9B)
        #expect(MMIOCodeSize(protectedMode: true, virtual8086: false, longModeActive: true, cs: long) == .bits64)
        #expect(MMIOCodeSize(protectedMode: true, virtual8086: false, longModeActive: true, cs: big) == .bits32)
        #expect(MMIOCodeSize(protectedMode: true, virtual8086: false, longModeActive: true, cs: small) == .bits16)
        #expect(MMIOCodeSize(protectedMode: true, virtual8086: false, longModeActive: false, cs: long) == .bits16)
        #expect(MMIOCodeSize(protectedMode: true, virtual8086: false, longModeActive: false, cs: big) == .bits32)
        #expect(MMIOCodeSize(protectedMode: false, virtual8086: false, longModeActive: false, cs: big) == .bits16)
        #expect(MMIOCodeSize(protectedMode: true, virtual8086: true, longModeActive: false, cs: big) == .bits16)
    }
}

@Suite struct MMIOInstructionRandomBytesTests {
    /// Any 15 bytes decode to an access no longer than 15 bytes, with a
    /// consistent size, or to an error; never a crash.
    @Test func arbitraryBytesNeverCrash() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var decoded = 0
        for round in 0 ..< 20_000 {
            var bytes = [UInt8](repeating: 0, count: 15)
            for i in 0 ..< 15 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                bytes[i] = UInt8(truncatingIfNeeded: state >> 56)
            }
            // Bias towards the supported opcodes so the decode paths are exercised.
            let opcodes: [UInt8] = [0x88, 0x89, 0x8A, 0x8B, 0xC6, 0xC7, 0xA0, 0xA1, 0xA2, 0xA3]
            if round % 2 == 0 { bytes[Int(state % 4)] = opcodes[Int((state >> 8) % 10)] }
            let codeSize: MMIOCodeSize = [.bits16, .bits32, .bits64][round % 3]
            if case .success(let access) = decode(bytes, codeSize) {
                decoded += 1
                #expect(access.length >= 1 && access.length <= 15)
                #expect([1, 2, 4, 8].contains(access.size))
                #expect((access.register == nil) != (access.immediate == nil))
            }
        }
        #expect(decoded > 1000)
    }
}
