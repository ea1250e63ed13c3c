import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import GuestBoot

@Suite struct GuestLoaderTests {
    @Test func bootSectorGoesThroughTheSamePath() throws {
        try withGuestRAM { ram throws in
            let image = bootSectorImage(1024)
            // Modules are not passed to a boot sector.
            let guest = try loadGuest(image, commandLine: "ignored", modules: [([1, 2, 3], "m")], ram: ram)
            #expect(guest.format == .bootSector && guest.format.name.description == "boot sector")
            #expect(guest.start.mode == .real && guest.start.rip == 0x7C00 && guest.start.rsp == 0x7C00)
            #expect(guest.start.registers.rdx == 0x80 && guest.bootInfo == 0 && guest.moduleCount == 0)
            #expect(ram.array(0x7C00, 1024) == image && ram.all(0x7C00 + 1024, 16, are: 0xCC))
            #expect(guest.kernelRange == 0x7C00..<(0x7C00 + 1024) && guest.modulesRange.isEmpty)
            // Guest RAM is handed over unzeroed: everything below the image
            // (the IVT and BIOS data area) must read as zero, as the ABI says.
            #expect(ram.all(0, 0x7C00, are: 0))
        }
    }

    @Test func bootSectorMustFitInGuestRAM() {
        withGuestRAM(size: 0x8000) { ram in
            #expect(throws: Never.self) { _ = try loadGuest(bootSectorImage(0x400), ram: ram) }
            #expect(loaderError { _ = try loadGuest(bootSectorImage(0x401), ram: ram) }
                    == GuestImageError(.imageTooLarge, detail: 0x8001))
        }
    }

    @Test func detectionErrorsLeaveGuestRAMUntouched() {
        withGuestRAM { ram in
            #expect(loaderError { _ = try loadGuest(randomBytes(8192), ram: ram) }?.kind == .unknownFormat)
            var bz = BzImage()
            bz.version = 0x0206
            #expect(loaderError { _ = try loadGuest(bz.build(), ram: ram) }?.kind == .bzImageTooOld)
            #expect(ram.all(0, 0x20000, are: 0xCC) && ram.all(0x100_0000, 0x1000, are: 0xCC))
        }
    }

    @Test func guestModulesHoldEightWithoutHeap() throws {
        var modules = GuestModules()
        #expect(modules.count == 0 && modules[0].bytes.count == 0)
        let bytes: [UInt8] = [1, 2, 3]
        try bytes.withUnsafeBytes { b in
            for i in 0..<GuestModules.capacity {
                try modules.append(GuestModule(bytes: UnsafeRawBufferPointer(rebasing: b[0..<(i % 3 + 1)])))
            }
            #expect(modules.count == 8 && modules[7].bytes.count == 2 && modules[7].commandLine.count == 0)
            #expect(throws: GuestImageError(.tooManyModules, detail: 8)) {
                try modules.append(GuestModule(bytes: b))
            }
        }
        #expect(modules.count == 8 && modules[8].bytes.count == 0 && modules[-1].bytes.count == 0)
    }

    @Test func eightModulesReachAPVHGuest() throws {
        try withGuestRAM { ram throws in
            let modules = (0..<8).map { (pattern(100 + $0, seed: UInt8($0)), "module \($0)") }
            let guest = try loadGuest(pvhKernel(), modules: modules, ram: ram)
            #expect(guest.moduleCount == 8 && ram.read32(0x8000 + 12) == 8)
            for i in 0..<8 {
                let entry = 0x9400 + UInt64(i * 32)
                let address = ram.read64(entry) ?? 0
                #expect(address == (32 << 20) - 0x8000 + UInt64(i) * 0x1000)
                #expect(ram.array(address, 100 + i) == modules[i].0)
                #expect(ram.cString(ram.read64(entry + 16) ?? 0) == "module \(i)")
            }
        }
    }

    @Test func commandLineWithoutNULFillsTheWholeBuffer() throws {
        try withGuestRAM { ram throws in
            let line = String(repeating: "a", count: 4095)
            let guest = try loadGuest(pvhKernel(), commandLine: line, ram: ram)
            #expect(guest.commandLineLength == 4095 && ram.cString(0xA000) == line && ram.read8(0xA000 + 4095) == 0)
        }
    }

    @Test func modulesMayStartRightWhereTheKernelEnds() throws {
        try withGuestRAM(size: 4 << 20) { ram throws in
            let tail = Segment(paddr: 0x3F_E000, data: [1], memsz: 0x1000)
            let guest = try loadGuest(pvhKernel(extra: [tail]), modules: [(pattern(0x1000, seed: 1), "")], ram: ram)
            #expect(guest.kernelRange == 0x10_0000..<0x3F_F000 && guest.modulesRange == 0x3F_F000..<0x40_0000)
        }
    }
}
