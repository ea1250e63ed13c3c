// The firmware memory map entry: base, length, type, as INT 15h E820h, the
// multiboot memory map, Linux boot_params and PVH all carry it.
// ACPI "System Address Map Interfaces", table "Address Range Types".

/// One range of the physical address map.
@frozen
public struct E820Entry: Equatable, Sendable {
    public var base: UInt64
    public var length: UInt64
    /// An ACPI address range type (`ram`, `reserved`, ...); other values are
    /// possible (persistent memory is 7) and must be treated as not RAM.
    public var type: UInt32

    public init(base: UInt64, length: UInt64, type: UInt32) {
        self.base = base
        self.length = length
        self.type = type
    }

    /// One past the last byte (wraps if the entry runs past 2^64; `E820Map`
    /// never stores such an entry).
    @inlinable public var end: UInt64 { base &+ length }

    /// AddressRangeMemory: RAM the OS may use.
    public static let ram: UInt32 = 1
    /// AddressRangeReserved: in use or reserved by the system.
    public static let reserved: UInt32 = 2
    /// AddressRangeACPI: ACPI tables; RAM once the OS has read them.
    public static let acpiReclaimable: UInt32 = 3
    /// AddressRangeNVS: ACPI NVS memory, to be saved across sleep.
    public static let acpiNVS: UInt32 = 4
    /// AddressRangeUnusable: memory with detected errors.
    public static let unusable: UInt32 = 5
}
