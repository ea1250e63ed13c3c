// The MSR bitmap: which RDMSR/WRMSR by the guest cause a VM exit when the
// "use MSR bitmaps" VM-execution control is 1.
// SDM Vol. 3C 25.6.9 "MSR-Bitmap Address".

import X86Arch
import VMX

/// Whether a guest RDMSR or WRMSR of one MSR exits.
public enum MSRInterception: Equatable, Sendable {
    /// The MSR is covered by the bitmap; the access exits when its bit is set.
    case bitmap(intercepted: Bool)
    /// The MSR lies outside both covered ranges: the access always exits.
    // SDM 26.1.3: RDMSR/WRMSR exit if ECX is not in 0-1FFFH or C0000000H-C0001FFFH
    case alwaysExits

    /// Whether the access causes a VM exit.
    public var causesExit: Bool {
        switch self {
        case .bitmap(let intercepted): return intercepted
        case .alwaysExits: return true
        }
    }
}

/// Why an intercept could not be set.
public enum MSRBitmapError: Error, Equatable, Sendable {
    /// The MSR has no bit in the bitmap (its accesses always exit).
    case notCoveredByBitmap(msr: UInt32)
}

/// One 4 KiB frame of four 1 KiB bitmaps: read-low (MSRs 0x0000_0000-
/// 0x0000_1FFF) at byte 0, read-high (0xC000_0000-0xC000_1FFF) at 1024,
/// write-low at 2048, write-high at 3072; MSR m's bit is m % 8 of byte
/// (m & 0x1FFF) / 8 of its bitmap. Read and write are set separately: a
/// guest may read an MSR freely yet have every write checked.
public struct MSRBitmap<A: FrameAllocator>: ~Copyable {
    private let frame: PhysFrame<A>

    // SDM 25.6.9 "MSR-Bitmap Address": the four bitmaps' offsets in the page
    private static var readLowOffset: Int { 0 }
    private static var readHighOffset: Int { 1024 }
    private static var writeLowOffset: Int { 2048 }
    private static var writeHighOffset: Int { 3072 }

    /// The frame, with every covered MSR intercepted (`interceptAll`) or none.
    public init(from allocator: A, interceptAll: Bool) throws(FrameError) {
        frame = try PhysFrame(from: allocator)
        if interceptAll {
            frame.pointer.initializeMemory(as: UInt8.self, repeating: 0xFF, count: Int(frameSize))
        }
    }

    /// For the VMCS field "Address of MSR bitmaps" (encoding 0x2004).
    public var address: UInt64 { frame.address }

    /// Whether `msr` has bits in the bitmap (0x0000_0000-0x0000_1FFF or
    /// 0xC000_0000-0xC000_1FFF).
    public static func isCoveredByBitmap(msr: UInt32) -> Bool {
        msr <= 0x1FFF || (0xC000_0000...0xC000_1FFF).contains(msr)
    }

    /// Makes guest RDMSR of `msr` exit (`on`) or not. Throws for an MSR
    /// outside the bitmap, whose reads always exit; the bitmap is unchanged.
    public mutating func setReadIntercept(msr: UInt32, _ on: Bool) throws(MSRBitmapError) {
        try set(msr: msr, lowOffset: Self.readLowOffset, highOffset: Self.readHighOffset, on)
    }

    /// Makes guest WRMSR of `msr` exit (`on`) or not. Throws for an MSR
    /// outside the bitmap, whose writes always exit; the bitmap is unchanged.
    public mutating func setWriteIntercept(msr: UInt32, _ on: Bool) throws(MSRBitmapError) {
        try set(msr: msr, lowOffset: Self.writeLowOffset, highOffset: Self.writeHighOffset, on)
    }

    /// Whether guest RDMSR of `msr` exits, and why.
    public func interceptsRead(msr: UInt32) -> MSRInterception {
        query(msr: msr, lowOffset: Self.readLowOffset, highOffset: Self.readHighOffset)
    }

    /// Whether guest WRMSR of `msr` exits, and why.
    public func interceptsWrite(msr: UInt32) -> MSRInterception {
        query(msr: msr, lowOffset: Self.writeLowOffset, highOffset: Self.writeHighOffset)
    }

    private func location(msr: UInt32, lowOffset: Int, highOffset: Int) -> (UnsafeMutableRawPointer, UInt8)? {
        guard Self.isCoveredByBitmap(msr: msr) else { return nil }
        let bit = Int(msr & 0x1FFF)
        let base = msr <= 0x1FFF ? lowOffset : highOffset
        return (frame.pointer + base + bit / 8, UInt8(1) << UInt8(bit % 8))
    }

    private func set(msr: UInt32, lowOffset: Int, highOffset: Int, _ on: Bool) throws(MSRBitmapError) {
        guard let (byte, mask) = location(msr: msr, lowOffset: lowOffset, highOffset: highOffset) else {
            throw .notCoveredByBitmap(msr: msr)
        }
        let current = byte.load(as: UInt8.self)
        byte.storeBytes(of: on ? current | mask : current & ~mask, as: UInt8.self)
    }

    private func query(msr: UInt32, lowOffset: Int, highOffset: Int) -> MSRInterception {
        guard let (byte, mask) = location(msr: msr, lowOffset: lowOffset, highOffset: highOffset) else {
            return .alwaysExits
        }
        return .bitmap(intercepted: byte.load(as: UInt8.self) & mask != 0)
    }
}
