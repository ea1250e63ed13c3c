// CPUID: answered by the policy, cached in the fast-path block.

import X86Arch
import VMX

extension VCPU {
    mutating func handleCPUID<H: VMXHardware>(_ hw: H) throws(VMXError) -> ExitAction {
        let leaf = UInt32(truncatingIfNeeded: registers.rax)
        let subleaf = UInt32(truncatingIfNeeded: registers.rcx)
        let v: CPUIDResult
        if let known = fastPath.cached(leaf: leaf, subleaf: subleaf) {
            v = known
        } else {
            let cr4 = cr4View.guestVisibleValue(real: try hw.read(VMCSFields.GuestNatural.cr4),
                                                readShadow: try hw.read(VMCSFields.ControlNatural.cr4ReadShadow))
            let guest = CPUIDGuestState(cr4: cr4, xcr0: xcr0, xss: xss, apicGloballyEnabled: APICBase(rawValue: apicBase).isGloballyEnabled)
            let host = hw.cpuid(leaf: leaf, subleaf: subleaf)
            v = cpuidPolicy.answerInPlace(leaf: leaf, subleaf: subleaf, host: host, guest: guest)
            fastPath.store(leaf: leaf, subleaf: subleaf, v)
        }
        // CPUID writes the 32-bit registers, which zero-extends them.
        registers.rax = UInt64(v.eax); registers.rbx = UInt64(v.ebx)
        registers.rcx = UInt64(v.ecx); registers.rdx = UInt64(v.edx)
        return try advance(hw)
    }
}

extension CPUIDPolicy {
    /// `guestView` for the vCPU's own policy: `mutating` only so the call
    /// borrows it in place; a plain call copied all 324 bytes at every CPUID
    /// exit (a `let` policy and a pointer did not avoid the copy).
    @inline(never)
    mutating func answerInPlace(leaf: UInt32, subleaf: UInt32, host: CPUIDValues, guest: CPUIDGuestState) -> CPUIDValues {
        guestView(leaf: leaf, subleaf: subleaf, host: host, guest: guest)
    }
}
