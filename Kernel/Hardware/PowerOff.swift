// Power-off that ends every engine: QEMU's isa-debug-exit, Bochs, and on real
// hardware a halt with the last message left on the screen.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// Why the machine stopped. The number is what QEMU reports as (status << 1) | 1.
enum ExitStatus: UInt8 {
    case success = 0
    case failure = 1
    case vmxUnavailable = 2
    case cpuException = 3
    case badBootInfo = 4
    case hypervisorFailure = 5
    /// The hypervisor stopped a guest that misbehaved (triple fault, bad access, ...).
    case guestStopped = 6
}

func powerOff(_ status: ExitStatus) -> Never { powerOff(code: status.rawValue) }

func powerOff(code: UInt8) -> Never {
    Console.log(code == 0 ? .info : .error, "power off: status \(code)")
    Serial.flush()
    // QEMU: -device isa-debug-exit,iobase=0xf4 exits with (code << 1) | 1.
    port_out8(0xF4, code)
    if code == 0 {
        // Bochs: the magic breakpoint returns to its debugger, which quits (exit 0).
        cpu_magic_break()
    } else {
        // Bochs: "Shutdown" on port 0x8900 ends the simulation (exit 1).
        ("Shutdown" as StaticString).withUTF8Buffer { for b in $0 { port_out8(0x8900, b) } }
    }
    cpu_halt_forever()
    while true {}
}
