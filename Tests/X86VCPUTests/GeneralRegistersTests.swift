import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

@Suite struct GeneralRegistersTests {
    // The trampoline's offsets: AssemblyContractTests reads them from Boot/vmx.asm.

    /// Numbered access reaches the slot the trampoline fills for that number.
    @Test func registerNumbersReachTheirSlots() {
        var regs = GeneralRegisters()
        withUnsafeMutableBytes(of: &regs) { raw in
            for n in 0 ..< 16 { raw.storeBytes(of: 0x1000 + UInt64(n), toByteOffset: n * 8, as: UInt64.self) }
        }
        for n in 0 ..< 16 where n != 4 {
            #expect(regs.read(n, width: .qword) == 0x1000 + UInt64(n))
            #expect(regs[n] == 0x1000 + UInt64(n))
        }
        #expect(regs.r13 == 0x100D)
    }

    /// SDM 3.4.1.1: 32-bit operands zero-extend to 64 bits.
    @Test func dwordWriteZeroExtends() {
        var regs = GeneralRegisters()
        regs.rax = 0xFFFF_FFFF_FFFF_FFFF
        let ok1 = regs.write(0, 0xDEAD_BEEF_1234_5678, width: .dword)
        #expect(ok1)
        #expect(regs.rax == 0x1234_5678)
        regs.r12 = 0xAAAA_AAAA_AAAA_AAAA
        let ok2 = regs.write(12, 0x1, width: .dword)
        #expect(ok2)
        #expect(regs.r12 == 1)
    }

    /// SDM 3.4.1.1: 8- and 16-bit operands leave the upper bits unchanged.
    @Test func wordAndByteWritesMerge() {
        var regs = GeneralRegisters()
        regs.rbx = 0x1122_3344_5566_7788
        let ok3 = regs.write(3, 0xFFFF_ABCD, width: .word)
        #expect(ok3)
        #expect(regs.rbx == 0x1122_3344_5566_ABCD)
        regs.rcx = 0x1122_3344_5566_7788
        let ok4 = regs.write(1, 0x1EE, width: .byte)
        #expect(ok4)
        #expect(regs.rcx == 0x1122_3344_5566_77EE)
        let ok5 = regs.write(9, 0x0123_4567_89AB_CDEF, width: .qword)
        #expect(ok5)
        #expect(regs.r9 == 0x0123_4567_89AB_CDEF)
    }

    @Test func readsTruncateToWidth() {
        var regs = GeneralRegisters()
        regs.rdx = 0x1122_3344_5566_7788
        #expect(regs.read(2, width: .byte) == 0x88)
        #expect(regs.read(2, width: .word) == 0x7788)
        #expect(regs.read(2, width: .dword) == 0x5566_7788)
        #expect(regs.read(2, width: .qword) == 0x1122_3344_5566_7788)
    }

    /// Without REX, byte registers 4..7 are AH, CH, DH, BH (bits 15:8).
    @Test func legacyHighByteRegisters() {
        var regs = GeneralRegisters()
        regs.rax = 0x0000_0000_0000_BEEF
        regs.rbx = 0x1111_1111_1111_1111
        #expect(regs.read(4, width: .byte, rex: false) == 0xBE)  // AH
        #expect(!GeneralRegisters.isStackPointer(4, width: .byte, rex: false))
        let bh = regs.write(7, 0x5A, width: .byte, rex: false)  // BH
        #expect(bh)
        #expect(regs.rbx == 0x1111_1111_1111_5A11)
        let ch = regs.write(5, 0x77, width: .byte, rex: false)  // CH
        #expect(ch)
        #expect(regs.rcx == 0x7700)
        #expect(regs.rbp == 0)
        // With REX, byte register 6 is SIL, the low byte of RSI.
        regs.rsi = 0xFF00
        let ok6 = regs.write(6, 0x42, width: .byte, rex: true)
        #expect(ok6)
        #expect(regs.rsi == 0xFF42)
        // Numbers 8..15 need REX: without it they name nothing.
        #expect(regs.read(9, width: .byte, rex: false) == nil)
        #expect(GeneralRegisters.location(of: 9, width: .byte, rex: false) == .invalid)
    }

    /// RSP (and SPL with REX) live in the VMCS: the caller must route them.
    @Test func stackPointerIsRoutedToTheCaller() {
        var regs = GeneralRegisters()
        regs.rsp = 0x1234
        #expect(regs.read(4, width: .qword) == nil)
        #expect(regs.read(4, width: .byte, rex: true) == nil)
        let ok7 = regs.write(4, 0x99, width: .qword)
        #expect(!ok7)
        #expect(regs.rsp == 0x1234)
        #expect(regs[4] == nil)
        let ok8 = regs.setFull(4, 1)
        #expect(!ok8)
        #expect(GeneralRegisters.isStackPointer(4))
        #expect(GeneralRegisters.isStackPointer(4, width: .byte, rex: true))
        #expect(!GeneralRegisters.isStackPointer(0))
        #expect(GeneralRegisters.location(of: 4, width: .word) == .stackPointer(shift: 0))
        // The same width rules applied to the VMCS value.
        #expect(GeneralRegisters.merge(0x1234, into: 0xFFFF_FFFF_FFFF_FFFF, width: .dword) == 0x1234)
        #expect(GeneralRegisters.merge(0x1234, into: 0xFFFF_FFFF_FFFF_FFFF, width: .word) == 0xFFFF_FFFF_FFFF_1234)
        #expect(GeneralRegisters.extract(0x8765_4321, width: .word) == 0x4321)
    }

    @Test func invalidNumbersAreRejectedNotTrapped() {
        var regs = GeneralRegisters()
        #expect(regs.read(-1, width: .qword) == nil)
        #expect(regs.read(16, width: .dword) == nil)
        let ok9 = regs.write(16, 1, width: .qword)
        #expect(!ok9)
        #expect(regs[99] == nil)
        #expect(GeneralRegisters.location(of: -3, width: .byte) == .invalid)
        #expect(regs == GeneralRegisters())
    }

    @Test func operandWidthFromByteCount() {
        #expect(OperandWidth(bytes: 1) == .byte)
        #expect(OperandWidth(bytes: 2) == .word)
        #expect(OperandWidth(bytes: 4) == .dword)
        #expect(OperandWidth(bytes: 8) == .qword)
        #expect(OperandWidth(bytes: 3) == nil)
        #expect(OperandWidth.dword.bytes == 4)
    }
}
