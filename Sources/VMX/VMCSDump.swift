// Reading the current VMCS back for reports: every field of the chosen areas,
// table by table (SDM Appendix B "Field Encoding in VMCS"), and a compact
// summary of the guest's state for triple-fault and failure reports.
// SDM 25.4 "Guest-State Area", 25.5 "Host-State Area", 25.6-25.8 (controls),
// 25.9 "VM-Exit Information Fields".

import X86Arch

/// Which areas of the VMCS `dumpVMCS` walks.
@frozen
public struct VMCSDumpAreas: BitFlags {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// SDM 25.4 "Guest-State Area".
    public static let guestState = Self(rawValue: 1 << 0)
    /// SDM 25.5 "Host-State Area".
    public static let hostState = Self(rawValue: 1 << 1)
    /// SDM 25.6-25.8: VM-execution, VM-exit and VM-entry control fields.
    public static let controls = Self(rawValue: 1 << 2)
    /// SDM 25.9 "VM-Exit Information Fields" (the read-only data fields).
    public static let exitInformation = Self(rawValue: 1 << 3)
    public static let all = Self(rawValue: 0xF)
}

/// What VMREAD returned for one field.
public enum VMCSDumpValue: Sendable {
    /// The value, zero-extended to 64 bits.
    case value(UInt64)
    /// VMREAD failed: the CPU does not have this field (VMfailValid 12), or
    /// there is no current VMCS.
    case unsupported(VMXError)
}

/// Calls `body` with the name, encoding and value of every field in `areas`,
/// in the order guest state, host state, controls, exit information (each in
/// Appendix B table order: 16-bit, 64-bit, 32-bit, natural width). A field
/// whose VMREAD fails is handed over as `.unsupported` and the walk goes on.
/// The width of a value is `VMCSFieldEncoding(rawValue: encoding).width`.
public func dumpVMCS<V: VMCSAccess>(_ vmcs: V, areas: VMCSDumpAreas = .all,
                                    _ body: (StaticString, UInt32, VMCSDumpValue) -> Void) {
    @inline(never)  // one VMREAD call site, not one per field
    func visit(_ info: VMCSFieldInfo) {
        let encoding = info.encoding.rawValue
        do {
            body(info.name, encoding, .value(try vmcs.vmread(encoding)))
        } catch {
            body(info.name, encoding, .unsupported(error))
        }
    }
    if areas.contains(.guestState) {
        VMCSFields.Guest16.forEach(visit)
        VMCSFields.Guest64.forEach(visit)
        VMCSFields.Guest32.forEach(visit)
        VMCSFields.GuestNatural.forEach(visit)
    }
    if areas.contains(.hostState) {
        VMCSFields.Host16.forEach(visit)
        VMCSFields.Host64.forEach(visit)
        VMCSFields.Host32.forEach(visit)
        VMCSFields.HostNatural.forEach(visit)
    }
    if areas.contains(.controls) {
        VMCSFields.Control16.forEach(visit)
        VMCSFields.Control64.forEach(visit)
        VMCSFields.Control32.forEach(visit)
        VMCSFields.ControlNatural.forEach(visit)
    }
    if areas.contains(.exitInformation) {
        VMCSFields.ReadOnly64.forEach(visit)
        VMCSFields.ReadOnly32.forEach(visit)
        VMCSFields.ReadOnlyNatural.forEach(visit)
    }
}

/// A failed VMREAD while building a summary.
public struct VMCSReadFailure: Sendable {
    public let fieldName: StaticString
    public let encoding: UInt32
    public let error: VMXError
}

/// One guest segment register as the VMCS holds it.
public struct GuestSegmentSummary: Sendable, Equatable {
    public var selector: UInt16
    public var base: UInt64
    public var limit: UInt32
    public var accessRights: SegmentAccessRights

    public init(selector: UInt16 = 0, base: UInt64 = 0, limit: UInt32 = 0,
                accessRights: SegmentAccessRights = SegmentAccessRights(rawValue: 0)) {
        self.selector = selector; self.base = base; self.limit = limit; self.accessRights = accessRights
    }
}

/// The guest state a report needs to say where the guest was and in which
/// mode: read from the current VMCS after a triple fault, a failed VM entry
/// or a fatal error. A field whose VMREAD fails reads as 0, and the first
/// such failure is kept in `firstFailure`.
public struct GuestStateSummary: Sendable {
    public var rip: UInt64 = 0
    public var rsp: UInt64 = 0
    public var rflags: UInt64 = 0
    public var cr0: UInt64 = 0
    public var cr3: UInt64 = 0
    public var cr4: UInt64 = 0
    public var efer: UInt64 = 0
    public var cs = GuestSegmentSummary()
    public var ss = GuestSegmentSummary()
    /// SDM 25.4.2 "Guest Non-Register State", Table 25-3.
    public var interruptibility: UInt32 = 0
    /// 0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI. SDM 25.4.2.
    public var activityState: UInt32 = 0
    /// How many fields could not be read.
    public var failedReads: Int = 0
    /// The first field that could not be read, if any.
    public var firstFailure: VMCSReadFailure? = nil

    public init() {}

    /// Reads the summary from the current VMCS.
    public static func read<V: VMCSAccess>(from vmcs: V) -> GuestStateSummary {
        var s = GuestStateSummary()
        typealias GN = VMCSFields.GuestNatural
        typealias G32 = VMCSFields.Guest32
        typealias G16 = VMCSFields.Guest16
        s.rip = s.fetch(vmcs, GN.rip)
        s.rsp = s.fetch(vmcs, GN.rsp)
        s.rflags = s.fetch(vmcs, GN.rflags)
        s.cr0 = s.fetch(vmcs, GN.cr0)
        s.cr3 = s.fetch(vmcs, GN.cr3)
        s.cr4 = s.fetch(vmcs, GN.cr4)
        s.efer = s.fetch(vmcs, VMCSFields.Guest64.ia32EFER)
        s.cs = s.fetchSegment(vmcs, G16.csSelector, GN.csBase, G32.csLimit, G32.csAccessRights)
        s.ss = s.fetchSegment(vmcs, G16.ssSelector, GN.ssBase, G32.ssLimit, G32.ssAccessRights)
        s.interruptibility = s.fetch(vmcs, G32.interruptibilityState)
        s.activityState = s.fetch(vmcs, G32.activityState)
        return s
    }

    private mutating func fetch<V: VMCSAccess, F: VMCSReadableField>(_ vmcs: V, _ field: F) -> F.Value {
        do {
            return try vmcs.read(field)
        } catch {
            if firstFailure == nil {
                firstFailure = VMCSReadFailure(fieldName: field.name, encoding: field.encoding, error: error)
            }
            failedReads += 1
            return 0
        }
    }

    private mutating func fetchSegment<V: VMCSAccess>(_ vmcs: V, _ selector: VMCSField16, _ base: VMCSFieldNatural,
                                                      _ limit: VMCSField32, _ rights: VMCSField32) -> GuestSegmentSummary {
        var segment = GuestSegmentSummary()
        segment.selector = fetch(vmcs, selector)
        segment.base = fetch(vmcs, base)
        segment.limit = fetch(vmcs, limit)
        segment.accessRights = SegmentAccessRights(rawValue: fetch(vmcs, rights))
        return segment
    }

    /// The guest's operating mode, from CR0.PE, RFLAGS.VM, EFER.LMA and CS.L.
    /// SDM Vol. 3A 2.2 "Modes of Operation".
    public var operatingMode: StaticString {
        if cr0 & CR0Bits.pe.rawValue == 0 { return "real mode" }
        if efer & EFER.lma.rawValue != 0 {
            return cs.accessRights.isLong ? "64-bit mode" : "compatibility mode"
        }
        if rflags & RFLAGS.vm.rawValue != 0 { return "virtual-8086 mode" }
        return cr0 & CR0Bits.pg.rawValue != 0 ? "protected mode, paging" : "protected mode"
    }

    /// The guest's linear address of its next instruction: CS base + RIP
    /// (in 64-bit mode the CS base is ignored, SDM Vol. 3A 3.4.4).
    public var linearRIP: UInt64 {
        efer & EFER.lma.rawValue != 0 && cs.accessRights.isLong ? rip : cs.base &+ rip
    }
}
