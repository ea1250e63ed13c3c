// Multiboot (version 1) guests. The Multiboot Specification 0.6.96:
// "3.1 OS image format" (the header and its a.out-kludge address fields),
// "3.2 Machine state", "3.3 Boot information format".

import X86Arch
import VMX
import X86VCPU

/// A multiboot header found in the first 8192 bytes, 4-byte aligned, with a good checksum.
struct MultibootHeader {
    static let magic: UInt32 = 0x1BAD_B002
    /// EAX at entry.
    static let bootloaderMagic: UInt32 = 0x2BAD_B002
    static let searchLimit = 8192
    /// Bits 0-15 are requirements; this loader meets 0 (page-aligned modules),
    /// 1 (memory information) and 2 (video mode: the guest gets no video
    /// information, as from GRUB in text mode without a video table).
    static let metRequirements: UInt32 = 0x0007
    static let addressFields: UInt32 = 1 << 16

    let offset: Int
    let flags: UInt32

    /// The first valid header, and the offset of the first magic whose checksum failed.
    static func find(_ image: ImageReader) -> (header: MultibootHeader?, badChecksumOffset: Int?) {
        var bad: Int? = nil
        var at = 0
        while at + 12 <= min(image.count, searchLimit) {
            defer { at += 4 }
            guard let magic = try? image.load(at, as: UInt32.self), magic == Self.magic,
                  let flags = try? image.load(at + 4, as: UInt32.self),
                  let checksum = try? image.load(at + 8, as: UInt32.self) else { continue }
            if magic &+ flags &+ checksum == 0 { return (MultibootHeader(offset: at, flags: flags), bad) }
            if bad == nil { bad = at }
        }
        return (nil, bad)
    }

    /// How the image is loaded: the address fields when flags bit 16 is set
    /// (as GRUB does, even for an ELF), else the ELF program headers.
    func layout(_ image: ImageReader, elf: ELFFile?) throws(GuestImageError) -> MultibootLayout {
        guard flags & 0xFFFF & ~Self.metRequirements == 0 else {
            throw GuestImageError(.multibootUnsupportedFlags, detail: UInt64(flags))
        }
        if flags & Self.addressFields != 0 { return .addresses(try MultibootAddresses(image, header: offset)) }
        guard let elf else { throw GuestImageError(.multibootWithoutAddresses, detail: UInt64(offset)) }
        return .elf(elf)
    }
}

enum MultibootLayout {
    case elf(ELFFile)
    case addresses(MultibootAddresses)
}

/// The a.out-kludge fields (header offsets 12-28), checked against the file.
struct MultibootAddresses: Equatable {
    /// Where in the file the loaded range starts.
    let fileOffset: UInt64
    let loadAddress: UInt64
    let loadSize: UInt64
    /// End of the bss (load end when there is none).
    let memoryEnd: UInt64
    let entry: UInt64

    init(_ image: ImageReader, header: Int) throws(GuestImageError) {
        let headerAddress = UInt64(try image.load(header + 12, as: UInt32.self))
        let loadAddress = UInt64(try image.load(header + 16, as: UInt32.self))
        let loadEnd = UInt64(try image.load(header + 20, as: UInt32.self))
        let bssEnd = UInt64(try image.load(header + 24, as: UInt32.self))
        entry = UInt64(try image.load(header + 28, as: UInt32.self))
        let bad = GuestImageError(.multibootBadAddresses, detail: UInt64(header))
        // The header's own offset in the file locates load_addr in the file.
        guard loadAddress <= headerAddress, headerAddress - loadAddress <= UInt64(header) else { throw bad }
        fileOffset = UInt64(header) - (headerAddress - loadAddress)
        // load_end_addr 0: load to the end of the file.
        guard loadEnd == 0 || loadEnd >= loadAddress else { throw bad }
        loadSize = loadEnd == 0 ? UInt64(image.count) - fileOffset : loadEnd - loadAddress
        guard image.contains(fileOffset, loadSize) else {
            throw GuestImageError(.truncated, detail: fileOffset + loadSize)
        }
        // bss_end_addr 0: no bss.
        guard bssEnd == 0 || bssEnd >= loadAddress + loadSize else { throw bad }
        self.loadAddress = loadAddress
        memoryEnd = bssEnd == 0 ? loadAddress + loadSize : bssEnd
    }
}

enum MultibootGuest {
    /// Boot loader name in the info structure (flags bit 9).
    static let loaderName: StaticString = "X86VCPU"

    /// Loads the kernel (ELF segments or the address-field range), the modules
    /// page-aligned at the top of RAM below 4 GiB, and the multiboot information
    /// at `GuestLayout.bootInfo`. Entry: 32-bit protected mode, EAX = 0x2BADB002,
    /// EBX = the information structure.
    static func load(_ image: ImageReader, layout: MultibootLayout, kernel: GuestModule, modules: GuestModules,
                     ram: GuestRAM) throws(GuestImageError) -> LoadedGuest {
        try GuestLoader.checkRAM(ram)
        let kernelRange: Range<UInt64>
        let entry: UInt64
        switch layout {
        case .elf(let elf):
            kernelRange = try elf.loadSegments(into: ram)
            entry = elf.entry
        case .addresses(let a):
            try GuestLoader.checkKernelRange(a.loadAddress, a.memoryEnd - a.loadAddress, ram: ram)
            _ = ram.copy(try image.slice(a.fileOffset, a.loadSize), to: a.loadAddress)
            ram.zero(a.loadAddress + a.loadSize, count: a.memoryEnd - a.loadAddress - a.loadSize)
            kernelRange = a.loadAddress..<a.memoryEnd
            entry = a.entry
        }
        try GuestLoader.checkEntry(entry, ram: ram)
        GuestLoader.prepareLoaderArea(ram)
        let commandLineLength = try GuestLoader.writeCommandLine(kernel.commandLine, ram: ram, limit: 4095)
        // mod_end is a 32-bit field: every module ends below 4 GiB - 4 KiB.
        let placed = try GuestLoader.placeModules(modules, ram: ram, limit: (1 << 32) - 4096, alignment: 4096,
                                                  avoiding: kernelRange)
        var strings = GuestLoader.StringArea()
        for index in 0..<modules.count {
            let at = GuestLayout.moduleList + UInt64(index * 16)
            let moduleStart = placed.lowerBound + GuestLoader.moduleOffset(modules, index, alignment: 4096)
            ram.store(at, UInt32(truncatingIfNeeded: moduleStart))
            ram.store(at + 4, UInt32(truncatingIfNeeded: moduleStart + UInt64(modules[index].bytes.count)))
            ram.store(at + 8, UInt32(truncatingIfNeeded: try strings.append(modules[index].commandLine, ram: ram)))
            ram.store(at + 12, UInt32(0))
        }
        // The memory map: each entry preceded by its size (20), mmap_addr at the size field.
        for index in 0..<GuestLayout.memoryMapEntries {
            let entry = GuestLayout.memoryMapEntry(index, ramSize: ram.size)
            let at = GuestLayout.memoryMap + UInt64(index * 24)
            ram.store(at, UInt32(20))
            ram.store(at + 4, entry.base)
            ram.store(at + 12, entry.length)
            ram.store(at + 20, entry.type)
        }
        let name = UnsafeRawBufferPointer(start: loaderName.utf8Start, count: loaderName.utf8CodeUnitCount)
        _ = ram.copy(name, to: GuestLayout.loaderName)
        ram.store(GuestLayout.loaderName + UInt64(name.count), UInt8(0))

        let info = GuestLayout.bootInfo
        ram.store(info + MultibootInfo.flags, MultibootInfo.memory | MultibootInfo.commandLine | MultibootInfo.modules
                  | MultibootInfo.memoryMap | MultibootInfo.bootLoaderName)
        ram.store(info + MultibootInfo.memLower, UInt32(GuestLayout.lowMemoryEnd / 1024))
        ram.store(info + MultibootInfo.memUpper,
                  UInt32(min((ram.size - GuestLayout.highMemoryStart) / 1024, UInt64(UInt32.max))))
        ram.store(info + MultibootInfo.cmdline, UInt32(GuestLayout.commandLine))
        ram.store(info + MultibootInfo.modsCount, UInt32(modules.count))
        ram.store(info + MultibootInfo.modsAddr, UInt32(GuestLayout.moduleList))
        ram.store(info + MultibootInfo.mmapLength, UInt32(GuestLayout.memoryMapEntries * 24))
        ram.store(info + MultibootInfo.mmapAddr, UInt32(GuestLayout.memoryMap))
        ram.store(info + MultibootInfo.bootLoaderNameAddr, UInt32(GuestLayout.loaderName))

        var start = GuestStart(mode: .protected32, rip: entry)
        GuestLoader.setFlatSegments(&start, code: GuestLayout.code32Selector)
        start.registers.rax = UInt64(MultibootHeader.bootloaderMagic)
        start.registers.rbx = info
        return LoadedGuest(format: .multiboot1, start: start, kernelRange: kernelRange, modulesRange: placed,
                           moduleCount: modules.count, bootInfo: info, commandLineLength: commandLineLength)
    }
}

/// "3.3 Boot information format": field offsets and flags bits.
enum MultibootInfo {
    static let flags: UInt64 = 0
    static let memLower: UInt64 = 4
    static let memUpper: UInt64 = 8
    static let cmdline: UInt64 = 16
    static let modsCount: UInt64 = 20
    static let modsAddr: UInt64 = 24
    static let mmapLength: UInt64 = 44
    static let mmapAddr: UInt64 = 48
    static let bootLoaderNameAddr: UInt64 = 64

    static let memory: UInt32 = 1 << 0
    static let commandLine: UInt32 = 1 << 2
    static let modules: UInt32 = 1 << 3
    static let memoryMap: UInt32 = 1 << 6
    static let bootLoaderName: UInt32 = 1 << 9
}
