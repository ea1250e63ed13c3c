// The run loop and one handler per exit reason. Handlers advance RIP by the
// VM-exit instruction-length field, never by a guessed length.
// SDM 26 "VMX Non-Root Operation", 28 "VM Exits".

import X86Arch
import VMX

/// What a handler decided.
enum ExitAction {
    case resume
    case stop(VCPUExit)
}

/// The hypercall ABI (VMCALL; RAX = number, RBX and RCX the arguments, result in RAX).
public enum Hypercall: UInt64, Sendable {
    /// Returns 0: the cheapest round trip, for measuring.
    case null = 0
    /// RBX = guest linear address, RCX = length (at most 4096): console output.
    case consoleWrite = 1
    /// RBX = status: powers the machine off.
    case powerOff = 2
    /// Returns the guest's TSC.
    case readTSC = 3
    /// RBX = vector (32 ... 255), RCX = period in TSC ticks (0 stops): a periodic interrupt.
    case armTimer = 4

    /// RAX for a number no hypercall has.
    public static let unknown = UInt64.max
    /// RAX for a bad argument (-2).
    public static let badArgument = UInt64.max - 1
}

extension VCPU {
    /// Runs the guest until something needs the kernel: every exit the vCPU can
    /// handle is handled here, I/O through `platform`.
    public mutating func run<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) -> VCPUExit {
        // The policy is public and may have changed since the last run.
        fastPath.invalidateCPUID()
        defer {
            let fast = fastPath.takeCounts()
            statistics.recordFast(.vmcall, count: fast.vmcall)
            statistics.recordFast(.cpuid, count: fast.cpuid)
        }
        while true {
            do {
                try prepareEntry(hw)
                if exitUnrecorded { statistics.record(lastExitReason, cycles: hw.readTSC() &- lastExitTSC) }
                exitUnrecorded = false
                // Not while a timer is armed: its deadline is checked, and the
                // preemption timer reloaded, only on this path. Not with events
                // queued, so their windows are planned here.
                fastPath.enabled = timerPeriod == 0 && events.isEmpty ? ExitFastPath.allKinds : 0
                try hw.enterGuest(&registers, fastPath: fastPath, resume: launched)
                launched = true
                lastExitTSC = hw.readTSC()
                let field = try hw.readExitReason()
                lastExitReason = field.basicReason
                if field.isEntryFailure {
                    statistics.record(lastExitReason, cycles: 0)
                    return .entryFailure(field, qualification: try hw.read(VMCSFields.ReadOnlyNatural.exitQualification))
                }
                exitUnrecorded = true
                if field.basicReason.canInterruptEventDelivery { try noteInterruptedEvent(hw) }
                if case .stop(let exit) = try handleExit(field.basicReason, hw, &platform) {
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
        case .externalInterrupt: return try handleExternalInterrupt(hw)
        case .tripleFault: return .stop(.tripleFault(rip: try hw.read(VMCSFields.GuestNatural.rip)))
        case .initSignal: return try handleINIT(hw)
        case .startupIPI: return try handleSIPI(hw)
        case .interruptWindow, .nmiWindow, .preemptionTimerExpired: return .resume
        case .cpuid: return try handleCPUID(hw)
        case .hlt: return try handleHLT(hw)
        case .invd, .wbinvd, .pause: return try advance(hw)
        case .vmcall: return try handleVMCALL(hw, &platform)
        case .controlRegisterAccess: return try handleCRAccess(hw)
        case .ioInstruction: return try handleIO(hw, &platform)
        case .rdmsr: return try handleRDMSR(hw)
        case .wrmsr: return try handleWRMSR(hw)
        case .xsetbv: return try handleXSETBV(hw)
        case .eptViolation:
            return .stop(.eptViolation(guestPhysical: try hw.read(VMCSFields.ReadOnly64.guestPhysicalAddress),
                                       qualification: EPTViolationQualification(raw: try qualification(hw)),
                                       rip: try hw.read(VMCSFields.GuestNatural.rip)))
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

    /// Timer, then event injection: a re-injected event first, else the queue's plan.
    mutating func prepareEntry<H: VMXHardware>(_ hw: H) throws(VMXError) {
        // The common case, nothing to deliver and no window open: nothing to write.
        let windows = PrimaryProcessorBasedControls.interruptWindowExiting.rawValue
            | PrimaryProcessorBasedControls.nmiWindowExiting.rawValue
        if timerPeriod == 0 && reinjection == nil && events.isEmpty && primaryControls.rawValue & windows == 0 { return }
        if timerPeriod != 0 {
            let now = hw.readTSC()
            if now >= timerDeadline {
                _ = queue(.externalInterrupt(timerVector))
                timerDeadline = max(timerDeadline &+ timerPeriod, now &+ 1)
            }
            if features.preemptionTimer {
                let ticks = (timerDeadline - now) >> UInt64(capabilities.misc.preemptionTimerTSCShift)
                try hw.write(VMCSFields.Guest32.preemptionTimerValue, UInt32(clamping: ticks))
            }
        }
        var injection = reinjection
        reinjection = nil
        var interruptWindow = false
        var nmiWindow = false
        if injection == nil && !events.isEmpty {
            let guest = GuestEventContext(rflags: try hw.read(VMCSFields.GuestNatural.rflags),
                                          cr0: try hw.read(VMCSFields.ControlNatural.cr0ReadShadow),
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
            if try hw.read(VMCSFields.Guest32.activityState) != 0 { try hw.write(VMCSFields.Guest32.activityState, 0) }
        }
        var primary = primaryControls
        if interruptWindow { primary.insert(.interruptWindowExiting) } else { primary.remove(.interruptWindowExiting) }
        if nmiWindow { primary.insert(.nmiWindowExiting) } else { primary.remove(.nmiWindowExiting) }
        if primary != primaryControls {
            primaryControls = primary
            try hw.write(VMCSFields.Control32.primaryProcessorBasedControls, primary.rawValue)
        }
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
    mutating func advance<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let length = try hw.read(VMCSFields.ReadOnly32.exitInstructionLength)
        let rip = try hw.read(VMCSFields.GuestNatural.rip)
        try hw.write(VMCSFields.GuestNatural.rip, rip &+ UInt64(length))
        let state = try hw.read(VMCSFields.Guest32.interruptibilityState)
        if state & 0x3 != 0 { try hw.write(VMCSFields.Guest32.interruptibilityState, state & ~0x3) }
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
        GuestPagingState(cr0: try hw.read(VMCSFields.GuestNatural.cr0), cr3: try hw.read(VMCSFields.GuestNatural.cr3),
                         cr4: try hw.read(VMCSFields.GuestNatural.cr4), efer: try hw.read(VMCSFields.Guest64.ia32EFER),
                         physicalAddressBits: 52)
    }

    /// The guest-physical address of a guest linear address, or nil.
    func translate(_ linear: UInt64, write: Bool, paging: GuestPagingState) -> UInt64? {
        let access = GuestAccess(write ? .write : .read, userMode: false)
        do { return try paging.translate(linear, access: access, memory: ram).guestPhysical } catch { return nil }
    }

    // MARK: - Handlers

    /// Exceptions are not intercepted (empty exception bitmap), so this is an
    /// NMI that arrived while the guest ran: it belongs to the guest.
    mutating func handleExceptionOrNMI<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let info = VMExitInterruptionInfo(raw: try hw.read(VMCSFields.ReadOnly32.exitInterruptionInformation))
        if info.type == .nmi { _ = queue(.nmi); return .resume }
        let code: UInt32? = info.hasErrorCode ? try hw.read(VMCSFields.ReadOnly32.exitInterruptionErrorCode) : nil
        _ = queue(PendingEvent(vector: info.vector, type: info.type, errorCode: code))
        return .resume
    }

    /// "Acknowledge interrupt on exit" leaves the vector in the exit
    /// interruption information (SDM 28.2.2); the guest gets it when it can.
    mutating func handleExternalInterrupt<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        guard reflectsExternalInterrupts else { return .resume }
        let info = VMExitInterruptionInfo(raw: try hw.read(VMCSFields.ReadOnly32.exitInterruptionInformation))
        if info.isValid { _ = queue(.externalInterrupt(info.vector)) }
        return .resume
    }

    mutating func handleCPUID<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let leaf = UInt32(truncatingIfNeeded: registers.rax)
        let subleaf = UInt32(truncatingIfNeeded: registers.rcx)
        let v: CPUIDResult
        if let known = fastPath.cached(leaf: leaf, subleaf: subleaf) {
            v = known
        } else {
            let cr4 = cr4View.guestVisibleValue(real: try hw.read(VMCSFields.GuestNatural.cr4),
                                                readShadow: try hw.read(VMCSFields.ControlNatural.cr4ReadShadow))
            let guest = CPUIDGuestState(cr4: cr4, xcr0: xcr0, xss: xss, apicGloballyEnabled: apicBase & (1 << 11) != 0)
            let host = hw.cpuid(leaf: leaf, subleaf: subleaf)
            v = cpuidPolicy.answerInPlace(leaf: leaf, subleaf: subleaf, host: host, guest: guest)
            fastPath.store(leaf: leaf, subleaf: subleaf, v)
        }
        // CPUID writes the 32-bit registers, which zero-extends them.
        registers.rax = UInt64(v.eax); registers.rbx = UInt64(v.ebx)
        registers.rcx = UInt64(v.ecx); registers.rdx = UInt64(v.edx)
        return try advance(hw)
    }

    mutating func handleHLT<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        _ = try advance(hw)
        let interruptsOn = try hw.read(VMCSFields.GuestNatural.rflags) & (1 << 9) != 0
        if !events.isEmpty { return .resume }
        // With interrupts on, a device interrupt can wake the guest when it owns
        // the interrupt controller: wait in the HLT state for its exit. When the
        // activity state is unsupported, resuming past HLT is a busy wait.
        if interruptsOn && reflectsExternalInterrupts {
            if features.activityHLT { try hw.write(VMCSFields.Guest32.activityState, 1) }
            return .resume
        }
        guard interruptsOn, timerPeriod != 0 else {
            return .stop(.halted(rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
        if features.activityHLT && features.preemptionTimer {
            // SDM 26.5.1: the preemption timer counts down in the HLT state too.
            try hw.write(VMCSFields.Guest32.activityState, 1)
        } else {
            while hw.readTSC() < timerDeadline {}
        }
        return .resume
    }

    mutating func handleINIT<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        // One vCPU: INIT leaves it waiting for a SIPI, as on hardware.
        guard capabilities.misc.supportsActivityWaitForSIPI else {
            return .stop(.unhandled(reason: .initSignal, qualification: 0, rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
        try hw.write(VMCSFields.Guest32.activityState, 3)
        return .resume
    }

    mutating func handleSIPI<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        // SDM 28.2.1: the qualification holds the SIPI vector; start at vector:0000.
        let vector = try qualification(hw) & 0xFF
        try hw.write(VMCSFields.Guest16.csSelector, UInt16(vector << 8))
        try hw.write(VMCSFields.GuestNatural.csBase, vector << 12)
        try hw.write(VMCSFields.GuestNatural.rip, 0)
        try hw.write(VMCSFields.Guest32.activityState, 0)
        fastPath.invalidateCPUID()  // a restarted guest sets its state up again
        return .resume
    }

    mutating func handleXSETBV<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        // SDM "XSETBV": #GP(0) at CPL > 0, else the rules of 13.3.
        guard try currentPrivilegeLevel(hw) == 0 else { return raise(XSETBVOutcome.fault) }
        let value = XSETBV.operand(rax: registers.rax, rdx: registers.rdx)
        switch XSETBV.validate(ecx: UInt32(truncatingIfNeeded: registers.rcx), value: value,
                               supported: cpuidPolicy.supportedXCR0) {
        case .valid(let newXCR0):
            // The host's code uses no extended state, so the guest's XCR0 stays loaded.
            hw.writeXCR0(newXCR0)
            xcr0 = newXCR0
            fastPath.invalidateCPUID()  // leaf 0xD sizes follow XCR0
            return try advance(hw)
        case .generalProtection:
            return raise(XSETBVOutcome.fault)
        }
    }

    mutating func handleVMCALL<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        _ = try advance(hw)
        guard try currentPrivilegeLevel(hw) == 0 else { registers.rax = Hypercall.unknown; return .resume }
        switch Hypercall(rawValue: registers.rax) {
        case .null:
            registers.rax = 0
        case .consoleWrite:
            let length = registers.rcx
            guard length <= 4096 else { registers.rax = Hypercall.badArgument; return .resume }
            let paging = try pagingState(hw)
            var done: UInt64 = 0
            while done < length {
                let linear = registers.rbx &+ done
                let chunk = min(length - done, 4096 - (linear & 0xFFF))
                guard let gpa = translate(linear, write: false, paging: paging),
                      let bytes = ram.bytes(at: gpa, count: Int(chunk)) else {
                    registers.rax = Hypercall.badArgument
                    return .resume
                }
                platform.consoleWrite(UnsafeRawBufferPointer(bytes))
                done += chunk
            }
            registers.rax = length
        case .powerOff:
            return .stop(.powerOff(status: UInt8(truncatingIfNeeded: registers.rbx)))
        case .readTSC:
            registers.rax = hw.readTSC() &+ (features.tscOffsetting ? try hw.read(VMCSFields.Control64.tscOffset) : 0)
        case .armTimer:
            guard registers.rbx >= 32, registers.rbx <= 255 else { registers.rax = Hypercall.badArgument; return .resume }
            timerVector = UInt8(registers.rbx)
            timerPeriod = registers.rcx
            timerDeadline = hw.readTSC() &+ registers.rcx
            var pin = PinBasedControls(rawValue: try hw.read(VMCSFields.Control32.pinBasedControls))
            if features.preemptionTimer {
                if timerPeriod != 0 { pin.insert(.activatePreemptionTimer) } else { pin.remove(.activatePreemptionTimer) }
                try hw.write(VMCSFields.Control32.pinBasedControls, pin.rawValue)
            }
            registers.rax = 0
        case nil:
            registers.rax = Hypercall.unknown
        }
        return .resume
    }

    // MARK: Control registers

    mutating func handleCRAccess<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let q = ControlRegisterAccessQualification(raw: try qualification(hw))
        switch q.accessType {
        case .movToCR:
            let value = try readRegister(hw, q.generalRegister)
            switch q.controlRegister {
            case 0: if let fault = try writeGuestCR0(hw, value) { return raise(fault) }
            case 3:
                let old = try hw.read(VMCSFields.GuestNatural.cr3)
                try hw.write(VMCSFields.GuestNatural.cr3, value)
                // SDM 4.4.1 "PDPTE Registers": with PAE paging, MOV to CR3 loads the PDPTEs.
                let paging = try pagingState(hw)
                if paging.cr0 & CR0Bits.pg.rawValue != 0 && paging.cr4 & CR4Bits.pae.rawValue != 0
                    && paging.efer & EFER.lma.rawValue == 0, !(try loadPDPTEs(hw)) {
                    try hw.write(VMCSFields.GuestNatural.cr3, old)
                    return raise(.exception(.generalProtection, errorCode: 0))
                }
            case 4: if let fault = try writeGuestCR4(hw, value) { return raise(fault) }
            case 8:
                guard value <= 0xF else { return raise(.exception(.generalProtection, errorCode: 0)) }
                tpr = value
            default: return raise(.exception(.invalidOpcode))
            }
        case .movFromCR:
            switch q.controlRegister {
            case 3: try writeRegister(hw, q.generalRegister, try hw.read(VMCSFields.GuestNatural.cr3))
            case 8: try writeRegister(hw, q.generalRegister, tpr)
            default: return raise(.exception(.invalidOpcode))
            }
        case .clts:
            if let fault = try writeGuestCR0(hw, try guestCR0(hw) & ~CR0Bits.ts.rawValue) { return raise(fault) }
        case .lmsw:
            // SDM "LMSW": loads PE, MP, EM, TS; cannot clear PE.
            let old = try guestCR0(hw)
            let source = UInt64(q.lmswSourceData) & 0xF
            if let fault = try writeGuestCR0(hw, (old & ~0xE) | source | (old & 1)) { return raise(fault) }
        }
        return try advance(hw)
    }

    /// CR0 as the guest believes it is.
    @inline(__always)  // a call copied the whole vCPU (see readGuestMSR)
    func guestCR0<H: VMXHardware>(_ hw: H) throws(VMXError) -> UInt64 {
        cr0View.guestVisibleValue(real: try hw.read(VMCSFields.GuestNatural.cr0),
                                  readShadow: try hw.read(VMCSFields.ControlNatural.cr0ReadShadow))
    }

    /// MOV to CR0 with the checks of SDM "MOV—Move to/from Control Registers"
    /// and IA-32e mode entry/exit (SDM 10.8.5 "Initializing IA-32e Mode"): paging
    /// turned on with EFER.LME set activates IA-32e mode, so EFER.LMA and the
    /// "IA-32e mode guest" entry control follow. Returns the fault to raise.
    mutating func writeGuestCR0<H: VMXHardware>(_ hw: H, _ value: UInt64) throws(VMXError) -> PendingEvent? {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0)
        let pe = CR0Bits.pe.rawValue, pg = CR0Bits.pg.rawValue
        if value >> 32 != 0 { return gp }
        if value & pg != 0 && value & pe == 0 { return gp }
        if value & CR0Bits.nw.rawValue != 0 && value & CR0Bits.cd.rawValue == 0 { return gp }
        let old = try guestCR0(hw)
        var efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        let cr4 = try hw.read(VMCSFields.GuestNatural.cr4)
        if old & pg == 0 && value & pg != 0 && efer & EFER.lme.rawValue != 0 {
            guard cr4 & CR4Bits.pae.rawValue != 0 else { return gp }
            efer |= EFER.lma.rawValue
            try setIA32eMode(hw, efer: efer, on: true)
        } else if old & pg != 0 && value & pg == 0 && efer & EFER.lma.rawValue != 0 {
            // 64-bit mode (CS.L = 1) cannot turn paging off: only compatibility mode can.
            if try hw.read(VMCSFields.Guest32.csAccessRights) & (1 << 13) != 0 { return gp }
            efer &= ~EFER.lma.rawValue
            try setIA32eMode(hw, efer: efer, on: false)
        }
        // PDPTEs first: a MOV that faults on them leaves CR0 as it was.
        if value & pg != 0 && efer & EFER.lma.rawValue == 0 && cr4 & CR4Bits.pae.rawValue != 0 {
            guard try loadPDPTEs(hw) else { return gp }
        }
        try hw.write(VMCSFields.GuestNatural.cr0, cr0View.realValue(forGuestValue: value))
        try hw.write(VMCSFields.ControlNatural.cr0ReadShadow, cr0View.readShadow(forGuestValue: value))
        return nil
    }

    mutating func setIA32eMode<H: VMXHardware>(_ hw: H, efer: UInt64, on: Bool) throws(VMXError) {
        try hw.write(VMCSFields.Guest64.ia32EFER, efer)
        // Read the control back from the VMCS: VM exits store EFER.LMA into it.
        var entry = VMEntryControls(rawValue: try hw.read(VMCSFields.Control32.entryControls))
        if on { entry.insert(.ia32eModeGuest) } else { entry.remove(.ia32eModeGuest) }
        try hw.write(VMCSFields.Control32.entryControls, entry.rawValue)
    }

    /// PAE paging with EPT: VM entry takes the PDPTEs from the VMCS
    /// (SDM 27.3.2.4 "Loading Page-Directory-Pointer-Table Entries").
    mutating func loadPDPTEs<H: VMXHardware>(_ hw: H) throws(VMXError) -> Bool {
        let table = try hw.read(VMCSFields.GuestNatural.cr3) & 0xFFFF_FFE0
        let fields: [4 of VMCSField64] = [VMCSFields.Guest64.pdpte0, VMCSFields.Guest64.pdpte1,
                                          VMCSFields.Guest64.pdpte2, VMCSFields.Guest64.pdpte3]
        for i in 0..<4 {
            guard let entry = ram.read64(table + UInt64(i) * 8) else { return false }
            try hw.write(fields[i], entry)
        }
        return true
    }

    /// MOV to CR4: bits the CPU cannot have (and VMXE, hidden) raise #GP.
    mutating func writeGuestCR4<H: VMXHardware>(_ hw: H, _ value: UInt64) throws(VMXError) -> PendingEvent? {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0)
        let vmxe = CR4Bits.vmxe.rawValue
        if value & vmxe != 0 || value & ~capabilities.cr4Fixed.fixed1 != 0 { return gp }
        let efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        if efer & EFER.lma.rawValue != 0 && value & CR4Bits.pae.rawValue == 0 { return gp }
        try hw.write(VMCSFields.GuestNatural.cr4, cr4View.realValue(forGuestValue: value))
        try hw.write(VMCSFields.ControlNatural.cr4ReadShadow, cr4View.readShadow(forGuestValue: value))
        fastPath.invalidateCPUID()  // OSXSAVE and OSPKE follow CR4
        return nil
    }

    // MARK: I/O

    mutating func handleIO<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        let q = IOInstructionQualification(raw: try qualification(hw))
        guard let width = q.width else {
            return .stop(.unhandled(reason: .ioInstruction, qualification: q.raw, rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
        if q.isString { return try handleStringIO(hw, &platform, q, width) }
        if q.direction == .in {
            let value = UInt64(platform.portIn(q.port, width: width))
            // IN to EAX zero-extends like any 32-bit write; AL/AX merge.
            _ = registers.write(0, value, width: width)
        } else {
            let value = UInt32(truncatingIfNeeded: registers.rax & width.mask)
            if let stop = platform.portOut(q.port, width: width, value: value) {
                _ = try advance(hw)
                return .stop(stop)
            }
        }
        return try advance(hw)
    }

    /// INS/OUTS, with REP: as many elements as fit in this exit (at most a
    /// page's worth); RIP stays on the instruction while RCX is not exhausted.
    /// SDM "INS/INSB/INSW/INSD", "OUTS/OUTSB/OUTSW/OUTSD", "REP/REPE/REPZ...".
    mutating func handleStringIO<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P,
                                                                   _ q: IOInstructionQualification,
                                                                   _ width: OperandWidth) throws(VMXError) -> ExitAction {
        let csRights = try hw.read(VMCSFields.Guest32.csAccessRights)
        let efer = try hw.read(VMCSFields.Guest64.ia32EFER)
        let addressBytes: Int
        if capabilities.basic.reportsINSOUTSInformation,
           let size = StringIOInstructionInformation(raw: try hw.read(VMCSFields.ReadOnly32.exitInstructionInformation)).addressSize {
            addressBytes = size.bytes
        } else if efer & EFER.lma.rawValue != 0 && csRights & (1 << 13) != 0 {
            addressBytes = 8
        } else {
            addressBytes = csRights & (1 << 14) != 0 ? 4 : 2
        }
        let addressMask: UInt64 = addressBytes == 8 ? UInt64.max : (1 << UInt64(addressBytes * 8)) - 1
        let addressWidth = OperandWidth(bytes: addressBytes) ?? .qword
        // OUTS reads DS:RSI (a segment override is ignored here), INS writes ES:RDI.
        let isIn = q.direction == .in
        let segmentBase = try hw.read(isIn ? VMCSFields.GuestNatural.esBase : VMCSFields.GuestNatural.dsBase)
        let indexRegister = isIn ? 7 : 6
        var index = (registers.read(indexRegister, width: .qword) ?? 0) & addressMask
        var count: UInt64 = q.isRepeated ? registers.rcx & addressMask : 1
        let step = UInt64(width.bytes)
        let down = try hw.read(VMCSFields.GuestNatural.rflags) & (1 << 10) != 0
        let paging = try pagingState(hw)
        var budget = 4096 / width.bytes
        while count > 0 && budget > 0 {
            let linear = segmentBase &+ index
            guard let gpa = translate(linear, write: isIn, paging: paging),
                  let bytes = ram.bytes(at: gpa, count: width.bytes) else {
                return .stop(.badGuestAddress(linear: linear, rip: try hw.read(VMCSFields.GuestNatural.rip)))
            }
            if isIn {
                let value = platform.portIn(q.port, width: width)
                for i in 0..<width.bytes { bytes[i] = UInt8(truncatingIfNeeded: value >> UInt32(8 * i)) }
            } else {
                var value: UInt32 = 0
                for i in 0..<width.bytes { value |= UInt32(bytes[i]) << UInt32(8 * i) }
                if let stop = platform.portOut(q.port, width: width, value: value) { return .stop(stop) }
            }
            index = (down ? index &- step : index &+ step) & addressMask
            count -= 1
            budget -= 1
        }
        _ = registers.write(indexRegister, index, width: addressWidth)
        if q.isRepeated { _ = registers.write(1, count, width: addressWidth) }
        return count == 0 ? try advance(hw) : .resume
    }

    // MARK: MSRs

    mutating func handleRDMSR<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let msr = UInt32(truncatingIfNeeded: registers.rcx)
        guard let value = try readGuestMSR(hw, msr) else { return raise(.exception(.generalProtection, errorCode: 0)) }
        registers.rax = value & 0xFFFF_FFFF
        registers.rdx = value >> 32
        return try advance(hw)
    }

    mutating func handleWRMSR<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let msr = UInt32(truncatingIfNeeded: registers.rcx)
        let value = (registers.rdx & 0xFFFF_FFFF) << 32 | (registers.rax & 0xFFFF_FFFF)
        let mirrored = (xss, apicBase)
        guard try writeGuestMSR(hw, msr, value) else { return raise(.exception(.generalProtection, errorCode: 0)) }
        // Leaf 0xD follows IA32_XSS, leaf 1's APIC bit the APIC base.
        if mirrored != (xss, apicBase) { fastPath.invalidateCPUID() }
        return try advance(hw)
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

extension CPUIDPolicy {
    /// `guestView` for the vCPU's own policy: `mutating` only so the call
    /// borrows it in place; a plain call copied all 324 bytes at every CPUID
    /// exit (a `let` policy and a pointer did not avoid the copy).
    @inline(never)
    mutating func answerInPlace(leaf: UInt32, subleaf: UInt32, host: CPUIDValues, guest: CPUIDGuestState) -> CPUIDValues {
        guestView(leaf: leaf, subleaf: subleaf, host: host, guest: guest)
    }
}
