import Foundation
import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct VMCSFieldTests {
    static func allFields() -> [VMCSFieldInfo] {
        var fields: [VMCSFieldInfo] = []
        VMCSFields.forEach { fields.append($0) }
        return fields
    }

    /// SDM 25.11.2, Table 25-21: bit 0 access type (full for the listed
    /// encodings), bits 9:1 index, bits 11:10 type, bit 12 and 31:15 reserved,
    /// bits 14:13 width; and each Appendix B table fixes width and type.
    @Test func everyFieldFollowsTheEncodingRuleAndItsTable() {
        let fields = Self.allFields()
        #expect(fields.count > 190)
        for field in fields {
            let raw = field.encoding.rawValue
            #expect(raw & 1 == 0, "\(field.name) is not a full-access encoding")
            #expect(raw & 0xFFFF_9000 == 0, "\(field.name) sets reserved bits")
            #expect((raw >> 13) & 3 == UInt32(field.group.width.rawValue), "\(field.name) width")
            #expect((raw >> 10) & 3 == UInt32(field.group.type.rawValue), "\(field.name) type")
            #expect(field.encoding.isWellFormed)
            #expect(field.encoding.accessType == .full)
            #expect(field.encoding.width == field.group.width)
            #expect(field.encoding.type == field.group.type)
            #expect(VMCSFieldEncoding(width: field.group.width, type: field.group.type,
                                      index: field.encoding.index) == field.encoding)
        }
    }

    @Test func groupsDeclareTheWidthAndTypeOfTheirTable() {
        // Table titles of Appendix B, e.g. Table B-9 "32-Bit Read-Only Data Fields
        // (0100_01xx_xxxx_xxx0B)": the pattern's top bits are width then type.
        let expected: [(VMCSFieldGroup, UInt32)] = [
            (.control16, 0x0000), (.guest16, 0x0800), (.host16, 0x0C00),
            (.control64, 0x2000), (.readOnly64, 0x2400), (.guest64, 0x2800), (.host64, 0x2C00),
            (.control32, 0x4000), (.readOnly32, 0x4400), (.guest32, 0x4800), (.host32, 0x4C00),
            (.controlNatural, 0x6000), (.readOnlyNatural, 0x6400), (.guestNatural, 0x6800), (.hostNatural, 0x6C00),
        ]
        for (group, pattern) in expected {
            #expect(VMCSFieldEncoding(width: group.width, type: group.type, index: 0).rawValue == pattern)
        }
    }

    @Test func valueTypesMatchWidthsAndOnlyReadOnlyFieldsRefuseWrites() {
        for field in Self.allFields() {
            switch field.group.width {
            case .bits16: #expect(field.valueBitWidth == 16, "\(field.name)")
            case .bits32: #expect(field.valueBitWidth == 32, "\(field.name)")
            case .bits64, .natural: #expect(field.valueBitWidth == 64, "\(field.name)")
            }
            #expect(field.isWritable == (field.group.type != .readOnlyData), "\(field.name)")
        }
    }

    @Test func encodingsAndNamesAreUnique() {
        var encodings = Set<UInt32>()
        var names = Set<String>()
        for field in Self.allFields() {
            #expect(encodings.insert(field.encoding.rawValue).inserted, "duplicate encoding of \(field.name)")
            #expect(names.insert(field.name.description).inserted, "duplicate name \(field.name)")
        }
    }

    @Test func encodingsComeFromTheIndexTheAppendixGives() {
        // (field, table's width/type, index from the SDM table)
        #expect(VMCSFields.GuestNatural.rip.encoding
                == VMCSFieldEncoding(width: .natural, type: .guestState, index: 15).rawValue)
        #expect(VMCSFields.ReadOnly32.exitReason.encoding
                == VMCSFieldEncoding(width: .bits32, type: .readOnlyData, index: 1).rawValue)
        #expect(VMCSFields.Host16.trSelector.encoding
                == VMCSFieldEncoding(width: .bits16, type: .hostState, index: 6).rawValue)
        #expect(VMCSFields.Control64.eptPointer.encoding
                == VMCSFieldEncoding(width: .bits64, type: .control, index: 13).rawValue)
        #expect(VMCSFields.Guest64.vmcsLinkPointer.encoding
                == VMCSFieldEncoding(width: .bits64, type: .guestState, index: 0).rawValue)
        #expect(VMCSFields.Guest32.preemptionTimerValue.encoding
                == VMCSFieldEncoding(width: .bits32, type: .guestState, index: 23).rawValue)
        #expect(VMCSFields.Control32.secondaryProcessorBasedControls.encoding
                == VMCSFieldEncoding(width: .bits32, type: .control, index: 15).rawValue)
    }

    @Test func onlyOne32BitHostStateFieldExists() {
        // SDM B.3.4: "There is only one such 32-bit field" (IA32_SYSENTER_CS).
        var hostFields: [VMCSFieldInfo] = []
        VMCSFields.Host32.forEach { hostFields.append($0) }
        #expect(hostFields.count == 1)
        #expect(VMCSFields.Host32.count == 1)
        #expect(hostFields.first?.name.description == "Host IA32_SYSENTER_CS")
    }

    @Test func groupCountsMatchWhatForEachVisits() {
        var counts: [Int] = []
        func count(_ visit: ((VMCSFieldInfo) -> Void) -> Void) -> Int { var n = 0; visit { _ in n += 1 }; return n }
        counts = [count(VMCSFields.Control16.forEach), count(VMCSFields.Guest16.forEach),
                  count(VMCSFields.Host16.forEach), count(VMCSFields.Control64.forEach),
                  count(VMCSFields.ReadOnly64.forEach), count(VMCSFields.Guest64.forEach),
                  count(VMCSFields.Host64.forEach), count(VMCSFields.Control32.forEach),
                  count(VMCSFields.ReadOnly32.forEach), count(VMCSFields.Guest32.forEach),
                  count(VMCSFields.Host32.forEach), count(VMCSFields.ControlNatural.forEach),
                  count(VMCSFields.ReadOnlyNatural.forEach), count(VMCSFields.GuestNatural.forEach),
                  count(VMCSFields.HostNatural.forEach)]
        let declared = [VMCSFields.Control16.count, VMCSFields.Guest16.count, VMCSFields.Host16.count,
                        VMCSFields.Control64.count, VMCSFields.ReadOnly64.count, VMCSFields.Guest64.count,
                        VMCSFields.Host64.count, VMCSFields.Control32.count, VMCSFields.ReadOnly32.count,
                        VMCSFields.Guest32.count, VMCSFields.Host32.count, VMCSFields.ControlNatural.count,
                        VMCSFields.ReadOnlyNatural.count, VMCSFields.GuestNatural.count, VMCSFields.HostNatural.count]
        #expect(counts == declared)
        #expect(counts.reduce(0, +) == Self.allFields().count)
    }

    /// Each table's `all` lists every field its enum declares: the number of
    /// `VMCSField...(` declarations per enum in VMCSFieldTables.swift equals
    /// its `count`, and every declared encoding is visited.
    @Test func everyDeclaredFieldIsInItsTable() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/VMX/VMCSFieldTables.swift")
        let source = try String(contentsOf: url, encoding: .utf8)
        var declared: [String: Int] = [:]
        var encodings = Set<UInt32>()
        var current = ""
        for line in source.components(separatedBy: "\n") {
            if let r = line.range(of: "public enum ") { current = String(line[r.upperBound...].prefix { $0.isLetter || $0.isNumber }) }
            if line.contains("public static let "), line.contains("= VMCS"), let open = line.range(of: "(0x") {
                declared[current, default: 0] += 1
                let hex = line[open.upperBound...].prefix { $0.isHexDigit || $0 == "_" }.replacingOccurrences(of: "_", with: "")
                encodings.insert(UInt32(hex, radix: 16)!)
            }
        }
        let counts: [String: Int] = [
            "Control16": VMCSFields.Control16.count, "Guest16": VMCSFields.Guest16.count, "Host16": VMCSFields.Host16.count,
            "Control64": VMCSFields.Control64.count, "ReadOnly64": VMCSFields.ReadOnly64.count,
            "Guest64": VMCSFields.Guest64.count, "Host64": VMCSFields.Host64.count,
            "Control32": VMCSFields.Control32.count, "ReadOnly32": VMCSFields.ReadOnly32.count,
            "Guest32": VMCSFields.Guest32.count, "Host32": VMCSFields.Host32.count,
            "ControlNatural": VMCSFields.ControlNatural.count, "ReadOnlyNatural": VMCSFields.ReadOnlyNatural.count,
            "GuestNatural": VMCSFields.GuestNatural.count, "HostNatural": VMCSFields.HostNatural.count]
        #expect(declared == counts)
        var visited = Set<UInt32>()
        VMCSFields.forEach { visited.insert($0.encoding.rawValue) }
        #expect(visited == encodings)
    }

    @Test func decodingSplitsAnEncodingIntoItsParts() {
        let high = VMCSFieldEncoding(rawValue: 0x2001)  // I/O bitmap A (high)
        #expect(high.accessType == .high)
        #expect(high.index == 0)
        #expect(high.type == .control)
        #expect(high.width == .bits64)
        #expect(high.isWellFormed)
        let guestRIP = VMCSFieldEncoding(rawValue: 0x681E)
        #expect(guestRIP.index == 15 && guestRIP.type == .guestState && guestRIP.width == .natural)
        #expect(VMCSFieldEncoding(width: .bits64, type: .control, index: 0, access: .high).rawValue == 0x2001)
        #expect(VMCSFields.Control64.ioBitmapA.highEncoding == 0x2001)
        #expect(VMCSFields.ReadOnly64.guestPhysicalAddress.highEncoding == 0x2401)
    }

    @Test func malformedEncodingsAreRecognised() {
        #expect(!VMCSFieldEncoding(rawValue: 0x4403).isWellFormed)   // high access of a 32-bit field
        #expect(!VMCSFieldEncoding(rawValue: 0x6801).isWellFormed)   // high access of a natural field
        #expect(!VMCSFieldEncoding(rawValue: 0x1000).isWellFormed)   // bit 12 reserved
        #expect(!VMCSFieldEncoding(rawValue: 0x8000).isWellFormed)   // bit 15 reserved
        #expect(!VMCSFieldEncoding(rawValue: 0xFFFF_FFFE).isWellFormed)
    }

    @Test func readOnlyFieldsAreNotWritableTypes() {
        // The write API takes `some VMCSWritableField`: these casts are what the
        // compiler checks at every call site.
        #expect(!(VMCSFields.ReadOnly32.exitReason as Any is any VMCSWritableField))
        #expect(!(VMCSFields.ReadOnly64.guestPhysicalAddress as Any is any VMCSWritableField))
        #expect(!(VMCSFields.ReadOnlyNatural.exitQualification as Any is any VMCSWritableField))
        #expect(VMCSFields.Guest32.csLimit as Any is any VMCSWritableField)
        #expect(VMCSFields.Host16.csSelector as Any is any VMCSWritableField)
        #expect(VMCSFields.Control64.msrBitmaps as Any is any VMCSWritableField)
        #expect(VMCSFields.GuestNatural.rip as Any is any VMCSWritableField)
        #expect(VMCSReadOnlyField32.isWritable == false && VMCSField32.isWritable == true)
    }

    @Test func fieldsCompareByEncoding() {
        #expect(VMCSFields.Guest16.csSelector == VMCSFields.Guest16.csSelector)
        #expect(VMCSFields.Guest16.csSelector != VMCSFields.Guest16.ssSelector)
        #expect(VMCSFields.Guest32.csLimit != VMCSFields.Guest32.ssLimit)
        #expect(VMCSFields.Guest64.ia32EFER != VMCSFields.Guest64.ia32PAT)
        #expect(VMCSFields.GuestNatural.rip != VMCSFields.GuestNatural.rsp)
        #expect(VMCSFields.ReadOnly32.exitReason != VMCSFields.ReadOnly32.vmInstructionError)
        #expect(VMCSFields.ReadOnly64.guestPhysicalAddress == VMCSFields.ReadOnly64.guestPhysicalAddress)
        #expect(VMCSFields.ReadOnlyNatural.exitQualification != VMCSFields.ReadOnlyNatural.ioRIP)
    }
}
