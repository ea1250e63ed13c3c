import Testing
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// A vCPU created and set up on a FakeHardware, with guest RAM and a
/// FakePlatform: what the kernel builds, over fakes.
package struct VCPURig: ~Copyable {
    package static let eptPointer: UInt64 = 0x0000_0000_7FF0_001E

    package let hw: FakeHardware
    package let frames: HostFrameAllocator
    package let memory: FakeGuestMemory
    package var vcpu: VCPU<HostFrameAllocator>
    package var platform = FakePlatform()

    /// Setup for `mode` at `rip`; `configure` edits the start before setup.
    package init(_ mode: GuestStartMode = .protected32, rip: UInt64 = 0x1000,
         hw: FakeHardware = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x),
         platform: GuestPlatformKind = .isolated,
         configure: (inout GuestStart) -> Void = { _ in }) throws {
        let frames = HostFrameAllocator(frames: 16)   // the vCPU needs 8
        let memory = FakeGuestMemory()
        let caps = try VMXCapabilities.read(from: hw)
        var vcpu = try VCPU(hw, allocator: frames, capabilities: caps, ram: memory.ram, platform: platform)
        var start = GuestStart(mode: mode, rip: rip)
        start.rsp = 0x8000
        configure(&start)
        try vcpu.setup(hw, eptPointer: Self.eptPointer, start: start)
        self.hw = hw
        self.frames = frames
        self.memory = memory
        self.vcpu = vcpu
    }

    /// Plays `script` through `VCPU.run`.
    package mutating func run(_ script: [ScriptedExit]) -> VCPUExit {
        hw.script = script
        return vcpu.run(hw, &platform)
    }

    /// I/O and MSR exits through the trampoline's quick handler, as the
    /// kernel has them (`vmx_quick_exit`).
    /// `P`: the platform the test runs the vCPU with.
    package mutating func enableQuickExits<P: GuestPlatform>(for platform: P.Type = FakePlatform.self) {
        vcpu.quickExits = true
        hw.quickHandler = { hw, fast in
            // The assembly's two calls (Boot/vmx.asm).
            fast.quickReason == UInt32(ExitReason.preemptionTimerExpired.rawValue)
                ? fast.quickTimerExit(hw, vcpu: VCPU<HostFrameAllocator>.self, platform: P.self)
                : fast.quickExit(hw, vcpu: VCPU<HostFrameAllocator>.self, platform: P.self)
        }
    }

    /// Queues an event for the guest, expecting room for it.
    package mutating func queue(_ event: PendingEvent, sourceLocation: SourceLocation = #_sourceLocation) {
        let queued = vcpu.queue(event)
        #expect(queued, sourceLocation: sourceLocation)
    }

    /// A VMCS field as the fake holds it (0 if never written).
    package func field<F: VMCSReadableField>(_ f: F) -> UInt64 { hw.vmcs.value(f) ?? 0 }

    /// Sets guest state as the guest would have it, without recording a VMWRITE.
    package func preset<F: VMCSReadableField>(_ f: F, _ value: F.Value) { hw.vmcs.preset(f, value) }

    /// EDX:EAX as RDMSR left them.
    package var edxeax: UInt64 { vcpu.registers.rdx << 32 | vcpu.registers.rax }
    package var rip: UInt64 { field(VMCSFields.GuestNatural.rip) }
    package var entries: [FakeHardware.Entry] { hw.entries }
    /// The exit when the script ran out: the fake's final triple fault.
    package var scriptEnd: VCPUExit { .tripleFault(rip: rip) }
}
