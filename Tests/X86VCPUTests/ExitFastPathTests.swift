import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// The CPUID cache the assembly fast path answers from, and how the vCPU
// fills it, invalidates it and enables the fast path.
@Suite struct ExitFastPathTests {
    let answer = CPUIDResult(eax: 1, ebx: 2, ecx: 3, edx: 4)

    /// A zeroed block the size of a frame (left allocated: tests are short-lived).
    static func freshFastPath() -> ExitFastPath {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        return ExitFastPath(zeroed: memory)
    }

    @Test func basicHypervisorAndExtendedLeavesEachGetTheirOwnSlot() {
        var slots = Set<Int>()
        for base: UInt32 in [0, 0x4000_0000, 0x8000_0000, 0xC000_0000] {
            for i: UInt32 in 0 ..< 16 { slots.insert(ExitFastPath.slot(leaf: base + i)) }
        }
        #expect(slots.count == 64)
        #expect(slots.allSatisfy { $0 >= 0 && $0 < 64 })
    }

    @Test func anEmptyCacheAnswersNothingNotEvenLeafZero() {
        let fast = Self.freshFastPath()
        #expect(fast.cached(leaf: 0, subleaf: 0) == nil)
        #expect(fast.cached(leaf: 0xFFFF_FFFF, subleaf: 0) == nil)
    }

    @Test func aLeafWithSubleavesIsCachedPerSubleaf() {
        let fast = Self.freshFastPath()
        fast.store(leaf: 7, subleaf: 0, answer)
        #expect(fast.cached(leaf: 7, subleaf: 0) == answer)
        #expect(fast.cached(leaf: 7, subleaf: 1) == nil)
    }

    @Test func aLeafWithoutSubleavesIgnoresECX() {
        let fast = Self.freshFastPath()
        fast.store(leaf: 1, subleaf: 0x1234, answer)
        #expect(fast.cached(leaf: 1, subleaf: 0) == answer)
        #expect(fast.cached(leaf: 1, subleaf: 0xFFFF_FFFF) == answer)
        #expect(fast.cached(leaf: 0x11, subleaf: 0) == nil)  // the same slot, another leaf
    }

    @Test func invalidationForgetsEveryAnswer() {
        let fast = Self.freshFastPath()
        fast.store(leaf: 0, subleaf: 0, answer)
        fast.store(leaf: 0x8000_0001, subleaf: 0, answer)
        fast.invalidateCPUID()
        #expect(fast.cached(leaf: 0, subleaf: 0) == nil)
        #expect(fast.cached(leaf: 0x8000_0001, subleaf: 0) == nil)
    }

    // MARK: - Through the vCPU

    @Test func aCPUIDExitCachesWhatTheGuestGotAndARepeatIsNotRecomputed() throws {
        var rig = try VCPURig()
        let before = rig.hw.cpuidQueries
        _ = rig.run([.cpuid(leaf: 1), .cpuid(leaf: 1)])
        let r = rig.vcpu.registers
        let got = CPUIDResult(eax: UInt32(r.rax), ebx: UInt32(r.rbx), ecx: UInt32(r.rcx), edx: UInt32(r.rdx))
        #expect(rig.vcpu.cachedCPUID(leaf: 1) == got)
        #expect(rig.hw.cpuidQueries - before == 1)
    }

    @Test func theGuestsCR4OSXSAVEAndPKEChangesExit() throws {
        let rig = try VCPURig()
        let mask = rig.field(VMCSFields.ControlNatural.cr4GuestHostMask)
        #expect(mask & CR4Bits.osxsave.rawValue != 0)
        #expect(mask & CR4Bits.pke.rawValue != 0)
        #expect(mask & CR4Bits.pge.rawValue == 0)  // Linux toggles PGE to flush the TLB: no exit
    }

    @Test func settingCR4OSXSAVEChangesLeaf1EvenAfterItWasCached() throws {
        var rig = try VCPURig()
        var osxsave: [Bool] = []
        let note: (inout GeneralRegisters, FakeVMCS) -> Void = { r, _ in osxsave.append(r.rcx & (1 << 27) != 0) }
        _ = rig.run([.cpuid(leaf: 1), .movToCR(4, CR4Bits.osxsave.rawValue).then(note), .cpuid(leaf: 1)])
        osxsave.append(rig.vcpu.registers.rcx & (1 << 27) != 0)
        #expect(osxsave == [false, true])
    }

    @Test func xsetbvChangesLeafDEvenAfterItWasCached() throws {
        var rig = try VCPURig()
        var sizes: [UInt64] = []
        let note: (inout GeneralRegisters, FakeVMCS) -> Void = { r, _ in sizes.append(r.rbx) }
        _ = rig.run([.cpuid(leaf: 0xD), .xsetbv(0x7).then(note), .cpuid(leaf: 0xD)])
        sizes.append(rig.vcpu.registers.rbx)
        #expect(sizes.count == 2 && sizes[0] < sizes[1])  // x87 only, then with AVX state
    }

    @Test func disablingTheAPICChangesLeaf1EvenAfterItWasCached() throws {
        var rig = try VCPURig()
        var apic: [Bool] = []
        let note: (inout GeneralRegisters, FakeVMCS) -> Void = { r, _ in apic.append(r.rdx & (1 << 9) != 0) }
        // WRMSR's own EDX would hide CPUID's: look between the two.
        _ = rig.run([.cpuid(leaf: 1), .vmcall(Hypercall.null.rawValue).then(note),
                     .wrmsr(MSR.ia32APICBase.address, 0xFEE0_0100), .cpuid(leaf: 1)])
        apic.append(rig.vcpu.registers.rdx & (1 << 9) != 0)
        #expect(apic == [true, false])
    }

    @Test func anUnrelatedWRMSRKeepsTheCache() throws {
        var rig = try VCPURig()
        _ = rig.run([.cpuid(leaf: 0), .wrmsr(MSR.ia32TimeStampCounter.address, 5)])
        #expect(rig.vcpu.cachedCPUID(leaf: 0) != nil)
    }

    @Test func theFastPathIsEnabledOnlyWithNoTimerAndNoEventsWaiting() throws {
        var rig = try VCPURig()
        _ = rig.run([.vmcall(Hypercall.null.rawValue), .vmcall(Hypercall.armTimer.rawValue, rbx: 0x40, rcx: 5000)])
        #expect(rig.entries.map(\.fastPathEnabled) == [ExitFastPath.allKinds, ExitFastPath.allKinds, 0])

        var waiting = try VCPURig()   // interrupts off: the event waits for a window
        waiting.queue(.externalInterrupt(0x30))
        _ = waiting.run([])
        #expect(waiting.entries.first?.fastPathEnabled == 0)
    }

    @Test func fastPathExitsAreCountedButNotTimed() throws {
        var rig = try VCPURig()
        rig.hw.fastExitsPerEntry = [.cpuid, .nullHypercall, .nullHypercall]
        _ = rig.run([.cpuid(leaf: 0)])   // two entries: after it, and before the script's end
        let s = rig.vcpu.statistics
        #expect(s.fastCount(of: .cpuid) == 2)
        #expect(s.count(of: .cpuid) == 3)
        #expect(s.fastCount(of: .vmcall) == 4)
        #expect(s.count(of: .vmcall) == 4)
        #expect(s.cycles(of: .vmcall) == 0)
        #expect(rig.vcpu.fastPath.vmcallCount == 0)   // moved into the statistics
    }
}

extension VCPU {
    func cachedCPUID(leaf: UInt32) -> CPUIDResult? { fastPath.cached(leaf: leaf, subleaf: 0) }
}
