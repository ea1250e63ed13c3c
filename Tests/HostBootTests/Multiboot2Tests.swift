import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

/// A boot information image shaped like GRUB's (tag order of
/// `grub_multiboot_make_mbi`): cmdline, loader name, modules, memory map, ELF
/// sections, basic meminfo, framebuffer, ACPI old, ACPI new, end.
private func grubImage() -> (image: [UInt8], offsets: [String: Int]) {
    var b = MBIBuilder()
    var offsets: [String: Int] = [:]
    offsets["cmdline"] = b.commandLine("log=debug guest_mem=64M")
    offsets["name"] = b.bootLoaderName("GRUB 2.06-13+deb12u1")
    b.module(start: 0x20_0000, end: 0x23_4567, "/boot/vmlinuz console=ttyS0")
    b.module(start: 0x30_0000, end: 0x30_0000, "")
    b.memoryMap([
        (0, 0x9_FC00, 1), (0x9_FC00, 0x400, 2), (0xF_0000, 0x1_0000, 2),
        (0x10_0000, 0x7EE_0000, 1), (0x7FE_0000, 0x2_0000, 3), (0xFFFC_0000, 0x4_0000, 4),
        (0x1_0000_0000, 0x1000, 5), (0x2_0000_0000, 0x1000, 12),
    ])
    b.elfSections()
    b.basicMemory(lowerKiB: 639, upperKiB: 130_944)
    b.framebuffer(address: 0xFD00_0000, pitch: 4096, width: 1024, height: 768, bpp: 32, type: 1,
                  rgb: [16, 8, 8, 8, 0, 8])
    offsets["rsdp1"] = b.tag(14, MBIBuilder.rsdpV1(rsdt: 0x7FE_1234))
    offsets["rsdp2"] = b.tag(15, MBIBuilder.rsdpV2(rsdt: 0x7FE_1234, xsdt: 0x7FE_5678))
    b.end()
    return (b.finish(), offsets)
}

@Suite struct Multiboot2Tests {
    @Test func magicIsCheckedBeforeTheInfoIsTrusted() throws {
        try Multiboot2Info.checkMagic(0x36D7_6289)
        #expect(throws: BootInfoError(.badMagic, at: 0)) { try Multiboot2Info.checkMagic(0x2BAD_B002) }
    }

    @Test func decodesEveryTagOfAGrubLikeImage() throws {
        let (image, offsets) = grubImage()
        try withInfo(image, at: 0x1_0000) { info in
            #expect(info.totalSize == image.count)
            #expect(info.infoRange == PhysicalMemoryMap.Range(start: 0x1_0000, end: 0x1_0000 + UInt64(image.count)))
            #expect(text(info.commandLine) == "log=debug guest_mem=64M")
            #expect(text(info.bootLoaderName) == "GRUB 2.06-13+deb12u1")
            #expect(info.basicMemory?.lowerKiB == 639 && info.basicMemory?.upperKiB == 130_944)

            #expect(info.moduleCount == 2)
            var seen: [(UInt64, UInt64, String)] = []
            info.forEachModule { seen.append(($0.start, $0.end, text($0.string)!)) }
            #expect(seen.map(\.0) == [0x20_0000, 0x30_0000])
            #expect(seen.map(\.1) == [0x23_4567, 0x30_0000])
            #expect(seen.map(\.2) == ["/boot/vmlinuz console=ttyS0", ""])
            #expect(info.module(at: 0)?.size == 0x3_4567)
            #expect(info.module(at: 1)?.range == PhysicalMemoryMap.Range(start: 0x30_0000, end: 0x30_0000))
            #expect(info.module(at: 2) == nil)
            #expect(info.module(at: -1) == nil)

            let map = try #require(info.memoryMap)
            #expect(map.count == 8 && map.entrySize == 24 && map.entryVersion == 0)
            #expect(map[3] == Multiboot2Info.MemoryRegion(base: 0x10_0000, length: 0x7EE_0000, type: 1))
            var kinds: [Multiboot2Info.MemoryRegion.Kind] = []
            info.forEachMemoryRegion { kinds.append($0.kind) }
            #expect(kinds == [.available, .reserved, .reserved, .available, .acpiReclaimable, .acpiNVS,
                              .badMemory, .reserved])
            var iterator = map.makeIterator()
            var bases: [UInt64] = []
            while let region = iterator.next() { bases.append(region.base) }
            #expect(bases == [0, 0x9_FC00, 0xF_0000, 0x10_0000, 0x7FE_0000, 0xFFFC_0000, 0x1_0000_0000, 0x2_0000_0000])

            let fb = try #require(info.framebuffer)
            #expect(fb.address == 0xFD00_0000 && fb.pitch == 4096 && fb.width == 1024 && fb.height == 768)
            #expect(fb.bitsPerPixel == 32 && fb.kind == .rgb && fb.byteCount == 4096 * 768)
            #expect(fb.red?.position == 16 && fb.red?.maskSize == 8)
            #expect(fb.green?.position == 8 && fb.green?.maskSize == 8)
            #expect(fb.blue?.position == 0 && fb.blue?.maskSize == 8)

            let rsdp = try #require(info.acpiRSDP)
            #expect(rsdp.tagVersion == 2 && rsdp.revision == 2)
            #expect(rsdp.signatureValid && rsdp.checksumValid)
            #expect(rsdp.rsdtAddress == 0x7FE_1234 && rsdp.xsdtAddress == 0x7FE_5678)
            #expect(rsdp.physicalAddress == 0x1_0000 + UInt64(offsets["rsdp2"]! + 8))
            let old = try #require(info.acpiOldRSDP)
            #expect(old.tagVersion == 1 && old.revision == 0 && old.xsdtAddress == nil)
            #expect(old.signatureValid && old.checksumValid && old.rsdtAddress == 0x7FE_1234)
            #expect(old.physicalAddress == 0x1_0000 + UInt64(offsets["rsdp1"]! + 8))
        }
    }

    @Test func identityMappedInitTakesTheBufferAddressAsPhysical() throws {
        try withImage(grubImage().image) { buffer in
            let info = try Multiboot2Info(buffer)
            #expect(info.physicalAddress == UInt64(UInt(bitPattern: buffer.baseAddress)))
            #expect(info.infoRange.size == UInt64(buffer.count))
        }
    }

    @Test func aMinimalImageHasNoOptionalTags() throws {
        var b = MBIBuilder()
        b.end()
        try withInfo(b.finish()) { info in
            #expect(info.totalSize == 16)
            #expect(info.commandLine == nil && info.bootLoaderName == nil && info.basicMemory == nil)
            #expect(info.memoryMap == nil && info.framebuffer == nil && info.acpiRSDP == nil)
            #expect(info.moduleCount == 0)
            var it = info.modules
            #expect(it.next() == nil)
            var calls = 0
            info.forEachMemoryRegion { _ in calls += 1 }
            info.forEachModule { _ in calls += 1 }
            #expect(calls == 0)
        }
    }

    @Test func aBufferLongerThanTotalSizeIsCutToTotalSize() throws {
        let image = grubImage().image
        try withImage(image, slack: 64) { buffer in
            let info = try Multiboot2Info(buffer)
            #expect(buffer.count == image.count + 64)
            #expect(info.totalSize == image.count && info.bytes.count == image.count)
        }
    }

    @Test func modulesAreFoundBetweenOtherTagsAndFutureMapEntriesAreStrided() throws {
        var b = MBIBuilder()
        b.module(start: 0x1000, end: 0x2000, "a")
        b.commandLine("x")
        b.elfSections()
        b.module(start: 0x3000, end: 0x4000, "bb")
        b.memoryMap([(0x10_0000, 0x10_0000, 1), (0x20_0000, 0x1000, 2)], entrySize: 32, version: 1)
        b.module(start: 0x5000, end: 0x6000, "ccc")
        b.end()
        try withInfo(b.finish()) { info in
            var it = info.modules
            var names: [String] = []
            while let m = it.next() { names.append(text(m.string)!) }
            #expect(names == ["a", "bb", "ccc"])
            #expect(info.module(at: 2)?.start == 0x5000)
            let map = try #require(info.memoryMap)
            #expect(map.entrySize == 32 && map.entryVersion == 1 && map.count == 2)
            #expect(map[1] == Multiboot2Info.MemoryRegion(base: 0x20_0000, length: 0x1000, type: 2))
        }
    }

    @Test func framebufferKindsAndShortColorInfo() throws {
        for (type, kind) in [(0, Multiboot2Info.Framebuffer.Kind.indexed), (1, .rgb), (2, .egaText), (7, .other(7))] {
            var b = MBIBuilder()
            b.framebuffer(address: 0xB8000, pitch: 160, width: 80, height: 25, bpp: 16, type: UInt8(type))
            b.end()
            try withInfo(b.finish()) { info in
                let fb = try #require(info.framebuffer)
                #expect(fb.kind == kind)
                #expect(fb.red == nil && fb.green == nil && fb.blue == nil) // no color_info bytes
                #expect(fb.byteCount == 160 * 25)
            }
        }
    }

    @Test func rsdpChecksAndVersionPreference() throws {
        var b = MBIBuilder()
        b.tag(14, MBIBuilder.rsdpV1(rsdt: 0xE_0000))
        b.end()
        try withInfo(b.finish()) { info in
            let r = try #require(info.acpiRSDP)
            #expect(r.tagVersion == 1 && r.checksumValid && r.signatureValid && r.rsdtAddress == 0xE_0000)
            #expect(info.acpiNewRSDP == nil)
        }
        b = MBIBuilder()
        b.tag(14, MBIBuilder.rsdpV1(rsdt: 0xE_0000, breakChecksum: true))
        b.end()
        try withInfo(b.finish()) { info in #expect(info.acpiRSDP?.checksumValid == false) }

        var badSignature = MBIBuilder.rsdpV1(rsdt: 0xE_0000)
        badSignature[3] = UInt8(ascii: "X")
        b = MBIBuilder()
        b.tag(14, badSignature)
        b.end()
        try withInfo(b.finish()) { info in #expect(info.acpiRSDP?.signatureValid == false) }

        // A 2.0 RSDP whose length field claims more than the tag holds.
        b = MBIBuilder()
        b.tag(15, MBIBuilder.rsdpV2(rsdt: 1, xsdt: 2, length: 64))
        b.end()
        try withInfo(b.finish()) { info in
            let r = try #require(info.acpiRSDP)
            #expect(r.tagVersion == 2 && !r.checksumValid)
        }
        // A 2.0 RSDP with a broken extended checksum.
        var broken = MBIBuilder.rsdpV2(rsdt: 1, xsdt: 2)
        broken[33] = 9
        b = MBIBuilder()
        b.tag(15, broken)
        b.end()
        try withInfo(b.finish()) { info in #expect(info.acpiRSDP?.checksumValid == false) }
    }

    // MARK: Malformed images: each gives its exact typed error and offset.

    private func expectError(_ image: [UInt8], _ kind: BootInfoError.Kind, at offset: Int,
                             physical: UInt64 = 0x10_0000, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: BootInfoError(kind, at: offset), sourceLocation: sourceLocation) {
            try withImage(image) { _ = try Multiboot2Info($0, physicalAddress: physical) }
        }
    }

    @Test func headerErrors() {
        var b = MBIBuilder()
        b.end()
        let good = b.finish()
        #expect(throws: BootInfoError(.bufferTooSmall, at: 0)) {
            try withImage([16, 0, 0, 0]) { _ = try Multiboot2Info($0) }
        }
        #expect(throws: BootInfoError(.bufferTooSmall, at: 0)) {
            _ = try Multiboot2Info(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        expectError(good, .misalignedStart, at: 0, physical: 0x10_0004)
        expectError(b.finish(total: 8), .totalSizeTooSmall, at: 0)
        expectError(b.finish(total: 24), .totalSizeBeyondBuffer, at: 0)
        expectError(good, .addressOverflow, at: 0, physical: UInt64.max - 7)
        // A buffer whose own address is misaligned, parsed identity-mapped.
        #expect(throws: BootInfoError(.misalignedStart, at: 0)) {
            try withImage(good, shift: 4) { _ = try Multiboot2Info($0) }
        }
    }

    @Test func tagWalkErrors() {
        // Tag size below its header.
        var b = MBIBuilder()
        let bad = b.tag(1, [0], size: 4)
        b.end()
        expectError(b.finish(), .tagSizeTooSmall, at: bad)

        // Tag size beyond total_size.
        b = MBIBuilder()
        let long = b.tag(1, [0x41, 0], size: 64)
        b.end()
        expectError(b.finish(), .tagTruncated, at: long)

        // Only half a tag header left before total_size.
        b = MBIBuilder()
        b.commandLine("a") // at 8, size 10, padded to 16: next tag at 24
        b.end()
        expectError(b.finish(total: 28), .tagTruncated, at: 24)

        // Tags reach total_size with no end tag.
        b = MBIBuilder()
        b.commandLine("abc")
        expectError(b.finish(), .missingEndTag, at: 24)

        // total_size ends inside the last tag's padding: no room for an end tag.
        b = MBIBuilder()
        b.tag(1, Array("abcdefgh".utf8) + [0]) // size 17, padded to 24
        expectError(b.finish(total: 25), .missingEndTag, at: 32)

        // End tag with the wrong size, and an end tag followed by more bytes.
        b = MBIBuilder()
        let end = b.end(size: 16)
        b.bytes += [UInt8](repeating: 0, count: 8)
        expectError(b.finish(), .endTagBadSize, at: end)
        b = MBIBuilder()
        let early = b.end()
        b.commandLine("late")
        expectError(b.finish(), .endTagNotLast, at: early)
    }

    @Test func tagContentErrors() {
        func image(_ build: (inout MBIBuilder) -> Int) -> ([UInt8], Int) {
            var b = MBIBuilder()
            b.commandLine("first")
            let at = build(&b)
            b.end()
            return (b.finish(), at)
        }
        var (img, at) = image { $0.commandLine("again") }
        expectError(img, .duplicateTag, at: at)
        (img, at) = image { $0.tag(1, Array("no nul".utf8)) }
        expectError(img, .duplicateTag, at: at) // duplicate is found before the string
        (img, at) = image { $0.tag(2, Array("GRUB".utf8)) }
        expectError(img, .stringNotTerminated, at: at)
        (img, at) = image { $0.tag(3, MBIBuilder.le32(0x1000) + MBIBuilder.le32(0x2000) + Array("m".utf8)) }
        expectError(img, .stringNotTerminated, at: at)
        (img, at) = image { $0.tag(3, MBIBuilder.le32(0x1000)) }
        expectError(img, .tagTooShort, at: at)
        (img, at) = image { $0.module(start: 0x2000, end: 0x1FFF, "backwards") }
        expectError(img, .moduleEndBeforeStart, at: at)
        (img, at) = image { $0.tag(4, MBIBuilder.le32(639)) }
        expectError(img, .tagTooShort, at: at)
        (img, at) = image { b in b.basicMemory(lowerKiB: 1, upperKiB: 2); return b.basicMemory(lowerKiB: 1, upperKiB: 2) }
        expectError(img, .duplicateTag, at: at)
        (img, at) = image { $0.tag(6, MBIBuilder.le32(24)) }
        expectError(img, .tagTooShort, at: at)
        (img, at) = image { $0.memoryMap([(0, 0x1000, 1)], entrySize: 16) }
        expectError(img, .memoryMapEntryTooSmall, at: at)
        (img, at) = image { $0.memoryMap([(0, 0x1000, 1)], entrySize: 28) }
        expectError(img, .memoryMapEntrySizeNotMultipleOf8, at: at)
        (img, at) = image { $0.tag(6, MBIBuilder.le32(24) + MBIBuilder.le32(0) + [UInt8](repeating: 0, count: 32)) }
        expectError(img, .memoryMapPartialEntry, at: at)
        (img, at) = image { b in b.memoryMap([]); return b.memoryMap([]) }
        expectError(img, .duplicateTag, at: at)
        (img, at) = image { $0.tag(8, MBIBuilder.le64(0xB8000) + MBIBuilder.le32(160)) }
        expectError(img, .tagTooShort, at: at)
        (img, at) = image { b in
            b.framebuffer(address: 0, pitch: 0, width: 0, height: 0, bpp: 0, type: 2)
            return b.framebuffer(address: 0, pitch: 0, width: 0, height: 0, bpp: 0, type: 2)
        }
        expectError(img, .duplicateTag, at: at)
        (img, at) = image { $0.tag(14, Array(MBIBuilder.rsdpV1(rsdt: 0).prefix(16))) }
        expectError(img, .rsdpTooShort, at: at)
        (img, at) = image { $0.tag(15, MBIBuilder.rsdpV1(rsdt: 0)) }
        expectError(img, .rsdpTooShort, at: at)
        (img, at) = image { b in b.tag(14, MBIBuilder.rsdpV1(rsdt: 0)); return b.tag(14, MBIBuilder.rsdpV1(rsdt: 0)) }
        expectError(img, .duplicateTag, at: at)
        (img, at) = image { b in
            b.tag(15, MBIBuilder.rsdpV2(rsdt: 0, xsdt: 0)); return b.tag(15, MBIBuilder.rsdpV2(rsdt: 0, xsdt: 0))
        }
        expectError(img, .duplicateTag, at: at)
        (img, at) = image { b in b.bootLoaderName("a"); return b.bootLoaderName("b") }
        expectError(img, .duplicateTag, at: at)
    }

    @Test func everyErrorKindHasItsOwnMessage() {
        let kinds: [BootInfoError.Kind] = [
            .badMagic, .bufferTooSmall, .misalignedStart, .totalSizeTooSmall, .totalSizeBeyondBuffer,
            .addressOverflow, .tagTruncated, .tagSizeTooSmall, .tagTooShort, .duplicateTag, .missingEndTag,
            .endTagBadSize, .endTagNotLast, .memoryMapEntryTooSmall, .memoryMapEntrySizeNotMultipleOf8,
            .memoryMapPartialEntry, .moduleEndBeforeStart, .stringNotTerminated, .rsdpTooShort,
        ]
        let messages = kinds.map { BootInfoError($0, at: 0).message.description }
        #expect(Set(messages).count == kinds.count)
        #expect(messages.allSatisfy { !$0.isEmpty })
    }
}
