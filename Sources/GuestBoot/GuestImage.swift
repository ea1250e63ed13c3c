// Guest images: which boot protocol an image speaks, the guest-RAM layout the
// loaders share, and the one error type of the loader.
//
// The hypervisor follows Xen's GRUB convention: the first module2 is the guest
// kernel (its string is the guest's command line), further module2 lines are
// its initrd/modules. `GuestImage.detect` recognises, in this order:
//   1. an ELF (32 or 64-bit) with a Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY) -> .pvh
//   2. a Linux bzImage with the 64-bit entry (boot protocol >= 2.12)        -> .linux
//   3. a Multiboot (0.6.96) header in the first 8192 bytes                   -> .multiboot1
//   4. any other ELF                                                         -> error
//   5. a boot sector (55 AA at offset 510)                                   -> .bootSector
// and refuses everything else with a typed error.

import X86Arch
import VMX
import X86VCPU

/// Guest-physical layout used by every loader except the boot sector. All boot
/// structures live in the first 64 KiB, which no kernel segment may overlap.
///
/// ```
///   0x0000_0000 .. 0x0000_1000  left alone (real-mode IVT area)
///   0x0000_1000                 GDT: null, 0x08 32-bit flat code, 0x10 64-bit code, 0x18 flat data
///   0x0000_2000                 PML4   \
///   0x0000_3000                 PDPT    } identity map of 0..4 GiB with 2 MiB pages (64-bit entry)
///   0x0000_4000 .. 0x0000_8000  4 PDs  /
///   0x0000_8000                 boot info: Linux boot_params (zero page) / PVH hvm_start_info /
///                               multiboot info
///   0x0000_9000                 memory map: PVH hvm_memmap_table_entry[] / multiboot mmap
///                               (Linux keeps its e820 table inside boot_params at 0x2D0)
///   0x0000_9400                 module list: PVH hvm_modlist_entry[] / multiboot mods[]
///   0x0000_9800                 boot loader name (multiboot)
///   0x0000_A000 .. 0x0000_B000  kernel command line, NUL-terminated (at most 4 KiB with the NUL)
///   0x0000_B000 .. 0x0000_C000  module strings, NUL-terminated, packed
///   0x0000_C000 .. 0x0001_0000  boot stack (RSP = 0x10000 at entry)
///   0x0009_F000 .. 0x0010_0000  reserved in the memory map (EBDA, VGA, BIOS)
///   0x0010_0000 ..              kernel (PT_LOAD at p_paddr; bzImage at pref_address or 1 MiB)
///   top of RAM  (page-aligned)  modules / initrd, below min(RAM size, 4 GiB or initrd_addr_max)
/// ```
/// The memory map handed to the guest: [0, 0x9F000) usable, [0x9F000, 0x100000)
/// reserved, [0x100000, RAM size) usable.
public enum GuestLayout {
    public static let gdt: UInt64 = 0x1000
    public static let gdtLimit: UInt32 = 4 * 8 - 1
    public static let pml4: UInt64 = 0x2000
    public static let pdpt: UInt64 = 0x3000
    public static let pageDirectories: UInt64 = 0x4000
    public static let bootInfo: UInt64 = 0x8000
    public static let memoryMap: UInt64 = 0x9000
    public static let moduleList: UInt64 = 0x9400
    public static let loaderName: UInt64 = 0x9800
    public static let commandLine: UInt64 = 0xA000
    public static let commandLineCapacity = 4096
    public static let moduleStrings: UInt64 = 0xB000
    public static let moduleStringsCapacity = 4096
    public static let bootStackTop: UInt64 = 0x10000
    /// The end of the loader's area: no kernel segment may start below it.
    public static let loaderEnd: UInt64 = 0x10000
    /// Where a boot-sector image is loaded and entered in real mode.
    public static let bootSector: UInt64 = 0x7C00
    /// The end of conventional memory and the start of the reserved hole.
    public static let lowMemoryEnd: UInt64 = 0x9F000
    public static let highMemoryStart: UInt64 = 0x10_0000
    /// The smallest guest RAM the protected- and long-mode loaders accept.
    public static let minimumRAM: UInt64 = 0x20_0000

    /// Selectors of the loader's GDT.
    public static let code32Selector: UInt16 = 0x08
    public static let code64Selector: UInt16 = 0x10
    public static let dataSelector: UInt16 = 0x18

    /// Memory-map entry types (ACPI "Address Range Types", e820, multiboot, PVH agree).
    public static let typeRAM: UInt32 = 1
    public static let typeReserved: UInt32 = 2
    public static let memoryMapEntries = 3

    /// Entry `index` (0..<3) of the guest's memory map for `ramSize` bytes of RAM.
    public static func memoryMapEntry(_ index: Int, ramSize: UInt64) -> (base: UInt64, length: UInt64, type: UInt32) {
        switch index {
        case 0: (0, lowMemoryEnd, typeRAM)
        case 1: (lowMemoryEnd, highMemoryStart - lowMemoryEnd, typeReserved)
        default: (highMemoryStart, ramSize - highMemoryStart, typeRAM)
        }
    }

    /// The private platform's memory map for `ramSize` bytes of RAM, as an E820 map.
    public static func privateMemoryMap(ramSize: UInt64) -> E820Map {
        var map = E820Map()
        // RAM too small for high memory (a boot sector's) gets no third entry: it has no map.
        let count = ramSize > highMemoryStart ? memoryMapEntries : 0
        for index in 0..<count {
            let entry = memoryMapEntry(index, ramSize: ramSize)
            try? map.add(base: entry.base, length: entry.length, type: entry.type)   // 3 of 128
        }
        return map
    }

    /// Whether [start, start + length) lies inside [0, limit), without overflow.
    static func fits(_ start: UInt64, _ length: UInt64, below limit: UInt64) -> Bool {
        length <= limit && start <= limit - length
    }

    static func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        let a = max(alignment, 1)
        let (sum, overflow) = value.addingReportingOverflow(a - 1)
        return overflow ? UInt64.max / a * a : sum / a * a
    }

    static func alignDown(_ value: UInt64, _ alignment: UInt64) -> UInt64 { value / max(alignment, 1) * max(alignment, 1) }
}

/// A guest image the loader refuses: what is wrong, and a number that locates it
/// (a file offset, a guest-physical address, a size or a count; see each kind).
public struct GuestImageError: Error, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The module is 0 bytes long.
        case emptyImage
        /// A header, table or range runs past the end of the file (detail: the offset needed).
        case truncated
        /// Not an ELF, bzImage, multiboot image or boot sector.
        case unknownFormat
        /// An ELF that is not little-endian x86 / x86-64 with sane program headers (detail: e_machine or field).
        case unsupportedELF
        /// An ELF with neither a PVH note nor a multiboot header.
        case elfWithoutSupportedEntry
        /// An ELF with no PT_LOAD segment of non-zero size.
        case noLoadableSegments
        /// A PT_LOAD segment whose p_filesz exceeds its p_memsz (detail: p_paddr).
        case badSegment
        /// A segment that does not fit in guest RAM (detail: its guest-physical address).
        case segmentOutsideGuestRAM
        /// A segment below 64 KiB, where the loader keeps the boot structures (detail: its address).
        case segmentOverlapsLoaderArea
        /// The entry point lies outside guest RAM or above 4 GiB for a 32-bit entry (detail: the entry).
        case entryOutsideGuestRAM
        /// A Xen PHYS32_ENTRY note whose descriptor is not a 32-bit address (detail: descsz or value).
        case badPVHNote
        /// A bzImage older than boot protocol 2.12 or without the 64-bit entry (detail: version).
        case bzImageTooOld
        /// The kernel does not fit in guest RAM (detail: the end address it needs).
        case imageTooLarge
        /// A multiboot magic whose checksum is wrong (detail: header offset).
        case multibootBadChecksum
        /// A multiboot header requiring features this loader lacks, flags bits 3-15 (detail: flags).
        case multibootUnsupportedFlags
        /// A non-ELF multiboot image without the address fields (flags bit 16) (detail: header offset).
        case multibootWithoutAddresses
        /// Inconsistent multiboot address fields (detail: header offset).
        case multibootBadAddresses
        /// More modules than `GuestModules.capacity` (detail: the capacity).
        case tooManyModules
        /// The modules do not fit in guest RAM beside the kernel (detail: their total size).
        case modulesDoNotFit
        /// A command line or module string longer than its buffer (detail: the limit in bytes).
        case commandLineTooLong
        /// Guest RAM is smaller than the loader's minimum (detail: the minimum).
        case guestRAMTooSmall
        /// The machine's memory map has more entries than the boot protocol's table holds; detail: the count.
        case memoryMapTooLarge
        /// A kernel range touches memory the hypervisor keeps (passthrough platform); detail: its start.
        case segmentOverlapsHypervisor
    }

    public let kind: Kind
    public let detail: UInt64

    public init(_ kind: Kind, detail: UInt64 = 0) {
        self.kind = kind
        self.detail = detail
    }

    /// A one-line explanation for the report.
    public var message: StaticString {
        switch kind {
        case .emptyImage: "guest image is empty"
        case .truncated: "guest image truncated: a header or range runs past the end of the file"
        case .unknownFormat: "unknown guest image format (not PVH ELF, bzImage, multiboot or boot sector)"
        case .unsupportedELF: "ELF image is not a little-endian x86/x86-64 executable with valid program headers"
        case .elfWithoutSupportedEntry: "ELF image has neither a Xen PVH note nor a multiboot header"
        case .noLoadableSegments: "ELF image has no loadable segment"
        case .badSegment: "ELF segment has a file size larger than its memory size"
        case .segmentOutsideGuestRAM: "image segment lies outside guest RAM"
        case .segmentOverlapsLoaderArea: "image segment overlaps the loader's boot structures below 64 KiB"
        case .memoryMapTooLarge: "the machine's memory map has more entries than the guest's boot protocol holds"
        case .segmentOverlapsHypervisor: "image segment overlaps the hypervisor's own memory (passthrough platform)"
        case .entryOutsideGuestRAM: "entry point lies outside guest RAM"
        case .badPVHNote: "Xen PVH entry note is malformed"
        case .bzImageTooOld: "bzImage too old: boot protocol 2.12 with a 64-bit entry is required"
        case .imageTooLarge: "guest image too large for guest RAM"
        case .multibootBadChecksum: "multiboot header checksum is wrong"
        case .multibootUnsupportedFlags: "multiboot header requires unsupported features (flags bits 3-15)"
        case .multibootWithoutAddresses: "multiboot image is not ELF and has no address fields (flags bit 16)"
        case .multibootBadAddresses: "multiboot header address fields are inconsistent"
        case .tooManyModules: "too many guest modules"
        case .modulesDoNotFit: "guest modules do not fit in guest RAM beside the kernel"
        case .commandLineTooLong: "guest command line or module string too long"
        case .guestRAMTooSmall: "guest RAM too small for the boot structures"
        }
    }
}

/// The boot protocol of a guest image.
public enum GuestImageFormat: Equatable, Sendable {
    /// An ELF with the Xen PVH entry (XEN_ELFNOTE_PHYS32_ENTRY): 32-bit protected mode, EBX = start_info.
    case pvh(entry: UInt32)
    /// A Linux bzImage, entered through the 64-bit boot protocol.
    case linux
    /// A Multiboot (version 0.6.96) kernel: 32-bit protected mode, EAX = 0x2BADB002.
    case multiboot1
    /// A 512-byte boot sector, entered at 0000:7C00 in real mode.
    case bootSector

    /// The name for the report.
    public var name: StaticString {
        switch self {
        case .pvh: "PVH ELF"
        case .linux: "Linux bzImage"
        case .multiboot1: "multiboot"
        case .bootSector: "boot sector"
        }
    }

    /// Guest RAM when the command line does not say: an operating system
    /// needs room beyond its image (Debian's PVH vmlinux alone ends above
    /// 64 MiB); a test guest needs little.
    public var defaultRAM: UInt64 {
        switch self {
        case .pvh, .linux: 256 << 20
        case .multiboot1, .bootSector: 64 << 20
        }
    }
}

public enum GuestImage {
    /// The boot protocol of `bytes`; the checks here are all the loader needs
    /// before it touches guest RAM (truncation, versions, flags, checksums).
    public static func detect(_ bytes: UnsafeRawBufferPointer) throws(GuestImageError) -> GuestImageFormat {
        guard bytes.count > 0 else { throw GuestImageError(.emptyImage) }
        return try classify(ImageReader(bytes)).format
    }

    /// Detection with what the loader needs to go on (see the file comment for the order).
    static func classify(_ image: ImageReader) throws(GuestImageError) -> DetectedImage {
        let elf = try ELFFile.parse(image)
        if let elf, let entry = try elf.pvhEntry() { return .pvh(elf, entry: entry) }
        if LinuxSetupHeader.isBzImage(image) {
            _ = try LinuxSetupHeader(image)
            return .linux
        }
        let search = MultibootHeader.find(image)
        if let header = search.header { return .multiboot(try header.layout(image, elf: elf)) }
        if let offset = search.badChecksumOffset, elf != nil || !isBootSector(image) {
            throw GuestImageError(.multibootBadChecksum, detail: UInt64(offset))
        }
        if elf != nil { throw GuestImageError(.elfWithoutSupportedEntry) }
        if isBootSector(image) { return .bootSector }
        throw GuestImageError(.unknownFormat)
    }

/// 55 AA at offset 510 of an image of at least 512 bytes.
    static func isBootSector(_ image: ImageReader) -> Bool {
        (try? image.load(510, as: UInt16.self)) == 0xAA55
    }
}

/// A detected image with what its loader needs.
enum DetectedImage {
    case pvh(ELFFile, entry: UInt32)
    case linux
    case multiboot(MultibootLayout)
    case bootSector

    var format: GuestImageFormat {
        switch self {
        case .pvh(_, let entry): .pvh(entry: entry)
        case .linux: .linux
        case .multiboot: .multiboot1
        case .bootSector: .bootSector
        }
    }
}

/// Little-endian reads from an image with every offset checked: a read past
/// the end is `.truncated`, carrying the offset that was needed.
struct ImageReader {
    let bytes: UnsafeRawBufferPointer

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var count: Int { bytes.count }

    func load<T: FixedWidthInteger>(_ offset: Int, as type: T.Type) throws(GuestImageError) -> T {
        guard offset >= 0, offset <= bytes.count - MemoryLayout<T>.size else {
            throw GuestImageError(.truncated, detail: UInt64(max(offset, 0)) + UInt64(MemoryLayout<T>.size))
        }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Whether [offset, offset + length) lies inside the image.
    func contains(_ offset: UInt64, _ length: UInt64) -> Bool {
        GuestLayout.fits(offset, length, below: UInt64(bytes.count))
    }

    /// The bytes [offset, offset + length), or `.truncated`.
    func slice(_ offset: UInt64, _ length: UInt64) throws(GuestImageError) -> UnsafeRawBufferPointer {
        guard contains(offset, length) else {
            throw GuestImageError(.truncated, detail: offset &+ length)
        }
        return UnsafeRawBufferPointer(rebasing: bytes[Int(offset)..<Int(offset + length)])
    }
}
