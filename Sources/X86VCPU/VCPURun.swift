// The run loop, entry preparation (timer, event injection) and the helpers
// every exit handler shares. Handlers advance RIP by the VM-exit
// instruction-length field, never by a guessed length.
// SDM 26 "VMX Non-Root Operation", 28 "VM Exits".

import X86Arch
import VMX

/// What a handler decided.
enum ExitAction {
    case resume
    case stop(VCPUExit)
}

extension VCPU {
    /// Runs the guest until something needs the kernel: every exit the vCPU can
    /// handle is handled here, I/O through `platform`.
    public mutating func run<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) -> VCPUExit {
        // The policy is public and may have changed since the last run.
        fastPath.invalidateCPUID()
        defer { fastPath.takeCounts(into: &statistics) }
        while true {
            // Another CPU stopped the guest (its INIT may have found this one in root mode).
            if platform.stopRequested { return .stopRequested }
            do {
                // An NMI the host took in root mode belongs to the guest, as
                // one that arrives while it runs (handleExceptionOrNMI).
                if hw.takeHostNMI() || platform.takeNMI() { _ = queue(.nmi) }
                try prepareEntry(hw, &platform)
                if exitUnrecorded { statistics.record(lastExitReason, cycles: hw.readTSC() &- lastExitTSC) }
                exitUnrecorded = false
                // Not with the built-in periodic timer, whose deadline is checked
                // only on this path, nor with events queued, so their windows
                // are planned here.
                let kinds = ExitFastPath.allKinds | (quickExits ? ExitFastPath.Kind.quick.rawValue : 0)
                fastPath.enabled = timerPeriod == 0 && events.isEmpty ? kinds : 0
                try enter(hw, &platform)
                launched = true
                lastExitTSC = hw.readTSC()
                let field = try hw.readExitReason()
                lastExitReason = field.basicReason
                if field.isEntryFailure {
                    statistics.record(lastExitReason, cycles: 0)
                    return .entryFailure(field, qualification: try hw.read(VMCSFields.ReadOnlyNatural.exitQualification))
                }
                exitUnrecorded = true
                // An exit the trampoline's quick handler took: its action.
                let quick = fastPath.takeQuickState()
                if apicVirtualized { platform.loadAPIC(from: apicPage) }
                if startedBySIPI { try clearSMIBlocking(hw) }
                // INIT (and a SIPI after it) from another vCPU: the exit is not
                // carried out. At a SIPI exit the INIT came first and the wait
                // for SIPI took it; the real SIPI starts the vCPU. (After a
                // quick exit, which was carried out, at the next exit.)
                if quick == .declined, let routed = platform.takeStartSignals(), field.basicReason != .startupIPI {
                    try takeStartSignals(routed, hw, &platform)
                    continue
                }
                if field.basicReason.canInterruptEventDelivery { try noteInterruptedEvent(hw) }
                let action = quick == .declined ? try handleExit(field.basicReason, hw, &platform)
                                                : try finishQuickExit(quick, hw, &platform)
                if case .stop(let exit) = action {
                    // Counted here, so not again if the kernel runs the guest on.
                    statistics.record(lastExitReason, cycles: hw.readTSC() &- lastExitTSC)
                    exitUnrecorded = false
                    return exit
                }
            } catch {
                return .instructionFailure(error)
            }
        }
    }

    /// Queues an event for the guest (delivered when it can take it).
    public mutating func queue(_ event: PendingEvent) -> Bool {
        do { try events.push(event) } catch { return false }
        return true
    }

    mutating func handleExit<H: VMXHardware, P: GuestPlatform>(_ reason: ExitReason, _ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        switch reason {
        case .exceptionOrNMI: return try handleExceptionOrNMI(hw)
        case .externalInterrupt: return try handleExternalInterrupt(hw, &platform)
        case .tripleFault: return .stop(.tripleFault(rip: try hw.read(VMCSFields.GuestNatural.rip)))
        case .initSignal: return try handleINIT(hw, &platform)
        case .startupIPI: return try handleSIPI(hw, &platform)
        case .interruptWindow, .nmiWindow, .preemptionTimerExpired: return .resume
        case .cpuid: return try handleCPUID(hw)
        case .hlt: return try handleHLT(hw, &platform)
        case .invd, .wbinvd, .pause: return try advance(hw)
        case .vmcall: return try handleVMCALL(hw, &platform)
        case .controlRegisterAccess: return try handleCRAccess(hw)
        case .ioInstruction, .rdmsr, .wrmsr: return try handleIOOrMSR(reason, hw, &platform)
        case .xsetbv: return try handleXSETBV(hw)
        case .eptViolation: return try handleEPTViolation(hw, &platform)
        case .apicAccess: return try handleAPICAccess(hw, &platform)
        case .apicWrite:
            // Trap-like: the value is in the page at the qualification's offset.
            let offset = Int(try qualification(hw) & 0xFF0)
            platform.advance(toTSC: guestTSC(hw))
            platform.apicWrite(offset: offset, value: apicPage[offset])
            return .resume
        case .virtualizedEOI:
            platform.apicEOI(vector: UInt8(truncatingIfNeeded: try qualification(hw)))
            return .resume
        case .eptMisconfiguration:
            return .stop(.eptMisconfiguration(guestPhysical: try hw.read(VMCSFields.ReadOnly64.guestPhysicalAddress),
                                              rip: try hw.read(VMCSFields.GuestNatural.rip)))
        default:
            if reason.isVMXInstruction || reason == .getsec || reason == .mwait || reason == .monitor
                || reason == .rdtscp || reason == .invpcid {
                // The guest sees a CPU without these: #UD, RIP left at the instruction.
                return raise(.exception(.invalidOpcode))
            }
            return .stop(.unhandled(reason: reason, qualification: try qualification(hw),
                                    rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
    }

    // MARK: - Entry preparation

    /// Timers, then event injection: a re-injected event first, else the
    /// queue's plan; the platform's interrupt controller feeds the queue when
    /// the guest can take its interrupt, else opens an interrupt window.
    mutating func prepareEntry<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) {
        // The platform's timer (in the guest's TSC): once its deadline has
        // passed, let its time run; remember the next one in host TSC.
        platformDeadline = platform.nextDeadline.map { $0 &- tscOffset }
        if let due = platformDeadline, hw.readTSC() >= due {
            platform.advance(toTSC: guestTSC(hw))
            platformDeadline = platform.nextDeadline.map { $0 &- tscOffset }
        }
        // With virtual-interrupt delivery the CPU delivers the platform's interrupts.
        if apicVirtualized { try storeVirtualAPIC(hw, &platform) }
        let platformInterrupt = !apicVirtualized && platform.interruptPending
        // The common case, nothing to deliver and no window open: nothing to write.
        let windows = PrimaryProcessorBasedControls.interruptWindowExiting.rawValue
            | PrimaryProcessorBasedControls.nmiWindowExiting.rawValue
        if timerPeriod == 0 && platformDeadline == nil && !platformInterrupt && !preemptionTimerOn && reinjection == nil
            && events.isEmpty && primaryControls.rawValue & windows == 0 { return }
        var deadline = platformDeadline
        if timerPeriod != 0 {
            let now = hw.readTSC()
            if now >= timerDeadline {
                if !events.holdsExternalInterrupt(timerVector) { _ = queue(.externalInterrupt(timerVector)) }
                timerDeadline = max(timerDeadline &+ timerPeriod, now &+ 1)
            }
            deadline = min(deadline ?? timerDeadline, timerDeadline)
        }
        try armPreemptionTimer(hw, until: deadline)
        var platformWindow = false
        if platformInterrupt && reinjection == nil && !events.holdsExternalInterrupt {
            let guest = GuestEventContext(rflags: try hw.read(VMCSFields.GuestNatural.rflags),
                                          cr0: try hw.read(VMCSFields.GuestNatural.cr0),
                                          interruptibility: try hw.read(VMCSFields.Guest32.interruptibilityState))
            if guest.acceptsExternalInterrupt, let vector = platform.acknowledgeInterrupt() {
                _ = queue(.externalInterrupt(vector))
            } else {
                platformWindow = true
            }
        }
        var injection = reinjection
        reinjection = nil
        var interruptWindow = false
        var nmiWindow = false
        if injection == nil && !events.isEmpty {
            // The real CR0: PE is the guest's, and a PE flip that did not exit
            // leaves the read shadow stale.
            let guest = GuestEventContext(rflags: try hw.read(VMCSFields.GuestNatural.rflags),
                                          cr0: try hw.read(VMCSFields.GuestNatural.cr0),
                                          interruptibility: try hw.read(VMCSFields.Guest32.interruptibilityState))
            let plan = events.plan(guest: guest)
            injection = plan.injection
            // SDM 27.2.1.1: NMI-window exiting only with virtual NMIs.
            let nmiWindowUsable = features.virtualNMIs && capabilities.primary.allows(.nmiWindowExiting)
            interruptWindow = plan.interruptWindow || (plan.nmiWindow && !nmiWindowUsable)
            nmiWindow = plan.nmiWindow && nmiWindowUsable
        } else if injection != nil {
            interruptWindow = !events.isEmpty
        }
        if let event = injection {
            // SDM 27.6 "Event Injection".
            try hw.write(VMCSFields.Control32.entryInterruptionInformation, event.entryInfo.raw)
            if let code = event.errorCode { try hw.write(VMCSFields.Control32.entryExceptionErrorCode, code) }
            if let length = event.instructionLength { try hw.write(VMCSFields.Control32.entryInstructionLength, length) }
            // A #PF the vCPU raised carries its linear address in CR2, which VM entry does not load.
            if event.entryInfo.vector == ExceptionVector.pageFault.rawValue, let address = faultAddress {
                hw.writeCR2(address)
            }
            faultAddress = nil
            if try hw.read(VMCSFields.Guest32.activityState) != 0 { try hw.write(VMCSFields.Guest32.activityState, 0) }
        }
        var primary = primaryControls
        if interruptWindow || platformWindow { primary.insert(.interruptWindowExiting) } else { primary.remove(.interruptWindowExiting) }
        if nmiWindow { primary.insert(.nmiWindowExiting) } else { primary.remove(.nmiWindowExiting) }
        if primary != primaryControls {
            primaryControls = primary
            try hw.write(VMCSFields.Control32.primaryProcessorBasedControls, primary.rawValue)
        }
    }

    /// The VMX-preemption timer runs while a deadline is set, counting TSC
    /// ticks >> the CPU's shift (SDM 26.5.1 "VMX-Preemption Timer"); it exits
    /// at 0, and the next entry sees the deadline passed. The deadline goes
    /// to the fast path's block, from which the assembly writes the timer's
    /// value just before each entry (ARM_PREEMPTION in Boot/vmx.asm): the
    /// timer stands still in root mode. Rounded up to the timer's unit, it
    /// never ends before the deadline.
    @inline(__always)  // the common case, a running timer's new deadline, without a call
    mutating func armPreemptionTimer<H: VMXHardware>(_ hw: H, until deadline: UInt64?) throws(VMXError) {
        if let deadline, preemptionTimerOn, deadline != 0, deadline < UInt64.max - 0xFFFF_FFFF {
            fastPath.timerDeadline = deadline &+ timerUnitLessOne
            return
        }
        try switchPreemptionTimer(hw, until: deadline)
    }

    /// What rounds a deadline up to the timer's unit (TSC >> shift).
    @inline(__always)
    var timerUnitLessOne: UInt64 { (1 << UInt64(fastPath.timerShift)) - 1 }

    /// `armPreemptionTimer` when the timer goes on or off (the pin-based
    /// control) or the deadline is at an end of the TSC's range.
    mutating func switchPreemptionTimer<H: VMXHardware>(_ hw: H, until deadline: UInt64?) throws(VMXError) {
        guard features.preemptionTimer else { return }
        if let deadline {
            let (rounded, overflow) = deadline.addingReportingOverflow(timerUnitLessOne)
            fastPath.timerDeadline = overflow ? UInt64.max : max(rounded, 1)
        } else {
            fastPath.timerDeadline = 0
        }
        let on = deadline != nil
        guard on != preemptionTimerOn else { return }
        preemptionTimerOn = on
        var pin = PinBasedControls(rawValue: UInt32(try hw.read(VMCSFields.Control32.pinBasedControls)))
        if on { pin.insert(.activatePreemptionTimer) } else { pin.remove(.activatePreemptionTimer) }
        try hw.write(VMCSFields.Control32.pinBasedControls, pin.rawValue)
    }

    /// SDM 28.2.4 "Information for VM Exits During Event Delivery": an event
    /// the exit interrupted is delivered again at the next entry.
    mutating func noteInterruptedEvent<H: VMXHardware>(_ hw: H) throws(VMXError) {
        let info = IDTVectoringInfo(raw: try hw.read(VMCSFields.ReadOnly32.idtVectoringInformation))
        guard info.isValid else { return }
        let code = info.hasErrorCode ? try hw.read(VMCSFields.ReadOnly32.idtVectoringErrorCode) : 0
        let length = try hw.read(VMCSFields.ReadOnly32.exitInstructionLength)
        reinjection = info.reinjection(errorCode: code, instructionLength: length)
    }

    // MARK: - Helpers

    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func qualification<H: VMXHardware>(_ hw: H) throws(VMXError) -> UInt64 {
        try hw.read(VMCSFields.ReadOnlyNatural.exitQualification)
    }

    /// RIP past the exiting instruction, and the STI / MOV SS blocking it
    /// carried cleared, as completing the instruction would.
    @inline(__always)  // most handlers end here: one call fewer per exit
    mutating func advance<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        try advance(hw, by: UInt64(try hw.read(VMCSFields.ReadOnly32.exitInstructionLength)))
    }

    /// `advance` by an instruction length the vCPU decoded itself (exits
    /// without a valid VM-exit instruction length, e.g. EPT violations).
    mutating func advance<H: VMXHardware>(_ hw: H, by length: UInt64) throws(VMXError) -> ExitAction {
        let rip = try hw.read(VMCSFields.GuestNatural.rip)
        try hw.write(VMCSFields.GuestNatural.rip, rip &+ UInt64(length))
        let state = try hw.read(VMCSFields.Guest32.interruptibilityState)
        if state & 0x3 != 0 { try hw.write(VMCSFields.Guest32.interruptibilityState, state & ~0x3) }
        // With RFLAGS.TF the completed instruction ends in a single-step #DB
        // (unless DEBUGCTL.BTF asks for branches only): VM entry delivers the
        // pending BS. SDM 18.3.1.4 "Single-Step Exception Condition", 27.3.1.5.
        if try hw.read(VMCSFields.GuestNatural.rflags) & RFLAGS.tf.rawValue != 0,
           try hw.read(VMCSFields.Guest64.ia32DebugCtl) & DebugCtl.btf.rawValue == 0 {
            let pending = try hw.read(VMCSFields.GuestNatural.pendingDebugExceptions)
            try hw.write(VMCSFields.GuestNatural.pendingDebugExceptions, pending | PendingDebugExceptions.bs)
        }
        return .resume
    }

    /// Queues an exception for the guest; the faulting instruction is not completed.
    mutating func raise(_ event: PendingEvent) -> ExitAction {
        _ = queue(event)
        return .resume
    }

    /// A guest GPR by x86 number; RSP lives in the VMCS.
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func readRegister<H: VMXHardware>(_ hw: H, _ number: Int, width: OperandWidth = .qword) throws(VMXError) -> UInt64 {
        if GeneralRegisters.isStackPointer(number, width: width) {
            return GeneralRegisters.extract(try hw.read(VMCSFields.GuestNatural.rsp), width: width)
        }
        // Whole registers (MOV to CR) skip the sub-register decoding.
        if width == .qword { return registers[number] ?? 0 }
        return registers.read(number, width: width) ?? 0
    }

    mutating func writeRegister<H: VMXHardware>(_ hw: H, _ number: Int, _ value: UInt64, width: OperandWidth = .qword) throws(VMXError) {
        if GeneralRegisters.isStackPointer(number, width: width) {
            let old = try hw.read(VMCSFields.GuestNatural.rsp)
            try hw.write(VMCSFields.GuestNatural.rsp, GeneralRegisters.merge(value, into: old, width: width))
            return
        }
        _ = registers.write(number, value, width: width)
    }

    /// The guest's current privilege level: SS.DPL (SDM 25.4.1).
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func currentPrivilegeLevel<H: VMXHardware>(_ hw: H) throws(VMXError) -> UInt32 {
        (try hw.read(VMCSFields.Guest32.ssAccessRights) >> 5) & 3
    }

    /// The guest's paging registers, for walking its page tables.
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func pagingState<H: VMXHardware>(_ hw: H) throws(VMXError) -> GuestPagingState {
        var state = GuestPagingState(cr0: try hw.read(VMCSFields.GuestNatural.cr0), cr3: try hw.read(VMCSFields.GuestNatural.cr3),
                                     cr4: try hw.read(VMCSFields.GuestNatural.cr4), efer: try hw.read(VMCSFields.Guest64.ia32EFER),
                                     physicalAddressBits: features.physicalAddressBits,
                                     supports1GiBPages: features.supports1GiBPages)
        // PAE paging walks from the PDPTE registers, which VM entry loads from the VMCS.
        if state.mode == .pae {
            state.paePDPTEs = (try hw.read(VMCSFields.Guest64.pdpte0), try hw.read(VMCSFields.Guest64.pdpte1),
                               try hw.read(VMCSFields.Guest64.pdpte2), try hw.read(VMCSFields.Guest64.pdpte3))
        }
        return state
    }

    /// The guest-physical address of a guest linear address, or nil.
    func translate(_ linear: UInt64, write: Bool, paging: GuestPagingState) -> UInt64? {
        let access = GuestAccess(write ? .write : .read, userMode: false)
        do { return try paging.translate(linear, access: access, memory: ram).guestPhysical } catch { return nil }
    }
}

extension ExitReason {
    /// Exits that can happen while an event is delivered through the IDT, so
    /// that the IDT-vectoring information may be valid: a fault during
    /// delivery (exception bitmap), a task gate, an APIC access, an EPT
    /// violation or misconfiguration, a full PML log, an SPP event. Never an
    /// exit caused by an instruction, nor a triple fault. SDM 28.2.4
    /// "Information for VM Exits During Event Delivery".
    public var canInterruptEventDelivery: Bool {
        switch self {
        case .exceptionOrNMI, .taskSwitch, .apicAccess, .eptViolation, .eptMisconfiguration,
             .pageModificationLogFull, .sppRelatedEvent:
            return true
        default:
            return false
        }
    }

    /// The VMX instructions a guest may try (VMCALL is the hypercall, not here).
    /// SDM 26.1.3 "Instructions That Cause VM Exits Unconditionally".
    var isVMXInstruction: Bool {
        switch self {
        case .vmclear, .vmlaunch, .vmptrld, .vmptrst, .vmread, .vmresume, .vmwrite, .vmxoff, .vmxon,
             .invept, .invvpid, .vmfunc:
            return true
        default:
            return false
        }
    }
}
