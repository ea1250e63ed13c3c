import Testing
import TestSupport
import X86Arch
import VMX

// Each case starts from a complete, valid VMCS (GuestStateFixtures.swift),
// breaks one thing, and expects exactly one named rule on one named field.
// Where a rule needs a precondition (an injected event, a HLT activity state,
// a capability the Bochs CPU lacks), `prepare` sets it first and the suite
// checks that the prepared state alone still passes, so the break is what
// the checker reports.
//
// This file holds the helpers the case tables share and the checks that
// apply to every rule; each SDM section's cases are in the file named for it.

private typealias C16 = VMCSFields.Control16
private typealias C32 = VMCSFields.Control32
private typealias C64 = VMCSFields.Control64
private typealias H16 = VMCSFields.Host16
private typealias HN = VMCSFields.HostNatural
private typealias G32 = VMCSFields.Guest32
private typealias GN = VMCSFields.GuestNatural

/// A change to the VMCS or to the environment.
typealias Mutation = @Sendable (FakeVMCS, inout CheckEnvironment) -> Void

/// One broken rule: the base state, an optional valid precondition, the break,
/// and the rule and field the checker must name.
struct Breakage: Sendable, CustomTestStringConvertible {
    let label: String
    let base: GuestStateFixture
    let prepare: Mutation?
    let breakIt: Mutation
    let rule: VMEntryRule
    let field: UInt32

    var testDescription: String { "\(label) [\(base)]" }
}

func set<F: VMCSReadableField>(_ field: F, _ value: UInt64) -> Mutation {
    { v, _ in v.preset(field.encoding, value) }
}

func orBits<F: VMCSReadableField>(_ field: F, _ bits: UInt64, clear: UInt64 = 0) -> Mutation {
    { v, _ in v.preset(field.encoding, ((v.value(field.encoding) ?? 0) | bits) & ~clear) }
}

func both(_ a: @escaping Mutation, _ b: @escaping Mutation) -> Mutation {
    { v, env in a(v, &env); b(v, &env) }
}

/// Breaks `field` by setting it to `value`; the checker must name that field.
func brk<F: VMCSReadableField>(_ label: String, _ base: GuestStateFixture, _ field: F, _ value: UInt64,
                               _ rule: VMEntryRule, prepare: Mutation? = nil) -> Breakage {
    Breakage(label: label, base: base, prepare: prepare, breakIt: set(field, value), rule: rule, field: field.encoding)
}

/// Breaks with an arbitrary mutation; the checker must name `reported`.
func brk<F: VMCSReadableField>(_ label: String, _ base: GuestStateFixture, reported: F, _ rule: VMEntryRule,
                               prepare: Mutation? = nil, _ breakIt: @escaping Mutation) -> Breakage {
    Breakage(label: label, base: base, prepare: prepare, breakIt: breakIt, rule: rule, field: reported.encoding)
}

/// Injects an event (VM-entry interruption information, error code, instruction length).
func inject(_ info: UInt64, errorCode: UInt64 = 0, length: UInt64 = 0) -> Mutation {
    both(set(C32.entryInterruptionInformation, info),
         both(set(C32.entryExceptionErrorCode, errorCode), set(C32.entryInstructionLength, length)))
}

/// RFLAGS.IF set, as an external interrupt or blocking by STI needs.
let interruptsEnabled: Mutation = set(GN.rflags, 0x202)

/// Every section's cases (the tables are in the files named for the sections).
let allCases = controlCases + hostCases + guestRegisterCases + guestSegmentCases + guestNonRegisterCases

@Suite struct VMEntryChecksTests {
    // MARK: The valid states pass.

    @Test(arguments: [GuestStateFixture.real, .long, .longRestricted, .virtual8086, .pae, .host32])
    func validStatePasses(_ fixture: GuestStateFixture) {
        let vmcs = Fixture.vmcs(fixture)
        let violation = Fixture.environment(for: fixture).check(vmcs)
        #expect(violation == nil, "\(fixture): \(violation.map { "\($0.rule) on \($0.fieldName)" } ?? "")")
    }

    @Test func freeFunctionAgreesWithTheChecker() {
        let vmcs = Fixture.vmcs(.long)
        #expect(checkVMEntry(vmcs, capabilities: Fixture.skylake(), physicalAddressWidth: 40) == nil)
        vmcs.preset(GN.rip, 0x0001_0000_0000_0000)
        #expect(checkVMEntry(vmcs, capabilities: Fixture.skylake())?.ruleID == .guestRIPHighBitsNotIdentical)
    }

    // MARK: One broken rule at a time.

    @Test(arguments: allCases)
    func brokenRuleIsNamed(_ c: Breakage) {
        let vmcs = Fixture.vmcs(c.base)
        var env = Fixture.environment(for: c.base)
        if let prepare = c.prepare {
            prepare(vmcs, &env)
            let prepared = env.check(vmcs)
            #expect(prepared == nil, "precondition alone fails: \(prepared.map { "\($0.rule) on \($0.fieldName)" } ?? "")")
        }
        c.breakIt(vmcs, &env)
        let violation = env.check(vmcs)
        #expect(violation?.ruleID == c.rule, "got \(violation.map { "\($0.rule) on \($0.fieldName)" } ?? "no violation")")
        #expect(violation?.fieldEncoding == c.field)
        if let violation {
            // The report names the field by its SDM name and says the rule in words.
            var name: StaticString = "?"
            VMCSFields.forEach { if $0.encoding.rawValue == c.field { name = $0.name } }
            #expect(String(describing: violation.fieldName) == "\(name)")
            #expect(violation.readError == nil)
            #expect(violation.rule.utf8CodeUnitCount > 20)
            #expect(String(describing: violation.section).hasPrefix("27."))
        }
    }

    @Test func everyRuleIsExercised() {
        // The table names each rule at least once (except VMREAD failure, tested below).
        var seen: [String: Int] = [:]
        for c in allCases { seen["\(c.rule)", default: 0] += 1 }
        #expect(seen.count == 134)
    }

    // MARK: Details of individual rules.

    @Test func reportedValueIsTheFieldValue() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(G32.csAccessRights, 0xE09B)
        let violation = Fixture.environment(for: .long).check(vmcs)
        #expect(violation?.value == 0xE09B)
        #expect(String(describing: violation?.fieldName ?? "") == "Guest CS access rights")
        #expect(String(describing: violation?.rule ?? "") == "guest CS access rights: L and D/B must not both be 1 when IA-32e mode guest is 1")
        #expect(String(describing: violation?.section ?? "") == "27.3.1.2 \"Checks on Guest Segment Registers\"")
        #expect(violation?.area == .guestState)
    }

    @Test func areasMatchWhatTheCPUReports() {
        let env = Fixture.environment(for: .long)
        let controls = Fixture.vmcs(.long)
        controls.preset(C16.virtualProcessorID, 0)
        #expect(env.check(controls)?.area == .controls)
        let host = Fixture.vmcs(.long)
        host.preset(H16.csSelector, 0)
        #expect(env.check(host)?.area == .hostState)
        let size = Fixture.vmcs(.long)
        size.preset(HN.rip, 0x0000_8000_0000_0000)
        #expect(env.check(size)?.area == .hostState)
        let guest = Fixture.vmcs(.long)
        guest.preset(G32.activityState, 9)
        #expect(env.check(guest)?.area == .guestState)
        #expect(String(describing: VMEntryCheckArea.controls.outcome).hasPrefix("VMfailValid 7"))
        #expect(String(describing: VMEntryCheckArea.hostState.outcome).hasPrefix("VMfailValid 8"))
        #expect(String(describing: VMEntryCheckArea.guestState.outcome).hasPrefix("VM exit 33"))
    }

    @Test(arguments: [
        (C32.pinBasedControls.encoding, VMEntryCheckArea.controls),
        (HN.cr0.encoding, .hostState),
        (GN.rip.encoding, .guestState),
        (G32.csAccessRights.encoding, .guestState),
        (C64.eptPointer.encoding, .controls),
    ])
    func failedVMREADIsReportedAsTheViolation(_ encoding: UInt32, _ area: VMEntryCheckArea) {
        let vmcs = Fixture.vmcs(.long)
        vmcs.fail(encoding, with: .vmFailValid(.unsupportedVMCSComponent))
        let violation = Fixture.environment(for: .long).check(vmcs)
        #expect(violation?.ruleID == .vmreadFailed)
        #expect(violation?.fieldEncoding == encoding)
        #expect(violation?.readError == .vmFailValid(.unsupportedVMCSComponent))
        #expect(violation?.value == 0)
        #expect(violation?.area == area)
        let section = String(describing: violation?.section ?? "")
        #expect(section.hasPrefix("31.3"))
        #expect(String(describing: violation?.rule ?? "") == "VMREAD of a field the check needs failed")
    }

    @Test func noCurrentVMCSFailsOnTheFirstRead() {
        let vmcs = Fixture.vmcs(.real)
        vmcs.fail(C32.pinBasedControls, with: .vmFailInvalid)
        let violation = Fixture.environment(for: .real).check(vmcs)
        #expect(violation?.readError == .vmFailInvalid)
        #expect(String(describing: violation?.fieldName ?? "") == "Pin-based VM-execution controls")
    }

    @Test func outOfRangeWidthsAreClampedNotTrapped() {
        let vmcs = Fixture.vmcs(.long)
        let caps = Fixture.skylake()
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 200, linearAddressWidth: -3) != nil)
        let wide = VMEntryChecker(vmcs: vmcs, capabilities: caps, physicalAddressWidth: 99, linearAddressWidth: 99)
        #expect(wide.physicalAddressWidth == 64 && wide.linearAddressWidth == 64)
        #expect(wide.check() == nil)
    }

    // MARK: Rules and field names.

    @Test func rulesAreEqualBySectionAndStatement() {
        let rule = VMEntryRule.guestCSType
        #expect(rule == .guestCSType)
        #expect(rule != .guestCSTypeUnrestricted)
        #expect(VMEntryRule.vmreadFailed != .guestCSType)
        #expect(rule.section == .guestSegments && rule.area == .guestState)
        #expect(VMEntryRule.vmreadFailed.area == nil)
        #expect(String(describing: VMEntryRule.hostCSNull.section.title).hasPrefix("27.2.3 "))
    }

    @Test func fieldNameIsTheAppendixBName() {
        // The violation carries the encoding; the name comes from the tables.
        VMCSFields.forEach { field in
            let violation = VMEntryViolation(ruleID: .vmreadFailed, fieldEncoding: field.encoding.rawValue, value: 0)
            #expect(String(describing: violation.fieldName) == String(describing: field.name))
        }
        let unknown = VMEntryViolation(ruleID: .vmreadFailed, fieldEncoding: 0xFFFF_FFFF, value: 0)
        #expect(String(describing: unknown.fieldName) == "unknown VMCS field")
    }
}
