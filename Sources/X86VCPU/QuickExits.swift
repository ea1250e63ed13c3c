// I/O, MSR and preemption-timer exits handled from inside the exit
// trampoline (Boot/vmx.asm, `vmx_exit_entry`): the guest's registers are
// stored, but `vmx_run` has not returned, so a port or MSR access costs its
// handler and not the run loop, and a timer's interrupt goes into the
// virtual-APIC page without the APIC model's full sync.
// The I/O and MSR handlers are the run loop's own. What the quick path
// leaves out is what would do nothing at such an exit: the loop's checks
// (stop, NMIs), the entry preparation (timers, event injection, windows)
// and the exit's timing.
// Whenever one of those has something to do, the exit goes back to the run
// loop, already handled (`QuickExit`).

import X86Arch
import VMX

/// How a quick exit ended; the raw value is what the assembly reads and
/// leaves in `ExitFastPath.quickState` for `VCPU.run`.
public enum QuickExit: UInt32, Sendable {
    /// Not handled and nothing changed: the run loop handles the exit.
    case declined = 0
    /// Done but for RIP: the assembly advances it and resumes the guest
    /// (or, when it cannot, `VCPU.run` advances it).
    case complete = 1
    /// Done but for RIP; then the run loop goes on with `quickAction`.
    case completeThenLoop = 2
    /// Handled, RIP as it must stay (a fault was queued, or the vCPU failed);
    /// the run loop goes on with `quickAction`.
    case handled = 3
    /// Done, RIP as it is (a preemption-timer exit): the assembly resumes the guest.
    case resumed = 4
}

extension VCPU {
    /// Handles an I/O (not string), RDMSR or WRMSR exit for the trampoline,
    /// with `platform` the one `run` entered the guest with.
    @inline(__always)  // into the trampoline's Swift half: one call fewer
    public mutating func quickExit<H: VMXHardware, P: GuestPlatform>(_ reason: UInt32, _ hw: H,
                                                                     _ platform: inout P) -> QuickExit {
        if apicVirtualized { platform.loadAPIC(from: apicPage) }   // as the run loop after every exit
        let outcome = ioOrMSRExit(reason, hw, &platform)
        guard outcome == .complete else { return outcome }
        do throws(VMXError) {
            if try quickSettled(hw, &platform) { return .complete }
        } catch {
            quickAction = .stop(.instructionFailure(error))
            return .handled
        }
        quickAction = .resume
        return .completeThenLoop
    }

    /// A preemption-timer exit: the platform's timers post what they fire
    /// into the virtual-APIC page, RVI rises to it as posted-interrupt
    /// processing raises it (SDM 30.6: RVI = max(RVI, the vector)), and the
    /// preemption timer counts to the next deadline. The VM entry's
    /// evaluation of pending virtual interrupts (SDM 30.2.1) delivers it.
    /// Only with virtual-interrupt delivery (the trampoline's other handler),
    /// and not on a vCPU a SIPI started, whose SMI blocking the run loop
    /// clears after every exit (the VM entry would fail with it).
    @inline(__always)  // into the trampoline's Swift half: one call fewer
    public mutating func quickTimerExit<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) -> QuickExit {
        guard apicVirtualized, !startedBySIPI else { return .declined }
        platform.loadAPIC(from: apicPage)   // as the run loop after every exit
        guard let posted = platform.postTimers(toTSC: guestTSC(hw), into: apicPage) else { return .declined }
        do throws(VMXError) {
            let vector = posted.highestVector
            if vector != 0 {
                let status = try hw.read(VMCSFields.Guest16.interruptStatus)
                if UInt8(truncatingIfNeeded: status) < vector {
                    try hw.write(VMCSFields.Guest16.interruptStatus, status & 0xFF00 | UInt16(vector))
                }
            }
            platformDeadline = platform.nextDeadline.map { $0 &- tscOffset }
            if platformDeadline == nil && preemptionTimerOn {
                // The timer stays on with the longest wait, for the run loop
                // to turn off: one VMWRITE, not the pin controls' VMREAD and VMWRITE.
                fastPath.timerDeadline = 0
                try hw.write(VMCSFields.Guest32.preemptionTimerValue, UInt32.max)
            } else {
                try armPreemptionTimer(hw, until: platformDeadline)
            }
            if try quickSettled(hw, &platform, deadlineArmed: true) { return .resumed }
        } catch {
            quickAction = .stop(.instructionFailure(error))
            return .handled
        }
        quickAction = .resume
        return .handled
    }

    /// An IN, OUT, RDMSR or WRMSR exit, for the trampoline or the run loop:
    /// `.complete` when only RIP is left to do; never `.handled` unless it
    /// queued a fault or failed, nor `.declined` unless it changed nothing.
    @inline(__always)
    mutating func ioOrMSRExit<H: VMXHardware, P: GuestPlatform>(_ reason: UInt32, _ hw: H,
                                                               _ platform: inout P) -> QuickExit {
        do throws(VMXError) {
            let done: Bool
            // Tests in this order, I/O first: a switch let the compiler pick it.
            if reason == UInt32(ExitReason.ioInstruction.rawValue) {
                let q = IOInstructionQualification(raw: try qualification(hw))
                guard !q.isString, let width = q.width else { return .declined }
                if let stop = portAccess(q, width, &platform) {
                    quickAction = .stop(stop)
                    return .completeThenLoop
                }
                done = true
            } else if reason == UInt32(ExitReason.rdmsr.rawValue) {
                done = try rdmsr(hw, &platform)
            } else if reason == UInt32(ExitReason.wrmsr.rawValue) {
                done = try wrmsr(hw, &platform)
            } else {
                return .declined
            }
            if done { return .complete }
            quickAction = .resume
            return .handled
        } catch {
            quickAction = .stop(.instructionFailure(error))
            return .handled
        }
    }

    /// The run loop's I/O and MSR exits: the same handlers as the trampoline's.
    @inline(never)  // one copy of them beside the trampoline's
    mutating func handleIOOrMSR<H: VMXHardware, P: GuestPlatform>(_ reason: ExitReason, _ hw: H,
                                                                 _ platform: inout P) throws(VMXError) -> ExitAction {
        try finishQuickExit(ioOrMSRExit(UInt32(reason.rawValue), hw, &platform), hw, &platform)
    }

    /// The rest of an I/O or MSR exit in the run loop, after `quickExit`
    /// took it there or the trampoline did; what it declined (string I/O, a
    /// size the SDM does not define) goes to the I/O handler.
    mutating func finishQuickExit<H: VMXHardware, P: GuestPlatform>(_ outcome: QuickExit, _ hw: H,
                                                                    _ platform: inout P) throws(VMXError) -> ExitAction {
        switch outcome {
        case .declined: return try handleIO(hw, &platform)
        case .complete: return try advance(hw)
        case .completeThenLoop:
            _ = try advance(hw)
            return quickAction
        case .handled: return quickAction
        case .resumed: return .resume   // the assembly resumes: never here
        }
    }

    /// Whether the run loop would find nothing to do before the next entry:
    /// no NMI, no stop, no event queued or to deliver again, and the
    /// platform's interrupts handed to the CPU as `prepareEntry` does (the
    /// virtual-APIC page) or none pending. A deadline the exit moved
    /// (IA32_TSC_DEADLINE, the APIC's initial count) is armed here, as
    /// `prepareEntry` would; one already past ends the guest's next run at
    /// once, in a preemption-timer exit that fires it. (`deadlineArmed`: the
    /// caller has just armed the timer.)
    @inline(__always)
    mutating func quickSettled<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P,
                                                                deadlineArmed: Bool = false) throws(VMXError) -> Bool {
        if hw.takeHostNMI() || platform.takeNMI() {
            _ = queue(.nmi)
            return false
        }
        guard events.isEmpty, reinjection == nil, !platform.stopRequested else { return false }
        if !deadlineArmed {
            let deadline = platform.nextDeadline.map { $0 &- tscOffset }
            if deadline != platformDeadline {
                platformDeadline = deadline
                try armPreemptionTimer(hw, until: deadline)
            }
        }
        if apicVirtualized {
            try storeVirtualAPIC(hw, &platform)
            return true
        }
        return !platform.interruptPending
    }

    /// VM entry. The trampoline's quick handler may use this vCPU and
    /// `platform` until the exit comes back here: their addresses reach it
    /// through the fast path's block, so the compiler treats both as changed.
    mutating func enter<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) {
        let fast = fastPath, resume = launched
        try withUnsafeMutablePointer(to: &platform) { (p) throws(VMXError) in
            try withUnsafeMutablePointer(to: &self) { (v) throws(VMXError) in
                fast.setContext(vcpu: UnsafeMutableRawPointer(v), platform: UnsafeMutableRawPointer(p))
                try hw.enterGuest(&v.pointee.registers, fastPath: fast, resume: resume)
            }
        }
        fast.clearContext()
    }
}
