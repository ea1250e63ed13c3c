// CPU exceptions: Swift traps are a bare ud2 at -Osize, so this report is how a
// failed precondition or a kernel bug becomes readable.

/// The frame Boot/entry.asm builds (isr_common): GPRs pushed last-first, then
/// the stub's vector and error code, then what the CPU pushed.
struct TrapFrame {
    var r15, r14, r13, r12, r11, r10, r9, r8: UInt64
    var rbp, rdi, rsi, rdx, rcx, rbx, rax: UInt64
    var vector, errorCode: UInt64
    var rip, cs, rflags, rsp, ss: UInt64
}

func exceptionName(_ vector: UInt64) -> StaticString {
    switch vector {
    case 0: "#DE divide error"
    case 1: "#DB debug"
    case 2: "NMI"
    case 3: "#BP breakpoint"
    case 4: "#OF overflow"
    case 5: "#BR bound range"
    case 6: "#UD invalid opcode"
    case 7: "#NM device not available"
    case 8: "#DF double fault"
    case 10: "#TS invalid TSS"
    case 11: "#NP segment not present"
    case 12: "#SS stack fault"
    case 13: "#GP general protection"
    case 14: "#PF page fault"
    case 16: "#MF x87 floating point"
    case 17: "#AC alignment check"
    case 18: "#MC machine check"
    case 19: "#XM SIMD floating point"
    case 20: "#VE virtualization"
    case 21: "#CP control protection"
    default: "reserved"
    }
}

nonisolated(unsafe) var inTrap = false

@c(trap_handler)
func trapHandler(_ framePointer: UnsafeMutableRawPointer) {
    let f = framePointer.load(as: TrapFrame.self)
    if f.vector >= 32 {
        // The host runs with interrupts off; a stray one is noted and ignored.
        logWarn("unexpected interrupt vector \(f.vector) at RIP \(hex: f.rip)")
        return
    }
    if inTrap {
        Console.line("FATAL: exception \(f.vector) while reporting an exception, RIP \(hex: f.rip)")
        powerOff(.cpuException)
    }
    inTrap = true
    let name = exceptionName(f.vector)
    Console.line("")
    Console.line("FATAL: CPU exception \(f.vector) (\(name)) error code \(hex: f.errorCode)")
    Console.line("  RIP=\(hex: f.rip, width: 16) CS=\(hex: f.cs) RFLAGS=\(hex: f.rflags)")
    Console.line("  RSP=\(hex: f.rsp, width: 16) SS=\(hex: f.ss) CR2=\(hex: cpu_read_cr2(), width: 16)")
    Console.line("  CR0=\(hex: cpu_read_cr0()) CR3=\(hex: cpu_read_cr3()) CR4=\(hex: cpu_read_cr4())")
    Console.line("  RAX=\(hex: f.rax, width: 16) RBX=\(hex: f.rbx, width: 16) RCX=\(hex: f.rcx, width: 16)")
    Console.line("  RDX=\(hex: f.rdx, width: 16) RSI=\(hex: f.rsi, width: 16) RDI=\(hex: f.rdi, width: 16)")
    Console.line("  RBP=\(hex: f.rbp, width: 16) R8 =\(hex: f.r8, width: 16) R9 =\(hex: f.r9, width: 16)")
    Console.line("  R10=\(hex: f.r10, width: 16) R11=\(hex: f.r11, width: 16) R12=\(hex: f.r12, width: 16)")
    Console.line("  R13=\(hex: f.r13, width: 16) R14=\(hex: f.r14, width: 16) R15=\(hex: f.r15, width: 16)")
    powerOff(.cpuException)
}
