// Multiboot2 boot information: the decoded tags (memory maps, framebuffer,
// ACPI, EFI). `Multiboot2Info.init` (Multiboot2.swift) has validated each one,
// so the reads here cannot fail.
// Spec: Multiboot2 specification, "3.6 Boot information"; UEFI 2.10 7.2
// "EFI_BOOT_SERVICES.GetMemoryMap()" for the EFI memory descriptor.

import X86Arch
import VMX
import X86VCPU

extension Multiboot2Info {
    // MARK: Memory map

    /// One memory map entry (3.6.8 Memory map).
    public struct MemoryRegion: Equatable {
        /// What a region's `type` says about it. Values other than 1, 3, 4, 5
        /// "currently indicate a reserved area".
        public enum Kind: Equatable, Sendable {
            /// Type 1: RAM available for use.
            case available
            /// Type 3: RAM holding ACPI tables (usable once the OS is done with them;
            /// this hypervisor keeps them for its guest).
            case acpiReclaimable
            /// Type 4: reserved memory to preserve across hibernation (ACPI NVS).
            case acpiNVS
            /// Type 5: defective RAM.
            case badMemory
            /// Type 2 and every other value.
            case reserved
        }

        /// `base_addr`.
        public let base: UInt64
        /// `length` in bytes.
        public let length: UInt64
        /// The raw `type` (for an EFI map, the multiboot type it translates to).
        public let type: UInt32
        /// The EFI_MEMORY_TYPE when the entry comes from the EFI memory map.
        public let efiType: UInt32?

        public init(base: UInt64, length: UInt64, type: UInt32, efiType: UInt32? = nil) {
            self.base = base
            self.length = length
            self.type = type
            self.efiType = efiType
        }

        /// The decoded `type`.
        public var kind: Kind {
            switch type {
            case 1: .available
            case 3: .acpiReclaimable
            case 4: .acpiNVS
            case 5: .badMemory
            default: .reserved
            }
        }
    }

    /// The memory map tag's entries: random access by index, or a walk.
    public struct MemoryMap {
        let bytes: UnsafeRawBufferPointer
        let entriesOffset: Int
        /// True for the EFI memory map (tag 17), whose entries are
        /// EFI_MEMORY_DESCRIPTORs translated to multiboot types.
        public let isEFI: Bool
        /// `entry_size`: the stride between entries (24 today, larger in future
        /// versions; extra fields are ignored).
        public let entrySize: Int
        /// `entry_version` (0 today; later versions stay backward compatible).
        public let entryVersion: UInt32
        /// Number of entries.
        public let count: Int

        /// Entry `index`; `index` must be in `0..<count`.
        public subscript(index: Int) -> MemoryRegion {
            let at = entriesOffset + index * entrySize
            if isEFI { return EFIMemoryDescriptor(bytes, at: at).region }
            return MemoryRegion(
                base: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self),
                length: bytes.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self),
                type: bytes.loadUnaligned(fromByteOffset: at + 16, as: UInt32.self))
        }

        /// Calls `body` for each entry, in the loader's order.
        public func forEach<E: Error>(_ body: (MemoryRegion) throws(E) -> Void) throws(E) {
            var index = 0
            while index < count {
                try body(self[index])
                index += 1
            }
        }

        /// Walks the entries: `var it = map.makeIterator(); while let r = it.next() {}`.
        public struct Iterator: IteratorProtocol {
            let map: MemoryMap
            var index = 0
            public mutating func next() -> MemoryRegion? {
                guard index < map.count else { return nil }
                defer { index += 1 }
                return map[index]
            }
        }

        public func makeIterator() -> Iterator { Iterator(map: self) }

        /// The entries' bytes exactly as the loader wrote them.
        public var raw: UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: bytes[entriesOffset..<(entriesOffset + count * entrySize)])
        }
    }

    /// The memory map the kernel builds its allocator from: the EFI map (tag 17)
    /// when present, since it is the firmware's own and GRUB's tag 6 is derived
    /// from it, else the multiboot map (tag 6).
    public var memoryMap: MemoryMap? { efiMemoryMap ?? multibootMemoryMap }

    /// The multiboot memory map (tag 6, "3.6.8"), if the loader supplied one.
    public var multibootMemoryMap: MemoryMap? {
        memoryMapOffset.map { tag in
            let size = Int(u32(tag + 4))
            let entrySize = Int(u32(tag + 8))
            return MemoryMap(
                bytes: bytes, entriesOffset: tag + 16, isEFI: false, entrySize: entrySize,
                entryVersion: u32(tag + 12), count: (size - 16) / entrySize)
        }
    }

    /// The EFI memory map (tag 17, "3.6.19"), if the loader supplied one:
    /// `entrySize` is the descriptor size, `entryVersion` the descriptor version,
    /// and `raw` the descriptors as the firmware wrote them (for a guest).
    public var efiMemoryMap: MemoryMap? {
        efiMemoryMapOffset.map { tag in
            let size = Int(u32(tag + 4))
            let entrySize = Int(u32(tag + 8))
            return MemoryMap(
                bytes: bytes, entriesOffset: tag + 16, isEFI: true, entrySize: entrySize,
                entryVersion: u32(tag + 12), count: (size - 16) / entrySize)
        }
    }

    /// The EFI system table's physical address (tag 12, else tag 11; "3.6.13",
    /// "3.6.14"). Its runtime services are not usable: nothing maps them.
    public var efiSystemTable: UInt64? {
        if let tag = efi64SystemTableOffset { return u64(tag + 8) }
        return efi32SystemTableOffset.map { UInt64(u32($0 + 8)) }
    }

    /// Calls `body` for each memory map entry; does nothing without a map.
    public func forEachMemoryRegion<E: Error>(_ body: (MemoryRegion) throws(E) -> Void) throws(E) {
        try memoryMap?.forEach(body)
    }

    // MARK: Framebuffer

    /// The framebuffer the loader set up (3.6.12 Framebuffer info).
    public struct Framebuffer: Equatable {
        /// `framebuffer_type` values.
        public enum Kind: Equatable, Sendable {
            case indexed, rgb, egaText
            case other(UInt8)
        }

        /// Bit position and width of one colour channel in a direct-RGB pixel.
        public struct Channel: Equatable {
            public let position: UInt8
            public let maskSize: UInt8
        }

        /// Physical address of the first pixel (or character cell).
        public let address: UInt64
        /// Bytes per line.
        public let pitch: UInt32
        /// Pixels per line (characters for EGA text).
        public let width: UInt32
        /// Lines (character rows for EGA text).
        public let height: UInt32
        /// Bits per pixel (16 for EGA text).
        public let bitsPerPixel: UInt8
        /// The raw `framebuffer_type`.
        public let type: UInt8
        /// Channel layout when `type` is RGB and the tag carries it: GRUB places
        /// `color_info` at byte 32 (its `reserved` is a u16), which is what is read.
        public let red: Channel?
        public let green: Channel?
        public let blue: Channel?

        public var kind: Kind {
            switch type {
            case 0: .indexed
            case 1: .rgb
            case 2: .egaText
            default: .other(type)
            }
        }

        /// Bytes the framebuffer spans (`pitch * height`), to map or reserve it.
        public var byteCount: UInt64 { UInt64(pitch) * UInt64(height) }
    }

    /// The framebuffer, if the loader reported one.
    public var framebuffer: Framebuffer? {
        framebufferOffset.map { tag in
            let size = Int(u32(tag + 4))
            let type = bytes[tag + 29]
            let hasRGB = type == 1 && size >= 38
            func channel(_ at: Int) -> Framebuffer.Channel? {
                hasRGB ? Framebuffer.Channel(position: bytes[tag + at], maskSize: bytes[tag + at + 1]) : nil
            }
            return Framebuffer(
                address: u64(tag + 8), pitch: u32(tag + 16), width: u32(tag + 20),
                height: u32(tag + 24), bitsPerPixel: bytes[tag + 28], type: type,
                red: channel(32), green: channel(34), blue: channel(36))
        }
    }

    // MARK: ACPI

    /// The loader's copy of the ACPI Root System Description Pointer
    /// (3.6.16 ACPI old RSDP, 3.6.17 ACPI new RSDP). It is a copy: the original
    /// may lie anywhere in the BIOS area; the tables it points to are the real ones.
    public struct RSDP {
        /// 1 for the ACPI 1.0 tag (type 14), 2 for the ACPI 2.0+ tag (type 15).
        public let tagVersion: Int
        /// The copied RSDP bytes (the tag body).
        public let bytes: UnsafeRawBufferPointer
        /// Physical address of the copy inside the boot information.
        public let physicalAddress: UInt64

        /// True when the copy starts with "RSD PTR ".
        public var signatureValid: Bool {
            let signature: StaticString = "RSD PTR "
            var index = 0
            while index < 8 {
                if bytes[index] != signature.utf8Start[index] { return false }
                index += 1
            }
            return true
        }

        /// True when the ACPI 1.0 checksum (first 20 bytes) sums to zero and, for
        /// a 2.0+ RSDP, the extended checksum over `length` bytes does too.
        public var checksumValid: Bool {
            guard Self.sum(bytes, count: 20) == 0 else { return false }
            guard tagVersion == 2 else { return true }
            let length = Int(bytes.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
            guard length >= 36, length <= bytes.count else { return false }
            return Self.sum(bytes, count: length) == 0
        }

        static func sum(_ bytes: UnsafeRawBufferPointer, count: Int) -> UInt8 {
            var total: UInt8 = 0
            var index = 0
            while index < count {
                total &+= bytes[index]
                index += 1
            }
            return total
        }

        /// The RSDP's `revision` (0 for ACPI 1.0, 2 for 2.0+).
        public var revision: UInt8 { bytes[15] }
        /// The 32-bit physical address of the RSDT.
        public var rsdtAddress: UInt32 { bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self) }
        /// The 64-bit physical address of the XSDT (ACPI 2.0+ copies only).
        public var xsdtAddress: UInt64? {
            tagVersion == 2 ? bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self) : nil
        }
    }

    func rsdp(at tag: Int?, version: Int) -> RSDP? {
        tag.map { tag in
            let size = Int(u32(tag + 4))
            return RSDP(
                tagVersion: version, bytes: UnsafeRawBufferPointer(rebasing: bytes[(tag + 8)..<(tag + size)]),
                physicalAddress: physicalAddress + UInt64(tag + 8))
        }
    }

    /// The ACPI 1.0 RSDP copy (tag 14), if present.
    public var acpiOldRSDP: RSDP? { rsdp(at: rsdpV1Offset, version: 1) }
    /// The ACPI 2.0+ RSDP copy (tag 15), if present.
    public var acpiNewRSDP: RSDP? { rsdp(at: rsdpV2Offset, version: 2) }
    /// The best RSDP available: the 2.0+ copy when present, else the 1.0 copy.
    public var acpiRSDP: RSDP? { acpiNewRSDP ?? acpiOldRSDP }
}

/// One EFI_MEMORY_DESCRIPTOR (UEFI 2.10 7.2 GetMemoryMap()): u32 Type, u32 pad,
/// u64 PhysicalStart, u64 VirtualStart, u64 NumberOfPages, u64 Attribute.
public struct EFIMemoryDescriptor: Equatable {
    /// The descriptor's fixed fields; firmware strides may be larger (48 on OVMF).
    public static let minimumSize = 40
    /// EFI_MEMORY_TYPE.
    public let type: UInt32
    public let physicalStart: UInt64
    public let numberOfPages: UInt64
    public let attribute: UInt64

    init(_ bytes: UnsafeRawBufferPointer, at: Int) {
        type = bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)
        physicalStart = bytes.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)
        numberOfPages = bytes.loadUnaligned(fromByteOffset: at + 24, as: UInt64.self)
        attribute = bytes.loadUnaligned(fromByteOffset: at + 32, as: UInt64.self)
    }

    /// The multiboot memory type this EFI type means once boot services have
    /// exited (UEFI 2.10 table 7-6 "Memory Type Usage after ExitBootServices()"):
    /// loader and boot-services code/data and conventional memory are free RAM
    /// (the kernel reserves its own image, modules and boot information), ACPI
    /// reclaim is 3, ACPI NVS 4, unusable 5; runtime services, MMIO, reserved,
    /// PAL code, persistent and unaccepted memory stay reserved (2).
    public static func multibootType(_ efiType: UInt32) -> UInt32 {
        switch efiType {
        case 1, 2, 3, 4, 7: 1    // LoaderCode/Data, BootServicesCode/Data, Conventional
        case 9: 3                // ACPIReclaimMemory
        case 10: 4               // ACPIMemoryNVS
        case 8: 5                // UnusableMemory
        default: 2
        }
    }

    /// The descriptor as a memory map entry (validated: no wrap, whole pages).
    public var region: Multiboot2Info.MemoryRegion {
        Multiboot2Info.MemoryRegion(
            base: physicalStart, length: numberOfPages << 12, type: Self.multibootType(type), efiType: type)
    }
}
