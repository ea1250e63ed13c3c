// Placeholder until the library's capability decoders land.
struct VMXSummary { var basic: UInt64 }
func detectVMX() -> VMXSummary? {
    let l1 = cpuid(1)
    guard l1.ecx & (1 << 5) != 0 else {
        logError("VMX is not available: CPUID.1:ECX.VMX[bit 5] is clear (no VMX on this CPU or engine)")
        return nil
    }
    return VMXSummary(basic: cpu_rdmsr(0x480))
}
func reportVMX(_ s: VMXSummary) { logInfo("VMX: revision \(hex: s.basic & 0x7fff_ffff)") }
