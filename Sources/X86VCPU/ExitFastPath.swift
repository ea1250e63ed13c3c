// The state the assembly exit path (Boot/vmx.asm, `vmx_exit_entry`) shares
// with the vCPU. Two exits are handled there without saving the guest's
// registers or returning to Swift: the null hypercall, and CPUID for a
// (leaf, subleaf) whose answer the Swift handler has already computed.
// Everything else, and every case the fast path is unsure of (blocking by
// STI or MOV SS, CPL > 0, a cache miss, a failed VMREAD), takes the full path.
//
// The block lives in a frame the vCPU owns and is read by the assembly: a
// host test checks every offset against the `equ` constants in Boot/vmx.asm.

import X86Arch
import VMX

/// One cached CPUID answer: 32 bytes.
public struct CPUIDCacheEntry: Equatable, Sendable {
    /// Nonzero when the entry holds an answer (a zeroed entry must never match).
    public internal(set) var valid: UInt32 = 0
    public internal(set) var leaf: UInt32 = 0
    /// All ones when the leaf has subleaves (ECX selects), else 0.
    public internal(set) var subleafMask: UInt32 = 0
    /// The subleaf, already masked.
    public internal(set) var subleaf: UInt32 = 0
    public internal(set) var eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0

    public init() {}
}

/// The block the assembly reads and writes, in a frame the vCPU owns.
@frozen
public struct ExitFastPathBlock {
    /// Which exits the assembly may handle this entry (bits of `ExitFastPath.Kind`).
    public var enabled: UInt64
    public var vmcallCount: UInt64
    public var cpuidCount: UInt64
    /// Direct-mapped by `ExitFastPath.slot(leaf:)`.
    public var cpuidCache: InlineArray<64, CPUIDCacheEntry>
}

/// A view of an `ExitFastPathBlock`: a pointer, so reading the 2 KiB cache
/// never copies it and no method needs `mutating`.
public struct ExitFastPath {
    /// The block, for the assembly (`vmx_run`'s third argument).
    public let block: UnsafeMutableRawPointer

    public enum Kind: UInt64, Sendable {
        case nullHypercall = 1
        case cpuid = 2
    }
    public static let allKinds = Kind.nullHypercall.rawValue | Kind.cpuid.rawValue
    public static let cacheEntries = 64

    /// A view of `memory`, which must be zeroed and hold an `ExitFastPathBlock`
    /// (a zeroed frame does: the block is smaller than a frame).
    public init(zeroed memory: UnsafeMutableRawPointer) {
        assert(MemoryLayout<ExitFastPathBlock>.size <= Int(frameSize))
        block = memory
    }

    @inline(__always)
    var typed: UnsafeMutablePointer<ExitFastPathBlock> { block.assumingMemoryBound(to: ExitFastPathBlock.self) }

    /// One cache entry, addressed in place (the cache is never copied).
    @inline(__always)
    func entry(_ slot: Int) -> UnsafeMutablePointer<CPUIDCacheEntry> {
        withUnsafeMutablePointer(to: &typed.pointee.cpuidCache) {
            UnsafeMutableRawPointer($0).assumingMemoryBound(to: CPUIDCacheEntry.self) + slot
        }
    }

    /// Which exits the assembly may handle this entry (bits of `Kind`).
    public var enabled: UInt64 {
        get { typed.pointee.enabled }
        nonmutating set { typed.pointee.enabled = newValue }
    }
    public var vmcallCount: UInt64 { typed.pointee.vmcallCount }
    public var cpuidCount: UInt64 { typed.pointee.cpuidCount }

    /// Basic leaves 0...0xF, hypervisor leaves 0x4000_0000...F and extended
    /// leaves 0x8000_0000...F each get their own slot; others share them.
    public static func slot(leaf: UInt32) -> Int {
        Int(leaf & 0xF | (leaf >> 26) & 0x30)
    }

    /// Leaves whose answer ignores ECX. Any other leaf is cached per subleaf,
    /// which is always correct, only less often hit.
    public static func ignoresSubleaf(_ leaf: UInt32) -> Bool {
        switch leaf {
        case 0, 1, 2, 3, 5, 6, 0xA, 0x16, CPUIDLeaf.hypervisorBase ... CPUIDLeaf.hypervisorLast,
             CPUIDLeaf.extendedBase ... CPUIDLeaf.addressSizes: true
        default: false
        }
    }

    /// Records what the policy answered, for the assembly to repeat.
    public func store(leaf: UInt32, subleaf: UInt32, _ values: CPUIDResult) {
        let mask: UInt32 = Self.ignoresSubleaf(leaf) ? 0 : ~0
        var e = CPUIDCacheEntry()
        e.valid = 1; e.leaf = leaf; e.subleafMask = mask; e.subleaf = subleaf & mask
        e.eax = values.eax; e.ebx = values.ebx; e.ecx = values.ecx; e.edx = values.edx
        entry(Self.slot(leaf: leaf)).pointee = e
    }

    /// The cached answer, as the assembly finds it (nil on a miss).
    public func cached(leaf: UInt32, subleaf: UInt32) -> CPUIDResult? {
        let e = entry(Self.slot(leaf: leaf)).pointee
        guard e.valid != 0, e.leaf == leaf, subleaf & e.subleafMask == e.subleaf else { return nil }
        return CPUIDResult(eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
    }

    /// Forgets every answer: the guest state some CPUID bits mirror changed
    /// (CR4.OSXSAVE/PKE, XCR0, IA32_XSS, IA32_APIC_BASE) or may have.
    public func invalidateCPUID() {
        for i in 0 ..< Self.cacheEntries { entry(i).pointee.valid = 0 }
    }

    /// Counts one exit of `kind` handled without returning to `VCPU.run`:
    /// what the assembly does, for any other implementation of the seam.
    public func countHandled(_ kind: Kind) {
        switch kind {
        case .nullHypercall: typed.pointee.vmcallCount &+= 1
        case .cpuid: typed.pointee.cpuidCount &+= 1
        }
    }

    /// Takes the exits counted since the last call.
    func takeCounts() -> (vmcall: UInt64, cpuid: UInt64) {
        let p = typed
        defer { p.pointee.vmcallCount = 0; p.pointee.cpuidCount = 0 }
        return (p.pointee.vmcallCount, p.pointee.cpuidCount)
    }
}
