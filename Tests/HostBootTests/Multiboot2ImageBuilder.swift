import X86Arch
import VMX
import X86VCPU
import HostBoot

/// Builds Multiboot2 boot information byte images the way GRUB's
/// `grub_multiboot_make_mbi` lays them out: an 8-byte fixed part, tags padded to
/// 8 bytes, an end tag, and total_size patched in last. Each tag method returns
/// the tag's offset so tests can assert the offset carried by errors.
struct MBIBuilder {
    var bytes: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0]

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func cString(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    /// Appends a tag with `body`; `size` overrides the size field (default 8 + body).
    @discardableResult
    mutating func tag(_ type: UInt32, _ body: [UInt8], size: UInt32? = nil) -> Int {
        let offset = bytes.count
        bytes += Self.le32(type) + Self.le32(size ?? UInt32(8 + body.count)) + body
        while bytes.count % 8 != 0 { bytes.append(0) }
        return offset
    }

    @discardableResult package mutating func commandLine(_ s: String) -> Int { tag(1, Self.cString(s)) }
    @discardableResult package mutating func bootLoaderName(_ s: String) -> Int { tag(2, Self.cString(s)) }

    @discardableResult
    mutating func module(start: UInt32, end: UInt32, _ s: String) -> Int {
        tag(3, Self.le32(start) + Self.le32(end) + Self.cString(s))
    }

    @discardableResult
    mutating func basicMemory(lowerKiB: UInt32, upperKiB: UInt32) -> Int {
        tag(4, Self.le32(lowerKiB) + Self.le32(upperKiB))
    }

    /// A memory map tag; `entrySize` above 24 pads each entry with 0xEE bytes
    /// (a future-version entry with extra fields).
    @discardableResult
    mutating func memoryMap(_ entries: [(UInt64, UInt64, UInt32)], entrySize: UInt32 = 24, version: UInt32 = 0) -> Int {
        var body = Self.le32(entrySize) + Self.le32(version)
        for (base, length, type) in entries {
            var entry = Self.le64(base) + Self.le64(length) + Self.le32(type) + Self.le32(0)
            while entry.count < Int(entrySize) { entry.append(0xEE) }
            body += entry.prefix(Int(entrySize))
        }
        return tag(6, body)
    }

    /// GRUB's framebuffer tag: common part of 32 bytes (reserved is a u16), then
    /// 6 bytes of RGB channel info for type 1.
    @discardableResult
    mutating func framebuffer(
        address: UInt64, pitch: UInt32, width: UInt32, height: UInt32, bpp: UInt8, type: UInt8,
        rgb: [UInt8] = []
    ) -> Int {
        tag(8, Self.le64(address) + Self.le32(pitch) + Self.le32(width) + Self.le32(height)
            + [bpp, type, 0, 0] + rgb)
    }

    /// Tag type 9 (ELF sections), which the parser must skip.
    @discardableResult
    mutating func elfSections() -> Int { tag(9, [4, 0, 64, 0, 3, 0, 0, 0] + Array(repeating: 0x11, count: 64 * 4)) }

    /// A valid ACPI 1.0 RSDP: "RSD PTR ", checksum, OEM, revision 0, RSDT.
    static func rsdpV1(rsdt: UInt32, breakChecksum: Bool = false) -> [UInt8] {
        var r = Array("RSD PTR ".utf8) + [0] + Array("BOCHS ".utf8) + [0] + le32(rsdt)
        r[8] = UInt8(truncatingIfNeeded: 0 &- r.reduce(0 as UInt8) { $0 &+ $1 }) &+ (breakChecksum ? 1 : 0)
        return r
    }

    /// A valid ACPI 2.0 RSDP (36 bytes) with both checksums right.
    static func rsdpV2(rsdt: UInt32, xsdt: UInt64, length: UInt32 = 36) -> [UInt8] {
        var r = Array("RSD PTR ".utf8) + [0] + Array("BOCHS ".utf8) + [2] + le32(rsdt)
            + le32(length) + le64(xsdt) + [0, 0, 0, 0]
        r[8] = UInt8(truncatingIfNeeded: 0 &- r[0..<20].reduce(0 as UInt8) { $0 &+ $1 })
        r[32] = UInt8(truncatingIfNeeded: 0 &- r.reduce(0 as UInt8) { $0 &+ $1 })
        return r
    }

    /// An EFI memory map tag (type 17) of (type, start, pages) descriptors;
    /// `descriptorSize` above 40 pads each with 0xEE (OVMF uses 48).
    @discardableResult
    mutating func efiMemoryMap(_ descriptors: [(UInt32, UInt64, UInt64)], descriptorSize: UInt32 = 48) -> Int {
        var body = Self.le32(descriptorSize) + Self.le32(1)
        for (type, start, pages) in descriptors {
            var d = Self.le32(type) + Self.le32(0) + Self.le64(start) + Self.le64(0) + Self.le64(pages) + Self.le64(0xF)
            while d.count < Int(descriptorSize) { d.append(0xEE) }
            body += d.prefix(Int(descriptorSize))
        }
        return tag(17, body)
    }

    @discardableResult package mutating func end(size: UInt32 = 8) -> Int { tag(0, [], size: size) }

    /// The finished image with total_size patched (or forced to `total`).
    func finish(total: UInt32? = nil) -> [UInt8] {
        var out = bytes
        out.replaceSubrange(0..<4, with: Self.le32(total ?? UInt32(bytes.count)))
        return out
    }
}

/// Runs `body` over `image` copied into 8-byte aligned host memory, optionally
/// starting `shift` bytes into the allocation (to misalign it) and with `slack`
/// extra bytes after it.
@discardableResult
func withImage<R>(
    _ image: [UInt8], shift: Int = 0, slack: Int = 0, _ body: (UnsafeRawBufferPointer) throws -> R
) rethrows -> R {
    let memory = UnsafeMutableRawPointer.allocate(byteCount: image.count + shift + slack + 8, alignment: 4096)
    defer { memory.deallocate() }
    memory.initializeMemory(as: UInt8.self, repeating: 0x5A, count: image.count + shift + slack + 8)
    image.withUnsafeBytes { (memory + shift).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    return try body(UnsafeRawBufferPointer(start: memory + shift, count: image.count + slack))
}

/// A complete GRUB-like image with just a memory map (plus optional modules).
func mapImage(_ entries: [(UInt64, UInt64, UInt32)], modules: [(UInt32, UInt32)] = []) -> [UInt8] {
    var b = MBIBuilder()
    b.commandLine("")
    b.bootLoaderName("GRUB 2.06")
    for (index, (start, end)) in modules.enumerated() { b.module(start: start, end: end, "mod\(index)") }
    b.memoryMap(entries)
    b.end()
    return b.finish()
}

/// Parses `image` placed at physical address `at` and runs `body` on the result.
@discardableResult
func withInfo<R>(
    _ image: [UInt8], at physical: UInt64 = 0x10_0000_0000, _ body: (Multiboot2Info) throws -> R
) throws -> R {
    try withImage(image) { buffer in try body(Multiboot2Info(buffer, physicalAddress: physical)) }
}

func text(_ bytes: UnsafeRawBufferPointer?) -> String? {
    bytes.map { String(decoding: $0, as: UTF8.self) }
}
