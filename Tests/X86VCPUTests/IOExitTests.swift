import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// IN/OUT and INS/OUTS through `VCPU.run`; conventions as in VCPUExitHandlerTests.

@Suite struct IOExitTests {
    @Test func outWritesOnlyTheOperandWidth() throws {
        var rig = try VCPURig()
        _ = rig.run([.out(0x3F8, 0x1234_5641), .out(0x80, 0xFFFF_BEEF, width: .word, length: 2),
                     .out(0xCFC, 0x1_8000_0000, width: .dword)])
        #expect(rig.platform.outs == [.init(port: 0x3F8, width: .byte, value: 0x41),
                                      .init(port: 0x80, width: .word, value: 0xBEEF),
                                      .init(port: 0xCFC, width: .dword, value: 0x8000_0000)])
        #expect(rig.rip == 0x1004)
    }

    @Test func inALAndAXMergeIntoRAX() throws {
        var rig = try VCPURig()
        rig.platform.inValues = [0x60: [0x5A], 0x1F0: [0xC0DE]]
        _ = rig.run([ScriptedExit.io(port: 0x60, width: .byte, in: true).then { r, _ in r.rax = 0xFFFF_FFFF_FFFF_FF00 }])
        #expect(rig.vcpu.registers.rax == 0xFFFF_FFFF_FFFF_FF5A)
        _ = rig.run([ScriptedExit.io(port: 0x1F0, width: .word, in: true).then { r, _ in r.rax = 0x1111_2222_3333_4444 }])
        #expect(rig.vcpu.registers.rax == 0x1111_2222_3333_C0DE)
    }

    @Test func inEAXZeroExtends() throws {
        var rig = try VCPURig()
        rig.platform.inValues = [0xCFC: [0x1234_5678]]
        _ = rig.run([ScriptedExit.io(port: 0xCFC, width: .dword, in: true).then { r, _ in r.rax = 0xFFFF_FFFF_0000_0000 }])
        #expect(rig.vcpu.registers.rax == 0x1234_5678)
        #expect(rig.platform.ins == [.init(port: 0xCFC, width: .dword, value: 0x1234_5678)])
        #expect(rig.rip == 0x1001)
    }

    @Test func theExitPortPowersOffWithTheStatus() throws {
        var rig = try VCPURig()
        let exit = rig.run([.exitPort(3)])
        #expect(exit == .powerOff(status: 3))
        #expect(!rig.hw.scriptExhausted)
        #expect(rig.rip == 0x1002)   // the OUT completed
    }

    @Test func anUndefinedSizeEncodingIsUnhandled() throws {
        var rig = try VCPURig()
        let exit = rig.run([ScriptedExit(.ioInstruction, qualification: 0x0080_0002, length: 1)])
        #expect(exit == .unhandled(reason: .ioInstruction, qualification: 0x0080_0002, rip: 0x1000))
    }

    /// REP OUTSB/INSB with 32-bit addressing (instruction information bits 9:7 = 1).
    /// INS/OUTS; `segment` is the instruction information's segment (3 = DS, OUTS's default).
    func string(port: UInt16, width: OperandWidth = .byte, in isIn: Bool, rep: Bool = true,
                addressSize: UInt32 = 1, segment: UInt32 = 3) -> ScriptedExit {
        ScriptedExit.io(port: port, width: width, in: isIn, string: true, rep: rep, length: 2)
            .with { $0.instructionInformation = addressSize << 7 | segment << 15 }
    }

    @Test func repOutsbForwardsWalksRSIUpAndExhaustsRCX() throws {
        var rig = try VCPURig()
        rig.memory.store(Array("ABC".utf8), at: 0x3000)
        _ = rig.run([string(port: 0x3F8, in: false).then { r, _ in r.rsi = 0x3000; r.rcx = 3 }])
        #expect(rig.platform.outs.map(\.value) == [0x41, 0x42, 0x43])
        #expect(rig.vcpu.registers.rsi == 0x3003)
        #expect(rig.vcpu.registers.rcx == 0)
        #expect(rig.rip == 0x1002)
    }

    @Test func repOutsbWithDFSetWalksRSIDown() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.rflags, 0x402)
        rig.memory.store(Array("ABC".utf8), at: 0x3000)
        _ = rig.run([string(port: 0x3F8, in: false).then { r, _ in r.rsi = 0x3002; r.rcx = 3 }])
        #expect(rig.platform.outs.map(\.value) == [0x43, 0x42, 0x41])
        #expect(rig.vcpu.registers.rsi == 0x2FFF)
        #expect(rig.vcpu.registers.rcx == 0)
    }

    @Test func outswWithoutRepMovesOneElementAndLeavesRCX() throws {
        var rig = try VCPURig()
        rig.memory.store([0xEF, 0xBE], at: 0x3000)
        _ = rig.run([string(port: 0x80, width: .word, in: false, rep: false).then { r, _ in r.rsi = 0x3000; r.rcx = 0x77 }])
        #expect(rig.platform.outs == [.init(port: 0x80, width: .word, value: 0xBEEF)])
        #expect(rig.vcpu.registers.rsi == 0x3002)
        #expect(rig.vcpu.registers.rcx == 0x77)
    }

    @Test func repInsbWritesGuestRAMThroughES() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.esBase, 0x100)
        rig.platform.inValues = [0x60: [1, 2, 3]]
        _ = rig.run([string(port: 0x60, in: true).then { r, _ in r.rdi = 0x4000; r.rcx = 3 }])
        let memory = rig.memory
        #expect((0..<3).map { memory.load8(0x4100 + UInt64($0)) } == [1, 2, 3])
        #expect(rig.vcpu.registers.rdi == 0x4003)
        #expect(rig.vcpu.registers.rcx == 0)
        #expect(rig.rip == 0x1002)
    }

    @Test func insdStoresLittleEndian() throws {
        var rig = try VCPURig()
        rig.platform.inValues = [0xCFC: [0x1122_3344]]
        _ = rig.run([string(port: 0xCFC, width: .dword, in: true, rep: false).then { r, _ in r.rdi = 0x5000 }])
        let memory = rig.memory
        #expect((0..<4).map { memory.load8(0x5000 + UInt64($0)) } == [0x44, 0x33, 0x22, 0x11])
        #expect(rig.vcpu.registers.rdi == 0x5004)
    }

    @Test func outsReadsThroughDS() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.dsBase, 0x100)
        rig.memory.store([0x99], at: 0x110)
        _ = rig.run([string(port: 0x80, in: false, rep: false).then { r, _ in r.rsi = 0x10 }])
        #expect(rig.platform.outs.map(\.value) == [0x99])
    }

    @Test func aLongRepStopsAfterAPageAndResumesTheSameInstruction() throws {
        var rig = try VCPURig()
        _ = rig.run([string(port: 0x80, in: false).then { r, _ in r.rsi = 0x1_0000; r.rcx = 5000 }])
        #expect(rig.platform.outs.count == 4096)
        #expect(rig.vcpu.registers.rcx == 904)
        #expect(rig.vcpu.registers.rsi == 0x1_1000)
        #expect(rig.rip == 0x1000)   // the guest runs REP OUTSB again for the rest
    }

    @Test func sixteenBitAddressingWrapsSIAndCXAndKeepsTheUpperBits() throws {
        var rig = try VCPURig()
        rig.memory.store([0x11], at: 0xFFFF)
        rig.memory.store([0x22], at: 0)
        _ = rig.run([string(port: 0x80, in: false, addressSize: 0).then { r, _ in r.rsi = 0x1_FFFF; r.rcx = 0x1_0002 }])
        #expect(rig.platform.outs.map(\.value) == [0x11, 0x22])
        #expect(rig.vcpu.registers.rsi == 0x1_0001)
        #expect(rig.vcpu.registers.rcx == 0x1_0000)
    }

    @Test func withoutInstructionInformationTheAddressSizeComesFromCS() throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x480] = 0x0098_1000_0000_002B   // IA32_VMX_BASIC bit 54 clear
        var rig = try VCPURig(hw: hw)
        rig.memory.store([0x5A], at: 0x1_0000)
        // CS.D = 1 (flat 32-bit code): ESI is used whole.
        _ = rig.run([string(port: 0x80, in: false, rep: false, addressSize: 7).then { r, _ in r.rsi = 0x1_0000 }])
        #expect(rig.platform.outs.map(\.value) == [0x5A])
        #expect(rig.vcpu.registers.rsi == 0x1_0001)
    }

    @Test func withoutInstructionInformationA64BitCSUsesRSIWhole() throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x480] = 0x0098_1000_0000_002B   // IA32_VMX_BASIC bit 54 clear
        hw.cpu.setCPUID(leaf: 0x8000_0000, CPUIDResult(eax: 0x8000_0008))
        hw.cpu.setCPUID(leaf: 0x8000_0001, CPUIDResult(edx: 1 << 26))   // 1 GiB pages
        var rig = try VCPURig(.long64, rip: 0x1000, hw: hw) { $0.cr3 = 0x10000 }
        // Linear 4 GiB + x maps to guest-physical x (a 1 GiB page).
        rig.memory.store64(0x11000 | 3, at: 0x10000)
        rig.memory.store64(0x0 | 0x83, at: 0x11000 + 4 * 8)
        rig.memory.store([0x64], at: 0x3000)
        _ = rig.run([string(port: 0x80, in: false, rep: false).then { r, _ in r.rsi = 0x1_0000_3000 }])
        #expect(rig.platform.outs.map(\.value) == [0x64])
        #expect(rig.vcpu.registers.rsi == 0x1_0000_3001)
    }

    @Test func anAddressOutsideGuestRAMStopsTheGuest() throws {
        var rig = try VCPURig()
        let exit = rig.run([string(port: 0x3F8, in: false).then { r, _ in r.rsi = 0x30_0000; r.rcx = 2 }])
        #expect(exit == .badGuestAddress(linear: 0x30_0000, rip: 0x1000))
        #expect(rig.platform.outs.isEmpty)
    }

    @Test func outsbToTheExitPortPowersOff() throws {
        var rig = try VCPURig()
        rig.memory.store([7], at: 0x3000)
        let exit = rig.run([string(port: FakePlatform.exitPort, in: false, rep: false).then { r, _ in r.rsi = 0x3000 }])
        #expect(exit == .powerOff(status: 7))
    }

    @Test func repWithRCXZeroDoesNothing() throws {
        var rig = try VCPURig()
        _ = rig.run([string(port: 0x80, in: false).then { r, _ in r.rsi = 0x3000; r.rcx = 0 }])
        #expect(rig.platform.outs.isEmpty)
        #expect(rig.rip == 0x1002)
    }
}

/// INS/OUTS memory operands checked as the CPU would: segment, then the
/// guest's paging at the guest's privilege, every byte of every element.
@Suite struct StringIOProtectionTests {
    /// #PF with an error code: valid | deliver | hardware exception | 14.
    static let injectPF: UInt32 = 0x8000_0B0E
    static let injectSS: UInt32 = 0x8000_0B0C

    func string(port: UInt16 = 0x80, width: OperandWidth = .byte, in isIn: Bool, rep: Bool = false,
                segment: UInt32 = 3, addressSize: UInt32 = 1) -> ScriptedExit {
        ScriptedExit.io(port: port, width: width, in: isIn, string: true, rep: rep, length: 2)
            .with { $0.instructionInformation = addressSize << 7 | segment << 15 }
    }

    /// 32-bit paging: linear 0x5000 supervisor-only, 0x6000 user, 0x7000 not
    /// present, 0x8000 user and backed by frame 0x9000.
    func paged(cpl3: Bool = false) throws -> VCPURig {
        let rig = try VCPURig()
        rig.memory.store64(0x21000 | 7, at: 0x20000)
        rig.memory.store64(0x5000 | 3, at: 0x21000 + 5 * 4)
        rig.memory.store64(0x6000 | 7, at: 0x21000 + 6 * 4)
        rig.memory.store64(0x9000 | 7, at: 0x21000 + 8 * 4)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x20000)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x8001_0031)
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x8001_0011)
        if cpl3 { rig.preset(VMCSFields.Guest32.ssAccessRights, 0xC0F3) }
        return rig
    }

    @Test func ring3INSIntoASupervisorPageRaisesPFAndWritesNothing() throws {
        var rig = try paged(cpl3: true)
        rig.platform.inValues = [0x80: [0xAB]]
        _ = rig.run([string(in: true).then { r, _ in r.rdi = 0x5010 }])
        #expect(rig.entries[1].injected.raw == Self.injectPF)
        #expect(rig.entries[1].exceptionErrorCode == 0x7)   // present | write | user
        #expect(rig.hw.cr2 == 0x5010)
        #expect(rig.memory.load8(0x5010) == 0)
        #expect(rig.vcpu.registers.rdi == 0x5010)
        #expect(rig.rip == 0x1000)
    }

    @Test func ring0INSIntoTheSamePageWrites() throws {
        var rig = try paged()
        rig.platform.inValues = [0x80: [0xAB]]
        _ = rig.run([string(in: true).then { r, _ in r.rdi = 0x5010 }])
        #expect(rig.memory.load8(0x5010) == 0xAB)
        #expect(rig.rip == 0x1002)
    }

    @Test func aWordStraddlingIntoANotPresentPageRaisesPFForTheSecondPage() throws {
        var rig = try paged()
        _ = rig.run([string(width: .word, in: false).then { r, _ in r.rsi = 0x6FFF }])
        #expect(rig.entries[1].injected.raw == Self.injectPF)
        #expect(rig.entries[1].exceptionErrorCode == 0)
        #expect(rig.hw.cr2 == 0x7000)
        #expect(rig.platform.outs.isEmpty)
    }

    @Test func aWordStraddlingTwoPagesWritesEachByteThroughItsOwnPage() throws {
        var rig = try paged()
        rig.memory.store64(0x21000 | 7, at: 0x20000)
        rig.memory.store64(0x9000 | 7, at: 0x21000 + 7 * 4)   // linear 0x7000 -> frame 0x9000
        rig.platform.inValues = [0x80: [0xBBAA]]
        _ = rig.run([string(width: .word, in: true).then { r, _ in r.rdi = 0x6FFF }])
        #expect(rig.memory.load8(0x6FFF) == 0xAA)
        #expect(rig.memory.load8(0x9000) == 0xBB)
        #expect(rig.memory.load8(0x7000) == 0)
    }

    @Test func aREPThatFaultsMidwayLeavesTheRegistersAtTheFaultingElement() throws {
        var rig = try paged()
        rig.memory.store([1, 2], at: 0x6FFE)
        _ = rig.run([string(in: false, rep: true).then { r, _ in r.rsi = 0x6FFE; r.rcx = 3 }])
        #expect(rig.platform.outs.map(\.value) == [1, 2])
        #expect(rig.vcpu.registers.rsi == 0x7000)
        #expect(rig.vcpu.registers.rcx == 1)
        #expect(rig.entries[1].injected.raw == Self.injectPF)
        #expect(rig.rip == 0x1000)
    }

    @Test func outsWithAnFSOverrideReadsThroughFS() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.fsBase, 0x4000)
        rig.memory.store([0x77], at: 0x4010)
        rig.memory.store([0x11], at: 0x10)
        _ = rig.run([string(in: false, segment: 4).then { r, _ in r.rsi = 0x10 }])
        #expect(rig.platform.outs.map(\.value) == [0x77])
    }

    @Test func anOffsetBeyondTheSegmentLimitRaisesGPOrSSThroughSS() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest32.dsLimit, 0xFFF)
        _ = rig.run([string(in: false).then { r, _ in r.rsi = 0x1000 }])
        #expect(rig.entries[1].injected.raw == injectGP)
        var stack = try VCPURig()
        stack.preset(VMCSFields.Guest32.ssLimit, 0xFFF)
        _ = stack.run([string(in: false, segment: 2).then { r, _ in r.rsi = 0xFFF }])
        #expect(stack.platform.outs.count == 1)
        _ = stack.run([string(width: .word, in: false, segment: 2).then { r, _ in r.rsi = 0xFFF }])
        #expect(stack.entries.last?.injected.raw == Self.injectSS)
    }

    @Test func insIntoAReadOnlyOrUnusableESRaisesGP() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest32.esAccessRights, 0xC091)   // read-only data
        _ = rig.run([string(in: true).then { r, _ in r.rdi = 0x3000 }])
        #expect(rig.entries[1].injected.raw == injectGP)
        var unusable = try VCPURig()
        unusable.preset(VMCSFields.Guest32.esAccessRights, 1 << 16)
        _ = unusable.run([string(in: true).then { r, _ in r.rdi = 0x3000 }])
        #expect(unusable.entries[1].injected.raw == injectGP)
    }

    @Test func aNonCanonicalAddressIn64BitModeRaisesGP() throws {
        var rig = try VCPURig(.long64) { $0.cr3 = 0x10000 }
        _ = rig.run([string(in: false, addressSize: 2).then { r, _ in r.rsi = 0x0000_8000_0000_0000 }])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.platform.outs.isEmpty)
    }
}
