// The page-frame allocator: the library's FrameBitmap bound to real RAM. The
// boot stub identity-maps the first 4 GiB, so physical == virtual below it
// and RAM above it is left out.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

let identityMappedEnd: UInt64 = 4 << 30

/// The one frame bitmap. Set once at boot, before any allocation (and moved
/// into the hypervisor's pool on the passthrough platform, before any either).
nonisolated(unsafe) var frameBitmap: FrameBitmap?
/// Where the bitmap's words live.
nonisolated(unsafe) var frameBitmapStorage: Range<UInt64> = 0..<0

/// The kernel's conformance to the frame interface: an empty handle over
/// `frameBitmap`, so every generic user specializes to direct calls.
/// Boot/ap.asm's spinlock around the bitmap: every CPU creates its vCPU's frames.
@_extern(c, "frames_lock") func frames_lock()
@_extern(c, "frames_unlock") func frames_unlock()

struct KernelFrames: FrameAllocator {
    func allocateFrame() -> UInt64? {
        frames_lock()
        let taken = frameBitmap?.allocate()
        frames_unlock()
        guard let address = taken else { return nil }
        pointer(to: address).initializeMemory(as: UInt8.self, repeating: 0, count: Int(frameSize))
        return address
    }

    func allocateContiguous(count: Int, alignment: UInt64) -> UInt64? {
        frames_lock()
        let taken = frameBitmap?.allocateContiguous(count: count, alignment: alignment)
        frames_unlock()
        guard let address = taken else { return nil }
        pointer(to: address).initializeMemory(as: UInt8.self, repeating: 0, count: count * Int(frameSize))
        return address
    }

    func freeFrame(_ address: UInt64) { freeContiguous(address, count: 1) }

    /// Frames are wiped when they come back, so a free frame never holds
    /// hypervisor data: RAM the hypervisor never used holds only what the
    /// firmware and boot loader left (see `allocateGuestMemory`).
    func freeContiguous(_ address: UInt64, count: Int) {
        if let bitmap = frameBitmap, address >= bitmap.base, address < bitmap.end {
            pointer(to: address).initializeMemory(as: UInt8.self, repeating: 0, count: count * Int(frameSize))
        }
        frames_lock()
        defer { frames_unlock() }
        do {
            try frameBitmap?.free(address, count: count)
        } catch {
            // A bad free is a hypervisor bug, never guest-reachable: report it loudly.
            logError("frame allocator: \(error.message) at \(hex: address) (\(count) frames)")
            powerOff(.hypervisorFailure)
        }
    }

    /// Guest RAM: contiguous frames NOT zeroed. Zeroing 256 MiB costs more
    /// than the rest of the boot; what matters is that the guest never sees
    /// hypervisor data, and free frames never hold any (they are wiped on
    /// free). The guest loader zeroes what it loads (BSS, boot structures).
    func allocateGuestMemory(count: Int, alignment: UInt64) -> UInt64? {
        frameBitmap?.allocateContiguous(count: count, alignment: alignment)
    }

    func pointer(to address: UInt64) -> UnsafeMutableRawPointer {
        // Identity map; physical page 0 is never handed out or mapped to a guest.
        UnsafeMutableRawPointer(bitPattern: UInt(address)).unsafelyUnwrapped
    }
}

/// Builds the frame bitmap from the boot memory map: usable RAM above 1 MiB
/// and below the identity-mapped limit, less the kernel, boot info and modules.
func initializeFrameAllocator(_ info: Multiboot2Info) throws(PhysicalMemoryMapError) -> PhysicalMemoryMap {
    var extra = PhysicalMemoryMap.ReservedRanges()
    try extra.append(PhysicalMemoryMap.Range(start: identityMappedEnd, end: UInt64.max))
    let kernel = PhysicalMemoryMap.Range(start: kernel_image_start(), end: kernel_image_end())
    var map = try PhysicalMemoryMap(info: info, kernelImage: kernel, extra: extra)
    let need = FrameBitmap.bytesNeeded(covering: map)
    guard let storage = map.takeFirstFit(byteCount: UInt64(need)) else { throw .noUsableMemory }
    frameBitmapStorage = storage..<(storage + UInt64(need))
    do {
        frameBitmap = try FrameBitmap(covering: map, storage: KernelFrames().pointer(to: storage), capacity: need)
    } catch {
        logError("frame bitmap: \(error.message)")
        throw .noUsableMemory
    }
    return map
}
