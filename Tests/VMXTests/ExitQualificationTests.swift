import Testing
import TestSupport
import X86Arch
import VMX

/// Raw values are built from the SDM 28.2.1 bit tables, field by field.
@Suite struct ExitQualificationTests {
    // Table "Exit Qualification for Control-Register Accesses":
    // 3:0 CR, 5:4 access type, 6 LMSW operand type, 11:8 GPR, 31:16 LMSW data.
    static func crQual(cr: UInt64, type: UInt64, lmswMemory: UInt64 = 0, gpr: UInt64 = 0, data: UInt64 = 0) -> UInt64 {
        cr | type << 4 | lmswMemory << 6 | gpr << 8 | data << 16
    }

    @Test func movToCR4FromR9() {
        let q = ControlRegisterAccessQualification(raw: Self.crQual(cr: 4, type: 0, gpr: 9))
        #expect(q.controlRegister == 4)
        #expect(q.accessType == .movToCR)
        #expect(q.generalRegister == 9)
    }

    @Test func movFromCR3IntoRSPNeedsRouting() {
        let q = ControlRegisterAccessQualification(raw: Self.crQual(cr: 3, type: 1, gpr: 4))
        #expect(q.accessType == .movFromCR)
        #expect(q.controlRegister == 3)
        #expect(q.generalRegister == 4)  // RSP: the vCPU must route it through the VMCS
    }

    @Test func cltsAndLMSW() {
        #expect(ControlRegisterAccessQualification(raw: Self.crQual(cr: 0, type: 2)).accessType == .clts)
        let mem = ControlRegisterAccessQualification(raw: Self.crQual(cr: 0, type: 3, lmswMemory: 1, data: 0x000B))
        #expect(mem.accessType == .lmsw)
        #expect(mem.lmswOperandType == .memory)
        #expect(mem.lmswSourceData == 0x000B)
        let reg = ControlRegisterAccessQualification(raw: Self.crQual(cr: 0, type: 3, gpr: 2, data: 0xFFF1))
        #expect(reg.lmswOperandType == .register)
        #expect(reg.lmswSourceData == 0xFFF1)
        // Reserved high bits do not leak into the fields.
        let noisy = ControlRegisterAccessQualification(raw: Self.crQual(cr: 8, type: 0, gpr: 15) | 0xFFFF_FFFF_0000_0000)
        #expect(noisy.controlRegister == 8)
        #expect(noisy.generalRegister == 15)
        #expect(noisy.lmswSourceData == 0)
    }

    // Table "Exit Qualification for I/O Instructions": 2:0 size (0=1, 1=2, 3=4 bytes),
    // 3 direction (1 = IN), 4 string, 5 REP, 6 operand encoding (1 = immediate), 31:16 port.
    @Test func outDXAL() {
        let q = IOInstructionQualification(raw: 0x03F8 << 16)
        #expect(q.size == 1)
        #expect(q.width == .byte)
        #expect(q.direction == .out)
        #expect(!q.isString)
        #expect(!q.isRepeated)
        #expect(q.operandEncoding == .dx)
        #expect(q.port == 0x3F8)
    }

    @Test func inEAXImmediate() {
        let q = IOInstructionQualification(raw: 3 | 1 << 3 | 1 << 6 | 0x60 << 16)
        #expect(q.size == 4)
        #expect(q.width == .dword)
        #expect(q.direction == .in)
        #expect(q.operandEncoding == .immediate)
        #expect(q.port == 0x60)
    }

    @Test func repOutswAndUnusedSizeEncodings() {
        let q = IOInstructionQualification(raw: 1 | 1 << 4 | 1 << 5 | 0x1F0 << 16)
        #expect(q.size == 2)
        #expect(q.width == .word)
        #expect(q.isString)
        #expect(q.isRepeated)
        #expect(q.port == 0x1F0)
        for unused: UInt64 in [2, 4, 5, 6, 7] {
            #expect(IOInstructionQualification(raw: unused).size == nil)
            #expect(IOInstructionQualification(raw: unused).width == nil)
        }
    }

    // Table "Exit Qualification for EPT Violations": 0 read, 1 write, 2 fetch,
    // 3/4/5 entry R/W/X, 6 user-mode X, 7 GLA valid, 8 translated access, 12 NMI unblocking.
    @Test func writeToReadOnlyPage() {
        let q = EPTViolationQualification(raw: 1 << 1 | 1 << 3 | 1 << 5 | 1 << 7 | 1 << 8)
        #expect(q.isWrite)
        #expect(!q.isRead)
        #expect(!q.isInstructionFetch)
        #expect(q.entryReadable)
        #expect(!q.entryWritable)
        #expect(q.entryExecutable)
        #expect(!q.entryUserExecutable)
        #expect(!q.isNotPresent)
        #expect(q.guestLinearAddressValid)
        #expect(q.isTranslatedAccess == true)
        #expect(!q.nmiUnblockingDueToIRET)
    }

    @Test func readOfUnmappedPageDuringPageWalk() {
        let q = EPTViolationQualification(raw: 1 << 0 | 1 << 7)
        #expect(q.isRead)
        #expect(q.isNotPresent)
        #expect(q.isTranslatedAccess == false)
    }

    @Test func fetchWithoutLinearAddressAndNMIUnblocking() {
        let q = EPTViolationQualification(raw: 1 << 2 | 1 << 4 | 1 << 6 | 1 << 8 | 1 << 12)
        #expect(q.isInstructionFetch)
        #expect(q.entryWritable)
        #expect(q.entryUserExecutable)
        #expect(!q.guestLinearAddressValid)
        #expect(q.isTranslatedAccess == nil)  // bit 8 is meaningless without bit 7
        #expect(q.nmiUnblockingDueToIRET)
    }

    // Table "... Instruction-Information Field as Used for INS and OUTS":
    // 9:7 address size (0=16, 1=32, 2=64), 17:15 segment (ES CS SS DS FS GS).
    @Test func outsInstructionInformation() {
        let info = StringIOInstructionInformation(raw: 2 << 7 | 4 << 15)
        #expect(info.addressSize == .qword)
        #expect(info.segment == .fs)
        let info16 = StringIOInstructionInformation(raw: 0 << 7 | 3 << 15 | 0x7F)
        #expect(info16.addressSize == .word)
        #expect(info16.segment == .ds)
        #expect(StringIOInstructionInformation(raw: 1 << 7).addressSize == .dword)
        #expect(StringIOInstructionInformation(raw: 1 << 7).segment == .es)
        #expect(StringIOInstructionInformation(raw: 3 << 7).addressSize == nil)
        #expect(StringIOInstructionInformation(raw: 6 << 15).segment == nil)
    }
}
