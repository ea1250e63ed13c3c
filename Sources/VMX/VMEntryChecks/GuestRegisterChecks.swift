// SDM 27.3.1.1-27.3.1.4: the guest-state area's registers (control and debug
// registers, MSRs, segment and descriptor-table registers, RIP and RFLAGS). A
// violation here is a VM exit with reason 33.

import X86Arch

extension VMEntryRule {
    // SDM 27.3.1.1
    public static let guestCR0FixedBits = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR0: every bit must be a value IA32_VMX_CR0_FIXED0/FIXED1 allow (PE and PG exempt with unrestricted guest, NW and CD never checked)")
    public static let guestCR0PagingWithoutProtection = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR0: PG set requires PE set")
    public static let guestCR4FixedBits = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR4: every bit must be a value IA32_VMX_CR4_FIXED0/FIXED1 allow")
    public static let guestCETWithoutWriteProtect = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR4.CET set requires CR0.WP set")
    public static let guestIA32eModeWithoutPaging = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR0.PG must be 1 when IA-32e mode guest is 1")
    public static let guestIA32eModeWithoutPAE = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR4.PAE must be 1 when IA-32e mode guest is 1")
    public static let guestPCIDEOutsideIA32eMode = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR4.PCIDE must be 0 when IA-32e mode guest is 0")
    public static let guestCR3Width = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest CR3: bits beyond the physical-address width must be 0")
    public static let guestDR7UpperBits = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest DR7: bits 63:32 must be 0 when load debug controls is 1")
    public static let guestSysenterNotCanonical = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest IA32_SYSENTER_ESP and IA32_SYSENTER_EIP must be canonical")
    public static let guestPATInvalid = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest IA32_PAT: every byte must be 0, 1, 4, 5, 6 or 7 when load IA32_PAT (entry) is 1")
    public static let guestEFERReservedBits = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest IA32_EFER: reserved bits must be 0 when load IA32_EFER (entry) is 1")
    public static let guestEFERLMAMismatch = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest IA32_EFER.LMA must equal IA-32e mode guest when load IA32_EFER (entry) is 1")
    public static let guestEFERLMEMismatch = VMEntryRule(.guestControlRegistersAndMSRs,
        "guest IA32_EFER.LME must equal LMA when guest CR0.PG is 1 and load IA32_EFER (entry) is 1")

    // SDM 27.3.1.2
    public static let guestTRTableIndicator = VMEntryRule(.guestSegments,
        "guest TR selector: TI (bit 2) must be 0")
    public static let guestLDTRTableIndicator = VMEntryRule(.guestSegments,
        "guest LDTR selector: TI (bit 2) must be 0 when LDTR is usable")
    public static let guestSSRPLNotCSRPL = VMEntryRule(.guestSegments,
        "guest SS selector: RPL must equal CS RPL when neither virtual-8086 nor unrestricted guest")
    public static let guestVirtual8086Base = VMEntryRule(.guestSegments,
        "guest segment base must be the selector shifted left 4 bits in virtual-8086 mode")
    public static let guestBaseNotCanonical = VMEntryRule(.guestSegments,
        "guest TR, FS, GS and usable LDTR bases must be canonical")
    public static let guestBaseUpperBits = VMEntryRule(.guestSegments,
        "guest CS base, and SS, DS, ES bases when usable: bits 63:32 must be 0")
    public static let guestVirtual8086Limit = VMEntryRule(.guestSegments,
        "guest segment limit must be 0000FFFFH in virtual-8086 mode")
    public static let guestVirtual8086AccessRights = VMEntryRule(.guestSegments,
        "guest segment access rights must be 000000F3H in virtual-8086 mode")
    public static let guestCSType = VMEntryRule(.guestSegments,
        "guest CS access rights: type must be 9, 11, 13 or 15 when unrestricted guest is off")
    public static let guestCSTypeUnrestricted = VMEntryRule(.guestSegments,
        "guest CS access rights: type must be 3, 9, 11, 13 or 15 with unrestricted guest")
    public static let guestSSType = VMEntryRule(.guestSegments,
        "guest SS access rights: type must be 3 or 7 when SS is usable")
    public static let guestDataSegmentNotAccessed = VMEntryRule(.guestSegments,
        "guest DS, ES, FS, GS access rights: type bit 0 (accessed) must be 1 when usable")
    public static let guestCodeSegmentNotReadable = VMEntryRule(.guestSegments,
        "guest DS, ES, FS, GS access rights: a code type (bit 3) must be readable (bit 1) when usable")
    public static let guestSegmentNotCodeOrData = VMEntryRule(.guestSegments,
        "guest CS, and SS, DS, ES, FS, GS when usable, access rights: S (bit 4) must be 1")
    public static let guestCSDPLForType3 = VMEntryRule(.guestSegments,
        "guest CS access rights: DPL must be 0 when the type is 3")
    public static let guestCSDPLNonConforming = VMEntryRule(.guestSegments,
        "guest CS access rights: DPL must equal SS DPL when the type is 9 or 11 (non-conforming)")
    public static let guestCSDPLConforming = VMEntryRule(.guestSegments,
        "guest CS access rights: DPL must not exceed SS DPL when the type is 13 or 15 (conforming)")
    public static let guestSSDPLNotRPL = VMEntryRule(.guestSegments,
        "guest SS access rights: DPL must equal the selector RPL when unrestricted guest is off")
    public static let guestSSDPLNotZero = VMEntryRule(.guestSegments,
        "guest SS access rights: DPL must be 0 when CS type is 3 or CR0.PE is 0")
    public static let guestDataSegmentDPLBelowRPL = VMEntryRule(.guestSegments,
        "guest DS, ES, FS, GS access rights: DPL must not be less than RPL for a usable data or non-conforming code segment when unrestricted guest is off")
    public static let guestSegmentNotPresent = VMEntryRule(.guestSegments,
        "guest segment access rights: P (bit 7) must be 1 for CS, TR and every usable segment")
    public static let guestSegmentReservedBits = VMEntryRule(.guestSegments,
        "guest segment access rights: reserved bits 11:8 and 31:17 must be 0 for CS, TR and every usable segment")
    public static let guestCSLongAndDefault = VMEntryRule(.guestSegments,
        "guest CS access rights: L and D/B must not both be 1 when IA-32e mode guest is 1")
    public static let guestSegmentGranularity = VMEntryRule(.guestSegments,
        "guest segment access rights: G must be 0 if any limit bit 11:0 is 0, and 1 if any limit bit 31:20 is 1")
    public static let guestTRUnusable = VMEntryRule(.guestSegments,
        "guest TR access rights: the unusable bit (16) must be 0")
    public static let guestTRType = VMEntryRule(.guestSegments,
        "guest TR access rights: type must be 11 (busy 32/64-bit TSS), or 3 (busy 16-bit TSS) when IA-32e mode guest is 0")
    public static let guestLDTRType = VMEntryRule(.guestSegments,
        "guest LDTR access rights: type must be 2 (LDT) when LDTR is usable")
    public static let guestSystemSegmentS = VMEntryRule(.guestSegments,
        "guest TR, and LDTR when usable, access rights: S (bit 4) must be 0")

    // SDM 27.3.1.3
    public static let guestDescriptorTableBaseNotCanonical = VMEntryRule(.guestDescriptorTables,
        "guest GDTR and IDTR bases must be canonical")
    public static let guestDescriptorTableLimit = VMEntryRule(.guestDescriptorTables,
        "guest GDTR and IDTR limits: bits 31:16 must be 0")

    // SDM 27.3.1.4
    public static let guestRIPUpperBits = VMEntryRule(.guestRIPAndRFLAGS,
        "guest RIP: bits 63:32 must be 0 when IA-32e mode guest is 0 or CS.L is 0")
    public static let guestRIPHighBitsNotIdentical = VMEntryRule(.guestRIPAndRFLAGS,
        "guest RIP: bits 63:N (N = linear-address width) must be identical when IA-32e mode guest is 1 and CS.L is 1")
    public static let guestRFLAGSReservedBits = VMEntryRule(.guestRIPAndRFLAGS,
        "guest RFLAGS: bits 63:22, 15, 5 and 3 must be 0 and bit 1 must be 1")
    public static let guestRFLAGSVirtual8086 = VMEntryRule(.guestRIPAndRFLAGS,
        "guest RFLAGS.VM must be 0 when IA-32e mode guest is 1 or CR0.PE is 0")
    public static let guestRFLAGSInterruptFlag = VMEntryRule(.guestRIPAndRFLAGS,
        "guest RFLAGS.IF must be 1 when an external interrupt is injected")
}

extension VMEntryChecker {
    /// One guest segment register as the VMCS holds it.
    struct Segment {
        var selectorField: VMCSField16
        var baseField: VMCSFieldNatural
        var limitField: VMCSField32
        var rightsField: VMCSField32
        var selector: UInt16 = 0
        var base: UInt64 = 0
        var limit: UInt32 = 0
        var rights = SegmentAccessRights(rawValue: 0)

        var rpl: UInt32 { UInt32(selector & SegmentSelector.rplMask) }
        var usable: Bool { !rights.isUnusable }
    }

    func readSegment(_ selector: VMCSField16, _ base: VMCSFieldNatural, _ limit: VMCSField32,
                     _ rights: VMCSField32) throws(VMEntryViolation) -> Segment {
        var s = Segment(selectorField: selector, baseField: base, limitField: limit, rightsField: rights)
        s.selector = try read(selector)
        s.base = try read(base)
        s.limit = try read(limit)
        s.rights = SegmentAccessRights(rawValue: try read(rights))
        return s
    }

    /// What the later guest-state checks need from the registers.
    struct GuestRegisters {
        var cr0: UInt64
        var cr4: UInt64
        var rflags: UInt64
        var ss: Segment
    }

    func checkGuestRegisters(_ c: Controls) throws(VMEntryViolation) -> GuestRegisters {
        typealias G16 = VMCSFields.Guest16
        typealias G32 = VMCSFields.Guest32
        typealias G64 = VMCSFields.Guest64
        typealias GN = VMCSFields.GuestNatural
        let ia32e = c.ia32eModeGuest

        // SDM 27.3.1.1 "Checks on Guest Control Registers, Debug Registers, and MSRs".
        let cr0 = try read(GN.cr0)
        let pe = CR0Bits.pe.rawValue, pg = CR0Bits.pg.rawValue
        let cr0Rule = c.unrestrictedGuest ? capabilities.cr0Fixed.exempting(mustBeOne: pe | pg) : capabilities.cr0Fixed
        let cr0Violations = cr0Rule.violations(in: cr0) & ~(CR0Bits.nw.rawValue | CR0Bits.cd.rawValue)
        try require(cr0Violations == 0, .guestCR0FixedBits, GN.cr0, cr0)
        try require(cr0 & pg == 0 || cr0 & pe != 0, .guestCR0PagingWithoutProtection, GN.cr0, cr0)
        let cr4 = try read(GN.cr4)
        try require(capabilities.cr4Fixed.isValid(cr4), .guestCR4FixedBits, GN.cr4, cr4)
        try require(cr4 & CR4Bits.cet.rawValue == 0 || cr0 & CR0Bits.wp.rawValue != 0, .guestCETWithoutWriteProtect,
                    GN.cr0, cr0)
        if ia32e {
            try require(cr0 & pg != 0, .guestIA32eModeWithoutPaging, GN.cr0, cr0)
            try require(cr4 & CR4Bits.pae.rawValue != 0, .guestIA32eModeWithoutPAE, GN.cr4, cr4)
        } else {
            try require(cr4 & CR4Bits.pcide.rawValue == 0, .guestPCIDEOutsideIA32eMode, GN.cr4, cr4)
        }
        let cr3 = try read(GN.cr3)
        try require(fits(cr3, width: physicalAddressWidth), .guestCR3Width, GN.cr3, cr3)
        if c.entry.contains(.loadDebugControls) {
            let dr7 = try read(GN.dr7)
            try require(dr7 & DR7.reservedHigh == 0, .guestDR7UpperBits, GN.dr7, dr7)
        }
        let sysenterESP = try read(GN.ia32SysenterESP)
        try require(canonical(sysenterESP), .guestSysenterNotCanonical, GN.ia32SysenterESP, sysenterESP)
        let sysenterEIP = try read(GN.ia32SysenterEIP)
        try require(canonical(sysenterEIP), .guestSysenterNotCanonical, GN.ia32SysenterEIP, sysenterEIP)
        if c.entry.contains(.loadIA32PAT) {
            let pat = try read(G64.ia32PAT)
            try require(PAT(rawValue: pat).isValid, .guestPATInvalid, G64.ia32PAT, pat)
        }
        if c.entry.contains(.loadIA32EFER) {
            let efer = try read(G64.ia32EFER)
            try require(efer & Self.eferReservedBits == 0, .guestEFERReservedBits, G64.ia32EFER, efer)
            let lma = efer & EFER.lma.rawValue != 0, lme = efer & EFER.lme.rawValue != 0
            try require(lma == ia32e, .guestEFERLMAMismatch, G64.ia32EFER, efer)
            try require(cr0 & pg == 0 || lme == lma, .guestEFERLMEMismatch, G64.ia32EFER, efer)
        }

        // SDM 27.3.1.2 "Checks on Guest Segment Registers".
        let rflags = try read(GN.rflags)
        let v8086 = rflags & RFLAGS.vm.rawValue != 0
        let cs = try readSegment(G16.csSelector, GN.csBase, G32.csLimit, G32.csAccessRights)
        let ss = try readSegment(G16.ssSelector, GN.ssBase, G32.ssLimit, G32.ssAccessRights)
        let ds = try readSegment(G16.dsSelector, GN.dsBase, G32.dsLimit, G32.dsAccessRights)
        let es = try readSegment(G16.esSelector, GN.esBase, G32.esLimit, G32.esAccessRights)
        let fs = try readSegment(G16.fsSelector, GN.fsBase, G32.fsLimit, G32.fsAccessRights)
        let gs = try readSegment(G16.gsSelector, GN.gsBase, G32.gsLimit, G32.gsAccessRights)
        let tr = try readSegment(G16.trSelector, GN.trBase, G32.trLimit, G32.trAccessRights)
        let ldtr = try readSegment(G16.ldtrSelector, GN.ldtrBase, G32.ldtrLimit, G32.ldtrAccessRights)
        let sixSegments: InlineArray<6, Segment> = [cs, ss, ds, es, fs, gs]

        // Selector fields.
        try require(tr.selector & SegmentSelector.tableIndicator == 0, .guestTRTableIndicator, tr.selectorField, tr.selector)
        try require(!ldtr.usable || ldtr.selector & SegmentSelector.tableIndicator == 0, .guestLDTRTableIndicator, ldtr.selectorField, ldtr.selector)
        if !v8086 && !c.unrestrictedGuest {
            try require(ss.rpl == cs.rpl, .guestSSRPLNotCSRPL, ss.selectorField, ss.selector)
        }
        // Base-address fields.
        if v8086 {
            for i in sixSegments.indices {
                let s = sixSegments[i]
                try require(s.base == UInt64(s.selector) << 4, .guestVirtual8086Base, s.baseField, s.base)
            }
        }
        try require(canonical(tr.base), .guestBaseNotCanonical, tr.baseField, tr.base)
        try require(canonical(fs.base), .guestBaseNotCanonical, fs.baseField, fs.base)
        try require(canonical(gs.base), .guestBaseNotCanonical, gs.baseField, gs.base)
        try require(!ldtr.usable || canonical(ldtr.base), .guestBaseNotCanonical, ldtr.baseField, ldtr.base)
        try require(cs.base >> 32 == 0, .guestBaseUpperBits, cs.baseField, cs.base)
        let upperChecked: InlineArray<3, Segment> = [ss, ds, es]
        for i in upperChecked.indices {
            let s = upperChecked[i]
            try require(!s.usable || s.base >> 32 == 0, .guestBaseUpperBits, s.baseField, s.base)
        }
        // Limit and access-rights fields.
        if v8086 {
            for i in sixSegments.indices {
                let s = sixSegments[i]
                try require(s.limit == 0xFFFF, .guestVirtual8086Limit, s.limitField, s.limit)
            }
            for i in sixSegments.indices {
                let s = sixSegments[i]
                try require(s.rights == .virtual8086, .guestVirtual8086AccessRights, s.rightsField, s.rights.rawValue)
            }
        } else {
            try checkCodeSegment(cs, ss: ss, c)
            try checkStackSegment(ss, cs: cs, cr0: cr0, c)
            try checkDataSegment(ds, c)
            try checkDataSegment(es, c)
            try checkDataSegment(fs, c)
            try checkDataSegment(gs, c)
        }
        try checkTaskRegister(tr, ia32e: ia32e)
        if ldtr.usable { try checkLDTR(ldtr) }

        // SDM 27.3.1.3 "Checks on Guest Descriptor-Table Registers".
        let gdtrBase = try read(GN.gdtrBase)
        try require(canonical(gdtrBase), .guestDescriptorTableBaseNotCanonical, GN.gdtrBase, gdtrBase)
        let idtrBase = try read(GN.idtrBase)
        try require(canonical(idtrBase), .guestDescriptorTableBaseNotCanonical, GN.idtrBase, idtrBase)
        let gdtrLimit = try read(G32.gdtrLimit)
        try require(gdtrLimit >> 16 == 0, .guestDescriptorTableLimit, G32.gdtrLimit, gdtrLimit)
        let idtrLimit = try read(G32.idtrLimit)
        try require(idtrLimit >> 16 == 0, .guestDescriptorTableLimit, G32.idtrLimit, idtrLimit)

        // SDM 27.3.1.4 "Checks on Guest RIP, RFLAGS, and SSP".
        let rip = try read(GN.rip)
        if ia32e && cs.rights.isLong {
            // Bits 63:N, not 63:N-1: a RIP with only bit N-1 wrong enters and faults on the fetch.
            let high = rip >> UInt64(linearAddressWidth)
            try require(high == 0 || high == UInt64.max >> UInt64(linearAddressWidth), .guestRIPHighBitsNotIdentical,
                        GN.rip, rip)
        } else {
            try require(rip >> 32 == 0, .guestRIPUpperBits, GN.rip, rip)
        }
        try require(rflags & RFLAGS.reserved.rawValue == 0 && rflags & RFLAGS.fixedOne.rawValue != 0, .guestRFLAGSReservedBits, GN.rflags, rflags)
        try require(!v8086 || (!ia32e && cr0 & pe != 0), .guestRFLAGSVirtual8086, GN.rflags, rflags)
        let injectsExternalInterrupt = c.injecting && c.injectionType == .externalInterrupt
        try require(!injectsExternalInterrupt || rflags & RFLAGS.interruptEnable.rawValue != 0, .guestRFLAGSInterruptFlag, GN.rflags, rflags)
        return GuestRegisters(cr0: cr0, cr4: cr4, rflags: rflags, ss: ss)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": CS access rights
    func checkCodeSegment(_ cs: Segment, ss: Segment, _ c: Controls) throws(VMEntryViolation) {
        let rights = cs.rights
        let value = rights.rawValue
        switch rights.type {
        case SegmentType.codeExecuteAccessed, SegmentType.codeExecuteReadAccessed, SegmentType.codeConformingAccessed,
             SegmentType.codeConformingReadAccessed: break
        case SegmentType.dataReadWriteAccessed: try require(c.unrestrictedGuest, .guestCSType, cs.rightsField, value)
        default:
            try require(false, c.unrestrictedGuest ? .guestCSTypeUnrestricted : .guestCSType, cs.rightsField, value)
        }
        try require(rights.isCodeOrData, .guestSegmentNotCodeOrData, cs.rightsField, value)
        switch rights.type {
        case SegmentType.dataReadWriteAccessed: try require(rights.dpl == 0, .guestCSDPLForType3, cs.rightsField, value)
        case SegmentType.codeExecuteAccessed, SegmentType.codeExecuteReadAccessed: try require(rights.dpl == ss.rights.dpl, .guestCSDPLNonConforming, cs.rightsField, value)
        default: try require(rights.dpl <= ss.rights.dpl, .guestCSDPLConforming, cs.rightsField, value)
        }
        try require(rights.isPresent, .guestSegmentNotPresent, cs.rightsField, value)
        try require(rights.reservedBits == 0, .guestSegmentReservedBits, cs.rightsField, value)
        try require(!(c.ia32eModeGuest && rights.isLong && rights.isDefaultBig), .guestCSLongAndDefault,
                    cs.rightsField, value)
        try checkGranularity(cs)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": SS access rights
    func checkStackSegment(_ ss: Segment, cs: Segment, cr0: UInt64, _ c: Controls) throws(VMEntryViolation) {
        let rights = ss.rights
        let value = rights.rawValue
        if ss.usable {
            try require(rights.type == SegmentType.dataReadWriteAccessed || rights.type == SegmentType.dataReadWriteExpandDownAccessed, .guestSSType, ss.rightsField, value)
            try require(rights.isCodeOrData, .guestSegmentNotCodeOrData, ss.rightsField, value)
        }
        if !c.unrestrictedGuest {
            try require(rights.dpl == ss.rpl, .guestSSDPLNotRPL, ss.rightsField, value)
        }
        if cs.rights.type == SegmentType.dataReadWriteAccessed || cr0 & CR0Bits.pe.rawValue == 0 {
            try require(rights.dpl == 0, .guestSSDPLNotZero, ss.rightsField, value)
        }
        if ss.usable { try checkUsableCommon(ss) }
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": DS, ES, FS, GS access rights
    func checkDataSegment(_ s: Segment, _ c: Controls) throws(VMEntryViolation) {
        guard s.usable else { return }
        let rights = s.rights
        let value = rights.rawValue
        try require(rights.type & SegmentType.accessed != 0, .guestDataSegmentNotAccessed, s.rightsField, value)
        try require(rights.type & SegmentType.code == 0 || rights.type & SegmentType.writableOrReadable != 0, .guestCodeSegmentNotReadable, s.rightsField, value)
        try require(rights.isCodeOrData, .guestSegmentNotCodeOrData, s.rightsField, value)
        if !c.unrestrictedGuest && rights.type <= SegmentType.codeExecuteReadAccessed {  // data or non-conforming code
            try require(rights.dpl >= s.rpl, .guestDataSegmentDPLBelowRPL, s.rightsField, value)
        }
        try checkUsableCommon(s)
    }

    /// P, reserved bits and granularity of a usable segment.
    func checkUsableCommon(_ s: Segment) throws(VMEntryViolation) {
        try require(s.rights.isPresent, .guestSegmentNotPresent, s.rightsField, s.rights.rawValue)
        try require(s.rights.reservedBits == 0, .guestSegmentReservedBits, s.rightsField, s.rights.rawValue)
        try checkGranularity(s)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": G against the limit
    func checkGranularity(_ s: Segment) throws(VMEntryViolation) {
        let g = s.rights.isPageGranular
        let consistent = (UInt64(s.limit) & pageOffsetMask4KiB == pageOffsetMask4KiB || !g) && (s.limit >> 20 == 0 || g)
        try require(consistent, .guestSegmentGranularity, s.rightsField, s.rights.rawValue)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": TR access rights
    func checkTaskRegister(_ tr: Segment, ia32e: Bool) throws(VMEntryViolation) {
        let value = tr.rights.rawValue
        let typeValid = tr.rights.type == SegmentType.busyTSS || (tr.rights.type == SegmentType.busyTSS16 && !ia32e)
        try require(typeValid, .guestTRType, tr.rightsField, value)
        try require(!tr.rights.isCodeOrData, .guestSystemSegmentS, tr.rightsField, value)
        try require(tr.rights.isPresent, .guestSegmentNotPresent, tr.rightsField, value)
        try require(tr.rights.reservedBits == 0, .guestSegmentReservedBits, tr.rightsField, value)
        try checkGranularity(tr)
        try require(tr.usable, .guestTRUnusable, tr.rightsField, value)
    }

    // SDM 27.3.1.2 "Checks on Guest Segment Registers": LDTR access rights (when usable)
    func checkLDTR(_ ldtr: Segment) throws(VMEntryViolation) {
        let value = ldtr.rights.rawValue
        try require(ldtr.rights.type == SegmentType.ldt, .guestLDTRType, ldtr.rightsField, value)
        try require(!ldtr.rights.isCodeOrData, .guestSystemSegmentS, ldtr.rightsField, value)
        try checkUsableCommon(ldtr)
    }

}
