import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// A CPU with a CPUID table, an MSR map and control registers. RDMSR/WRMSR of
/// an MSR missing from the map is what raises #GP on hardware: the fake
/// returns 0 / ignores the write and records the address in `gpFaults`, so a
/// test can assert that code never touches an MSR the CPU lacks.
package final class FakeCPU: CPUAccess {
    package struct CPUIDKey: Hashable { var leaf: UInt32; var subleaf: UInt32 }

    package var cpuidTable: [CPUIDKey: CPUIDResult] = [:]
    package var msrs: [UInt32: UInt64] = [:]
    package var cr0: UInt64 = 0
    package var cr3: UInt64 = 0
    package var cr4: UInt64 = 0
    package var xcr0: UInt64 = 1

    package private(set) var msrReads: [UInt32] = []
    package private(set) var msrWrites: [(address: UInt32, value: UInt64)] = []
    package private(set) var gpFaults: [UInt32] = []
    package private(set) var cr0Writes: [UInt64] = []
    package private(set) var cr4Writes: [UInt64] = []
    package private(set) var xcr0Writes: [UInt64] = []

    package init() {}

    /// A CPU whose VMX MSRs are those of a Bochs model, with CPUID.1:ECX.VMX set
    /// and CR0/CR4 as after GRUB and the boot stub (PE, NE, ET, PG; PAE, OSFXSR).
    package convenience init(bochs model: BochsCPUModel) {
        self.init()
        msrs = model.msrs
        setCPUID(leaf: 1, CPUIDResult(ecx: 1 << 5))
        cr0 = 0x8000_0031
        cr4 = 0x220
    }

    package func setCPUID(leaf: UInt32, subleaf: UInt32 = 0, _ result: CPUIDResult) {
        cpuidTable[CPUIDKey(leaf: leaf, subleaf: subleaf)] = result
    }

    package func cpuid(leaf: UInt32, subleaf: UInt32) -> CPUIDResult {
        cpuidTable[CPUIDKey(leaf: leaf, subleaf: subleaf)] ?? CPUIDResult()
    }

    package func readMSR(_ address: UInt32) -> UInt64 {
        msrReads.append(address)
        guard let value = msrs[address] else { gpFaults.append(address); return 0 }
        return value
    }

    package func writeMSR(_ address: UInt32, _ value: UInt64) {
        guard msrs[address] != nil else { gpFaults.append(address); return }
        msrs[address] = value
        msrWrites.append((address, value))
    }

    package func readCR0() -> UInt64 { cr0 }
    package func readCR3() -> UInt64 { cr3 }
    package func readCR4() -> UInt64 { cr4 }
    package func writeCR0(_ value: UInt64) { cr0 = value; cr0Writes.append(value) }
    package func writeCR4(_ value: UInt64) { cr4 = value; cr4Writes.append(value) }
    package func readXCR0() -> UInt64 { xcr0 }
    package func writeXCR0(_ value: UInt64) { xcr0 = value; xcr0Writes.append(value) }
}
