import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct ExitReasonTests {
    /// SDM Table C-1 leaves these numbers unassigned below its highest entry (85).
    static let reservedBelowHighest: Set<UInt16> = [35, 38, 42, 71, 82, 83]

    @Test func everyAssignedNumberUpTo85HasAName() {
        for n in UInt16(0)...85 {
            let reason = ExitReason(rawValue: n)
            #expect(reason.isKnown == !Self.reservedBelowHighest.contains(n), "exit reason \(n)")
        }
    }

    @Test func namesAreDistinct() {
        var seen = Set<String>()
        for n in UInt16(0)...ExitReason.highestKnown {
            if let name = ExitReason(rawValue: n).knownName {
                #expect(seen.insert(name.description).inserted, "duplicate name \(name) at \(n)")
            }
        }
        #expect(seen.count == 86 - Self.reservedBelowHighest.count)
    }

    @Test func namesMatchTableC1() {
        #expect(ExitReason(rawValue: 10).name.description == "CPUID")
        #expect(ExitReason(rawValue: 28).name.description == "Control-register accesses")
        #expect(ExitReason(rawValue: 30).name.description == "I/O instruction")
        #expect(ExitReason(rawValue: 48).name.description == "EPT violation")
        #expect(ExitReason(rawValue: 55).name.description == "XSETBV")
        #expect(ExitReason(rawValue: 33).name.description == "VM-entry failure due to invalid guest state")
    }

    @Test func staticMembersCarryTheirTableNumbers() {
        #expect(ExitReason.cpuid.rawValue == 10)
        #expect(ExitReason.hlt.rawValue == 12)
        #expect(ExitReason.ioInstruction.rawValue == 30)
        #expect(ExitReason.eptViolation.rawValue == 48)
        #expect(ExitReason.eptMisconfiguration.rawValue == 49)
        #expect(ExitReason.xsetbv.rawValue == 55)
        #expect(ExitReason.wrmsrnsImmediate.rawValue == ExitReason.highestKnown)
    }

    @Test func unknownNumbersAreRepresentableAndReported() {
        for n: UInt16 in [35, 71, 86, 200, 0xFFFF] {
            let reason = ExitReason(rawValue: n)
            #expect(!reason.isKnown)
            #expect(reason.name.description == "unknown exit reason")
            #expect(reason.rawValue == n)
        }
    }

    @Test func onlyReasons33_34_41AreEntryFailures() {
        for n in UInt16(0)...90 {
            #expect(ExitReason(rawValue: n).isEntryFailure == [33, 34, 41].contains(n), "reason \(n)")
        }
    }

    @Test func failedEntryFieldDecodes() {
        // SDM 27.8: a VM entry that fails on guest state reports basic reason 33
        // with bit 31 set.
        let field = ExitReasonField(rawValue: 0x8000_0021)
        #expect(field.basicReason == .entryFailureInvalidGuestState)
        #expect(field.isEntryFailure)
        #expect(!field.enclaveMode && !field.pendingMTF && !field.exitFromVMXRoot && !field.busLockDetected)
    }

    @Test func flagBitsSitWhereTable25_18PutsThem() {
        let cpuid = UInt32(10)
        #expect(ExitReasonField(rawValue: cpuid | 1 << 26).busLockDetected)
        #expect(ExitReasonField(rawValue: cpuid | 1 << 27).enclaveMode)
        #expect(ExitReasonField(rawValue: cpuid | 1 << 28).pendingMTF)
        #expect(ExitReasonField(rawValue: cpuid | 1 << 29).exitFromVMXRoot)
        let all = ExitReasonField(rawValue: cpuid | 0xBC00_0000)
        #expect(all.basicReason == .cpuid)
        #expect(!ExitReasonField(rawValue: cpuid | 1 << 30).isEntryFailure)
    }

    /// SDM 28.2.4: a fault during delivery, or an EPT exit, may find an event
    /// half-delivered; an instruction that exits ran after delivery ended,
    /// and a triple fault is named as not during delivery.
    @Test func instructionExitsAndTripleFaultsNeverInterruptEventDelivery() {
        let instructions: [ExitReason] = [.cpuid, .hlt, .vmcall, .controlRegisterAccess, .ioInstruction,
                                          .rdmsr, .wrmsr, .xsetbv, .pause, .wbinvd, .invlpg, .rdtsc]
        #expect(instructions.allSatisfy { !$0.canInterruptEventDelivery })
        #expect(!ExitReason.tripleFault.canInterruptEventDelivery)
        #expect(ExitReason.exceptionOrNMI.canInterruptEventDelivery)
        #expect(ExitReason.eptViolation.canInterruptEventDelivery)
        #expect(ExitReason.taskSwitch.canInterruptEventDelivery)
    }
}
