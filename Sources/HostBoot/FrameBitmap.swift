// The page-frame allocator's bookkeeping: one bit per 4 KiB frame over a
// physical range, in storage the caller provides (the kernel carves it out of
// usable RAM with `PhysicalMemoryMap.takeFirstFit`; tests pass host memory).
//
// Bit set = frame in use (or not RAM at all); bit clear = free. A new bitmap has
// every bit set; the usable regions are then marked free, so holes in the map
// and the bits past the last frame can never be handed out.
//
// The bitmap never touches the frames themselves: it does not zero them. The
// kernel's `FrameAllocator` conformance zeroes each frame through its
// physical-to-virtual mapping before returning it, as the protocol promises.

import X86Arch
import VMX
import X86VCPU

/// A misuse of the frame bitmap, with the address at fault.
public enum FrameBitmapError: Error, Equatable {
    /// The bitmap's base address is not 4 KiB aligned.
    case misalignedBase(UInt64)
    /// The bitmap would cover no frames, or its end would pass 2^64.
    case invalidRange
    /// The storage holds fewer bytes than `FrameBitmap.bytesNeeded(frames:)`.
    case storageTooSmall(needed: Int)
    /// The storage is not 8-byte aligned (the bitmap works in 64-bit words).
    case misalignedStorage
    /// A freed address that is not 4 KiB aligned.
    case misalignedAddress(UInt64)
    /// A freed run that starts or ends outside the bitmap's range.
    case outOfRange(UInt64)
    /// A freed frame that is already free (the first such frame of the run).
    case doubleFree(UInt64)
    /// A run length below 1.
    case invalidCount(Int)

    /// A one-line explanation for the panic report.
    public var message: StaticString {
        switch self {
        case .misalignedBase: "frame bitmap base not 4 KiB aligned"
        case .invalidRange: "frame bitmap range empty or past 2^64"
        case .storageTooSmall: "frame bitmap storage too small"
        case .misalignedStorage: "frame bitmap storage not 8-byte aligned"
        case .misalignedAddress: "freed frame address not 4 KiB aligned"
        case .outOfRange: "freed frame outside the frame bitmap"
        case .doubleFree: "frame freed twice"
        case .invalidCount: "frame run length below 1"
        }
    }
}

/// One bit per frame of `[base, base + frameCount * 4096)`.
///
/// A value type over borrowed storage: keep exactly one live copy (the kernel's
/// allocator), since two copies would share the bits but not the counters.
public struct FrameBitmap {
    /// Physical address of frame 0.
    public let base: UInt64
    /// Frames covered.
    public let frameCount: Int
    let words: UnsafeMutablePointer<UInt64>
    let wordCount: Int
    /// Frames currently free.
    public private(set) var freeFrames = 0
    /// Search hint: every word below `hint` is full, so searches start here.
    var hint: Int

    /// Bytes of storage a bitmap over `frames` frames needs (whole 64-bit words).
    public static func bytesNeeded(frames: Int) -> Int {
        frames <= 0 ? 0 : ((frames + 63) / 64) * 8
    }

    /// Bytes of storage a bitmap covering `range` needs (the range widened to
    /// whole frames).
    public static func bytesNeeded(covering range: PhysicalMemoryMap.Range) -> Int {
        guard !range.isEmpty else { return 0 }
        let first = range.start / frameSize
        let last = (range.end - 1) / frameSize
        return bytesNeeded(frames: Int(last - first + 1))
    }

    /// Bytes of storage a bitmap built by `init(covering:storage:capacity:)` needs.
    public static func bytesNeeded(covering map: PhysicalMemoryMap) -> Int {
        bytesNeeded(covering: map.span)
    }

    /// A bitmap with every frame in use; mark RAM free with `markFree`.
    /// `storage` must hold `capacity >= bytesNeeded(frames:)` bytes, 8-byte aligned.
    public init(
        base: UInt64, frameCount: Int, storage: UnsafeMutableRawPointer, capacity: Int
    ) throws(FrameBitmapError) {
        guard base % frameSize == 0 else { throw .misalignedBase(base) }
        guard frameCount > 0 else { throw .invalidRange }
        let (span, overflow) = UInt64(frameCount).multipliedReportingOverflow(by: frameSize)
        guard !overflow, !base.addingReportingOverflow(span).overflow else { throw .invalidRange }
        let needed = Self.bytesNeeded(frames: frameCount)
        guard capacity >= needed else { throw .storageTooSmall(needed: needed) }
        guard UInt(bitPattern: storage) % 8 == 0 else { throw .misalignedStorage }
        self.base = base
        self.frameCount = frameCount
        wordCount = needed / 8
        words = storage.bindMemory(to: UInt64.self, capacity: wordCount)
        words.initialize(repeating: ~0, count: wordCount)
        hint = wordCount
    }

    /// A bitmap spanning the map's usable ranges, lowest to highest, with exactly
    /// those ranges free. Carve `storage` out of the map first (`takeFirstFit`)
    /// so the bitmap cannot hand out its own frames.
    public init(
        covering map: PhysicalMemoryMap, storage: UnsafeMutableRawPointer, capacity: Int
    ) throws(FrameBitmapError) {
        let span = map.span
        try self.init(
            base: span.start, frameCount: Int(span.size / frameSize), storage: storage,
            capacity: capacity)
        map.forEach { markFree($0) }
    }

    /// One past the last covered byte.
    public var end: UInt64 { base + UInt64(frameCount) * frameSize }
    /// Frames currently in use (allocated, reserved, or not RAM).
    public var usedFrames: Int { frameCount - freeFrames }

    func isUsed(_ index: Int) -> Bool { words[index / 64] & (1 << UInt64(index % 64)) != 0 }
    func address(_ index: Int) -> UInt64 { base + UInt64(index) * frameSize }

    /// Sets (`used`) or clears the bits of frames `[from, to)`, a word at a time,
    /// keeping `freeFrames` equal to the number of clear bits below `frameCount`.
    mutating func setFrames(_ from: Int, _ to: Int, used: Bool) {
        var index = from
        while index < to {
            let word = index / 64
            let low = index % 64
            let high = min(64, low + (to - index))
            let mask: UInt64 = high - low == 64 ? ~0 : ((1 << UInt64(high - low)) - 1) << UInt64(low)
            let old = words[word]
            if used {
                freeFrames -= (~old & mask).nonzeroBitCount
                words[word] = old | mask
            } else {
                freeFrames += (old & mask).nonzeroBitCount
                words[word] = old & ~mask
            }
            index += high - low
        }
        if !used { hint = min(hint, from / 64) }
    }

    /// The frame indices of the whole frames inside `range`, clipped to the bitmap.
    func innerFrames(_ range: PhysicalMemoryMap.Range) -> (Int, Int)? {
        let start = max(range.start, base)
        let end = min(range.end, self.end)
        // `end` is at most the bitmap's frame-aligned end, so rounding `start` up
        // cannot overflow.
        guard start < end else { return nil }
        let first = (start + frameSize - 1) / frameSize
        let last = end / frameSize
        guard first < last else { return nil }
        return (Int(first - base / frameSize), Int(last - base / frameSize))
    }

    /// Marks every whole frame inside `range` free (parts outside the bitmap are
    /// ignored). Use it to hand RAM to the allocator, never to return allocations:
    /// `free` checks for double frees, this does not.
    public mutating func markFree(_ range: PhysicalMemoryMap.Range) {
        guard let (first, last) = innerFrames(range) else { return }
        setFrames(first, last, used: false)
    }

    /// Marks every frame that `range` touches in use (parts outside the bitmap are
    /// ignored): reserve memory after the bitmap is built.
    public mutating func markUsed(_ range: PhysicalMemoryMap.Range) {
        let start = max(range.start, base)
        let end = min(range.end, self.end)
        guard start < end else { return }
        let first = Int((start - base) / frameSize)
        let last = Int((end - base + frameSize - 1) / frameSize)
        setFrames(first, last, used: true)
    }

    /// The lowest free frame, now marked used; nil when none is left. Not zeroed.
    public mutating func allocate() -> UInt64? {
        var word = hint
        while word < wordCount {
            let bits = words[word]
            if bits != ~0 {
                let index = word * 64 + (~bits).trailingZeroBitCount
                hint = word
                setFrames(index, index + 1, used: true)
                return address(index)
            }
            word += 1
        }
        hint = wordCount
        return nil
    }

    /// The first frame index at or after `index` whose address is a multiple of
    /// `alignment` (a power of two), or `frameCount` when there is none.
    func alignedIndex(atOrAfter index: Int, alignment: UInt64) -> Int {
        guard index < frameCount else { return frameCount }
        let at = address(index)
        let (bumped, overflow) = at.addingReportingOverflow(alignment - 1)
        guard !overflow else { return frameCount }
        let aligned = bumped & ~(alignment - 1)
        guard aligned < end else { return frameCount }
        return Int((aligned - base) / frameSize)
    }

    /// The lowest run of `count` free frames whose first address is a multiple of
    /// `alignment` (a power of two, at least 4096), now marked used; nil when none
    /// fits or the arguments are invalid. Not zeroed.
    public mutating func allocateContiguous(count: Int, alignment: UInt64) -> UInt64? {
        guard count > 0, count <= frameCount, alignment >= frameSize,
              alignment.nonzeroBitCount == 1 else { return nil }
        var start = alignedIndex(atOrAfter: min(hint * 64, frameCount), alignment: alignment)
        while start <= frameCount - count {
            var probe = start
            let stop = start + count
            while probe < stop {
                if probe % 64 == 0, stop - probe >= 64, words[probe / 64] == 0 {
                    probe += 64 // a whole free word
                } else if isUsed(probe) {
                    break
                } else {
                    probe += 1
                }
            }
            if probe == stop {
                setFrames(start, stop, used: true)
                return address(start)
            }
            start = alignedIndex(atOrAfter: probe + 1, alignment: alignment)
        }
        return nil
    }

    /// Returns one frame obtained from `allocate`.
    public mutating func free(_ address: UInt64) throws(FrameBitmapError) {
        try free(address, count: 1)
    }

    /// Returns a run of `count` frames starting at `address`. Checks the whole run
    /// before changing anything, so a bad call leaves the bitmap as it was.
    public mutating func free(_ address: UInt64, count: Int) throws(FrameBitmapError) {
        guard count > 0 else { throw .invalidCount(count) }
        guard address % frameSize == 0 else { throw .misalignedAddress(address) }
        guard address >= base, address < end else { throw .outOfRange(address) }
        let first = Int((address - base) / frameSize)
        guard count <= frameCount - first else { throw .outOfRange(address) }
        var index = first
        while index < first + count {
            guard isUsed(index) else { throw .doubleFree(self.address(index)) }
            index += 1
        }
        setFrames(first, first + count, used: false)
    }

    /// Whether the frame at `address` is free; nil when `address` is outside the
    /// bitmap. Any address inside a frame answers for that frame.
    public func isFree(_ address: UInt64) -> Bool? {
        guard address >= base, address < end else { return nil }
        return !isUsed(Int((address - base) / frameSize))
    }
}
