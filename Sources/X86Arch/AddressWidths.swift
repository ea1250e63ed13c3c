// Address widths: canonical linear addresses and the widths CPUID reports.
// SDM Vol. 1 3.3.7.1 "Canonical Addressing"; CPUID leaf 80000008H.

/// Whether `address` is canonical for a `linearBits`-bit linear-address
/// width (48, or 57 with 5-level paging): bits 63:linearBits-1 all equal.
/// Widths outside 1...64 are clamped.
@inlinable
public func isCanonical(_ address: UInt64, linearBits: Int) -> Bool {
    let bits = max(1, min(64, linearBits))
    let shift = UInt64(64 - bits)
    return UInt64(bitPattern: Int64(bitPattern: address << shift) >> shift) == address
}

/// CPUID.80000008H:EAX: the physical (MAXPHYADDR) and linear address widths.
/// The one place either width is decoded.
@frozen
public struct AddressSizes: Equatable, Sendable {
    /// EAX[7:0]: MAXPHYADDR, the physical-address width.
    public let physicalAddressBits: Int
    /// EAX[15:8]: the linear-address width (48, or 57 with 5-level paging).
    public let linearAddressBits: Int

    /// Decodes CPUID.80000008H:EAX.
    @inlinable
    public init(leaf80000008EAX eax: UInt32) {
        physicalAddressBits = Int(eax & 0xFF)
        linearAddressBits = Int((eax >> 8) & 0xFF)
    }

    @inlinable
    public init(physicalAddressBits: Int, linearAddressBits: Int) {
        self.physicalAddressBits = physicalAddressBits
        self.linearAddressBits = linearAddressBits
    }
}
