// What each application processor gets before it starts, and how it finds it.
//
// Its own GDT and TSS: LTR marks the TSS descriptor busy and faults on a busy
// one (SDM Vol. 3A 8.2.2 "TSS Descriptor"), so CPUs cannot share a TSS, and
// VM exits need a nonzero host TR (SDM 28.2.3 "Checks on Host Segment and
// Descriptor-Table Registers"). The selectors are the boot CPU's (0x08 code,
// 0x10 data, 0x18 TSS), so host state reads the same on every CPU.
//
// The tables frame (one 4 KiB page, built by the boot CPU):
//   0    GDT: null, 64-bit code, data, 16-byte TSS descriptor (40 bytes)
//   48   GDTR (limit, base): Boot/ap.asm loads it (AP_TABLES_GDTR)
//   64   TSS (104 bytes): RSP0 and IST1 (NMI, #DF, #MC use IST1, as on the boot CPU)
//   256  the control block (APControlBlock), shared with the boot CPU
//
// The trampoline's data area (Boot/ap.asm, at `trampolineDataOffset` in the
// page below 1 MiB): the boot CPU writes CR3, the stack, the 64-bit entry and
// its argument; the AP writes `started` and the TSC at its first instruction.

import X86Arch
import VMX

public enum PerCPUTables {
    public static let gdtOffset = 0
    public static let gdtLength = 40
    public static let gdtrOffset = 48
    public static let tssOffset = 64
    /// SDM 8.7 "Task Management in 64-bit Mode": the 64-bit TSS is 104 bytes.
    public static let tssLength = 104
    public static let controlBlockOffset = 256
    /// The CPU's own data, GS base points here (Boot/entry.asm's NMI stub
    /// sets byte 0 when an NMI arrives in root mode): in the zeroed area
    /// between the TSS and the control block.
    public static let perCPUOffset = 248
    /// Where the AP's exit statistics go when the guest stops (after the
    /// control block and the VMX error).
    public static let statisticsOffset = 1024

    public static let codeSelector: UInt16 = 0x08
    public static let dataSelector: UInt16 = 0x10
    public static let tssSelector: UInt16 = 0x18
    /// Boot/entry.asm's descriptors: 64-bit code (L=1) and flat data, DPL 0.
    public static let codeDescriptor: UInt64 = 0x00AF_9A00_0000_FFFF
    public static let dataDescriptor: UInt64 = 0x00CF_9200_0000_FFFF
    /// Present, DPL 0, type 9 (64-bit TSS, available).
    static let tssRights = SegmentAccessRights(rawValue: 0x89)

    /// Writes the GDT, GDTR and TSS into `page` (at least 256 bytes), which
    /// lies at linear address `address`.
    public static func write(into page: UnsafeMutableRawBufferPointer, at address: UInt64, stackTop: UInt64, istTop: UInt64) {
        precondition(page.count >= controlBlockOffset)
        for i in 0..<controlBlockOffset { page[i] = 0 }
        let tss = address + UInt64(tssOffset)
        page.storeBytes(of: 0, toByteOffset: gdtOffset, as: UInt64.self)
        page.storeBytes(of: codeDescriptor, toByteOffset: gdtOffset + 8, as: UInt64.self)
        page.storeBytes(of: dataDescriptor, toByteOffset: gdtOffset + 16, as: UInt64.self)
        let low = SegmentDescriptor(base: UInt32(truncatingIfNeeded: tss), limit: UInt32(tssLength - 1), rights: tssRights)
        page.storeBytes(of: low.rawValue, toByteOffset: gdtOffset + 24, as: UInt64.self)
        page.storeBytes(of: tss >> 32, toByteOffset: gdtOffset + 32, as: UInt64.self)
        page.storeBytes(of: UInt16(gdtLength - 1), toByteOffset: gdtrOffset, as: UInt16.self)
        page.storeBytes(of: address + UInt64(gdtOffset), toByteOffset: gdtrOffset + 2, as: UInt64.self)
        // 8.7: RSP0 at 4, IST1 at 36, the I/O map base at 102 (= the limit + 1: no bitmap).
        page.storeBytes(of: stackTop, toByteOffset: tssOffset + 4, as: UInt64.self)
        page.storeBytes(of: istTop, toByteOffset: tssOffset + 36, as: UInt64.self)
        page.storeBytes(of: UInt16(tssLength), toByteOffset: tssOffset + 102, as: UInt16.self)
    }
}

/// Offsets in the trampoline's data area; Boot/ap.asm declares the same (a
/// unit test compares them with its `equ` lines).
public enum APTrampolineData {
    /// The data area's offset in the trampoline page.
    public static let offset = 0xF00
    /// UInt32, set to 1 by the AP in real mode.
    public static let started = 0x00
    /// UInt64, the AP's TSC at its first instruction.
    public static let entryTSC = 0x08
    /// UInt64, the boot CPU's CR3 (boot_pml4: below 4 GiB).
    public static let cr3 = 0x10
    /// UInt64, the AP's stack top.
    public static let stackTop = 0x18
    /// UInt64, the 64-bit kernel entry (ap_kernel_entry).
    public static let entry = 0x20
    /// UInt64, its argument: the tables frame's address.
    public static let argument = 0x28
}

/// What an AP reports to the boot CPU, in its tables frame. The AP writes the
/// fields, then `state` last.
public struct APControlBlock {
    public enum State: UInt32, Sendable {
        case starting = 0
        case vmxRoot = 1
        case failed = 2
        /// Its vCPU waits for the guest's start-up IPI (passthrough platform).
        case guestReady = 3
        /// The guest stopped; its exit statistics are at `statisticsOffset`.
        case stopped = 4
    }

    /// Why an AP failed (its `failure` field).
    public enum Failure: UInt32, Sendable {
        case none = 0
        /// Its VMX capability MSRs differ from the boot CPU's (`detail`: which, see `VMXCapabilityDifference`).
        case capabilityMismatch = 1
        /// VMXON or the steps before it failed (`detail`: the VMXError's code).
        case vmxon = 2
        /// Creating or setting up its vCPU failed (the VMX error is recorded).
        case vcpu = 3

        public var message: StaticString {
            switch self {
            case .none: "no failure"
            case .capabilityMismatch: "its VMX capabilities differ from the boot CPU's"
            case .vmxon: "VMXON failed"
            case .vcpu: "its vCPU could not be set up"
            }
        }
    }

    public var state: UInt32 = State.starting.rawValue
    public var failure: UInt32 = Failure.none.rawValue
    public var index: UInt32 = 0
    public var apicID: UInt32 = 0
    public var detail: UInt64 = 0
    /// The AP's TSC at its first trampoline instruction and in VMX root mode.
    public var entryTSC: UInt64 = 0
    public var vmxRootTSC: UInt64 = 0
    /// The frame the boot CPU reserved for its VMXON region.
    public var vmxonRegion: UInt64 = 0

    public init() {}
}

/// The first VMX capability MSR in which two CPUs differ, by name (SDM
/// Appendix A): CPUs that differ cannot share one VMCS configuration.
public enum VMXCapabilityDifference: UInt32, Sendable {
    case basic = 1, pinBased, primary, secondary, exit, entry, misc, cr0Fixed, cr4Fixed, vmcsEnum, eptVPID, vmFunctions

    public init?(_ a: VMXCapabilities, _ b: VMXCapabilities) {
        if a.basic != b.basic { self = .basic }
        else if a.pinBased != b.pinBased { self = .pinBased }
        else if a.primary != b.primary { self = .primary }
        else if a.secondary != b.secondary { self = .secondary }
        else if a.exit != b.exit { self = .exit }
        else if a.entry != b.entry { self = .entry }
        else if a.misc != b.misc { self = .misc }
        else if a.cr0Fixed != b.cr0Fixed { self = .cr0Fixed }
        else if a.cr4Fixed != b.cr4Fixed { self = .cr4Fixed }
        else if a.vmcsEnum != b.vmcsEnum { self = .vmcsEnum }
        else if a.eptVPID != b.eptVPID { self = .eptVPID }
        else if a.vmFunctions != b.vmFunctions { self = .vmFunctions }
        else { return nil }
    }

    public var name: StaticString {
        switch self {
        case .basic: "IA32_VMX_BASIC"
        case .pinBased: "the pin-based controls"
        case .primary: "the primary processor-based controls"
        case .secondary: "IA32_VMX_PROCBASED_CTLS2"
        case .exit: "the VM-exit controls"
        case .entry: "the VM-entry controls"
        case .misc: "IA32_VMX_MISC"
        case .cr0Fixed: "IA32_VMX_CR0_FIXED0/1"
        case .cr4Fixed: "IA32_VMX_CR4_FIXED0/1"
        case .vmcsEnum: "IA32_VMX_VMCS_ENUM"
        case .eptVPID: "IA32_VMX_EPT_VPID_CAP"
        case .vmFunctions: "IA32_VMX_VMFUNC"
        }
    }
}
