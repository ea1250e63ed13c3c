// The one guest: its RAM under EPT, its image, VMX root mode, the vCPU, and
// what happens when it stops.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot
import Devices

/// Runs the guest named by the first module (Xen's GRUB convention: its
/// string is the guest's command line; further modules are its initrd or
/// modules) and powers off when it stops.
func runGuest(_ info: Multiboot2Info, _ options: KernelCommandLine, _ caps: VMXCapabilities,
              _ memory: PhysicalMemoryMap) -> Never {
    let hw = Hardware()
    let frames = KernelFrames()
    let bringUp = takeBringUpInputs(info)
    guard let first = info.module(at: 0) else {
        logError("no guest: the boot entry has no module2 line naming a guest image")
        powerOff(.failure)
    }
    var kernel = GuestModule(bytes: moduleBytes(first), commandLine: first.string)
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
    let platformKind = options.platform ?? (format.ownsLegacyDevices ? .passthrough : .isolated)
    let why: StaticString = options.platform != nil ? "platform= on the command line"
        : format.ownsLegacyDevices ? "the default for an operating-system guest" : "the default for a test guest"
    logInfo("platform: \(platformKind == .passthrough ? "passthrough" as StaticString : "isolated") (\(why))")

    let eptCaps = caps.eptVPID ?? EPTVPIDCapabilities(rawValue: 0)
    let features = EPTFeatures(supports4LevelWalk: eptCaps.pageWalkLength4, supports2MiBPages: eptCaps.pages2MiB,
                               supports1GiBPages: eptCaps.pages1GiB, supportsAccessedDirty: eptCaps.accessedDirtyFlags,
                               supportsWriteBack: eptCaps.writeBack, supportsUncacheable: eptCaps.uncacheable,
                               supportsExecuteOnly: eptCaps.executeOnly)
    let ram: GuestRAM
    let loaded: LoadedGuest
    var ept: ExtendedPageTable<KernelFrames>
    if platformKind == .passthrough {
        let layout: PassthroughMemory
        let otherCPUs = expectedAPCount(bringUp, options)
        do {
            layout = try preparePassthroughMemory(memory, otherCPUs: otherCPUs, kernel: &kernel, modules: &modules)
        } catch {
            switch error {
            case .noRoom(let needed):
                logError("passthrough: no RAM range below 4 GiB holds the hypervisor's pool and the staged modules (\(needed >> 20) MiB)")
            case .bitmap: logError("passthrough: cannot build the pool's frame bitmap")
            }
            powerOff(.failure)
        }
        logInfo("passthrough: the hypervisor keeps \(layout.footprint >> 10) KiB: image \(hex: layout.image.lowerBound)..\(hex: layout.image.upperBound), pool \(hex: layout.pool.lowerBound)..\(hex: layout.pool.upperBound) (room for \(otherCPUs) other CPUs); guest-physical = host-physical elsewhere")
        ept = newEPT(hw, frames, features)
        let memoryMap = planMachine(info, layout, hw, mapInto: &ept)
        // With smp=on every other CPU gets a vCPU on this EPT before the guest
        // is loaded: the guest's MADT then lists exactly the CPUs that run in VMX.
        if options.guestSMP && protectAPICPage(&ept) {
            shareGuest(eptPointer: ept.eptPointer(enableAccessedDirty: false), ram: layout.ram(end: identityMappedEnd))
        }
        let cpus = bringUpProcessors(bringUp, options, caps)
        let machine = MachineDescription(memoryMap: memoryMap, acpiRSDP: guestACPI(info, layout, hw, cpus.virtualized))
        do {
            loaded = try GuestLoader.load(kernel: kernel, modules: modules, ram: layout.ram(end: layout.staging.lowerBound),
                                          machine: machine)
        } catch {
            logError("guest image (\(format.name)): \(error.message)")
            powerOff(.failure)
        }
        logInfo("guest: \(format.name), \(first.size) bytes, \(modules.count) more modules, the machine's memory (\(machine.memoryMap.count) map entries)")
        ram = layout.ram(end: identityMappedEnd)
    } else {
        // Guest RAM: whole 2 MiB pages, host-contiguous, so EPT can use large pages.
        // Without guest_mem the format's default is tried, then halves of it
        // down to the command line's own default, on a machine short of memory.
        let twoMiB: UInt64 = 2 << 20
        var size = ((options.guestMemoryGiven ? options.guestMemory : format.defaultRAM) + twoMiB - 1) & ~(twoMiB - 1)
        var allocated = frames.allocateGuestMemory(count: Int(size / frameSize), alignment: twoMiB)
        while allocated == nil && !options.guestMemoryGiven && size > KernelCommandLine.defaultGuestMemory {
            size /= 2
            allocated = frames.allocateGuestMemory(count: Int(size / frameSize), alignment: twoMiB)
        }
        guard let hostPhysical = allocated else {
            logError("guest_mem=\(size >> 20)M: not enough free contiguous memory (\(frameBitmap?.freeFrames ?? 0) frames free)")
            powerOff(.failure)
        }
        if !options.guestMemoryGiven { logInfo("guest RAM: \(size >> 20) MiB, the default for a \(format.name) guest (guest_mem= sets it)") }
        ram = GuestRAM(hostPhysical: hostPhysical, base: frames.pointer(to: hostPhysical), size: size)
        let machine = format.ownsLegacyDevices ? isolatedACPI(ram) : nil
        do { loaded = try GuestLoader.load(kernel: kernel, modules: modules, ram: ram, machine: machine) } catch {
            logError("guest image (\(format.name)): \(error.message)")
            powerOff(.failure)
        }
        logInfo("guest: \(format.name), \(first.size) bytes, \(modules.count) more modules, \(size >> 20) MiB of RAM at host \(hex: hostPhysical)")
        ept = newEPT(hw, frames, features)
        do {
            try ept.map(guestPhysical: 0, hostPhysical: hostPhysical, size: size, permissions: .readWriteExecute,
                        memoryType: .writeBack)
        } catch {
            logError("EPT: cannot map guest RAM (\(hex: hostPhysical), \(size >> 20) MiB)")
            powerOff(.hypervisorFailure)
        }
    }
    if first.string.count > 0 { logInfo("guest command line: '\(bytes: first.string)'") }

    if platformKind == .isolated { bringUpProcessors(bringUp, options, caps) }   // the APs park in VMX root mode
    let root: VMXRoot<KernelFrames>
    do {
        root = try VMXRoot(enabling: hw, allocator: frames)
    } catch {
        reportVMXError("VMXON", error)
        powerOff(.hypervisorFailure)
    }
    var vcpu: VCPU<KernelFrames>
    do {
        vcpu = try VCPU(hw, allocator: frames, capabilities: root.capabilities, ram: ram, platform: platformKind)
        try vcpu.setup(hw, eptPointer: ept.eptPointer(enableAccessedDirty: false), start: loaded.start)
    } catch {
        reportVMXError("vCPU setup", error)
        powerOff(.hypervisorFailure)
    }
    if options.isTest("bad-guest-state") {
        // Self-test of the failure report: an unusable TR fails VM entry (SDM 27.3.1.2).
        logInfo("self-test: making the guest's TR unusable")
        try? hw.write(VMCSFields.Guest32.trAccessRights, SegmentAccessRights.unusable.rawValue)
    }
    if platformKind == .passthrough { giveMachine(&vcpu) } else if format.ownsLegacyDevices { giveLegacyDevices(&vcpu) }
    let routesIPIs = sharedGuest != nil
    if routesIPIs { takeICRWrites(&vcpu) }
    vcpu.quickExits = true   // vmxQuickExit runs this vCPU type with KernelPlatform
    logInfo("VMX root mode on; entering the guest at \(hex: loaded.start.rip)")
    logInfo("boot: entry-tsc \(kernel_entry_tsc()) now-tsc \(cpu_rdtsc())")

    var platform = KernelPlatform()
    if routesIPIs { platform.routeIPIs(cpu: 0) }
    platform.ownsClock = platformKind == .isolated && format.ownsLegacyDevices
    if platformKind == .isolated {
        platform.addInterruptControllers(physicalAddressBits: hw.addressSizes.physicalAddressBits)
        platform.routesLegacyIRQs = format.ownsLegacyDevices
        vcpu.cpuidPolicy.leaf1ECXHidden &= ~CPUIDLeaf1ECX.x2APIC.rawValue   // the local APIC has x2APIC mode
        logInfo("isolated: a local APIC at \(hex: APICBase.defaultAddress) (xAPIC and x2APIC) and an IOAPIC at \(hex: IOAPIC.baseAddress)")
        virtualizeAPIC(&vcpu, &ept, hw, options)
    }
    let exit = vcpu.run(hw, &platform)
    platform.flush()
    // With vCPUs on other CPUs the first to stop reports; the others halt.
    if !claimStop(0, exit) { leaveBootStatistics(vcpu.statistics) }
    let several = (sharedGuest?.apCount ?? 0) > 0
    if several { logInfo("cpu 0 (APIC ID \(bootCPUAPICID)) stopped the guest") }
    if platformKind == .passthrough, case .tripleFault = exit {
        _ = reportGuestExit(exit, hw, root.capabilities)
        if !several { reportStatistics(vcpu.statistics) }
        logInfo("passthrough: the guest reset the machine (triple fault): resetting it")
        resetMachine()
    }
    let status = reportGuestExit(exit, hw, root.capabilities)
    reportAllStatistics(stopOtherCPUs(0), own: vcpu.statistics, me: 0)
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

/// An isolated OS guest's ACPI tables (hardware-reduced FADT, a MADT with its
/// local APIC, the IOAPIC and the ISA overrides) in the reserved BIOS area at
/// 0xE0000, where a PC's tables would be; nil (no tables) if they cannot be written.
func isolatedACPI(_ ram: GuestRAM) -> MachineDescription? {
    var platform = ACPIPlatform()
    platform.ioAPICID = 1
    platform.com1 = true
    let base: UInt64 = 0xE0000
    guard let buffer = ram.bytes(at: base, count: ACPITables.size(for: platform)) else { return nil }
    do {
        let placed = try ACPITables.write(into: buffer, at: base, platform: platform)
        logInfo("isolated: ACPI tables at \(hex: base) (RSDP \(hex: placed.rsdpAddress), \(placed.size) bytes): hardware-reduced, one CPU, the local APIC and IOAPIC, COM1")
        return MachineDescription(memoryMap: GuestLayout.privateMemoryMap(ramSize: ram.size), acpiRSDP: placed.rsdpAddress,
                                  keepsFirstPage: false)
    } catch {
        logWarn("isolated: no ACPI tables for the guest")
        return nil
    }
}

/// The CPU's APIC virtualization for the isolated local APIC, when it has
/// it and the command line does not say apicv=off: the APIC-access page is
/// mapped at the APIC's base (where an access to it is an APIC access).
func virtualizeAPIC(_ vcpu: inout VCPU<KernelFrames>, _ ept: inout ExtendedPageTable<KernelFrames>, _ hw: Hardware,
                    _ options: KernelCommandLine) {
    guard options.apicVirtualization else {
        logInfo("isolated: the local APIC is emulated from EPT violations (apicv=off)")
        return
    }
    guard vcpu.canVirtualizeAPIC else {
        logInfo("isolated: the local APIC is emulated from EPT violations (the CPU lacks TPR shadow, APIC-access page, APIC-register virtualization or virtual-interrupt delivery)")
        return
    }
    let page: UInt64?
    do { page = try vcpu.virtualizeAPIC(hw, at: APICBase.defaultAddress) } catch {
        reportVMXError("APIC virtualization", error)
        powerOff(.hypervisorFailure)
    }
    guard let page else { return }
    do {
        try ept.map(guestPhysical: APICBase.defaultAddress, hostPhysical: page, size: frameSize,
                    permissions: .readWrite, memoryType: .writeBack)
    } catch {
        logError("EPT: cannot map the APIC-access page at \(hex: APICBase.defaultAddress)")
        powerOff(.hypervisorFailure)
    }
    logInfo("isolated: the CPU virtualizes the local APIC (APIC-access page, TPR shadow, APIC-register virtualization, virtual-interrupt delivery)")
}

func newEPT(_ hw: Hardware, _ frames: KernelFrames, _ features: EPTFeatures) -> ExtendedPageTable<KernelFrames> {
    do { return try ExtendedPageTable(allocator: frames, features: features, physicalAddressBits: hw.addressSizes.physicalAddressBits) } catch {
        logError("EPT: no frame for the root table")
        powerOff(.hypervisorFailure)
    }
}

func moduleBytes(_ m: Multiboot2Info.Module) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(m.start)), count: Int(m.size))
}
