// ELF executables as boot loaders see them: the file header, the program
// headers, PT_LOAD segments loaded at their physical addresses, and the Xen
// PVH entry note. System V gABI "ELF Header", "Program Header", "Note Section";
// Xen public/elfnote.h (XEN_ELFNOTE_PHYS32_ENTRY = 18, name "Xen").

import X86Arch
import VMX
import X86VCPU

/// One program header, widened to 64 bits for both ELF classes.
struct ELFProgramHeader: Equatable {
    static let load: UInt32 = 1
    static let note: UInt32 = 4

    var type: UInt32
    var offset: UInt64
    var physicalAddress: UInt64
    var fileSize: UInt64
    var memorySize: UInt64
    var alignment: UInt64
}

/// A validated ELF file header over the image's bytes.
struct ELFFile {
    static let machine386: UInt16 = 3
    static let machineX86_64: UInt16 = 62
    /// Xen's note type for the 32-bit PVH entry point (public/elfnote.h).
    static let xenPhys32Entry: UInt32 = 18

    let image: ImageReader
    let is64: Bool
    let entry: UInt64
    let programHeaderOffset: UInt64
    let programHeaderSize: Int
    let programHeaderCount: Int

    /// nil when the image does not start with the ELF magic; an error when it
    /// does but the header or the program-header table is unusable.
    static func parse(_ image: ImageReader) throws(GuestImageError) -> ELFFile? {
        guard image.count >= 4, (try? image.load(0, as: UInt32.self)) == 0x464C_457F else { return nil }
        let elfClass = try image.load(4, as: UInt8.self)
        guard elfClass == 1 || elfClass == 2 else { throw GuestImageError(.unsupportedELF, detail: 4) }
        guard try image.load(5, as: UInt8.self) == 1 else { throw GuestImageError(.unsupportedELF, detail: 5) }
        let is64 = elfClass == 2
        _ = try image.load(is64 ? 62 : 50, as: UInt16.self)  // the whole file header is present
        let machine = try image.load(18, as: UInt16.self)
        guard machine == machine386 || machine == machineX86_64 else {
            throw GuestImageError(.unsupportedELF, detail: UInt64(machine))
        }
        let entry = is64 ? try image.load(24, as: UInt64.self) : UInt64(try image.load(24, as: UInt32.self))
        let phoff = is64 ? try image.load(32, as: UInt64.self) : UInt64(try image.load(28, as: UInt32.self))
        let phentsize = Int(try image.load(is64 ? 54 : 42, as: UInt16.self))
        let phnum = Int(try image.load(is64 ? 56 : 44, as: UInt16.self))
        guard phnum == 0 || phentsize >= (is64 ? 56 : 32) else {
            throw GuestImageError(.unsupportedELF, detail: UInt64(phentsize))
        }
        guard image.contains(phoff, UInt64(phnum * phentsize)) else {
            throw GuestImageError(.truncated, detail: phoff &+ UInt64(phnum * phentsize))
        }
        return ELFFile(image: image, is64: is64, entry: entry, programHeaderOffset: phoff,
                       programHeaderSize: phentsize, programHeaderCount: phnum)
    }

    /// Program header `index` (0 ..< programHeaderCount, inside the file by `parse`).
    func programHeader(_ index: Int) throws(GuestImageError) -> ELFProgramHeader {
        let at = Int(programHeaderOffset) + index * programHeaderSize
        if is64 {
            return ELFProgramHeader(
                type: try image.load(at, as: UInt32.self), offset: try image.load(at + 8, as: UInt64.self),
                physicalAddress: try image.load(at + 24, as: UInt64.self),
                fileSize: try image.load(at + 32, as: UInt64.self), memorySize: try image.load(at + 40, as: UInt64.self),
                alignment: try image.load(at + 48, as: UInt64.self))
        }
        return ELFProgramHeader(
            type: try image.load(at, as: UInt32.self), offset: UInt64(try image.load(at + 4, as: UInt32.self)),
            physicalAddress: UInt64(try image.load(at + 12, as: UInt32.self)),
            fileSize: UInt64(try image.load(at + 16, as: UInt32.self)),
            memorySize: UInt64(try image.load(at + 20, as: UInt32.self)),
            alignment: UInt64(try image.load(at + 28, as: UInt32.self)))
    }

    /// The PVH entry from a "Xen" note of type 18 in a PT_NOTE segment, or nil.
    /// Notes are padded to 4 bytes (8 when the segment's p_align is 8); the
    /// descriptor is a 32-bit address stored in 4 or 8 bytes (Linux uses 8 on
    /// x86-64: `_ASM_PTR`).
    func pvhEntry() throws(GuestImageError) -> UInt32? {
        for index in 0..<programHeaderCount {
            let header = try programHeader(index)
            guard header.type == ELFProgramHeader.note else { continue }
            let notes = ImageReader(try image.slice(header.offset, header.fileSize))
            let pad = header.alignment == 8 ? 8 : 4
            var at = 0
            while at + 12 <= notes.count {
                let nameSize = Int(try notes.load(at, as: UInt32.self))
                let descSize = Int(try notes.load(at + 4, as: UInt32.self))
                let type = try notes.load(at + 8, as: UInt32.self)
                let name = at + 12
                let desc = name + Int(GuestLayout.alignUp(UInt64(nameSize), UInt64(pad)))
                guard notes.contains(UInt64(desc), UInt64(descSize)) else {
                    throw GuestImageError(.truncated, detail: header.offset + UInt64(desc + descSize))
                }
                if type == Self.xenPhys32Entry, nameSize == 4, try notes.load(name, as: UInt32.self) == 0x006E_6558 {
                    return try Self.entryAddress(notes, desc, descSize)
                }
                at = desc + Int(GuestLayout.alignUp(UInt64(descSize), UInt64(pad)))
            }
        }
        return nil
    }

    static func entryAddress(_ notes: ImageReader, _ at: Int, _ size: Int) throws(GuestImageError) -> UInt32 {
        switch size {
        case 4: return try notes.load(at, as: UInt32.self)
        case 8:
            let value = try notes.load(at, as: UInt64.self)
            guard let entry = UInt32(exactly: value) else { throw GuestImageError(.badPVHNote, detail: value) }
            return entry
        default: throw GuestImageError(.badPVHNote, detail: UInt64(size))
        }
    }

    /// Copies every PT_LOAD segment to its p_paddr (p_filesz bytes, zeroes up to
    /// p_memsz) after checking them all; returns the guest-physical range they span.
    func loadSegments(into ram: GuestRAM) throws(GuestImageError) -> Range<UInt64> {
        var low = UInt64.max, high: UInt64 = 0
        for index in 0..<programHeaderCount {
            let segment = try programHeader(index)
            guard segment.type == ELFProgramHeader.load, segment.memorySize > 0 else { continue }
            guard segment.fileSize <= segment.memorySize else {
                throw GuestImageError(.badSegment, detail: segment.physicalAddress)
            }
            _ = try image.slice(segment.offset, segment.fileSize)
            try GuestLoader.checkKernelRange(segment.physicalAddress, segment.memorySize, ram: ram)
            low = min(low, segment.physicalAddress)
            high = max(high, segment.physicalAddress + segment.memorySize)
        }
        guard low < high else { throw GuestImageError(.noLoadableSegments) }
        for index in 0..<programHeaderCount {
            let segment = try programHeader(index)
            guard segment.type == ELFProgramHeader.load, segment.memorySize > 0 else { continue }
            _ = ram.copy(try image.slice(segment.offset, segment.fileSize), to: segment.physicalAddress)
            ram.zero(segment.physicalAddress + segment.fileSize, count: segment.memorySize - segment.fileSize)
        }
        return low..<high
    }
}
