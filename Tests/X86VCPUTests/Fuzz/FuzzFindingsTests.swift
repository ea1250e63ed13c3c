import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// One minimal regression test per class of failure the handler fuzzer found;
// each failed before its fix. A new finding lands here `.disabled`, with a
// skip entry in KnownFuzzFindings.swift, until its fix. "Fuzz case" names a
// case seed that showed the class: `make fuzz REPLAY=<seed>`.

@Suite struct FuzzFindingsTests {
    typealias GN = VMCSFields.GuestNatural
    typealias CN = VMCSFields.ControlNatural

    /// The VMCS of the last VM entry (whose injection the fake has since
    /// marked delivered) against every VM-entry check.
    func lastEntryViolation(_ rig: borrowing VCPURig) -> VMEntryViolation? {
        let field = VMCSFields.Control32.entryInterruptionInformation
        let cleared = UInt32(rig.field(field))
        rig.preset(field, rig.entries.last?.interruptionInformation ?? 0)
        defer { rig.preset(field, cleared) }
        return VMEntryChecker(vmcs: rig.hw.vmcs, capabilities: rig.vcpu.capabilities,
                              physicalAddressWidth: FuzzCase.physicalAddressWidth).check()
    }

    /// A rig whose host is in VMX operation (CR4.VMXE), so host state passes the checker.
    func rig(_ mode: GuestStartMode) throws -> VCPURig {
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        hw.cpu.cr4 |= Bit.vmxe
        return try VCPURig(mode, hw: hw)
    }

    @Test("finding 1: SDM 27.2.1.3: deliver-error-code follows guest CR0.PE, not the CR0 read shadow")
    func injectionTakesProtectedModeFromGuestCR0() throws {
        // Fuzz case 0x1143931B67278D. CR0.PE is the guest's (not in the mask):
        // the shadow's PE is whatever was last written, here 0.
        var rig = try rig(.protected32)
        rig.preset(CN.cr0ReadShadow, 0x10)
        rig.queue(.exception(.generalProtection, errorCode: 0))
        _ = rig.run([])
        #expect(rig.entries[0].interruptionInformation == injectGP)
        #expect(lastEntryViolation(rig) == nil)
    }

    @Test("finding 2: SDM MOV CR: outside 64-bit mode the operand is 32 bits")
    func movToCR3InProtectedModeTakesEAX() throws {
        // Fuzz case 0x27742B941B06E3. The upper half of RAX is left from earlier 64-bit code.
        var rig = try rig(.protected32)
        _ = rig.run([.movToCR(3, 0xDEAD_BEEF_0000_3000)])
        #expect(rig.field(GN.cr3) == 0x3000)
        #expect(lastEntryViolation(rig) == nil)
    }

    @Test("finding 3: SDM MOV CR3: #GP(0) for a 1 in a reserved bit (63:MAXPHYADDR) in 64-bit mode")
    func movToCR3WithReservedBitsRaisesGP() throws {
        // Fuzz case 0x13FD24209D8BAB8C.
        var rig = try rig(.long64)
        let old = rig.field(GN.cr3)
        _ = rig.run([.movToCR(3, 1 << 55 | 0x2000)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(rig.field(GN.cr3) == old)
    }

    @Test("finding 4: SDM MOV CR4: #GP(0) setting CR4.PCIDE outside IA-32e mode")
    func movToCR4PCIDEOutsideIA32eModeRaisesGP() throws {
        // Fuzz case 0x4A3055DC34C85E1.
        var rig = try rig(.protected32)
        _ = rig.run([.movToCR(4, Bit.pcide)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(rig.field(CN.cr4ReadShadow) & Bit.pcide == 0)
    }

    @Test("finding 5: SDM 5.4.1: loading PAE PDPTEs #GP(0) if a present PDPTE has a reserved bit set")
    func movToCR3LoadingReservedPDPTERaisesGP() throws {
        // Fuzz case 0x523B983FD08AEA9. PAE paging; the new table's first entry sets reserved bit 1.
        var rig = try rig(.protected32)
        rig.preset(GN.cr0, 0x8000_0031)
        rig.preset(CN.cr0ReadShadow, 0x8000_0031)
        rig.preset(GN.cr4, Bit.pae | Bit.vmxe)
        rig.preset(CN.cr4ReadShadow, Bit.pae)
        rig.memory.store64(0x5003, at: 0x3000)
        _ = rig.run([.movToCR(3, 0x3000)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(lastEntryViolation(rig) == nil)
    }

    @Test("finding 6: SDM WRMSR: #GP(0) for a non-canonical FS/GS base or SYSENTER_ESP/EIP")
    func wrmsrOfNonCanonicalBaseRaisesGP() throws {
        // Fuzz case 0xDEAF68223C536B.
        var rig = try rig(.long64)
        _ = rig.run([.wrmsr(0xC000_0100, 0x8000_0000_0000_0000)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(rig.field(GN.fsBase) == 0)
    }

    @Test("finding 7: SDM 27.3.1.5: in the HLT state, pending-debug BS must be 1 when RFLAGS.TF = 1")
    func hltWithTrapFlagKeepsTheEntryValid() throws {
        // Fuzz case 0x6006C78ACEA78D9: HLT single-stepped, the guest waits for its interrupts.
        var rig = try rig(.protected32)
        rig.vcpu.reflectsExternalInterrupts = true
        rig.preset(GN.rflags, 0x2 | Bit.ifl | Bit.tf)
        _ = rig.run([.hlt()])
        #expect(rig.entries.count == 2)
        #expect(lastEntryViolation(rig) == nil)
    }

    @Test("finding 8: SDM MOV CR0: #GP(0) on clearing CR0.PG while CR4.PCIDE = 1")
    func pagingOffWithPCIDERaisesGP() throws {
        // Fuzz case 0x194A6C9D52C4FC1: compatibility mode may leave IA-32e mode, not with PCIDE.
        var rig = try rig(.long64)
        rig.preset(VMCSFields.Guest32.csAccessRights, 0xC09B)
        rig.preset(GN.cr4, Bit.pae | Bit.pcide | Bit.vmxe)
        rig.preset(CN.cr4ReadShadow, Bit.pae | Bit.pcide)
        _ = rig.run([.movToCR(0, 0x11)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(rig.field(VMCSFields.Guest64.ia32EFER) & Bit.lma != 0)
    }
}

extension FuzzFindingsTests {
    /// REP OUTSB or INSB of 2 bytes with 32-bit addressing; `segment` as instruction information bits 17:15.
    func string(in isIn: Bool, segment: UInt32) -> ScriptedExit {
        ScriptedExit.io(port: 0x80, width: .byte, in: isIn, string: true, rep: true, length: 2)
            .with { $0.instructionInformation = 1 << 7 | segment << 15 }
            .then { r, _ in r.rcx = 2; r.rsi = 0x3000; r.rdi = 0x3000 }
    }

    @Test("finding 9: SDM 3.4.2.1: in 64-bit mode the DS and ES bases are treated as 0")
    func insIn64BitModeIgnoresTheESBase() throws {
        // Fuzz case 0x187DAD15EED74B4.
        var rig = try rig(.long64)
        rig.preset(GN.cr3, 0x1000)                // identity map of the first 2 MiB
        rig.memory.store64(0x2003, at: 0x1000)
        rig.memory.store64(0x4003, at: 0x2000)
        rig.memory.store64(0x83, at: 0x4000)
        rig.preset(GN.esBase, 0x10_0000)
        rig.platform.inValues = [0x80: [0x41, 0x42]]
        _ = rig.run([string(in: true, segment: 0)])
        #expect(rig.memory.load8(0x3000) == 0x41)
        #expect(rig.memory.load8(0x10_3000) == 0)
    }

    @Test("finding 10: SDM OUTS: a segment prefix overrides DS (instruction information bits 17:15)")
    func outsHonoursTheSegmentOverride() throws {
        // Fuzz case 0x3DBF69DF1A97416 class: OUTSB FS:[ESI] in protected mode, FS base 0.
        var rig = try rig(.protected32)
        rig.preset(GN.dsBase, 0x10_0000)
        rig.memory.store([0x41, 0x42], at: 0x3000)
        _ = rig.run([string(in: false, segment: 4)])
        #expect(rig.platform.outs.map(\.value) == [0x41, 0x42])
    }
}

extension FuzzFindingsTests {
    /// A rig on a CPU whose IA32_VMX_CR4_FIXED1 also allows UMIP, LA57, PKE and CET.
    func wideRig(_ mode: GuestStartMode) throws -> VCPURig {
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        hw.cpu.cr4 |= Bit.vmxe
        hw.cpu.msrs[0x489, default: 0] |= FuzzCase.wideCR4Bits
        return try VCPURig(mode, hw: hw)
    }

    @Test("finding 11: SDM MOV CR4: #GP(0) setting CR4.CET while CR0.WP = 0")
    func cetWithoutWriteProtectRaisesGP() throws {
        // Fuzz case 0x8BF569635CBF5BF (protected32 starts with CR0.WP = 0).
        var rig = try wideRig(.protected32)
        _ = rig.run([.movToCR(4, Bit.cet)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(lastEntryViolation(rig) == nil)
    }

    @Test("finding 12: SDM MOV CR4: #GP(0) on an attempt to change CR4.LA57 in IA-32e mode")
    func la57ChangeInIA32eModeRaisesGP() throws {
        // Fuzz case 0x7B370A8270A37030.
        var rig = try wideRig(.long64)
        _ = rig.run([.movToCR(4, Bit.pae | Bit.la57)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(rig.field(CN.cr4ReadShadow) & Bit.la57 == 0)
    }

    @Test("finding 13: SDM MOV CR4: #GP(0) setting CR4.PCIDE while CR3[11:0] != 0")
    func pcideWithCR3LowBitsRaisesGP() throws {
        // Fuzz case 0x11C05BE0201CE21E: CR3.PCD set, then PCIDE.
        var rig = try rig(.long64)
        rig.preset(GN.cr3, 0x1010)
        _ = rig.run([.movToCR(4, Bit.pae | Bit.pcide)])
        #expect(rig.entries[1].interruptionInformation == injectGP)
        #expect(rig.field(CN.cr4ReadShadow) & Bit.pcide == 0)
    }
}
