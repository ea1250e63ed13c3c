import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import GuestBoot

/// Loads `image` with `machine` (the passthrough platform's description).
func loadOnMachine(_ image: [UInt8], _ machine: MachineDescription, ram: GuestRAM) throws -> LoadedGuest {
    try image.withUnsafeBytes { bytes in
        try GuestLoader.load(kernel: GuestModule(bytes: bytes), modules: GuestModules(), ram: ram, machine: machine)
    }
}

/// The machine's own map: RAM below the EBDA, reserved BIOS area, RAM, the
/// hypervisor's image reserved at 1 MiB, RAM, ACPI data on top.
func machineMap(extraReserved: Int = 0) throws -> E820Map {
    var map = E820Map()
    try map.add(base: 0, length: 0x9F000, type: E820Entry.ram)
    try map.add(base: 0x9F000, length: 0x61000, type: E820Entry.reserved)
    try map.add(base: 0x10_0000, length: 0x1F0_0000, type: E820Entry.ram)
    try map.add(base: 0x1FF_0000, length: 0x1_0000, type: E820Entry.acpiReclaimable)
    for i in 0..<extraReserved {   // a fragmented firmware: many small non-RAM ranges above 4 GiB
        try map.add(base: 0x1_0000_0000 + UInt64(i) * 0x2000, length: 0x1000, type: i % 2 == 0 ? E820Entry.reserved : E820Entry.acpiNVS)
        try map.add(base: 0x1_0000_1000 + UInt64(i) * 0x2000, length: 0x1000, type: E820Entry.acpiReclaimable)
    }
    try map.reserve(0x10_0000..<0x18_0000)
    return map
}

@Suite struct MachineDescriptionTests {
    @Test func aBzImageGetsTheMachinesE820AndRSDPAndTheFirstPageIsLeftAlone() throws {
        let map = try machineMap()
        try withGuestRAM { ram throws in
            _ = try loadOnMachine(BzImage().build(), MachineDescription(memoryMap: map, acpiRSDP: 0x1FF_0000), ram: ram)
            let zp: UInt64 = 0x8000
            #expect(ram.read8(zp + 0x1E8) == UInt8(map.count))
            for i in 0..<map.count {
                let entry = e820(ram, zp, i)
                #expect(entry == (map[i].base, map[i].length, map[i].type))
            }
            #expect(ram.read64(zp + 0x070) == 0x1FF_0000)            // acpi_rsdp_addr
            #expect(ram.all(0, 0x1000, are: 0xCC))                     // the firmware's IVT and BDA
        }
    }

    @Test func aPVHKernelGetsTheMapCompactedToItsTableAndTheRSDP() throws {
        let map = try machineMap(extraReserved: 30)                    // 66 entries: more than 42 fit
        #expect(map.count > 42)
        try withGuestRAM { ram throws in
            let guest = try loadOnMachine(pvhKernel(), MachineDescription(memoryMap: map, acpiRSDP: 0xE0000), ram: ram)
            let info = guest.bootInfo
            #expect(ram.read64(info + 32) == 0xE0000)                  // rsdp_paddr
            let count = Int(ram.read32(info + 48) ?? 0)
            #expect(count > 0 && count <= 42)
            var ramBytes: UInt64 = 0
            for i in 0..<count {
                let at = (ram.read64(info + 40) ?? 0) + UInt64(i * 24)
                if ram.read32(at + 16) == E820Entry.ram { ramBytes += ram.read64(at + 8) ?? 0 }
            }
            #expect(ramBytes == map.bytes(ofType: E820Entry.ram))    // no RAM lost in the compaction
        }
    }

    @Test func aKernelOverTheHypervisorsMemoryIsRefused() throws {
        try withGuestRAM { base throws in
            var holes = [4 of Range<UInt64>](repeating: 0..<0)
            holes[0] = 0x100_0000..<0x100_1000                          // where the bzImage goes
            let ram = GuestRAM(hostPhysical: base.hostPhysical, base: base.base, size: base.size, holes: holes)
            let error = loaderError { _ = try loadOnMachine(BzImage().build(), MachineDescription(memoryMap: try machineMap(), acpiRSDP: 0), ram: ram) }
            #expect(error == GuestImageError(.segmentOverlapsHypervisor, detail: 0x100_0000))
        }
    }
}
