import X86Arch
import VMX
import X86VCPU

extension VCPURig {
    /// As `init`, over a frame allocator and guest RAM that outlive the rig:
    /// a fuzzer's many rigs would otherwise spend their time zeroing memory.
    /// The vCPU returns its frames when the rig goes away.
    package init(_ mode: GuestStartMode, hw: FakeHardware, frames: HostFrameAllocator, memory: FakeGuestMemory) throws {
        let caps = try VMXCapabilities.read(from: hw)
        var vcpu = try VCPU(hw, allocator: frames, capabilities: caps, ram: memory.ram)
        var start = GuestStart(mode: mode, rip: 0x1000)
        start.rsp = 0x8000
        try vcpu.setup(hw, eptPointer: Self.eptPointer, start: start)
        self.hw = hw
        self.frames = frames
        self.memory = memory
        self.vcpu = vcpu
    }
}
