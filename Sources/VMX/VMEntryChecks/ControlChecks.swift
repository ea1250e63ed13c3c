// SDM 27.2.1 "Checks on VMX Controls": the VM-execution, VM-exit and VM-entry
// control fields. A violation here is VMfailValid 7.

import X86Arch

extension VMEntryRule {
    // SDM 27.2.1.1
    public static let pinBasedControlsUnsupported = VMEntryRule(.executionControls,
        "pin-based VM-execution controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)PINBASED_CTLS")
    public static let primaryControlsUnsupported = VMEntryRule(.executionControls,
        "primary processor-based VM-execution controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)PROCBASED_CTLS")
    public static let secondaryControlsUnsupported = VMEntryRule(.executionControls,
        "secondary processor-based VM-execution controls: every bit must be an allowed 0-/1-setting of IA32_VMX_PROCBASED_CTLS2")
    public static let cr3TargetCountTooLarge = VMEntryRule(.executionControls,
        "CR3-target count must not be greater than 4")
    public static let ioBitmapAddressInvalid = VMEntryRule(.executionControls,
        "I/O bitmap A/B address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when use I/O bitmaps is 1")
    public static let msrBitmapAddressInvalid = VMEntryRule(.executionControls,
        "MSR-bitmap address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when use MSR bitmaps is 1")
    public static let virtualAPICAddressInvalid = VMEntryRule(.executionControls,
        "virtual-APIC address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when use TPR shadow is 1")
    public static let tprThresholdReservedBits = VMEntryRule(.executionControls,
        "TPR threshold: bits 31:4 must be 0 when use TPR shadow is 1 and virtual-interrupt delivery is 0")
    public static let apicVirtualizationWithoutTPRShadow = VMEntryRule(.executionControls,
        "virtualize x2APIC mode, APIC-register virtualization and virtual-interrupt delivery must be 0 when use TPR shadow is 0")
    public static let virtualNMIsWithoutNMIExiting = VMEntryRule(.executionControls,
        "virtual NMIs must be 0 when NMI exiting is 0")
    public static let nmiWindowExitingWithoutVirtualNMIs = VMEntryRule(.executionControls,
        "NMI-window exiting must be 0 when virtual NMIs is 0")
    public static let apicAccessAddressInvalid = VMEntryRule(.executionControls,
        "APIC-access address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when virtualize APIC accesses is 1")
    public static let x2APICModeWithAPICAccesses = VMEntryRule(.executionControls,
        "virtualize APIC accesses must be 0 when virtualize x2APIC mode is 1")
    public static let virtualInterruptDeliveryWithoutExternalInterruptExiting = VMEntryRule(.executionControls,
        "external-interrupt exiting must be 1 when virtual-interrupt delivery is 1")
    public static let postedInterruptsWithoutVirtualInterruptDelivery = VMEntryRule(.executionControls,
        "virtual-interrupt delivery must be 1 when process posted interrupts is 1")
    public static let postedInterruptsWithoutAcknowledgeOnExit = VMEntryRule(.executionControls,
        "acknowledge interrupt on exit must be 1 when process posted interrupts is 1")
    public static let postedInterruptVectorReservedBits = VMEntryRule(.executionControls,
        "posted-interrupt notification vector: bits 15:8 must be 0 when process posted interrupts is 1")
    public static let postedInterruptDescriptorAddressInvalid = VMEntryRule(.executionControls,
        "posted-interrupt descriptor address: bits 5:0 must be 0 and no bit beyond the physical-address width may be set")
    public static let vpidZero = VMEntryRule(.executionControls,
        "VPID must not be 0000H when enable VPID is 1")
    public static let eptpMemoryTypeUnsupported = VMEntryRule(.executionControls,
        "EPTP bits 2:0: the EPT paging-structure memory type must be UC (0) or WB (6) as IA32_VMX_EPT_VPID_CAP allows")
    public static let eptpWalkLengthUnsupported = VMEntryRule(.executionControls,
        "EPTP bits 5:3 must be 3 (4-level walk), or 4 when 5-level EPT is supported")
    public static let eptpAccessedDirtyUnsupported = VMEntryRule(.executionControls,
        "EPTP bit 6 (enable accessed/dirty flags) must be 0 when IA32_VMX_EPT_VPID_CAP[21] is 0")
    public static let eptpShadowStackUnsupported = VMEntryRule(.executionControls,
        "EPTP bit 7 (supervisor shadow-stack control) must be 0 when IA32_VMX_EPT_VPID_CAP[23] is 0")
    public static let eptpReservedBits = VMEntryRule(.executionControls,
        "EPTP bits 11:8 and bits beyond the physical-address width must be 0")
    public static let pmlWithoutEPT = VMEntryRule(.executionControls,
        "enable EPT must be 1 when enable PML is 1")
    public static let pmlAddressInvalid = VMEntryRule(.executionControls,
        "PML address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set")
    public static let unrestrictedGuestWithoutEPT = VMEntryRule(.executionControls,
        "enable EPT must be 1 when unrestricted guest is 1")
    public static let eptSubfeatureWithoutEPT = VMEntryRule(.executionControls,
        "enable EPT must be 1 when mode-based execute control or sub-page write permissions is 1")
    public static let vmFunctionControlsUnsupported = VMEntryRule(.executionControls,
        "VM-function controls: bits IA32_VMX_VMFUNC does not allow must be 0")
    public static let eptpSwitchingWithoutEPT = VMEntryRule(.executionControls,
        "enable EPT must be 1 when the EPTP-switching VM function is enabled")
    public static let eptpListAddressInvalid = VMEntryRule(.executionControls,
        "EPTP-list address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set")
    public static let vmcsShadowingBitmapAddressInvalid = VMEntryRule(.executionControls,
        "VMREAD-/VMWRITE-bitmap address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when VMCS shadowing is 1")
    public static let virtualizationExceptionAddressInvalid = VMEntryRule(.executionControls,
        "virtualization-exception information address: bits 11:0 must be 0 and no bit beyond the physical-address width may be set when EPT-violation #VE is 1")

    // SDM 27.2.1.2
    public static let exitControlsUnsupported = VMEntryRule(.exitControls,
        "primary VM-exit controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)EXIT_CTLS")
    public static let savePreemptionTimerWithoutTimer = VMEntryRule(.exitControls,
        "save VMX-preemption timer value must be 0 when activate VMX-preemption timer is 0")
    public static let exitMSRStoreAddressInvalid = VMEntryRule(.exitControls,
        "VM-exit MSR-store address: bits 3:0 must be 0 and the whole list within the physical-address width when the count is not 0")
    public static let exitMSRLoadAddressInvalid = VMEntryRule(.exitControls,
        "VM-exit MSR-load address: bits 3:0 must be 0 and the whole list within the physical-address width when the count is not 0")

    // SDM 27.2.1.3
    public static let entryControlsUnsupported = VMEntryRule(.entryControls,
        "VM-entry controls: every bit must be an allowed 0-/1-setting of IA32_VMX_(TRUE_)ENTRY_CTLS")
    public static let injectionReservedBits = VMEntryRule(.entryControls,
        "VM-entry interruption information: reserved bits 30:12 must be 0")
    public static let injectionTypeInvalid = VMEntryRule(.entryControls,
        "VM-entry interruption information: type 1 is reserved, and type 7 (other event) needs monitor-trap-flag support")
    public static let injectionNMIVector = VMEntryRule(.entryControls,
        "VM-entry interruption information: an NMI must have vector 2")
    public static let injectionHardwareExceptionVector = VMEntryRule(.entryControls,
        "VM-entry interruption information: a hardware exception must have a vector of at most 31")
    public static let injectionOtherEventVector = VMEntryRule(.entryControls,
        "VM-entry interruption information: other event (pending MTF VM exit) must have vector 0")
    public static let injectionErrorCodeRequired = VMEntryRule(.entryControls,
        "VM-entry interruption information: deliver error code must be 1 for #DF, #TS, #NP, #SS, #GP, #PF, #AC injected with guest CR0.PE = 1")
    public static let injectionErrorCodeNotAllowed = VMEntryRule(.entryControls,
        "VM-entry interruption information: deliver error code must be 0 unless a hardware exception that has an error code is injected with guest CR0.PE = 1")
    public static let injectionErrorCodeReservedBits = VMEntryRule(.entryControls,
        "VM-entry exception error code: bits 31:16 must be 0 when deliver error code is 1")
    public static let injectionInstructionLength = VMEntryRule(.entryControls,
        "VM-entry instruction length must be 1 to 15 for software interrupts and exceptions (0 only with IA32_VMX_MISC[30])")
    public static let entryMSRLoadAddressInvalid = VMEntryRule(.entryControls,
        "VM-entry MSR-load address: bits 3:0 must be 0 and the whole list within the physical-address width when the count is not 0")
    public static let smmControlsOutsideSMM = VMEntryRule(.entryControls,
        "entry to SMM and deactivate dual-monitor treatment must be 0 outside SMM")
}

extension VMEntryChecker {
    func checkControls() throws(VMEntryViolation) -> Controls {
        let pinField = VMCSFields.Control32.pinBasedControls
        let primaryField = VMCSFields.Control32.primaryProcessorBasedControls
        let secondaryField = VMCSFields.Control32.secondaryProcessorBasedControls
        let exitField = VMCSFields.Control32.primaryExitControls
        let entryField = VMCSFields.Control32.entryControls

        // SDM 27.2.1.1 "VM-Execution Control Fields": reserved bits per the capability MSRs.
        let pin = PinBasedControls(rawValue: try read(pinField))
        try require(capabilities.pinBased.isValid(pin), .pinBasedControlsUnsupported, pinField, pin.rawValue)
        let primary = PrimaryProcessorBasedControls(rawValue: try read(primaryField))
        try require(capabilities.primary.isValid(primary), .primaryControlsUnsupported, primaryField, primary.rawValue)
        // SDM 27.2.1.1: secondary controls count as 0 unless "activate secondary controls" is 1.
        var secondary = SecondaryProcessorBasedControls.empty
        if primary.contains(.activateSecondaryControls) {
            secondary = SecondaryProcessorBasedControls(rawValue: try read(secondaryField))
            let valid = capabilities.secondary?.isValid(secondary) ?? false
            try require(valid, .secondaryControlsUnsupported, secondaryField, secondary.rawValue)
        }

        // SDM 27.2.1.1: CR3-target count.
        let cr3Targets = try read(VMCSFields.Control32.cr3TargetCount)
        try require(cr3Targets <= 4, .cr3TargetCountTooLarge, VMCSFields.Control32.cr3TargetCount, cr3Targets)

        // SDM 27.2.1.1: I/O-bitmap addresses.
        if primary.contains(.useIOBitmaps) {
            let a = try read(VMCSFields.Control64.ioBitmapA)
            try require(isPageAddress(a), .ioBitmapAddressInvalid, VMCSFields.Control64.ioBitmapA, a)
            let b = try read(VMCSFields.Control64.ioBitmapB)
            try require(isPageAddress(b), .ioBitmapAddressInvalid, VMCSFields.Control64.ioBitmapB, b)
        }
        // SDM 27.2.1.1: MSR-bitmap address.
        if primary.contains(.useMSRBitmaps) {
            let address = try read(VMCSFields.Control64.msrBitmaps)
            try require(isPageAddress(address), .msrBitmapAddressInvalid, VMCSFields.Control64.msrBitmaps, address)
        }
        // SDM 27.2.1.1: TPR shadow, virtual-APIC address and TPR threshold.
        let apicVirtualization: SecondaryProcessorBasedControls =
            .virtualizeX2APICMode | .apicRegisterVirtualization | .virtualInterruptDelivery
        if primary.contains(.useTPRShadow) {
            let address = try read(VMCSFields.Control64.virtualAPICAddress)
            try require(isPageAddress(address), .virtualAPICAddressInvalid, VMCSFields.Control64.virtualAPICAddress, address)
            if !secondary.contains(.virtualInterruptDelivery) {
                let threshold = try read(VMCSFields.Control32.tprThreshold)
                try require(threshold & ~0xF == 0, .tprThresholdReservedBits, VMCSFields.Control32.tprThreshold, threshold)
            }
        } else {
            try require(!secondary.intersects(apicVirtualization), .apicVirtualizationWithoutTPRShadow,
                        secondaryField, secondary.rawValue)
        }
        // SDM 27.2.1.1: NMI exiting, virtual NMIs and NMI-window exiting.
        try require(pin.contains(.nmiExiting) || !pin.contains(.virtualNMIs), .virtualNMIsWithoutNMIExiting,
                    pinField, pin.rawValue)
        try require(pin.contains(.virtualNMIs) || !primary.contains(.nmiWindowExiting),
                    .nmiWindowExitingWithoutVirtualNMIs, primaryField, primary.rawValue)
        // SDM 27.2.1.1: APIC-access address, and x2APIC mode excludes APIC-access virtualization.
        if secondary.contains(.virtualizeAPICAccesses) {
            let address = try read(VMCSFields.Control64.apicAccessAddress)
            try require(isPageAddress(address), .apicAccessAddressInvalid, VMCSFields.Control64.apicAccessAddress, address)
        }
        try require(!secondary.contains(.virtualizeX2APICMode | .virtualizeAPICAccesses),
                    .x2APICModeWithAPICAccesses, secondaryField, secondary.rawValue)
        // SDM 27.2.1.1: virtual-interrupt delivery needs external-interrupt exiting.
        try require(!secondary.contains(.virtualInterruptDelivery) || pin.contains(.externalInterruptExiting),
                    .virtualInterruptDeliveryWithoutExternalInterruptExiting, pinField, pin.rawValue)

        let exit = VMExitControls(rawValue: try read(exitField))
        // SDM 27.2.1.1: process posted interrupts.
        if pin.contains(.processPostedInterrupts) {
            try require(secondary.contains(.virtualInterruptDelivery), .postedInterruptsWithoutVirtualInterruptDelivery,
                        secondaryField, secondary.rawValue)
            try require(exit.contains(.acknowledgeInterruptOnExit), .postedInterruptsWithoutAcknowledgeOnExit,
                        exitField, exit.rawValue)
            let vectorField = VMCSFields.Control16.postedInterruptNotificationVector
            let vector = try read(vectorField)
            try require(vector & 0xFF00 == 0, .postedInterruptVectorReservedBits, vectorField, vector)
            let descriptorField = VMCSFields.Control64.postedInterruptDescriptorAddress
            let descriptor = try read(descriptorField)
            try require(descriptor & 0x3F == 0 && fits(descriptor, width: structureAddressWidth),
                        .postedInterruptDescriptorAddressInvalid, descriptorField, descriptor)
        }
        // SDM 27.2.1.1: VPID.
        if secondary.contains(.enableVPID) {
            let vpid = try read(VMCSFields.Control16.virtualProcessorID)
            try require(vpid != 0, .vpidZero, VMCSFields.Control16.virtualProcessorID, vpid)
        }
        // SDM 27.2.1.1 and 25.6.11 "Extended-Page-Table Pointer (EPTP)".
        let ept = secondary.contains(.enableEPT)
        if ept { try checkEPTP() }
        // SDM 27.2.1.1: PML.
        if secondary.contains(.enablePML) {
            try require(ept, .pmlWithoutEPT, secondaryField, secondary.rawValue)
            let address = try read(VMCSFields.Control64.pmlAddress)
            try require(isPageAddress(address), .pmlAddressInvalid, VMCSFields.Control64.pmlAddress, address)
        }
        // SDM 27.2.1.1: unrestricted guest, mode-based execute and sub-page permissions need EPT.
        try require(ept || !secondary.contains(.unrestrictedGuest), .unrestrictedGuestWithoutEPT,
                    secondaryField, secondary.rawValue)
        try require(ept || !secondary.intersects(.modeBasedExecuteControl | .subPageWritePermissions),
                    .eptSubfeatureWithoutEPT, secondaryField, secondary.rawValue)
        // SDM 27.2.1.1: VM functions.
        if secondary.contains(.enableVMFunctions) {
            let field = VMCSFields.Control64.vmFunctionControls
            let functions = try read(field)
            try require(functions & ~(capabilities.vmFunctions ?? 0) == 0, .vmFunctionControlsUnsupported, field, functions)
            if functions & 1 != 0 {
                try require(ept, .eptpSwitchingWithoutEPT, secondaryField, secondary.rawValue)
                let list = try read(VMCSFields.Control64.eptpListAddress)
                try require(isPageAddress(list), .eptpListAddressInvalid, VMCSFields.Control64.eptpListAddress, list)
            }
        }
        // SDM 27.2.1.1: VMCS shadowing bitmaps.
        if secondary.contains(.vmcsShadowing) {
            let readBitmap = try read(VMCSFields.Control64.vmreadBitmapAddress)
            try require(isPageAddress(readBitmap), .vmcsShadowingBitmapAddressInvalid,
                        VMCSFields.Control64.vmreadBitmapAddress, readBitmap)
            let writeBitmap = try read(VMCSFields.Control64.vmwriteBitmapAddress)
            try require(isPageAddress(writeBitmap), .vmcsShadowingBitmapAddressInvalid,
                        VMCSFields.Control64.vmwriteBitmapAddress, writeBitmap)
        }
        // SDM 27.2.1.1: EPT-violation #VE.
        if secondary.contains(.eptViolationVE) {
            let field = VMCSFields.Control64.virtualizationExceptionInformationAddress
            let address = try read(field)
            try require(isPageAddress(address), .virtualizationExceptionAddressInvalid, field, address)
        }

        // SDM 27.2.1.2 "VM-Exit Control Fields".
        try require(capabilities.exit.isValid(exit), .exitControlsUnsupported, exitField, exit.rawValue)
        try require(pin.contains(.activatePreemptionTimer) || !exit.contains(.savePreemptionTimerValue),
                    .savePreemptionTimerWithoutTimer, exitField, exit.rawValue)
        let storeCount = try read(VMCSFields.Control32.exitMSRStoreCount)
        if storeCount != 0 {
            let address = try read(VMCSFields.Control64.exitMSRStoreAddress)
            try require(isMSRArea(address, count: storeCount), .exitMSRStoreAddressInvalid,
                        VMCSFields.Control64.exitMSRStoreAddress, address)
        }
        let exitLoadCount = try read(VMCSFields.Control32.exitMSRLoadCount)
        if exitLoadCount != 0 {
            let address = try read(VMCSFields.Control64.exitMSRLoadAddress)
            try require(isMSRArea(address, count: exitLoadCount), .exitMSRLoadAddressInvalid,
                        VMCSFields.Control64.exitMSRLoadAddress, address)
        }

        // SDM 27.2.1.3 "VM-Entry Control Fields".
        let entry = VMEntryControls(rawValue: try read(entryField))
        try require(capabilities.entry.isValid(entry), .entryControlsUnsupported, entryField, entry.rawValue)
        let injection = try read(VMCSFields.Control32.entryInterruptionInformation)
        let controls = Controls(pin: pin, primary: primary, secondary: secondary, exit: exit, entry: entry,
                                injection: injection)
        if controls.injecting { try checkEventInjection(controls) }
        let entryLoadCount = try read(VMCSFields.Control32.entryMSRLoadCount)
        if entryLoadCount != 0 {
            let address = try read(VMCSFields.Control64.entryMSRLoadAddress)
            try require(isMSRArea(address, count: entryLoadCount), .entryMSRLoadAddressInvalid,
                        VMCSFields.Control64.entryMSRLoadAddress, address)
        }
        // SDM 27.2.1.3: this hypervisor never runs VM entry in SMM.
        try require(!entry.intersects(.entryToSMM | .deactivateDualMonitorTreatment), .smmControlsOutsideSMM,
                    entryField, entry.rawValue)
        return controls
    }

    // SDM 27.2.1.1 "VM-Execution Control Fields" (EPTP), 25.6.11 "Extended-Page-Table Pointer (EPTP)"
    func checkEPTP() throws(VMEntryViolation) {
        let field = VMCSFields.Control64.eptPointer
        let eptp = try read(field)
        let caps = capabilities.eptVPID ?? EPTVPIDCapabilities(rawValue: 0)
        let memoryType = MemoryType(rawValue: UInt8(eptp & 7))
        try require((memoryType == .uncacheable && caps.uncacheable) || (memoryType == .writeBack && caps.writeBack),
                    .eptpMemoryTypeUnsupported, field, eptp)
        let walk = (eptp >> 3) & 7
        try require((walk == 3 && caps.pageWalkLength4) || (walk == 4 && caps.pageWalkLength5),
                    .eptpWalkLengthUnsupported, field, eptp)
        try require(eptp & (1 << 6) == 0 || caps.accessedDirtyFlags, .eptpAccessedDirtyUnsupported, field, eptp)
        try require(eptp & (1 << 7) == 0 || caps.supervisorShadowStack, .eptpShadowStackUnsupported, field, eptp)
        try require(eptp & 0xF00 == 0 && fits(eptp, width: physicalAddressWidth), .eptpReservedBits, field, eptp)
    }

    // SDM 27.2.1.3 "VM-Entry Control Fields" (VM-entry interruption-information field)
    func checkEventInjection(_ c: Controls) throws(VMEntryViolation) {
        let field = VMCSFields.Control32.entryInterruptionInformation
        let info = c.injection
        try require(info & VMEntryInterruptionInfo.reservedMask == 0, .injectionReservedBits, field, info)
        let type = c.injectionType
        let vector = c.injectionVector
        let typeValid = type != .reserved
            && (type != .otherEvent || capabilities.primary.allows(.monitorTrapFlag))
        try require(typeValid, .injectionTypeInvalid, field, info)
        try require(type != .nmi || vector == ExceptionVector.nmi.rawValue, .injectionNMIVector, field, info)
        try require(type != .hardwareException || vector <= 31, .injectionHardwareExceptionVector, field, info)
        try require(type != .otherEvent || vector == 0, .injectionOtherEventVector, field, info)

        // The deliver-error-code bit against the type, guest CR0.PE, the vector
        // and IA32_VMX_BASIC[56] (any hardware exception may go either way).
        let cr0 = try read(VMCSFields.GuestNatural.cr0)
        let protectedHardwareException = type == .hardwareException && cr0 & CR0Bits.pe.rawValue != 0
        let strict = !capabilities.basic.hardwareExceptionWithoutErrorCode
        let errorCodeVector = InterruptionType.hardwareException.deliversErrorCode(vector: vector, protectedMode: true)
        let deliver = VMEntryInterruptionInfo(raw: info).deliversErrorCode
        if deliver {
            try require(protectedHardwareException && (!strict || errorCodeVector), .injectionErrorCodeNotAllowed,
                        field, info)
            let codeField = VMCSFields.Control32.entryExceptionErrorCode
            let code = try read(codeField)
            try require(code & 0xFFFF_0000 == 0, .injectionErrorCodeReservedBits, codeField, code)
        } else {
            try require(!(protectedHardwareException && strict && errorCodeVector), .injectionErrorCodeRequired,
                        field, info)
        }
        if type.needsInstructionLength {
            let lengthField = VMCSFields.Control32.entryInstructionLength
            let length = try read(lengthField)
            try require((length >= 1 || capabilities.misc.zeroLengthInstructionInjection) && length <= 15,
                        .injectionInstructionLength, lengthField, length)
        }
    }

}
