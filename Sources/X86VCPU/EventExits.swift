// Exits about events and activity: NMIs and external interrupts the guest
// owns, and HLT (INIT and SIPI: MPInitialization.swift).

import X86Arch
import VMX

extension VCPU {
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
    mutating func handleExternalInterrupt<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError)
        -> ExitAction {
        guard reflectsExternalInterrupts else { return .resume }
        let info = VMExitInterruptionInfo(raw: try hw.read(VMCSFields.ReadOnly32.exitInterruptionInformation))
        if info.isValid && !platform.hostInterrupt(info.vector) { _ = queue(.externalInterrupt(info.vector)) }
        return .resume
    }

    mutating func handleHLT<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        mayBeHalted = true
        _ = try advance(hw)
        let interruptsOn = try hw.read(VMCSFields.GuestNatural.rflags) & RFLAGS.interruptEnable.rawValue != 0
        if !events.isEmpty { return .resume }
        // The platform's interrupt controller: a waiting interrupt ends the
        // halt at once; an armed timer ends it at its deadline.
        if interruptsOn && (platform.interruptPending || platform.nextDeadline != nil) {
            if platform.interruptPending { return .resume }
            if features.activityHLT && features.preemptionTimer {
                try hw.write(VMCSFields.Guest32.activityState, ActivityState.hlt.rawValue)
            } else if let deadline = platform.nextDeadline {
                while guestTSC(hw) < deadline {}
            }
            return .resume
        }
        // With interrupts on, a device interrupt can wake the guest when it owns
        // the interrupt controller: wait in the HLT state for its exit. When the
        // activity state is unsupported, resuming past HLT is a busy wait.
        if interruptsOn && reflectsExternalInterrupts {
            if features.activityHLT { try hw.write(VMCSFields.Guest32.activityState, ActivityState.hlt.rawValue) }
            return .resume
        }
        guard interruptsOn, timerPeriod != 0 else {
            return .stop(.halted(rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
        if features.activityHLT && features.preemptionTimer {
            // SDM 26.5.1: the preemption timer counts down in the HLT state too.
            try hw.write(VMCSFields.Guest32.activityState, ActivityState.hlt.rawValue)
        } else {
            while hw.readTSC() < timerDeadline {}
        }
        return .resume
    }
}
