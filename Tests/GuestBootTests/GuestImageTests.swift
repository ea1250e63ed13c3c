import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import GuestBoot

/// A boot-sector image: `count` bytes with 55 AA at 510.
func bootSectorImage(_ count: Int = 512) -> [UInt8] {
    var image = ByteImage(count: count, fill: 0x90)
    image.put(510, UInt16(0xAA55))
    return image.bytes
}

/// Deterministic "random" bytes (an LCG), free of every signature the detector knows.
func randomBytes(_ count: Int, seed: UInt64 = 0x1234_5678) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
}

@Suite struct GuestImageTests {
    @Test func emptyImageIsRefused() {
        #expect(detectError([])?.kind == .emptyImage)
        withGuestRAM { ram in
            #expect(loaderError { _ = try loadGuest([], ram: ram) }?.kind == .emptyImage)
        }
    }

    @Test func randomBytesAreAnUnknownFormat() {
        for seed in [1, 2, 3] as [UInt64] {
            let bytes = randomBytes(4096, seed: seed)
            #expect(detectError(bytes) == GuestImageError(.unknownFormat))
        }
        #expect(detectError([0x7F, 0x45]) == GuestImageError(.unknownFormat))
    }

    @Test func bootSectorNeedsTheSignatureAndFullSector() throws {
        #expect(try detect(bootSectorImage()) == .bootSector)
        #expect(try detect(bootSectorImage(4096)) == .bootSector)
        #expect(detectError(Array(bootSectorImage().prefix(511)))?.kind == .unknownFormat)
        var wrong = ByteImage(bootSectorImage())
        wrong.put(510, UInt16(0x55AA))
        #expect(detectError(wrong.bytes)?.kind == .unknownFormat)
    }

    @Test func pvhNoteWinsOverAMultibootHeader() throws {
        let note = Segment(type: 4, paddr: 0, data: xenNote(entry: 0x10_0040), align: 4)
        let mb = multibootHeader(flags: 0)
        let code = Segment(paddr: 0x10_0000, data: mb + pattern(64, seed: 1))
        let elf = makeELF(segments: [code, note]).bytes
        #expect(try detect(elf) == .pvh(entry: 0x10_0040))
        #expect(GuestImageFormat.pvh(entry: 0x10_0040).name.description == "PVH ELF")
    }

    @Test func multibootHeaderInAnELFWithoutPVHNote() throws {
        let code = Segment(paddr: 0x10_0000, data: multibootHeader(flags: 0x3) + pattern(64, seed: 1))
        #expect(try detect(makeELF(is64: false, segments: [code]).bytes) == .multiboot1)
        #expect(try detect(makeELF(is64: true, segments: [code]).bytes) == .multiboot1)
    }

    @Test func elfWithoutPVHOrMultibootIsRefused() {
        let code = Segment(paddr: 0x10_0000, data: pattern(256, seed: 3))
        #expect(detectError(makeELF(entry: 0, segments: [code]).bytes) == GuestImageError(.elfWithoutSupportedEntry))
        #expect(detectError(makeELF(entry: 0x10_0000, segments: [code]).bytes)?.kind == .elfWithoutSupportedEntry)
        // A note that is not the PVH entry does not make it one.
        let other = Segment(type: 4, paddr: 0, data: xenNote(entry: 0x10_0000, type: 17), align: 4)
        #expect(detectError(makeELF(segments: [code, other]).bytes)?.kind == .elfWithoutSupportedEntry)
    }

    @Test func badMultibootChecksumIsReportedWithItsOffset() {
        // Alone (no other format), in an ELF, and in a boot sector (which still boots).
        var plain = ByteImage(count: 1024)
        plain.put(64, bytes: multibootHeader(flags: 0, checksum: 1))
        #expect(detectError(plain.bytes) == GuestImageError(.multibootBadChecksum, detail: 64))
        let code = Segment(paddr: 0x10_0000, data: multibootHeader(flags: 0, checksum: 7))
        let elf = makeELF(segments: [code])
        #expect(detectError(elf.bytes)?.kind == .multibootBadChecksum)
        var sector = ByteImage(bootSectorImage())
        sector.put(16, bytes: multibootHeader(flags: 0, checksum: 7))
        #expect(detectError(sector.bytes) == nil)
        // A good header after a bad one is found.
        var both = ByteImage(count: 1024)
        both.put(8, bytes: multibootHeader(flags: 0x1_0000, checksum: 7))
        both.put(32, bytes: multibootHeader(flags: 0x1_0000, addresses: [0x10_0020, 0x10_0000, 0, 0, 0x10_0000]))
        #expect(detectError(both.bytes) == nil)
    }

    @Test func multibootHeaderOnlyInTheFirst8KiBAnd4ByteAligned() {
        var late = ByteImage(count: 16384)
        late.put(8192, bytes: multibootHeader(flags: 0x1_0000, addresses: [0x10_2000, 0x10_0000, 0, 0, 0x10_0000]))
        #expect(detectError(late.bytes)?.kind == .unknownFormat)
        var misaligned = ByteImage(count: 1024)
        misaligned.put(66, bytes: multibootHeader(flags: 0x1_0000, addresses: [0x10_0040, 0x10_0000, 0, 0, 0x10_0000]))
        #expect(detectError(misaligned.bytes)?.kind == .unknownFormat)
        var last = ByteImage(count: 8192 + 32)
        last.put(8180, bytes: multibootHeader(flags: 0x1_0000, addresses: [0x10_1FF4, 0x10_0000, 0, 0, 0x10_0000]))
        #expect(detectError(last.bytes) == nil)
    }

    @Test func everyErrorHasItsOwnMessage() {
        let kinds: [GuestImageError.Kind] = [
            .emptyImage, .truncated, .unknownFormat, .unsupportedELF, .elfWithoutSupportedEntry, .noLoadableSegments,
            .badSegment, .segmentOutsideGuestRAM, .segmentOverlapsLoaderArea, .entryOutsideGuestRAM, .badPVHNote,
            .bzImageTooOld, .imageTooLarge, .multibootBadChecksum, .multibootUnsupportedFlags,
            .multibootWithoutAddresses, .multibootBadAddresses, .tooManyModules, .modulesDoNotFit,
            .commandLineTooLong, .guestRAMTooSmall,
        ]
        let messages = kinds.map { GuestImageError($0).message.description }
        #expect(Set(messages).count == kinds.count)
        #expect(messages.allSatisfy { $0.count > 15 })
        #expect(GuestImageError(.bzImageTooOld).message.description.contains("too old"))
        #expect(GuestImageError(.truncated, detail: 9).detail == 9 && GuestImageError(.truncated).detail == 0)
    }

    @Test func formatNames() {
        #expect(GuestImageFormat.linux.name.description == "Linux bzImage")
        #expect(GuestImageFormat.multiboot1.name.description == "multiboot")
        #expect(GuestImageFormat.bootSector.name.description == "boot sector")
    }

    @Test func memoryMapCoversRAMWithTheLegacyHole() {
        let ram: UInt64 = 64 << 20
        let entries = (0..<GuestLayout.memoryMapEntries).map { GuestLayout.memoryMapEntry($0, ramSize: ram) }
        #expect(entries.map(\.base) == [0, 0x9F000, 0x10_0000])
        #expect(entries.map(\.length) == [0x9F000, 0x61000, ram - 0x10_0000])
        #expect(entries.map(\.type) == [1, 2, 1])
        #expect(entries[2].base + entries[2].length == ram)
    }

    @Test func layoutKeepsTheBootStructuresApartAndBelow64KiB() {
        let starts: [UInt64] = [GuestLayout.gdt, GuestLayout.pml4, GuestLayout.pdpt, GuestLayout.pageDirectories,
                                GuestLayout.bootInfo, GuestLayout.memoryMap, GuestLayout.moduleList,
                                GuestLayout.loaderName, GuestLayout.commandLine, GuestLayout.moduleStrings]
        let ends: [UInt64] = [GuestLayout.gdt + UInt64(GuestLayout.gdtLimit) + 1, 0x3000, 0x4000, 0x8000, 0x9000,
                              0x9000 + 3 * 24, 0x9400 + 8 * 32, 0x9800 + 8,
                              GuestLayout.commandLine + UInt64(GuestLayout.commandLineCapacity),
                              GuestLayout.moduleStrings + UInt64(GuestLayout.moduleStringsCapacity)]
        for i in 1..<starts.count { #expect(ends[i - 1] <= starts[i]) }
        #expect(ends.last! <= GuestLayout.bootStackTop - 0x1000 && GuestLayout.bootStackTop <= GuestLayout.loaderEnd)
        #expect(GuestLayout.loaderEnd <= GuestLayout.lowMemoryEnd)
    }
}
