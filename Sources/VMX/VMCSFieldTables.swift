// The field tables of SDM Appendix B "Field Encoding in VMCS", one enum per table,
// in the appendix order. Each group's `all` lists its fields once more, the one list
// its `forEach` and `count` read, so tests can check every encoding against the
// encoding rule and against the group it is declared in.

import X86Arch

extension VMCSFields {
    /// SDM B.1.1 "16-Bit Control Fields" (Table B-1).
    public enum Control16 {
        public static let virtualProcessorID = VMCSField16(0x0000, "Virtual-processor identifier (VPID)")
        public static let postedInterruptNotificationVector = VMCSField16(0x0002, "Posted-interrupt notification vector")
        public static let eptpIndex = VMCSField16(0x0004, "EPTP index")
        public static let hlatPrefixSize = VMCSField16(0x0006, "HLAT prefix size")
        public static let lastPIDPointerIndex = VMCSField16(0x0008, "Last PID-pointer index")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField16] = [
            virtualProcessorID, postedInterruptNotificationVector, eptpIndex, hlatPrefixSize, lastPIDPointerIndex
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .control16)) }
        }
    }

    /// SDM B.1.2 "16-Bit Guest-State Fields" (Table B-2).
    public enum Guest16 {
        public static let esSelector = VMCSField16(0x0800, "Guest ES selector")
        public static let csSelector = VMCSField16(0x0802, "Guest CS selector")
        public static let ssSelector = VMCSField16(0x0804, "Guest SS selector")
        public static let dsSelector = VMCSField16(0x0806, "Guest DS selector")
        public static let fsSelector = VMCSField16(0x0808, "Guest FS selector")
        public static let gsSelector = VMCSField16(0x080A, "Guest GS selector")
        public static let ldtrSelector = VMCSField16(0x080C, "Guest LDTR selector")
        public static let trSelector = VMCSField16(0x080E, "Guest TR selector")
        public static let interruptStatus = VMCSField16(0x0810, "Guest interrupt status")
        public static let pmlIndex = VMCSField16(0x0812, "PML index")
        public static let uinv = VMCSField16(0x0814, "Guest UINV")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField16] = [
            esSelector, csSelector, ssSelector, dsSelector, fsSelector, gsSelector, ldtrSelector, trSelector,
            interruptStatus, pmlIndex, uinv
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .guest16)) }
        }
    }

    /// SDM B.1.3 "16-Bit Host-State Fields" (Table B-3).
    public enum Host16 {
        public static let esSelector = VMCSField16(0x0C00, "Host ES selector")
        public static let csSelector = VMCSField16(0x0C02, "Host CS selector")
        public static let ssSelector = VMCSField16(0x0C04, "Host SS selector")
        public static let dsSelector = VMCSField16(0x0C06, "Host DS selector")
        public static let fsSelector = VMCSField16(0x0C08, "Host FS selector")
        public static let gsSelector = VMCSField16(0x0C0A, "Host GS selector")
        public static let trSelector = VMCSField16(0x0C0C, "Host TR selector")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField16] = [
            esSelector, csSelector, ssSelector, dsSelector, fsSelector, gsSelector, trSelector
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .host16)) }
        }
    }

    /// SDM B.2.1 "64-Bit Control Fields" (Table B-4).
    public enum Control64 {
        public static let ioBitmapA = VMCSField64(0x2000, "Address of I/O bitmap A")
        public static let ioBitmapB = VMCSField64(0x2002, "Address of I/O bitmap B")
        public static let msrBitmaps = VMCSField64(0x2004, "Address of MSR bitmaps")
        public static let exitMSRStoreAddress = VMCSField64(0x2006, "VM-exit MSR-store address")
        public static let exitMSRLoadAddress = VMCSField64(0x2008, "VM-exit MSR-load address")
        public static let entryMSRLoadAddress = VMCSField64(0x200A, "VM-entry MSR-load address")
        public static let executiveVMCSPointer = VMCSField64(0x200C, "Executive-VMCS pointer")
        public static let pmlAddress = VMCSField64(0x200E, "PML address")
        public static let tscOffset = VMCSField64(0x2010, "TSC offset")
        public static let virtualAPICAddress = VMCSField64(0x2012, "Virtual-APIC address")
        public static let apicAccessAddress = VMCSField64(0x2014, "APIC-access address")
        public static let postedInterruptDescriptorAddress = VMCSField64(0x2016, "Posted-interrupt descriptor address")
        public static let vmFunctionControls = VMCSField64(0x2018, "VM-function controls")
        public static let eptPointer = VMCSField64(0x201A, "EPT pointer (EPTP)")
        public static let eoiExitBitmap0 = VMCSField64(0x201C, "EOI-exit bitmap 0 (EOI_EXIT0)")
        public static let eoiExitBitmap1 = VMCSField64(0x201E, "EOI-exit bitmap 1 (EOI_EXIT1)")
        public static let eoiExitBitmap2 = VMCSField64(0x2020, "EOI-exit bitmap 2 (EOI_EXIT2)")
        public static let eoiExitBitmap3 = VMCSField64(0x2022, "EOI-exit bitmap 3 (EOI_EXIT3)")
        public static let eptpListAddress = VMCSField64(0x2024, "EPTP-list address")
        public static let vmreadBitmapAddress = VMCSField64(0x2026, "VMREAD-bitmap address")
        public static let vmwriteBitmapAddress = VMCSField64(0x2028, "VMWRITE-bitmap address")
        public static let virtualizationExceptionInformationAddress = VMCSField64(0x202A, "Virtualization-exception information address")
        public static let xssExitingBitmap = VMCSField64(0x202C, "XSS-exiting bitmap")
        public static let enclsExitingBitmap = VMCSField64(0x202E, "ENCLS-exiting bitmap")
        public static let subPagePermissionTablePointer = VMCSField64(0x2030, "Sub-page-permission-table pointer")
        public static let tscMultiplier = VMCSField64(0x2032, "TSC multiplier")
        public static let tertiaryProcessorBasedControls = VMCSField64(0x2034, "Tertiary processor-based VM-execution controls")
        public static let enclvExitingBitmap = VMCSField64(0x2036, "ENCLV-exiting bitmap")
        public static let lowPASIDDirectoryAddress = VMCSField64(0x2038, "Low PASID directory address")
        public static let highPASIDDirectoryAddress = VMCSField64(0x203A, "High PASID directory address")
        public static let sharedEPTPointer = VMCSField64(0x203C, "Shared EPT pointer")
        public static let pconfigExitingBitmap = VMCSField64(0x203E, "PCONFIG-exiting bitmap")
        public static let hlatPointer = VMCSField64(0x2040, "Hypervisor-managed linear-address translation pointer (HLATP)")
        public static let pidPointerTableAddress = VMCSField64(0x2042, "PID-pointer table address")
        public static let secondaryExitControls = VMCSField64(0x2044, "Secondary VM-exit controls")
        public static let ia32SpecCtrlMask = VMCSField64(0x204A, "IA32_SPEC_CTRL mask")
        public static let ia32SpecCtrlShadow = VMCSField64(0x204C, "IA32_SPEC_CTRL shadow")
        public static let injectedEventData = VMCSField64(0x2052, "Injected-event data")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField64] = [
            ioBitmapA, ioBitmapB, msrBitmaps, exitMSRStoreAddress, exitMSRLoadAddress, entryMSRLoadAddress,
            executiveVMCSPointer, pmlAddress, tscOffset, virtualAPICAddress, apicAccessAddress,
            postedInterruptDescriptorAddress, vmFunctionControls, eptPointer, eoiExitBitmap0, eoiExitBitmap1,
            eoiExitBitmap2, eoiExitBitmap3, eptpListAddress, vmreadBitmapAddress, vmwriteBitmapAddress,
            virtualizationExceptionInformationAddress, xssExitingBitmap, enclsExitingBitmap,
            subPagePermissionTablePointer, tscMultiplier, tertiaryProcessorBasedControls, enclvExitingBitmap,
            lowPASIDDirectoryAddress, highPASIDDirectoryAddress, sharedEPTPointer, pconfigExitingBitmap,
            hlatPointer, pidPointerTableAddress, secondaryExitControls, ia32SpecCtrlMask, ia32SpecCtrlShadow,
            injectedEventData
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .control64)) }
        }
    }

    /// SDM B.2.2 "64-Bit Read-Only Data Fields" (Table B-5).
    public enum ReadOnly64 {
        public static let guestPhysicalAddress = VMCSReadOnlyField64(0x2400, "Guest-physical address")
        public static let msrData = VMCSReadOnlyField64(0x2402, "MSR data")
        public static let originalEventData = VMCSReadOnlyField64(0x2404, "Original-event data")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSReadOnlyField64] = [
            guestPhysicalAddress, msrData, originalEventData
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .readOnly64)) }
        }
    }

    /// SDM B.2.3 "64-Bit Guest-State Fields" (Table B-6).
    public enum Guest64 {
        public static let vmcsLinkPointer = VMCSField64(0x2800, "VMCS link pointer")
        public static let ia32DebugCtl = VMCSField64(0x2802, "Guest IA32_DEBUGCTL")
        public static let ia32PAT = VMCSField64(0x2804, "Guest IA32_PAT")
        public static let ia32EFER = VMCSField64(0x2806, "Guest IA32_EFER")
        public static let ia32PerfGlobalCtrl = VMCSField64(0x2808, "Guest IA32_PERF_GLOBAL_CTRL")
        public static let pdpte0 = VMCSField64(0x280A, "Guest PDPTE0")
        public static let pdpte1 = VMCSField64(0x280C, "Guest PDPTE1")
        public static let pdpte2 = VMCSField64(0x280E, "Guest PDPTE2")
        public static let pdpte3 = VMCSField64(0x2810, "Guest PDPTE3")
        public static let ia32BNDCFGS = VMCSField64(0x2812, "Guest IA32_BNDCFGS")
        public static let ia32RTITCtl = VMCSField64(0x2814, "Guest IA32_RTIT_CTL")
        public static let ia32LBRCtl = VMCSField64(0x2816, "Guest IA32_LBR_CTL")
        public static let ia32PKRS = VMCSField64(0x2818, "Guest IA32_PKRS")
        public static let ia32FREDConfig = VMCSField64(0x281A, "Guest IA32_FRED_CONFIG")
        public static let ia32FREDRSP1 = VMCSField64(0x281C, "Guest IA32_FRED_RSP1")
        public static let ia32FREDRSP2 = VMCSField64(0x281E, "Guest IA32_FRED_RSP2")
        public static let ia32FREDRSP3 = VMCSField64(0x2820, "Guest IA32_FRED_RSP3")
        public static let ia32FREDStackLevels = VMCSField64(0x2822, "Guest IA32_FRED_STKLVLS")
        public static let ia32FREDSSP1 = VMCSField64(0x2824, "Guest IA32_FRED_SSP1")
        public static let ia32FREDSSP2 = VMCSField64(0x2826, "Guest IA32_FRED_SSP2")
        public static let ia32FREDSSP3 = VMCSField64(0x2828, "Guest IA32_FRED_SSP3")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField64] = [
            vmcsLinkPointer, ia32DebugCtl, ia32PAT, ia32EFER, ia32PerfGlobalCtrl, pdpte0, pdpte1, pdpte2, pdpte3,
            ia32BNDCFGS, ia32RTITCtl, ia32LBRCtl, ia32PKRS, ia32FREDConfig, ia32FREDRSP1, ia32FREDRSP2,
            ia32FREDRSP3, ia32FREDStackLevels, ia32FREDSSP1, ia32FREDSSP2, ia32FREDSSP3
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .guest64)) }
        }
    }

    /// SDM B.2.4 "64-Bit Host-State Fields" (Table B-7).
    public enum Host64 {
        public static let ia32PAT = VMCSField64(0x2C00, "Host IA32_PAT")
        public static let ia32EFER = VMCSField64(0x2C02, "Host IA32_EFER")
        public static let ia32PerfGlobalCtrl = VMCSField64(0x2C04, "Host IA32_PERF_GLOBAL_CTRL")
        public static let ia32PKRS = VMCSField64(0x2C06, "Host IA32_PKRS")
        public static let ia32FREDConfig = VMCSField64(0x2C08, "Host IA32_FRED_CONFIG")
        public static let ia32FREDRSP1 = VMCSField64(0x2C0A, "Host IA32_FRED_RSP1")
        public static let ia32FREDRSP2 = VMCSField64(0x2C0C, "Host IA32_FRED_RSP2")
        public static let ia32FREDRSP3 = VMCSField64(0x2C0E, "Host IA32_FRED_RSP3")
        public static let ia32FREDStackLevels = VMCSField64(0x2C10, "Host IA32_FRED_STKLVLS")
        public static let ia32FREDSSP1 = VMCSField64(0x2C12, "Host IA32_FRED_SSP1")
        public static let ia32FREDSSP2 = VMCSField64(0x2C14, "Host IA32_FRED_SSP2")
        public static let ia32FREDSSP3 = VMCSField64(0x2C16, "Host IA32_FRED_SSP3")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField64] = [
            ia32PAT, ia32EFER, ia32PerfGlobalCtrl, ia32PKRS, ia32FREDConfig, ia32FREDRSP1, ia32FREDRSP2,
            ia32FREDRSP3, ia32FREDStackLevels, ia32FREDSSP1, ia32FREDSSP2, ia32FREDSSP3
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .host64)) }
        }
    }

    /// SDM B.3.1 "32-Bit Control Fields" (Table B-8).
    public enum Control32 {
        public static let pinBasedControls = VMCSField32(0x4000, "Pin-based VM-execution controls")
        public static let primaryProcessorBasedControls = VMCSField32(0x4002, "Primary processor-based VM-execution controls")
        public static let exceptionBitmap = VMCSField32(0x4004, "Exception bitmap")
        public static let pageFaultErrorCodeMask = VMCSField32(0x4006, "Page-fault error-code mask")
        public static let pageFaultErrorCodeMatch = VMCSField32(0x4008, "Page-fault error-code match")
        public static let cr3TargetCount = VMCSField32(0x400A, "CR3-target count")
        public static let primaryExitControls = VMCSField32(0x400C, "Primary VM-exit controls")
        public static let exitMSRStoreCount = VMCSField32(0x400E, "VM-exit MSR-store count")
        public static let exitMSRLoadCount = VMCSField32(0x4010, "VM-exit MSR-load count")
        public static let entryControls = VMCSField32(0x4012, "VM-entry controls")
        public static let entryMSRLoadCount = VMCSField32(0x4014, "VM-entry MSR-load count")
        public static let entryInterruptionInformation = VMCSField32(0x4016, "VM-entry interruption-information field")
        public static let entryExceptionErrorCode = VMCSField32(0x4018, "VM-entry exception error code")
        public static let entryInstructionLength = VMCSField32(0x401A, "VM-entry instruction length")
        public static let tprThreshold = VMCSField32(0x401C, "TPR threshold")
        public static let secondaryProcessorBasedControls = VMCSField32(0x401E, "Secondary processor-based VM-execution controls")
        public static let pleGap = VMCSField32(0x4020, "PLE_Gap")
        public static let pleWindow = VMCSField32(0x4022, "PLE_Window")
        public static let instructionTimeoutControl = VMCSField32(0x4024, "Instruction-timeout control")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField32] = [
            pinBasedControls, primaryProcessorBasedControls, exceptionBitmap, pageFaultErrorCodeMask,
            pageFaultErrorCodeMatch, cr3TargetCount, primaryExitControls, exitMSRStoreCount, exitMSRLoadCount,
            entryControls, entryMSRLoadCount, entryInterruptionInformation, entryExceptionErrorCode,
            entryInstructionLength, tprThreshold, secondaryProcessorBasedControls, pleGap, pleWindow,
            instructionTimeoutControl
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .control32)) }
        }
    }

    /// SDM B.3.2 "32-Bit Read-Only Data Fields" (Table B-9).
    public enum ReadOnly32 {
        public static let vmInstructionError = VMCSReadOnlyField32(0x4400, "VM-instruction error")
        public static let exitReason = VMCSReadOnlyField32(0x4402, "Exit reason")
        public static let exitInterruptionInformation = VMCSReadOnlyField32(0x4404, "VM-exit interruption information")
        public static let exitInterruptionErrorCode = VMCSReadOnlyField32(0x4406, "VM-exit interruption error code")
        public static let idtVectoringInformation = VMCSReadOnlyField32(0x4408, "IDT-vectoring information field")
        public static let idtVectoringErrorCode = VMCSReadOnlyField32(0x440A, "IDT-vectoring error code")
        public static let exitInstructionLength = VMCSReadOnlyField32(0x440C, "VM-exit instruction length")
        public static let exitInstructionInformation = VMCSReadOnlyField32(0x440E, "VM-exit instruction information")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSReadOnlyField32] = [
            vmInstructionError, exitReason, exitInterruptionInformation, exitInterruptionErrorCode,
            idtVectoringInformation, idtVectoringErrorCode, exitInstructionLength, exitInstructionInformation
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .readOnly32)) }
        }
    }

    /// SDM B.3.3 "32-Bit Guest-State Fields" (Table B-10).
    public enum Guest32 {
        public static let esLimit = VMCSField32(0x4800, "Guest ES limit")
        public static let csLimit = VMCSField32(0x4802, "Guest CS limit")
        public static let ssLimit = VMCSField32(0x4804, "Guest SS limit")
        public static let dsLimit = VMCSField32(0x4806, "Guest DS limit")
        public static let fsLimit = VMCSField32(0x4808, "Guest FS limit")
        public static let gsLimit = VMCSField32(0x480A, "Guest GS limit")
        public static let ldtrLimit = VMCSField32(0x480C, "Guest LDTR limit")
        public static let trLimit = VMCSField32(0x480E, "Guest TR limit")
        public static let gdtrLimit = VMCSField32(0x4810, "Guest GDTR limit")
        public static let idtrLimit = VMCSField32(0x4812, "Guest IDTR limit")
        public static let esAccessRights = VMCSField32(0x4814, "Guest ES access rights")
        public static let csAccessRights = VMCSField32(0x4816, "Guest CS access rights")
        public static let ssAccessRights = VMCSField32(0x4818, "Guest SS access rights")
        public static let dsAccessRights = VMCSField32(0x481A, "Guest DS access rights")
        public static let fsAccessRights = VMCSField32(0x481C, "Guest FS access rights")
        public static let gsAccessRights = VMCSField32(0x481E, "Guest GS access rights")
        public static let ldtrAccessRights = VMCSField32(0x4820, "Guest LDTR access rights")
        public static let trAccessRights = VMCSField32(0x4822, "Guest TR access rights")
        public static let interruptibilityState = VMCSField32(0x4824, "Guest interruptibility state")
        public static let activityState = VMCSField32(0x4826, "Guest activity state")
        public static let smbase = VMCSField32(0x4828, "Guest SMBASE")
        public static let ia32SysenterCS = VMCSField32(0x482A, "Guest IA32_SYSENTER_CS")
        public static let preemptionTimerValue = VMCSField32(0x482E, "VMX-preemption timer value")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField32] = [
            esLimit, csLimit, ssLimit, dsLimit, fsLimit, gsLimit, ldtrLimit, trLimit, gdtrLimit, idtrLimit,
            esAccessRights, csAccessRights, ssAccessRights, dsAccessRights, fsAccessRights, gsAccessRights,
            ldtrAccessRights, trAccessRights, interruptibilityState, activityState, smbase, ia32SysenterCS,
            preemptionTimerValue
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .guest32)) }
        }
    }

    /// SDM B.3.4 "32-Bit Host-State Field" (Table B-11).
    public enum Host32 {
        public static let ia32SysenterCS = VMCSField32(0x4C00, "Host IA32_SYSENTER_CS")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSField32] = [
            ia32SysenterCS
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .host32)) }
        }
    }

    /// SDM B.4.1 "Natural-Width Control Fields" (Table B-12).
    public enum ControlNatural {
        public static let cr0GuestHostMask = VMCSFieldNatural(0x6000, "CR0 guest/host mask")
        public static let cr4GuestHostMask = VMCSFieldNatural(0x6002, "CR4 guest/host mask")
        public static let cr0ReadShadow = VMCSFieldNatural(0x6004, "CR0 read shadow")
        public static let cr4ReadShadow = VMCSFieldNatural(0x6006, "CR4 read shadow")
        public static let cr3Target0 = VMCSFieldNatural(0x6008, "CR3-target value 0")
        public static let cr3Target1 = VMCSFieldNatural(0x600A, "CR3-target value 1")
        public static let cr3Target2 = VMCSFieldNatural(0x600C, "CR3-target value 2")
        public static let cr3Target3 = VMCSFieldNatural(0x600E, "CR3-target value 3")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSFieldNatural] = [
            cr0GuestHostMask, cr4GuestHostMask, cr0ReadShadow, cr4ReadShadow, cr3Target0, cr3Target1, cr3Target2,
            cr3Target3
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .controlNatural)) }
        }
    }

    /// SDM B.4.2 "Natural-Width Read-Only Data Fields" (Table B-13).
    public enum ReadOnlyNatural {
        public static let exitQualification = VMCSReadOnlyFieldNatural(0x6400, "Exit qualification")
        public static let ioRCX = VMCSReadOnlyFieldNatural(0x6402, "I/O RCX")
        public static let ioRSI = VMCSReadOnlyFieldNatural(0x6404, "I/O RSI")
        public static let ioRDI = VMCSReadOnlyFieldNatural(0x6406, "I/O RDI")
        public static let ioRIP = VMCSReadOnlyFieldNatural(0x6408, "I/O RIP")
        public static let guestLinearAddress = VMCSReadOnlyFieldNatural(0x640A, "Guest-linear address")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSReadOnlyFieldNatural] = [
            exitQualification, ioRCX, ioRSI, ioRDI, ioRIP, guestLinearAddress
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .readOnlyNatural)) }
        }
    }

    /// SDM B.4.3 "Natural-Width Guest-State Fields" (Table B-14).
    public enum GuestNatural {
        public static let cr0 = VMCSFieldNatural(0x6800, "Guest CR0")
        public static let cr3 = VMCSFieldNatural(0x6802, "Guest CR3")
        public static let cr4 = VMCSFieldNatural(0x6804, "Guest CR4")
        public static let esBase = VMCSFieldNatural(0x6806, "Guest ES base")
        public static let csBase = VMCSFieldNatural(0x6808, "Guest CS base")
        public static let ssBase = VMCSFieldNatural(0x680A, "Guest SS base")
        public static let dsBase = VMCSFieldNatural(0x680C, "Guest DS base")
        public static let fsBase = VMCSFieldNatural(0x680E, "Guest FS base")
        public static let gsBase = VMCSFieldNatural(0x6810, "Guest GS base")
        public static let ldtrBase = VMCSFieldNatural(0x6812, "Guest LDTR base")
        public static let trBase = VMCSFieldNatural(0x6814, "Guest TR base")
        public static let gdtrBase = VMCSFieldNatural(0x6816, "Guest GDTR base")
        public static let idtrBase = VMCSFieldNatural(0x6818, "Guest IDTR base")
        public static let dr7 = VMCSFieldNatural(0x681A, "Guest DR7")
        public static let rsp = VMCSFieldNatural(0x681C, "Guest RSP")
        public static let rip = VMCSFieldNatural(0x681E, "Guest RIP")
        public static let rflags = VMCSFieldNatural(0x6820, "Guest RFLAGS")
        public static let pendingDebugExceptions = VMCSFieldNatural(0x6822, "Guest pending debug exceptions")
        public static let ia32SysenterESP = VMCSFieldNatural(0x6824, "Guest IA32_SYSENTER_ESP")
        public static let ia32SysenterEIP = VMCSFieldNatural(0x6826, "Guest IA32_SYSENTER_EIP")
        public static let ia32SCET = VMCSFieldNatural(0x6828, "Guest IA32_S_CET")
        public static let ssp = VMCSFieldNatural(0x682A, "Guest SSP")
        public static let ia32InterruptSSPTableAddress = VMCSFieldNatural(0x682C, "Guest IA32_INTERRUPT_SSP_TABLE_ADDR")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSFieldNatural] = [
            cr0, cr3, cr4, esBase, csBase, ssBase, dsBase, fsBase, gsBase, ldtrBase, trBase, gdtrBase, idtrBase,
            dr7, rsp, rip, rflags, pendingDebugExceptions, ia32SysenterESP, ia32SysenterEIP, ia32SCET, ssp,
            ia32InterruptSSPTableAddress
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .guestNatural)) }
        }
    }

    /// SDM B.4.4 "Natural-Width Host-State Fields" (Table B-15).
    public enum HostNatural {
        public static let cr0 = VMCSFieldNatural(0x6C00, "Host CR0")
        public static let cr3 = VMCSFieldNatural(0x6C02, "Host CR3")
        public static let cr4 = VMCSFieldNatural(0x6C04, "Host CR4")
        public static let fsBase = VMCSFieldNatural(0x6C06, "Host FS base")
        public static let gsBase = VMCSFieldNatural(0x6C08, "Host GS base")
        public static let trBase = VMCSFieldNatural(0x6C0A, "Host TR base")
        public static let gdtrBase = VMCSFieldNatural(0x6C0C, "Host GDTR base")
        public static let idtrBase = VMCSFieldNatural(0x6C0E, "Host IDTR base")
        public static let ia32SysenterESP = VMCSFieldNatural(0x6C10, "Host IA32_SYSENTER_ESP")
        public static let ia32SysenterEIP = VMCSFieldNatural(0x6C12, "Host IA32_SYSENTER_EIP")
        public static let rsp = VMCSFieldNatural(0x6C14, "Host RSP")
        public static let rip = VMCSFieldNatural(0x6C16, "Host RIP")
        public static let ia32SCET = VMCSFieldNatural(0x6C18, "Host IA32_S_CET")
        public static let ssp = VMCSFieldNatural(0x6C1A, "Host SSP")
        public static let ia32InterruptSSPTableAddress = VMCSFieldNatural(0x6C1C, "Host IA32_INTERRUPT_SSP_TABLE_ADDR")

        /// Every field of this table, in appendix order: the one list `forEach`
        /// and `count` read (VMCSFieldTests checks it against the declarations).
        public static let all: [_ of VMCSFieldNatural] = [
            cr0, cr3, cr4, fsBase, gsBase, trBase, gdtrBase, idtrBase, ia32SysenterESP, ia32SysenterEIP, rsp, rip,
            ia32SCET, ssp, ia32InterruptSSPTableAddress
        ]
        /// How many fields this table lists.
        public static var count: Int { all.count }
        /// Calls `body` with every field of this table, in appendix order.
        public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
            for i in all.indices { body(VMCSFieldInfo(all[i], group: .hostNatural)) }
        }
    }

    /// Calls `body` with every field of Appendix B, table by table.
    public static func forEach(_ body: (VMCSFieldInfo) -> Void) {
        Control16.forEach(body)
        Guest16.forEach(body)
        Host16.forEach(body)
        Control64.forEach(body)
        ReadOnly64.forEach(body)
        Guest64.forEach(body)
        Host64.forEach(body)
        Control32.forEach(body)
        ReadOnly32.forEach(body)
        Guest32.forEach(body)
        Host32.forEach(body)
        ControlNatural.forEach(body)
        ReadOnlyNatural.forEach(body)
        GuestNatural.forEach(body)
        HostNatural.forEach(body)
    }
}
