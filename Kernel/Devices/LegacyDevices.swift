// The PC devices an operating-system guest drives itself.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

extension GuestImageFormat {
    /// An operating system drives the PC's timer and interrupt controller
    /// itself; the small test guests use the hypervisor's devices.
    var ownsLegacyDevices: Bool {
        switch self {
        case .pvh, .linux: true
        case .multiboot1, .bootSector: false
        }
    }
}

/// The guest platform for an operating system: the legacy PIC (0x20, 0xA0),
/// PIT (0x40-0x43, gate 0x61), the POST delay port (0x80) and COM1 (its
/// interrupt-driven driver needs the real IRQ 4, and the user's shell needs
/// input) belong to the guest, and interrupts that arrive while it runs are
/// delivered to it. The host depends on none of them: it runs with interrupts
/// off. Port 0x61's NMI enables are safe with the guest: an NMI in root mode
/// is handed to the guest too. The RTC is the guest's through KernelPlatform
/// (CMOSPorts), which keeps the firmware's NVRAM read-only. The keyboard
/// controller (0x64 can reset the machine), PCI configuration and everything
/// else stay intercepted.
func giveLegacyDevices(_ vcpu: inout VCPU<KernelFrames>) {
    let ports: [6 of ClosedRange<UInt16>] = [0x20...0x21, 0xA0...0xA1, 0x40...0x43, 0x61...0x61,
                                             0x80...0x80, 0x3F8...0x3FF]
    for i in 0..<ports.count { vcpu.ioBitmap.setIntercept(ports: ports[i], false) }
    vcpu.reflectsExternalInterrupts = true
    Serial.flush()
}


/// The passthrough platform: every port is the guest's, except 0xF4 (QEMU's
/// isa-debug-exit convention, which the tests use to end a run with a
/// status; nothing on a PC decodes it). Interrupts need no reflection: they
/// reach the guest without exits (see `VCPU.controlSettings`).
func giveMachine(_ vcpu: inout VCPU<KernelFrames>) {
    vcpu.ioBitmap.setIntercept(ports: 0...0xFFFF, false)
    vcpu.ioBitmap.setIntercept(ports: KernelPlatform.exitPort...KernelPlatform.exitPort, true)
    Serial.flush()
}
