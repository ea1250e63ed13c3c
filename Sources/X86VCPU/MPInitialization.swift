// INIT and SIPI for a vCPU of a multiprocessor guest. In VMX non-root
// operation an INIT signal is a VM exit and changes nothing (SDM 26.2 "Other
// Causes of VM Exits"), so the vCPU writes the state INIT would leave; a
// vCPU in the wait-for-SIPI activity state exits on a start-up IPI with the
// vector in the qualification (SDM 28.2.1 "Basic VM-Exit Information"), and
// starts in real mode at vector * 1000H (SDM Vol. 3A 9.4.4 "MP Initialization Example").

import X86Arch
import VMX

extension VCPU {
    /// The architectural state after INIT, and the wait-for-SIPI activity
    /// state: SDM Vol. 3A 10.1.1 "Processor State After Reset" (Table 10-1).
    /// `afterINIT`: the guest's INIT keeps CR0.CD/NW and IA32_PAT, as the
    /// table's INIT column says; otherwise the power-up values.
    public mutating func enterWaitForSIPI<H: VMXHardware>(_ hw: H, afterINIT: Bool) throws(VMXError) {
        let cacheBits = CR0Bits.cd.rawValue | CR0Bits.nw.rawValue
        let cr0 = (afterINIT ? try hw.read(VMCSFields.GuestNatural.cr0) & cacheBits : cacheBits) | CR0Bits.et.rawValue
        try hw.write(VMCSFields.GuestNatural.cr0, cr0View.realValue(forGuestValue: cr0))
        try hw.write(VMCSFields.ControlNatural.cr0ReadShadow, cr0View.readShadow(forGuestValue: cr0))
        try hw.write(VMCSFields.GuestNatural.cr4, cr4View.realValue(forGuestValue: 0))
        try hw.write(VMCSFields.ControlNatural.cr4ReadShadow, cr4View.readShadow(forGuestValue: 0))
        try hw.write(VMCSFields.GuestNatural.cr3, 0)
        hw.writeCR2(0)
        // EFER.LMA is 0 now, so the entry must not be to IA-32e mode.
        var entry = VMEntryControls(rawValue: UInt32(truncatingIfNeeded: try hw.read(VMCSFields.Control32.entryControls)))
        entry.remove(.ia32eModeGuest)
        try hw.write(VMCSFields.Control32.entryControls, entry.rawValue)
        try hw.write(VMCSFields.Guest64.ia32EFER, 0)
        if !afterINIT { try hw.write(VMCSFields.Guest64.ia32PAT, PAT.powerOn.rawValue) }
        try hw.write(VMCSFields.Guest64.ia32DebugCtl, 0)
        try hw.write(VMCSFields.GuestNatural.dr7, DR7.initial)
        try hw.write(VMCSFields.GuestNatural.rflags, RFLAGS.fixedOne.rawValue)
        try hw.write(VMCSFields.GuestNatural.rip, 0xFFF0)
        try hw.write(VMCSFields.GuestNatural.rsp, 0)

        // CS F000H based at FFFF0000H; the other segments 0; limits FFFFH.
        try hw.write(VMCSFields.Guest16.csSelector, 0xF000)
        try hw.write(VMCSFields.GuestNatural.csBase, 0xFFFF_0000)
        try hw.write(VMCSFields.Guest32.csLimit, 0xFFFF)
        try hw.write(VMCSFields.Guest32.csAccessRights, SegmentAccessRights.code16.rawValue)
        try writeDataSegments(hw, selector: 0, limit: 0xFFFF, rights: .data16)
        // LDTR: present LDT; TR: a busy 32-bit TSS, as KVM's INIT state has it:
        // an OS enters long mode before it loads TR, and CR0.PG with EFER.LME
        // and a 16-bit TSS in TR is #GP (Bochs checks it; Linux's AP
        // trampoline triple-faulted on it).
        try hw.write(VMCSFields.Guest16.ldtrSelector, 0)
        try hw.write(VMCSFields.GuestNatural.ldtrBase, 0)
        try hw.write(VMCSFields.Guest32.ldtrLimit, 0xFFFF)
        try hw.write(VMCSFields.Guest32.ldtrAccessRights, SegmentAccessRights(type: SegmentType.ldt, codeOrData: false).rawValue)
        try hw.write(VMCSFields.Guest16.trSelector, 0)
        try hw.write(VMCSFields.GuestNatural.trBase, 0)
        try hw.write(VMCSFields.Guest32.trLimit, 0xFFFF)
        try hw.write(VMCSFields.Guest32.trAccessRights, SegmentAccessRights.busyTSS.rawValue)
        try hw.write(VMCSFields.GuestNatural.gdtrBase, 0)
        try hw.write(VMCSFields.Guest32.gdtrLimit, 0xFFFF)
        try hw.write(VMCSFields.GuestNatural.idtrBase, 0)
        try hw.write(VMCSFields.Guest32.idtrLimit, 0xFFFF)

        // EDX holds the processor signature (CPUID.1:EAX); the other GPRs 0.
        registers = GeneralRegisters()
        registers.rdx = UInt64(hw.cpuid(leaf: CPUIDLeaf.features, subleaf: 0).eax)
        // Nothing pending survives: no injection, no queued or interrupted event.
        try hw.write(VMCSFields.Control32.entryInterruptionInformation, 0)
        try hw.write(VMCSFields.Guest32.interruptibilityState, 0)
        try hw.write(VMCSFields.GuestNatural.pendingDebugExceptions, 0)
        events = EventQueue()
        reinjection = nil
        faultAddress = nil
        timerPeriod = 0
        mayBeHalted = false
        fastPath.invalidateCPUID()   // CR4.OSXSAVE and PKE are 0 again
        try hw.write(VMCSFields.Guest32.activityState, ActivityState.waitForSIPI.rawValue)
    }

    /// Bochs keeps the wait-for-SIPI state's SMI blocking after a SIPI exit
    /// and saves it at every later exit; outside SMM it fails the next entry
    /// (SDM 27.3.1.5 "Checks on Guest Non-Register State"). A guest never runs
    /// in SMM here, so the bit is cleared.
    mutating func clearSMIBlocking<H: VMXHardware>(_ hw: H) throws(VMXError) {
        let state = try hw.read(VMCSFields.Guest32.interruptibilityState)
        let smi = UInt32(1 << 2)
        if state & smi != 0 { try hw.write(VMCSFields.Guest32.interruptibilityState, state & ~smi) }
    }

    /// INIT: back to wait-for-SIPI in the INIT state. Before that, a stop the
    /// platform asked for (the hypervisor's own INIT to this CPU) ends the run.
    mutating func handleINIT<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        if platform.stopRequested { return .stop(.stopRequested) }
        guard capabilities.misc.supportsActivityWaitForSIPI else {
            return .stop(.unhandled(reason: .initSignal, qualification: 0, rip: try hw.read(VMCSFields.GuestNatural.rip)))
        }
        // The wait-for-SIPI state blocks INIT, so the INIT of the guest's
        // INIT-SIPI-SIPI stays pending and exits at the entry after the SIPI,
        // before the vCPU ran (SDM 26.2 "Other Causes of VM Exits"). On a CPU
        // outside VMX it would have met the wait-for-SIPI state and changed
        // nothing: dropped (every INIT until the vCPU ran), and the blocking
        // saved from the wait cleared.
        if let page = sipiPage, statistics.totalExits == exitsAtSIPI + 1,
           try hw.read(VMCSFields.GuestNatural.rip) == 0, try hw.read(VMCSFields.GuestNatural.csBase) == page {
            exitsAtSIPI = statistics.totalExits
            try hw.write(VMCSFields.Guest32.interruptibilityState, 0)
            return .resume
        }
        sipiPage = nil
        try enterWaitForSIPI(hw, afterINIT: true)
        platform.waitingForSIPI(true)
        return .resume
    }

    /// A routed INIT: the INIT state and wait-for-SIPI; a routed STARTUP
    /// IPI after it starts the vCPU at once.
    mutating func takeStartSignals<H: VMXHardware, P: GuestPlatform>(_ signals: StartSignals, _ hw: H, _ platform: inout P)
        throws(VMXError) {
        if signals.initialize {
            sipiPage = nil
            try enterWaitForSIPI(hw, afterINIT: true)
            platform.waitingForSIPI(true)
        }
        if let vector = signals.startupVector { try start(at: vector, hw, &platform) }
    }

    /// SIPI (only in wait-for-SIPI): real mode at vector:0000, the rest as INIT left it.
    mutating func handleSIPI<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        if platform.stopRequested { return .stop(.stopRequested) }
        try start(at: UInt8(truncatingIfNeeded: try qualification(hw)), hw, &platform)
        return .resume
    }

    mutating func start<H: VMXHardware, P: GuestPlatform>(at startVector: UInt8, _ hw: H, _ platform: inout P)
        throws(VMXError) {
        let vector = UInt64(startVector)
        try hw.write(VMCSFields.Guest16.csSelector, UInt16(vector << 8))
        try hw.write(VMCSFields.GuestNatural.csBase, vector << 12)
        try hw.write(VMCSFields.GuestNatural.rip, 0)
        try hw.write(VMCSFields.Guest32.activityState, ActivityState.active.rawValue)
        // A started CPU blocks nothing. Bochs saves the wait-for-SIPI state's
        // SMI and NMI blocking at this exit, and SMI blocking outside SMM
        // fails the next entry (SDM 27.3.1.5 "Checks on Guest Non-Register State").
        try hw.write(VMCSFields.Guest32.interruptibilityState, 0)
        sipiPage = vector << 12
        exitsAtSIPI = statistics.totalExits
        startedBySIPI = true
        platform.waitingForSIPI(false)
        fastPath.invalidateCPUID()  // a restarted guest sets its state up again
    }
}
