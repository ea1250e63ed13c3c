// The seam for the VMX instructions themselves: the vCPU is generic over one
// type that is the CPU, the current VMCS, and these instructions. The kernel
// conforms with the wrappers in Boot/vmx.asm; host tests with fakes.

import X86Arch
import VMX

/// Host segment state that only instructions (STR, SGDT, MOV from Sreg) and
/// descriptor tables reveal. SDM 25.5 "Host-State Area".
public struct HostSegments: Equatable, Sendable {
    public var cs, ss, ds, es, fs, gs, tr: UInt16
    public var fsBase, gsBase, trBase, gdtrBase, idtrBase: UInt64

    public init(cs: UInt16, ss: UInt16, ds: UInt16, es: UInt16, fs: UInt16, gs: UInt16, tr: UInt16,
                fsBase: UInt64, gsBase: UInt64, trBase: UInt64, gdtrBase: UInt64, idtrBase: UInt64) {
        self.cs = cs; self.ss = ss; self.ds = ds; self.es = es; self.fs = fs; self.gs = gs; self.tr = tr
        self.fsBase = fsBase; self.gsBase = gsBase; self.trBase = trBase
        self.gdtrBase = gdtrBase; self.idtrBase = idtrBase
    }
}

public protocol VMXHardware: CPUAccess, VMCSAccess {
    func vmxon(_ region: UInt64) throws(VMXError)
    func vmxoff() throws(VMXError)
    func vmclear(_ vmcs: UInt64) throws(VMXError)
    func vmptrld(_ vmcs: UInt64) throws(VMXError)
    /// INVEPT, single-context type, for an EPTP. SDM 31.3 "INVEPT".
    func invept(_ eptPointer: UInt64) throws(VMXError)
    /// VMLAUNCH (or VMRESUME when `resume`) with the guest GPRs from
    /// `registers`; returns after the next VM exit with them stored back.
    /// Exits that `fastPath` enables may be handled without returning (and
    /// are counted there); a fake may ignore it.
    func enterGuest(_ registers: inout GeneralRegisters, fastPath: ExitFastPath, resume: Bool) throws(VMXError)
    func readTSC() -> UInt64
    /// CR2, which the guest shares with the host: set for a #PF the vCPU injects.
    func writeCR2(_ value: UInt64)
    /// Whether an NMI arrived in root mode since the last call (then cleared).
    func takeHostNMI() -> Bool
    func hostSegments() -> HostSegments
    /// HOST_RIP: where a VM exit resumes the host.
    var exitEntryPoint: UInt64 { get }
}
