import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

/// Runs `body` with `bytes` of 8-byte aligned host memory (pre-filled with junk,
/// since the bitmap must not rely on zeroed storage), offset by `shift`.
@discardableResult
func withStorage<R>(_ bytes: Int, shift: Int = 0, _ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
    let memory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1) + shift, alignment: 64)
    defer { memory.deallocate() }
    memory.initializeMemory(as: UInt8.self, repeating: 0x3C, count: max(bytes, 1) + shift)
    return try body(memory + shift)
}

/// A bitmap over `frames` frames at `base` with `free` marked free.
func withBitmap<R>(
    base: UInt64 = 0x10_0000, frames: Int, free: [PRange], _ body: (inout FrameBitmap) throws -> R
) throws -> R {
    let bytes = FrameBitmap.bytesNeeded(frames: frames)
    return try withStorage(bytes) { storage in
        var bitmap = try FrameBitmap(base: base, frameCount: frames, storage: storage, capacity: bytes)
        for range in free { bitmap.markFree(range) }
        return try body(&bitmap)
    }
}

@Suite struct FrameBitmapTests {
    @Test func bytesNeededRoundsToWholeWords() {
        #expect(FrameBitmap.bytesNeeded(frames: 0) == 0)
        #expect(FrameBitmap.bytesNeeded(frames: -3) == 0)
        #expect(FrameBitmap.bytesNeeded(frames: 1) == 8)
        #expect(FrameBitmap.bytesNeeded(frames: 64) == 8)
        #expect(FrameBitmap.bytesNeeded(frames: 65) == 16)
        #expect(FrameBitmap.bytesNeeded(frames: 32768) == 4096) // 128 MiB of RAM in one page
        // An unaligned range touching 2 frames; an empty one needs nothing.
        #expect(FrameBitmap.bytesNeeded(covering: PRange(start: 0x1FFF, end: 0x2001)) == 8)
        #expect(FrameBitmap.bytesNeeded(covering: PRange(start: 0x1000, end: 0x1000 + 65 * 4096)) == 16)
        #expect(FrameBitmap.bytesNeeded(covering: PRange(start: 0x2000, end: 0x2000)) == 0)
    }

    @Test func initRejectsBadGeometryAndStorage() {
        withStorage(64) { storage in
            #expect(throws: FrameBitmapError.misalignedBase(0x1800)) {
                _ = try FrameBitmap(base: 0x1800, frameCount: 8, storage: storage, capacity: 64)
            }
            #expect(throws: FrameBitmapError.invalidRange) {
                _ = try FrameBitmap(base: 0x1000, frameCount: 0, storage: storage, capacity: 64)
            }
            #expect(throws: FrameBitmapError.invalidRange) {
                _ = try FrameBitmap(base: UInt64.max & ~0xFFF, frameCount: 2, storage: storage, capacity: 64)
            }
            #expect(throws: FrameBitmapError.invalidRange) {
                _ = try FrameBitmap(base: 0, frameCount: Int.max, storage: storage, capacity: 64)
            }
            #expect(throws: FrameBitmapError.storageTooSmall(needed: 16)) {
                _ = try FrameBitmap(base: 0, frameCount: 65, storage: storage, capacity: 8)
            }
        }
        withStorage(16, shift: 4) { storage in
            #expect(throws: FrameBitmapError.misalignedStorage) {
                _ = try FrameBitmap(base: 0, frameCount: 8, storage: storage, capacity: 16)
            }
        }
    }

    @Test func aNewBitmapHasEverythingInUse() throws {
        try withBitmap(frames: 100, free: []) { bitmap in
            #expect(bitmap.freeFrames == 0 && bitmap.usedFrames == 100)
            #expect(bitmap.end == 0x10_0000 + 100 * 4096)
            #expect(bitmap.allocate() == nil)
            #expect(bitmap.allocateContiguous(count: 1, alignment: 4096) == nil)
            #expect(bitmap.isFree(0x10_0000) == false)
        }
    }

    @Test func allocateHandsOutTheLowestFreeFrameAndReusesFreedOnes() throws {
        try withBitmap(frames: 200, free: [PRange(start: 0x10_3000, end: 0x10_6000),
                                           PRange(start: 0x15_0000, end: 0x15_2000)]) { bitmap in
            #expect(bitmap.freeFrames == 5)
            #expect(bitmap.allocate() == 0x10_3000)
            #expect(bitmap.allocate() == 0x10_4000)
            #expect(bitmap.allocate() == 0x10_5000)
            #expect(bitmap.allocate() == 0x15_0000) // crosses into the next 64-frame word
            #expect(bitmap.freeFrames == 1 && bitmap.usedFrames == 199)
            try bitmap.free(0x10_4000)
            #expect(bitmap.isFree(0x10_4ABC) == true)
            #expect(bitmap.allocate() == 0x10_4000) // the freed frame is lowest again
            #expect(bitmap.allocate() == 0x15_1000)
            #expect(bitmap.allocate() == nil)
            #expect(bitmap.allocate() == nil)
            #expect(bitmap.freeFrames == 0)
            try bitmap.free(0x15_1000)
            #expect(bitmap.allocate() == 0x15_1000) // found again after the bitmap was exhausted
        }
    }

    @Test func markFreeTakesWholeFramesOnlyAndIsIdempotent() throws {
        try withBitmap(frames: 16, free: []) { bitmap in
            bitmap.markFree(PRange(start: 0x10_0800, end: 0x10_3800)) // frames 1 and 2 only
            #expect(bitmap.freeFrames == 2)
            #expect(bitmap.isFree(0x10_0000) == false && bitmap.isFree(0x10_1000) == true)
            #expect(bitmap.isFree(0x10_3000) == false)
            bitmap.markFree(PRange(start: 0x10_0000, end: 0x10_3000)) // frame 0 new, 1-2 already free
            #expect(bitmap.freeFrames == 3)
            bitmap.markFree(PRange(start: 0x0, end: 0x10_1000)) // starts below the bitmap
            bitmap.markFree(PRange(start: 0x10_F000, end: 0x20_0000)) // runs past the end
            #expect(bitmap.freeFrames == 4 && bitmap.isFree(0x10_F000) == true)
            bitmap.markFree(PRange(start: 0x20_0000, end: 0x30_0000)) // entirely outside
            bitmap.markFree(PRange(start: 0x10_5800, end: 0x10_5C00)) // inside one frame
            bitmap.markFree(PRange(start: UInt64.max - 0x10, end: UInt64.max))
            #expect(bitmap.freeFrames == 4)
        }
    }

    @Test func markUsedTakesEveryTouchedFrame() throws {
        try withBitmap(frames: 16, free: [PRange(start: 0x10_0000, end: 0x11_0000)]) { bitmap in
            #expect(bitmap.freeFrames == 16)
            bitmap.markUsed(PRange(start: 0x10_1FFF, end: 0x10_2001)) // touches frames 1 and 2
            #expect(bitmap.freeFrames == 14)
            #expect(bitmap.isFree(0x10_1000) == false && bitmap.isFree(0x10_2000) == false)
            bitmap.markUsed(PRange(start: 0x10_1000, end: 0x10_3000)) // already used: no change
            #expect(bitmap.freeFrames == 14)
            bitmap.markUsed(PRange(start: 0x0, end: 0x10_1000)) // clipped to frame 0
            bitmap.markUsed(PRange(start: 0x10_F800, end: 0x40_0000)) // clipped to frame 15
            bitmap.markUsed(PRange(start: 0x50_0000, end: 0x60_0000)) // outside
            #expect(bitmap.freeFrames == 12)
            #expect(bitmap.allocate() == 0x10_3000)
        }
    }

    @Test func freeRejectsMisuseWithoutChangingAnything() throws {
        try withBitmap(frames: 128, free: [PRange(start: 0x10_0000, end: 0x18_0000)]) { bitmap in
            let first = bitmap.allocateContiguous(count: 4, alignment: 4096)
            let a = try #require(first)
            #expect(a == 0x10_0000)
            #expect(throws: FrameBitmapError.misalignedAddress(0x10_0010)) { try bitmap.free(0x10_0010) }
            #expect(throws: FrameBitmapError.outOfRange(0xF_F000)) { try bitmap.free(0xF_F000) }
            #expect(throws: FrameBitmapError.outOfRange(0x18_0000)) { try bitmap.free(0x18_0000) }
            #expect(throws: FrameBitmapError.outOfRange(0x17_F000)) { try bitmap.free(0x17_F000, count: 2) }
            #expect(throws: FrameBitmapError.invalidCount(0)) { try bitmap.free(a, count: 0) }
            // Freeing 5 frames when only 4 were allocated: the 5th is already free.
            #expect(throws: FrameBitmapError.doubleFree(0x10_4000)) { try bitmap.free(a, count: 5) }
            #expect(bitmap.freeFrames == 124) // nothing was freed by the failed call
            try bitmap.free(a, count: 4)
            #expect(bitmap.freeFrames == 128)
            #expect(throws: FrameBitmapError.doubleFree(0x10_0000)) { try bitmap.free(a) }
        }
    }

    @Test func contiguousRunsHonourAlignmentAndSkipUsedFrames() throws {
        // Base 0x10_1000 is not 8 KiB or 2 MiB aligned; 1024 frames = 4 MiB.
        try withBitmap(base: 0x10_1000, frames: 1024, free: [PRange(start: 0, end: 0x100_0000)]) { bitmap in
            #expect(bitmap.allocateContiguous(count: 1, alignment: 0x2000) == 0x10_2000)
            #expect(bitmap.allocate() == 0x10_1000)
            // Frame 0x10_3000 is free but the next 8 KiB-aligned pair starts at 0x10_4000.
            bitmap.markUsed(PRange(start: 0x10_5000, end: 0x10_6000))
            #expect(bitmap.allocateContiguous(count: 2, alignment: 0x2000) == 0x10_6000)
            #expect(bitmap.allocateContiguous(count: 3, alignment: 4096) == 0x10_8000)
            #expect(bitmap.allocate() == 0x10_3000)
            // A 2 MiB aligned run of 300 frames: the first 2 MiB boundary is 0x20_0000.
            #expect(bitmap.allocateContiguous(count: 300, alignment: 0x20_0000) == 0x20_0000)
            #expect(bitmap.isFree(0x20_0000 + 299 * 4096) == false && bitmap.isFree(0x20_0000 + 300 * 4096) == true)
            // No second 2 MiB boundary has 300 free frames before the end (0x50_1000).
            #expect(bitmap.allocateContiguous(count: 300, alignment: 0x20_0000) == nil)
            // Invalid requests.
            #expect(bitmap.allocateContiguous(count: 0, alignment: 4096) == nil)
            #expect(bitmap.allocateContiguous(count: 1025, alignment: 4096) == nil)
            #expect(bitmap.allocateContiguous(count: 1, alignment: 0) == nil)
            #expect(bitmap.allocateContiguous(count: 1, alignment: 2048) == nil)
            #expect(bitmap.allocateContiguous(count: 1, alignment: 0x3000) == nil)
            #expect(bitmap.allocateContiguous(count: 1, alignment: 1 << 63) == nil)
            let free = bitmap.freeFrames
            // A long run across several whole free words.
            let allocated = bitmap.allocateContiguous(count: 200, alignment: 4096)
            let run = try #require(allocated)
            #expect(run == 0x10_B000) // frames 10... are the first 200 free in a row
            #expect(bitmap.freeFrames == free - 200)
        }
    }

    @Test func contiguousRunAtTheVeryEnd() throws {
        try withBitmap(frames: 70, free: [PRange(start: 0x10_0000 + 60 * 4096, end: 0x10_0000 + 70 * 4096)]) { bitmap in
            #expect(bitmap.allocateContiguous(count: 10, alignment: 4096) == 0x10_0000 + 60 * 4096)
            #expect(bitmap.freeFrames == 0)
            try bitmap.free(0x10_0000 + 69 * 4096)
            #expect(bitmap.allocateContiguous(count: 2, alignment: 4096) == nil)
            #expect(bitmap.allocateContiguous(count: 1, alignment: 4096) == 0x10_0000 + 69 * 4096)
        }
    }

    @Test func isFreeIsNilOutsideTheBitmap() throws {
        try withBitmap(frames: 4, free: []) { bitmap in
            #expect(bitmap.isFree(0xF_FFFF) == nil)
            #expect(bitmap.isFree(0x10_4000) == nil)
            #expect(bitmap.isFree(0x10_3FFF) == false)
        }
    }

    @Test func kernelFlowBuildsTheBitmapFromTheMemoryMap() throws {
        // The kernel's sequence: map -> carve the bitmap's storage -> bitmap.
        let image = mapImage(qemuMap + [(0x1_0000_0000, 0x10_0000, 1)], modules: [(0x20_0000, 0x30_0000)])
        try withInfo(image, at: 0x9_0000) { info in
            var map = try PhysicalMemoryMap(info: info, kernelImage: PRange(start: 0x10_0000, end: 0x18_0000))
            let needed = FrameBitmap.bytesNeeded(covering: map)
            // Frames 0x18_0000 .. 0x1_0010_0000: (4 GiB + 1 MiB - 1.5 MiB) / 4 KiB bits.
            #expect(needed == ((0x1_0010_0000 - 0x18_0000) / 4096 + 63) / 64 * 8)
            let carved = map.takeFirstFit(byteCount: UInt64(needed))
            let storageAddress = try #require(carved)
            #expect(storageAddress == 0x18_0000)
            try withStorage(needed) { storage in
                var bitmap = try FrameBitmap(covering: map, storage: storage, capacity: needed)
                #expect(bitmap.base == map.lowestUsableAddress)
                #expect(UInt64(bitmap.freeFrames) * 4096 == map.usableBytes)
                #expect(bitmap.isFree(storageAddress) == nil || bitmap.isFree(storageAddress) == false)
                // Drain it: every frame handed out is inside a usable range, once.
                var seen = Set<UInt64>()
                while let frame = bitmap.allocate() {
                    var inside = false
                    map.forEach { if $0.contains(frame) { inside = true } }
                    #expect(inside)
                    #expect(seen.insert(frame).inserted)
                }
                #expect(UInt64(seen.count) * 4096 == map.usableBytes)
                #expect(bitmap.freeFrames == 0 && bitmap.usedFrames == bitmap.frameCount)
                // The hole between 128 MiB and 4 GiB was never free.
                #expect(bitmap.isFree(0x8000_0000) == false)
            }
        }
    }

    @Test func coveringAnEmptyMapIsAnError() throws {
        var map = try usableMap([(0x10_0000, 0x1000, 1)])
        _ = map.takeFirstFit(byteCount: 0x1000)
        withStorage(8) { storage in
            #expect(throws: FrameBitmapError.invalidRange) {
                _ = try FrameBitmap(covering: map, storage: storage, capacity: 8)
            }
        }
    }

    @Test func everyErrorHasItsOwnMessage() {
        let errors: [FrameBitmapError] = [
            .misalignedBase(0), .invalidRange, .storageTooSmall(needed: 0), .misalignedStorage,
            .misalignedAddress(0), .outOfRange(0), .doubleFree(0), .invalidCount(0),
        ]
        let messages = errors.map { $0.message.description }
        #expect(Set(messages).count == errors.count && messages.allSatisfy { !$0.isEmpty })
    }
}
