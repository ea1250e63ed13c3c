// The passthrough platform's memory: the guest gets the machine's memory at
// guest-physical = host-physical, except the hypervisor's own: its image (at
// 1 MiB, as GRUB loaded it) and a pool of frames at the top of the highest
// RAM range below 4 GiB, from which every VMX structure, EPT table and bitmap
// is allocated. Below the pool lie the guest's ACPI root tables (reserved in
// its memory map) and a staging copy of the boot modules: GRUB leaves them
// wherever it likes, often where the guest kernel must be loaded. The loader
// places the guest below the staging area, so no copy overlaps its source;
// the staged copies become guest RAM once it is loaded.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// Bytes reserved for the guest's copy of the ACPI root tables: enough for
/// any firmware's (see `ACPIPassthrough.maximumOutputSize`).
let acpiCopyBytes: UInt64 = alignUp4K(UInt64(ACPIPassthrough.maximumOutputSize))
/// Boot/entry.asm maps physical x at this virtual address as well (x < 4 GiB):
/// the only way to point at physical 0.
let physicalAlias: UInt = 0x80_0000_0000

struct PassthroughMemory {
    var image: Range<UInt64>
    var pool: Range<UInt64>
    var acpiCopy: Range<UInt64>
    /// Where the modules and their strings were copied.
    var staging: Range<UInt64>

    /// What the hypervisor keeps: never mapped for the guest, reserved in its memory map.
    var hypervisorRanges: [4 of Range<UInt64>] { [image, pool, 0..<0, 0..<0] }
    var footprint: UInt64 { UInt64(image.count) + UInt64(pool.count) }

    /// The guest's memory as the hypervisor reaches it, through `physicalAlias`,
    /// up to `end` (at most 4 GiB: what the alias maps).
    func ram(end: UInt64) -> GuestRAM {
        GuestRAM(hostPhysical: 0, base: UnsafeMutableRawPointer(bitPattern: physicalAlias).unsafelyUnwrapped,
                 size: min(end, identityMappedEnd), holes: hypervisorRanges)
    }
}

enum PassthroughSetupError: Error {
    case noRoom(needed: UInt64)
    case bitmap
}

/// Picks the pool and staging area, moves the frame allocator into the pool,
/// and copies the kernel module, the other modules and their strings to the
/// staging area. `kernel` and `modules` then point at the copies.
func preparePassthroughMemory(_ memory: PhysicalMemoryMap, otherCPUs: Int, kernel: inout GuestModule, modules: inout GuestModules)
    throws(PassthroughSetupError) -> PassthroughMemory {
    let twoMiB: UInt64 = 2 << 20
    // Frames the hypervisor keeps for itself: room for every CPU bring-up starts.
    let poolBytes = PassthroughMemoryPlan.poolBytes(otherCPUs: otherCPUs, framesPerCPU: apFrames)
    var staged = alignUp4K(UInt64(kernel.bytes.count)) + alignUp4K(UInt64(kernel.commandLine.count) + 1)
    for i in 0..<modules.count {
        staged += alignUp4K(UInt64(modules[i].bytes.count)) + alignUp4K(UInt64(modules[i].commandLine.count) + 1)
    }
    let needed = poolBytes + acpiCopyBytes + staged
    // The highest usable range (free RAM below 4 GiB, outside the image, the
    // boot information and the modules) whose top can hold all three.
    var chosen: (pool: UInt64, low: UInt64)? = nil
    for index in 0..<memory.count {
        let range = memory[index]
        let poolStart = (range.end & ~(twoMiB - 1)) &- poolBytes
        guard range.end >= needed, poolStart >= range.start, poolStart - range.start >= acpiCopyBytes + staged else { continue }
        chosen = (poolStart, poolStart - acpiCopyBytes - staged)
    }
    guard let (poolStart, low) = chosen else { throw .noRoom(needed: needed) }
    let layout = PassthroughMemory(image: kernel_image_start()..<kernel_image_end(),
                                   pool: poolStart..<(poolStart + poolBytes),
                                   acpiCopy: (poolStart - acpiCopyBytes)..<poolStart,
                                   staging: low..<(poolStart - acpiCopyBytes))

    // The allocator's bitmap moves into the pool's first frame; its old
    // storage becomes guest RAM and is wiped.
    let oldStorage = frameBitmapStorage
    let frames = Int(poolBytes / frameSize)
    do {
        var bitmap = try FrameBitmap(base: poolStart, frameCount: frames,
                                     storage: KernelFrames().pointer(to: poolStart), capacity: Int(frameSize))
        bitmap.markFree(PhysicalMemoryMap.Range(start: poolStart + frameSize, end: layout.pool.upperBound))
        frameBitmap = bitmap
    } catch { throw .bitmap }
    frameBitmapStorage = poolStart..<(poolStart + frameSize)
    if !oldStorage.isEmpty {
        KernelFrames().pointer(to: oldStorage.lowerBound).initializeMemory(as: UInt8.self, repeating: 0, count: oldStorage.count)
    }
    KernelFrames().pointer(to: layout.acpiCopy.lowerBound).initializeMemory(as: UInt8.self, repeating: 0,
                                                                           count: Int(acpiCopyBytes))

    var at = low
    kernel = GuestModule(bytes: stage(kernel.bytes, terminated: false, at: &at),
                         commandLine: stage(kernel.commandLine, terminated: true, at: &at))
    var copies = GuestModules()
    for i in 0..<modules.count {
        let m = GuestModule(bytes: stage(modules[i].bytes, terminated: false, at: &at),
                            commandLine: stage(modules[i].commandLine, terminated: true, at: &at))
        try? copies.append(m)   // same count as before: cannot overflow
    }
    modules = copies
    return layout
}

/// Copies `bytes` (NUL-terminated if `terminated`) to physical `at`, which
/// moves on by whole frames; returns the copy (without the NUL).
func stage(_ bytes: UnsafeRawBufferPointer, terminated: Bool, at: inout UInt64) -> UnsafeRawBufferPointer {
    let target = KernelFrames().pointer(to: at)
    if let source = bytes.baseAddress { target.copyMemory(from: source, byteCount: bytes.count) }
    if terminated { target.storeBytes(of: 0, toByteOffset: bytes.count, as: UInt8.self) }
    at += alignUp4K(UInt64(bytes.count) + (terminated ? 1 : 0))
    return UnsafeRawBufferPointer(start: target, count: bytes.count)
}

func alignUp4K(_ value: UInt64) -> UInt64 { (value + frameSize - 1) & ~(frameSize - 1) }

/// The local APIC ID of this CPU: CPUID.0BH:EDX (x2APIC ID) where the leaf
/// exists, else CPUID.1:EBX[31:24]. SDM 11.4.6 "Local APIC ID".
func bootAPICID(_ hw: Hardware) -> UInt32 {
    if hw.cpuid(leaf: 0, subleaf: 0).eax >= 0xB, hw.cpuid(leaf: 0xB, subleaf: 0).ebx != 0 {
        return hw.cpuid(leaf: 0xB, subleaf: 0).edx
    }
    return hw.cpuid(leaf: 1, subleaf: 0).ebx >> 24
}

/// The machine's own reset: the PCI reset control register (0xCF9, a full
/// reset), then the keyboard controller's reset line. Used when a passthrough
/// guest resets in a way the hypervisor sees (a triple fault).
func resetMachine() -> Never {
    Serial.flush()
    port_out8(0xCF9, 0x02)
    port_out8(0xCF9, 0x0E)
    port_out8(0x64, 0xFE)
    cpu_halt_forever()
    while true {}
}

/// Physical memory below 4 GiB through `physicalAlias`, for reading the firmware's tables.
struct AliasReader: PhysicalMemoryReader {
    func bytes(at physical: UInt64, count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, physical < identityMappedEnd, UInt64(count) <= identityMappedEnd - physical else { return nil }
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: physicalAlias + UInt(physical)), count: count)
    }
}

/// The machine's memory as the passthrough guest gets it: the firmware's
/// memory map with the hypervisor's ranges reserved (returned), and the EPT
/// plan (MTRR-typed identity chunks without the hypervisor's ranges) mapped.
func planMachine(_ info: Multiboot2Info, _ layout: PassthroughMemory, _ hw: Hardware,
                 mapInto ept: inout ExtendedPageTable<KernelFrames>) -> E820Map {
    var firmware = E820Map()
    var overflow = false
    guard let regions = info.memoryMap else {
        logError("passthrough: the boot loader gave no memory map: the guest's cannot be built")
        powerOff(.badBootInfo)
    }
    regions.forEach { (region: Multiboot2Info.MemoryRegion) throws(Never) in
        do throws(E820Error) { try firmware.add(base: region.base, length: region.length, type: region.type) } catch { overflow = true }
    }
    if overflow { logWarn("passthrough: the firmware's memory map has more than \(E820Map.capacity) entries; the rest are left out") }
    var hypervisor = HypervisorRanges()
    try? hypervisor.append(layout.image)
    try? hypervisor.append(layout.pool)
    let bits = hw.addressSizes.physicalAddressBits
    let hasMTRRs = CPUIDLeaf1EDX(rawValue: hw.cpuid(leaf: CPUIDLeaf.features, subleaf: 0).edx).contains(.mtrr)
    let mtrr = hasMTRRs ? MTRRState.read({ hw.readMSR($0) }, physicalAddressBits: bits) : MTRRState.absent
    let plan: PassthroughMemoryPlan
    do { plan = try PassthroughMemoryPlan(firmware: firmware, hypervisor: hypervisor, mtrr: mtrr, physicalAddressBits: bits) } catch {
        logError("passthrough: the firmware's memory map cannot be used")
        powerOff(.badBootInfo)
    }
    var map = plan.guestMemoryMap
    do { try map.reserve(layout.acpiCopy, as: E820Entry.acpiReclaimable) } catch {
        logError("passthrough: the guest's memory map is full")
        powerOff(.badBootInfo)
    }
    logInfo("passthrough: EPT maps \(plan.mappedBytes >> 20) MiB of [0, \(hex: plan.top)) in \(plan.chunkCount) chunks typed by \(mtrr.isEnabled ? "the MTRRs" as StaticString : "the memory map (MTRRs off)"); \(plan.withheldBytes >> 10) KiB withheld")
    for index in 0..<map.count {
        logDebug("  guest e820 \(hex: map[index].base, width: 9)..\(hex: map[index].end, width: 9) type \(map[index].type)")
    }
    mapMachine(plan, &ept)
    return map
}

/// Writes the guest's ACPI root tables into `layout.acpiCopy` and returns
/// their RSDP: the firmware's tables, the MADT without the CPUs that have no
/// vCPU (this CPU and `virtualized` keep theirs). 0 (the guest then finds the
/// firmware's own) when there is no RSDP or the firmware's tables cannot be
/// copied, with a warning: the guest may then see every CPU.
func guestACPI(_ info: Multiboot2Info, _ layout: PassthroughMemory, _ hw: Hardware, _ virtualized: borrowing APICIDSet) -> UInt64 {
    guard let tag = info.acpiRSDP, let root = ACPIRoot(rsdp: tag.bytes) else {
        logWarn("passthrough: no ACPI RSDP from the boot loader; the guest looks for the firmware's own")
        return 0
    }
    let out = UnsafeMutableRawBufferPointer(start: KernelFrames().pointer(to: layout.acpiCopy.lowerBound),
                                            count: layout.acpiCopy.count)
    let apicID = bootAPICID(hw)
    do {
        let r = try ACPIPassthrough.build(root: root, memory: AliasReader(), bootAPICID: apicID, alsoKeep: virtualized, into: out,
                                          at: layout.acpiCopy.lowerBound)
        if r.madtFound {
            if r.processorsHidden > 0 {
                logInfo("passthrough: ACPI: the guest's RSDP at \(hex: r.rsdpAddress) lists the firmware's \(r.tableCount) tables; its MADT keeps \(r.processorsKept) processor entries (this CPU, APIC ID \(apicID), and those with a vCPU) and hides \(r.processorsHidden) of CPUs without a vCPU")
            } else {
                logInfo("passthrough: ACPI: the guest's RSDP at \(hex: r.rsdpAddress) lists the firmware's \(r.tableCount) tables; its MADT lists all \(r.processorsKept) processor entries, each CPU with a vCPU")
            }
        } else {
            logWarn("passthrough: ACPI: the firmware has no MADT; the guest's RSDP at \(hex: r.rsdpAddress) lists \(r.tableCount) tables")
        }
        return r.rsdpAddress
    } catch {
        logWarn("passthrough: ACPI: the firmware's tables cannot be copied (error detail \(hex: error.detail)); the guest gets the firmware's own and may see every CPU")
        return 0
    }
}

/// The identity EPT of the plan: every chunk read/write/execute with its memory type.
func mapMachine(_ plan: borrowing PassthroughMemoryPlan, _ ept: inout ExtendedPageTable<KernelFrames>) {
    do throws(EPTError) {
        try plan.forEachMapping { (start: UInt64, end: UInt64, type: EPTMemoryType) throws(EPTError) in
            try ept.map(guestPhysical: start, hostPhysical: start, size: end - start, permissions: .readWriteExecute,
                        memoryType: type)
        }
    } catch {
        logError("EPT: cannot map the machine's memory (\(frameBitmap?.freeFrames ?? 0) pool frames free)")
        powerOff(.hypervisorFailure)
    }
}
