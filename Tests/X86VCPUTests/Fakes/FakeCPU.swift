import X86VCPU

/// A CPU with a CPUID table, an MSR map and control registers. RDMSR/WRMSR of
/// an MSR missing from the map is what raises #GP on hardware: the fake
/// returns 0 / ignores the write and records the address in `gpFaults`, so a
/// test can assert that code never touches an MSR the CPU lacks.
final class FakeCPU: CPUAccess {
    struct CPUIDKey: Hashable { var leaf: UInt32; var subleaf: UInt32 }

    var cpuidTable: [CPUIDKey: CPUIDResult] = [:]
    var msrs: [UInt32: UInt64] = [:]
    var cr0: UInt64 = 0
    var cr3: UInt64 = 0
    var cr4: UInt64 = 0
    var xcr0: UInt64 = 1

    private(set) var msrReads: [UInt32] = []
    private(set) var msrWrites: [(address: UInt32, value: UInt64)] = []
    private(set) var gpFaults: [UInt32] = []
    private(set) var cr0Writes: [UInt64] = []
    private(set) var cr4Writes: [UInt64] = []
    private(set) var xcr0Writes: [UInt64] = []

    init() {}

    /// A CPU whose VMX MSRs are those of a Bochs model, with CPUID.1:ECX.VMX set
    /// and CR0/CR4 as after GRUB and the boot stub (PE, NE, ET, PG; PAE, OSFXSR).
    convenience init(bochs model: BochsCPUModel) {
        self.init()
        msrs = model.msrs
        setCPUID(leaf: 1, CPUIDResult(ecx: 1 << 5))
        cr0 = 0x8000_0031
        cr4 = 0x220
    }

    func setCPUID(leaf: UInt32, subleaf: UInt32 = 0, _ result: CPUIDResult) {
        cpuidTable[CPUIDKey(leaf: leaf, subleaf: subleaf)] = result
    }

    func cpuid(leaf: UInt32, subleaf: UInt32) -> CPUIDResult {
        cpuidTable[CPUIDKey(leaf: leaf, subleaf: subleaf)] ?? CPUIDResult()
    }

    func readMSR(_ address: UInt32) -> UInt64 {
        msrReads.append(address)
        guard let value = msrs[address] else { gpFaults.append(address); return 0 }
        return value
    }

    func writeMSR(_ address: UInt32, _ value: UInt64) {
        guard msrs[address] != nil else { gpFaults.append(address); return }
        msrs[address] = value
        msrWrites.append((address, value))
    }

    func readCR0() -> UInt64 { cr0 }
    func readCR3() -> UInt64 { cr3 }
    func readCR4() -> UInt64 { cr4 }
    func writeCR0(_ value: UInt64) { cr0 = value; cr0Writes.append(value) }
    func writeCR4(_ value: UInt64) { cr4 = value; cr4Writes.append(value) }
    func readXCR0() -> UInt64 { xcr0 }
    func writeXCR0(_ value: UInt64) { xcr0 = value; xcr0Writes.append(value) }
}
