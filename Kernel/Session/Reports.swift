// What the kernel prints when the guest stops or the hypervisor fails: the
// reason, the guest's state, the VM-entry rule broken, the VMCS, the exit counts.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// One line (or a few) saying why the guest stopped; the power-off status.
func reportGuestExit(_ exit: VCPUExit, _ hw: Hardware, _ caps: VMXCapabilities) -> UInt8 {
    switch exit {
    case .powerOff(let status):
        logInfo("guest powered off with status \(status)")
        return status
    case .halted(let rip):
        logError("guest stopped: HLT at RIP \(hex: rip) with nothing to wake it (interrupts off, no timer)")
    case .eptViolation(let gpa, let q, let rip):
        let access: StaticString = q.isWrite ? "write" : q.isInstructionFetch ? "instruction fetch" : "read"
        logError("guest stopped: EPT violation at GPA \(hex: gpa) (\(access), outside guest RAM) at RIP \(hex: rip)")
    case .eptMisconfiguration(let gpa, let rip):
        logError("guest stopped: EPT misconfiguration at GPA \(hex: gpa), RIP \(hex: rip)")
    case .tripleFault(let rip):
        logError("guest stopped: triple fault at RIP \(hex: rip)")
        reportGuestState(hw)
    case .entryFailure(let field, let qualification):
        logError("VM entry failed: exit reason \(field.basicReason.rawValue) (\(field.basicReason.name)), qualification \(hex: qualification)")
        reportVMCSFailure(hw, caps)
        return ExitStatus.hypervisorFailure.rawValue
    case .instructionFailure(let error):
        reportVMXError("VM entry", error)
        reportVMCSFailure(hw, caps)
        return ExitStatus.hypervisorFailure.rawValue
    case .unhandled(let reason, let qualification, let rip):
        logError("guest stopped: unhandled exit reason \(reason.rawValue) (\(reason.name)), qualification \(hex: qualification), RIP \(hex: rip)")
        reportGuestState(hw)
    case .badGuestAddress(let linear, let rip):
        logError("guest stopped: guest address \(hex: linear) does not translate to guest RAM, RIP \(hex: rip)")
    case .stopRequested:
        logInfo("guest stopped by another CPU")
    }
    return ExitStatus.guestStopped.rawValue
}

func reportVMXError(_ what: StaticString, _ error: VMXError) {
    switch error {
    case .vmFailValid(let number):
        logError("\(what) failed: VMfailValid, VM-instruction error \(number.rawValue): \(number.description)")
    case .controlsUnsupported(let missing):
        logError("\(what) failed: the CPU lacks required \(missing.kind.name) (bits \(hex: missing.missing))")
    case .fixedBitsViolated(let register, let bits):
        logError("\(what) failed: \(register == .cr0 ? "CR0" : "CR4") bits \(hex: bits) violate the VMX fixed bits")
    default:
        logError("\(what) failed: \(error.summary)")
    }
}

/// Where the guest was: the library's summary of the VMCS guest state.
func reportGuestState(_ hw: Hardware) {
    let g = GuestStateSummary.read(from: hw)
    logError("  guest RIP=\(hex: g.rip) RSP=\(hex: g.rsp) RFLAGS=\(hex: g.rflags)")
    logError("  guest CR0=\(hex: g.cr0) CR3=\(hex: g.cr3) CR4=\(hex: g.cr4) EFER=\(hex: g.efer)")
    logError("  guest CS=\(hex: g.cs.selector) base \(hex: g.cs.base) rights \(hex: g.cs.accessRights.rawValue); SS=\(hex: g.ss.selector) rights \(hex: g.ss.accessRights.rawValue)")
    logError("  guest interruptibility \(hex: g.interruptibility), activity \(g.activityState)")
    if g.failedReads > 0 { logError("  (\(g.failedReads) guest-state fields could not be read)") }
}

func reportStatistics(_ stats: ExitStatistics) {
    logInfo("exit statistics: \(stats.totalExits) exits")
    stats.forEach { reason, count, fast, cycles in
        if fast == 0 {
            logInfo("  \(reason.rawValue) \(reason.name): \(count) exits, \(cycles) cycles, \(cycles / max(count, 1)) per exit")
        } else {
            // The assembly fast path counts its exits but does not time them.
            let slow = count - fast
            logInfo("  \(reason.rawValue) \(reason.name): \(count) exits (\(fast) fast path), \(cycles) cycles, \(cycles / max(slow, 1)) per other exit")
        }
    }
}

/// A hypervisor failure: the SDM rule the VMCS breaks, then the whole VMCS.
func reportVMCSFailure(_ hw: Hardware, _ caps: VMXCapabilities) {
    let sizes = hw.addressSizes
    if let v = checkVMEntry(hw, capabilities: caps, physicalAddressWidth: sizes.physicalAddressBits,
                            linearAddressWidth: sizes.linearAddressBits) {
        logError("VM-entry check failed: \(v.rule)")
        logError("  SDM \(v.section); field \(v.fieldName) (\(hex: v.fieldEncoding)) = \(hex: v.value); \(v.area.outcome)")
    } else {
        logError("VM-entry checks: no rule this checker knows is broken")
    }
    logError("VMCS state:")
    dumpVMCS(hw) { name, encoding, value in
        switch value {
        case .value(let v): Console.line("  \(hex: encoding, width: 4) \(name) = \(hex: v)")
        case .unsupported: break
        }
    }
}
