// VMX detection at boot: one readable summary, or one clear line saying why not.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

func detectVMX() -> VMXCapabilities? {
    let cpu = Hardware()
    do {
        let caps = try VMXCapabilities.read(from: cpu)
        let control = FeatureControl(rawValue: cpu.readMSR(.ia32FeatureControl))
        if case .disabledByFirmware = control.vmxEnablement {
            logError("VMX is not available: disabled by firmware (IA32_FEATURE_CONTROL \(hex: control.rawValue) is locked without VMX outside SMX)")
            return nil
        }
        return caps
    } catch {
        switch error {
        case .vmxNotSupported:
            logError("VMX is not available: CPUID.1:ECX.VMX[bit 5] is clear (this CPU or emulator has no VMX)")
        default:
            logError("VMX is not available: \(error.summary)")
        }
        return nil
    }
}

func reportVMX(_ caps: VMXCapabilities) {
    let basic = caps.basic
    logInfo("VMX: revision \(hex: basic.revisionID), VMCS region \(basic.regionSize) bytes, memory type \(basic.memoryType), true controls: \(basic.hasTrueControls)")
    let secondary = caps.secondary
    let ept = secondary?.allows(.enableEPT) ?? false
    let unrestricted = secondary?.allows(.unrestrictedGuest) ?? false
    let vpid = secondary?.allows(.enableVPID) ?? false
    let timer = caps.pinBased.allows(.activatePreemptionTimer)
    logInfo("VMX: EPT: \(ept), unrestricted guest: \(unrestricted), VPID: \(vpid), preemption timer: \(timer) (TSC >> \(caps.misc.preemptionTimerTSCShift))")
    let tprShadow = caps.primary.allows(.useTPRShadow)
    let apicAccess = secondary?.allows(.virtualizeAPICAccesses) ?? false
    let x2apic = secondary?.allows(.virtualizeX2APICMode) ?? false
    let registers = secondary?.allows(.apicRegisterVirtualization) ?? false
    let delivery = secondary?.allows(.virtualInterruptDelivery) ?? false
    let posted = caps.pinBased.allows(.processPostedInterrupts)
    logInfo("VMX: APIC virtualization: TPR shadow: \(tprShadow), APIC accesses: \(apicAccess), x2APIC mode: \(x2apic), registers: \(registers), virtual-interrupt delivery: \(delivery), posted interrupts: \(posted)")
    if let e = caps.eptVPID {
        logInfo("VMX: EPT walk 4-level: \(e.pageWalkLength4), WB: \(e.writeBack), 2 MiB: \(e.pages2MiB), 1 GiB: \(e.pages1GiB), A/D: \(e.accessedDirtyFlags), INVEPT: \(e.invept), INVVPID: \(e.invvpid)")
    }
}
