// The hardware conformances of the library's seams: each requirement is one
// instruction wrapper from Boot/, so the generic vCPU specializes to direct calls.
import X86VCPU

struct HardwareCPU: CPUAccess {
    func cpuid(leaf: UInt32, subleaf: UInt32) -> CPUIDResult {
        let r = X86VCPU_cpuid(leaf, subleaf)
        return CPUIDResult(eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx)
    }
    func readMSR(_ address: UInt32) -> UInt64 { cpu_rdmsr(address) }
    func writeMSR(_ address: UInt32, _ value: UInt64) { cpu_wrmsr(address, value) }
    func readCR0() -> UInt64 { cpu_read_cr0() }
    func readCR3() -> UInt64 { cpu_read_cr3() }
    func readCR4() -> UInt64 { cpu_read_cr4() }
    func writeCR0(_ value: UInt64) { cpu_write_cr0(value) }
    func writeCR4(_ value: UInt64) { cpu_write_cr4(value) }
    func readXCR0() -> UInt64 { cpu_xgetbv(0) }
    func writeXCR0(_ value: UInt64) { cpu_xsetbv(0, value) }
}

/// CPUID under a name that does not collide with the protocol requirement.
func X86VCPU_cpuid(_ leaf: UInt32, _ subleaf: UInt32) -> (eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
    cpuid(leaf, subleaf)
}

/// The current VMCS of this CPU.
struct HardwareVMCS: VMCSAccess {
    func vmread(_ encoding: UInt32) throws(VMXError) -> UInt64 {
        var value: UInt64 = 0
        try check(vmx_read(UInt64(encoding), &value))
        return value
    }

    func vmwrite(_ encoding: UInt32, _ value: UInt64) throws(VMXError) {
        try check(vmx_write(UInt64(encoding), value))
    }

    /// SDM 31.2 "Conventions": VMfailValid leaves its number in the current VMCS.
    func check(_ status: Int32) throws(VMXError) {
        switch status {
        case 0: return
        case 1: throw .vmFailInvalid
        default:
            var number: UInt64 = 0
            _ = vmx_read(UInt64(VMCSFields.ReadOnly32.vmInstructionError.encoding), &number)
            throw .vmFailValid(VMInstructionError(rawValue: UInt32(truncatingIfNeeded: number)))
        }
    }
}

@_extern(c, "vmx_on") func vmx_on(_ region: UInt64) -> Int32
@_extern(c, "vmx_off") func vmx_off() -> Int32
@_extern(c, "vmx_clear") func vmx_clear(_ vmcs: UInt64) -> Int32
@_extern(c, "vmx_ptrld") func vmx_ptrld(_ vmcs: UInt64) -> Int32
@_extern(c, "vmx_read") func vmx_read(_ field: UInt64, _ value: UnsafeMutablePointer<UInt64>) -> Int32
@_extern(c, "vmx_write") func vmx_write(_ field: UInt64, _ value: UInt64) -> Int32
@_extern(c, "vmx_invept") func vmx_invept(_ type: UInt64, _ eptp: UInt64) -> Int32
@_extern(c, "vmx_run") func vmx_run(_ registers: UnsafeMutableRawPointer, _ launched: UInt64) -> Int32
