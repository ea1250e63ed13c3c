import Foundation
import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// Boot/vmx.asm reaches into Swift structures by offset and into the VMCS by
// encoding. These tests read its `equ` constants from the file itself, so a
// change on either side that the other did not follow fails here.
@Suite struct AssemblyContractTests {
    static let constants: [String: Int] = {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Boot/vmx.asm")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [:] }
        var result: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 3, words[1] == "equ" else { continue }
            let literal = String(words[2])
            let value = literal.hasPrefix("0x") ? Int(literal.dropFirst(2), radix: 16) : Int(literal)
            if let value { result[String(words[0])] = value }
        }
        return result
    }()

    func constant(_ name: String) -> Int? { Self.constants[name] }

    @Test func readsTheFile() {
        #expect(Self.constants.count >= 30)  // Boot/vmx.asm was found and parsed
    }

    @Test func registerOffsetsMatchGeneralRegisters() {
        typealias R = GeneralRegisters
        let fields: [(String, KeyPath<R, UInt64>)] = [
            ("R_RAX", \.rax), ("R_RCX", \.rcx), ("R_RDX", \.rdx), ("R_RBX", \.rbx), ("R_RBP", \.rbp),
            ("R_RSI", \.rsi), ("R_RDI", \.rdi), ("R_R8", \.r8), ("R_R9", \.r9), ("R_R10", \.r10),
            ("R_R11", \.r11), ("R_R12", \.r12), ("R_R13", \.r13), ("R_R14", \.r14), ("R_R15", \.r15),
        ]
        for (name, path) in fields {
            #expect(constant(name) == MemoryLayout<R>.offset(of: path), "\(name)")
        }
    }

    @Test func fastPathOffsetsMatchExitFastPath() {
        typealias F = ExitFastPathBlock
        #expect(constant("F_ENABLED") == MemoryLayout<F>.offset(of: \.enabled))
        #expect(constant("F_VMCALL_COUNT") == MemoryLayout<F>.offset(of: \.vmcallCount))
        #expect(constant("F_CPUID_COUNT") == MemoryLayout<F>.offset(of: \.cpuidCount))
        #expect(constant("F_CPUID_CACHE") == MemoryLayout<F>.offset(of: \.cpuidCache))
        #expect(MemoryLayout<InlineArray<64, CPUIDCacheEntry>>.stride == 64 * (constant("E_SIZE") ?? 0))

        typealias E = CPUIDCacheEntry
        #expect(constant("E_SIZE") == MemoryLayout<E>.stride)
        let fields: [(String, KeyPath<E, UInt32>)] = [
            ("E_VALID", \.valid), ("E_LEAF", \.leaf), ("E_SUBLEAF_MASK", \.subleafMask), ("E_SUBLEAF", \.subleaf),
            ("E_EAX", \.eax), ("E_EBX", \.ebx), ("E_ECX", \.ecx), ("E_EDX", \.edx),
        ]
        for (name, path) in fields {
            #expect(constant(name) == MemoryLayout<E>.offset(of: path), "\(name)")
        }
        #expect(constant("FAST_NULL_HYPERCALL").map(UInt64.init) == ExitFastPath.Kind.nullHypercall.rawValue)
        #expect(constant("FAST_CPUID").map(UInt64.init) == ExitFastPath.Kind.cpuid.rawValue)
    }

    @Test func quickExitOffsetsAndAnswersMatchSwift() {
        typealias F = ExitFastPathBlock
        #expect(constant("F_QUICK_REASON") == MemoryLayout<F>.offset(of: \.quickReason))
        #expect(constant("F_QUICK_STATE") == MemoryLayout<F>.offset(of: \.quickState))
        // Counted at F_QUICK_COUNTS + (reason - EXIT_IO) * 8.
        let counts: [(ExitReason, KeyPath<F, UInt64>)] = [(.ioInstruction, \.ioCount), (.rdmsr, \.rdmsrCount), (.wrmsr, \.wrmsrCount)]
        for (reason, path) in counts {
            let offset = (constant("F_QUICK_COUNTS") ?? -1) + (Int(reason.rawValue) - (constant("EXIT_IO") ?? 0)) * 8
            #expect(offset == MemoryLayout<F>.offset(of: path), "\(reason)")
        }
        #expect(constant("EXIT_IO").map(UInt16.init) == ExitReason.ioInstruction.rawValue)
        #expect(constant("EXIT_WRMSR").map(UInt16.init) == ExitReason.wrmsr.rawValue)
        #expect(constant("FAST_QUICK").map(UInt64.init) == ExitFastPath.Kind.quick.rawValue)
        #expect(constant("QUICK_COMPLETE").map(UInt32.init) == QuickExit.complete.rawValue)
        #expect(constant("QUICK_RESUMED").map(UInt32.init) == QuickExit.resumed.rawValue)
        #expect(constant("EXIT_PREEMPTION_TIMER").map(UInt16.init) == ExitReason.preemptionTimerExpired.rawValue)
        #expect(constant("F_QUICK_TIMER_COUNT") == MemoryLayout<F>.offset(of: \.timerCount))
        #expect(constant("VMCS_GUEST_RFLAGS").map(UInt32.init) == VMCSFields.GuestNatural.rflags.encoding)
    }

    @Test func vmcsEncodingsAndExitReasons() {
        #expect(constant("VMCS_HOST_RSP").map(UInt32.init) == VMCSFields.HostNatural.rsp.encoding)
        #expect(constant("VMCS_EXIT_REASON").map(UInt32.init) == VMCSFields.ReadOnly32.exitReason.encoding)
        #expect(constant("VMCS_EXIT_INSTR_LEN").map(UInt32.init) == VMCSFields.ReadOnly32.exitInstructionLength.encoding)
        #expect(constant("VMCS_GUEST_SS_AR").map(UInt32.init) == VMCSFields.Guest32.ssAccessRights.encoding)
        #expect(constant("VMCS_GUEST_INTR_STATE").map(UInt32.init) == VMCSFields.Guest32.interruptibilityState.encoding)
        #expect(constant("VMCS_GUEST_RIP").map(UInt32.init) == VMCSFields.GuestNatural.rip.encoding)
        #expect(constant("EXIT_CPUID").map(UInt16.init) == ExitReason.cpuid.rawValue)
        #expect(constant("EXIT_VMCALL").map(UInt16.init) == ExitReason.vmcall.rawValue)
        // The assembly recognises the null hypercall as RAX == 0.
        #expect(Hypercall(rawValue: 0) == .null)
    }
}
