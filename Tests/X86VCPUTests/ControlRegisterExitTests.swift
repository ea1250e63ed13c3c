import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// MOV CR, CLTS, LMSW through `VCPU.run`; conventions as in VCPUExitHandlerTests.

@Suite struct ControlRegisterExitTests {
    let lme = EFER.lme.rawValue, lma = EFER.lma.rawValue
    let pae = CR4Bits.pae.rawValue, vmxe = CR4Bits.vmxe.rawValue

    func ia32eMode(_ hw: FakeHardware) -> Bool {
        VMEntryControls(rawValue: UInt32(hw.vmcs.value(VMCSFields.Control32.entryControls) ?? 0)).contains(.ia32eModeGuest)
    }

    func setCR4(_ rig: borrowing VCPURig, _ value: UInt64) {
        rig.preset(VMCSFields.GuestNatural.cr4, value | vmxe)
        rig.preset(VMCSFields.ControlNatural.cr4ReadShadow, value)
    }

    @Test func pagingOnWithEFERLMEAndCR4PAEActivatesIA32eMode() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest64.ia32EFER, lme)
        setCR4(rig, pae)
        _ = rig.run([.movToCR(0, 0x8000_0011, gpr: 3, length: 3)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == lme | lma)
        #expect(ia32eMode(rig.hw))
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x8000_0011)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) == 0x8000_0031)   // NE forced
        #expect(rig.rip == 0x1003)
    }

    @Test func pagingOnWithoutEFERLMEStaysInLegacyMode() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) & lma == 0)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x8000_0011)
    }

    @Test func pagingOnWithEFERLMEButNoPAERaisesGP() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.Guest64.ia32EFER, lme)
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) == lme)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.rip == 0x1000)
    }

    @Test func pagingWithoutProtectionRaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(0, 0x8000_0010)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.entries[1].exceptionErrorCode == 0)
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.rip == 0x1000)
    }

    @Test func nwWithoutCDRaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(0, 0x2000_0011)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
    }

    @Test func cr0Bits63To32RaiseGPIn64BitMode() throws {
        var rig = try VCPURig(.long64)
        let old = rig.field(VMCSFields.ControlNatural.cr0ReadShadow)
        _ = rig.run([.movToCR(0, 1 << 32 | old)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == old)
    }

    @Test func pagingOffInCompatibilityModeLeavesIA32eMode() throws {
        var rig = try VCPURig(.long64, rip: 0x1000)
        rig.preset(VMCSFields.Guest32.csAccessRights, 0xC09B)   // compatibility mode: L = 0
        _ = rig.run([.movToCR(0, 0x11)])
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) & (lme | lma) == lme)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
    }

    @Test func pagingOffIn64BitModeRaisesGP() throws {
        // SDM "MOV—Move to/from Control Registers", 64-bit mode: #GP(0) on an
        // attempt to clear CR0.PG (IA-32e mode is left from compatibility mode).
        var rig = try VCPURig(.long64, rip: 0x1000)
        _ = rig.run([.movToCR(0, 0x11)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) & lma != 0)
        #expect(ia32eMode(rig.hw))
    }

    @Test func movToCR4WithVMXERaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(4, pae | vmxe)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == 0)
        #expect(rig.rip == 0x1000)
    }

    @Test func movToCR4WithABitTheCPULacksRaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(4, CR4Bits.la57.rawValue)])   // not in CR4 FIXED1 0x3727FF
        #expect(rig.entries[1].injected.raw == injectGP)
    }

    @Test func movToCR4ClearingPAEInIA32eModeRaisesGP() throws {
        var rig = try VCPURig(.long64, rip: 0x1000)
        _ = rig.run([.movToCR(4, 0)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == pae)
    }

    @Test func movToCR4KeepsVMXESetButHidden() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(4, 0x220, gpr: 9)])
        #expect(rig.field(VMCSFields.GuestNatural.cr4) == 0x2220)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == 0x220)
        #expect(rig.rip == 0x1003)
    }

    @Test func movToCR3FromRSPReadsTheVMCSGuestRSP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(3, 0x0012_3000, gpr: 4)])
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0x0012_3000)
        #expect(rig.vcpu.registers.rsp == 0)
    }

    @Test func movFromCR3ToRSPWritesTheVMCSGuestRSP() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.cr3, 0xABC000)
        _ = rig.run([.crAccess(cr: 3, type: .movFromCR, gpr: 4)])
        #expect(rig.field(VMCSFields.GuestNatural.rsp) == 0xABC000)
        #expect(rig.vcpu.registers.rsp == 0)
        #expect(rig.rip == 0x1003)
    }

    @Test func movFromCR3ToAnyRegister() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.cr3, 0xABC000)
        _ = rig.run([.crAccess(cr: 3, type: .movFromCR, gpr: 13, length: 4)])
        #expect(rig.vcpu.registers.r13 == 0xABC000)
        #expect(rig.rip == 0x1004)
    }

    @Test func cltsClearsTS() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x19)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x39)
        _ = rig.run([.crAccess(cr: 0, type: .clts, length: 2)])
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) == 0x31)
        #expect(rig.rip == 0x1002)
    }

    @Test func lmswLoadsMPEMTSButCannotClearPE() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x1F)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x3F)
        _ = rig.run([.crAccess(cr: 0, type: .lmsw, lmswSource: 0xFFF0)])
        // PE stays 1; MP, EM, TS come from the (zero) source; bits 15:4 are ignored.
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
    }

    @Test func lmswCanSetPE() throws {
        var rig = try VCPURig(.real, rip: 0x7C00)
        _ = rig.run([.crAccess(cr: 0, type: .lmsw, lmswSource: 0x1)])
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) & 1 == 1)
    }

    @Test func movToCR8AboveFifteenRaisesGP() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(8, 16, length: 4)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.rip == 0x1000)
    }

    @Test func cr8KeepsTheTaskPriority() throws {
        var rig = try VCPURig()
        _ = rig.run([.movToCR(8, 9, length: 4), .crAccess(cr: 8, type: .movFromCR, gpr: 2, length: 4)])
        #expect(rig.vcpu.registers.rdx == 9)
        #expect(rig.rip == 0x1008)
    }

    @Test(arguments: [(2, ControlRegisterAccessQualification.AccessType.movToCR), (0, .movFromCR), (4, .movFromCR)])
    func accessesThatCannotExitRaiseUD(cr: Int, type: ControlRegisterAccessQualification.AccessType) throws {
        var rig = try VCPURig()
        _ = rig.run([.crAccess(cr: cr, type: type)])
        #expect(rig.entries[1].injected.raw == injectUD)
    }

    @Test func paePagingLoadsTheFourPDPTEsIntoTheVMCS() throws {
        // SDM 5.4.1 "PDPTE Registers"; with EPT, VM entry loads them from the VMCS (27.3.2.4).
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x8000)
        let pdptes: [UInt64] = [0x9001, 0xA001, 0xB001, 0xC001]
        for (i, e) in pdptes.enumerated() { rig.memory.store64(e, at: 0x8000 + UInt64(i) * 8) }
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.field(VMCSFields.Guest64.pdpte0) == 0x9001)
        #expect(rig.field(VMCSFields.Guest64.pdpte1) == 0xA001)
        #expect(rig.field(VMCSFields.Guest64.pdpte2) == 0xB001)
        #expect(rig.field(VMCSFields.Guest64.pdpte3) == 0xC001)
        #expect(!ia32eMode(rig.hw))
        #expect(rig.rip == 0x1003)
    }

    @Test func paePagingWithTheTableOutsideGuestRAMRaisesGP() throws {
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x7FF0_0000)
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.entries[1].injected.raw == injectGP)
        // The faulting MOV changed nothing: paging is still off.
        #expect(rig.field(VMCSFields.ControlNatural.cr0ReadShadow) == 0x11)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) & CR0Bits.pg.rawValue == 0)
    }

    @Test func movToCR3UnderPAEPagingWithTheTableOutsideGuestRAMRaisesGPAndKeepsCR3() throws {
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x8000_0031)
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x8000_0011)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x8000)
        _ = rig.run([.movToCR(3, 0x7FF0_0000)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0x8000)
        #expect(rig.rip == 0x1000)
    }

    @Test func movToCR3UnderPAEPagingReloadsThePDPTEs() throws {
        // SDM 5.4.1: MOV to CR3 with PAE paging loads the PDPTEs.
        var rig = try VCPURig()
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x8000_0031)
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x8000_0011)
        for i in 0..<4 { rig.memory.store64(0xD001 + UInt64(i) * 0x1000, at: 0xE000 + UInt64(i) * 8) }
        _ = rig.run([.movToCR(3, 0xE000)])
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0xE000)
        #expect(rig.field(VMCSFields.Guest64.pdpte0) == 0xD001)
        #expect(rig.field(VMCSFields.Guest64.pdpte3) == 0x1_0001)
    }
}
