// Every CPU into VMX root mode: the boot CPU finds the others in the MADT,
// gives each its stack, GDT, TSS and VMXON region, and starts them one at a
// time through the trampoline page (Boot/ap.asm) with INIT-SIPI-SIPI
// (HostBoot's APStartup). A CPU that fails is named and left out; the
// hypervisor goes on with the others. Runs after the guest's memory is set
// up (the passthrough platform moves the allocator into its pool first), so
// every frame here is the hypervisor's own, never the guest's.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

extension AliasReader: FirmwareMemory {}

/// The xAPIC's registers in its MMIO page (identity mapped below 4 GiB).
struct XAPICMMIO: XAPICRegisters {
    let base: UInt64
    func read(_ offset: UInt32) -> UInt32 { mem_load32(KernelFrames().pointer(to: base + UInt64(offset))) }
    func write(_ offset: UInt32, _ value: UInt32) { mem_store32(KernelFrames().pointer(to: base + UInt64(offset)), value) }
}

struct X2APICMSRs: X2APICRegisters {
    func writeMSR(_ address: UInt32, _ value: UInt64) { cpu_wrmsr(address, value) }
}

/// The start sequence's view of this machine: this CPU's local APIC, the
/// TSC, the trampoline's `started` flag and the AP's check-in.
struct KernelAPStartPort: APStartPort {
    let x2APIC: Bool
    let xAPIC: XAPICMMIO
    let rate: TSCRate
    let trampoline: UInt64
    let record: APRecord

    mutating func send(_ command: InterruptCommand) -> Bool {
        if x2APIC { LocalAPICICR.send(command, x2APIC: X2APICMSRs()); return true }
        return LocalAPICICR.send(command, xAPIC: xAPIC)
    }
    mutating func wait(microseconds: UInt32) { rate.wait(microseconds: microseconds) }
    mutating func hasStarted() -> Bool {
        mem_load32(KernelFrames().pointer(to: trampoline + UInt64(APTrampolineData.offset + APTrampolineData.started))) != 0
    }
    mutating func hasCheckedIn() -> Bool { mem_load32(record.statePointer) != APControlBlock.State.starting.rawValue }
}

/// Frames per AP: 8 KiB IST stack then 56 KiB stack (one run; its vCPU and
/// run loop live there), the tables frame, the VMXON region.
let apStackFrames = 16
let apISTFrames = 2
/// All of an AP's frames from the pool: stacks, tables, VMXON, and its vCPU
/// when it runs the guest.
let apFrames = apStackFrames + 2 + VCPU<KernelFrames>.frameCount

/// What bring-up needs from the boot information, taken before the guest is
/// loaded: a passthrough guest's image may land on the boot information.
struct BringUpInputs {
    /// Bytes of the boot loader's RSDP copy in `bringUpRSDP` (0: none).
    var rsdpLength = 0
    var trampolinePage: UInt64? = nil
}

/// The RSDP copy (at most 64 bytes; ACPI 2.0's is 36).
nonisolated(unsafe) var bringUpRSDP: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

func takeBringUpInputs(_ info: Multiboot2Info) -> BringUpInputs {
    var inputs = BringUpInputs()
    if let tag = info.acpiRSDP {
        let count = min(tag.bytes.count, 64)
        withUnsafeMutableBytes(of: &bringUpRSDP) { buffer in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: tag.bytes[0..<count]))
        }
        inputs.rsdpLength = count
    }
    var picker = TrampolinePagePicker()
    info.memoryMap?.forEach { (r: Multiboot2Info.MemoryRegion) throws(Never) in picker.offer(base: r.base, length: r.length, type: r.type) }
    inputs.trampolinePage = picker.pick()
    return inputs
}

/// How many other CPUs bring-up will start (the MADT's, at most `cpus=`
/// in all), for sizing the passthrough pool before it starts them; 0 where
/// the tables cannot be read (bring-up then says why).
func expectedAPCount(_ inputs: BringUpInputs, _ options: KernelCommandLine) -> Int {
    guard inputs.rsdpLength > 0 else { return 0 }
    let bootID = bootAPICID(Hardware())
    let count: Int
    do {
        count = try withUnsafeBytes(of: &bringUpRSDP) { (all: UnsafeRawBufferPointer) throws(MADTError) -> Int in
            try MADTProcessors.enumerate(rsdp: UnsafeRawBufferPointer(rebasing: all[0..<inputs.rsdpLength]), memory: AliasReader(),
                                         bootAPICID: bootID).count
        }
    } catch { return 0 }
    return min(count, (options.cpuLimit ?? Int.max) - 1)
}

/// Which CPUs bring-up left in VMX root mode.
struct BringUpResult {
    /// CPUs in VMX root mode or about to be (the boot CPU's VMXON follows).
    var up = 1
    /// The APs whose vCPU waits for the guest's SIPI (passthrough, `sharedGuest` set).
    var virtualized = APICIDSet()
}

/// Brings every other CPU the MADT lists (at most `cpus=` in all) into VMX
/// root mode: with `sharedGuest` set each builds its vCPU of the guest,
/// otherwise it parks there.
@discardableResult
func bringUpProcessors(_ inputs: BringUpInputs, _ options: KernelCommandLine, _ caps: VMXCapabilities) -> BringUpResult {
    let hw = Hardware()
    let bootID = bootAPICID(hw)
    bootCPUAPICID = bootID
    let one = BringUpResult()
    guard inputs.rsdpLength > 0 else {
        logWarn("cpus: no ACPI RSDP from the boot loader: the other CPUs (if any) stay halted; the boot CPU only")
        return one
    }
    let list: MADTProcessorList
    do {
        list = try withUnsafeBytes(of: &bringUpRSDP) { (all: UnsafeRawBufferPointer) throws(MADTError) -> MADTProcessorList in
            try MADTProcessors.enumerate(rsdp: UnsafeRawBufferPointer(rebasing: all[0..<inputs.rsdpLength]), memory: AliasReader(),
                                         bootAPICID: bootID)
        }
    } catch {
        logWarn("cpus: \(error.message) (detail \(hex: error.detail)): the other CPUs (if any) stay halted; the boot CPU only")
        return one
    }
    let total = 1 + list.count + list.omitted
    if list.omitted > 0 {
        logWarn("cpus: the MADT lists \(total) CPUs; only the first \(MADTProcessorList.capacity) are started")
    }
    let limit = options.cpuLimit ?? Int.max
    let wanted = min(list.count, limit - 1)
    guard wanted > 0 else {
        if list.count > 0 {
            logInfo("cpus: 1 of \(total) in VMX root mode: the boot CPU (APIC ID \(bootID)); cpus=\(limit) leaves the other \(total - 1) halted")
        } else {
            logInfo("cpus: 1 of 1 in VMX root mode: the boot CPU (APIC ID \(bootID)), the only one the MADT lists")
        }
        return one
    }

    // This CPU's local APIC: SDM 11.4.4 "Local APIC Status and Location" (IA32_APIC_BASE).
    let apicBase = hw.readMSR(.ia32APICBase)
    let x2APIC = apicBase & (1 << 10) != 0
    let mmio = apicBase & 0xF_FFFF_F000
    guard apicBase & (1 << 11) != 0, x2APIC || mmio < identityMappedEnd else {
        logWarn("cpus: the local APIC is disabled or above the 4 GiB map (IA32_APIC_BASE \(hex: apicBase)): the boot CPU only")
        return one
    }
    let xAPIC = XAPICMMIO(base: mmio)
    // Software-enabled (SVR bit 8) while sending; the old value comes back
    // before the guest runs. SDM 11.4.7.2 "Local APIC State After It Has Been Software Disabled".
    let svr: UInt32 = x2APIC ? UInt32(truncatingIfNeeded: cpu_rdmsr(0x80F)) : xAPIC.read(0xF0)
    if svr & 0x100 == 0 {
        if x2APIC { cpu_wrmsr(0x80F, UInt64(svr | 0x1FF)) } else { xAPIC.write(0xF0, svr | 0x1FF) }
    }

    let frames = KernelFrames()
    guard let page = inputs.trampolinePage, let saved = frames.allocateFrame() else {
        logWarn("cpus: no usable page below 640 KiB for the start-up trampoline (or no frame to save it): the boot CPU only")
        restoreSVR(svr, x2APIC, xAPIC)
        return one
    }
    // What the guest loader put there survives: saved now, restored below.
    let pagePointer = frames.pointer(to: page)
    frames.pointer(to: saved).copyMemory(from: UnsafeRawPointer(pagePointer), byteCount: Int(frameSize))
    pagePointer.initializeMemory(as: UInt8.self, repeating: 0, count: Int(frameSize))
    if let blob = UnsafeRawPointer(bitPattern: UInt(ap_trampoline_address())) {
        pagePointer.copyMemory(from: blob, byteCount: Int(ap_trampoline_size()))
    }

    let rate = TSCRate.measure()
    smpTSCRate = rate
    bootCPUCapabilities = caps
    // Self-tests of the failure reports: capabilities that differ, a CPU that never starts.
    if options.isTest("ap-mismatch"), var altered = bootCPUCapabilities {
        logInfo("self-test: the other CPUs compare with altered capabilities (IA32_VMX_MISC bit 14)")
        altered.misc = VMXMisc(rawValue: altered.misc.rawValue ^ (1 << 14))
        bootCPUCapabilities = altered
    }
    let phantom = options.isTest("ap-missing") ? 1 : 0
    if phantom > 0 { logInfo("self-test: also starting APIC ID 0x7f, which no CPU has") }
    bootCPUCR4 = cpu_read_cr4()
    let through: StaticString = x2APIC ? "the x2APIC (MSR 830H)" : "the xAPIC"
    logInfo("cpus: the MADT lists \(total) CPUs; starting \(wanted) through \(through) at \(hex: mmio), trampoline page \(hex: page), TSC \(rate.ticksPerMillisecond) ticks/ms (\(rate.sourceName))")

    var result = BringUpResult()
    for i in 0..<(wanted + phantom) {
        let cpu = i < wanted ? list[i] : MADTProcessor(apicID: 0x7F, uid: 0x7F, enabled: true, x2APIC: false)
        let index = i + 1
        if !x2APIC && cpu.apicID > 0xFF {
            logWarn("cpu \(index) (APIC ID \(cpu.apicID)): the ID needs x2APIC mode, which is off; the hypervisor goes on without it")
            continue
        }
        guard let record = prepareAP(index: index, apicID: cpu.apicID, trampoline: page) else {
            logWarn("cpu \(index) (APIC ID \(cpu.apicID)): no frames for its stack, tables and VMXON region; it and the rest stay halted")
            break
        }
        var port = KernelAPStartPort(x2APIC: x2APIC, xAPIC: xAPIC, rate: rate, trampoline: page, record: record)
        do {
            let report = try APStartup.start(apicID: cpu.apicID, vector: UInt8(page >> 12), port: &port)
            let block = record.block.pointee
            if block.state == APControlBlock.State.vmxRoot.rawValue || block.state == APControlBlock.State.guestReady.rawValue {
                result.up += 1
                if let guest = sharedGuest, !guest.register(record) {
                    logWarn("cpu \(index) (APIC ID \(cpu.apicID)): more CPUs than the shared table holds; hidden from the guest")
                }
                let second: StaticString = report.startupIPIs == 2 ? ", after a second STARTUP IPI" : ""
                logInfo("cpu \(index) (APIC ID \(cpu.apicID)): VMX root mode, \(block.vmxRootTSC &- block.entryTSC) TSC ticks from its first trampoline instruction\(second)")
            } else {
                reportAPFailure(index, cpu.apicID, record)
            }
        } catch {
            logWarn("cpu \(index) (APIC ID \(error.apicID)): \(error.message); the hypervisor goes on without it")
            // Back to wait-for-SIPI, so a late start cannot run the next AP's trampoline data.
            _ = port.send(.initAssert(to: cpu.apicID))
        }
    }

    pagePointer.copyMemory(from: UnsafeRawPointer(frames.pointer(to: saved)), byteCount: Int(frameSize))
    frames.freeFrame(saved)
    restoreSVR(svr, x2APIC, xAPIC)
    if let guest = sharedGuest { result.virtualized = waitForVCPUs(guest, rate) }
    let up = result.up
    let left = total - 1 - wanted
    if left > 0 {
        logInfo("cpus: \(up) of \(total) in VMX root mode (the boot CPU enters next); cpus=\(limit) leaves \(left) halted")
    } else {
        logInfo("cpus: \(up) of \(total) in VMX root mode (the boot CPU enters next)")
    }
    return result
}

func restoreSVR(_ svr: UInt32, _ x2APIC: Bool, _ xAPIC: XAPICMMIO) {
    guard svr & 0x100 == 0 else { return }
    if x2APIC { cpu_wrmsr(0x80F, UInt64(svr)) } else { xAPIC.write(0xF0, svr) }
}

/// Allocates and fills an AP's frames and the trampoline's data area; nil
/// (nothing kept) when memory runs out.
func prepareAP(index: Int, apicID: UInt32, trampoline: UInt64) -> APRecord? {
    let frames = KernelFrames()
    guard let stack = frames.allocateContiguous(count: apStackFrames, alignment: frameSize) else { return nil }
    guard let tables = frames.allocateFrame() else { frames.freeContiguous(stack, count: apStackFrames); return nil }
    guard let vmxon = frames.allocateFrame() else {
        frames.freeFrame(tables); frames.freeContiguous(stack, count: apStackFrames); return nil
    }
    let stackTop = stack + UInt64(apStackFrames) * frameSize
    let istTop = stack + UInt64(apISTFrames) * frameSize
    PerCPUTables.write(into: UnsafeMutableRawBufferPointer(start: frames.pointer(to: tables), count: Int(frameSize)),
                       at: tables, stackTop: stackTop, istTop: istTop)
    let record = APRecord(tables: tables)
    var block = APControlBlock()
    block.index = UInt32(index)
    block.apicID = apicID
    block.vmxonRegion = vmxon
    record.block.initialize(to: block)
    record.error.initialize(to: nil)

    let data = frames.pointer(to: trampoline + UInt64(APTrampolineData.offset))
    data.storeBytes(of: 0, toByteOffset: APTrampolineData.started, as: UInt32.self)
    data.storeBytes(of: 0, toByteOffset: APTrampolineData.entryTSC, as: UInt64.self)
    data.storeBytes(of: cpu_read_cr3(), toByteOffset: APTrampolineData.cr3, as: UInt64.self)
    data.storeBytes(of: stackTop, toByteOffset: APTrampolineData.stackTop, as: UInt64.self)
    data.storeBytes(of: ap_kernel_entry_address(), toByteOffset: APTrampolineData.entry, as: UInt64.self)
    data.storeBytes(of: tables, toByteOffset: APTrampolineData.argument, as: UInt64.self)
    return record
}

func reportAPFailure(_ index: Int, _ apicID: UInt32, _ record: APRecord) {
    let block = record.block.pointee
    let failure = APControlBlock.Failure(rawValue: block.failure) ?? .vmxon
    switch failure {
    case .capabilityMismatch:
        let name = VMXCapabilityDifference(rawValue: UInt32(truncatingIfNeeded: block.detail))?.name ?? "a capability MSR"
        logWarn("cpu \(index) (APIC ID \(apicID)): \(failure.message) (\(name)): halted outside VMX; the hypervisor goes on without it")
    case .vmxon, .none:
        let what: StaticString = record.error.pointee?.summary ?? "no capabilities from the boot CPU"
        logWarn("cpu \(index) (APIC ID \(apicID)): \(failure.message): \(what); halted outside VMX; the hypervisor goes on without it")
    case .vcpu:
        let what: StaticString = record.error.pointee?.summary ?? "unknown"
        logWarn("cpu \(index) (APIC ID \(apicID)): \(failure.message): \(what); halted in VMX root mode and hidden from the guest")
    }
}

/// Waits (at most 2 s) until each AP's vCPU waits for the guest's SIPI or
/// failed; returns the APIC IDs of the ready ones, which the guest may see.
func waitForVCPUs(_ guest: SharedGuest, _ rate: TSCRate) -> APICIDSet {
    var ready = APICIDSet()
    for i in 0..<guest.apCount {
        let record = guest.apRecord(i)
        var waited: UInt32 = 0
        while mem_load32(record.statePointer) == APControlBlock.State.vmxRoot.rawValue && waited < 2000 {
            rate.wait(microseconds: 1000)
            waited += 1
        }
        let block = record.block.pointee
        switch mem_load32(record.statePointer) {
        case APControlBlock.State.guestReady.rawValue:
            ready.insert(block.apicID)
            logInfo("cpu \(block.index) (APIC ID \(block.apicID)): its vCPU waits for the guest's start-up IPI")
        case APControlBlock.State.failed.rawValue:
            reportAPFailure(Int(block.index), block.apicID, record)
        default:
            logWarn("cpu \(block.index) (APIC ID \(block.apicID)): its vCPU was not ready within 2 s; hidden from the guest")
        }
    }
    return ready
}
