import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct HardwareAccessTests {
    /// Generic, as the vCPU layer will call it: no existential.
    func setUpSelectors<V: VMCSAccess>(_ vmcs: V, cs: UInt16) throws(VMXError) {
        try vmcs.write(VMCSFields.Guest16.csSelector, cs)
        try vmcs.write(VMCSFields.Host16.csSelector, 0x08)
    }

    @Test func typedWritesReachTheEncodingAtTheFieldsWidth() throws {
        let vmcs = FakeVMCS()
        try setUpSelectors(vmcs, cs: 0xF000)
        try vmcs.write(VMCSFields.GuestNatural.rip, 0xFFFF_8000_0010_0000)
        try vmcs.write(VMCSFields.Guest32.csLimit, 0xFFFF)
        try vmcs.write(VMCSFields.Guest64.ia32EFER, 0xD01)
        #expect(vmcs.writtenEncodings == [0x0802, 0x0C02, 0x681E, 0x4802, 0x2806])
        #expect(try vmcs.read(VMCSFields.Guest16.csSelector) == 0xF000)
        #expect(try vmcs.read(VMCSFields.GuestNatural.rip) == 0xFFFF_8000_0010_0000)
        #expect(try vmcs.vmread(0x4802) == 0xFFFF)
    }

    @Test func readsReturnTheFieldsValueType() throws {
        let vmcs = FakeVMCS()
        vmcs.preset(VMCSFields.ReadOnly32.exitInstructionLength, 3)
        vmcs.preset(VMCSFields.ReadOnlyNatural.exitQualification, 0x1_0000_0010)
        let length: UInt32 = try vmcs.read(VMCSFields.ReadOnly32.exitInstructionLength)
        let qualification: UInt64 = try vmcs.read(VMCSFields.ReadOnlyNatural.exitQualification)
        let selector: UInt16 = try vmcs.read(VMCSFields.Guest16.trSelector)
        #expect(length == 3)
        #expect(qualification == 0x1_0000_0010)
        #expect(selector == 0)   // a cleared VMCS reads as zero
    }

    @Test func highAccessReachesTheUpperHalfOfA64BitField() throws {
        // SDM 25.11.2: the high encoding accesses bits 63:32 of a 64-bit field.
        let vmcs = FakeVMCS()
        try vmcs.write(VMCSFields.Control64.tscOffset, 0x1111_2222_3333_4444)
        #expect(try vmcs.vmread(VMCSFields.Control64.tscOffset.highEncoding) == 0x1111_2222)
        try vmcs.vmwrite(VMCSFields.Control64.tscOffset.highEncoding, 0xAAAA_BBBB)
        #expect(try vmcs.read(VMCSFields.Control64.tscOffset) == 0xAAAA_BBBB_3333_4444)
    }

    @Test func failuresPropagateAsTypedErrors() {
        let vmcs = FakeVMCS()
        vmcs.fail(VMCSFields.GuestNatural.rip, with: .vmFailValid(.unsupportedVMCSComponent))
        #expect(throws: VMXError.vmFailValid(.unsupportedVMCSComponent)) {
            try vmcs.write(VMCSFields.GuestNatural.rip, 0x7C00)
        }
        #expect(vmcs.writes.isEmpty)
        vmcs.fail(VMCSFields.ReadOnly32.exitReason.encoding, with: .vmFailInvalid)
        #expect(throws: VMXError.vmFailInvalid) { try vmcs.readExitReason() }
        vmcs.stopFailing(VMCSFields.ReadOnly32.exitReason.encoding)
        #expect(throws: Never.self) { try vmcs.readExitReason() }
    }

    @Test func fakeRejectsWhatHardwareRejects() {
        // SDM 31.3 VMREAD/VMWRITE: unsupported component -> VMfailValid(12);
        // VMWRITE to a VM-exit information field -> VMfailValid(13).
        let vmcs = FakeVMCS()
        #expect(throws: VMXError.vmFailValid(.unsupportedVMCSComponent)) { try vmcs.vmread(0x0001) }
        #expect(throws: VMXError.vmFailValid(.unsupportedVMCSComponent)) { try vmcs.vmwrite(0x6FFE, 0) }
        #expect(throws: VMXError.vmFailValid(.vmwriteReadOnlyComponent)) { try vmcs.vmwrite(0x4402, 0) }
        vmcs.vmwriteToAnyField = true
        #expect(throws: Never.self) { try vmcs.vmwrite(0x4402, 1) }
    }

    @Test func exitReasonAndInstructionErrorAreDecoded() throws {
        let vmcs = FakeVMCS()
        vmcs.preset(VMCSFields.ReadOnly32.exitReason, 0x8000_0021)
        vmcs.preset(VMCSFields.ReadOnly32.vmInstructionError, 7)
        let reason = try vmcs.readExitReason()
        #expect(reason.isEntryFailure && reason.basicReason == .entryFailureInvalidGuestState)
        #expect(try vmcs.readInstructionError() == .entryInvalidControlFields)
    }

    @Test func errorSummariesAreDistinct() {
        let errors: [VMXError] = [
            .vmFailInvalid, .vmFailValid(.vmlaunchNonClearVMCS), .vmxNotSupported, .vmxDisabledByFirmware,
            .fixedBitsViolated(.cr4, violatingBits: 1 << 13),
            .controlsUnsupported(ControlAdjustmentError(kind: .secondaryProcessorBased, missing: 1 << 7)),
            .entryFailed(ExitReasonField(rawValue: 0x8000_0021), qualification: 0), .outOfMemory,
        ]
        #expect(Set(errors.map { $0.summary.description }).count == errors.count)
    }

    @Test func vmxSupportIsCPUID1ECXBit5() {
        let cpu = FakeCPU()
        #expect(!cpu.supportsVMX)
        cpu.setCPUID(leaf: 1, CPUIDResult(ecx: 1 << 5))
        #expect(cpu.supportsVMX)
        cpu.setCPUID(leaf: 1, CPUIDResult(eax: 0xFFFF_FFFF, ebx: 0xFFFF_FFFF, ecx: ~(1 << 5), edx: 0xFFFF_FFFF))
        #expect(!cpu.supportsVMX)
    }

    @Test func namedMSRAccessUsesTheAddress() {
        let cpu = FakeCPU()
        cpu.msrs[0xC000_0080] = 0
        cpu.writeMSR(.ia32EFER, 0x500)
        #expect(cpu.readMSR(.ia32EFER) == 0x500)
        #expect(cpu.msrWrites.map(\.address) == [0xC000_0080])
        #expect(cpu.gpFaults.isEmpty)
        _ = cpu.readMSR(.ia32LSTAR)
        #expect(cpu.gpFaults == [0xC000_0082])
    }
}
