// The hardware conformances of the library's seams: each requirement is one
// instruction wrapper from Boot/, so the generic vCPU specializes to direct calls.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// This CPU: its registers and MSRs, its current VMCS, and the VMX
/// instructions. An empty handle, so generic library code specializes to
/// direct calls of the wrappers.
struct Hardware: VMXHardware {
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

    // Inlined into every VMCS access, with the rare failure out of line: the
    // exit path then costs the wrapper call and a test per field. All ones is
    // also a value a field can hold: only then is the status asked for.
    @inline(__always)
    func vmread(_ encoding: UInt32) throws(VMXError) -> UInt64 {
        let value = vmx_read_value(UInt64(encoding))
        if value == UInt64.max { return try checkedRead(encoding) }
        return value
    }

    @inline(never)
    func checkedRead(_ encoding: UInt32) throws(VMXError) -> UInt64 {
        var value: UInt64 = 0
        let status = vmx_read(UInt64(encoding), &value)
        if status != 0 { try fail(status) }
        return value
    }

    @inline(__always)
    func vmwrite(_ encoding: UInt32, _ value: UInt64) throws(VMXError) {
        let status = vmx_write(UInt64(encoding), value)
        if status != 0 { try fail(status) }
    }

    @inline(never)
    func fail(_ status: Int32) throws(VMXError) {
        try check(status)
    }

    func vmxon(_ region: UInt64) throws(VMXError) { try check(vmx_on(region)) }
    func vmxoff() throws(VMXError) { try check(vmx_off()) }
    func vmclear(_ vmcs: UInt64) throws(VMXError) { try check(vmx_clear(vmcs)) }
    func vmptrld(_ vmcs: UInt64) throws(VMXError) { try check(vmx_ptrld(vmcs)) }
    /// Single-context INVEPT (type 1). SDM 31.3 "INVEPT".
    func invept(_ eptPointer: UInt64) throws(VMXError) { try check(vmx_invept(1, eptPointer)) }

    func enterGuest(_ registers: inout GeneralRegisters, fastPath: ExitFastPath, resume: Bool) throws(VMXError) {
        let status = withUnsafeMutablePointer(to: &registers) { regs in
            vmx_run(UnsafeMutableRawPointer(regs), resume ? 1 : 0, fastPath.block)
        }
        try check(status)
    }

    func readTSC() -> UInt64 { cpu_rdtsc() }
    func writeCR2(_ value: UInt64) { cpu_write_cr2(value) }
    func takeHostNMI() -> Bool { cpu_take_host_nmi() }
    var exitEntryPoint: UInt64 { vmx_exit_entry_address() }

    func hostSegments() -> HostSegments {
        var gdtr = (UInt16(0), UInt64(0))
        var idtr = (UInt16(0), UInt64(0))
        withUnsafeMutableBytes(of: &gdtr) { cpu_sgdt($0.baseAddress.unsafelyUnwrapped) }
        withUnsafeMutableBytes(of: &idtr) { cpu_sidt($0.baseAddress.unsafelyUnwrapped) }
        // SGDT stores a 2-byte limit then an 8-byte base: the tuple's layout
        // pads the base to offset 8, so read it from offset 2.
        let gdtBase = withUnsafeBytes(of: &gdtr) { $0.loadUnaligned(fromByteOffset: 2, as: UInt64.self) }
        let idtBase = withUnsafeBytes(of: &idtr) { $0.loadUnaligned(fromByteOffset: 2, as: UInt64.self) }
        let tr = cpu_read_tr()
        // SDM 8.2.3 "TSS Descriptor in 64-bit mode": a 16-byte system descriptor.
        let d = UnsafeRawPointer(bitPattern: UInt(gdtBase + UInt64(tr & SegmentSelector.indexMask))).unsafelyUnwrapped
        let low = d.loadUnaligned(as: UInt64.self), high = d.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        let trBase = SegmentDescriptor.systemBase(low: low, high: high)
        return HostSegments(cs: cpu_read_cs(), ss: cpu_read_ss(), ds: cpu_read_ds(), es: cpu_read_es(),
                            fs: cpu_read_fs(), gs: cpu_read_gs(), tr: tr,
                            fsBase: readMSR(.ia32FSBase), gsBase: readMSR(.ia32GSBase),
                            trBase: trBase, gdtrBase: gdtBase, idtrBase: idtBase)
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

/// The exit trampoline's Swift half (Boot/vmx.asm, `vmx_exit_entry`): an I/O
/// or MSR exit of the vCPU `VCPU.run` entered the guest with. The kernel runs
/// one vCPU type with one platform type, so these are the ones.
@c(vmx_quick_exit)
func vmxQuickExit(_ block: UnsafeMutableRawPointer) -> UInt32 {
    ExitFastPath(existing: block).quickExit(Hardware(), vcpu: VCPU<KernelFrames>.self, platform: KernelPlatform.self).rawValue
}

/// The same for a VMX-preemption timer exit.
@c(vmx_quick_timer_exit)
func vmxQuickTimerExit(_ block: UnsafeMutableRawPointer) -> UInt32 {
    ExitFastPath(existing: block).quickTimerExit(Hardware(), vcpu: VCPU<KernelFrames>.self, platform: KernelPlatform.self).rawValue
}

/// CPUID under a name that does not collide with the protocol requirement.
func X86VCPU_cpuid(_ leaf: UInt32, _ subleaf: UInt32) -> (eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
    cpuid(leaf, subleaf)
}

@_extern(c, "vmx_exit_entry_address") func vmx_exit_entry_address() -> UInt64
@_extern(c, "vmx_on") func vmx_on(_ region: UInt64) -> Int32
@_extern(c, "vmx_off") func vmx_off() -> Int32
@_extern(c, "vmx_clear") func vmx_clear(_ vmcs: UInt64) -> Int32
@_extern(c, "vmx_ptrld") func vmx_ptrld(_ vmcs: UInt64) -> Int32
@_extern(c, "vmx_read_value") func vmx_read_value(_ field: UInt64) -> UInt64
@_extern(c, "vmx_read") func vmx_read(_ field: UInt64, _ value: UnsafeMutablePointer<UInt64>) -> Int32
@_extern(c, "vmx_write") func vmx_write(_ field: UInt64, _ value: UInt64) -> Int32
@_extern(c, "vmx_invept") func vmx_invept(_ type: UInt64, _ eptp: UInt64) -> Int32
@_extern(c, "vmx_run") func vmx_run(_ registers: UnsafeMutableRawPointer, _ launched: UInt64, _ fastPath: UnsafeMutableRawPointer) -> Int32
