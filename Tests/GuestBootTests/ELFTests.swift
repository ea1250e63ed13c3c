import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import GuestBoot

/// A PVH kernel: text at 1 MiB, data + bss at 2 MiB, the Xen note in a PT_NOTE.
func pvhKernel(is64: Bool = true, entry: UInt32 = 0x10_0010, note: [UInt8]? = nil, noteAlign: UInt64 = 4,
               extra: [Segment] = []) -> [UInt8] {
    let text = Segment(paddr: 0x10_0000, data: pattern(0x1800, seed: 1))
    let data = Segment(paddr: 0x20_0000, data: pattern(0x300, seed: 2), memsz: 0x2000)
    let notes = Segment(type: 4, paddr: 0, data: note ?? xenNote(entry: UInt64(entry)), align: noteAlign)
    return makeELF(is64: is64, entry: 0xFFFF_FFFF_8100_0000, segments: [text, notes, data] + extra).bytes
}

@Suite struct ELFTests {
    @Test func pvhSegmentsAreLoadedAtTheirPhysicalAddresses() throws {
        try withGuestRAM { ram throws in
            let guest = try loadGuest(pvhKernel(), ram: ram)
            #expect(guest.format == .pvh(entry: 0x10_0010))
            #expect(ram.array(0x10_0000, 0x1800) == pattern(0x1800, seed: 1))
            #expect(ram.array(0x20_0000, 0x300) == pattern(0x300, seed: 2))
            // p_memsz beyond p_filesz is zeroed (bss), and nothing past it is touched.
            #expect(ram.all(0x20_0300, 0x2000 - 0x300, are: 0))
            #expect(ram.all(0x20_2000, 16, are: 0xCC) && ram.all(0x10_1800, 16, are: 0xCC))
            #expect(guest.kernelRange == 0x10_0000..<0x20_2000)
        }
    }

    @Test func elf32PVHAndNotePaddingVariants() throws {
        try withGuestRAM { ram throws in
            #expect(try loadGuest(pvhKernel(is64: false), ram: ram).format == .pvh(entry: 0x10_0010))
            // A 4-byte descriptor, and 8-byte padding when the note segment is 8-aligned.
            #expect(try loadGuest(pvhKernel(note: xenNote(entry: 0x10_0020, descSize: 4)), ram: ram).start.rip == 0x10_0020)
            let padded = xenNote(entry: 0x10_0030, pad: 8)
            #expect(try loadGuest(pvhKernel(note: padded, noteAlign: 8), ram: ram).start.rip == 0x10_0030)
            // The entry note after other notes (a GNU build-id, a Xen note of another type).
            let gnu = xenNote(entry: 0x1234, descSize: 20, type: 3, name: Array("GNU".utf8) + [0])
            let notes = gnu + xenNote(entry: 0x999, type: 6) + xenNote(entry: 0x10_0044)
            #expect(try loadGuest(pvhKernel(note: notes), ram: ram).start.rip == 0x10_0044)
            let longName = xenNote(entry: 0x10_0000, name: Array("Xen2".utf8) + [0])
            #expect(detectError(pvhKernel(note: longName))?.kind == .elfWithoutSupportedEntry)
        }
    }

    @Test func malformedPVHNotes() {
        #expect(detectError(pvhKernel(note: xenNote(entry: 0x1_0000_0000))) == GuestImageError(.badPVHNote, detail: 0x1_0000_0000))
        #expect(detectError(pvhKernel(note: xenNote(entry: 0x10_0000, descSize: 2))) == GuestImageError(.badPVHNote, detail: 2))
        // A descriptor running past the note segment.
        var cut = xenNote(entry: 0x10_0000)
        cut.removeLast(4)
        #expect(detectError(pvhKernel(note: cut))?.kind == .truncated)
        // A note segment past the end of the file.
        let outside = Segment(type: 4, paddr: 0, data: [], offset: 0x10_0000, filesz: 24)
        let code = Segment(paddr: 0x10_0000, data: pattern(64, seed: 0))
        #expect(detectError(makeELF(segments: [code, outside]).bytes) == GuestImageError(.truncated, detail: 0x10_0018))
    }

    @Test func truncatedELFHeadersAndTables() {
        let full = pvhKernel()
        #expect(detectError(Array(full.prefix(40)))?.kind == .truncated)
        #expect(detectError(Array(makeELF(is64: false, segments: []).bytes.prefix(50)))?.kind == .truncated)
        // Program headers past the end of the file.
        var image = ByteImage(full)
        image.put(32, UInt64(full.count - 8))
        #expect(detectError(image.bytes)?.kind == .truncated)
    }

    @Test func unsupportedELFs() {
        var image = ByteImage(pvhKernel())
        image.put(4, UInt8(3))
        #expect(detectError(image.bytes) == GuestImageError(.unsupportedELF, detail: 4))
        image = ByteImage(pvhKernel())
        image.put(5, UInt8(2))  // big-endian
        #expect(detectError(image.bytes) == GuestImageError(.unsupportedELF, detail: 5))
        #expect(detectError(makeELF(machine: 40, segments: []).bytes) == GuestImageError(.unsupportedELF, detail: 40))
        image = ByteImage(pvhKernel())
        image.put(54, UInt16(32))  // an ELF64 program header cannot be 32 bytes
        #expect(detectError(image.bytes) == GuestImageError(.unsupportedELF, detail: 32))
    }

    @Test func segmentErrors() {
        withGuestRAM(size: 4 << 20) { ram in
            let beyond = Segment(paddr: 0x3F_F000, data: pattern(0x2000, seed: 5))
            #expect(loaderError { _ = try loadGuest(pvhKernel(extra: [beyond]), ram: ram) }
                    == GuestImageError(.segmentOutsideGuestRAM, detail: 0x3F_F000))
            let huge = Segment(paddr: 0xFFFF_FFFF_FFFF_F000, data: [1], memsz: 0x2000)
            #expect(loaderError { _ = try loadGuest(pvhKernel(extra: [huge]), ram: ram) }?.kind == .segmentOutsideGuestRAM)
            let low = Segment(paddr: 0x8000, data: pattern(16, seed: 5))
            #expect(loaderError { _ = try loadGuest(pvhKernel(extra: [low]), ram: ram) }
                    == GuestImageError(.segmentOverlapsLoaderArea, detail: 0x8000))
            let inverted = Segment(paddr: 0x30_0000, data: pattern(64, seed: 5), memsz: 16)
            #expect(loaderError { _ = try loadGuest(pvhKernel(extra: [inverted]), ram: ram) }
                    == GuestImageError(.badSegment, detail: 0x30_0000))
            let pastFile = Segment(paddr: 0x30_0000, data: [], memsz: 0x100, offset: 0x4000_0000, filesz: 0x100)
            #expect(loaderError { _ = try loadGuest(pvhKernel(extra: [pastFile]), ram: ram) }?.kind == .truncated)
            // Nothing was written by a refused image.
            #expect(ram.all(0x10_0000, 0x1800, are: 0xCC))
        }
    }

    @Test func anELFWithoutLoadableSegments() {
        withGuestRAM { ram in
            let note = Segment(type: 4, paddr: 0, data: xenNote(entry: 0x10_0000), align: 4)
            let empty = Segment(paddr: 0x10_0000, data: [], memsz: 0)
            let image = makeELF(segments: [note, empty]).bytes
            #expect(loaderError { _ = try loadGuest(image, ram: ram) } == GuestImageError(.noLoadableSegments))
        }
    }

    @Test func pvhEntryMustBeInGuestRAM() {
        withGuestRAM(size: 4 << 20) { ram in
            #expect(loaderError { _ = try loadGuest(pvhKernel(entry: 0x40_0000), ram: ram) }
                    == GuestImageError(.entryOutsideGuestRAM, detail: 0x40_0000))
        }
    }
}
