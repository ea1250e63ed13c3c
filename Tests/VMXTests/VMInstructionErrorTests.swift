import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct VMInstructionErrorTests {
    @Test func table31_1ListsEveryNumberFrom1To28Except14_21_27() {
        for n in UInt32(0)...40 {
            let known = (1...28).contains(n) && ![14, 21, 27].contains(n)
            #expect(VMInstructionError(rawValue: n).isKnown == known, "error \(n)")
        }
    }

    @Test func descriptionsAreTheSDMText() {
        #expect(VMInstructionError(rawValue: 7).description.description == "VM entry with invalid control field(s)")
        #expect(VMInstructionError(rawValue: 8).description.description == "VM entry with invalid host-state field(s)")
        #expect(VMInstructionError(rawValue: 12).description.description == "VMREAD/VMWRITE from/to unsupported VMCS component")
        #expect(VMInstructionError(rawValue: 13).description.description == "VMWRITE to read-only VMCS component")
        #expect(VMInstructionError(rawValue: 28).description.description == "Invalid operand to INVEPT/INVVPID")
    }

    @Test func descriptionsAreDistinct() {
        var seen = Set<String>()
        for n in UInt32(1)...28 {
            if let text = VMInstructionError(rawValue: n).knownDescription {
                #expect(seen.insert(text.description).inserted)
            }
        }
        #expect(seen.count == 25)
    }

    @Test func namedErrorsCarryTheirNumbers() {
        #expect(VMInstructionError.vmlaunchNonClearVMCS.rawValue == 4)
        #expect(VMInstructionError.vmresumeNonLaunchedVMCS.rawValue == 5)
        #expect(VMInstructionError.entryInvalidControlFields.rawValue == 7)
        #expect(VMInstructionError.entryInvalidHostStateFields.rawValue == 8)
        #expect(VMInstructionError.vmptrldIncorrectRevision.rawValue == 11)
        #expect(VMInstructionError.entryEventsBlockedByMOVSS.rawValue == 26)
    }

    @Test func unknownNumbersAreRepresentable() {
        for n: UInt32 in [0, 14, 29, 0xFFFF_FFFF] {
            let error = VMInstructionError(rawValue: n)
            #expect(error.description.description == "unknown VM-instruction error")
            #expect(error.rawValue == n)
        }
    }
}
