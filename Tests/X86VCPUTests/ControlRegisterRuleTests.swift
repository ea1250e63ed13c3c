import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// The #GP rules of SDM "MOV—Move to/from Control Registers" and the PDPTE
// rules of SDM 5.4.1 "PDPTE Registers" on exiting writes: each write either
// faults, leaving the state as it was, or leaves a state VM entry accepts.

@Suite struct ControlRegisterRuleTests {
    let vmxe = CR4Bits.vmxe.rawValue, pae = CR4Bits.pae.rawValue, pcide = CR4Bits.pcide.rawValue

    func setCR4(_ rig: borrowing VCPURig, _ value: UInt64) {
        rig.preset(VMCSFields.GuestNatural.cr4, value | vmxe)
        rig.preset(VMCSFields.ControlNatural.cr4ReadShadow, value)
    }

    /// Paging on, PAE off: legacy 32-bit paging.
    func pagingOn(_ rig: borrowing VCPURig) {
        rig.preset(VMCSFields.GuestNatural.cr0, 0x8000_0031)
        rig.preset(VMCSFields.ControlNatural.cr0ReadShadow, 0x8000_0011)
    }

    /// A Skylake-like CPU: VME DE PSE TSC PAE MCE PGE FXSR SSE, PCID and
    /// XSAVE, FSGSBASE SMEP SMAP; no LA57, CET, PKS.
    static func cpu() -> FakeHardware {
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        hw.cpu.setCPUID(leaf: 0, CPUIDResult(eax: 7))
        hw.cpu.setCPUID(leaf: 1, CPUIDResult(ecx: 1 << 5 | 1 << 17 | 1 << 26,
                                              edx: 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 13 | 1 << 24 | 1 << 25))
        hw.cpu.setCPUID(leaf: 7, CPUIDResult(ebx: 1 << 0 | 1 << 7 | 1 << 20))
        return hw
    }

    /// The state VM entry would see passes every check.
    func entryAccepts(_ rig: borrowing VCPURig, sourceLocation: SourceLocation = #_sourceLocation) {
        rig.preset(VMCSFields.HostNatural.cr4, rig.field(VMCSFields.HostNatural.cr4) | vmxe)   // the fake never ran VMXON
        let violation = checkVMEntry(rig.hw.vmcs, capabilities: rig.vcpu.capabilities,
                                     physicalAddressWidth: rig.vcpu.features.physicalAddressBits)
        #expect(violation == nil, "\(violation.map { "\($0.rule)" } ?? "")", sourceLocation: sourceLocation)
    }

    func expectGP(_ rig: borrowing VCPURig, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(rig.entries[1].injected.raw == injectGP, sourceLocation: sourceLocation)
        #expect(rig.rip == 0x1000, sourceLocation: sourceLocation)
    }

    @Test func pcideOutsideIA32eModeRaisesGP() throws {
        var rig = try VCPURig(hw: Self.cpu())
        _ = rig.run([.movToCR(4, pcide)])
        expectGP(rig)
        #expect(rig.field(VMCSFields.GuestNatural.cr4) & pcide == 0)
    }

    @Test func pcideWithCR3LowBitsSetRaisesGPAndWithThemClearIsTaken() throws {
        var rig = try VCPURig(.long64, hw: Self.cpu()) { $0.cr3 = 0x10_0008 }
        _ = rig.run([.movToCR(4, pae | pcide)])
        expectGP(rig)
        var clean = try VCPURig(.long64, hw: Self.cpu()) { $0.cr3 = 0x10_0000 }
        _ = clean.run([.movToCR(4, pae | pcide)])
        #expect(clean.field(VMCSFields.GuestNatural.cr4) & pcide != 0)
        #expect(clean.rip == 0x1003)
        entryAccepts(clean)
    }

    @Test func clearingPagingWithPCIDESetRaisesGP() throws {
        var rig = try VCPURig(.long64, hw: Self.cpu()) { $0.cr3 = 0x10_0000 }
        rig.preset(VMCSFields.Guest32.csAccessRights, 0xC09B)   // compatibility mode
        setCR4(rig, pae | pcide)
        _ = rig.run([.movToCR(0, 0x11)])
        expectGP(rig)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) & CR0Bits.pg.rawValue != 0)
    }

    @Test(arguments: [CR4Bits.cet, .pks, .uintr, .lass, .fred, CR4Bits(rawValue: 1 << 15), CR4Bits(rawValue: 1 << 40)])
    func aBitTheGuestsCPUIDLacksRaisesGP(bit: CR4Bits) throws {
        // In 64-bit mode, where bits 63:32 of the operand reach CR4.
        var rig = try VCPURig(.long64, hw: Self.cpu())
        _ = rig.run([.movToCR(4, bit.rawValue | pae)])
        expectGP(rig)
    }

    @Test func outside64BitModeTheOperandIs32Bits() throws {
        var rig = try VCPURig(hw: Self.cpu())
        _ = rig.run([.movToCR(4, 1 << 40 | CR4Bits.pge.rawValue)])
        #expect(rig.rip == 0x1003)
        #expect(rig.field(VMCSFields.ControlNatural.cr4ReadShadow) == CR4Bits.pge.rawValue)
    }

    @Test func la57ChangedInIA32eModeRaisesGP() throws {
        let hw = Self.cpu()
        hw.cpu.msrs[0x489] = (hw.cpu.msrs[0x489] ?? 0) | CR4Bits.la57.rawValue
        var leaf7 = hw.cpu.cpuid(leaf: 7, subleaf: 0)
        leaf7.ecx |= 1 << 16
        hw.cpu.setCPUID(leaf: 7, leaf7)
        var rig = try VCPURig(.long64, hw: hw)
        _ = rig.run([.movToCR(4, pae | CR4Bits.la57.rawValue)])
        expectGP(rig)
        // Outside IA-32e mode the same bit is the guest's to set.
        var legacy = try VCPURig(hw: hw)
        _ = legacy.run([.movToCR(4, CR4Bits.la57.rawValue)])
        #expect(legacy.field(VMCSFields.GuestNatural.cr4) & CR4Bits.la57.rawValue != 0)
    }

    static let reservedPDPTEBits: [UInt64] = [1 << 1, 1 << 5, 1 << 8, 1 << 63, 1 << 50]

    @Test(arguments: reservedPDPTEBits)
    func enablingPAEPagingWithAReservedPDPTEBitRaisesGP(bit: UInt64) throws {
        let pdpte = 0x9001 | bit
        var rig = try VCPURig(hw: Self.cpu())
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x8000)
        rig.memory.store64(0xA001, at: 0x8000)
        rig.memory.store64(pdpte, at: 0x8008)
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        expectGP(rig)
        #expect(rig.field(VMCSFields.GuestNatural.cr0) & CR0Bits.pg.rawValue == 0)
        #expect(rig.field(VMCSFields.Guest64.pdpte0) == 0)
    }

    @Test func aReservedBitInANotPresentPDPTEIsIgnored() throws {
        var rig = try VCPURig(hw: Self.cpu())
        setCR4(rig, pae)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x8000)
        rig.memory.store64(0xA001, at: 0x8000)
        rig.memory.store64(0x1E6, at: 0x8008)
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.rip == 0x1003)
        entryAccepts(rig)
    }

    @Test func movToCR3UnderPAEPagingWithAReservedPDPTEBitRaisesGPAndKeepsCR3() throws {
        var rig = try VCPURig(hw: Self.cpu())
        setCR4(rig, pae)
        pagingOn(rig)
        rig.preset(VMCSFields.GuestNatural.cr3, 0x8000)
        rig.memory.store64(0xD001 | 1 << 2 | 1 << 7, at: 0xE000)   // PS (bit 7) is reserved in a PDPTE
        _ = rig.run([.movToCR(3, 0xE000)])
        expectGP(rig)
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0x8000)
    }

    @Test func movToCR4EnablingPAEUnderPagingLoadsThePDPTEs() throws {
        var rig = try VCPURig(hw: Self.cpu())
        pagingOn(rig)
        rig.preset(VMCSFields.GuestNatural.cr3, 0xE000)
        for i in 0..<4 { rig.memory.store64(0xD001 + UInt64(i) * 0x1000, at: 0xE000 + UInt64(i) * 8) }
        _ = rig.run([.movToCR(4, pae)])
        #expect(rig.rip == 0x1003)
        #expect(rig.field(VMCSFields.Guest64.pdpte0) == 0xD001)
        #expect(rig.field(VMCSFields.Guest64.pdpte3) == 0x1_0001)
        entryAccepts(rig)
    }

    @Test func movToCR4EnablingPAEUnderPagingWithAReservedPDPTERaisesGP() throws {
        var rig = try VCPURig(hw: Self.cpu())
        pagingOn(rig)
        rig.preset(VMCSFields.GuestNatural.cr3, 0xE000)
        rig.memory.store64(0xD001 | 1 << 6, at: 0xE000)
        _ = rig.run([.movToCR(4, pae)])
        expectGP(rig)
        #expect(rig.field(VMCSFields.GuestNatural.cr4) & pae == 0)
    }

    @Test func cr3BeyondThePhysicalAddressWidthRaisesGPInIA32eMode() throws {
        var rig = try VCPURig(.long64, hw: Self.cpu())
        let width = rig.vcpu.features.physicalAddressBits
        #expect(width < 52)
        _ = rig.run([.movToCR(3, 1 << UInt64(width))])
        expectGP(rig)
    }

    @Test func cr3Bit63IsTheNoFlushHintWithPCIDEAndReservedWithout() throws {
        var rig = try VCPURig(.long64, hw: Self.cpu()) { $0.cr3 = 0x10_0000 }
        setCR4(rig, pae | pcide)
        _ = rig.run([.movToCR(3, 1 << 63 | 0x20_0005)])
        #expect(rig.field(VMCSFields.GuestNatural.cr3) == 0x20_0005)
        #expect(rig.rip == 0x1003)
        var plain = try VCPURig(.long64, hw: Self.cpu())
        _ = plain.run([.movToCR(3, 1 << 63 | 0x20_0000)])
        expectGP(plain)
    }

    @Test func activatingIA32eModeWithA16BitTSSInTRGivesTRThe64BitType() throws {
        var rig = try VCPURig(hw: Self.cpu())
        rig.preset(VMCSFields.Guest64.ia32EFER, EFER.lme.rawValue)
        rig.preset(VMCSFields.Guest32.trAccessRights, 0x83)   // 16-bit busy TSS, as real mode leaves it
        setCR4(rig, pae)
        _ = rig.run([.movToCR(0, 0x8000_0011)])
        #expect(rig.rip == 0x1003)
        #expect(rig.field(VMCSFields.Guest32.trAccessRights) == 0x8B)
        entryAccepts(rig)
    }
}

/// Event injection reads the guest's mode from the real CR0, which a PE flip
/// without an exit changes while the read shadow keeps the old value.
@Suite struct InjectionModeTests {
    @Test func aProtectedModeGuestWithAStaleRealModeShadowGetsTheErrorCode() throws {
        var rig = try VCPURig(.real, rip: 0x7C00)
        rig.preset(VMCSFields.GuestNatural.cr0, 0x31)   // PE set by the guest without an exit
        _ = rig.run([ScriptedExit.wrmsr(0x1234_5678, 0)])
        #expect(rig.entries[1].injected.raw == injectGP)
        #expect(rig.entries[1].exceptionErrorCode == 0)
    }

    @Test func aRealModeGuestWithAStaleProtectedShadowGetsNoErrorCode() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.cr0, 0x30)   // PE cleared without an exit
        _ = rig.run([ScriptedExit.wrmsr(0x1234_5678, 0)])
        #expect(rig.entries[1].injected.raw == 0x8000_030D)   // #GP, no error code
    }
}

@Suite struct SingleStepTests {
    @Test func anEmulatedInstructionWithTFEndsInAPendingSingleStep() throws {
        var rig = try VCPURig()
        rig.preset(VMCSFields.GuestNatural.rflags, 0x102)
        _ = rig.run([.cpuid(leaf: 0)])
        #expect(rig.field(VMCSFields.GuestNatural.pendingDebugExceptions) & (1 << 14) != 0)
        #expect(rig.rip == 0x1002)
    }

    @Test func withoutTFNothingIsPending() throws {
        var rig = try VCPURig()
        _ = rig.run([.cpuid(leaf: 0)])
        #expect(rig.field(VMCSFields.GuestNatural.pendingDebugExceptions) == 0)
    }
}
