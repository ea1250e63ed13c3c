// The I/O bitmaps: which port accesses by the guest cause a VM exit when the
// "use I/O bitmaps" VM-execution control is 1.
// SDM Vol. 3C 25.6.4 "I/O-Bitmap Addresses".

import X86Arch
import VMX

/// Two 4 KiB bitmaps, one bit per port: A covers ports 0x0000-0x7FFF and B
/// covers 0x8000-0xFFFF; port p is bit p % 8 of byte p / 8 of its bitmap.
/// A set bit makes IN/OUT/INS/OUTS on that port exit. Owns both frames.
public struct IOBitmap<A: FrameAllocator>: ~Copyable {
    private let bitmapA: PhysFrame<A>
    private let bitmapB: PhysFrame<A>

    /// Ports per bitmap: 4096 bytes of 8 bits.
    // SDM 25.6.4: "I/O bitmap A contains one bit for each I/O port in the range 0000H through 7FFFH"
    public static var portsPerBitmap: Int { 0x8000 }

    /// Both bitmaps, with every port intercepted (`interceptAll`) or none.
    /// Intercepting everything is the safe start: open ports one by one.
    public init(from allocator: A, interceptAll: Bool) throws(FrameError) {
        // Both frames are locals first: if B fails, A is returned on the way out.
        let a = try PhysFrame(from: allocator)
        let b = try PhysFrame(from: allocator)
        if interceptAll {
            a.pointer.initializeMemory(as: UInt8.self, repeating: 0xFF, count: Int(frameSize))
            b.pointer.initializeMemory(as: UInt8.self, repeating: 0xFF, count: Int(frameSize))
        }
        bitmapA = a
        bitmapB = b
    }

    /// For the VMCS field "I/O-bitmap address A" (encoding 0x2000).
    public var addressA: UInt64 { bitmapA.address }
    /// For the VMCS field "I/O-bitmap address B" (encoding 0x2002).
    public var addressB: UInt64 { bitmapB.address }

    /// Makes accesses to every port in `ports` exit (`on`) or pass through.
    /// A closed range reaches port 0xFFFF without overflowing.
    public mutating func setIntercept(ports: ClosedRange<UInt16>, _ on: Bool) {
        for port in ports { setIntercept(port: port, on) }
    }

    /// Makes accesses to `port` exit (`on`) or pass through.
    public mutating func setIntercept(port: UInt16, _ on: Bool) {
        let (byte, mask) = location(of: port)
        let current = byte.load(as: UInt8.self)
        byte.storeBytes(of: on ? current | mask : current & ~mask, as: UInt8.self)
    }

    /// Whether the bit for `port` is set.
    public func intercepts(port: UInt16) -> Bool {
        let (byte, mask) = location(of: port)
        return byte.load(as: UInt8.self) & mask != 0
    }

    /// Whether an access of `size` bytes starting at `port` exits: when the
    /// bit of any port it touches is set, or when it wraps past 0xFFFF to
    /// 0x0000. Sizes other than 1, 2 or 4 are not valid accesses and are
    /// reported as exiting.
    // SDM 26.1.3 "Instructions That Cause VM Exits Conditionally" (IN, INS/INSB/INSW/INSD, OUT, OUTS/...)
    public func accessExits(port: UInt16, size: Int) -> Bool {
        guard size == 1 || size == 2 || size == 4 else { return true }
        if Int(port) + size - 1 > Int(UInt16.max) { return true }
        for offset in 0..<size where intercepts(port: port &+ UInt16(offset)) { return true }
        return false
    }

    private func location(of port: UInt16) -> (UnsafeMutableRawPointer, UInt8) {
        let frame = port < 0x8000 ? bitmapA.pointer : bitmapB.pointer
        let bit = Int(port & 0x7FFF)
        return (frame + bit / 8, UInt8(1) << UInt8(bit % 8))
    }
}
