// The one guest: its RAM under EPT, its image, VMX root mode, the vCPU, and
// what happens when it stops.
import X86VCPU

/// Runs the guest named by the first module (Xen's GRUB convention: its
/// string is the guest's command line; further modules are its initrd or
/// modules) and powers off when it stops.
func runGuest(_ info: Multiboot2Info, _ options: KernelCommandLine, _ caps: VMXCapabilities) -> Never {
    let hw = Hardware()
    let frames = KernelFrames()
    guard let first = info.module(at: 0) else {
        logError("no guest: the boot entry has no module2 line naming a guest image")
        powerOff(.failure)
    }
    let kernel = GuestModule(bytes: moduleBytes(first), commandLine: first.string)
    var modules = GuestModules()
    for i in 1..<max(info.moduleCount, 1) {
        guard let m = info.module(at: i) else { break }
        do { try modules.append(GuestModule(bytes: moduleBytes(m), commandLine: m.string)) } catch {
            logError("guest modules: \(error.message)")
            powerOff(.failure)
        }
    }
    let format: GuestImageFormat
    do { format = try GuestImage.detect(kernel.bytes) } catch {
        logError("guest image (\(first.size) bytes, '\(bytes: first.string)'): \(error.message)")
        powerOff(.failure)
    }

    // Guest RAM: whole 2 MiB pages, host-contiguous, so EPT can use large pages.
    let twoMiB: UInt64 = 2 << 20
    let size = (options.guestMemory + twoMiB - 1) & ~(twoMiB - 1)
    guard let hostPhysical = frames.allocateGuestMemory(count: Int(size / frameSize), alignment: twoMiB) else {
        logError("guest_mem=\(size >> 20)M: not enough free contiguous memory (\(frameBitmap?.freeFrames ?? 0) frames free)")
        powerOff(.failure)
    }
    let ram = GuestRAM(hostPhysical: hostPhysical, base: frames.pointer(to: hostPhysical), size: size)
    let loaded: LoadedGuest
    do { loaded = try GuestLoader.load(kernel: kernel, modules: modules, ram: ram) } catch {
        logError("guest image (\(format.name)): \(error.message)")
        powerOff(.failure)
    }
    logInfo("guest: \(format.name), \(first.size) bytes, \(modules.count) more modules, \(size >> 20) MiB of RAM at host \(hex: hostPhysical)")
    if first.string.count > 0 { logInfo("guest command line: '\(bytes: first.string)'") }

    let eptCaps = caps.eptVPID ?? EPTVPIDCapabilities(rawValue: 0)
    let features = EPTFeatures(supports4LevelWalk: eptCaps.pageWalkLength4, supports2MiBPages: eptCaps.pages2MiB,
                               supports1GiBPages: eptCaps.pages1GiB, supportsAccessedDirty: eptCaps.accessedDirtyFlags,
                               supportsWriteBack: eptCaps.writeBack, supportsUncacheable: eptCaps.uncacheable,
                               supportsExecuteOnly: eptCaps.executeOnly)
    let addressBits = Int(cpuid(0x8000_0008).eax & 0xFF)
    var ept: ExtendedPageTable<KernelFrames>
    do {
        ept = try ExtendedPageTable(allocator: frames, features: features, physicalAddressBits: addressBits)
        try ept.map(guestPhysical: 0, hostPhysical: hostPhysical, size: size, permissions: .readWriteExecute,
                    memoryType: .writeBack)
    } catch {
        logError("EPT: cannot map guest RAM (\(hex: hostPhysical), \(size >> 20) MiB)")
        powerOff(.hypervisorFailure)
    }

    let root: VMXRoot<KernelFrames>
    do {
        root = try VMXRoot(enabling: hw, allocator: frames)
    } catch {
        reportVMXError("VMXON", error)
        powerOff(.hypervisorFailure)
    }
    var vcpu: VCPU<KernelFrames>
    do {
        vcpu = try VCPU(hw, allocator: frames, capabilities: root.capabilities, ram: ram)
        try vcpu.setup(hw, eptPointer: ept.eptPointer(enableAccessedDirty: false), start: loaded.start)
    } catch {
        reportVMXError("vCPU setup", error)
        powerOff(.hypervisorFailure)
    }
    if options.isTest("bad-guest-state") {
        // Self-test of the failure report: an unusable TR fails VM entry (SDM 27.3.1.2).
        logInfo("self-test: making the guest's TR unusable")
        try? hw.write(VMCSFields.Guest32.trAccessRights, 0x1_0000)
    }
    if format.ownsLegacyDevices { giveLegacyDevices(&vcpu) }
    logInfo("VMX root mode on; entering the guest at \(hex: loaded.start.rip)")
    logInfo("boot: entry-tsc \(kernel_entry_tsc()) now-tsc \(cpu_rdtsc())")

    var platform = KernelPlatform()
    let exit = vcpu.run(hw, &platform)
    platform.flush()
    let status = reportGuestExit(exit, hw, root.capabilities)
    reportStatistics(vcpu.statistics)
    // Teardown in order. A noncopyable local ends at its last use, so these
    // uses are what keep the VMCS and EPT alive through the reports: the VMCS
    // is cleared (no longer current) before its frame is freed, the EPT goes
    // after the vCPU, and VMXOFF comes last.
    do { try vcpu.unbind(hw) } catch { reportVMXError("VMCLEAR", error) }
    _ = consume vcpu
    _ = consume ept
    do { try root.disable(hw) } catch { reportVMXError("VMXOFF", error) }
    powerOff(code: status)
}

func moduleBytes(_ m: Multiboot2Info.Module) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(m.start)), count: Int(m.size))
}

extension GuestImageFormat {
    /// An operating system drives the PC's timer and interrupt controller
    /// itself; the small test guests use the hypervisor's devices.
    var ownsLegacyDevices: Bool {
        switch self {
        case .pvh, .linux: true
        case .multiboot1, .bootSector: false
        }
    }
}

/// The guest platform for an operating system: the legacy PIC (0x20, 0xA0),
/// PIT (0x40-0x43, gate 0x61), RTC/CMOS (0x70-0x71), the POST delay port
/// (0x80) and COM1 (its interrupt-driven driver needs the real IRQ 4, and
/// the user's shell needs input) belong to the guest, and interrupts that
/// arrive while it runs are delivered to it. The host depends on none of them:
/// it runs with interrupts off. The keyboard controller (0x64 can reset the
/// machine), PCI configuration and everything else stay intercepted.
func giveLegacyDevices(_ vcpu: inout VCPU<KernelFrames>) {
    let ports: [7 of ClosedRange<UInt16>] = [0x20...0x21, 0xA0...0xA1, 0x40...0x43, 0x61...0x61,
                                             0x70...0x71, 0x80...0x80, 0x3F8...0x3FF]
    for i in 0..<ports.count { vcpu.ioBitmap.setIntercept(ports: ports[i], false) }
    vcpu.reflectsExternalInterrupts = true
    Serial.flush()
}

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
    let width = Int(cpuid(0x8000_0008).eax & 0xFF)
    if let v = checkVMEntry(hw, capabilities: caps, physicalAddressWidth: width) {
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
