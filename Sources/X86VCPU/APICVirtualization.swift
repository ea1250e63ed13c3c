// The CPU's APIC virtualization for the isolated platform's local APIC.
// SDM 30 "APIC Virtualization and Virtual Interrupts": with "use TPR
// shadow", "virtualize APIC accesses", "APIC-register virtualization" and
// "virtual-interrupt delivery", the guest's reads of the APIC page come from
// the virtual-APIC page, TPR writes, EOIs and self-IPIs are done by the CPU,
// and the CPU delivers the highest requested interrupt itself when the guest
// can take it (no injection, no interrupt window). What is left exits:
//   - APIC-access (44, fault-like): a read or write the page cannot serve
//     (the timer's current count, the ID, reserved offsets): decoded as MMIO;
//   - APIC-write (56, trap-like): a write to another register, its value
//     already in the page (SDM 30.4.3.3 "APIC-Write Emulation");
//   - EOI-induced (45, trap-like): an EOI of a vector in the EOI-exit
//     bitmap (the level-triggered ones, for the IOAPIC's remote IRR).
// The platform's model and the page are kept in step (GuestPlatform's
// loadAPIC / storeAPIC): after every exit the model takes VTPR, VIRR and
// VISR back; before every entry it writes what it changed.

import X86Arch
import VMX

/// The vCPU's virtual-APIC page: the xAPIC register layout, 32 bits at each
/// 16-byte offset. SDM 30.1 "Virtual APIC State".
public struct VirtualAPICPage {
    public let pointer: UnsafeMutableRawPointer
    public init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }

    /// The 32-bit register at `offset` (any offset below 4 KiB; the CPU writes
    /// what a guest wrote at its own offset).
    public subscript(offset: Int) -> UInt32 {
        get { pointer.load(fromByteOffset: offset & 0xFFC, as: UInt32.self) }
        nonmutating set { pointer.storeBytes(of: newValue, toByteOffset: offset & 0xFFC, as: UInt32.self) }
    }

    /// Register `index` (0-7) of the 256-bit vector set at `offset` (ISR 100H, TMR 180H, IRR 200H).
    public func vectors(at offset: Int, _ index: Int) -> UInt32 { self[offset + 16 * index] }

    public static let taskPriority = 0x080
    public static let inService = 0x100
    public static let interruptRequest = 0x200
}

/// The CPU's half of the virtual-interrupt state besides the page: RVI and
/// SVI (the guest interrupt status, SDM 25.4.2) and the EOI-exit bitmap.
public struct VirtualInterruptStatus: Equatable, Sendable {
    /// Requesting virtual interrupt: the highest vector in VIRR, 0 for none.
    public var requesting: UInt8
    /// Servicing virtual interrupt: the highest vector in VISR, 0 for none.
    public var servicing: UInt8
    /// Vectors whose EOI exits (bit v of word v / 64).
    public var eoiExit0: UInt64, eoiExit1: UInt64, eoiExit2: UInt64, eoiExit3: UInt64

    public init(requesting: UInt8 = 0, servicing: UInt8 = 0, eoiExit0: UInt64 = 0, eoiExit1: UInt64 = 0,
                eoiExit2: UInt64 = 0, eoiExit3: UInt64 = 0) {
        self.requesting = requesting; self.servicing = servicing
        self.eoiExit0 = eoiExit0; self.eoiExit1 = eoiExit1; self.eoiExit2 = eoiExit2; self.eoiExit3 = eoiExit3
    }

    /// SDM 25.4.2: RVI in bits 7:0, SVI in bits 15:8.
    var field: UInt16 { UInt16(servicing) << 8 | UInt16(requesting) }
}

extension GuestPlatform {
    public mutating func loadAPIC(from page: VirtualAPICPage) {}
    public mutating func storeAPIC(into page: VirtualAPICPage, status: inout VirtualInterruptStatus) -> Bool { false }
    public mutating func apicWrite(offset: Int, value: UInt32) {}
    public mutating func apicEOI(vector: UInt8) {}
    public mutating func postTimers(toTSC tsc: UInt64, into page: VirtualAPICPage) -> PostedTimers? { nil }
}

extension VCPU {
    /// Whether this CPU offers everything the virtualized path needs.
    /// SDM 27.2.1.1: virtual-interrupt delivery needs "use TPR shadow" and
    /// "external-interrupt exiting".
    public var canVirtualizeAPIC: Bool {
        guard platformKind == .isolated, controls.pinBased.contains(.externalInterruptExiting),
              capabilities.primary.allows(.useTPRShadow), let secondary = capabilities.secondary else { return false }
        return secondary.allows(.virtualizeAPICAccesses) && secondary.allows(.apicRegisterVirtualization)
            && secondary.allows(.virtualInterruptDelivery)
    }

    /// Turns APIC virtualization on for a local APIC the guest sees at
    /// guest-physical `guestPhysical` (after `setup`). Returns the host-physical
    /// address of the APIC-access page, which the caller maps there in EPT
    /// (an access is an APIC access when EPT translates it to that page, SDM
    /// 30.4 "Virtualizing Memory-Mapped APIC Accesses"); nil when the CPU
    /// cannot (the platform's accesses then exit as EPT violations).
    public mutating func virtualizeAPIC<H: VMXHardware>(_ hw: H, at guestPhysical: UInt64) throws(VMXError) -> UInt64? {
        guard canVirtualizeAPIC else { return nil }
        virtualAPICPage.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: Int(frameSize))
        apicAccessPage.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: Int(frameSize))
        try hw.write(VMCSFields.Control64.virtualAPICAddress, virtualAPICPage.address)
        try hw.write(VMCSFields.Control64.apicAccessAddress, apicAccessPage.address)
        try hw.write(VMCSFields.Control32.tprThreshold, 0)
        interruptStatus = VirtualInterruptStatus()
        try writeInterruptStatus(hw, force: true)
        // CR8 is the TPR in the page from now on (SDM 30.3 "Virtualizing CR8-Based TPR Accesses").
        var primary = primaryControls
        primary.insert(.useTPRShadow)
        primary.remove(.cr8LoadExiting)
        primary.remove(.cr8StoreExiting)
        primaryControls = primary
        try hw.write(VMCSFields.Control32.primaryProcessorBasedControls, primary.rawValue)
        var secondary = SecondaryProcessorBasedControls(rawValue: UInt32(try hw.read(VMCSFields.Control32.secondaryProcessorBasedControls)))
        secondary.insert(.virtualizeAPICAccesses)
        secondary.insert(.apicRegisterVirtualization)
        secondary.insert(.virtualInterruptDelivery)
        try hw.write(VMCSFields.Control32.secondaryProcessorBasedControls, secondary.rawValue)
        apicAccessGuestPhysical = guestPhysical
        apicVirtualized = true
        return apicAccessPage.address
    }

    var apicPage: VirtualAPICPage { VirtualAPICPage(virtualAPICPage.pointer) }

    /// `interruptStatus` into the VMCS: RVI and SVI always (the CPU moves
    /// them as it delivers and retires interrupts, so the last value written
    /// says nothing), the EOI-exit bitmap where it changed.
    mutating func writeInterruptStatus<H: VMXHardware>(_ hw: H, force: Bool = false) throws(VMXError) {
        try hw.write(VMCSFields.Guest16.interruptStatus, interruptStatus.field)
        let e0 = interruptStatus.eoiExit0, e1 = interruptStatus.eoiExit1
        let e2 = interruptStatus.eoiExit2, e3 = interruptStatus.eoiExit3
        if force || e0 != eoiExitWritten0 { try hw.write(VMCSFields.Control64.eoiExitBitmap0, e0); eoiExitWritten0 = e0 }
        if force || e1 != eoiExitWritten1 { try hw.write(VMCSFields.Control64.eoiExitBitmap1, e1); eoiExitWritten1 = e1 }
        if force || e2 != eoiExitWritten2 { try hw.write(VMCSFields.Control64.eoiExitBitmap2, e2); eoiExitWritten2 = e2 }
        if force || e3 != eoiExitWritten3 { try hw.write(VMCSFields.Control64.eoiExitBitmap3, e3); eoiExitWritten3 = e3 }
    }

    /// Before an entry: the platform's changes into the page. A halted guest
    /// with a deliverable interrupt is woken, as the interrupt would wake it
    /// (the CPU delivers it once active).
    @inline(__always)  // before every entry; usually nothing to do
    mutating func storeVirtualAPIC<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) {
        if platform.storeAPIC(into: apicPage, status: &interruptStatus) { try writeInterruptStatus(hw) }
        // Only HLT exits put the guest in the HLT state (handleHLT); asking
        // the platform costs a look at the page, so only then.
        guard mayBeHalted else { return }
        if try hw.read(VMCSFields.Guest32.activityState) != ActivityState.hlt.rawValue {
            mayBeHalted = false
        } else if platform.interruptPending {
            try hw.write(VMCSFields.Guest32.activityState, ActivityState.active.rawValue)
            mayBeHalted = false
        }
    }

    /// APIC-access exit: a linear read or write of the instruction itself is
    /// emulated as MMIO at the APIC page; an access of event delivery, an
    /// instruction fetch or a guest-physical access (page walk) stops the
    /// guest, as for an EPT violation. SDM 28.2.1, Table 28-6.
    mutating func handleAPICAccess<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        let q = try qualification(hw)
        let offset = q & 0xFFF
        let type = (q >> 12) & 0xF
        let gpa = apicAccessGuestPhysical &+ offset
        let rip = try hw.read(VMCSFields.GuestNatural.rip)
        let stop = ExitAction.stop(.unhandled(reason: .apicAccess, qualification: q, rip: rip))
        guard type <= 1, reinjection == nil else { return stop }
        return try emulateMMIO(hw, &platform, at: gpa, isWrite: type == 1, otherwise: stop)
    }
}
