// Guest RAM as the hypervisor sees it: one host-contiguous block that EPT maps
// at guest-physical 0 (isolated platform), or the machine's memory itself,
// guest-physical = host-physical, less the hypervisor's own ranges (the
// passthrough platform's holes). Every access is bounds-checked, so a guest
// address can never reach hypervisor memory.

import X86Arch
import VMX

public struct GuestRAM: GuestPhysicalMemory, Sendable {
    /// Host-physical address of guest-physical 0.
    public let hostPhysical: UInt64
    /// Where the hypervisor reaches guest-physical 0.
    nonisolated(unsafe) public let base: UnsafeMutableRawPointer
    public let size: UInt64
    /// Ranges below `size` that are not the guest's (the hypervisor's memory
    /// on the passthrough platform); empty ranges are unused slots.
    public let holes: [4 of Range<UInt64>]
    public static let holeCapacity = 4

    public init(hostPhysical: UInt64, base: UnsafeMutableRawPointer, size: UInt64,
                holes: [4 of Range<UInt64>] = .init(repeating: 0..<0)) {
        self.hostPhysical = hostPhysical; self.base = base; self.size = size; self.holes = holes
    }

    /// The same memory, ending at `newSize` (at most `size`).
    public func truncated(to newSize: UInt64) -> GuestRAM {
        GuestRAM(hostPhysical: hostPhysical, base: base, size: min(size, newSize), holes: holes)
    }

    /// The bytes at [gpa, gpa + count), or nil if any is outside guest RAM.
    public func bytes(at gpa: UInt64, count: Int) -> UnsafeMutableRawBufferPointer? {
        guard count >= 0, gpa <= size, UInt64(count) <= size - gpa else { return nil }
        let end = gpa + UInt64(count)
        for i in 0..<Self.holeCapacity where holes[i].lowerBound < end && gpa < holes[i].upperBound && count > 0 {
            return nil
        }
        return UnsafeMutableRawBufferPointer(start: base + Int(gpa), count: count)
    }

    public func read64(_ gpa: UInt64) -> UInt64? { bytes(at: gpa, count: 8)?.loadUnaligned(as: UInt64.self) }
    public func read32(_ gpa: UInt64) -> UInt32? { bytes(at: gpa, count: 4)?.loadUnaligned(as: UInt32.self) }
    public func read8(_ gpa: UInt64) -> UInt8? { bytes(at: gpa, count: 1)?[0] }

    public func write8(_ gpa: UInt64, _ value: UInt8) -> Bool {
        guard let b = bytes(at: gpa, count: 1) else { return false }
        b[0] = value
        return true
    }

    /// Copies `source` into guest RAM at `gpa`; false (nothing copied) if it does not fit.
    public func copy(_ source: UnsafeRawBufferPointer, to gpa: UInt64) -> Bool {
        guard let target = bytes(at: gpa, count: source.count) else { return false }
        if let s = source.baseAddress, let t = target.baseAddress { t.copyMemory(from: s, byteCount: source.count) }
        return true
    }
}
