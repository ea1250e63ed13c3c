import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import GuestBoot

// Multiboot images linked anywhere in the guest's usable RAM, low memory
// included: the loader's structures go where the image and modules are not.

/// An ELF32 multiboot kernel with the header at the start of the first segment.
func multibootELF(at segments: [Segment]) -> [UInt8] {
    var all = segments
    all[0].data = multibootHeader(flags: 0x3) + all[0].data
    return makeELF(is64: false, entry: all[0].paddr + 12, segments: all).bytes
}

/// A flat image with the address fields: header at file offset 0x40, file
/// offset 0 at `load`, `size` bytes loaded, bss up to `bssEnd` (0: none).
func multibootFlat(load: UInt32, size: Int = 0x800, bssEnd: UInt32 = 0) -> [UInt8] {
    multibootFlat(headerOffset: 0x40, fields: [load + 0x40, load, load + UInt32(size), bssEnd, load + 0x80], size: size)
}

/// Every structure the multiboot information points to (and the GDT and the
/// stack the entry state names) as guest-physical ranges, each checked for
/// content on the way.
func multibootStructures(_ guest: LoadedGuest, _ ram: GuestRAM, commandLine: String,
                         modules: [([UInt8], String)]) -> [(String, Range<UInt64>)] {
    let info = guest.bootInfo
    #expect(guest.start.registers.rbx == info && info + 120 <= 1 << 32)
    var out: [(String, Range<UInt64>)] = [("info", info..<(info + 120))]
    let cmdline = UInt64(ram.read32(info + 16) ?? 0)
    #expect(ram.cString(cmdline) == commandLine)
    out.append(("cmdline", cmdline..<(cmdline + UInt64(commandLine.utf8.count) + 1)))
    let mods = UInt64(ram.read32(info + 24) ?? 0)
    #expect(ram.read32(info + 20) == UInt32(modules.count))
    if !modules.isEmpty { out.append(("mods", mods..<(mods + UInt64(16 * modules.count)))) }
    for (index, (bytes, string)) in modules.enumerated() {
        let start = UInt64(ram.read32(mods + UInt64(16 * index)) ?? 0)
        #expect(ram.read32(mods + UInt64(16 * index) + 4) == UInt32(start) + UInt32(bytes.count))
        #expect(ram.array(start, bytes.count) == bytes)
        let at = UInt64(ram.read32(mods + UInt64(16 * index) + 8) ?? 0)
        #expect(ram.cString(at) == string)
        out.append(("string \(index)", at..<(at + UInt64(string.utf8.count) + 1)))
    }
    let mmap = UInt64(ram.read32(info + 48) ?? 0), mmapLength = UInt64(ram.read32(info + 44) ?? 0)
    let map = multibootMap(ram, info)
    #expect(map.count == 3 && map[0].1 == 0 && map[0].2 == 0x9F000 && map[1].3 == 2 && map[2].1 == 0x10_0000)
    #expect(map.count == 3 && map[2].2 == ram.size - 0x10_0000)
    out.append(("mmap", mmap..<(mmap + mmapLength)))
    let name = UInt64(ram.read32(info + 64) ?? 0)
    #expect(ram.cString(name) == "X86VCPU")
    out.append(("name", name..<(name + 8)))
    let gdt = guest.start.gdtrBase
    #expect(guest.start.gdtrLimit == 31 && ram.read64(gdt) == 0 && ram.read64(gdt + 8) != 0 && ram.read64(gdt + 24) != 0)
    out.append(("gdt", gdt..<(gdt + 32)))
    out.append(("stack", (guest.start.rsp - 0x4000)..<guest.start.rsp))
    return out
}

/// Checks that the structures lie in usable guest RAM (the memory map's, above
/// the IVT and BIOS data area), below 4 GiB, outside `image` and the modules,
/// and apart from one another.
func expectPlacement(_ guest: LoadedGuest, _ ram: GuestRAM, image: [Range<UInt64>], commandLine: String = "",
                     modules: [([UInt8], String)] = [], sourceLocation: SourceLocation = #_sourceLocation) {
    let structures = multibootStructures(guest, ram, commandLine: commandLine, modules: modules)
    for (index, (name, range)) in structures.enumerated() {
        let usable = (range.lowerBound >= 0x500 && range.upperBound <= 0x9F000)
            || (range.lowerBound >= 0x10_0000 && range.upperBound <= min(ram.size, 1 << 32))
        #expect(usable, "\(name) \(range) outside usable RAM", sourceLocation: sourceLocation)
        for segment in image {
            #expect(!range.overlaps(segment), "\(name) \(range) overlaps the image at \(segment)",
                    sourceLocation: sourceLocation)
        }
        #expect(!range.overlaps(guest.modulesRange), "\(name) \(range) overlaps the modules",
                sourceLocation: sourceLocation)
        for (other, otherRange) in structures[(index + 1)...] {
            #expect(!range.overlaps(otherRange), "\(name) \(range) overlaps \(other) \(otherRange)",
                    sourceLocation: sourceLocation)
        }
    }
}

@Suite struct MultibootPlacementTests {
    static let modules: [([UInt8], String)] = [(pattern(0x1801, seed: 21), "first module"), ([1, 2, 3], "second")]

    @Test func elfLinkedAt0x8000() throws {
        try withGuestRAM { ram throws in
            let text = Segment(paddr: 0x8000, data: pattern(0x400, seed: 1))
            let data = Segment(paddr: 0x9000, data: pattern(0x80, seed: 2), memsz: 0x1000)
            let guest = try loadGuest(multibootELF(at: [text, data]), commandLine: "low -v", modules: Self.modules,
                                      ram: ram)
            #expect(guest.start.rip == 0x800C && guest.kernelRange == 0x8000..<0xA000)
            #expect(ram.array(0x800C, 0x400) == pattern(0x400, seed: 1))
            #expect(ram.array(0x9000, 0x80) == pattern(0x80, seed: 2) && ram.all(0x9080, 0xF80, are: 0))
            expectPlacement(guest, ram, image: [0x8000..<0x840C, 0x9000..<0xA000], commandLine: "low -v",
                            modules: Self.modules)
            // The lowest free block: [0x1000, 0x8000), the stack ending where the image begins.
            #expect(guest.bootInfo == 0x1100 && guest.start.gdtrBase == 0x1000 && guest.start.rsp == 0x8000)
            // The IVT and BIOS data area read as zero; the image's neighbours too.
            #expect(ram.all(0, 0x1000, are: 0) && ram.all(0xA000, 0x6000, are: 0))
        }
    }

    @Test func addressFieldsLinkedAt0x8000() throws {
        try withGuestRAM { ram throws in
            let image = multibootFlat(load: 0x8000, size: 0x800, bssEnd: 0xC000)
            let guest = try loadGuest(image, commandLine: "flat", modules: Self.modules, ram: ram)
            #expect(guest.kernelRange == 0x8000..<0xC000 && guest.start.rip == 0x8080)
            #expect(ram.array(0x8000, 0x800) == image && ram.all(0x8800, 0x3800, are: 0))
            expectPlacement(guest, ram, image: [0x8000..<0xC000], commandLine: "flat", modules: Self.modules)
            #expect(guest.bootInfo == 0x1100)
        }
    }

    @Test func elfAndAddressFieldsLinkedAt0x1000() throws {
        try withGuestRAM { ram throws in
            let text = Segment(paddr: 0x1000, data: pattern(0x400, seed: 3))
            let data = Segment(paddr: 0x2000, data: pattern(0x100, seed: 4), memsz: 0x1000)
            let guest = try loadGuest(multibootELF(at: [text, data]), commandLine: "at 4K", modules: Self.modules,
                                      ram: ram)
            #expect(ram.array(0x100C, 0x400) == pattern(0x400, seed: 3))
            #expect(ram.array(0x2000, 0x100) == pattern(0x100, seed: 4))
            expectPlacement(guest, ram, image: [0x1000..<0x140C, 0x2000..<0x3000], commandLine: "at 4K",
                            modules: Self.modules)
            #expect(guest.bootInfo == 0x3100 && guest.start.rsp == 0xA000)
        }
        try withGuestRAM { ram throws in
            let image = multibootFlat(load: 0x1000, size: 0x900, bssEnd: 0x2800)
            let guest = try loadGuest(image, modules: Self.modules, ram: ram)
            #expect(ram.array(0x1000, 0x900) == image && ram.all(0x1900, 0xF00, are: 0))
            expectPlacement(guest, ram, image: [0x1000..<0x2800], modules: Self.modules)
            #expect(guest.bootInfo == 0x3100)
        }
    }

    @Test func segmentsOverTheOldStructureAddresses() throws {
        try withGuestRAM { ram throws in
            // Over the old page tables (0x2000) and the old info, memory map,
            // module list and command line (0x8000-0xB000); a third at 1 MiB.
            let segments = [Segment(paddr: 0x2000, data: pattern(0x200, seed: 5)),
                            Segment(paddr: 0x8000, data: pattern(0x2000, seed: 6), memsz: 0x3000),
                            Segment(paddr: 0x10_0000, data: pattern(0x100, seed: 7))]
            let guest = try loadGuest(multibootELF(at: segments), commandLine: "cover", modules: Self.modules, ram: ram)
            #expect(ram.array(0x200C, 0x200) == pattern(0x200, seed: 5))
            #expect(ram.array(0x8000, 0x2000) == pattern(0x2000, seed: 6) && ram.all(0xA000, 0x1000, are: 0))
            #expect(ram.array(0x10_0000, 0x100) == pattern(0x100, seed: 7))
            expectPlacement(guest, ram, image: [0x2000..<0x220C, 0x8000..<0xB000, 0x10_0000..<0x10_0100],
                            commandLine: "cover", modules: Self.modules)
            // [0x1000, 0x8000) and [0x3000, 0xA000) are taken: the first free block starts at 0xB000.
            #expect(guest.bootInfo == 0xB100 && guest.start.gdtrBase == 0xB000 && guest.start.rsp == 0x12000)
            #expect(guest.modulesRange.lowerBound >= 0x10_0000)
        }
    }

    @Test func imageFillingLowMemoryGetsStructuresAboveIt() throws {
        try withGuestRAM { ram throws in
            // From address 0 (over the IVT and BIOS data area, which the memory
            // map calls RAM) to the reserved range.
            let image = multibootFlat(load: 0, size: 0x800, bssEnd: 0x9F000)
            let guest = try loadGuest(image, commandLine: "fill", modules: Self.modules, ram: ram)
            #expect(ram.array(0, 0x800) == image && ram.all(0x800, 0x9F000 - 0x800, are: 0))
            expectPlacement(guest, ram, image: [0..<0x9F000], commandLine: "fill", modules: Self.modules)
            #expect(guest.bootInfo == 0x10_0100 && guest.start.rsp == 0x10_7000)
        }
        try withGuestRAM { ram throws in
            let segments = [Segment(paddr: 0x1000, data: pattern(0x100, seed: 8), memsz: 0x9E000),
                            Segment(paddr: 0x10_0000, data: pattern(0x100, seed: 9), memsz: 0x2_0000)]
            let guest = try loadGuest(multibootELF(at: segments), modules: Self.modules, ram: ram)
            expectPlacement(guest, ram, image: [0x1000..<0x9F000, 0x10_0000..<0x12_0000], modules: Self.modules)
            #expect(guest.bootInfo == 0x12_0100)
        }
    }

    @Test func structuresFitBelowTheModulesOrRAMIsTooSmall() throws {
        let low = Segment(paddr: 0x1000, data: pattern(0x100, seed: 10), memsz: 0x9E000)
        try withGuestRAM(size: 2 << 20) { ram throws in
            // The block ends exactly at the end of RAM.
            let image = multibootELF(at: [low, Segment(paddr: 0x10_0000, data: [1], memsz: 0xF_9000)])
            let guest = try loadGuest(image, ram: ram)
            expectPlacement(guest, ram, image: [0x1000..<0x9F000, 0x10_0000..<0x1F_9000])
            #expect(guest.start.rsp == 0x20_0000)
        }
        try withGuestRAM(size: 4 << 20) { ram throws in
            // Modules at the top of RAM: the block goes between them and the kernel.
            let image = multibootELF(at: [low, Segment(paddr: 0x10_0000, data: [1], memsz: 0x10_0000)])
            let big = [(pattern(0x1F_8000, seed: 11), "big")]
            let guest = try loadGuest(image, modules: big, ram: ram)
            #expect(guest.modulesRange == 0x20_8000..<0x40_0000)
            expectPlacement(guest, ram, image: [0x1000..<0x9F000, 0x10_0000..<0x20_0000], modules: big)
            #expect(guest.bootInfo == 0x20_0100)
            #expect(loaderError { _ = try loadGuest(image, modules: [(pattern(0x1F_9001, seed: 12), "")], ram: ram) }
                    == GuestImageError(.guestRAMTooSmall, detail: 0x20_0000 + 0x7000 + 0x1F_A000))
        }
        withGuestRAM(size: 2 << 20) { ram in
            let image = multibootELF(at: [low, Segment(paddr: 0x10_0000, data: [1], memsz: 0xF_9001)])
            let error = loaderError { _ = try loadGuest(image, ram: ram) }
            #expect(error == GuestImageError(.guestRAMTooSmall, detail: 0x1F_A000 + 0x7000))
            #expect(error?.message.description == "guest RAM too small for the boot structures")
        }
    }

    @Test func theReservedRangeIsRefused() {
        withGuestRAM { ram in
            // [0x9F000, 1 MiB) is reserved in the guest's memory map.
            let across = multibootFlat(load: 0x9E000, size: 0x800, bssEnd: 0xA0000)
            #expect(loaderError { _ = try loadGuest(across, ram: ram) } == GuestImageError(.segmentOutsideGuestRAM, detail: 0x9E000))
            let vga = multibootELF(at: [Segment(paddr: 0x10_0000, data: [1]), Segment(paddr: 0xB8000, data: [2])])
            let error = loaderError { _ = try loadGuest(vga, ram: ram) }
            #expect(error == GuestImageError(.segmentOutsideGuestRAM, detail: 0xB8000))
            let top = multibootFlat(load: 0xFF000, size: 0x800, bssEnd: 0x10_1000)
            #expect(loaderError { _ = try loadGuest(top, ram: ram) }?.kind == .segmentOutsideGuestRAM)
            // Nothing was written for a refused range.
            #expect(ram.all(0, 0x20_0000, are: 0xCC))
            // Up to the reserved range and from 1 MiB is fine.
            #expect(throws: Never.self) {
                _ = try loadGuest(multibootFlat(load: 0x9E000, size: 0x800, bssEnd: 0x9F000), ram: ram)
                _ = try loadGuest(multibootFlat(load: 0x10_0000, size: 0x800), ram: ram)
            }
        }
    }

    @Test func anImageClearOfTheLoaderAreaKeepsTheClassicLayout() throws {
        try withGuestRAM { ram throws in
            // Only the IVT page: the structures stay at GuestLayout's addresses.
            let image = multibootFlat(load: 0x100, size: 0x800, bssEnd: 0xF00)
            let guest = try loadGuest(image, commandLine: "ivt", modules: Self.modules, ram: ram)
            #expect(ram.array(0x100, 0x800) == image && ram.all(0, 0x100, are: 0))
            expectPlacement(guest, ram, image: [0x100..<0xF00], commandLine: "ivt", modules: Self.modules)
            #expect(guest.bootInfo == GuestLayout.bootInfo && guest.start.gdtrBase == GuestLayout.gdt)
            #expect(guest.start.rsp == GuestLayout.bootStackTop && ram.read32(guest.bootInfo + 16) == 0xA000)
        }
    }
}
