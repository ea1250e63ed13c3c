// Linux guests: the bzImage through the 64-bit boot protocol, and any ELF with
// a Xen PVH entry (Linux's vmlinux among them) through PVH.
// Linux Documentation/arch/x86/boot.rst "The Linux/x86 Boot Protocol" and
// "64-bit Boot Protocol"; arch/x86/include/uapi/asm/bootparam.h for the offsets;
// Xen public/arch-x86/hvm/start_info.h and docs/misc/pvh.pandoc for PVH.

import X86Arch
import VMX
import X86VCPU

/// Offsets in the bzImage file, which are also the offsets in `struct boot_params`
/// (the setup header sits at 0x1F1 in both).
enum BootParams {
    static let size = 4096
    static let extRamdiskImage = 0x0C0
    static let extRamdiskSize = 0x0C4
    static let extCmdLinePtr = 0x0C8
    static let e820Entries = 0x1E8
    static let setupHeader = 0x1F1
    static let setupSects = 0x1F1
    static let bootFlag = 0x1FE
    static let jump = 0x200
    static let header = 0x202
    static let version = 0x206
    static let typeOfLoader = 0x210
    static let loadFlags = 0x211
    static let code32Start = 0x214
    static let ramdiskImage = 0x218
    static let ramdiskSize = 0x21C
    static let cmdLinePtr = 0x228
    static let initrdAddrMax = 0x22C
    static let kernelAlignment = 0x230
    static let relocatableKernel = 0x234
    static let xloadflags = 0x236
    static let cmdlineSize = 0x238
    static let prefAddress = 0x258
    static let initSize = 0x260
    /// The end of the room for the setup header (edd_mbr_sig_buffer follows).
    static let setupHeaderLimit = 0x290
    static let e820Table = 0x2D0
    static let e820EntrySize = 20
    /// E820_MAX_ENTRIES_ZEROPAGE.
    static let e820Capacity = 128
    /// acpi_rsdp_addr (boot protocol 2.14).
    static let acpiRSDPAddress = 0x070

    static let loadedHigh: UInt8 = 1 << 0
    static let xlfKernel64: UInt16 = 1 << 0
    /// "Undefined" boot loader ID (boot.rst, type_of_loader).
    static let undefinedLoader: UInt8 = 0xFF
    /// The 64-bit entry is 0x200 bytes into the protected-mode kernel.
    static let entry64Offset: UInt64 = 0x200
}

/// The bzImage setup header fields the loader uses, validated.
struct LinuxSetupHeader {
    /// The first protocol with xloadflags, hence with a declared 64-bit entry.
    static let minimumVersion: UInt16 = 0x020C

    let setupSectors: Int
    let version: UInt16
    let relocatable: Bool
    let kernelAlignment: UInt64
    let preferredAddress: UInt64
    let initSize: UInt64
    let initrdAddressMax: UInt64
    let commandLineSize: UInt64
    /// One past the last setup-header byte: 0x202 + the byte at 0x201.
    let headerEnd: Int

    /// The protected-mode kernel starts after the boot sector and the setup sectors.
    var kernelOffset: Int { (setupSectors + 1) * 512 }

    /// Boot flag 0xAA55 at 0x1FE and "HdrS" at 0x202.
    static func isBzImage(_ image: ImageReader) -> Bool {
        (try? image.load(BootParams.bootFlag, as: UInt16.self)) == 0xAA55
            && (try? image.load(BootParams.header, as: UInt32.self)) == 0x5372_6448
    }

    init(_ image: ImageReader) throws(GuestImageError) {
        let sectors = Int(try image.load(BootParams.setupSects, as: UInt8.self))
        setupSectors = sectors == 0 ? 4 : sectors
        // The setup sectors and at least the 64-bit entry must be in the file.
        guard image.count >= (setupSectors + 1) * 512 + Int(BootParams.entry64Offset) else {
            throw GuestImageError(.truncated, detail: UInt64((setupSectors + 1) * 512) + BootParams.entry64Offset)
        }
        version = try image.load(BootParams.version, as: UInt16.self)
        let loadFlags = try image.load(BootParams.loadFlags, as: UInt8.self)
        let xloadflags = try image.load(BootParams.xloadflags, as: UInt16.self)
        guard version >= Self.minimumVersion, xloadflags & BootParams.xlfKernel64 != 0,
              loadFlags & BootParams.loadedHigh != 0 else {
            throw GuestImageError(.bzImageTooOld, detail: UInt64(version))
        }
        relocatable = try image.load(BootParams.relocatableKernel, as: UInt8.self) != 0
        kernelAlignment = UInt64(try image.load(BootParams.kernelAlignment, as: UInt32.self))
        preferredAddress = try image.load(BootParams.prefAddress, as: UInt64.self)
        initSize = UInt64(try image.load(BootParams.initSize, as: UInt32.self))
        initrdAddressMax = UInt64(try image.load(BootParams.initrdAddrMax, as: UInt32.self))
        commandLineSize = UInt64(try image.load(BootParams.cmdlineSize, as: UInt32.self))
        headerEnd = min(0x202 + Int(try image.load(BootParams.jump + 1, as: UInt8.self)), BootParams.setupHeaderLimit)
    }
}

enum LinuxBoot {
    /// Loads a bzImage: the protected-mode kernel at its load address, the zero
    /// page at `GuestLayout.bootInfo`, the initrd (all extra modules, concatenated
    /// 4-byte aligned as GRUB does) at the top of RAM below initrd_addr_max.
    /// Entry: 64-bit mode at load + 0x200, RSI = boot_params, identity paging.
    static func loadBzImage(_ image: ImageReader, kernel: GuestModule, modules: GuestModules, ram: GuestRAM,
                            machine: MachineDescription, ownsFirstPage: Bool) throws(GuestImageError) -> LoadedGuest {
        let header = try LinuxSetupHeader(image)
        try GuestLoader.checkRAM(ram)
        let body = try image.slice(UInt64(header.kernelOffset), UInt64(image.count - header.kernelOffset))
        let size = UInt64(body.count)
        let footprint = max(header.initSize, size)
        let load: UInt64
        let kernelRange: Range<UInt64>
        if header.relocatable {
            // pref_address if the kernel fits there, else the first aligned address above 1 MiB.
            let preferred = GuestLayout.alignUp(header.preferredAddress, header.kernelAlignment)
            let lowest = GuestLayout.alignUp(GuestLayout.highMemoryStart, header.kernelAlignment)
            load = preferred >= lowest && GuestLayout.fits(preferred, footprint, below: ram.size) ? preferred : lowest
            guard GuestLayout.fits(load, footprint, below: ram.size) else {
                throw GuestImageError(.imageTooLarge, detail: load &+ footprint)
            }
            kernelRange = load..<(load + footprint)
        } else {
            // Loaded at 1 MiB; it decompresses itself to pref_address (LOAD_PHYSICAL_ADDR).
            load = GuestLayout.highMemoryStart
            let runAt = max(header.preferredAddress, load)
            guard GuestLayout.fits(load, size, below: ram.size), GuestLayout.fits(runAt, header.initSize, below: ram.size) else {
                throw GuestImageError(.imageTooLarge, detail: max(load + size, runAt &+ header.initSize))
            }
            kernelRange = load..<max(load + size, runAt + header.initSize)
        }
        try GuestLoader.checkClearOfHoles(kernelRange.lowerBound, kernelRange.upperBound - kernelRange.lowerBound, ram: ram)
        guard machine.memoryMap.count <= BootParams.e820Capacity else {
            throw GuestImageError(.memoryMapTooLarge, detail: UInt64(machine.memoryMap.count))
        }

        GuestLoader.prepareLoaderArea(ram, ownsFirstPage: ownsFirstPage)
        _ = ram.copy(body, to: load)
        let commandLineLength = try GuestLoader.writeCommandLine(kernel.commandLine, ram: ram,
                                                                 limit: min(header.commandLineSize, 4095))
        let initrdLimit = header.initrdAddressMax + 1
        let initrd = try GuestLoader.placeModules(modules, ram: ram, limit: initrdLimit, alignment: 4,
                                                  avoiding: kernelRange)

        // The zero page: zeroed, the setup header copied from the image, then the loader's fields.
        let zeroPage = GuestLayout.bootInfo
        ram.zero(zeroPage, count: UInt64(BootParams.size))
        _ = ram.copy(try image.slice(UInt64(BootParams.setupHeader), UInt64(header.headerEnd - BootParams.setupHeader)),
                     to: zeroPage + UInt64(BootParams.setupHeader))
        ram.store(zeroPage + UInt64(BootParams.typeOfLoader), BootParams.undefinedLoader)
        ram.store(zeroPage + UInt64(BootParams.loadFlags), BootParams.loadedHigh)
        ram.store(zeroPage + UInt64(BootParams.code32Start), UInt32(truncatingIfNeeded: load))
        ram.store(zeroPage + UInt64(BootParams.cmdLinePtr), UInt32(GuestLayout.commandLine))
        ram.store(zeroPage + UInt64(BootParams.extCmdLinePtr), UInt32(0))
        ram.store(zeroPage + UInt64(BootParams.ramdiskImage), UInt32(truncatingIfNeeded: initrd.lowerBound))
        ram.store(zeroPage + UInt64(BootParams.ramdiskSize), UInt32(truncatingIfNeeded: initrd.upperBound - initrd.lowerBound))
        ram.store(zeroPage + UInt64(BootParams.extRamdiskImage), UInt32(truncatingIfNeeded: initrd.lowerBound >> 32))
        ram.store(zeroPage + UInt64(BootParams.extRamdiskSize), UInt32(truncatingIfNeeded: (initrd.upperBound - initrd.lowerBound) >> 32))
        ram.store(zeroPage + UInt64(BootParams.e820Entries), UInt8(machine.memoryMap.count))
        try GuestLoader.writeMemoryMap(machine.memoryMap, at: zeroPage + UInt64(BootParams.e820Table),
                                       stride: BootParams.e820EntrySize, capacity: BootParams.e820Capacity, ram: ram)
        ram.store(zeroPage + UInt64(BootParams.acpiRSDPAddress), machine.acpiRSDP)

        var start = GuestStart(mode: .long64, rip: load + BootParams.entry64Offset)
        GuestLoader.setFlatSegments(&start, code: GuestLayout.code64Selector)
        start.cr3 = GuestLayout.pml4
        start.registers.rsi = zeroPage
        return LoadedGuest(format: .linux, start: start, kernelRange: kernelRange, modulesRange: initrd,
                           moduleCount: modules.count, bootInfo: zeroPage, commandLineLength: commandLineLength)
    }

    /// Loads a PVH ELF: its PT_LOAD segments at p_paddr, hvm_start_info (version 1)
    /// at `GuestLayout.bootInfo` with the memory map and one hvm_modlist_entry per
    /// module (page-aligned at the top of RAM below 4 GiB).
    /// Entry: 32-bit protected mode, paging off, at the PHYS32 entry, EBX = start_info.
    static func loadPVH(_ elf: ELFFile, entry: UInt32, kernel: GuestModule, modules: GuestModules, ram: GuestRAM,
                        machine: MachineDescription, ownsFirstPage: Bool) throws(GuestImageError) -> LoadedGuest {
        try GuestLoader.checkRAM(ram)
        let mapCapacity = Int(GuestLayout.moduleList - GuestLayout.memoryMap) / PVHStartInfo.memoryMapEntrySize
        let memoryMap = try GuestLoader.fitting(machine.memoryMap, into: mapCapacity)
        let kernelRange = try elf.loadSegments(into: ram)
        try GuestLoader.checkEntry(UInt64(entry), ram: ram)
        GuestLoader.prepareLoaderArea(ram, ownsFirstPage: ownsFirstPage)
        let commandLineLength = try GuestLoader.writeCommandLine(kernel.commandLine, ram: ram, limit: 4095)
        let placed = try GuestLoader.placeModules(modules, ram: ram, limit: 1 << 32, alignment: 4096,
                                                  avoiding: kernelRange)
        var strings = GuestLoader.StringArea()
        for index in 0..<modules.count {
            let at = GuestLayout.moduleList + UInt64(index * 32)
            ram.store(at, placed.lowerBound + GuestLoader.moduleOffset(modules, index, alignment: 4096))
            ram.store(at + 8, UInt64(modules[index].bytes.count))
            ram.store(at + 16, try strings.append(modules[index].commandLine, ram: ram))
            ram.store(at + 24, UInt64(0))
        }
        try GuestLoader.writeMemoryMap(memoryMap, at: GuestLayout.memoryMap, stride: PVHStartInfo.memoryMapEntrySize,
                                       capacity: mapCapacity, ram: ram)
        // struct hvm_start_info.
        let info = GuestLayout.bootInfo
        ram.store(info, PVHStartInfo.magic)
        ram.store(info + 4, PVHStartInfo.version)
        ram.store(info + 8, UInt32(0))
        ram.store(info + 12, UInt32(modules.count))
        ram.store(info + 16, modules.count > 0 ? GuestLayout.moduleList : 0)
        ram.store(info + 24, GuestLayout.commandLine)
        ram.store(info + 32, machine.acpiRSDP)
        ram.store(info + 40, GuestLayout.memoryMap)
        ram.store(info + 48, UInt32(memoryMap.count))
        ram.store(info + 52, UInt32(0))

        var start = GuestStart(mode: .protected32, rip: UInt64(entry))
        GuestLoader.setFlatSegments(&start, code: GuestLayout.code32Selector)
        start.registers.rbx = info
        return LoadedGuest(format: .pvh(entry: entry), start: start, kernelRange: kernelRange, modulesRange: placed,
                           moduleCount: modules.count, bootInfo: info, commandLineLength: commandLineLength)
    }
}

/// `struct hvm_start_info` constants (start_info.h).
enum PVHStartInfo {
    /// "xEn3" with the 0x80 bit of the "E" set.
    static let magic: UInt32 = 0x336E_C578
    static let version: UInt32 = 1
    static let size = 56
    static let moduleEntrySize = 32
    static let memoryMapEntrySize = 24
}
