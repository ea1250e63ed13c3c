// Paging formats. SDM Vol. 3A 5 "Paging".

/// The error code pushed with #PF.
// SDM 5.7 "Page-Fault Exceptions", Figure "Page-Fault Error Code"
public struct PageFaultErrorCode: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 0: a non-present page; 1: a protection or reserved-bit violation.
    public static let present = PageFaultErrorCode(rawValue: 1 << 0)
    /// The access was a write.
    public static let write = PageFaultErrorCode(rawValue: 1 << 1)
    /// The access was a user-mode access.
    public static let user = PageFaultErrorCode(rawValue: 1 << 2)
    /// A reserved bit was set in some paging-structure entry.
    public static let reservedBit = PageFaultErrorCode(rawValue: 1 << 3)
    /// The access was an instruction fetch (only with SMEP, or PAE-style paging with NXE).
    public static let instructionFetch = PageFaultErrorCode(rawValue: 1 << 4)

    public func contains(_ other: PageFaultErrorCode) -> Bool { rawValue & other.rawValue == other.rawValue }
    public static func | (lhs: PageFaultErrorCode, rhs: PageFaultErrorCode) -> PageFaultErrorCode {
        PageFaultErrorCode(rawValue: lhs.rawValue | rhs.rawValue)
    }
}

/// Bits of a paging-structure entry (PML5E ... PTE) and of CR3.
/// SDM 5.5 "4-Level Paging and 5-Level Paging", Table "Format of a
/// Page-Table Entry that Maps a 4-KByte Page" and its siblings.
public enum PageTableEntry {
    /// Bit 0: present.
    public static let present: UInt64 = 1 << 0
    /// Bit 1: read/write.
    public static let writable: UInt64 = 1 << 1
    /// Bit 2: user/supervisor.
    public static let user: UInt64 = 1 << 2
    /// Bit 3: page-level write-through.
    public static let writeThrough: UInt64 = 1 << 3
    /// Bit 4: page-level cache disable.
    public static let cacheDisable: UInt64 = 1 << 4
    /// Bit 5: accessed.
    public static let accessed: UInt64 = 1 << 5
    /// Bit 6: dirty (entries that map a page).
    public static let dirty: UInt64 = 1 << 6
    /// Bit 7: page size, in a PDPTE or PDE (maps a 1 GiB or 2 MiB page); PAT in a PTE.
    public static let pageSize: UInt64 = 1 << 7
    /// Bit 8: global (entries that map a page).
    public static let global: UInt64 = 1 << 8
    /// Bit 12: PAT in a PDPTE or PDE that maps a page.
    public static let largePAT: UInt64 = 1 << 12
    /// Bit 63: execute-disable (with EFER.NXE).
    public static let executeDisable: UInt64 = 1 << 63
    /// Bits 51:12: the address of the next table or the 4 KiB page, at its widest.
    public static let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
    /// Each table holds 512 entries: 9 bits of the linear address per level.
    public static let indexMask: UInt64 = 0x1FF
}

/// A PAE page-directory-pointer-table entry (loaded into the PDPTE registers).
/// SDM 5.4.1 "PDPTE Registers".
public enum PAEPDPTE {
    /// Bits 2:1 and 8:5: reserved in a present PDPTE (beyond MAXPHYADDR too).
    public static let reservedMask: UInt64 = 0x1E6
}

/// 4 KiB, the base page size.
public let pageSize4KiB: UInt64 = 1 << 12
/// The offset bits within a 4 KiB page.
public let pageOffsetMask4KiB: UInt64 = pageSize4KiB - 1
