import Testing
import TestSupport
import X86Arch
import VMX

// SDM 27.3.1.1-27.3.1.4, the guest registers: one broken rule per case, and
// the register and segment states that must pass.

private typealias C32 = VMCSFields.Control32
private typealias H64 = VMCSFields.Host64
private typealias HN = VMCSFields.HostNatural
private typealias G16 = VMCSFields.Guest16
private typealias G32 = VMCSFields.Guest32
private typealias G64 = VMCSFields.Guest64
private typealias GN = VMCSFields.GuestNatural

let guestRegisterCases: [Breakage] = [
    // 27.3.1.1 control registers, debug registers and MSRs.
    brk("long-mode CR0.NE clear", .long, GN.cr0, 0x8001_0011, .guestCR0FixedBits),
    brk("real mode without unrestricted guest", .longRestricted, GN.cr0, 0x30, .guestCR0FixedBits),
    brk("CR0.PG without PE", .real, GN.cr0, 0x8000_0030, .guestCR0PagingWithoutProtection),
    brk("CR4.VMXE clear", .real, GN.cr4, 0, .guestCR4FixedBits),
    brk("CR4.CET without CR0.WP", .long, GN.cr0, 0x8000_0031, .guestCETWithoutWriteProtect,
        prepare: both({ _, env in
            env.capabilities.cr4Fixed = FixedBits(fixed0: env.capabilities.cr4Fixed.fixed0,
                                                  fixed1: env.capabilities.cr4Fixed.fixed1 | 1 << 23)
        }, set(GN.cr4, 0x80_2020))),
    brk("IA-32e mode guest with paging off", .long, GN.cr0, 0x31, .guestIA32eModeWithoutPaging),
    brk("IA-32e mode guest without PAE", .long, GN.cr4, 0x2000, .guestIA32eModeWithoutPAE),
    brk("CR4.PCIDE in real mode", .real, GN.cr4, 0x2_2000, .guestPCIDEOutsideIA32eMode),
    brk("CR3 beyond MAXPHYADDR", .long, GN.cr3, 1 << 40 | 0x1000, .guestCR3Width),
    brk("DR7 upper half", .long, GN.dr7, 1 << 32 | 0x400, .guestDR7UpperBits),
    brk("SYSENTER_ESP not canonical", .long, GN.ia32SysenterESP, 0x0080_0000_0000_0000, .guestSysenterNotCanonical),
    brk("SYSENTER_EIP not canonical", .real, GN.ia32SysenterEIP, 0x8000_0000_0000_0000, .guestSysenterNotCanonical),
    brk("PAT entry 3 (reserved type)", .long, G64.ia32PAT, 0x0007_0406_0307_0406, .guestPATInvalid),
    brk("EFER reserved bit 12", .long, G64.ia32EFER, 0x1500, .guestEFERReservedBits),
    brk("EFER.LMA in real mode", .real, G64.ia32EFER, 0x400, .guestEFERLMAMismatch),
    brk("EFER.LMA clear in IA-32e mode", .long, G64.ia32EFER, 0x100, .guestEFERLMAMismatch),
    brk("EFER.LME clear with paging", .long, G64.ia32EFER, 0x400, .guestEFERLMEMismatch),
    // 27.3.1.3 descriptor tables.
    brk("GDTR base not canonical", .long, GN.gdtrBase, 0x0000_8000_0000_0000, .guestDescriptorTableBaseNotCanonical),
    brk("IDTR base not canonical", .real, GN.idtrBase, 0x1_0000_0000_0000, .guestDescriptorTableBaseNotCanonical),
    brk("GDTR limit 10000H", .long, G32.gdtrLimit, 0x1_0000, .guestDescriptorTableLimit),
    brk("IDTR limit 10000H", .real, G32.idtrLimit, 0x1_0000, .guestDescriptorTableLimit),
    // 27.3.1.4 RIP and RFLAGS.
    brk("real-mode RIP above 4 GiB", .real, GN.rip, 0x1_0000_7C00, .guestRIPUpperBits),
    brk("64-bit RIP with bit 48 alone set", .long, GN.rip, 0x0001_0000_0000_0000, .guestRIPHighBitsNotIdentical),
    brk("64-bit RIP with bit 63 alone set", .long, GN.rip, 0x8000_0000_0000_0000, .guestRIPHighBitsNotIdentical),
    brk("compatibility-mode RIP above 4 GiB", .long, GN.rip, 0x1_0000_0000, .guestRIPUpperBits,
        prepare: set(G32.csAccessRights, 0xC09B)),
    brk("RFLAGS bit 1 clear", .long, GN.rflags, 0, .guestRFLAGSReservedBits),
    brk("RFLAGS bit 3 set", .real, GN.rflags, 0xA, .guestRFLAGSReservedBits),
    brk("RFLAGS bit 22 set", .long, GN.rflags, 0x40_0002, .guestRFLAGSReservedBits),
    brk("RFLAGS.VM with CR0.PE clear", .virtual8086, reported: GN.rflags, .guestRFLAGSVirtual8086, set(GN.cr0, 0x30)),
    brk("external interrupt with RFLAGS.IF clear", .long, GN.rflags, 0x2, .guestRFLAGSInterruptFlag,
        prepare: both(interruptsEnabled, inject(0x8000_0020))),
]

let guestSegmentCases: [Breakage] = [
    // Selectors.
    brk("TR TI set", .long, G16.trSelector, 0x1C, .guestTRTableIndicator),
    brk("usable LDTR TI set", .long, G16.ldtrSelector, 0x2C, .guestLDTRTableIndicator,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("SS RPL 3 with CS RPL 0", .longRestricted, G16.ssSelector, 0x13, .guestSSRPLNotCSRPL),
    // Bases.
    brk("virtual-8086 DS base not selector << 4", .virtual8086, GN.dsBase, 0x1_0010, .guestVirtual8086Base),
    brk("TR base not canonical", .long, GN.trBase, 0x0000_8000_0000_2000, .guestBaseNotCanonical),
    brk("FS base not canonical", .real, GN.fsBase, 0x8000_0000_0000_0000, .guestBaseNotCanonical),
    brk("usable LDTR base not canonical", .long, GN.ldtrBase, 0x0000_8000_0000_0000, .guestBaseNotCanonical,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("CS base above 4 GiB", .long, GN.csBase, 0x1_0000_0000, .guestBaseUpperBits),
    brk("usable ES base above 4 GiB", .real, GN.esBase, 0x1_0000_0000, .guestBaseUpperBits),
    // Virtual-8086 limits and access rights.
    brk("virtual-8086 SS limit FFFEH", .virtual8086, G32.ssLimit, 0xFFFE, .guestVirtual8086Limit),
    brk("virtual-8086 GS access rights F1H", .virtual8086, G32.gsAccessRights, 0xF1, .guestVirtual8086AccessRights),
    // CS.
    brk("CS type 3 without unrestricted guest", .longRestricted, G32.csAccessRights, 0xA093, .guestCSType),
    brk("CS type 1 without unrestricted guest", .longRestricted, G32.csAccessRights, 0xA091, .guestCSType),
    brk("CS type 1 with unrestricted guest", .real, G32.csAccessRights, 0x91, .guestCSTypeUnrestricted),
    brk("CS system descriptor", .long, G32.csAccessRights, 0xA08B, .guestSegmentNotCodeOrData),
    brk("CS type 3 with DPL 1", .real, G32.csAccessRights, 0xB3, .guestCSDPLForType3),
    brk("non-conforming CS DPL 1, SS DPL 0", .long, G32.csAccessRights, 0xA0BB, .guestCSDPLNonConforming),
    brk("conforming CS DPL 3, SS DPL 0", .long, G32.csAccessRights, 0xA0FF, .guestCSDPLConforming),
    brk("CS not present", .long, G32.csAccessRights, 0xA01B, .guestSegmentNotPresent),
    brk("CS reserved bit 8", .long, G32.csAccessRights, 0xA19B, .guestSegmentReservedBits),
    brk("CS L and D both set", .long, G32.csAccessRights, 0xE09B, .guestCSLongAndDefault),
    brk("CS byte-granular with limit above 1 MiB", .long, G32.csAccessRights, 0x209B, .guestSegmentGranularity),
    // SS.
    brk("SS code type", .long, G32.ssAccessRights, 0xC09B, .guestSSType),
    brk("SS system descriptor", .long, G32.ssAccessRights, 0xC083, .guestSegmentNotCodeOrData),
    brk("SS DPL 3 with RPL 0 (conforming CS)", .longRestricted, G32.ssAccessRights, 0xC0F3, .guestSSDPLNotRPL,
        prepare: set(G32.csAccessRights, 0xA09F)),
    brk("real-mode SS DPL 1", .real, G32.ssAccessRights, 0xB3, .guestSSDPLNotZero,
        prepare: set(G32.csAccessRights, 0x9F)),
    brk("SS not present", .real, G32.ssAccessRights, 0x13, .guestSegmentNotPresent),
    brk("SS byte-granular with a 4 GiB limit", .long, G32.ssAccessRights, 0x4093, .guestSegmentGranularity),
    // DS, ES, FS, GS.
    brk("DS not accessed", .long, G32.dsAccessRights, 0xC092, .guestDataSegmentNotAccessed),
    brk("ES execute-only code", .long, G32.esAccessRights, 0xC099, .guestCodeSegmentNotReadable),
    brk("FS system descriptor", .long, G32.fsAccessRights, 0xC083, .guestSegmentNotCodeOrData),
    brk("DS RPL 3 above DPL 0", .longRestricted, reported: G32.dsAccessRights, .guestDataSegmentDPLBelowRPL,
        set(G16.dsSelector, 0x13)),
    brk("FS not present", .long, G32.fsAccessRights, 0xC013, .guestSegmentNotPresent),
    brk("GS reserved bit 17", .long, G32.gsAccessRights, 0x2_C093, .guestSegmentReservedBits),
    brk("DS page-granular with limit FFFFF000H", .long, reported: G32.dsAccessRights, .guestSegmentGranularity,
        set(G32.dsLimit, 0xFFFF_F000)),
    // TR and LDTR.
    brk("TR 16-bit busy TSS in IA-32e mode", .long, G32.trAccessRights, 0x83, .guestTRType),
    brk("TR available TSS", .real, G32.trAccessRights, 0x89, .guestTRType),
    brk("TR code/data descriptor", .long, G32.trAccessRights, 0x9B, .guestSystemSegmentS),
    brk("TR not present", .long, G32.trAccessRights, 0x0B, .guestSegmentNotPresent),
    brk("TR reserved bit 9", .long, G32.trAccessRights, 0x28B, .guestSegmentReservedBits),
    brk("TR limit above 1 MiB, byte granular", .long, reported: G32.trAccessRights, .guestSegmentGranularity,
        set(G32.trLimit, 0x10_0000)),
    brk("TR unusable", .long, G32.trAccessRights, 0x1_008B, .guestTRUnusable),
    brk("usable LDTR of type 3", .long, G32.ldtrAccessRights, 0x83, .guestLDTRType,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("usable LDTR with S set", .long, G32.ldtrAccessRights, 0x92, .guestSystemSegmentS,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
    brk("usable LDTR not present", .long, G32.ldtrAccessRights, 0x02, .guestSegmentNotPresent,
        prepare: both(set(G32.ldtrAccessRights, 0x82), both(set(G16.ldtrSelector, 0x28), set(G32.ldtrLimit, 0xFFF)))),
]

@Suite struct VMEntryGuestRegisterChecksTests {
    @Test func unrestrictedGuestExemptsPEAndPGButNotNE() {
        var env = Fixture.environment(for: .real)
        let vmcs = Fixture.vmcs(.real)
        #expect(env.check(vmcs) == nil)                         // PE = PG = 0 accepted
        vmcs.preset(GN.cr0, 0x10)
        #expect(env.check(vmcs)?.ruleID == .guestCR0FixedBits)  // NE still required
        // CD and NW are never checked, even where FIXED1 forbids them.
        vmcs.preset(GN.cr0, 0x6000_0030)
        env.capabilities.cr0Fixed = FixedBits(fixed0: 0x8000_0021, fixed1: 0x9FFF_FFFF)
        #expect(env.check(vmcs) == nil)
    }

    @Test func canonicalityFollowsTheLinearAddressWidth() {
        let vmcs = Fixture.vmcs(.long)
        vmcs.preset(GN.rip, 0x00FF_0000_0000_0000)
        let caps = Fixture.skylake()
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40)?.ruleID == .guestRIPHighBitsNotIdentical)
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40, linearAddressWidth: 57) == nil)
        vmcs.preset(GN.rip, 0xFFFF_FFFF_8000_0000)                       // a kernel address
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40) == nil)
        // VM entry checks RIP bits 63:N only: bit 47 alone wrong enters (and faults on the fetch).
        vmcs.preset(GN.rip, 0x0000_8000_0000_0000)
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40) == nil)
        // The host RIP must be truly canonical.
        vmcs.preset(GN.rip, 0x0010_0000)
        vmcs.preset(HN.rip, 0x0000_8000_0000_0000)
        #expect(checkVMEntry(vmcs, capabilities: caps, physicalAddressWidth: 40)?.ruleID == .hostRIPNotCanonical)
    }

    @Test func segmentVariantsThatPass() {
        let env = Fixture.environment(for: .long)
        let cases: [(GuestStateFixture, [(UInt32, UInt64)])] = [
            // Unusable data segments are not checked (a null DS/ES in 64-bit mode).
            (.long, [(G32.dsAccessRights.encoding, 0x1_0000), (GN.dsBase.encoding, 0x1_0000_0000),
                     (G16.dsSelector.encoding, 0)]),
            // A null SS in 64-bit mode (unusable), as after a SYSCALL-less ring transition.
            (.long, [(G32.ssAccessRights.encoding, 0x1_0000), (G16.ssSelector.encoding, 0)]),
            // CS type 3 (data) is allowed in real mode with unrestricted guest, DPL 0.
            (.real, [(G32.csAccessRights.encoding, 0x93)]),
            // A 16-bit busy TSS outside IA-32e mode.
            (.real, [(G32.trAccessRights.encoding, 0x83)]),
            // A usable LDT.
            (.long, [(G32.ldtrAccessRights.encoding, 0x82), (G16.ldtrSelector.encoding, 0x28),
                     (G32.ldtrLimit.encoding, 0xFFF)]),
            // A conforming CS with DPL 0 under SS DPL 0; a readable code segment in FS.
            (.long, [(G32.csAccessRights.encoding, 0xA09F), (G32.fsAccessRights.encoding, 0xC09B)]),
            // EFER.LME set while paging is off (between setting LME and CR0.PG).
            (.real, [(G64.ia32EFER.encoding, 0x100)]),
            // PDPTEs that are not present are not checked.
            (.pae, [(G64.pdpte2.encoding, 0xFFFF_FFFF_FFFF_FFFE)]),
        ]
        for (fixture, fields) in cases {
            let vmcs = Fixture.vmcs(fixture)
            for (encoding, value) in fields { vmcs.preset(encoding, value) }
            let violation = Fixture.environment(for: fixture).check(vmcs)
            #expect(violation == nil, "\(fixture) \(fields): \(violation.map { "\($0.rule)" } ?? "")")
        }
        _ = env
    }

    @Test func disabledLoadControlsSkipTheirFields() {
        // Without "load debug controls", "load IA32_PAT" and "load IA32_EFER"
        // (entry and exit), DR7, PAT and EFER fields are not checked.
        let vmcs = Fixture.vmcs(.long)
        let entry = UInt32(vmcs.value(C32.entryControls) ?? 0) & ~(1 << 2 | 1 << 14 | 1 << 15)
        vmcs.preset(C32.entryControls, entry)
        let exit = UInt32(vmcs.value(C32.primaryExitControls) ?? 0) & ~(1 << 19 | 1 << 21)
        vmcs.preset(C32.primaryExitControls, exit)
        vmcs.preset(GN.dr7, 1 << 40)
        vmcs.preset(G64.ia32PAT, 0x0202_0202_0202_0202)
        vmcs.preset(G64.ia32EFER, 0xFFFF)
        vmcs.preset(H64.ia32PAT, 0x0202_0202_0202_0202)
        vmcs.preset(H64.ia32EFER, 0xFFFF)
        #expect(Fixture.environment(for: .long).check(vmcs) == nil)
    }

    @Test func segmentAccessRightsDecodeTable25_2() {
        let code = SegmentAccessRights(rawValue: 0xA09B)
        #expect(code.type == 11 && code.isCodeOrData && code.dpl == 0 && code.isPresent)
        #expect(code.isLong && !code.isDefaultBig && code.isPageGranular && !code.isUnusable)
        #expect(code.reservedBits == 0)
        let odd = SegmentAccessRights(rawValue: 0x3_5F60)
        #expect(odd.type == 0 && !odd.isCodeOrData && odd.dpl == 3 && !odd.isPresent)
        #expect(odd.isDefaultBig && !odd.isPageGranular && odd.isUnusable && odd.reservedBits == 0x2_0F00)
    }
}
