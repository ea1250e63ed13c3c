import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// The frame interface over host memory: one aligned host allocation plays
/// "physical RAM" starting at `base`, so physical addresses are realistic and
/// translation is an offset. Counts live frames and records misuse so tests
/// can assert that everything allocated was returned exactly once.
package final class HostFrameAllocator: FrameAllocator {
    package let base: UInt64
    package let frameCount: Int
    private let memory: UnsafeMutableRawPointer
    private var used: [Bool]
    /// Allocations left before the fake reports exhaustion (nil: unlimited).
    package var failAfter: Int?
    package private(set) var misuse: [String] = []

    package init(base: UInt64 = 0x1000_0000, frames: Int = 4096) {
        self.base = base
        self.frameCount = frames
        memory = UnsafeMutableRawPointer.allocate(byteCount: frames * 4096, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0xA5, count: frames * 4096)
        used = Array(repeating: false, count: frames)
    }

    deinit { memory.deallocate() }

    package var liveFrames: Int { used.filter { $0 }.count }

    package func allocateFrame() -> UInt64? { allocateContiguous(count: 1, alignment: 4096) }

    package func allocateContiguous(count: Int, alignment: UInt64) -> UInt64? {
        if let n = failAfter {
            if n == 0 { return nil }
            failAfter = n - 1
        }
        guard count > 0 else { return nil }
        let step = max(1, Int(alignment / 4096))
        var i = 0
        while i + count <= frameCount {
            let pa = base + UInt64(i) * 4096
            if pa % alignment == 0, !used[i..<(i + count)].contains(true) {
                for j in i..<(i + count) { used[j] = true }
                (memory + i * 4096).initializeMemory(as: UInt8.self, repeating: 0, count: count * 4096)
                return pa
            }
            i += step
        }
        return nil
    }

    package func freeFrame(_ address: UInt64) { freeContiguous(address, count: 1) }

    package func freeContiguous(_ address: UInt64, count: Int) {
        guard address >= base, address % 4096 == 0 else {
            misuse.append("free of foreign address 0x\(String(address, radix: 16))"); return
        }
        let first = Int((address - base) / 4096)
        guard first + count <= frameCount else {
            misuse.append("free past the end at 0x\(String(address, radix: 16))"); return
        }
        for j in first..<(first + count) {
            if !used[j] { misuse.append("double free of 0x\(String(base + UInt64(j) * 4096, radix: 16))") }
            used[j] = false
            // Poison so a use after free shows up as garbage, not stale data.
            (memory + j * 4096).initializeMemory(as: UInt8.self, repeating: 0xDD, count: 4096)
        }
    }

    package func pointer(to address: UInt64) -> UnsafeMutableRawPointer {
        precondition(address >= base && address < base + UInt64(frameCount) * 4096,
                     "physical address 0x\(String(address, radix: 16)) outside the fake RAM")
        return memory + Int(address - base)
    }

    /// Reads a 64-bit little-endian value at a physical address.
    package func load64(_ address: UInt64) -> UInt64 {
        pointer(to: address).loadUnaligned(as: UInt64.self)
    }
}
