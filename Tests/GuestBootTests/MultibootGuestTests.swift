import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import GuestBoot

/// An ELF32 multiboot kernel: the header at the start of .text (1 MiB), bss after .data.
func multibootELF(flags: UInt32 = 0x3, is64: Bool = false, entry: UInt64 = 0x10_000C) -> [UInt8] {
    let text = Segment(paddr: 0x10_0000, data: multibootHeader(flags: flags) + pattern(0x400, seed: 6))
    let data = Segment(paddr: 0x10_1000, data: pattern(0x80, seed: 7), memsz: 0x1000)
    return makeELF(is64: is64, entry: entry, segments: [text, data]).bytes
}

/// A flat (non-ELF) multiboot image using the address fields: header at file
/// offset `headerOffset`, loaded so that file offset 0 lands at 0x200000.
func multibootFlat(headerOffset: Int = 0x40, fields: [UInt32]? = nil, size: Int = 0x800, flags: UInt32 = 0x1_0000) -> [UInt8] {
    var image = ByteImage(pattern(size, seed: 8))
    let load: UInt32 = 0x20_0000
    let defaults = [load + UInt32(headerOffset), load, load + UInt32(size) - 0x100, load + 0x3000, load + 0x80]
    image.put(headerOffset, bytes: multibootHeader(flags: flags, addresses: fields ?? defaults))
    return image.bytes
}

/// The multiboot mmap: (size, base, length, type) entries from mmap_addr.
func multibootMap(_ ram: GuestRAM, _ info: UInt64) -> [(UInt32, UInt64, UInt64, UInt32)] {
    let address = UInt64(ram.read32(info + 48) ?? 0), length = UInt64(ram.read32(info + 44) ?? 0)
    var out: [(UInt32, UInt64, UInt64, UInt32)] = []
    var at = address
    while at < address + length {
        let size = ram.read32(at) ?? 0
        out.append((size, ram.read64(at + 4) ?? 0, ram.read64(at + 12) ?? 0, ram.read32(at + 20) ?? 0))
        at += UInt64(size) + 4
    }
    return out
}

@Suite struct MultibootGuestTests {
    @Test func elf32KernelWithModules() throws {
        try withGuestRAM { ram throws in
            let mod = pattern(0x1801, seed: 11)
            let guest = try loadGuest(multibootELF(), commandLine: "kernel -v", modules: [(mod, "mod1 arg"), ([], "")],
                                      ram: ram)
            #expect(guest.format == .multiboot1)
            let start = guest.start
            #expect(start.mode == .protected32 && start.rip == 0x10_000C)
            #expect(start.registers.rax == 0x2BAD_B002 && start.registers.rbx == 0x8000)
            #expect(start.codeSelector == 0x08 && start.dataSelector == 0x18 && start.gdtrBase == 0x1000)
            // Segments, with the bss zeroed.
            #expect(ram.array(0x10_000C, 0x400) == pattern(0x400, seed: 6))
            #expect(ram.array(0x10_1000, 0x80) == pattern(0x80, seed: 7) && ram.all(0x10_1080, 0xF80, are: 0))
            #expect(guest.kernelRange == 0x10_0000..<0x10_2000)

            let info: UInt64 = 0x8000
            #expect(ram.read32(info) == (1 << 0 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9))
            #expect(ram.read32(info + 4) == 636 && ram.read32(info + 8) == (32 << 10) - 1024)
            #expect(ram.read32(info + 12) == 0)   // boot_device: flag clear
            #expect(ram.read32(info + 16) == 0xA000 && ram.cString(0xA000) == "kernel -v")
            // Modules: {mod_start, mod_end, string, reserved}, page-aligned at the top of RAM.
            #expect(ram.read32(info + 20) == 2 && ram.read32(info + 24) == 0x9400)
            let start0 = UInt64(ram.read32(0x9400) ?? 0), end0 = UInt64(ram.read32(0x9404) ?? 0)
            #expect(start0 == (32 << 20) - 0x2000 && end0 == start0 + 0x1801 && start0 % 4096 == 0)
            #expect(ram.array(start0, 0x1801) == mod)
            #expect(ram.cString(UInt64(ram.read32(0x9408) ?? 0)) == "mod1 arg" && ram.read32(0x940C) == 0)
            #expect(ram.read32(0x9410) == UInt32(start0 + 0x2000) && ram.read32(0x9414) == ram.read32(0x9410))
            #expect(ram.cString(UInt64(ram.read32(0x9418) ?? 0)) == "")
            // mmap: size 20 before each entry.
            let map = multibootMap(ram, info)
            #expect(map.count == 3 && map.allSatisfy { $0.0 == 20 })
            #expect(map[0].1 == 0 && map[0].2 == 0x9F000 && map[0].3 == 1)
            #expect(map[1].1 == 0x9F000 && map[1].2 == 0x61000 && map[1].3 == 2)
            #expect(map[2].1 == 0x10_0000 && map[2].2 == (32 << 20) - 0x10_0000 && map[2].3 == 1)
            #expect(ram.read32(info + 64) == 0x9800 && ram.cString(0x9800) == "X86VCPU")
        }
    }

    @Test func elf64KernelAndEntryLimits() throws {
        try withGuestRAM { ram throws in
            #expect(try loadGuest(multibootELF(is64: true), ram: ram).start.rip == 0x10_000C)
            #expect(loaderError { _ = try loadGuest(multibootELF(is64: true, entry: 0x1_0010_0000), ram: ram) }
                    == GuestImageError(.entryOutsideGuestRAM, detail: 0x1_0010_0000))
            #expect(loaderError { _ = try loadGuest(multibootELF(entry: 0x200_0000), ram: ram) }?.kind == .entryOutsideGuestRAM)
        }
    }

    @Test func addressFieldsLoadAFlatImage() throws {
        try withGuestRAM { ram throws in
            let image = multibootFlat()
            #expect(try detect(image) == .multiboot1)
            let guest = try loadGuest(image, ram: ram)
            // load_end 0x200700: 0x700 bytes from file offset 0, then bss to 0x203000.
            #expect(ram.array(0x20_0000, 0x700) == Array(image[0..<0x700]))
            #expect(ram.all(0x20_0700, 0x3000 - 0x700, are: 0) && ram.all(0x20_3000, 16, are: 0xCC))
            #expect(guest.kernelRange == 0x20_0000..<0x20_3000 && guest.start.rip == 0x20_0080)
        }
    }

    @Test func addressFieldsWithDefaultsAndAnOffsetLoadAddress() throws {
        try withGuestRAM { ram throws in
            // load_end 0: to the end of the file; bss_end 0: no bss. load_addr after file offset 0.
            let image = multibootFlat(headerOffset: 0x100, fields: [0x30_0080, 0x30_0000, 0, 0, 0x30_0000])
            let guest = try loadGuest(image, ram: ram)
            #expect(ram.array(0x30_0000, 0x800 - 0x80) == Array(image[0x80..<0x800]))
            #expect(guest.kernelRange == 0x30_0000..<0x30_0780)
        }
    }

    @Test func inconsistentAddressFields() {
        let bad = { (fields: [UInt32]) in detectError(multibootFlat(fields: fields)) }
        let load: UInt32 = 0x20_0000
        // load_addr above header_addr; header_addr - load_addr beyond the header's file offset.
        #expect(bad([load, load + 4, 0, 0, load]) == GuestImageError(.multibootBadAddresses, detail: 0x40))
        #expect(bad([load + 0x80, load, 0, 0, load])?.kind == .multibootBadAddresses)
        // load_end_addr below load_addr; bss_end_addr below the loaded end.
        #expect(bad([load + 0x40, load, load - 1, 0, load])?.kind == .multibootBadAddresses)
        #expect(bad([load + 0x40, load, load + 0x200, load + 0x1FF, load])?.kind == .multibootBadAddresses)
        // The load range past the end of the file.
        #expect(bad([load + 0x40, load, load + 0x801, 0, load]) == GuestImageError(.truncated, detail: 0x801))
        // The address fields themselves past the end of the file.
        var short = ByteImage(count: 0x40)
        short.put(0x30, bytes: multibootHeader(flags: 0x1_0000))
        #expect(detectError(short.bytes)?.kind == .truncated)
    }

    @Test func addressFieldsOutsideGuestRAMOrBelow64KiB() throws {
        try withGuestRAM(size: 4 << 20) { ram throws in
            let high = multibootFlat(fields: [0x3F_F040, 0x3F_F000, 0, 0x40_1000, 0x3F_F000])
            #expect(loaderError { _ = try loadGuest(high, ram: ram) } == GuestImageError(.segmentOutsideGuestRAM, detail: 0x3F_F000))
            // Below 64 KiB is fine (the structures move: MultibootPlacementTests).
            let low = multibootFlat(fields: [0x7C40, 0x7C00, 0, 0, 0x7C00])
            let guest = try loadGuest(low, ram: ram)
            #expect(guest.kernelRange == 0x7C00..<0x8400 && guest.bootInfo == 0x9100 && ram.array(0x7C00, 0x800) == low)
        }
    }

    @Test func unsupportedRequirementsAndMissingAddresses() throws {
        #expect(detectError(multibootELF(flags: 0x8)) == GuestImageError(.multibootUnsupportedFlags, detail: 0x8))
        #expect(detectError(multibootELF(flags: 0x8000 | 0x1_0000))?.kind == .multibootUnsupportedFlags)
        // Bits 0-2 (and any bit above 16) are fine.
        #expect(try detect(multibootELF(flags: 0x7 | 0x10_0000)) == .multiboot1)
        var flat = ByteImage(count: 0x400)
        flat.put(0x20, bytes: multibootHeader(flags: 0x3))
        #expect(detectError(flat.bytes) == GuestImageError(.multibootWithoutAddresses, detail: 0x20))
    }

    @Test func moduleStringsAreBounded() {
        withGuestRAM { ram in
            let long = String(repeating: "m", count: 3000)
            #expect(throws: Never.self) { _ = try loadGuest(multibootELF(), modules: [([1], long)], ram: ram) }
            #expect(loaderError { _ = try loadGuest(multibootELF(), modules: [([1], long), ([2], long)], ram: ram) }
                    == GuestImageError(.commandLineTooLong, detail: 4096))
            #expect(loaderError { _ = try loadGuest(multibootELF(), commandLine: String(repeating: "k", count: 4096), ram: ram) }
                    == GuestImageError(.commandLineTooLong, detail: 4095))
        }
    }
}
