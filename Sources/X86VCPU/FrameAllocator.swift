/// The frame interface (x86_vcpu's `PhysFrameIf`): where every physical page the
/// hypervisor uses for hardware structures comes from. The kernel's page-frame
/// allocator conforms over real RAM; host tests conform over host memory.
///
/// Requirements are non-mutating: a conformer is a handle (the kernel's is an
/// empty struct over its one allocator), so generic code can copy it freely.

import X86Arch
import VMX

public protocol FrameAllocator {
    /// A zeroed 4 KiB frame, 4 KiB aligned; nil when memory is exhausted.
    func allocateFrame() -> UInt64?
    /// `count` physically contiguous zeroed frames whose first address is a
    /// multiple of `alignment` (a power of two, at least 4096); nil when none fit.
    func allocateContiguous(count: Int, alignment: UInt64) -> UInt64?
    /// Returns one frame obtained from `allocateFrame`.
    func freeFrame(_ address: UInt64)
    /// Returns a run obtained from `allocateContiguous`.
    func freeContiguous(_ address: UInt64, count: Int)
    /// Where the hypervisor reaches physical address `address`.
    func pointer(to address: UInt64) -> UnsafeMutableRawPointer
}

public let frameSize: UInt64 = 4096

public enum FrameError: Error, Equatable {
    case outOfMemory
}

/// Owns one frame: it cannot be copied, so it cannot be freed twice; it is
/// returned to its allocator when the owner goes away.
@frozen
public struct PhysFrame<A: FrameAllocator>: ~Copyable {
    public let address: UInt64
    @usableFromInline let allocator: A

    public init(from allocator: A) throws(FrameError) {
        guard let address = allocator.allocateFrame() else { throw .outOfMemory }
        self.address = address
        self.allocator = allocator
    }

    deinit { allocator.freeFrame(address) }

    public var pointer: UnsafeMutableRawPointer { allocator.pointer(to: address) }
}
