// A software walk of the guest's own page tables (guest-virtual, i.e. linear,
// to guest-physical), as the processor would do it: for emulating an
// instruction that touched memory, or for reading the guest's stack or code.
// SDM Vol. 3A 5.3 "32-Bit Paging", 5.4 "PAE Paging", 5.5 "4-Level Paging and
// 5-Level Paging", 5.6 "Access Rights", 5.7 "Page-Fault Exceptions".
//
// Not modelled (documented limits): protection keys (CR4.PKE/PKS), CET shadow
// stacks, HLAT, linear-address masking, and setting the accessed/dirty flags
// (the walk only reads). PSE-36 and PAT are assumed present, as on every
// processor with VMX. The result is guest-physical: the caller translates it
// through EPT, and the walk reads its tables through `GuestPhysicalMemory`,
// which answers in guest-physical addresses.

import X86Arch
import VMX

/// Guest RAM as the walk reads it, by guest-physical address (little-endian).
/// nil means "not guest RAM" (an MMIO hole, beyond the guest's memory).
public protocol GuestPhysicalMemory {
    func read64(_ gpa: UInt64) -> UInt64?
    func read32(_ gpa: UInt64) -> UInt32?
}

/// The paging mode CR0, CR4 and EFER select.
// SDM 5.1.1 "Four Paging Modes" (Table 5-1)
public enum GuestPagingMode: Equatable, Sendable {
    /// CR0.PG = 0: linear addresses are physical addresses.
    case disabled
    /// CR0.PG = 1, CR4.PAE = 0.
    case bits32
    /// CR0.PG = 1, CR4.PAE = 1, EFER.LME = 0.
    case pae
    /// CR0.PG = 1, CR4.PAE = 1, EFER.LME = 1, CR4.LA57 = 0.
    case level4
    /// CR0.PG = 1, CR4.PAE = 1, EFER.LME = 1, CR4.LA57 = 1.
    case level5

    /// Levels of paging structures: 0, 2, 3, 4, 5.
    public var levels: Int {
        switch self {
        case .disabled: return 0
        case .bits32: return 2
        case .pae: return 3
        case .level4: return 4
        case .level5: return 5
        }
    }
}

/// The guest registers that control paging, as read from the VMCS guest-state
/// area, plus the facts about the processor that the reserved-bit checks need.
public struct GuestPagingState: Sendable {
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    /// MAXPHYADDR (CPUID 0x80000008 EAX[7:0]); bits from here up to 51 are
    /// reserved in paging entries. Use the physical processor's value to
    /// reproduce what hardware would report.
    public var physicalAddressBits: Int
    /// CPUID 0x80000001 EDX[26]: without it PS in a PDPTE is reserved.
    public var supports1GiBPages: Bool
    /// PAE paging uses the four PDPTEs loaded with CR3 (with EPT on, the VMCS
    /// guest PDPTE0-3 fields); nil reads them from guest memory at CR3.
    public var paePDPTEs: (UInt64, UInt64, UInt64, UInt64)?

    public init(cr0: UInt64, cr3: UInt64, cr4: UInt64, efer: UInt64, physicalAddressBits: Int,
                supports1GiBPages: Bool = true, paePDPTEs: (UInt64, UInt64, UInt64, UInt64)? = nil) {
        self.cr0 = cr0
        self.cr3 = cr3
        self.cr4 = cr4
        self.efer = efer
        self.physicalAddressBits = physicalAddressBits
        self.supports1GiBPages = supports1GiBPages
        self.paePDPTEs = paePDPTEs
    }

    // SDM 2.5 "Control Registers", 2.2.1 "Extended Feature Enable Register"
    static let cr0WP: UInt64 = 1 << 16
    static let cr0PG: UInt64 = 1 << 31
    static let cr4PSE: UInt64 = 1 << 4
    static let cr4PAE: UInt64 = 1 << 5
    static let cr4LA57: UInt64 = 1 << 12
    static let cr4SMEP: UInt64 = 1 << 20
    static let cr4SMAP: UInt64 = 1 << 21
    static let eferLME: UInt64 = 1 << 8
    static let eferNXE: UInt64 = 1 << 11

    // SDM 5.1.1 "Four Paging Modes" (Table 5-1)
    public var mode: GuestPagingMode {
        guard cr0 & Self.cr0PG != 0 else { return .disabled }
        guard cr4 & Self.cr4PAE != 0 else { return .bits32 }
        guard efer & Self.eferLME != 0 else { return .pae }
        return cr4 & Self.cr4LA57 != 0 ? .level5 : .level4
    }

    /// Translates `linear` for `access`, as the guest's MMU would.
    public func translate<M: GuestPhysicalMemory>(_ linear: UInt64, access: GuestAccess, memory: M)
        throws(GuestPageWalkError) -> GuestTranslation {
        try GuestPageWalkInfo(state: self, access: access).translate(linear, memory: memory)
    }
}

/// One access to translate: its kind and the privilege it is made with.
// SDM 5.6 "Access Rights"
public struct GuestAccess: Equatable, Sendable {
    public enum Kind: Equatable, Sendable { case read, write, instructionFetch }

    public var kind: Kind
    /// A user-mode access: CPL 3, and not an implicit supervisor-mode access.
    public var isUserMode: Bool
    /// An access to a system structure (GDT, IDT, TSS, ...): supervisor-mode
    /// at any CPL, and never allowed to user pages by SMAP, whatever EFLAGS.AC.
    public var isImplicitSupervisor: Bool
    /// EFLAGS.AC: with CR4.SMAP, lets explicit supervisor accesses use user pages.
    public var alignmentCheckFlag: Bool

    public init(_ kind: Kind, userMode: Bool, implicitSupervisor: Bool = false, alignmentCheckFlag: Bool = false) {
        self.kind = kind
        self.isUserMode = userMode && !implicitSupervisor
        self.isImplicitSupervisor = implicitSupervisor
        self.alignmentCheckFlag = alignmentCheckFlag
    }
}

/// Everything one walk needs, flattened as x86_vcpu's
/// `GuestPageWalkInfo` is: built from a `GuestPagingState` and a
/// `GuestAccess`, or filled in by hand.
public struct GuestPageWalkInfo: Sendable {
    /// CR3: the address of the top paging structure (and PCID/flags bits).
    public var topEntry: UInt64
    public var mode: GuestPagingMode
    public var isUserModeAccess: Bool
    public var isWriteAccess: Bool
    public var isInstructionFetch: Bool
    public var isImplicitSupervisorAccess: Bool
    /// CR4.PSE: 4 MiB pages under 32-bit paging (the other modes ignore it).
    public var pse: Bool
    /// CR0.WP: supervisor writes honour read-only pages.
    public var wp: Bool
    /// EFER.NXE: bit 63 is XD rather than reserved (PAE, 4- and 5-level).
    public var nxe: Bool
    public var isSMAPOn: Bool
    public var isSMEPOn: Bool
    /// EFLAGS.AC (SMAP override for explicit supervisor accesses).
    public var eflagsAC: Bool
    public var physicalAddressBits: Int
    public var supports1GiBPages: Bool
    public var paePDPTEs: (UInt64, UInt64, UInt64, UInt64)?

    /// Paging-structure levels (0 when paging is off).
    public var level: Int { mode.levels }
    /// Index bits per level: 10 for 32-bit paging, 9 otherwise.
    public var width: Int { mode == .bits32 ? 10 : 9 }

    public init(state: GuestPagingState, access: GuestAccess) {
        topEntry = state.cr3
        mode = state.mode
        isUserModeAccess = access.isUserMode
        isWriteAccess = access.kind == .write
        isInstructionFetch = access.kind == .instructionFetch
        isImplicitSupervisorAccess = access.isImplicitSupervisor
        pse = state.cr4 & GuestPagingState.cr4PSE != 0
        wp = state.cr0 & GuestPagingState.cr0WP != 0
        nxe = state.efer & GuestPagingState.eferNXE != 0
        isSMAPOn = state.cr4 & GuestPagingState.cr4SMAP != 0
        isSMEPOn = state.cr4 & GuestPagingState.cr4SMEP != 0
        eflagsAC = access.alignmentCheckFlag
        physicalAddressBits = state.physicalAddressBits
        supports1GiBPages = state.supports1GiBPages
        paePDPTEs = state.paePDPTEs
    }

    /// Translates `linear` as the guest's MMU would: the guest-physical
    /// address, or the page fault (with its error code) the access raises.
    public func translate<M: GuestPhysicalMemory>(_ linear: UInt64, memory: M)
        throws(GuestPageWalkError) -> GuestTranslation {
        switch mode {
        case .disabled:
            // Without paging the processor is outside IA-32e mode: 32-bit linear addresses.
            return GuestTranslation(guestPhysical: linear & 0xFFFF_FFFF, pageSize: 0x1000, leafEntry: 0,
                                    isWritable: true, isUserAccessible: true, isExecuteDisabled: false)
        case .bits32:
            return try walk32(UInt32(truncatingIfNeeded: linear), memory: memory)
        case .pae, .level4, .level5:
            return try walk64(linear, memory: memory)
        }
    }

    // MARK: Faults

    /// The error-code bits that describe the access rather than the cause.
    // SDM 5.7 "Page-Fault Exceptions": W/R (bit 1), U/S (bit 2), I/D (bit 4)
    private var accessBits: PageFaultErrorCode {
        var code = PageFaultErrorCode(rawValue: 0)
        if isWriteAccess { code = code | .write }
        if isUserModeAccess { code = code | .user }
        // I/D is 1 only for a fetch when SMEP is on, or when PAE-style paging
        // (CR4.PAE = 1) runs with EFER.NXE = 1.
        if isInstructionFetch && (isSMEPOn || (mode != .bits32 && nxe)) { code = code | .instructionFetch }
        return code
    }

    private func notPresent() -> GuestPageWalkError { .pageFault(errorCode: accessBits) }
    private func reservedBit() -> GuestPageWalkError {
        .pageFault(errorCode: accessBits | .present | .reservedBit)
    }
    private func protection() -> GuestPageWalkError { .pageFault(errorCode: accessBits | .present) }

    // MARK: Access rights

    /// Whether the rights the walk accumulated allow this access.
    // SDM 5.6.1 "Determination of Access Rights"
    private func allowed(writable: Bool, user: Bool, executeDisabled: Bool) -> Bool {
        if isUserModeAccess {
            guard user else { return false }
            if isWriteAccess && !writable { return false }
            if isInstructionFetch && executeDisabled { return false }
            return true
        }
        if isInstructionFetch {
            if user && isSMEPOn { return false }
            return !executeDisabled
        }
        // Supervisor data access. SMAP blocks user pages unless EFLAGS.AC = 1
        // and the access is explicit.
        if user && isSMAPOn && (!eflagsAC || isImplicitSupervisorAccess) { return false }
        if isWriteAccess && wp && !writable { return false }
        return true
    }

    // MARK: 32-bit paging

    // SDM 5.3 "32-Bit Paging" (Tables 5-4, 5-5, 5-6)
    private func walk32<M: GuestPhysicalMemory>(_ linear: UInt32, memory: M)
        throws(GuestPageWalkError) -> GuestTranslation {
        let pdeAddress = (topEntry & 0xFFFF_F000) | UInt64(linear >> 22) << 2
        guard let pde = memory.read32(pdeAddress) else { throw .tableNotInGuestMemory(guestPhysical: pdeAddress) }
        guard pde & 1 != 0 else { throw notPresent() }

        if pse && pde & (1 << 7) != 0 {
            // 4 MiB page. PSE-36: PDE bits (M-20):13 are address bits (M-1):32
            // and bits 21:(M-19) are reserved, M = min(MAXPHYADDR, 40).
            let m = max(32, min(physicalAddressBits, 40))
            let reserved = UInt32((1 << 22) - (1 << (m - 19)))
            guard pde & reserved == 0 else { throw reservedBit() }
            let base = UInt64(pde & 0xFFC0_0000) | UInt64((pde >> 13) & 0xFF) << 32
            return try finish(gpa: base | UInt64(linear & 0x3F_FFFF), size: 0x40_0000, leaf: UInt64(pde),
                              writable: pde & 2 != 0, user: pde & 4 != 0, executeDisabled: false)
        }

        let pteAddress = UInt64(pde & 0xFFFF_F000) | UInt64((linear >> 12) & 0x3FF) << 2
        guard let pte = memory.read32(pteAddress) else { throw .tableNotInGuestMemory(guestPhysical: pteAddress) }
        guard pte & 1 != 0 else { throw notPresent() }
        return try finish(gpa: UInt64(pte & 0xFFFF_F000) | UInt64(linear & 0xFFF), size: 0x1000, leaf: UInt64(pte),
                          writable: pde & pte & 2 != 0, user: pde & pte & 4 != 0, executeDisabled: false)
    }

    // MARK: PAE, 4-level and 5-level paging

    // SDM 5.4.2 and 5.5.4 "Linear-Address Translation with ..." (Tables 5-8 .. 5-20)
    private func walk64<M: GuestPhysicalMemory>(_ linearIn: UInt64, memory: M)
        throws(GuestPageWalkError) -> GuestTranslation {
        let m = UInt64(min(max(physicalAddressBits, 32), 52))
        let addressMask: UInt64 = ((1 << m) - 1) & ~0xFFF
        // Bits 51:M are reserved everywhere; PAE paging also reserves 62:52;
        // bit 63 (XD) is reserved unless EFER.NXE = 1.
        var reserved: UInt64 = ((1 << 52) - 1) & ~((1 << m) - 1)
        if mode == .pae { reserved |= 0x7FF0_0000_0000_0000 }
        if !nxe { reserved |= 1 << 63 }

        var linear = linearIn
        var table: UInt64
        var level: Int
        if mode == .pae {
            linear &= 0xFFFF_FFFF
            // SDM 5.4.1 "PDPTE Registers": P, and reserved bits 2:1, 8:5, 63:M.
            let index = Int(linear >> 30)
            let pdpte: UInt64
            if let loaded = paePDPTEs {
                switch index {
                case 0: pdpte = loaded.0
                case 1: pdpte = loaded.1
                case 2: pdpte = loaded.2
                default: pdpte = loaded.3
                }
            } else {
                let address = (topEntry & 0xFFFF_FFE0) + UInt64(index) * 8
                guard let read = memory.read64(address) else { throw .tableNotInGuestMemory(guestPhysical: address) }
                pdpte = read
            }
            guard pdpte & 1 != 0 else { throw notPresent() }
            guard pdpte & (PAEPDPTE.reservedMask | ~((1 << m) - 1)) == 0 else { throw reservedBit() }
            table = pdpte & addressMask
            level = 2
        } else {
            // SDM 3.3.7.1 "Canonical Addressing": #GP, not #PF.
            let width: UInt64 = mode == .level5 ? 57 : 48
            let upper = linear >> (width - 1)
            guard upper == 0 || upper == (UInt64.max >> (width - 1)) else { throw .nonCanonical }
            table = topEntry & addressMask
            level = mode.levels
        }

        var writable = true
        var user = true
        var executeDisabled = false
        while true {
            let shift = UInt64(12 + 9 * (level - 1))
            let entryAddress = table + ((linear >> shift) & 0x1FF) * 8
            guard let entry = memory.read64(entryAddress) else {
                throw .tableNotInGuestMemory(guestPhysical: entryAddress)
            }
            guard entry & 1 != 0 else { throw notPresent() }
            guard entry & reserved == 0 else { throw reservedBit() }
            let pageSize = entry & (1 << 7) != 0
            // PS is reserved in a PML5E and PML4E, and in a PDPTE without 1 GiB pages.
            if pageSize && (level >= 4 || (level == 3 && !supports1GiBPages)) { throw reservedBit() }
            writable = writable && entry & 2 != 0
            user = user && entry & 4 != 0
            executeDisabled = executeDisabled || (nxe && entry & (1 << 63) != 0)

            if level == 1 || pageSize {
                let size: UInt64 = 1 << shift
                // A large page's bits (shift-1):13 are reserved (bit 12 is PAT).
                if level > 1 && entry & (size - 1) & ~0x1FFF != 0 { throw reservedBit() }
                let base = entry & addressMask & ~(size - 1)
                return try finish(gpa: base | (linear & (size - 1)), size: size, leaf: entry,
                                  writable: writable, user: user, executeDisabled: executeDisabled)
            }
            table = entry & addressMask
            level -= 1
        }
    }

    private func finish(gpa: UInt64, size: UInt64, leaf: UInt64, writable: Bool, user: Bool,
                        executeDisabled: Bool) throws(GuestPageWalkError) -> GuestTranslation {
        guard allowed(writable: writable, user: user, executeDisabled: executeDisabled) else { throw protection() }
        return GuestTranslation(guestPhysical: gpa, pageSize: size, leafEntry: leaf, isWritable: writable,
                                isUserAccessible: user, isExecuteDisabled: executeDisabled)
    }
}

/// A successful guest translation.
public struct GuestTranslation: Equatable, Sendable {
    public let guestPhysical: UInt64
    /// 4 KiB, 2 MiB, 4 MiB or 1 GiB; 4 KiB (nominal) when paging is off.
    public let pageSize: UInt64
    /// The raw leaf entry (PTE, or PDE/PDPTE mapping a page); 0 with paging off.
    public let leafEntry: UInt64
    /// R/W = 1 at every level.
    public let isWritable: Bool
    /// U/S = 1 at every level: a user-mode address.
    public let isUserAccessible: Bool
    /// XD = 1 at some level while EFER.NXE = 1.
    public let isExecuteDisabled: Bool
}

/// Why a guest translation failed.
public enum GuestPageWalkError: Error, Equatable, Sendable {
    /// The access raises #PF: inject it with this error code and CR2 = the linear address.
    case pageFault(errorCode: PageFaultErrorCode)
    /// A non-canonical address: the access raises #GP (or #SS), not #PF.
    case nonCanonical
    /// A paging structure lies outside guest RAM (the hardware would have
    /// caused an EPT violation or read MMIO): the hypervisor must decide.
    case tableNotInGuestMemory(guestPhysical: UInt64)
}
