import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

/// The tags GRUB's EFI loader adds: EFI memory map (17), system table pointers
/// (11, 12), and the boot-services-not-terminated marker (18).
@Suite struct Multiboot2EFITests {
    /// An OVMF-like map: low RAM, boot services data, ACPI, NVS, MMIO, runtime.
    static let ovmfMap: [(UInt32, UInt64, UInt64)] = [
        (3, 0, 0xA0), (7, 0x10_0000, 0x700), (2, 0x80_0000, 0x100), (4, 0x90_0000, 0x6F00),
        (9, 0x7B0_0000, 0x10), (10, 0x7B1_0000, 0x4), (5, 0x7B2_0000, 0x20), (6, 0x7B4_0000, 0x20),
        (0, 0x7B6_0000, 0x1), (11, 0xFFC0_0000, 0x400), (8, 0x1_0000_0000, 1), (14, 0x2_0000_0000, 1),
    ]

    @Test func efiMapIsPreferredAndItsTypesAreTranslated() throws {
        var b = MBIBuilder()
        b.commandLine("")
        b.memoryMap([(0, 0x9_F000, 1), (0x10_0000, 0x7A0_0000, 1)])
        b.efiMemoryMap(Self.ovmfMap)
        b.tag(12, MBIBuilder.le64(0x7BF_E018))
        b.end()
        try withInfo(b.finish()) { info in
            let map = try #require(info.memoryMap)
            #expect(map.isEFI && map.count == 12 && map.entrySize == 48 && map.entryVersion == 1)
            #expect(map.raw.count == 12 * 48)
            #expect(map[1] == .init(base: 0x10_0000, length: 0x70_0000, type: 1, efiType: 7))
            #expect((0..<12).map { map[$0].type } == [1, 1, 1, 1, 3, 4, 2, 2, 2, 2, 5, 2])
            #expect((0..<12).map { map[$0].kind } == [
                .available, .available, .available, .available, .acpiReclaimable, .acpiNVS,
                .reserved, .reserved, .reserved, .reserved, .badMemory, .reserved,
            ])
            #expect(info.multibootMemoryMap?.count == 2 && info.multibootMemoryMap?.isEFI == false)
            #expect(info.efiSystemTable == 0x7BF_E018)
            // The allocator sees the EFI map: adjacent available entries merge.
            let usable = try PhysicalMemoryMap(info: info, kernelImage: PhysicalMemoryMap.Range(start: 0x10_0000, end: 0x20_0000))
            #expect(usable.totalAvailableBytes == 0xA_0000 + 0x70_0000 + 0x10_0000 + 0x6F0_0000)
            #expect(usable.count == 1 && usable[0].start == 0x20_0000 && usable[0].end == 0x780_0000)
        }
    }

    @Test func systemTablePointers() throws {
        var b = MBIBuilder()
        b.tag(11, MBIBuilder.le32(0x7F00_0000))
        b.end()
        try withInfo(b.finish()) { #expect($0.efiSystemTable == 0x7F00_0000 && $0.memoryMap == nil) }
        var short = MBIBuilder()
        let at = short.tag(12, MBIBuilder.le32(1))
        short.end()
        #expect(throws: BootInfoError(.tagTooShort, at: at)) { try withInfo(short.finish()) { _ in } }
        var twice = MBIBuilder()
        twice.tag(11, MBIBuilder.le32(1))
        let second = twice.tag(11, MBIBuilder.le32(2))
        twice.end()
        #expect(throws: BootInfoError(.duplicateTag, at: second)) { try withInfo(twice.finish()) { _ in } }
    }

    @Test func modulesMaySpanAdjacentEFIEntries() throws {
        var b = MBIBuilder()
        b.module(start: 0x40_0000, end: 0xA0_0000, "guest")
        b.efiMemoryMap([(7, 0x10_0000, 0x700), (2, 0x80_0000, 0x100), (0, 0x90_0000, 0x10), (7, 0xA0_0000, 0x100)])
        b.end()
        try withInfo(b.finish()) { info in
            #expect(throws: PhysicalMemoryMapError.moduleOutsideRAM(index: 0)) {
                _ = try PhysicalMemoryMap(info: info, kernelImage: PhysicalMemoryMap.Range(start: 0x10_0000, end: 0x20_0000))
            }
        }
        var ok = MBIBuilder()
        ok.module(start: 0x40_0000, end: 0x90_0000, "guest")
        ok.efiMemoryMap([(7, 0x10_0000, 0x700), (2, 0x80_0000, 0x100)])
        ok.end()
        try withInfo(ok.finish()) { info in
            let usable = try PhysicalMemoryMap(info: info, kernelImage: PhysicalMemoryMap.Range(start: 0x10_0000, end: 0x20_0000))
            #expect(usable.count == 1 && usable[0].start == 0x20_0000 && usable[0].end == 0x40_0000)
        }
    }

    @Test func malformedEFIMapsAreErrors() throws {
        func expectError(_ kind: BootInfoError.Kind, _ build: (inout MBIBuilder) -> Int) {
            var b = MBIBuilder()
            b.commandLine("x")
            let at = build(&b)
            b.end()
            #expect(throws: BootInfoError(kind, at: at)) { try withInfo(b.finish()) { _ in } }
        }
        expectError(.tagTooShort) { $0.tag(17, MBIBuilder.le32(48)) }
        expectError(.efiDescriptorSizeBad) { $0.efiMemoryMap([(7, 0, 1)], descriptorSize: 32) }
        expectError(.efiDescriptorSizeBad) { $0.tag(17, MBIBuilder.le32(44) + MBIBuilder.le32(1) + Array(repeating: 0, count: 44)) }
        expectError(.efiMemoryMapPartialEntry) { $0.tag(17, MBIBuilder.le32(48) + MBIBuilder.le32(1) + Array(repeating: 0, count: 40)) }
        expectError(.efiDescriptorInvalid) { $0.efiMemoryMap([(7, 0x10_0000, 1), (7, 0x1234, 1)]) }
        expectError(.efiDescriptorInvalid) { $0.efiMemoryMap([(7, 0, UInt64(1) << 52)]) }
        expectError(.efiDescriptorInvalid) { $0.efiMemoryMap([(7, 0xFFFF_FFFF_FFFF_F000, 2)]) }
        expectError(.duplicateTag) { b in b.efiMemoryMap([(7, 0, 1)]); return b.efiMemoryMap([(7, 0, 1)]) }
        expectError(.efiBootServicesNotTerminated) { $0.tag(18, []) }
        // A tag that claims more than total_size is caught before its body is read.
        expectError(.tagTruncated) { $0.tag(17, MBIBuilder.le32(48) + MBIBuilder.le32(1), size: 4096) }
        // An empty map (header only) is valid and has no entries.
        var b = MBIBuilder()
        b.efiMemoryMap([])
        b.end()
        try withInfo(b.finish()) { #expect($0.memoryMap?.count == 0) }
    }

    @Test func newErrorsHaveMessages() {
        let kinds: [BootInfoError.Kind] = [
            .efiDescriptorSizeBad, .efiMemoryMapPartialEntry, .efiDescriptorInvalid, .efiBootServicesNotTerminated,
        ]
        let messages = Set(kinds.map { "\(BootInfoError($0, at: 0).message)" })
        #expect(messages.count == kinds.count)
    }

    @Test func efiTypeTranslationTable() {
        #expect((0...15).map { EFIMemoryDescriptor.multibootType($0) } == [2, 1, 1, 1, 1, 2, 2, 1, 5, 3, 4, 2, 2, 2, 2, 2])
    }
}
