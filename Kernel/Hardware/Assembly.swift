// The instruction wrappers in Boot/cpu.asm: the only way this kernel reaches
// instructions Swift cannot emit.

@_extern(c, "port_out8") func port_out8(_ port: UInt16, _ value: UInt8)
@_extern(c, "port_in8") func port_in8(_ port: UInt16) -> UInt8

@_extern(c, "cpu_rdmsr") func cpu_rdmsr(_ msr: UInt32) -> UInt64
@_extern(c, "cpu_wrmsr") func cpu_wrmsr(_ msr: UInt32, _ value: UInt64)
@_extern(c, "cpu_cpuid") func cpu_cpuid(_ leaf: UInt32, _ subleaf: UInt32, _ out: UnsafeMutablePointer<UInt32>)
@_extern(c, "cpu_read_cr0") func cpu_read_cr0() -> UInt64
@_extern(c, "cpu_read_cr2") func cpu_read_cr2() -> UInt64
@_extern(c, "cpu_take_host_nmi") func cpu_take_host_nmi() -> Bool
@_extern(c, "cpu_write_cr2") func cpu_write_cr2(_ value: UInt64)
@_extern(c, "cpu_read_cr3") func cpu_read_cr3() -> UInt64
@_extern(c, "cpu_read_cr4") func cpu_read_cr4() -> UInt64
@_extern(c, "cpu_write_cr0") func cpu_write_cr0(_ value: UInt64)
@_extern(c, "cpu_write_cr4") func cpu_write_cr4(_ value: UInt64)
@_extern(c, "cpu_xgetbv") func cpu_xgetbv(_ index: UInt32) -> UInt64
@_extern(c, "cpu_xsetbv") func cpu_xsetbv(_ index: UInt32, _ value: UInt64)
@_extern(c, "cpu_rdtsc") func cpu_rdtsc() -> UInt64
@_extern(c, "cpu_sgdt") func cpu_sgdt(_ out: UnsafeMutableRawPointer)
@_extern(c, "cpu_sidt") func cpu_sidt(_ out: UnsafeMutableRawPointer)
@_extern(c, "cpu_read_tr") func cpu_read_tr() -> UInt16
@_extern(c, "cpu_read_cs") func cpu_read_cs() -> UInt16
@_extern(c, "cpu_read_ss") func cpu_read_ss() -> UInt16
@_extern(c, "cpu_read_ds") func cpu_read_ds() -> UInt16
@_extern(c, "cpu_read_es") func cpu_read_es() -> UInt16
@_extern(c, "cpu_read_fs") func cpu_read_fs() -> UInt16
@_extern(c, "cpu_read_gs") func cpu_read_gs() -> UInt16
@_extern(c, "cpu_halt_forever") func cpu_halt_forever()
@_extern(c, "cpu_magic_break") func cpu_magic_break()
@_extern(c, "cpu_ud2") func cpu_ud2()

/// The kernel image's physical extent (linker-script symbols).
@_extern(c, "kernel_image_start") func kernel_image_start() -> UInt64
@_extern(c, "kernel_image_end") func kernel_image_end() -> UInt64
@_extern(c, "kernel_entry_tsc") func kernel_entry_tsc() -> UInt64

/// CPUID as one value.
func cpuid(_ leaf: UInt32, _ subleaf: UInt32 = 0) -> (eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
    var out = (UInt32(0), UInt32(0), UInt32(0), UInt32(0))
    withUnsafeMutablePointer(to: &out) {
        $0.withMemoryRebound(to: UInt32.self, capacity: 4) { cpu_cpuid(leaf, subleaf, $0) }
    }
    return (out.0, out.1, out.2, out.3)
}
