// The kernel's entry from Boot/entry.asm: boot info, memory, then VMX.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// Largest boot information block accepted; GRUB's is a few KiB.
let bootInfoLimit = 64 << 10

@c(kmain)
func kmain(_ magic: UInt32, _ infoAddress: UInt64) {
    Serial.initialize()
    prepareCPU()
    // The screen is known only from the boot information: until then, serial.
    let info = parseBootInfo(magic, infoAddress)
    Screen.configure(info.framebuffer)
    Console.line("X86VCPU hypervisor (Embedded Swift), multiboot2 kernel")
    let options = KernelCommandLine(info.commandLine ?? UnsafeRawBufferPointer(start: nil, count: 0)) { warning in
        logWarn("command line: \(warning.message): '\(bytes: warning.token)' ignored")
    }
    Console.level = options.logLevel
    Screen.enabled = !options.noscreen
    if let line = info.commandLine { logInfo("command line: '\(bytes: line)'") }
    if let loader = info.bootLoaderName { logDebug("boot loader: \(bytes: loader)") }

    if options.isTest("ud2") {
        logInfo("self-test: executing ud2")
        cpu_ud2()
    }

    let memory: PhysicalMemoryMap
    do {
        memory = try initializeFrameAllocator(info)
    } catch {
        logError("memory map: \(error.message)")
        powerOff(.badBootInfo)
    }
    reportMemory(info, memory)

    guard let vmx = detectVMX() else { powerOff(.vmxUnavailable) }
    reportVMX(vmx)
    runGuest(info, options, vmx, memory)
}

func parseBootInfo(_ magic: UInt32, _ address: UInt64) -> Multiboot2Info {
    do throws(BootInfoError) {
        try Multiboot2Info.checkMagic(magic)
        guard address != 0, address < identityMappedEnd,
              let base = UnsafeRawPointer(bitPattern: UInt(address)) else {
            throw BootInfoError(.bufferTooSmall, at: 0)
        }
        // Bound the buffer before trusting total_size: the parser checks the rest.
        let claimed = Int(base.loadUnaligned(as: UInt32.self))
        let buffer = UnsafeRawBufferPointer(start: base, count: min(max(claimed, 8), bootInfoLimit))
        return try Multiboot2Info(buffer, physicalAddress: address)
    } catch {
        logError("boot information: \(error.message) (byte offset \(error.offset), at \(hex: address))")
        powerOff(.badBootInfo)
    }
}

func reportMemory(_ info: Multiboot2Info, _ memory: PhysicalMemoryMap) {
    if let map = info.memoryMap {
        logInfo("memory map: \(map.isEFI ? "EFI (tag 17)" as StaticString : "multiboot (tag 6)"), \(map.count) entries")
        map.forEach { region in
            logDebug("  \(map.isEFI ? "efi " as StaticString : "e820") \(hex: region.base, width: 9)..\(hex: region.base &+ region.length, width: 9) type \(region.type) (raw \(region.efiType ?? region.type))")
        }
    }
    if let table = info.efiSystemTable { logInfo("EFI system table at \(hex: table) (runtime services unused)") }
    let frames = frameBitmap?.freeFrames ?? 0
    logInfo("memory: \(memory.usableBytes >> 20) MiB usable of \(memory.totalAvailableBytes >> 20) MiB available, \(frames) free frames")
    info.forEachModule { module in
        logInfo("module \(hex: module.start)..\(hex: module.end) (\(module.size) bytes) '\(bytes: module.string)'")
    }
    if let fb = info.framebuffer {
        logDebug("framebuffer \(hex: fb.address) \(fb.width)x\(fb.height)x\(fb.bitsPerPixel)")
    }
    if let rsdp = info.acpiRSDP {
        logInfo("ACPI RSDP (copy) at \(hex: rsdp.physicalAddress), revision \(rsdp.revision), RSDT \(hex: rsdp.rsdtAddress), XSDT \(hex: rsdp.xsdtAddress ?? 0), checksum valid: \(rsdp.checksumValid)")
    }
}

/// The host never takes device interrupts (external interrupts reach the
/// guest's side through VM exits), so the legacy PICs are set to vectors
/// 0x20-0x2F (not the BIOS's 0x08, which are exceptions) and masked; and
/// CR4.OSXSAVE is set so the guest's XSETBV can be carried out for it.
func prepareCPU() {
    // 8259A initialization: ICW1 (edge, cascade, ICW4), ICW2 (base), ICW3
    // (slave on IRQ 2), ICW4 (8086 mode); then OCW1 masks everything.
    port_out8(0x20, 0x11); port_out8(0xA0, 0x11)
    port_out8(0x21, KernelPlatform.picBase); port_out8(0xA1, KernelPlatform.picBase + 8)
    port_out8(0x21, 0x04); port_out8(0xA1, 0x02)
    port_out8(0x21, 0x01); port_out8(0xA1, 0x01)
    port_out8(0x21, 0xFF)
    port_out8(0xA1, 0xFF)
    if CPUIDLeaf1ECX(rawValue: cpuid(CPUIDLeaf.features).ecx).contains(.xsave) {
        cpu_write_cr4(cpu_read_cr4() | CR4Bits.osxsave.rawValue)
    }
}
