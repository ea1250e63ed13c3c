// The isolated platform's local APIC and IOAPIC (the Devices models), behind
// the vCPU's MMIO, MSR, interrupt and timer hooks: the APIC page at its base
// (xAPIC mode), the IOAPIC page at 0xFEC00000, IA32_APIC_BASE, the x2APIC
// MSRs and IA32_TSC_DEADLINE. The APIC timer runs on the TSC, driven by the
// VMX-preemption timer; an IOAPIC interrupt goes to the local APIC, and a
// level-triggered EOI goes back to the IOAPIC. The vCPU brings the APIC's
// clock (the guest's TSC) up to date before each access. Every change ends in
// `refresh`, which leaves the two answers the vCPU asks for at each entry
// (an interrupt pending, the next deadline) in plain stored values.
import X86Arch
import X86VCPU
import Devices

extension KernelPlatform {
    /// Gives the guest a local APIC (ID 0, the bootstrap processor) and an IOAPIC.
    mutating func addInterruptControllers(physicalAddressBits: Int) {
        apic = LocalAPIC(id: 0, physicalAddressBits: UInt8(clamping: physicalAddressBits))
        ioapic = IOAPIC(id: 1)
        hasControllers = true
        apicChanges = APICChanges.registers
        refresh()
    }

    /// After a change of the APIC's interrupt state (IRR, ISR, TMR).
    mutating func refresh() {
        apicChanges |= APICChanges.vectors
        updateCache()
    }

    mutating func updateCache() {
        cachedPending = hasControllers && apic.pendingInterrupt != nil
        cachedDeadline = hasControllers ? apic.nextDeadline : nil
    }

    func apicPage(_ gpa: UInt64) -> UInt32? {
        guard hasControllers, apic.mode == .xAPIC, gpa >= apic.mmioBase, gpa - apic.mmioBase < 0x1000 else { return nil }
        return UInt32(gpa - apic.mmioBase)
    }

    func ioapicPage(_ gpa: UInt64) -> UInt64? {
        guard hasControllers, gpa >= IOAPIC.baseAddress, gpa - IOAPIC.baseAddress < IOAPIC.mmioSize else { return nil }
        return gpa - IOAPIC.baseAddress
    }

    func decodesMMIO(_ gpa: UInt64) -> Bool { apicPage(gpa) != nil || ioapicPage(gpa) != nil || realAPICOffset(gpa) != nil }

    /// Registers are 32 bits wide on 16-byte boundaries: a narrower read
    /// takes its bytes of the register, a wider one reads the register zero-extended.
    mutating func mmioRead(_ gpa: UInt64, size: Int) -> UInt64 {
        if let offset = realAPICOffset(gpa) { return realAPICRead(offset, size: size) }
        let shift = UInt64(gpa & 3) * 8
        let mask: UInt64 = size >= 4 ? 0xFFFF_FFFF : (1 << UInt64(size * 8)) - 1
        syncAPIC()
        if let offset = apicPage(gpa) {
            apic.advance(toTSC: guestTime)   // the current-count register reads the time
            let value = UInt64(apic.readRegister(offset: offset & ~3)) >> shift & mask
            refresh()
            return value
        }
        if let offset = ioapicPage(gpa) { return UInt64(ioapic.read(offset: offset & ~3)) >> shift & mask }
        return UInt64.max
    }

    mutating func mmioWrite(_ gpa: UInt64, size: Int, value: UInt64) {
        if let offset = realAPICOffset(gpa) { return realAPICWrite(offset, size: size, value: value) }
        let word = UInt32(truncatingIfNeeded: value << (UInt64(gpa & 3) * 8))
        syncAPIC()
        if let offset = apicPage(gpa) {
            apic.advance(toTSC: guestTime)
            apicChanges |= APICChanges.registers
            handle(apic.writeRegister(offset: offset & ~3, value: word))
        } else if let offset = ioapicPage(gpa) {
            deliver(ioapic.write(offset: offset & ~3, value: word))
            if routesLegacyIRQs { unmaskRoutedIRQs() }
        }
        refresh()
    }

    // MARK: The legacy devices' interrupts through the IOAPIC

    /// The ISA interrupts an isolated OS guest's own devices raise: the PIT
    /// (0), COM1 (4) and the RTC (8); the others' devices are not the guest's.
    static let guestIRQs: [3 of Int] = [0, 4, 8]

    /// ISA IRQ -> IOAPIC pin, as the MADT's override says: IRQ 0 on pin 2.
    static func pin(ofIRQ irq: Int) -> Int { irq == 0 ? 2 : irq }

    /// The real PICs pass a guest IRQ exactly while its IOAPIC pin is unmasked
    /// (the guest never touches the PICs in APIC mode: its ACPI tables are
    /// hardware-reduced). IRQ 2 carries the slave.
    mutating func unmaskRoutedIRQs() {
        var mask: UInt16 = 0xFFFF
        for i in 0..<Self.guestIRQs.count where !ioapic.entry(Self.pin(ofIRQ: Self.guestIRQs[i])).masked {
            mask &= ~(1 << UInt16(Self.guestIRQs[i]))
            if Self.guestIRQs[i] >= 8 { mask &= ~(1 << 2) }
        }
        guard mask != realPICMask else { return }
        realPICMask = mask
        port_out8(0x21, UInt8(truncatingIfNeeded: mask))
        port_out8(0xA1, UInt8(truncatingIfNeeded: mask >> 8))
    }

    /// A real PIC interrupt while the guest runs: one of the routed IRQs goes
    /// to its IOAPIC pin (edge, as ISA interrupts are), after the hypervisor
    /// ends it at the PICs (non-specific EOI, slave first) since the guest
    /// ends it at its local APIC instead.
    mutating func hostInterrupt(_ vector: UInt8) -> Bool {
        guard routesLegacyIRQs, vector >= Self.picBase, vector < Self.picBase + 16 else { return false }
        let irq = Int(vector - Self.picBase)
        guard realPICMask & (1 << UInt16(irq)) == 0, !ioapic.entry(Self.pin(ofIRQ: irq)).masked else { return false }
        if irq >= 8 { port_out8(0xA0, 0x20) }
        port_out8(0x20, 0x20)
        syncAPIC()
        deliver(ioapic.pulse(pin: Self.pin(ofIRQ: irq)))
        refresh()
        return true
    }

    @inline(__always)  // every MSR exit: the usual answer without a call
    mutating func msrRead(_ msr: UInt32) -> PlatformMSRAnswer {
        guard hasControllers, LocalAPIC.handles(msr: msr) else { return .notMine }
        return apicMSRRead(msr)
    }

    mutating func apicMSRRead(_ msr: UInt32) -> PlatformMSRAnswer {
        syncAPIC()
        apic.advance(toTSC: guestTime)
        guard let value = apic.readMSR(msr) else { return .generalProtection }
        return .done(value)
    }

    @inline(__always)  // every WRMSR exit: the usual answer without a call
    mutating func msrWrite(_ msr: UInt32, _ value: UInt64) -> PlatformMSRAnswer {
        if msr == 0x830 && routesIPIs { return x2APICICRWrite(value) }
        guard hasControllers, LocalAPIC.handles(msr: msr) else { return .notMine }
        if msr == MSR.ia32TSCDeadline.address { return tscDeadlineWrite(value) }
        return apicMSRWrite(msr, value)
    }

    /// IA32_TSC_DEADLINE armed ahead of time or disarmed (Linux, every
    /// tick): only the timer's state changes, so no IRR, ISR or page to sync
    /// or store (`LocalAPIC.armTSCDeadline`); else the full write.
    mutating func tscDeadlineWrite(_ value: UInt64) -> PlatformMSRAnswer {
        guard apic.armTSCDeadline(value, at: guestTime) else { return apicMSRWrite(MSR.ia32TSCDeadline.address, value) }
        cachedDeadline = apic.nextDeadline
        return .done(0)
    }

    mutating func apicMSRWrite(_ msr: UInt32, _ value: UInt64) -> PlatformMSRAnswer {
        syncAPIC()
        apic.advance(toTSC: guestTime)
        guard let event = apic.writeMSR(msr, value) else { return .generalProtection }
        // IA32_TSC_DEADLINE is not in the page; the others are its registers.
        if msr != MSR.ia32TSCDeadline.address { apicChanges |= APICChanges.registers }
        handle(event)
        refresh()
        return .done(0)
    }

    /// While the guest may have changed the page, the answer comes from it.
    @inline(__always)  // a call copied the whole platform (~830 bytes)
    var interruptPending: Bool {
        guard pageStale, let page = virtualPage else { return cachedPending }
        return hasControllers && apic.mode != .disabled && LocalAPIC.virtualPageHasPendingInterrupt(UnsafeRawPointer(page))
    }
    var nextDeadline: UInt64? { cachedDeadline }
    /// Another CPU stopped the guest (GuestCPUs.swift).
    var stopRequested: Bool { guestStopRequested() }

    mutating func acknowledgeInterrupt() -> UInt8? {
        syncAPIC()
        let vector = apic.acknowledge()
        refresh()
        return vector
    }

    /// The guest's time, kept for the next APIC access; the APIC itself runs
    /// only when its deadline has come (every exit passes through here).
    @inline(__always)  // every MSR exit and entry: the usual case without a call
    mutating func advance(toTSC tsc: UInt64) {
        guard hasControllers else {
            // The routed-IPI poll (IPIRouting.swift): the next exit in a millisecond.
            if routesIPIs { cachedDeadline = tsc &+ pollTicks }
            return
        }
        guestTime = tsc
        guard let due = cachedDeadline, tsc >= due else { return }
        runAPIC(toTSC: tsc)
    }

    @inline(never)  // rare: kept out of the inlined exit paths
    mutating func runAPIC(toTSC tsc: UInt64) {
        syncAPIC()
        apic.advance(toTSC: tsc)
        refresh()
    }

    mutating func takeNMI() -> Bool {
        defer { nmiPending = false }
        return nmiPending
    }

    mutating func handle(_ event: LocalAPICEvent) {
        switch event {
        case .nothing: break
        case .nmi: nmiPending = true
        case .levelEndOfInterrupt(let vector): deliver(ioapic.eoi(vector: vector))
        }
    }

    /// IOAPIC messages to the one local APIC (any destination: there is one CPU).
    mutating func deliver(_ deliveries: IOAPICDeliveries) {
        for i in 0..<deliveries.count {
            let interrupt = deliveries[i]
            switch interrupt.deliveryMode {
            case .nmi: nmiPending = true
            case .fixed, .lowestPriority: apic.accept(vector: interrupt.vector, level: interrupt.triggerMode == .level)
            default: break   // SMI, INIT, ExtINT: nothing on this platform
            }
        }
    }
}

/// What `storeAPIC` must write into the virtual-APIC page.
enum APICChanges {
    /// IRR, ISR, PPR and the interrupt status (an interrupt arrived or ended).
    static let vectors: UInt8 = 1
    /// Every register (a register write, a mode change).
    static let registers: UInt8 = 2
    /// The one register at `changedRegister` (an APIC-write exit).
    static let oneRegister: UInt8 = 4
}

// The CPU's APIC virtualization (X86VCPU APICVirtualization.swift): the
// model decides, the page is the CPU's copy.
extension KernelPlatform {
    /// After every exit: the page is read only when the model is next used
    /// (most exits never touch the APIC).
    mutating func loadAPIC(from page: VirtualAPICPage) {
        virtualPage = page.pointer
        pageStale = true
    }

    /// Before the model is read or changed: what the CPU changed in the page.
    /// The deadline does not depend on IRR, ISR or TPR: only `pending` can change.
    mutating func syncAPIC() {
        guard pageStale, let page = virtualPage else { return }
        pageStale = false
        if apic.loadVirtualState(page: UnsafeRawPointer(page)) {
            cachedPending = apic.pendingInterrupt != nil
            pageIRR = apic.interruptRequest
            pageISR = apic.inService
        }
    }

    @inline(__always)  // before every entry: the common answer without a call
    mutating func storeAPIC(into page: VirtualAPICPage, status: inout VirtualInterruptStatus) -> Bool {
        guard apicChanges != 0 else { return false }
        storeChangedAPIC(into: page, status: &status)
        return true
    }

    mutating func storeChangedAPIC(into page: VirtualAPICPage, status: inout VirtualInterruptStatus) {
        if apicChanges & APICChanges.registers != 0 {
            apic.forEachVirtualizedRegister { offset, value in page[offset] = value }
            pageIRR = apic.interruptRequest
            pageISR = apic.inService
        } else {
            if apicChanges & APICChanges.oneRegister != 0 { page[changedRegister] = apic.pageValueInPlace(offset: changedRegister) }
            // An interrupt that arrives or ends changes one word of each.
            apic.interruptRequest.store(into: page.pointer, at: VirtualAPICPage.interruptRequest, over: &pageIRR)
            apic.inService.store(into: page.pointer, at: VirtualAPICPage.inService, over: &pageISR)
            page[0xA0] = UInt32(apic.processorPriority)
        }
        apicChanges = 0
        let tmr = apic.triggerMode
        status = VirtualInterruptStatus(requesting: apic.interruptRequest.highest ?? 0, servicing: apic.inService.highest ?? 0,
                                        eoiExit0: tmr.word(0), eoiExit1: tmr.word(1), eoiExit2: tmr.word(2), eoiExit3: tmr.word(3))
    }

    /// The guest's write is in the page already; the model carries it out.
    /// Only the register written changes (and IRR/ISR, below), but for the
    /// spurious-vector register, which can mask every LVT entry, and the LVT
    /// timer, whose switch to or from TSC-deadline mode clears the initial count.
    mutating func apicWrite(offset: Int, value: UInt32) {
        syncAPIC()
        apic.advance(toTSC: guestTime)
        if offset == 0x0F0 || offset == 0x320 || (apicChanges & APICChanges.oneRegister != 0 && changedRegister != offset) {
            apicChanges |= APICChanges.registers
        } else {
            apicChanges |= APICChanges.oneRegister
            changedRegister = offset
        }
        handle(apic.writeRegister(offset: UInt32(offset), value: value))
        refresh()
    }

    /// A preemption-timer exit (QuickExits.swift): the APIC timer's interrupt
    /// into the page, not the model; the model takes it from there at its
    /// next sync, as it takes what the CPU changed (`pageStale`).
    @inline(__always)  // into the trampoline's Swift half: one call fewer
    mutating func postTimers(toTSC tsc: UInt64, into page: VirtualAPICPage) -> PostedTimers? {
        guard hasControllers, apicChanges == 0, let vector = apic.postTimer(toTSC: tsc, into: page.pointer) else { return nil }
        guestTime = tsc
        pageStale = true
        cachedDeadline = apic.nextDeadline
        return PostedTimers(highestVector: vector)
    }

    /// The CPU retired a level-triggered vector (the model saw VISR change
    /// in `loadAPIC`): its EOI message goes to the IOAPIC.
    mutating func apicEOI(vector: UInt8) {
        syncAPIC()
        handle(.levelEndOfInterrupt(vector: vector))
        refresh()
    }
}
