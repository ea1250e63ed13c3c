// The loader's entry point: one call turns the guest kernel module (and its
// extra modules) into bytes in guest RAM and the `GuestStart` the vCPU begins
// from, whatever the image's boot protocol. See `GuestLayout` for where
// everything goes.

import X86Arch
import VMX
import X86VCPU

/// One module2 of the boot entry: its bytes and its string.
public struct GuestModule {
    public var bytes: UnsafeRawBufferPointer
    /// For the kernel: the guest's command line; for the others: the module's string.
    /// Ends at the first NUL or at the end of the buffer.
    public var commandLine: UnsafeRawBufferPointer

    public init(bytes: UnsafeRawBufferPointer, commandLine: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        self.bytes = bytes
        self.commandLine = commandLine
    }
}

/// The guest's extra modules (initrd, ...), in boot-entry order, without heap.
public struct GuestModules {
    public static let capacity = 8

    var storage: [8 of GuestModule]
    public private(set) var count = 0

    public init() {
        storage = .init(repeating: GuestModule(bytes: UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    /// Adds a module; `.tooManyModules` beyond `capacity`.
    public mutating func append(_ module: GuestModule) throws(GuestImageError) {
        guard count < Self.capacity else { throw GuestImageError(.tooManyModules, detail: UInt64(Self.capacity)) }
        storage[count] = module
        count += 1
    }

    /// Module `index`; an empty module outside 0 ..< count.
    public subscript(index: Int) -> GuestModule {
        index >= 0 && index < count ? storage[index] : GuestModule(bytes: UnsafeRawBufferPointer(start: nil, count: 0))
    }
}

/// A guest ready to run: where it starts and what the loader put where.
public struct LoadedGuest: Sendable {
    public var format: GuestImageFormat
    public var start: GuestStart
    /// Guest-physical range the kernel occupies (for a bzImage: up to load + init_size).
    public var kernelRange: Range<UInt64>
    /// Guest-physical range spanned by the modules (empty when there are none).
    public var modulesRange: Range<UInt64>
    public var moduleCount: Int
    /// Address of boot_params / hvm_start_info / multiboot info; 0 for a boot sector.
    public var bootInfo: UInt64
    /// Length of the guest's command line in bytes (without the NUL).
    public var commandLineLength: Int
}

/// What a passthrough guest is told about the machine it owns (the isolated
/// platform's guest is told about its private RAM instead).
public struct MachineDescription: Sendable {
    /// The firmware's memory map with the hypervisor's ranges reserved.
    public var memoryMap: E820Map
    /// Physical address of the guest's ACPI RSDP; 0 when there is none.
    public var acpiRSDP: UInt64
    /// The first page (real-mode IVT, BIOS data area) is the firmware's and
    /// stays as it is; else the loader zeroes it with its own area.
    public var keepsFirstPage: Bool

    public init(memoryMap: E820Map, acpiRSDP: UInt64, keepsFirstPage: Bool = true) {
        self.memoryMap = memoryMap
        self.acpiRSDP = acpiRSDP
        self.keepsFirstPage = keepsFirstPage
    }
}

public enum GuestLoader {
    /// Detects the image's format and loads it, its command line and `modules`
    /// into `ram`. Nothing is written to guest RAM for an image that fails
    /// detection; a later failure may leave guest RAM partly written. A boot
    /// sector gets neither the command line nor the modules.
    ///
    /// With `machine` the guest is told that memory map and ACPI root: on the
    /// passthrough platform `ram` is the machine's memory as far as the
    /// loader may use it, its holes the hypervisor's, and the real-mode IVT
    /// and BIOS data area in the first page are left as the firmware wrote
    /// them (`keepsFirstPage`). Without it, the private platform's map.
    public static func load(kernel: GuestModule, modules: GuestModules, ram: GuestRAM,
                            machine: MachineDescription? = nil) throws(GuestImageError) -> LoadedGuest {
        guard kernel.bytes.count > 0 else { throw GuestImageError(.emptyImage) }
        let image = ImageReader(kernel.bytes)
        let platform = machine ?? MachineDescription(memoryMap: GuestLayout.privateMemoryMap(ramSize: ram.size), acpiRSDP: 0,
                                                     keepsFirstPage: false)
        switch try GuestImage.classify(image) {
        case .pvh(let elf, let entry):
            return try LinuxBoot.loadPVH(elf, entry: entry, kernel: kernel, modules: modules, ram: ram,
                                         machine: platform, ownsFirstPage: !platform.keepsFirstPage)
        case .linux:
            return try LinuxBoot.loadBzImage(image, kernel: kernel, modules: modules, ram: ram,
                                             machine: platform, ownsFirstPage: !platform.keepsFirstPage)
        case .multiboot(let layout):
            return try MultibootGuest.load(image, layout: layout, kernel: kernel, modules: modules, ram: ram,
                                           machine: platform)
        case .bootSector:
            return try loadBootSector(kernel.bytes, ram: ram)
        }
    }

    /// A boot sector (and whatever follows it in the image) at 0x7C00, entered
    /// in real mode at 0000:7C00 with SP = 0x7C00 and DL = 0x80 (first hard disk).
    static func loadBootSector(_ bytes: UnsafeRawBufferPointer, ram: GuestRAM) throws(GuestImageError) -> LoadedGuest {
        let size = UInt64(bytes.count)
        guard GuestLayout.fits(GuestLayout.bootSector, size, below: ram.size) else {
            throw GuestImageError(.imageTooLarge, detail: GuestLayout.bootSector + size)
        }
        // Guest RAM is not zeroed for the guest: the IVT and BIOS data area below
        // the image read as zero, as the boot-sector ABI promises.
        ram.zero(0, count: GuestLayout.bootSector)
        _ = ram.copy(bytes, to: GuestLayout.bootSector)
        var start = GuestStart(mode: .real, rip: GuestLayout.bootSector)
        start.rsp = GuestLayout.bootSector
        start.registers.rdx = 0x80
        return LoadedGuest(format: .bootSector, start: start,
                           kernelRange: GuestLayout.bootSector..<(GuestLayout.bootSector + size),
                           modulesRange: 0..<0, moduleCount: 0, bootInfo: 0, commandLineLength: 0)
    }

    // MARK: Pieces shared by the protected- and long-mode loaders

    static func checkRAM(_ ram: GuestRAM) throws(GuestImageError) {
        guard ram.size >= GuestLayout.minimumRAM else {
            throw GuestImageError(.guestRAMTooSmall, detail: GuestLayout.minimumRAM)
        }
    }

    /// A kernel range must lie in guest RAM above the loader's area, clear of
    /// the hypervisor's memory.
    static func checkKernelRange(_ start: UInt64, _ length: UInt64, ram: GuestRAM) throws(GuestImageError) {
        guard GuestLayout.fits(start, length, below: ram.size) else {
            throw GuestImageError(.segmentOutsideGuestRAM, detail: start)
        }
        guard start >= GuestLayout.loaderEnd else { throw GuestImageError(.segmentOverlapsLoaderArea, detail: start) }
        try checkClearOfHoles(start, length, ram: ram)
    }

    /// `.segmentOverlapsHypervisor` when [start, start + length) touches one of `ram`'s holes.
    static func checkClearOfHoles(_ start: UInt64, _ length: UInt64, ram: GuestRAM) throws(GuestImageError) {
        for i in 0..<GuestRAM.holeCapacity {
            let hole = ram.holes[i]
            if !hole.isEmpty && length > 0 && hole.lowerBound < start &+ length && start < hole.upperBound {
                throw GuestImageError(.segmentOverlapsHypervisor, detail: start)
            }
        }
    }

    /// `map`, or its compacted form when it has more than `capacity` entries
    /// (see `E820Map.compacted`); `.memoryMapTooLarge` when even that does not fit.
    static func fitting(_ map: E820Map, into capacity: Int) throws(GuestImageError) -> E820Map {
        guard map.count > capacity else { return map }
        do {
            if let fitted = try map.compacted(toAtMost: capacity) { return fitted }
        } catch {}
        throw GuestImageError(.memoryMapTooLarge, detail: UInt64(map.count))
    }

    /// Writes `map` as `count` entries of `stride` bytes at `gpa`: base, length,
    /// type (the layout e820, PVH and multiboot share, after `prefix` bytes);
    /// `.memoryMapTooLarge` above `capacity` entries.
    static func writeMemoryMap(_ map: E820Map, at gpa: UInt64, stride: Int, capacity: Int, prefix: UInt32? = nil,
                               ram: GuestRAM) throws(GuestImageError) {
        guard map.count <= capacity else { throw GuestImageError(.memoryMapTooLarge, detail: UInt64(map.count)) }
        for index in 0..<map.count {
            let entry = map[index]
            var at = gpa + UInt64(index * stride)
            if let prefix { ram.store(at, prefix); at += 4 }
            ram.store(at, entry.base)
            ram.store(at + 8, entry.length)
            ram.store(at + 16, entry.type)
            if stride - (prefix == nil ? 0 : 4) >= 24 { ram.store(at + 20, UInt32(0)) }
        }
    }

    /// A 32-bit entry point inside guest RAM.
    static func checkEntry(_ entry: UInt64, ram: GuestRAM) throws(GuestImageError) {
        guard entry < ram.size, entry <= UInt64(UInt32.max) else {
            throw GuestImageError(.entryOutsideGuestRAM, detail: entry)
        }
    }

    /// GDT descriptors (SDM 3.4.5 "Segment Descriptors"), accessed bit set so the
    /// CPU never writes them: 32-bit flat code (0x08), 64-bit code (0x10, L=1),
    /// flat read/write data (0x18). Linux's __BOOT_CS/__BOOT_DS are 0x10/0x18.
    static let gdtEntries: [4 of UInt64] = [
        0,
        SegmentDescriptor(base: 0, limit: 0xF_FFFF, rights: .code32).rawValue,
        SegmentDescriptor(base: 0, limit: 0xF_FFFF, rights: .code64).rawValue,
        SegmentDescriptor(base: 0, limit: 0xF_FFFF, rights: .data32).rawValue,
    ]

    /// Zeroes the loader's area and writes the GDT and the identity page tables
    /// (PML4 -> PDPT -> 4 page directories of 2 MiB pages: GPA x maps to x below
    /// 4 GiB; SDM 5.5 "4-Level Paging and 5-Level Paging"), which only the 64-bit entry uses.
    static func prepareLoaderArea(_ ram: GuestRAM, ownsFirstPage: Bool = true) {
        // From 0: the real-mode IVT and BIOS data area read as empty, not as
        // leftovers; a machine's own (passthrough) keep the firmware's.
        let from = ownsFirstPage ? 0 : GuestLayout.gdt
        ram.zero(from, count: GuestLayout.loaderEnd - from)
        for index in 0..<gdtEntries.count { ram.store(GuestLayout.gdt + UInt64(index * 8), gdtEntries[index]) }
        let present = PageTableEntry.present, writable = PageTableEntry.writable, largePage = PageTableEntry.pageSize
        ram.store(GuestLayout.pml4, GuestLayout.pdpt | present | writable)
        for directory in 0..<4 {
            let table = GuestLayout.pageDirectories + UInt64(directory) * 4096
            ram.store(GuestLayout.pdpt + UInt64(directory * 8), table | present | writable)
            for entry in 0..<512 {
                let address = (UInt64(directory) << 30) | (UInt64(entry) << 21)
                ram.store(table + UInt64(entry * 8), address | present | writable | largePage)
            }
        }
    }

    /// The selectors, descriptor tables and stack shared by the PVH, multiboot
    /// and Linux entries; interrupts off (RFLAGS = 2), no IDT.
    static func setFlatSegments(_ start: inout GuestStart, code: UInt16) {
        start.codeSelector = code
        start.dataSelector = GuestLayout.dataSelector
        start.gdtrBase = GuestLayout.gdt
        start.gdtrLimit = GuestLayout.gdtLimit
        start.idtrBase = 0
        start.idtrLimit = 0
        start.rsp = GuestLayout.bootStackTop
        start.rflags = 0x2
    }

    /// The length of a string buffer up to its first NUL.
    static func stringLength(_ s: UnsafeRawBufferPointer) -> Int { s.firstIndex(of: 0) ?? s.count }

    /// Writes the kernel command line NUL-terminated at `GuestLayout.commandLine`;
    /// `.commandLineTooLong` above `limit` bytes. Returns its length.
    static func writeCommandLine(_ line: UnsafeRawBufferPointer, ram: GuestRAM, limit: UInt64) throws(GuestImageError) -> Int {
        let length = stringLength(line)
        guard UInt64(length) <= limit else { throw GuestImageError(.commandLineTooLong, detail: limit) }
        _ = ram.copy(UnsafeRawBufferPointer(rebasing: line[0..<length]), to: GuestLayout.commandLine)
        ram.store(GuestLayout.commandLine + UInt64(length), UInt8(0))
        return length
    }

    /// The module strings, packed NUL-terminated in their 4 KiB page.
    struct StringArea {
        var used = 0

        mutating func append(_ s: UnsafeRawBufferPointer, ram: GuestRAM) throws(GuestImageError) -> UInt64 {
            let length = GuestLoader.stringLength(s)
            guard length < GuestLayout.moduleStringsCapacity - used else {
                throw GuestImageError(.commandLineTooLong, detail: UInt64(GuestLayout.moduleStringsCapacity))
            }
            let at = GuestLayout.moduleStrings + UInt64(used)
            _ = ram.copy(UnsafeRawBufferPointer(rebasing: s[0..<length]), to: at)
            ram.store(at + UInt64(length), UInt8(0))
            used += length + 1
            return at
        }
    }

    /// Offset of module `index` from the first: modules follow one another, each
    /// starting `alignment`-aligned.
    static func moduleOffset(_ modules: GuestModules, _ index: Int, alignment: UInt64) -> UInt64 {
        var offset: UInt64 = 0
        for i in 0..<index { offset += GuestLayout.alignUp(UInt64(modules[i].bytes.count), alignment) }
        return offset
    }

    /// Copies the modules, back to back (`moduleOffset`), into one page-aligned
    /// block as high as possible below `min(ram.size, limit)`; if that overlaps
    /// the kernel, just below the kernel. Never below 1 MiB. Returns the block.
    static func placeModules(_ modules: GuestModules, ram: GuestRAM, limit: UInt64, alignment: UInt64,
                             avoiding kernel: Range<UInt64>) throws(GuestImageError) -> Range<UInt64> {
        guard modules.count > 0 else { return 0..<0 }
        let last = modules.count - 1
        let total = moduleOffset(modules, last, alignment: alignment) + UInt64(modules[last].bytes.count)
        let top = min(ram.size, limit)
        guard let base = blockBase(total, below: top, avoiding: kernel, ram: ram)
                ?? blockBase(total, below: min(top, kernel.lowerBound), avoiding: kernel, ram: ram) else {
            throw GuestImageError(.modulesDoNotFit, detail: total)
        }
        for index in 0..<modules.count {
            _ = ram.copy(modules[index].bytes, to: base + moduleOffset(modules, index, alignment: alignment))
        }
        return base..<(base + total)
    }

    /// The highest page-aligned base of a `size`-byte block ending at or below
    /// `top`, above 1 MiB and outside `kernel`; nil if there is none.
    static func blockBase(_ size: UInt64, below top: UInt64, avoiding kernel: Range<UInt64>, ram: GuestRAM) -> UInt64? {
        guard size <= top else { return nil }
        let base = GuestLayout.alignDown(top - size, 4096)
        guard base >= GuestLayout.highMemoryStart, base + size <= kernel.lowerBound || base >= kernel.upperBound,
              ram.bytes(at: base, count: Int(size)) != nil else {
            return nil
        }
        return base
    }
}

extension GuestRAM {
    /// Stores `value` little-endian at `gpa`; the loader only stores inside its
    /// checked ranges, so an address outside guest RAM is ignored.
    func store<T: FixedWidthInteger>(_ gpa: UInt64, _ value: T) {
        bytes(at: gpa, count: MemoryLayout<T>.size)?.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Zeroes [gpa, gpa + count) if it lies inside guest RAM.
    func zero(_ gpa: UInt64, count: UInt64) {
        _ = bytes(at: gpa, count: Int(clamping: count))?.baseAddress?.initializeMemory(as: UInt8.self, repeating: 0,
                                                                                        count: Int(clamping: count))
    }
}
