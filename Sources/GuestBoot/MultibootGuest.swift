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
    /// page-aligned at the top of RAM below 4 GiB, and the loader's structures
    /// (multiboot information, memory map, module list, strings, GDT, stack)
    /// wherever `MultibootStructures.place` finds room outside the image and the
    /// modules. Entry: 32-bit protected mode, EAX = 0x2BADB002, EBX = the
    /// information structure.
    ///
    /// The image may lie anywhere the guest's memory map calls RAM: [0, 0x9F000)
    /// (the IVT and BIOS data area included: the guest starts in protected mode
    /// and has no BIOS that would need them) or [1 MiB, RAM size). A range that
    /// touches [0x9F000, 1 MiB), which the memory map reports reserved, is
    /// refused with `.segmentOutsideGuestRAM` (detail: the range's start), as
    /// one past the end of RAM is. Below 64 KiB, what the image does not cover
    /// reads as zero.
    static func load(_ image: ImageReader, layout: MultibootLayout, kernel: GuestModule, modules: GuestModules,
                     ram: GuestRAM, machine: MachineDescription) throws(GuestImageError) -> LoadedGuest {
        try GuestLoader.checkRAM(ram)
        let occupied = MultibootImageRanges(layout: layout)
        // Every range is checked before guest RAM is written.
        let kernelRange = try occupied.check(image, ram: ram)
        let entry: UInt64
        switch layout {
        case .elf(let elf): entry = elf.entry
        case .addresses(let a): entry = a.entry
        }
        try GuestLoader.checkEntry(entry, ram: ram)
        // The IVT, BIOS data area and the first 64 KiB read as zero where the
        // image does not go; an image clear of them gets the shared loader area
        // (GDT and identity page tables) exactly as before.
        let lowFree = try occupied.isFree(0..<GuestLayout.loaderEnd)
        if lowFree { GuestLoader.prepareLoaderArea(ram) } else { ram.zero(0, count: GuestLayout.loaderEnd) }
        try occupied.copy(image, into: ram)
        // mod_end is a 32-bit field: every module ends below 4 GiB - 4 KiB.
        let placed = try GuestLoader.placeModules(modules, ram: ram, limit: (1 << 32) - 4096, alignment: 4096,
                                                  avoiding: kernelRange)
        let at = try MultibootStructures.place(avoiding: occupied, modules: placed, ram: ram)
        if at != .classic { ram.zero(at.start, count: at.end - at.start) }
        // prepareLoaderArea wrote the GDT at 0x1000 when the low area was free.
        if !lowFree {
            for index in 0..<GuestLoader.gdtEntries.count {
                ram.store(at.gdt + UInt64(index * 8), GuestLoader.gdtEntries[index])
            }
        }
        let commandLineLength = try writeString(kernel.commandLine, at: at.commandLine, capacity: 4096, ram: ram,
                                                limit: 4095)
        var stringsUsed: UInt64 = 0
        for index in 0..<modules.count {
            let entryAt = at.moduleList + UInt64(index * 16)
            let moduleStart = placed.lowerBound + GuestLoader.moduleOffset(modules, index, alignment: 4096)
            ram.store(entryAt, UInt32(truncatingIfNeeded: moduleStart))
            ram.store(entryAt + 4, UInt32(truncatingIfNeeded: moduleStart + UInt64(modules[index].bytes.count)))
            let string = at.moduleStrings + stringsUsed
            let length = try writeString(modules[index].commandLine, at: string,
                                         capacity: UInt64(GuestLayout.moduleStringsCapacity) - stringsUsed, ram: ram,
                                         limit: UInt64(GuestLayout.moduleStringsCapacity))
            stringsUsed += UInt64(length) + 1
            ram.store(entryAt + 8, UInt32(truncatingIfNeeded: string))
            ram.store(entryAt + 12, UInt32(0))
        }
        // The memory map: each entry preceded by its size (20), mmap_addr at the size field.
        let capacity = Int(at.moduleList - at.memoryMap) / 24
        let map = try GuestLoader.fitting(machine.memoryMap, into: capacity)
        try GuestLoader.writeMemoryMap(map, at: at.memoryMap, stride: 24, capacity: capacity, prefix: 20, ram: ram)
        let name = UnsafeRawBufferPointer(start: loaderName.utf8Start, count: loaderName.utf8CodeUnitCount)
        _ = ram.copy(name, to: at.loaderName)
        ram.store(at.loaderName + UInt64(name.count), UInt8(0))

        let info = at.info
        ram.store(info + MultibootInfo.flags, MultibootInfo.memory | MultibootInfo.commandLine | MultibootInfo.modules
                  | MultibootInfo.memoryMap | MultibootInfo.bootLoaderName)
        // mem_lower: RAM from 0 (at most 640 KiB); mem_upper: RAM from 1 MiB up to the first hole.
        let lower = Self.ramRun(map, from: 0, limit: 0xA0000)
        let upper = Self.ramRun(map, from: GuestLayout.highMemoryStart, limit: UInt64.max)
        ram.store(info + MultibootInfo.memLower, UInt32(lower / 1024))
        ram.store(info + MultibootInfo.memUpper, UInt32(min(upper / 1024, UInt64(UInt32.max))))
        ram.store(info + MultibootInfo.cmdline, UInt32(at.commandLine))
        ram.store(info + MultibootInfo.modsCount, UInt32(modules.count))
        ram.store(info + MultibootInfo.modsAddr, UInt32(at.moduleList))
        ram.store(info + MultibootInfo.mmapLength, UInt32(map.count * 24))
        ram.store(info + MultibootInfo.mmapAddr, UInt32(at.memoryMap))
        ram.store(info + MultibootInfo.bootLoaderNameAddr, UInt32(at.loaderName))

        var start = GuestStart(mode: .protected32, rip: entry)
        GuestLoader.setFlatSegments(&start, code: GuestLayout.code32Selector)
        start.gdtrBase = at.gdt
        start.rsp = at.stackTop
        start.registers.rax = UInt64(MultibootHeader.bootloaderMagic)
        start.registers.rbx = info
        return LoadedGuest(format: .multiboot1, start: start, kernelRange: kernelRange, modulesRange: placed,
                           moduleCount: modules.count, bootInfo: info, commandLineLength: commandLineLength)
    }

    /// Bytes of RAM from `start` on in `map` (through adjacent RAM entries), at most up to `limit`.
    static func ramRun(_ map: E820Map, from start: UInt64, limit: UInt64) -> UInt64 {
        var end = start
        for index in 0..<map.count where map[index].type == E820Entry.ram {
            if map[index].base <= end && map[index].end > end { end = map[index].end }
        }
        return min(end, limit) - min(start, min(end, limit))
    }

    /// Writes `line` up to its first NUL, NUL-terminated, at `gpa`:
    /// `.commandLineTooLong` (detail: `limit`) when it and its NUL need more than
    /// `capacity` bytes or it is longer than `limit`. Returns its length.
    static func writeString(_ line: UnsafeRawBufferPointer, at gpa: UInt64, capacity: UInt64, ram: GuestRAM,
                            limit: UInt64) throws(GuestImageError) -> Int {
        let length = GuestLoader.stringLength(line)
        guard UInt64(length) <= limit, UInt64(length) < capacity else {
            throw GuestImageError(.commandLineTooLong, detail: limit)
        }
        _ = ram.copy(UnsafeRawBufferPointer(rebasing: line[0..<length]), to: gpa)
        ram.store(gpa + UInt64(length), UInt8(0))
        return length
    }
}

/// The guest-physical ranges a multiboot image occupies: each PT_LOAD segment
/// (p_paddr ..< p_paddr + p_memsz) or the address-field range including its bss.
struct MultibootImageRanges {
    let layout: MultibootLayout

    /// Calls `body` with each range (checked by `check` first: none overflows).
    func forEach(_ body: (Range<UInt64>) throws(GuestImageError) -> Void) throws(GuestImageError) {
        switch layout {
        case .elf(let elf):
            for index in 0..<elf.programHeaderCount {
                let segment = try elf.programHeader(index)
                guard segment.type == ELFProgramHeader.load, segment.memorySize > 0 else { continue }
                try body(segment.physicalAddress..<(segment.physicalAddress &+ segment.memorySize))
            }
        case .addresses(let a):
            if a.memoryEnd > a.loadAddress { try body(a.loadAddress..<a.memoryEnd) }
        }
    }

    /// Whether no range overlaps `range`.
    func isFree(_ range: Range<UInt64>) throws(GuestImageError) -> Bool {
        var free = true
        try forEach { if $0.overlaps(range) { free = false } }
        return free
    }

    /// Checks every range against the file and the guest's memory map (see
    /// `MultibootGuest.load`); returns the span of the ranges.
    func check(_ image: ImageReader, ram: GuestRAM) throws(GuestImageError) -> Range<UInt64> {
        var low = UInt64.max, high: UInt64 = 0
        switch layout {
        case .elf(let elf):
            for index in 0..<elf.programHeaderCount {
                let segment = try elf.programHeader(index)
                guard segment.type == ELFProgramHeader.load, segment.memorySize > 0 else { continue }
                guard segment.fileSize <= segment.memorySize else {
                    throw GuestImageError(.badSegment, detail: segment.physicalAddress)
                }
                _ = try image.slice(segment.offset, segment.fileSize)
                try Self.checkRange(segment.physicalAddress, segment.memorySize, ram: ram)
                low = min(low, segment.physicalAddress)
                high = max(high, segment.physicalAddress + segment.memorySize)
            }
            guard low < high else { throw GuestImageError(.noLoadableSegments) }
        case .addresses(let a):
            // The range and its file slice were checked when the header was read.
            try Self.checkRange(a.loadAddress, a.memoryEnd - a.loadAddress, ram: ram)
            low = a.loadAddress
            high = a.memoryEnd
        }
        return low..<high
    }

    /// A range must lie in guest RAM and outside the reserved [0x9F000, 1 MiB).
    static func checkRange(_ start: UInt64, _ length: UInt64, ram: GuestRAM) throws(GuestImageError) {
        guard GuestLayout.fits(start, length, below: ram.size),
              start + length <= GuestLayout.lowMemoryEnd || start >= GuestLayout.highMemoryStart else {
            throw GuestImageError(.segmentOutsideGuestRAM, detail: start)
        }
        try GuestLoader.checkClearOfHoles(start, length, ram: ram)
    }

    /// Copies the file bytes of every range and zeroes the rest (the bss).
    func copy(_ image: ImageReader, into ram: GuestRAM) throws(GuestImageError) {
        switch layout {
        case .elf(let elf):
            for index in 0..<elf.programHeaderCount {
                let segment = try elf.programHeader(index)
                guard segment.type == ELFProgramHeader.load, segment.memorySize > 0 else { continue }
                _ = ram.copy(try image.slice(segment.offset, segment.fileSize), to: segment.physicalAddress)
                ram.zero(segment.physicalAddress + segment.fileSize, count: segment.memorySize - segment.fileSize)
            }
        case .addresses(let a):
            _ = ram.copy(try image.slice(a.fileOffset, a.loadSize), to: a.loadAddress)
            ram.zero(a.loadAddress + a.loadSize, count: a.memoryEnd - a.loadAddress - a.loadSize)
        }
    }
}

/// Where the loader puts its multiboot structures. An image clear of the shared
/// loader area [0x1000, 0x10000) gets `GuestLayout`'s addresses (`classic`);
/// any other gets one 28 KiB block, 4 KiB-aligned, at the lowest address outside
/// the image and the modules: first in [0x1000, 0x9F000) (page 0, with the IVT
/// and BIOS data area, is left alone), else in [1 MiB, min(RAM size, 4 GiB)).
///
/// ```
///   +0x0000  GDT (as GuestLayout's: 0x08 32-bit code, 0x18 data)
///   +0x0100  multiboot information
///   +0x0200  memory map
///   +0x0300  module list (8 x 16 bytes)
///   +0x0400  boot loader name
///   +0x1000  kernel command line (4 KiB with the NUL)
///   +0x2000  module strings (4 KiB)
///   +0x3000 .. +0x7000  boot stack (ESP = +0x7000 at entry)
/// ```
struct MultibootStructures: Equatable {
    var gdt: UInt64
    var info: UInt64
    var memoryMap: UInt64
    var moduleList: UInt64
    var loaderName: UInt64
    var commandLine: UInt64
    var moduleStrings: UInt64
    var stackTop: UInt64
    /// The range the structures occupy, [start, end).
    var start: UInt64
    var end: UInt64

    static let classic = MultibootStructures(
        gdt: GuestLayout.gdt, info: GuestLayout.bootInfo, memoryMap: GuestLayout.memoryMap,
        moduleList: GuestLayout.moduleList, loaderName: GuestLayout.loaderName, commandLine: GuestLayout.commandLine,
        moduleStrings: GuestLayout.moduleStrings, stackTop: GuestLayout.bootStackTop, start: GuestLayout.gdt,
        end: GuestLayout.loaderEnd)

    static let blockSize: UInt64 = 0x7000
    /// Where the low block may go: above page 0, below the reserved range.
    static let lowRegion: Range<UInt64> = 0x1000..<GuestLayout.lowMemoryEnd

    static func block(at base: UInt64) -> MultibootStructures {
        MultibootStructures(gdt: base, info: base + 0x100, memoryMap: base + 0x200, moduleList: base + 0x300,
                            loaderName: base + 0x400, commandLine: base + 0x1000, moduleStrings: base + 0x2000,
                            stackTop: base + blockSize, start: base, end: base + blockSize)
    }

    /// `classic` if the image leaves it free, else the lowest free block (see
    /// the type's comment); `.guestRAMTooSmall` when there is none (detail: the
    /// RAM size that would hold the block above the kernel, and the modules above it).
    static func place(avoiding image: MultibootImageRanges, modules: Range<UInt64>,
                      ram: GuestRAM) throws(GuestImageError) -> MultibootStructures {
        if try image.isFree(classic.start..<classic.end) { return classic }
        if let base = try lowestFree(in: lowRegion, avoiding: image, modules: modules) { return block(at: base) }
        let high = GuestLayout.highMemoryStart..<min(ram.size, 1 << 32)
        if let base = try lowestFree(in: high, avoiding: image, modules: modules) { return block(at: base) }
        var top = GuestLayout.highMemoryStart
        try image.forEach { top = max(top, $0.upperBound) }
        throw GuestImageError(.guestRAMTooSmall, detail: GuestLayout.alignUp(top, 4096) + blockSize
                              + GuestLayout.alignUp(UInt64(modules.count), 4096))
    }

    /// The lowest 4 KiB-aligned base of a free block inside `region`: the block
    /// starts at the region's start or just after an occupied range.
    static func lowestFree(in region: Range<UInt64>, avoiding image: MultibootImageRanges,
                           modules: Range<UInt64>) throws(GuestImageError) -> UInt64? {
        var best = try freeBlock(after: region.lowerBound, in: region, avoiding: image, modules: modules)
        if best == nil { best = try freeBlock(after: modules.upperBound, in: region, avoiding: image, modules: modules) }
        try image.forEach { range throws(GuestImageError) in
            if let base = try freeBlock(after: range.upperBound, in: region, avoiding: image, modules: modules),
               base < best ?? UInt64.max {
                best = base
            }
        }
        return best
    }

    /// The block at `address` rounded up to 4 KiB, if it lies in `region`
    /// outside the image and the modules.
    static func freeBlock(after address: UInt64, in region: Range<UInt64>, avoiding image: MultibootImageRanges,
                          modules: Range<UInt64>) throws(GuestImageError) -> UInt64? {
        let base = GuestLayout.alignUp(address, 4096)
        guard base >= region.lowerBound, GuestLayout.fits(base, blockSize, below: region.upperBound),
              !(base..<(base + blockSize)).overlaps(modules), try image.isFree(base..<(base + blockSize)) else {
            return nil
        }
        return base
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
