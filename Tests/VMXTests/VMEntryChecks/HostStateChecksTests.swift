import Testing
import TestSupport
import X86Arch
import VMX

// SDM 27.2.2-27.2.4, the host-state area: one broken rule per case.

private typealias C32 = VMCSFields.Control32
private typealias H16 = VMCSFields.Host16
private typealias H64 = VMCSFields.Host64
private typealias HN = VMCSFields.HostNatural

let hostCases: [Breakage] = [
    // 27.2.2 host control registers and MSRs.
    brk("host CR0.NE clear", .long, HN.cr0, 0x8001_0013, .hostCR0FixedBits),
    brk("host CR4.VMXE clear", .long, HN.cr4, 0x0620, .hostCR4FixedBits),
    brk("host CR3 beyond MAXPHYADDR", .long, HN.cr3, 1 << 40 | 0x1000, .hostCR3Width),
    brk("host SYSENTER_ESP not canonical", .long, HN.ia32SysenterESP, 0x0000_8000_0000_0000, .hostSysenterNotCanonical),
    brk("host SYSENTER_EIP not canonical", .long, HN.ia32SysenterEIP, 0xFFFF_7FFF_FFFF_0000, .hostSysenterNotCanonical),
    brk("host PAT byte 2", .long, H64.ia32PAT, 0x0007_0406_0007_0402, .hostPATInvalid),
    brk("host EFER reserved bit 1", .long, H64.ia32EFER, 0xD02, .hostEFERReservedBits),
    brk("host EFER LME without LMA", .long, H64.ia32EFER, 0x900, .hostEFERModeMismatch),
    brk("32-bit host EFER.LMA", .host32, H64.ia32EFER, 0x500, .hostEFERModeMismatch),
    // 27.2.3 host segment and descriptor-table registers.
    brk("host DS RPL 3", .long, H16.dsSelector, 0x13, .hostSelectorRPLOrTI),
    brk("host TR TI set", .long, H16.trSelector, 0x1C, .hostSelectorRPLOrTI),
    brk("host CS 0", .long, H16.csSelector, 0, .hostCSNull),
    brk("host TR 0", .long, H16.trSelector, 0, .hostTRNull),
    brk("32-bit host SS 0", .host32, H16.ssSelector, 0, .hostSSNull),
    brk("host GS base not canonical", .long, HN.gsBase, 0x8000_0000_0000_0000, .hostBaseNotCanonical),
    brk("host IDTR base not canonical", .long, HN.idtrBase, 0x0001_0000_0000_0000, .hostBaseNotCanonical),
    // 27.2.4 address-space size.
    brk("64-bit processor, host address-space size 0", .real, reported: C32.primaryExitControls,
        .hostAddressSpaceSizeRequired, orBits(C32.primaryExitControls, 0, clear: 1 << 9 | 1 << 21)),
    brk("IA-32e mode guest from a 32-bit processor", .long, reported: C32.entryControls, .ia32eModeGuestOutsideIA32eMode,
        { _, env in env.processorInIA32eMode = false }),
    brk("host address-space size from a 32-bit processor", .real, reported: C32.primaryExitControls,
        .hostAddressSpaceSizeOutsideIA32eMode, { _, env in env.processorInIA32eMode = false }),
    brk("64-bit host without CR4.PAE", .long, HN.cr4, 0x2600, .hostCR4PAERequired),
    brk("64-bit host RIP not canonical", .long, HN.rip, 0x0000_8000_0000_1000, .hostRIPNotCanonical),
    brk("32-bit host with CR4.PCIDE", .host32, HN.cr4, 0x2_2610, .hostPCIDEWithoutHostAddressSpaceSize),
    brk("32-bit host RIP above 4 GiB", .host32, HN.rip, 0x1_0010_2000, .hostRIPUpperBits),
]
