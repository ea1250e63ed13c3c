import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct VMCSDumpTests {
    struct Line: Equatable {
        var name: String
        var encoding: UInt32
        var value: UInt64?
        var error: VMXError?
    }

    func dump(_ vmcs: FakeVMCS, _ areas: VMCSDumpAreas = .all) -> [Line] {
        var lines: [Line] = []
        dumpVMCS(vmcs, areas: areas) { name, encoding, value in
            switch value {
            case .value(let v): lines.append(Line(name: "\(name)", encoding: encoding, value: v))
            case .unsupported(let e): lines.append(Line(name: "\(name)", encoding: encoding, error: e))
            }
        }
        return lines
    }

    @Test func everyFieldOfEveryAreaIsVisitedOnceInAppendixOrder() {
        let lines = dump(Fixture.vmcs(.long))
        var expected: [UInt32] = []
        VMCSFields.Guest16.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Guest64.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Guest32.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.GuestNatural.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Host16.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Host64.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Host32.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.HostNatural.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Control16.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Control64.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.Control32.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.ControlNatural.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.ReadOnly64.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.ReadOnly32.forEach { expected.append($0.encoding.rawValue) }
        VMCSFields.ReadOnlyNatural.forEach { expected.append($0.encoding.rawValue) }
        #expect(lines.map(\.encoding) == expected)
        #expect(Set(expected).count == expected.count)
        #expect(lines.first?.name == "Guest ES selector")
        #expect(lines.last?.name == "Guest-linear address")
        #expect(lines.allSatisfy { $0.error == nil })
    }

    @Test func valuesAreWhatVMREADReturns() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(VMCSFields.ReadOnly32.exitReason, 0x8000_0021)
        let lines = dump(vmcs)
        func value(_ name: String) -> UInt64? { lines.first { $0.name == name }?.value }
        #expect(value("Guest RIP") == 0x0010_0000)
        #expect(value("Guest CS access rights") == 0xA09B)
        #expect(value("Host TR selector") == 0x18)
        #expect(value("EPT pointer (EPTP)") == Fixture.eptPointer)
        #expect(value("Exit reason") == 0x8000_0021)
        #expect(value("Guest IA32_EFER") == 0x500)
        #expect(value("Exit qualification") == 0)           // never written: reads as 0
    }

    @Test(arguments: [
        (VMCSDumpAreas.guestState, VMCSFieldType.guestState),
        (.hostState, .hostState),
        (.controls, .control),
        (.exitInformation, .readOnlyData),
    ])
    func oneAreaYieldsOnlyItsFields(_ area: VMCSDumpAreas, _ type: VMCSFieldType) {
        let lines = dump(Fixture.vmcs(.real), area)
        #expect(!lines.isEmpty)
        #expect(lines.allSatisfy { VMCSFieldEncoding(rawValue: $0.encoding).type == type })
        var count = 0
        VMCSFields.forEach { if $0.encoding.type == type { count += 1 } }
        #expect(lines.count == count)
    }

    @Test func areasCombineAndNoneYieldsNothing() {
        let vmcs = Fixture.vmcs(.real)
        #expect(dump(vmcs, .guestState | .exitInformation).count
                == dump(vmcs, .guestState).count + dump(vmcs, .exitInformation).count)
        #expect(dump(vmcs, .empty).isEmpty)
    }

    @Test func unsupportedFieldsAreReportedAndTheWalkGoesOn() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.fail(VMCSFields.Guest64.ia32PKRS, with: .vmFailValid(.unsupportedVMCSComponent))
        vmcs.fail(VMCSFields.HostNatural.ssp, with: .vmFailValid(.unsupportedVMCSComponent))
        let lines = dump(vmcs)
        let failed = lines.filter { $0.error != nil }
        #expect(failed.map(\.name) == ["Guest IA32_PKRS", "Host SSP"])
        #expect(failed.allSatisfy { $0.error == .vmFailValid(.unsupportedVMCSComponent) })
        #expect(lines.count == dump(Fixture.vmcs(.long)).count)
        // Without a current VMCS every read fails, and every field is still reported.
        let none = Fixture.vmcs(.long)
        VMCSFields.forEach { none.fail($0.encoding.rawValue, with: .vmFailInvalid) }
        #expect(dump(none).allSatisfy { $0.error == .vmFailInvalid })
    }

    // MARK: GuestStateSummary

    @Test func summaryOfA64BitGuest() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(VMCSFields.Guest32.interruptibilityState, 2)
        vmcs.preset(VMCSFields.Guest32.activityState, 1)
        let s = GuestStateSummary.read(from: vmcs)
        #expect(s.rip == 0x0010_0000 && s.rsp == 0x0008_0000 && s.rflags == 0x2)
        #expect(s.cr0 == 0x8001_0031 && s.cr3 == 0x1000 && s.cr4 == 0x2020 && s.efer == 0x500)
        #expect(s.cs == GuestSegmentSummary(selector: 0x08, base: 0, limit: 0xFFFF_FFFF,
                                            accessRights: SegmentAccessRights(rawValue: 0xA09B)))
        #expect(s.ss.selector == 0x10 && s.ss.accessRights.rawValue == 0xC093 && s.ss.limit == 0xFFFF_FFFF)
        #expect(s.interruptibility == 2 && s.activityState == 1)
        #expect(s.failedReads == 0 && s.firstFailure == nil)
        #expect("\(s.operatingMode)" == "64-bit mode")
        #expect(s.linearRIP == 0x0010_0000)
    }

    @Test(arguments: [
        (GuestStateFixture.real, "real mode"),
        (.virtual8086, "virtual-8086 mode"),
        (.pae, "protected mode, paging"),
        (.long, "64-bit mode"),
    ])
    func operatingModeOfEachFixture(_ fixture: GuestStateFixture, _ mode: String) {
        #expect("\(GuestStateSummary.read(from: Fixture.vmcs(fixture)).operatingMode)" == mode)
    }

    @Test func compatibilityAndUnpagedProtectedMode() {
        let compat = Fixture.vmcs(.long)
        compat.preset(VMCSFields.Guest32.csAccessRights, 0xC09B)
        compat.preset(VMCSFields.GuestNatural.csBase, 0x1000)
        let c = GuestStateSummary.read(from: compat)
        #expect("\(c.operatingMode)" == "compatibility mode")
        #expect(c.linearRIP == 0x0010_1000)                 // CS base counts outside 64-bit mode
        let flat = Fixture.vmcs(.pae)
        flat.preset(VMCSFields.GuestNatural.cr0, 0x31)
        #expect("\(GuestStateSummary.read(from: flat).operatingMode)" == "protected mode")
    }

    @Test func realModeLinearRIPAddsTheCSBase() {
        let vmcs = Fixture.vmcs(.real)
        vmcs.preset(VMCSFields.Guest16.csSelector, 0x07C0)
        vmcs.preset(VMCSFields.GuestNatural.csBase, 0x7C00)
        vmcs.preset(VMCSFields.GuestNatural.rip, 0x0010)
        #expect(GuestStateSummary.read(from: vmcs).linearRIP == 0x7C10)
    }

    @Test func unreadableFieldsReadAsZeroAndTheFirstIsKept() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.fail(VMCSFields.GuestNatural.cr3, with: .vmFailValid(.unsupportedVMCSComponent))
        vmcs.fail(VMCSFields.Guest64.ia32EFER, with: .vmFailInvalid)
        vmcs.fail(VMCSFields.Guest32.ssAccessRights, with: .vmFailInvalid)
        let s = GuestStateSummary.read(from: vmcs)
        #expect(s.cr3 == 0 && s.efer == 0 && s.ss.accessRights.rawValue == 0)
        #expect(s.rip == 0x0010_0000 && s.cs.selector == 0x08)
        #expect(s.failedReads == 3)
        #expect(s.firstFailure.map { "\($0.fieldName)" } == "Guest CR3")
        #expect(s.firstFailure?.encoding == VMCSFields.GuestNatural.cr3.encoding)
        #expect(s.firstFailure?.error == .vmFailValid(.unsupportedVMCSComponent))
        // EFER unreadable: the mode falls back to what CR0 and RFLAGS say.
        #expect("\(s.operatingMode)" == "protected mode, paging")
    }
}
