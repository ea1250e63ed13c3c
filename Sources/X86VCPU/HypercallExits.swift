// VMCALL: the hypercall ABI the platform offers its guests.

import X86Arch
import VMX

/// The hypercall ABI (VMCALL; RAX = number, RBX and RCX the arguments, result in RAX).
public enum Hypercall: UInt64, Sendable {
    /// Returns 0: the cheapest round trip, for measuring.
    case null = 0
    /// RBX = guest linear address, RCX = length (at most 4096): console output.
    case consoleWrite = 1
    /// RBX = status: powers the machine off.
    case powerOff = 2
    /// Returns the guest's TSC.
    case readTSC = 3
    /// RBX = vector (32 ... 255), RCX = period in TSC ticks (0 stops): a periodic interrupt.
    case armTimer = 4

    /// RAX for a number no hypercall has.
    public static let unknown = UInt64.max
    /// RAX for a bad argument (-2).
    public static let badArgument = UInt64.max - 1
}

extension VCPU {
    mutating func handleVMCALL<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> ExitAction {
        _ = try advance(hw)
        guard try currentPrivilegeLevel(hw) == 0 else { registers.rax = Hypercall.unknown; return .resume }
        switch Hypercall(rawValue: registers.rax) {
        case .null:
            registers.rax = 0
        case .consoleWrite:
            let length = registers.rcx
            guard length <= 4096 else { registers.rax = Hypercall.badArgument; return .resume }
            let paging = try pagingState(hw)
            var done: UInt64 = 0
            while done < length {
                let linear = registers.rbx &+ done
                let chunk = min(length - done, pageSize4KiB - (linear & pageOffsetMask4KiB))
                guard let gpa = translate(linear, write: false, paging: paging),
                      let bytes = ram.bytes(at: gpa, count: Int(chunk)) else {
                    registers.rax = Hypercall.badArgument
                    return .resume
                }
                platform.consoleWrite(UnsafeRawBufferPointer(bytes))
                done += chunk
            }
            registers.rax = length
        case .powerOff:
            return .stop(.powerOff(status: UInt8(truncatingIfNeeded: registers.rbx)))
        case .readTSC:
            registers.rax = hw.readTSC() &+ (features.tscOffsetting ? try hw.read(VMCSFields.Control64.tscOffset) : 0)
        case .armTimer:
            guard registers.rbx >= 32, registers.rbx <= 255 else { registers.rax = Hypercall.badArgument; return .resume }
            timerVector = UInt8(registers.rbx)
            timerPeriod = registers.rcx
            timerDeadline = hw.readTSC() &+ registers.rcx
            registers.rax = 0   // the next entry arms the preemption timer (prepareEntry)
        case nil:
            registers.rax = Hypercall.unknown
        }
        return .resume
    }
}
