import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import GuestBoot

/// The e820 entry `index` of the zero page at `zeroPage`.
func e820(_ ram: GuestRAM, _ zeroPage: UInt64, _ index: Int) -> (UInt64, UInt64, UInt32) {
    let at = zeroPage + 0x2D0 + UInt64(index * 20)
    return (ram.read64(at) ?? 0, ram.read64(at + 8) ?? 0, ram.read32(at + 16) ?? 0)
}

@Suite struct LinuxBootTests {
    @Test func bzImageThroughThe64BitBootProtocol() throws {
        let bz = BzImage()
        let image = bz.build()
        #expect(try detect(image) == .linux)
        try withGuestRAM { ram throws in
            let initrd = pattern(0x3001, seed: 9)
            let guest = try loadGuest(image, commandLine: "console=ttyS0 quiet", modules: [(initrd, "initrd.img")], ram: ram)
            #expect(guest.format == .linux)
            // Relocatable, pref_address 16 MiB: loaded there, entered at +0x200 in 64-bit mode.
            #expect(ram.array(0x100_0000, bz.kernelSize) == pattern(bz.kernelSize, seed: 0x42))
            #expect(guest.kernelRange == 0x100_0000..<0x110_0000)
            let start = guest.start
            #expect(start.mode == .long64 && start.rip == 0x100_0200)
            #expect(start.registers.rsi == 0x8000 && guest.bootInfo == 0x8000)
            #expect(start.cr3 == 0x2000 && start.codeSelector == 0x10 && start.dataSelector == 0x18)
            #expect(start.gdtrBase == 0x1000 && start.gdtrLimit == 0x1F && start.rflags == 0x2)
            #expect(start.idtrLimit == 0 && start.rsp == 0x10000)

            // The zero page: the setup header copied, then the loader's fields.
            let zp: UInt64 = 0x8000
            #expect(ram.array(zp + 0x1F1, 0x210 - 0x1F1) == Array(image[0x1F1..<0x210]))
            #expect(ram.array(zp + 0x22C, 0x268 - 0x22C) == Array(image[0x22C..<0x268]))
            // The header ends at 0x202 + the byte at 0x201: kernel_info_offset (0x268) is not copied.
            #expect(ram.all(zp + 0x268, 0x2D0 - 0x268, are: 0))
            #expect(ram.all(zp, 0x1E8, are: 0))
            #expect(ram.read8(zp + 0x210) == 0xFF)                 // type_of_loader
            #expect(ram.read8(zp + 0x211) == 0x01)                 // loadflags: LOADED_HIGH only
            #expect(ram.read32(zp + 0x214) == 0x100_0000)          // code32_start
            #expect(ram.read32(zp + 0x228) == 0xA000)              // cmd_line_ptr
            #expect(ram.read32(zp + 0x0C8) == 0)                   // ext_cmd_line_ptr
            #expect(ram.cString(0xA000) == "console=ttyS0 quiet" && guest.commandLineLength == 19)
            #expect(ram.read16(zp + 0x1FE) == 0xAA55 && ram.read16(zp + 0x206) == 0x020F)

            // The initrd: page-aligned at the top of RAM.
            let rd = UInt64(ram.read32(zp + 0x218) ?? 0), size = ram.read32(zp + 0x21C)
            #expect(rd == (32 << 20) - 0x4000 && size == 0x3001)
            #expect(ram.read32(zp + 0x0C0) == 0 && ram.read32(zp + 0x0C4) == 0)
            #expect(ram.array(rd, 0x3001) == initrd)
            #expect(guest.modulesRange == rd..<(rd + 0x3001) && guest.moduleCount == 1)

            // e820: three entries at 0x2D0.
            #expect(ram.read8(zp + 0x1E8) == 3)
            #expect(e820(ram, zp, 0) == (0, 0x9F000, 1))
            #expect(e820(ram, zp, 1) == (0x9F000, 0x61000, 2))
            #expect(e820(ram, zp, 2) == (0x10_0000, (32 << 20) - 0x10_0000, 1))
            #expect(ram.all(zp + 0x2D0 + 60, 20, are: 0))
        }
    }

    @Test func theIdentityPageTablesMapEveryAddressToItself() throws {
        try withGuestRAM { ram throws in
            let start = try loadGuest(BzImage().build(), ram: ram).start
            // PAE + long mode, as the vCPU starts a long64 guest.
            let state = GuestPagingState(cr0: 0x8000_0011, cr3: start.cr3, cr4: 1 << 5, efer: 0x500, physicalAddressBits: 39)
            for address: UInt64 in [0, 0x7C00, 0x100_0200, 0x3FFF_FFFF, 0x4000_0000, 0xBEEF_1234, 0xFFFF_FFFF] {
                let t = try state.translate(address, access: GuestAccess(.write, userMode: false), memory: ram)
                #expect(t.guestPhysical == address && t.pageSize == 2 << 20 && t.isWritable)
            }
            #expect(throws: GuestPageWalkError.self) {
                try state.translate(0x1_0000_0000, access: GuestAccess(.read, userMode: false), memory: ram)
            }
            // The GDT the selectors name: 32-bit code, 64-bit code, data; accessed bits set.
            #expect(ram.read64(0x1000) == 0 && ram.read64(0x1008) == 0x00CF_9B00_0000_FFFF)
            #expect(ram.read64(0x1010) == 0x00AF_9B00_0000_FFFF && ram.read64(0x1018) == 0x00CF_9300_0000_FFFF)
            #expect(ram.all(0x1020, 0x1000 - 0x20, are: 0))
            // Below the GDT: the real-mode IVT and BIOS data area read as zero
            // (guest RAM is handed over unzeroed).
            #expect(ram.all(0, 0x1000, are: 0))
        }
    }

    @Test func setupSectorsZeroMeansFourAndEmptyCommandLine() throws {
        try withGuestRAM { ram throws in
            var bz = BzImage()
            bz.setupSects = 0
            let guest = try loadGuest(bz.build(), ram: ram)
            #expect(ram.array(0x100_0000, 64) == pattern(64, seed: 0x42))
            #expect(ram.read8(0xA000) == 0 && guest.commandLineLength == 0)
            #expect(ram.read32(0x8000 + 0x218) == 0 && ram.read32(0x8000 + 0x21C) == 0 && guest.modulesRange.isEmpty)
        }
    }

    @Test func relocationFallsBackBelowPrefAddressWhenRAMIsSmall() throws {
        try withGuestRAM(size: 8 << 20) { ram throws in
            var bz = BzImage()
            bz.initSize = 0x40_0000
            let guest = try loadGuest(bz.build(), ram: ram)
            // 16 MiB does not exist here: the first 2 MiB-aligned address above 1 MiB.
            #expect(guest.start.rip == 0x20_0200 && guest.kernelRange == 0x20_0000..<0x60_0000)
            #expect(ram.read32(0x8000 + 0x214) == 0x20_0000)
            // An absurd pref_address (alignment overflows) falls back the same way.
            bz.prefAddress = 0xFFFF_FFFF_FFFF_F000
            #expect(try loadGuest(bz.build(), ram: ram).start.rip == 0x20_0200)
            bz.initSize = 0x70_0000
            #expect(loaderError { _ = try loadGuest(bz.build(), ram: ram) } == GuestImageError(.imageTooLarge, detail: 0x90_0000))
        }
    }

    @Test func nonRelocatableKernelLoadsAt1MiB() throws {
        try withGuestRAM { ram throws in
            var bz = BzImage()
            bz.relocatable = 0
            let guest = try loadGuest(bz.build(), ram: ram)
            #expect(guest.start.rip == 0x10_0200 && ram.array(0x10_0000, 32) == pattern(32, seed: 0x42))
            // It runs (decompresses) at pref_address: the range reaches pref + init_size.
            #expect(guest.kernelRange == 0x10_0000..<0x110_0000)
            bz.initSize = 0x100_0000 + 1
            #expect(loaderError { _ = try loadGuest(bz.build(), ram: ram) }?.kind == .imageTooLarge)
        }
    }

    @Test func tooOldOrTruncatedBzImages() {
        var bz = BzImage()
        bz.version = 0x020B
        #expect(detectError(bz.build()) == GuestImageError(.bzImageTooOld, detail: 0x020B))
        bz = BzImage()
        bz.xloadflags = 0x2
        #expect(detectError(bz.build())?.kind == .bzImageTooOld)
        bz = BzImage()
        bz.loadflags = 0
        #expect(detectError(bz.build())?.kind == .bzImageTooOld)
        // Shorter than its setup sectors plus the 64-bit entry.
        bz = BzImage()
        #expect(detectError(Array(bz.build().prefix(2560 + 0x1FF))) == GuestImageError(.truncated, detail: 2560 + 0x200))
        #expect(detectError(Array(bz.build().prefix(2000)))?.kind == .truncated)
    }

    @Test func commandLineLimitIsTheKernelsCmdlineSize() {
        withGuestRAM { ram in
            var bz = BzImage()
            bz.cmdlineSize = 8
            #expect(throws: Never.self) { _ = try loadGuest(bz.build(), commandLine: "12345678", ram: ram) }
            #expect(loaderError { _ = try loadGuest(bz.build(), commandLine: "123456789", ram: ram) }
                    == GuestImageError(.commandLineTooLong, detail: 8))
            bz.cmdlineSize = 0xFFFF
            let long = String(repeating: "x", count: 4096)
            #expect(loaderError { _ = try loadGuest(bz.build(), commandLine: long, ram: ram) }
                    == GuestImageError(.commandLineTooLong, detail: 4095))
            // The command line ends at its first NUL.
            #expect((try? loadGuest(bz.build(), commandLine: "ro\0garbage", ram: ram))?.commandLineLength == 2)
        }
    }

    @Test func initrdModulesAreConcatenatedBelowInitrdAddrMax() throws {
        try withGuestRAM { ram throws in
            var bz = BzImage()
            bz.initrdAddrMax = 0x1BF_FFFF  // 28 MiB - 1
            let a = pattern(0x1003, seed: 1), b = pattern(0x800, seed: 2)
            let guest = try loadGuest(bz.build(), modules: [(a, "a"), (b, "b")], ram: ram)
            let base = UInt64(ram.read32(0x8000 + 0x218) ?? 0)
            // 0x1004 (4-byte aligned) + 0x800 bytes, page-aligned below 28 MiB.
            #expect(ram.read32(0x8000 + 0x21C) == 0x1804 && base == 0x1C0_0000 - 0x2000)
            #expect(ram.array(base, 0x1003) == a && ram.array(base + 0x1004, 0x800) == b)
            #expect(guest.moduleCount == 2 && guest.modulesRange == base..<(base + 0x1804))
        }
    }

    @Test func initrdGoesBelowTheKernelWhenTheTopIsTaken() throws {
        try withGuestRAM { ram throws in
            var bz = BzImage()
            bz.initSize = 0xF0_0000  // the kernel reaches 31 MiB
            let guest = try loadGuest(bz.build(), modules: [(pattern(0x20_0000, seed: 3), "big")], ram: ram)
            #expect(guest.kernelRange == 0x100_0000..<0x1F0_0000)
            #expect(guest.modulesRange == 0xE0_0000..<0x100_0000)
            #expect(ram.array(0xE0_0000, 16) == pattern(16, seed: 3))
            // Neither above nor below: too big.
            #expect(loaderError { _ = try loadGuest(bz.build(), modules: [(pattern(0xF0_0001, seed: 3), "x")], ram: ram) }
                    == GuestImageError(.modulesDoNotFit, detail: 0xF0_0001))
        }
    }

    @Test func guestRAMMustHoldTheBootStructures() {
        withGuestRAM(size: 1 << 20) { ram in
            #expect(loaderError { _ = try loadGuest(BzImage().build(), ram: ram) }
                    == GuestImageError(.guestRAMTooSmall, detail: 2 << 20))
            #expect(loaderError { _ = try loadGuest(pvhKernel(), ram: ram) }?.kind == .guestRAMTooSmall)
        }
    }

    @Test func pvhStartInfoMemoryMapAndModules() throws {
        try withGuestRAM { ram throws in
            let initrd = pattern(0x2345, seed: 4), second = pattern(0x10, seed: 5)
            let guest = try loadGuest(pvhKernel(), commandLine: "console=hvc0 earlyprintk",
                                      modules: [(initrd, "initrd args"), (second, "")], ram: ram)
            let start = guest.start
            #expect(start.mode == .protected32 && start.rip == 0x10_0010)
            #expect(start.registers.rbx == 0x8000 && start.codeSelector == 0x08 && start.dataSelector == 0x18)
            #expect(start.gdtrBase == 0x1000 && start.gdtrLimit == 0x1F && start.cr3 == 0)
            // struct hvm_start_info.
            let si: UInt64 = 0x8000
            #expect(ram.read32(si) == 0x336E_C578 && ram.read32(si + 4) == 1 && ram.read32(si + 8) == 0)
            #expect(ram.read32(si + 12) == 2 && ram.read64(si + 16) == 0x9400)
            #expect(ram.read64(si + 24) == 0xA000 && ram.cString(0xA000) == "console=hvc0 earlyprintk")
            #expect(ram.read64(si + 32) == 0)                          // rsdp_paddr
            #expect(ram.read64(si + 40) == 0x9000 && ram.read32(si + 48) == 3 && ram.read32(si + 52) == 0)
            // hvm_memmap_table_entry[3].
            let map: [(UInt64, UInt64, UInt32)] = (0..<3).map {
                let at = 0x9000 + UInt64($0 * 24)
                return (ram.read64(at) ?? 1, ram.read64(at + 8) ?? 1, ram.read32(at + 16) ?? 0)
            }
            #expect(map[0] == (0, 0x9F000, 1) && map[1] == (0x9F000, 0x61000, 2))
            #expect(map[2] == (0x10_0000, (32 << 20) - 0x10_0000, 1) && ram.read32(0x9000 + 20) == 0)
            // hvm_modlist_entry[2]: page-aligned, in order, at the top of RAM.
            let first = ram.read64(0x9400) ?? 0, next = ram.read64(0x9420) ?? 0
            #expect(first == (32 << 20) - 0x4000 && next == first + 0x3000)
            #expect(ram.read64(0x9408) == 0x2345 && ram.read64(0x9428) == 0x10 && ram.read64(0x9418) == 0)
            #expect(ram.array(first, 0x2345) == initrd && ram.array(next, 0x10) == second)
            #expect(ram.cString(ram.read64(0x9410) ?? 0) == "initrd args" && ram.cString(ram.read64(0x9430) ?? 0) == "")
            #expect(guest.modulesRange == first..<(next + 0x10))
        }
    }

    @Test func pvhWithoutModulesHasNoModuleList() throws {
        try withGuestRAM { ram throws in
            let guest = try loadGuest(pvhKernel(), ram: ram)
            #expect(ram.read32(0x8000 + 12) == 0 && ram.read64(0x8000 + 16) == 0 && guest.moduleCount == 0)
        }
    }
}
