// SDM 27.2.2-27.2.4: the host-state area's control registers, MSRs, segment
// and descriptor-table registers, and address-space size. A violation here is
// VMfailValid 8.

import X86Arch

extension VMEntryRule {
    // SDM 27.2.2
    public static let hostCR0FixedBits = VMEntryRule(.hostControlRegistersAndMSRs,
        "host CR0: every bit must be a value IA32_VMX_CR0_FIXED0/FIXED1 allow")
    public static let hostCR4FixedBits = VMEntryRule(.hostControlRegistersAndMSRs,
        "host CR4: every bit must be a value IA32_VMX_CR4_FIXED0/FIXED1 allow")
    public static let hostCR3Width = VMEntryRule(.hostControlRegistersAndMSRs,
        "host CR3: bits beyond the physical-address width must be 0")
    public static let hostSysenterNotCanonical = VMEntryRule(.hostControlRegistersAndMSRs,
        "host IA32_SYSENTER_ESP and IA32_SYSENTER_EIP must be canonical")
    public static let hostPATInvalid = VMEntryRule(.hostControlRegistersAndMSRs,
        "host IA32_PAT: every byte must be 0, 1, 4, 5, 6 or 7 when load IA32_PAT (exit) is 1")
    public static let hostEFERReservedBits = VMEntryRule(.hostControlRegistersAndMSRs,
        "host IA32_EFER: reserved bits must be 0 when load IA32_EFER (exit) is 1")
    public static let hostEFERModeMismatch = VMEntryRule(.hostControlRegistersAndMSRs,
        "host IA32_EFER: LMA and LME must each equal host address-space size when load IA32_EFER (exit) is 1")

    // SDM 27.2.3
    public static let hostSelectorRPLOrTI = VMEntryRule(.hostSegments,
        "host ES, CS, SS, DS, FS, GS and TR selectors: RPL and TI (bits 2:0) must be 0")
    public static let hostCSNull = VMEntryRule(.hostSegments,
        "host CS selector must not be 0000H")
    public static let hostTRNull = VMEntryRule(.hostSegments,
        "host TR selector must not be 0000H")
    public static let hostSSNull = VMEntryRule(.hostSegments,
        "host SS selector must not be 0000H when host address-space size is 0")
    public static let hostBaseNotCanonical = VMEntryRule(.hostSegments,
        "host FS, GS, GDTR, IDTR and TR bases must be canonical")

    // SDM 27.2.4
    public static let ia32eModeGuestOutsideIA32eMode = VMEntryRule(.addressSpaceSize,
        "IA-32e mode guest must be 0 when VM entry runs outside IA-32e mode")
    public static let hostAddressSpaceSizeOutsideIA32eMode = VMEntryRule(.addressSpaceSize,
        "host address-space size must be 0 when VM entry runs outside IA-32e mode")
    public static let hostAddressSpaceSizeRequired = VMEntryRule(.addressSpaceSize,
        "host address-space size must be 1 when VM entry runs in IA-32e mode")
    public static let hostPCIDEWithoutHostAddressSpaceSize = VMEntryRule(.addressSpaceSize,
        "host CR4.PCIDE must be 0 when host address-space size is 0")
    public static let hostRIPUpperBits = VMEntryRule(.addressSpaceSize,
        "host RIP: bits 63:32 must be 0 when host address-space size is 0")
    public static let hostCR4PAERequired = VMEntryRule(.addressSpaceSize,
        "host CR4.PAE must be 1 when host address-space size is 1")
    public static let hostRIPNotCanonical = VMEntryRule(.addressSpaceSize,
        "host RIP must be canonical when host address-space size is 1")
}

extension VMEntryChecker {
    func checkHostState(_ c: Controls) throws(VMEntryViolation) {
        let hostAS = c.hostAddressSpaceSize
        // SDM 27.2.2 "Checks on Host Control Registers, MSRs, and SSP".
        let cr0 = try read(VMCSFields.HostNatural.cr0)
        try require(capabilities.cr0Fixed.isValid(cr0), .hostCR0FixedBits, VMCSFields.HostNatural.cr0, cr0)
        let cr4 = try read(VMCSFields.HostNatural.cr4)
        try require(capabilities.cr4Fixed.isValid(cr4), .hostCR4FixedBits, VMCSFields.HostNatural.cr4, cr4)
        let cr3 = try read(VMCSFields.HostNatural.cr3)
        try require(fits(cr3, width: physicalAddressWidth), .hostCR3Width, VMCSFields.HostNatural.cr3, cr3)
        let sysenterESP = try read(VMCSFields.HostNatural.ia32SysenterESP)
        try require(canonical(sysenterESP), .hostSysenterNotCanonical, VMCSFields.HostNatural.ia32SysenterESP, sysenterESP)
        let sysenterEIP = try read(VMCSFields.HostNatural.ia32SysenterEIP)
        try require(canonical(sysenterEIP), .hostSysenterNotCanonical, VMCSFields.HostNatural.ia32SysenterEIP, sysenterEIP)
        if c.exit.contains(.loadIA32PAT) {
            let pat = try read(VMCSFields.Host64.ia32PAT)
            try require(PAT(rawValue: pat).isValid, .hostPATInvalid, VMCSFields.Host64.ia32PAT, pat)
        }
        if c.exit.contains(.loadIA32EFER) {
            let field = VMCSFields.Host64.ia32EFER
            let efer = try read(field)
            try require(efer & Self.eferReservedBits == 0, .hostEFERReservedBits, field, efer)
            let lma = efer & EFER.lma.rawValue != 0, lme = efer & EFER.lme.rawValue != 0
            try require(lma == hostAS && lme == hostAS, .hostEFERModeMismatch, field, efer)
        }

        // SDM 27.2.3 "Checks on Host Segment and Descriptor-Table Registers".
        try checkHostSelector(VMCSFields.Host16.esSelector)
        let cs = try checkHostSelector(VMCSFields.Host16.csSelector)
        let ss = try checkHostSelector(VMCSFields.Host16.ssSelector)
        try checkHostSelector(VMCSFields.Host16.dsSelector)
        try checkHostSelector(VMCSFields.Host16.fsSelector)
        try checkHostSelector(VMCSFields.Host16.gsSelector)
        let tr = try checkHostSelector(VMCSFields.Host16.trSelector)
        try require(cs != 0, .hostCSNull, VMCSFields.Host16.csSelector, cs)
        try require(tr != 0, .hostTRNull, VMCSFields.Host16.trSelector, tr)
        try require(hostAS || ss != 0, .hostSSNull, VMCSFields.Host16.ssSelector, ss)
        try checkHostBase(VMCSFields.HostNatural.fsBase)
        try checkHostBase(VMCSFields.HostNatural.gsBase)
        try checkHostBase(VMCSFields.HostNatural.gdtrBase)
        try checkHostBase(VMCSFields.HostNatural.idtrBase)
        try checkHostBase(VMCSFields.HostNatural.trBase)

        // SDM 27.2.4 "Checks Related to Address-Space Size".
        let exitField = VMCSFields.Control32.primaryExitControls
        if processorInIA32eMode {
            try require(hostAS, .hostAddressSpaceSizeRequired, exitField, c.exit.rawValue)
        } else {
            try require(!c.ia32eModeGuest, .ia32eModeGuestOutsideIA32eMode, VMCSFields.Control32.entryControls,
                        c.entry.rawValue)
            try require(!hostAS, .hostAddressSpaceSizeOutsideIA32eMode, exitField, c.exit.rawValue)
        }
        let rip = try read(VMCSFields.HostNatural.rip)
        if hostAS {
            try require(cr4 & CR4Bits.pae.rawValue != 0, .hostCR4PAERequired, VMCSFields.HostNatural.cr4, cr4)
            try require(canonical(rip), .hostRIPNotCanonical, VMCSFields.HostNatural.rip, rip)
        } else {
            try require(cr4 & CR4Bits.pcide.rawValue == 0, .hostPCIDEWithoutHostAddressSpaceSize,
                        VMCSFields.HostNatural.cr4, cr4)
            try require(rip >> 32 == 0, .hostRIPUpperBits, VMCSFields.HostNatural.rip, rip)
        }
    }

    // SDM 27.2.3 "Checks on Host Segment and Descriptor-Table Registers": RPL and TI 0
    @discardableResult
    func checkHostSelector(_ field: VMCSField16) throws(VMEntryViolation) -> UInt16 {
        let selector = try read(field)
        try require(selector & (SegmentSelector.rplMask | SegmentSelector.tableIndicator) == 0, .hostSelectorRPLOrTI, field, selector)
        return selector
    }

    // SDM 27.2.3 "Checks on Host Segment and Descriptor-Table Registers": canonical bases
    func checkHostBase(_ field: VMCSFieldNatural) throws(VMEntryViolation) {
        let base = try read(field)
        try require(canonical(base), .hostBaseNotCanonical, field, base)
    }
}
