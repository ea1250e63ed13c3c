import X86Arch
import VMX
import X86VCPU
import GuestBoot

// Synthetic guest images built in memory (ELF32/64 with notes and segments,
// bzImage setup headers, multiboot headers), and host memory standing in for
// guest RAM.

/// A little-endian byte image with random-access stores.
struct ByteImage {
    var bytes: [UInt8]

    init(count: Int, fill: UInt8 = 0) { bytes = [UInt8](repeating: fill, count: count) }
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func grow(to count: Int) { if bytes.count < count { bytes += [UInt8](repeating: 0, count: count - bytes.count) } }

    mutating func put<T: FixedWidthInteger>(_ offset: Int, _ value: T) {
        grow(to: offset + MemoryLayout<T>.size)
        for i in 0..<MemoryLayout<T>.size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    mutating func put(_ offset: Int, bytes more: [UInt8]) {
        grow(to: offset + more.count)
        bytes.replaceSubrange(offset..<(offset + more.count), with: more)
    }
}

/// A deterministic pattern so copied bytes can be recognised.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) } }

/// A Xen ELF note (name "Xen", type 18 = PHYS32_ENTRY unless given), padded to `pad`.
func xenNote(entry: UInt64, descSize: Int = 8, type: UInt32 = 18, name: [UInt8] = Array("Xen".utf8) + [0],
             pad: Int = 4) -> [UInt8] {
    var n = ByteImage(count: 0)
    n.put(0, UInt32(name.count))
    n.put(4, UInt32(descSize))
    n.put(8, type)
    n.put(12, bytes: name)
    let desc = 12 + (name.count + pad - 1) / pad * pad
    n.grow(to: desc)
    for i in 0..<descSize { n.put(desc + i, UInt8(truncatingIfNeeded: entry >> (8 * UInt64(i % 8)))) }
    n.grow(to: desc + (descSize + pad - 1) / pad * pad)
    return n.bytes
}

/// A multiboot v1 header: magic, flags, checksum (correct unless given), then
/// the five address fields when `addresses` is set.
func multibootHeader(flags: UInt32, checksum: UInt32? = nil, addresses: [UInt32]? = nil) -> [UInt8] {
    var h = ByteImage(count: 0)
    h.put(0, UInt32(0x1BAD_B002))
    h.put(4, flags)
    h.put(8, checksum ?? (0 &- 0x1BAD_B002 &- flags))
    for (i, a) in (addresses ?? []).enumerated() { h.put(12 + 4 * i, a) }
    return h.bytes
}

/// One program header of a synthetic ELF; `data` lands at a 16-byte aligned file offset.
struct Segment {
    var type: UInt32 = 1
    var paddr: UInt64
    var data: [UInt8]
    var memsz: UInt64? = nil
    var align: UInt64 = 0x1000
    /// Overrides the computed p_offset / p_filesz to make broken files.
    var offset: UInt64? = nil
    var filesz: UInt64? = nil
}

/// A little-endian ELF executable: header, program headers, then segment data.
/// `trailer` bytes are placed after the segments (at `trailerOffset` in the result).
func makeELF(is64: Bool = true, machine: UInt16? = nil, entry: UInt64 = 0x10_0000, segments: [Segment],
             trailer: [UInt8] = []) -> (bytes: [UInt8], trailerOffset: Int) {
    let ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32
    var image = ByteImage(count: ehsize + phentsize * segments.count)
    image.put(0, bytes: [0x7F, 0x45, 0x4C, 0x46, is64 ? 2 : 1, 1, 1, 0])
    image.put(16, UInt16(2))
    image.put(18, machine ?? (is64 ? 62 : 3))
    image.put(20, UInt32(1))
    var cursor = (image.bytes.count + 15) / 16 * 16
    var offsets: [Int] = []
    for s in segments {
        offsets.append(cursor)
        image.put(cursor, bytes: s.data)
        cursor = (cursor + s.data.count + 15) / 16 * 16
    }
    image.grow(to: cursor)
    let trailerOffset = cursor
    image.put(cursor, bytes: trailer)
    if is64 {
        image.put(24, entry)
        image.put(32, UInt64(ehsize))
        image.put(52, UInt16(ehsize))
        image.put(54, UInt16(phentsize))
        image.put(56, UInt16(segments.count))
    } else {
        image.put(24, UInt32(truncatingIfNeeded: entry))
        image.put(28, UInt32(ehsize))
        image.put(40, UInt16(ehsize))
        image.put(42, UInt16(phentsize))
        image.put(44, UInt16(segments.count))
    }
    for (i, s) in segments.enumerated() {
        let at = ehsize + i * phentsize
        let offset = s.offset ?? UInt64(offsets[i]), filesz = s.filesz ?? UInt64(s.data.count)
        let memsz = s.memsz ?? UInt64(s.data.count)
        if is64 {
            image.put(at, s.type); image.put(at + 4, UInt32(7)); image.put(at + 8, offset)
            image.put(at + 16, s.paddr | 0xFFFF_FFFF_8000_0000); image.put(at + 24, s.paddr)
            image.put(at + 32, filesz); image.put(at + 40, memsz); image.put(at + 48, s.align)
        } else {
            image.put(at, s.type); image.put(at + 4, UInt32(truncatingIfNeeded: offset))
            image.put(at + 8, UInt32(truncatingIfNeeded: s.paddr) | 0xC000_0000)
            image.put(at + 12, UInt32(truncatingIfNeeded: s.paddr))
            image.put(at + 16, UInt32(truncatingIfNeeded: filesz)); image.put(at + 20, UInt32(truncatingIfNeeded: memsz))
            image.put(at + 24, UInt32(7)); image.put(at + 28, UInt32(truncatingIfNeeded: s.align))
        }
    }
    return (image.bytes, trailerOffset)
}

/// A fake bzImage: boot sector and setup sectors with the setup header, then a
/// protected-mode kernel of `kernelSize` patterned bytes.
struct BzImage {
    var setupSects: UInt8 = 4
    var version: UInt16 = 0x020F
    var loadflags: UInt8 = 0x01
    var xloadflags: UInt16 = 0x0003
    var relocatable: UInt8 = 1
    var kernelAlignment: UInt32 = 0x20_0000
    var prefAddress: UInt64 = 0x100_0000
    var initSize: UInt32 = 0x10_0000
    var initrdAddrMax: UInt32 = 0x7FFF_FFFF
    var cmdlineSize: UInt32 = 2047
    var kernelSize = 0x1000
    /// The byte at 0x201: the setup header ends at 0x202 + this.
    var jump: UInt8 = 0x66

    var setupSize: Int { (Int(setupSects == 0 ? 4 : setupSects) + 1) * 512 }

    func build() -> [UInt8] {
        var image = ByteImage(count: setupSize)
        image.put(0x1F1, setupSects)
        image.put(0x1F2, UInt16(1))            // root_flags
        image.put(0x1FA, UInt16(0xFFFF))       // vid_mode
        image.put(0x1FE, UInt16(0xAA55))
        image.put(0x200, UInt8(0xEB))
        image.put(0x201, jump)
        image.put(0x202, bytes: Array("HdrS".utf8))
        image.put(0x206, version)
        image.put(0x210, UInt8(0))
        image.put(0x211, loadflags | 0x80)     // CAN_USE_HEAP, which the loader clears
        image.put(0x214, UInt32(0x10_0000))
        image.put(0x22C, initrdAddrMax)
        image.put(0x230, kernelAlignment)
        image.put(0x234, relocatable)
        image.put(0x235, UInt8(21))
        image.put(0x236, xloadflags)
        image.put(0x238, cmdlineSize)
        image.put(0x258, prefAddress)
        image.put(0x260, initSize)
        image.put(0x268, UInt32(0xDEAD_BEEF))  // kernel_info_offset, past a short header
        image.put(setupSize, bytes: pattern(kernelSize, seed: 0x42))
        return image.bytes
    }
}

/// Host memory standing in for guest RAM, filled with 0xCC so that what the
/// loader zeroes and what it leaves alone both show.
func withGuestRAM<R>(size: UInt64 = 32 << 20, _ body: (GuestRAM) throws -> R) rethrows -> R {
    let memory = UnsafeMutableRawPointer.allocate(byteCount: Int(size), alignment: 4096)
    defer { memory.deallocate() }
    memory.initializeMemory(as: UInt8.self, repeating: 0xCC, count: Int(size))
    return try body(GuestRAM(hostPhysical: 0x4000_0000, base: memory, size: size))
}

extension GuestRAM {
    func read16(_ gpa: UInt64) -> UInt16? { bytes(at: gpa, count: 2)?.loadUnaligned(as: UInt16.self) }

    /// The guest bytes [gpa, gpa + count) as an array.
    func array(_ gpa: UInt64, _ count: Int) -> [UInt8] { bytes(at: gpa, count: count).map { Array($0) } ?? [] }

    /// The NUL-terminated string at `gpa`.
    func cString(_ gpa: UInt64) -> String {
        var out: [UInt8] = []
        var at = gpa
        while let b = read8(at), b != 0 { out.append(b); at += 1 }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether every byte of [gpa, gpa + count) is `value`.
    func all(_ gpa: UInt64, _ count: Int, are value: UInt8) -> Bool { array(gpa, count).allSatisfy { $0 == value } }
}

/// Loads `image` with the command line and module (bytes, string) pairs.
func loadGuest(_ image: [UInt8], commandLine: String = "", modules: [([UInt8], String)] = [],
               ram: GuestRAM) throws -> LoadedGuest {
    // Copies that stay alive (and put) for the whole call.
    var buffers: [UnsafeMutableRawBufferPointer] = []
    defer { for b in buffers { b.deallocate() } }
    func copy(_ bytes: [UInt8]) -> UnsafeRawBufferPointer {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        bytes.withUnsafeBytes { b.copyMemory(from: $0) }
        buffers.append(b)
        return UnsafeRawBufferPointer(b)
    }
    var list = GuestModules()
    for (bytes, string) in modules { try list.append(GuestModule(bytes: copy(bytes), commandLine: copy(Array(string.utf8)))) }
    let kernel = GuestModule(bytes: copy(image), commandLine: copy(Array(commandLine.utf8)))
    return try GuestLoader.load(kernel: kernel, modules: list, ram: ram)
}

/// The loader error `body` throws, or nil.
func loaderError(_ body: () throws -> Void) -> GuestImageError? {
    do { try body(); return nil } catch { return error as? GuestImageError }
}

func detect(_ image: [UInt8]) throws -> GuestImageFormat {
    try image.withUnsafeBytes { try GuestImage.detect($0) }
}

func detectError(_ image: [UInt8]) -> GuestImageError? { loaderError { _ = try detect(image) } }
