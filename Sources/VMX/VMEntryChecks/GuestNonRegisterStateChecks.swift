// SDM 27.3.1.5 "Checks on Guest Non-Register State" and 27.3.1.6 "Checks on
// Guest Page-Directory-Pointer-Table Entries". A violation here is a VM exit
// with reason 33.

import X86Arch

extension VMEntryRule {
    // SDM 27.3.1.5
    public static let guestActivityStateInvalid = VMEntryRule(.guestNonRegisterState,
        "guest activity state must be 0 (active), or 1 (HLT), 2 (shutdown), 3 (wait-for-SIPI) as IA32_VMX_MISC supports")
    public static let guestActivityHLTWithSSDPL = VMEntryRule(.guestNonRegisterState,
        "guest activity state: HLT requires SS DPL 0")
    public static let guestActivityHLTWithBlocking = VMEntryRule(.guestNonRegisterState,
        "guest activity state must not be HLT with blocking by STI or by MOV SS")
    public static let guestActivityStateRejectsInjection = VMEntryRule(.guestNonRegisterState,
        "guest activity state must allow the injected event (HLT: external interrupt, NMI, #DB, #MC, MTF; shutdown: NMI, #MC; wait-for-SIPI: none)")
    public static let guestInterruptibilityReservedBits = VMEntryRule(.guestNonRegisterState,
        "guest interruptibility state: reserved bits 31:5 must be 0")
    public static let guestInterruptibilitySTIAndMOVSS = VMEntryRule(.guestNonRegisterState,
        "guest interruptibility state: blocking by STI and by MOV SS must not both be 1")
    public static let guestInterruptibilitySTIWithoutIF = VMEntryRule(.guestNonRegisterState,
        "guest interruptibility state: blocking by STI must be 0 when RFLAGS.IF is 0")
    public static let guestInterruptibilityExternalInterruptInjection = VMEntryRule(.guestNonRegisterState,
        "guest interruptibility state: blocking by STI and by MOV SS must be 0 when an external interrupt is injected")
    public static let guestInterruptibilityNMIInjection = VMEntryRule(.guestNonRegisterState,
        "guest interruptibility state: blocking by MOV SS must be 0 when an NMI is injected")
    public static let guestInterruptibilitySMIOutsideSMM = VMEntryRule(.guestNonRegisterState,
        "guest interruptibility state: blocking by SMI must be 0 outside SMM")
    public static let guestInterruptibilityVirtualNMIInjection = VMEntryRule(.guestNonRegisterState,
        "guest interruptibility state: blocking by NMI must be 0 when an NMI is injected with virtual NMIs")
    public static let guestPendingDebugReservedBits = VMEntryRule(.guestNonRegisterState,
        "guest pending debug exceptions: bits 63:17, 15, 13 and 11:4 must be 0")
    public static let guestPendingDebugBSRequired = VMEntryRule(.guestNonRegisterState,
        "guest pending debug exceptions: BS must be 1 with RFLAGS.TF 1 and DEBUGCTL.BTF 0 when blocked by STI/MOV SS or in HLT")
    public static let guestPendingDebugBSNotAllowed = VMEntryRule(.guestNonRegisterState,
        "guest pending debug exceptions: BS must be 0 with RFLAGS.TF 0 or DEBUGCTL.BTF 1 when blocked by STI/MOV SS or in HLT")
    public static let guestVMCSLinkPointerAddress = VMEntryRule(.guestNonRegisterState,
        "VMCS link pointer other than FFFFFFFF_FFFFFFFFH: bits 11:0 must be 0 and no bit beyond the physical-address width may be set")
    public static let guestVMCSLinkPointerNotInvalid = VMEntryRule(.guestNonRegisterState,
        "VMCS link pointer must be FFFFFFFF_FFFFFFFFH when VMCS shadowing is 0 (VM entry would check a VMCS revision identifier there)")

    // SDM 27.3.1.6
    public static let guestPDPTEReservedBits = VMEntryRule(.guestPDPTEs,
        "guest PDPTEs (PAE paging with EPT): a present entry must have bits 2:1, 8:5 and bits beyond the physical-address width 0")
}

extension VMEntryChecker {
    // SDM 27.3.1.5 "Checks on Guest Non-Register State"
    func checkNonRegisterState(_ c: Controls, ss: Segment, rflags: UInt64) throws(VMEntryViolation) {
        typealias G32 = VMCSFields.Guest32
        typealias GN = VMCSFields.GuestNatural
        let activityField = G32.activityState
        let interruptibilityField = G32.interruptibilityState
        let activity = try read(activityField)
        let interruptibility = try read(interruptibilityField)
        let misc = capabilities.misc
        let blockingBySTI = interruptibility & InterruptibilityState.blockingBySTIBit != 0
        let blockingByMOVSS = interruptibility & InterruptibilityState.blockingByMovSSBit != 0
        let state = ActivityState(rawValue: activity)

        // Activity state.
        let supported: Bool
        switch state {
        case .active: supported = true
        case .hlt: supported = misc.supportsActivityHLT
        case .shutdown: supported = misc.supportsActivityShutdown
        case .waitForSIPI: supported = misc.supportsActivityWaitForSIPI
        case nil: supported = false
        }
        try require(supported, .guestActivityStateInvalid, activityField, activity)
        if state == .hlt {
            try require(ss.rights.dpl == 0, .guestActivityHLTWithSSDPL, activityField, activity)
            try require(!blockingBySTI && !blockingByMOVSS, .guestActivityHLTWithBlocking, activityField, activity)
        }
        if c.injecting && state != .active {
            let type = c.injectionType, vector = c.injectionVector
            let allowed: Bool
            let debug = ExceptionVector.debug.rawValue, machineCheck = ExceptionVector.machineCheck.rawValue
            switch state {
            case .hlt:
                allowed = type == .externalInterrupt || type == .nmi
                    || (type == .hardwareException && (vector == debug || vector == machineCheck))
                    || (type == .otherEvent && vector == 0)  // MTF
            case .shutdown:
                allowed = type == .nmi || (type == .hardwareException && vector == machineCheck)
            default:
                allowed = false
            }
            try require(allowed, .guestActivityStateRejectsInjection, activityField, activity)
        }

        // Interruptibility state.
        try require(interruptibility & InterruptibilityState.reservedMask == 0, .guestInterruptibilityReservedBits, interruptibilityField, interruptibility)
        try require(!(blockingBySTI && blockingByMOVSS), .guestInterruptibilitySTIAndMOVSS,
                    interruptibilityField, interruptibility)
        try require(!blockingBySTI || rflags & RFLAGS.interruptEnable.rawValue != 0, .guestInterruptibilitySTIWithoutIF,
                    interruptibilityField, interruptibility)
        if c.injecting && c.injectionType == .externalInterrupt {
            try require(!blockingBySTI && !blockingByMOVSS, .guestInterruptibilityExternalInterruptInjection,
                        interruptibilityField, interruptibility)
        }
        if c.injecting && c.injectionType == .nmi {
            try require(!blockingByMOVSS, .guestInterruptibilityNMIInjection, interruptibilityField, interruptibility)
        }
        try require(interruptibility & InterruptibilityState.blockingBySMIBit == 0, .guestInterruptibilitySMIOutsideSMM, interruptibilityField, interruptibility)
        if c.injecting && c.injectionType == .nmi && c.pin.contains(.virtualNMIs) {
            try require(interruptibility & InterruptibilityState.blockingByNMIBit == 0, .guestInterruptibilityVirtualNMIInjection,
                        interruptibilityField, interruptibility)
        }

        // Pending debug exceptions.
        let pendingField = GN.pendingDebugExceptions
        let pending = try read(pendingField)
        try require(pending & PendingDebugExceptions.reservedMask == 0, .guestPendingDebugReservedBits, pendingField, pending)
        if blockingBySTI || blockingByMOVSS || state == .hlt {
            let debugCtl = try read(VMCSFields.Guest64.ia32DebugCtl)
            let bs = pending & PendingDebugExceptions.bs != 0
            let singleStepping = rflags & RFLAGS.tf.rawValue != 0 && debugCtl & DebugCtl.btf.rawValue == 0
            try require(bs || !singleStepping, .guestPendingDebugBSRequired, pendingField, pending)
            try require(!bs || singleStepping, .guestPendingDebugBSNotAllowed, pendingField, pending)
        }

        // VMCS link pointer.
        let linkField = VMCSFields.Guest64.vmcsLinkPointer
        let link = try read(linkField)
        if link != UInt64.max {
            try require(link & pageOffsetMask4KiB == 0 && fits(link, width: structureAddressWidth), .guestVMCSLinkPointerAddress,
                        linkField, link)
            try require(c.secondary.contains(.vmcsShadowing), .guestVMCSLinkPointerNotInvalid, linkField, link)
        }
    }

    // SDM 27.3.1.6 "Checks on Guest Page-Directory-Pointer-Table Entries" (EPT only:
    // without EPT they come from guest memory, which this checker cannot read).
    func checkPDPTEs(_ c: Controls, cr0: UInt64, cr4: UInt64) throws(VMEntryViolation) {
        typealias G64 = VMCSFields.Guest64
        if c.secondary.contains(.enableEPT) && cr0 & CR0Bits.pg.rawValue != 0 && cr4 & CR4Bits.pae.rawValue != 0
            && !c.ia32eModeGuest {
            let pdptes: InlineArray<4, VMCSField64> = [G64.pdpte0, G64.pdpte1, G64.pdpte2, G64.pdpte3]
            for i in pdptes.indices {
                let field = pdptes[i]
                let pdpte = try read(field)
                let reserved = pdpte & PAEPDPTE.reservedMask != 0 || !fits(pdpte, width: physicalAddressWidth)
                try require(pdpte & PageTableEntry.present == 0 || !reserved, .guestPDPTEReservedBits, field, pdpte)
            }
        }
    }
}
