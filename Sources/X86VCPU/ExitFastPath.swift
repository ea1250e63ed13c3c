// The state the assembly exit path (Boot/vmx.asm, `vmx_exit_entry`) shares
// with the vCPU. Two exits are handled there without saving the guest's
// registers or returning to Swift: the null hypercall, and CPUID for a
// (leaf, subleaf) whose answer the Swift handler has already computed.
// I/O, RDMSR, WRMSR and preemption-timer exits go to the quick handler (QuickExits.swift)
// without returning from `vmx_run`. Everything else, and every case the
// fast path is unsure of (blocking by STI or MOV SS, RFLAGS.TF, CPL > 0, a
// cache miss, a failed VMREAD), takes the full path.
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
    /// The exit reason the assembly handed to the quick handler.
    public var quickReason: UInt32
    /// How the quick handler's exit ended, when it came back to `VCPU.run`
    /// (a `QuickExit`); 0 for any other exit.
    public var quickState: UInt32
    /// Quick exits that resumed the guest without returning to `VCPU.run`.
    public var ioCount: UInt64
    public var rdmsrCount: UInt64
    public var wrmsrCount: UInt64
    /// The vCPU and platform `VCPU.run` entered the guest with, for the quick handler.
    public var vcpu: UnsafeMutableRawPointer?
    public var platform: UnsafeMutableRawPointer?
    /// Preemption-timer exits the quick handler resumed from.
    public var timerCount: UInt64
    /// The preemption timer's deadline in host TSC, rounded up to its unit;
    /// 0: none. The assembly writes the timer's value from it before every
    /// entry (`VCPU.armPreemptionTimer`).
    public var timerDeadline: UInt64
    /// The timer's unit: TSC >> this (IA32_VMX_MISC bits 4:0).
    public var timerShift: UInt32
}

/// A view of an `ExitFastPathBlock`: a pointer, so reading the 2 KiB cache
/// never copies it and no method needs `mutating`.
public struct ExitFastPath {
    /// The block, for the assembly (`vmx_run`'s third argument).
    public let block: UnsafeMutableRawPointer

    public enum Kind: UInt64, Sendable {
        case nullHypercall = 1
        case cpuid = 2
        /// I/O, RDMSR, WRMSR and preemption-timer exits through `VCPU.quickExit`.
        case quick = 4
    }
    public static let allKinds = Kind.nullHypercall.rawValue | Kind.cpuid.rawValue
    public static let cacheEntries = 64

    /// A view of `memory`, which must be zeroed and hold an `ExitFastPathBlock`
    /// (a zeroed frame does: the block is smaller than a frame).
    public init(zeroed memory: UnsafeMutableRawPointer) {
        assert(MemoryLayout<ExitFastPathBlock>.size <= Int(frameSize))
        block = memory
    }

    /// A view of a block in use (the trampoline's pointer to it).
    public init(existing block: UnsafeMutableRawPointer) { self.block = block }

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
    /// See `ExitFastPathBlock.timerDeadline`.
    public var timerDeadline: UInt64 {
        get { typed.pointee.timerDeadline }
        nonmutating set { typed.pointee.timerDeadline = newValue }
    }
    public var timerShift: UInt32 {
        get { typed.pointee.timerShift }
        nonmutating set { typed.pointee.timerShift = newValue }
    }

    /// The VMX-preemption timer's value for an entry at host TSC `now`, as the
    /// assembly computes it (ARM_PREEMPTION); nil when no deadline is set.
    public func preemptionTimerValue(at now: UInt64) -> UInt32? {
        let deadline = timerDeadline
        guard deadline != 0 else { return nil }
        return UInt32(clamping: (deadline > now ? deadline - now : 0) >> UInt64(timerShift))
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
    /// A quick exit counts under its reason (`quickReason`).
    public func countHandled(_ kind: Kind) {
        switch kind {
        case .nullHypercall: typed.pointee.vmcallCount &+= 1
        case .cpuid: typed.pointee.cpuidCount &+= 1
        case .quick:
            switch ExitReason(rawValue: UInt16(truncatingIfNeeded: typed.pointee.quickReason)) {
            case .ioInstruction: typed.pointee.ioCount &+= 1
            case .rdmsr: typed.pointee.rdmsrCount &+= 1
            case .wrmsr: typed.pointee.wrmsrCount &+= 1
            case .preemptionTimerExpired: typed.pointee.timerCount &+= 1
            default: break
            }
        }
    }

    /// Takes the exits counted since the last call, into `statistics`.
    func takeCounts(into statistics: inout ExitStatistics) {
        let p = typed
        statistics.recordFast(.vmcall, count: p.pointee.vmcallCount)
        statistics.recordFast(.cpuid, count: p.pointee.cpuidCount)
        statistics.recordFast(.ioInstruction, count: p.pointee.ioCount)
        statistics.recordFast(.rdmsr, count: p.pointee.rdmsrCount)
        statistics.recordFast(.wrmsr, count: p.pointee.wrmsrCount)
        statistics.recordFast(.preemptionTimerExpired, count: p.pointee.timerCount)
        p.pointee.vmcallCount = 0; p.pointee.cpuidCount = 0
        p.pointee.ioCount = 0; p.pointee.rdmsrCount = 0; p.pointee.wrmsrCount = 0; p.pointee.timerCount = 0
    }

    // MARK: The quick handler's side

    /// The reason the assembly handed to the quick handler.
    public var quickReason: UInt32 {
        get { typed.pointee.quickReason }
        nonmutating set { typed.pointee.quickReason = newValue }
    }

    /// How the last exit's quick handling ended (`QuickExit`), for `VCPU.run`; 0 after any other exit.
    public var quickState: UInt32 {
        get { typed.pointee.quickState }
        nonmutating set { typed.pointee.quickState = newValue }
    }

    /// Takes `quickState`, leaving 0.
    func takeQuickState() -> QuickExit {
        let p = typed
        defer { p.pointee.quickState = 0 }
        return QuickExit(rawValue: p.pointee.quickState) ?? .declined
    }

    func setContext(vcpu: UnsafeMutableRawPointer, platform: UnsafeMutableRawPointer) {
        typed.pointee.vcpu = vcpu
        typed.pointee.platform = platform
    }

    func clearContext() {
        typed.pointee.vcpu = nil
        typed.pointee.platform = nil
    }

    /// The trampoline's Swift half: hands the exit in `quickReason` to the
    /// vCPU and platform `VCPU.run` entered the guest with. The caller names
    /// their types; they must be the ones `run` was called with (the kernel
    /// has one of each), which is why `VCPU.quickExits` is the kernel's to set.
    @inline(__always)
    public func quickExit<F: FrameAllocator, H: VMXHardware, P: GuestPlatform>(
        _ hw: H, vcpu: VCPU<F>.Type, platform: P.Type) -> QuickExit {
        // Set together (`setContext`): one test for both.
        guard let v = typed.pointee.vcpu else { return .declined }
        return v.assumingMemoryBound(to: VCPU<F>.self).pointee
            .quickExit(quickReason, hw, &typed.pointee.platform.unsafelyUnwrapped.assumingMemoryBound(to: P.self).pointee)
    }

    /// The same for a preemption-timer exit (the assembly calls its own
    /// Swift half for these, so neither half tests the reason again).
    @inline(__always)
    public func quickTimerExit<F: FrameAllocator, H: VMXHardware, P: GuestPlatform>(
        _ hw: H, vcpu: VCPU<F>.Type, platform: P.Type) -> QuickExit {
        guard let v = typed.pointee.vcpu else { return .declined }
        return v.assumingMemoryBound(to: VCPU<F>.self).pointee
            .quickTimerExit(hw, &typed.pointee.platform.unsafelyUnwrapped.assumingMemoryBound(to: P.self).pointee)
    }
}
