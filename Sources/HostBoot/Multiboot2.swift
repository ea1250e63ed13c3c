// Multiboot2 boot information: a validating, non-allocating reader.
//
// GRUB hands the kernel a physical pointer (EBX) to the boot information; the
// kernel binds it to a byte buffer of `total_size` bytes and everything else
// happens here, over that buffer, with typed errors for every malformed shape.
// Spec: Multiboot2 specification, "3.6 Boot information".
//
// Embedded note: the views below are iterators (`next()`) and closure walkers
// (`forEach`), not `Sequence`/`Collection` conformances: those protocols' default
// witnesses build arrays, which `-no-allocations` rejects.

import X86Arch
import VMX
import X86VCPU

/// A malformed boot information structure: what is wrong and where.
///
/// `offset` is the byte offset from the start of the boot information of the tag
/// (or header field) at fault, so a panic message can point at the bytes.
public struct BootInfoError: Error, Equatable {
    /// The rule of the format that was broken.
    public enum Kind: Equatable, Sendable {
        /// EAX did not hold the Multiboot2 boot loader magic 0x36d76289
        /// ("3.3 I386 machine state").
        case badMagic
        /// The buffer cannot even hold the 8-byte fixed part.
        case bufferTooSmall
        /// The structure does not start on an 8-byte boundary ("3.6.2 Basic tags
        /// structure": "Its start is 8-bytes aligned"), so no tag can be aligned.
        case misalignedStart
        /// `total_size` is smaller than the fixed part plus an end tag (16 bytes).
        case totalSizeTooSmall
        /// `total_size` claims more bytes than the buffer holds.
        case totalSizeBeyondBuffer
        /// The structure's physical address plus its size does not fit in 64 bits.
        case addressOverflow
        /// A tag header or body runs past `total_size`.
        case tagTruncated
        /// A tag's `size` is below 8, the size of its own header.
        case tagSizeTooSmall
        /// A known tag is shorter than its fixed fields.
        case tagTooShort
        /// A tag that may appear only once appears again.
        case duplicateTag
        /// The tags reach `total_size` without a terminating tag of type 0.
        case missingEndTag
        /// The terminating tag's size is not 8.
        case endTagBadSize
        /// The terminating tag does not end exactly at `total_size`.
        case endTagNotLast
        /// A memory map `entry_size` below the 24 bytes of a version-0 entry
        /// ("3.6.8 Memory map").
        case memoryMapEntryTooSmall
        /// A memory map `entry_size` that is not a multiple of 8 ("3.6.8 Memory map").
        case memoryMapEntrySizeNotMultipleOf8
        /// A memory map whose entries do not fill its tag exactly.
        case memoryMapPartialEntry
        /// A module whose `mod_end` is below its `mod_start` ("3.6.6 Modules").
        case moduleEndBeforeStart
        /// A string field without a terminating NUL inside its tag.
        case stringNotTerminated
        /// An ACPI RSDP tag too short for the RSDP it must copy
        /// (20 bytes for "3.6.16 ACPI old RSDP", 36 for "3.6.17 ACPI new RSDP").
        case rsdpTooShort
        /// An EFI memory map `descriptor_size` below the 40 bytes of an
        /// EFI_MEMORY_DESCRIPTOR or not a multiple of 8 ("3.6.19 EFI memory map").
        case efiDescriptorSizeBad
        /// An EFI memory map whose descriptors do not fill its tag exactly.
        case efiMemoryMapPartialEntry
        /// An EFI memory descriptor whose PhysicalStart is not 4 KiB aligned or
        /// whose NumberOfPages runs past 2^64 (UEFI 2.10 7.2 EFI_MEMORY_DESCRIPTOR).
        case efiDescriptorInvalid
        /// Tag 18 ("3.6.20 EFI boot services not terminated"): the loader left
        /// the firmware running, so its memory map and the machine are not ours.
        case efiBootServicesNotTerminated
    }

    public let kind: Kind
    /// Byte offset of the offending tag or field from the start of the structure.
    public let offset: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    /// A one-line explanation for the panic report.
    public var message: StaticString {
        switch kind {
        case .badMagic: "not booted by a Multiboot2 loader (bad magic in EAX)"
        case .bufferTooSmall: "boot info buffer smaller than its 8-byte header"
        case .misalignedStart: "boot info does not start on an 8-byte boundary"
        case .totalSizeTooSmall: "boot info total_size smaller than header plus end tag"
        case .totalSizeBeyondBuffer: "boot info total_size larger than the buffer"
        case .addressOverflow: "boot info address plus size overflows 64 bits"
        case .tagTruncated: "boot info tag runs past total_size"
        case .tagSizeTooSmall: "boot info tag size smaller than its 8-byte header"
        case .tagTooShort: "boot info tag shorter than its fixed fields"
        case .duplicateTag: "boot info tag that may appear once appears twice"
        case .missingEndTag: "boot info has no end tag"
        case .endTagBadSize: "boot info end tag size is not 8"
        case .endTagNotLast: "boot info end tag does not end at total_size"
        case .memoryMapEntryTooSmall: "memory map entry_size smaller than 24"
        case .memoryMapEntrySizeNotMultipleOf8: "memory map entry_size not a multiple of 8"
        case .memoryMapPartialEntry: "memory map tag holds a partial entry"
        case .moduleEndBeforeStart: "module mod_end below mod_start"
        case .stringNotTerminated: "boot info string without NUL inside its tag"
        case .rsdpTooShort: "ACPI RSDP tag too short for an RSDP"
        case .efiDescriptorSizeBad: "EFI memory map descriptor_size below 40 or not a multiple of 8"
        case .efiMemoryMapPartialEntry: "EFI memory map tag holds a partial descriptor"
        case .efiDescriptorInvalid: "EFI memory descriptor unaligned or wrapping past 2^64"
        case .efiBootServicesNotTerminated: "EFI boot services not terminated (tag 18): unsupported"
        }
    }
}

/// A validated view of the Multiboot2 boot information ("3.6 Boot information").
///
/// `init` walks every tag once and throws on the first malformed one; after that
/// every accessor is a plain read that cannot fail. The value borrows the buffer:
/// it holds no copy, so the boot information must stay mapped and untouched while
/// this value (and any byte span it returned) is in use.
public struct Multiboot2Info {
    /// The value GRUB leaves in EAX ("3.3 I386 machine state").
    public static let bootloaderMagic: UInt32 = 0x36D7_6289

    /// Tag types ("3.6 Boot information": 3.6.3 - 3.6.20).
    public enum TagType {
        public static let end: UInt32 = 0
        public static let commandLine: UInt32 = 1
        public static let bootLoaderName: UInt32 = 2
        public static let module: UInt32 = 3
        public static let basicMemoryInfo: UInt32 = 4
        public static let memoryMap: UInt32 = 6
        public static let framebuffer: UInt32 = 8
        public static let acpiOldRSDP: UInt32 = 14
        public static let acpiNewRSDP: UInt32 = 15
        public static let efi32SystemTable: UInt32 = 11
        public static let efi64SystemTable: UInt32 = 12
        public static let efiMemoryMap: UInt32 = 17
        public static let efiBootServicesNotTerminated: UInt32 = 18
    }

    /// Checks the magic in EAX before the EBX pointer is trusted at all.
    public static func checkMagic(_ eax: UInt32) throws(BootInfoError) {
        guard eax == bootloaderMagic else { throw BootInfoError(.badMagic, at: 0) }
    }

    /// Exactly the `total_size` bytes of the structure.
    public let bytes: UnsafeRawBufferPointer
    /// Where the structure lives in physical memory.
    public let physicalAddress: UInt64

    @usableFromInline let commandLineOffset: Int?
    @usableFromInline let bootLoaderNameOffset: Int?
    @usableFromInline let basicMemoryOffset: Int?
    @usableFromInline let memoryMapOffset: Int?
    @usableFromInline let framebufferOffset: Int?
    @usableFromInline let rsdpV1Offset: Int?
    @usableFromInline let rsdpV2Offset: Int?
    @usableFromInline let efiMemoryMapOffset: Int?
    @usableFromInline let efi32SystemTableOffset: Int?
    @usableFromInline let efi64SystemTableOffset: Int?
    @usableFromInline let firstModuleOffset: Int
    /// Number of module tags (type 3), in the order the loader listed them.
    public let moduleCount: Int

    /// Parses boot information at an identity-mapped address: the buffer's own
    /// address is taken as its physical address (true in early boot, and what
    /// the host tests want).
    public init(_ buffer: UnsafeRawBufferPointer) throws(BootInfoError) {
        let address = UInt64(UInt(bitPattern: buffer.baseAddress))
        try self.init(buffer, physicalAddress: address)
    }

    /// Parses boot information that the kernel reaches through `buffer` but that
    /// lives at `physicalAddress` (for `infoRange` and the RSDP copy's address).
    /// `buffer` may be longer than `total_size`; only `total_size` bytes are used.
    public init(_ buffer: UnsafeRawBufferPointer, physicalAddress: UInt64) throws(BootInfoError) {
        // 3.6.2 Basic tags structure: u32 total_size, u32 reserved, then tags.
        guard buffer.count >= 8 else { throw BootInfoError(.bufferTooSmall, at: 0) }
        guard physicalAddress % 8 == 0 else { throw BootInfoError(.misalignedStart, at: 0) }
        let total = Int(buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard total >= 16 else { throw BootInfoError(.totalSizeTooSmall, at: 0) }
        guard total <= buffer.count else { throw BootInfoError(.totalSizeBeyondBuffer, at: 0) }
        guard !physicalAddress.addingReportingOverflow(UInt64(total)).overflow else {
            throw BootInfoError(.addressOverflow, at: 0)
        }
        let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<total])

        var commandLine: Int? = nil
        var loaderName: Int? = nil
        var basicMemory: Int? = nil
        var memoryMap: Int? = nil
        var framebuffer: Int? = nil
        var rsdpV1: Int? = nil
        var rsdpV2: Int? = nil
        var efiMap: Int? = nil
        var efi32: Int? = nil
        var efi64: Int? = nil
        var firstModule = 0
        var modules = 0

        // Tags follow one another, each starting at an 8-byte aligned offset; a
        // tag's size excludes its padding. Offsets stay multiples of 8 because the
        // walk rounds every size up, so alignment can only fail at the start.
        var offset = 8
        while true {
            guard offset < total else { throw BootInfoError(.missingEndTag, at: offset) }
            guard total - offset >= 8 else { throw BootInfoError(.tagTruncated, at: offset) }
            let type = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
            let size = Int(bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
            guard size >= 8 else { throw BootInfoError(.tagSizeTooSmall, at: offset) }
            guard size <= total - offset else { throw BootInfoError(.tagTruncated, at: offset) }

            switch type {
            case TagType.end:
                // "Tags are terminated by a tag of type 0 and size 8", and
                // total_size includes the terminating tag.
                guard size == 8 else { throw BootInfoError(.endTagBadSize, at: offset) }
                guard offset + 8 == total else { throw BootInfoError(.endTagNotLast, at: offset) }
            case TagType.commandLine:
                // 3.6.5 Boot command line: a NUL-terminated string after the header.
                try Self.once(&commandLine, offset)
                _ = try Self.cString(bytes, from: offset + 8, tagEnd: offset + size, tag: offset)
            case TagType.bootLoaderName:
                // 3.6.9 Boot loader name: a NUL-terminated string after the header.
                try Self.once(&loaderName, offset)
                _ = try Self.cString(bytes, from: offset + 8, tagEnd: offset + size, tag: offset)
            case TagType.module:
                // 3.6.6 Modules: u32 mod_start, u32 mod_end, NUL-terminated string.
                guard size >= 16 else { throw BootInfoError(.tagTooShort, at: offset) }
                let start = bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
                let end = bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)
                guard end >= start else { throw BootInfoError(.moduleEndBeforeStart, at: offset) }
                _ = try Self.cString(bytes, from: offset + 16, tagEnd: offset + size, tag: offset)
                if modules == 0 { firstModule = offset }
                modules += 1
            case TagType.basicMemoryInfo:
                // 3.6.3 Basic memory information: u32 mem_lower, u32 mem_upper.
                guard size >= 16 else { throw BootInfoError(.tagTooShort, at: offset) }
                try Self.once(&basicMemory, offset)
            case TagType.memoryMap:
                // 3.6.8 Memory map: u32 entry_size, u32 entry_version, entries.
                guard size >= 16 else { throw BootInfoError(.tagTooShort, at: offset) }
                try Self.once(&memoryMap, offset)
                let entrySize = Int(bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
                guard entrySize >= 24 else { throw BootInfoError(.memoryMapEntryTooSmall, at: offset) }
                guard entrySize % 8 == 0 else {
                    throw BootInfoError(.memoryMapEntrySizeNotMultipleOf8, at: offset)
                }
                guard (size - 16) % entrySize == 0 else {
                    throw BootInfoError(.memoryMapPartialEntry, at: offset)
                }
            case TagType.framebuffer:
                // 3.6.12 Framebuffer info: fixed part through `reserved` is 31 bytes.
                guard size >= 31 else { throw BootInfoError(.tagTooShort, at: offset) }
                try Self.once(&framebuffer, offset)
            case TagType.acpiOldRSDP:
                // 3.6.16 ACPI old RSDP: a copy of the 20-byte ACPI 1.0 RSDP.
                guard size >= 8 + 20 else { throw BootInfoError(.rsdpTooShort, at: offset) }
                try Self.once(&rsdpV1, offset)
            case TagType.acpiNewRSDP:
                // 3.6.17 ACPI new RSDP: a copy of the 36-byte ACPI 2.0+ RSDP.
                guard size >= 8 + 36 else { throw BootInfoError(.rsdpTooShort, at: offset) }
                try Self.once(&rsdpV2, offset)
            case TagType.efi32SystemTable:
                // 3.6.13 EFI 32-bit system table pointer: u32 pointer.
                guard size >= 12 else { throw BootInfoError(.tagTooShort, at: offset) }
                try Self.once(&efi32, offset)
            case TagType.efi64SystemTable:
                // 3.6.14 EFI 64-bit system table pointer: u64 pointer.
                guard size >= 16 else { throw BootInfoError(.tagTooShort, at: offset) }
                try Self.once(&efi64, offset)
            case TagType.efiMemoryMap:
                // 3.6.19 EFI memory map: u32 descriptor_size, u32 descriptor_version,
                // then the map exactly as GetMemoryMap() returned it.
                guard size >= 16 else { throw BootInfoError(.tagTooShort, at: offset) }
                try Self.once(&efiMap, offset)
                try Self.checkEFIMemoryMap(bytes, tag: offset, size: size)
            case TagType.efiBootServicesNotTerminated:
                throw BootInfoError(.efiBootServicesNotTerminated, at: offset)
            default:
                break // Other tags are advisory ("3.6.1"); skip them.
            }
            if type == TagType.end { break }
            offset += (size + 7) & ~7
        }

        self.bytes = bytes
        self.physicalAddress = physicalAddress
        commandLineOffset = commandLine
        bootLoaderNameOffset = loaderName
        basicMemoryOffset = basicMemory
        memoryMapOffset = memoryMap
        framebufferOffset = framebuffer
        rsdpV1Offset = rsdpV1
        rsdpV2Offset = rsdpV2
        efiMemoryMapOffset = efiMap
        efi32SystemTableOffset = efi32
        efi64SystemTableOffset = efi64
        firstModuleOffset = firstModule
        moduleCount = modules
    }

    /// Checks an EFI memory map tag: descriptor size, whole descriptors, and
    /// each descriptor's range (UEFI 2.10 7.2: PhysicalStart "must be aligned on
    /// a 4 KiB boundary"; NumberOfPages counts 4 KiB pages).
    static func checkEFIMemoryMap(
        _ bytes: UnsafeRawBufferPointer, tag: Int, size: Int
    ) throws(BootInfoError) {
        let descriptorSize = Int(bytes.loadUnaligned(fromByteOffset: tag + 8, as: UInt32.self))
        guard descriptorSize >= EFIMemoryDescriptor.minimumSize, descriptorSize % 8 == 0 else {
            throw BootInfoError(.efiDescriptorSizeBad, at: tag)
        }
        guard (size - 16) % descriptorSize == 0 else {
            throw BootInfoError(.efiMemoryMapPartialEntry, at: tag)
        }
        var at = tag + 16
        while at < tag + size {
            let descriptor = EFIMemoryDescriptor(bytes, at: at)
            guard descriptor.physicalStart & 0xFFF == 0, descriptor.numberOfPages <= UInt64.max >> 12,
                  !descriptor.physicalStart.addingReportingOverflow(descriptor.numberOfPages << 12).overflow
            else { throw BootInfoError(.efiDescriptorInvalid, at: tag) }
            at += descriptorSize
        }
    }

    /// Records the first occurrence of a single-instance tag; rejects a second one.
    static func once(_ slot: inout Int?, _ offset: Int) throws(BootInfoError) {
        guard slot == nil else { throw BootInfoError(.duplicateTag, at: offset) }
        slot = offset
    }

    /// The bytes from `from` up to (not including) the first NUL before `tagEnd`.
    static func cString(
        _ bytes: UnsafeRawBufferPointer, from: Int, tagEnd: Int, tag: Int
    ) throws(BootInfoError) -> UnsafeRawBufferPointer {
        var index = from
        while index < tagEnd {
            if bytes[index] == 0 { return UnsafeRawBufferPointer(rebasing: bytes[from..<index]) }
            index += 1
        }
        throw BootInfoError(.stringNotTerminated, at: tag)
    }

    /// A string already validated by `init`.
    func validatedString(at tag: Int, from: Int) -> UnsafeRawBufferPointer {
        let size = Int(bytes.loadUnaligned(fromByteOffset: tag + 4, as: UInt32.self))
        var index = from
        while index < tag + size, bytes[index] != 0 { index += 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[from..<index])
    }

    func u32(_ offset: Int) -> UInt32 { bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    func u64(_ offset: Int) -> UInt64 { bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }

    // MARK: Accessors

    /// `total_size`: the structure's length in bytes, end tag included.
    public var totalSize: Int { bytes.count }

    /// Where the structure itself lies, so the frame allocator keeps off it.
    public var infoRange: PhysicalMemoryMap.Range {
        PhysicalMemoryMap.Range(start: physicalAddress, end: physicalAddress + UInt64(bytes.count))
    }

    /// The kernel command line without its NUL (3.6.5); nil when the tag is absent.
    /// A byte span into the boot information, not a String: no heap.
    public var commandLine: UnsafeRawBufferPointer? {
        commandLineOffset.map { validatedString(at: $0, from: $0 + 8) }
    }

    /// The boot loader's name without its NUL (3.6.9), e.g. "GRUB 2.06".
    public var bootLoaderName: UnsafeRawBufferPointer? {
        bootLoaderNameOffset.map { validatedString(at: $0, from: $0 + 8) }
    }

    /// Lower and upper memory in KiB (3.6.3 Basic memory information).
    public struct BasicMemory: Equatable {
        /// KiB of memory from address 0 (at most 640).
        public let lowerKiB: UInt32
        /// KiB of memory from 1 MiB up to the first hole.
        public let upperKiB: UInt32
    }

    /// The basic memory information, if the loader supplied it.
    public var basicMemory: BasicMemory? {
        basicMemoryOffset.map { BasicMemory(lowerKiB: u32($0 + 8), upperKiB: u32($0 + 12)) }
    }

    // MARK: Modules

    /// One boot module (3.6.6 Modules): `[start, end)` holds its bytes.
    public struct Module {
        /// `mod_start`: physical address of the first byte.
        public let start: UInt64
        /// `mod_end`: physical address one past the last byte (GRUB writes
        /// `mod_start + size`).
        public let end: UInt64
        /// The module's string (its command line in GRUB's `module2`), without NUL.
        public let string: UnsafeRawBufferPointer

        /// The module's bytes as a physical range, to reserve them.
        public var range: PhysicalMemoryMap.Range { PhysicalMemoryMap.Range(start: start, end: end) }
        /// Size in bytes.
        public var size: UInt64 { end - start }
    }

    /// Walks the module tags in order. Obtain one from `modules`.
    public struct ModuleIterator: IteratorProtocol {
        let info: Multiboot2Info
        var offset: Int
        var remaining: Int

        /// The next module, or nil after the last.
        public mutating func next() -> Module? {
            // The structure was validated, so the walk cannot leave it before the
            // last module is found.
            while remaining > 0 {
                let type = info.u32(offset)
                let size = Int(info.u32(offset + 4))
                let here = offset
                offset += (size + 7) & ~7
                if type == TagType.module {
                    remaining -= 1
                    return Module(
                        start: UInt64(info.u32(here + 8)), end: UInt64(info.u32(here + 12)),
                        string: info.validatedString(at: here, from: here + 16))
                }
            }
            return nil
        }
    }

    /// The modules in the order the loader listed them: `var it = info.modules;
    /// while let m = it.next() { ... }`.
    public var modules: ModuleIterator {
        ModuleIterator(info: self, offset: firstModuleOffset, remaining: moduleCount)
    }

    /// Calls `body` for each module, in order.
    public func forEachModule<E: Error>(_ body: (Module) throws(E) -> Void) throws(E) {
        var iterator = modules
        while let module = iterator.next() { try body(module) }
    }

    /// The module at `index` (0-based, in loader order), or nil if out of range.
    public func module(at index: Int) -> Module? {
        guard index >= 0, index < moduleCount else { return nil }
        var iterator = modules
        var skip = index
        while skip > 0 { _ = iterator.next(); skip -= 1 }
        return iterator.next()
    }

}
