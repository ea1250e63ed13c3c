import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct VMXControlsTests {
    static func caps(_ model: BochsCPUModel) throws -> VMXCapabilities {
        try VMXCapabilities.read(from: FakeCPU(bochs: model))
    }

    @Test func capabilityHalvesAreAllowed0AndAllowed1() {
        // SDM A.3.1: bits 31:0 are allowed 0-settings (1 = must be 1), bits 63:32
        // allowed 1-settings. Pin-based default1 class: bits 1, 2, 4.
        let pin = VMXControlCapability<PinBasedControls>(msrValue: BochsCapabilities.corei7_skylake_x.truePinbasedCtls)
        #expect(pin.mustBeOne.rawValue == 1 << 1 | 1 << 2 | 1 << 4)
        #expect(pin.allows(.externalInterruptExiting | .nmiExiting | .virtualNMIs | .activatePreemptionTimer))
        #expect(!pin.allows(.processPostedInterrupts))
        #expect(pin.msrValue == BochsCapabilities.corei7_skylake_x.truePinbasedCtls)
    }

    @Test func adjustAddsMustBeOneBitsAndAllowedOptionalsOnly() throws {
        let caps = try Self.caps(BochsCapabilities.corei7_skylake_x)
        let secondary = try #require(caps.secondary)
        let value = try secondary.adjust(required: .enableEPT | .unrestrictedGuest,
                                         optional: .enableVPID | .enableENCLSExiting)
        #expect(value == .enableEPT | .unrestrictedGuest | .enableVPID)   // ENCLS exiting (bit 15) not offered
        #expect(secondary.isValid(value))
    }

    @Test func trueControlsLetCR3ExitingBeZero() throws {
        // SDM A.3.2: CR3-load/store exiting (bits 15, 16) are default1; only the
        // TRUE MSR may report them as allowed to be 0.
        let model = BochsCapabilities.corei7_skylake_x
        let base = VMXControlCapability<PrimaryProcessorBasedControls>(msrValue: model.procbasedCtls)
        let truth = VMXControlCapability<PrimaryProcessorBasedControls>(msrValue: model.trueProcbasedCtls)
        let wanted: PrimaryProcessorBasedControls = .hltExiting | .useMSRBitmaps
        #expect(try base.adjust(required: wanted).contains(.cr3LoadExiting | .cr3StoreExiting))
        #expect(!(try truth.adjust(required: wanted).intersects(.cr3LoadExiting | .cr3StoreExiting)))
        // Default1 bits 1, 4-6, 8, 13, 14, 26 stay 1 either way.
        #expect(try truth.adjust(required: wanted).rawValue & 0x0400_6172 == 0x0400_6172)
    }

    @Test func lynnfieldCannotProvideUnrestrictedGuest() throws {
        let caps = try Self.caps(BochsCapabilities.corei5_lynnfield_750)
        var caught: ControlAdjustmentError?
        do {
            _ = try caps.adjust(required: VMXControlSettings(secondary: .enableEPT | .unrestrictedGuest))
        } catch { caught = error }
        let error = try #require(caught)
        #expect(error.kind == .secondaryProcessorBased)
        #expect(error.missing == SecondaryProcessorBasedControls.unrestrictedGuest.rawValue)
        var names: [String] = []
        error.forEachMissingBitName { names.append($0.description) }
        #expect(names == ["Unrestricted guest"])
        #expect(VMXError.controlsUnsupported(error).summary.description == "required VMX controls not supported")
    }

    @Test func lynnfieldAcceptsAProtectedModeGuestSetup() throws {
        let caps = try Self.caps(BochsCapabilities.corei5_lynnfield_750)
        let settings = try caps.adjust(required: VMXControlSettings(
            pinBased: .externalInterruptExiting | .nmiExiting,
            primary: .hltExiting | .useIOBitmaps | .useMSRBitmaps,
            secondary: .enableEPT | .enableVPID,
            exit: .hostAddressSpaceSize | .loadIA32EFER | .saveIA32EFER | .acknowledgeInterruptOnExit,
            entry: .ia32eModeGuest | .loadIA32EFER))
        #expect(settings.primary.contains(.activateSecondaryControls))
        #expect(caps.pinBased.isValid(settings.pinBased) && caps.primary.isValid(settings.primary))
        #expect(caps.secondary?.isValid(settings.secondary) == true)
        #expect(caps.exit.isValid(settings.exit) && caps.entry.isValid(settings.entry))
    }

    @Test func penrynOffersNoEPT() throws {
        let caps = try Self.caps(BochsCapabilities.core2_penryn_t9600)
        #expect(throws: ControlAdjustmentError(kind: .secondaryProcessorBased, missing: 1 << 1)) {
            try caps.adjust(required: VMXControlSettings(secondary: .enableEPT))
        }
    }

    @Test func secondaryControlsAreOnlyActivatedWhenSomeAreSet() throws {
        let caps = try Self.caps(BochsCapabilities.core2_penryn_t9600)
        // Optional secondary controls the CPU lacks: nothing to activate.
        let none = try caps.adjust(required: VMXControlSettings(primary: .hltExiting | .activateSecondaryControls),
                                   optional: VMXControlSettings(secondary: .enableEPT))
        #expect(none.secondary.isEmpty)
        #expect(!none.primary.contains(.activateSecondaryControls))
        let some = try caps.adjust(required: VMXControlSettings(secondary: .wbinvdExiting))
        #expect(some.primary.contains(.activateSecondaryControls))
    }

    @Test func cpuWithoutSecondaryControlsNamesEveryRequiredSecondaryBit() throws {
        var caps = try Self.caps(BochsCapabilities.core2_penryn_t9600)
        caps.secondary = nil
        #expect(throws: ControlAdjustmentError(kind: .secondaryProcessorBased, missing: 0x41)) {
            try caps.adjust(required: VMXControlSettings(secondary: .virtualizeAPICAccesses | .wbinvdExiting))
        }
        let optionalOnly = try caps.adjust(required: VMXControlSettings(),
                                           optional: VMXControlSettings(secondary: .enableRDTSCP))
        #expect(optionalOnly.secondary.isEmpty)
    }

    @Test func missingControlsInOtherFieldsNameTheirField() throws {
        let caps = try Self.caps(BochsCapabilities.corei7_skylake_x)
        #expect(throws: ControlAdjustmentError(kind: .pinBased, missing: 1 << 7)) {
            try caps.adjust(required: VMXControlSettings(pinBased: .processPostedInterrupts))
        }
        #expect(throws: ControlAdjustmentError(kind: .primaryProcessorBased, missing: 1 << 27)) {
            try caps.adjust(required: VMXControlSettings(primary: .monitorTrapFlag))   // Bochs 2.7 lacks MTF
        }
        #expect(throws: ControlAdjustmentError(kind: .vmExit, missing: 1 << 28)) {
            try caps.adjust(required: VMXControlSettings(exit: .loadCETState))
        }
        #expect(throws: ControlAdjustmentError(kind: .vmEntry, missing: 1 << 22)) {
            try caps.adjust(required: VMXControlSettings(entry: .loadPKRS))
        }
    }

    @Test func reservedMissingBitsAreReportedAsReserved() {
        var names: [String] = []
        ControlAdjustmentError(kind: .pinBased, missing: 1 << 1 | 1 << 3).forEachMissingBitName { names.append($0.description) }
        #expect(names == ["reserved bit", "NMI exiting"])
    }

    @Test func capabilityMSRFollowsBasicBit55() {
        let withTrue = VMXBasic(rawValue: 1 << 55)
        let without = VMXBasic(rawValue: 0)
        let kinds: [VMXControlKind] = [.pinBased, .primaryProcessorBased, .secondaryProcessorBased, .vmExit, .vmEntry]
        #expect(kinds.map { $0.capabilityMSR(basic: without).address } == [0x481, 0x482, 0x48B, 0x483, 0x484])
        #expect(kinds.map { $0.capabilityMSR(basic: withTrue).address } == [0x48D, 0x48E, 0x48B, 0x48F, 0x490])
        #expect(Set(kinds.map { $0.name.description }).count == 5)
    }

    @Test func bitNamesFollowTheControlTables() {
        #expect(VMXControlKind.pinBased.name(ofBit: 0)?.description == "External-interrupt exiting")
        #expect(VMXControlKind.pinBased.name(ofBit: 1) == nil)
        #expect(VMXControlKind.primaryProcessorBased.name(ofBit: 31)?.description == "Activate secondary controls")
        #expect(VMXControlKind.secondaryProcessorBased.name(ofBit: 1)?.description == "Enable EPT")
        #expect(VMXControlKind.vmExit.name(ofBit: 9)?.description == "Host address-space size")
        #expect(VMXControlKind.vmEntry.name(ofBit: 9)?.description == "IA-32e mode guest")
        #expect(VMXControlKind.vmEntry.name(ofBit: 0) == nil)
    }

    @Test func everyNamedBitHasItsFlagAtThatPosition() {
        // Each flag constant and the name table agree on the SDM bit position.
        func check<C: VMXControlSet>(_ pairs: [(C, Int)]) {
            for (flag, bit) in pairs {
                #expect(flag.rawValue == 1 << bit)
                #expect(C.name(ofBit: bit) != nil, "\(C.kind.name) bit \(bit)")
            }
            var named = 0
            for bit in 0..<32 where C.name(ofBit: bit) != nil { named += 1 }
            #expect(named == pairs.count, "\(C.kind.name): named bits without a flag")
        }
        check([(PinBasedControls.externalInterruptExiting, 0), (.nmiExiting, 3), (.virtualNMIs, 5),
               (.activatePreemptionTimer, 6), (.processPostedInterrupts, 7)])
        check([(PrimaryProcessorBasedControls.interruptWindowExiting, 2), (.useTSCOffsetting, 3), (.hltExiting, 7),
               (.invlpgExiting, 9), (.mwaitExiting, 10), (.rdpmcExiting, 11), (.rdtscExiting, 12),
               (.cr3LoadExiting, 15), (.cr3StoreExiting, 16), (.activateTertiaryControls, 17),
               (.cr8LoadExiting, 19), (.cr8StoreExiting, 20), (.useTPRShadow, 21), (.nmiWindowExiting, 22),
               (.movDRExiting, 23), (.unconditionalIOExiting, 24), (.useIOBitmaps, 25), (.monitorTrapFlag, 27),
               (.useMSRBitmaps, 28), (.monitorExiting, 29), (.pauseExiting, 30), (.activateSecondaryControls, 31)])
        check([(SecondaryProcessorBasedControls.virtualizeAPICAccesses, 0), (.enableEPT, 1),
               (.descriptorTableExiting, 2), (.enableRDTSCP, 3), (.virtualizeX2APICMode, 4), (.enableVPID, 5),
               (.wbinvdExiting, 6), (.unrestrictedGuest, 7), (.apicRegisterVirtualization, 8),
               (.virtualInterruptDelivery, 9), (.pauseLoopExiting, 10), (.rdrandExiting, 11), (.enableINVPCID, 12),
               (.enableVMFunctions, 13), (.vmcsShadowing, 14), (.enableENCLSExiting, 15), (.rdseedExiting, 16),
               (.enablePML, 17), (.eptViolationVE, 18), (.concealVMXFromPT, 19), (.enableXSAVES, 20),
               (.pasidTranslation, 21), (.modeBasedExecuteControl, 22), (.subPageWritePermissions, 23),
               (.ptUsesGuestPhysicalAddresses, 24), (.useTSCScaling, 25), (.enableUserWaitAndPause, 26),
               (.enablePCONFIG, 27), (.enableENCLVExiting, 28), (.busLockDetection, 30), (.instructionTimeout, 31)])
        check([(VMExitControls.saveDebugControls, 2), (.hostAddressSpaceSize, 9), (.loadIA32PerfGlobalCtrl, 12),
               (.acknowledgeInterruptOnExit, 15), (.saveIA32PAT, 18), (.loadIA32PAT, 19), (.saveIA32EFER, 20),
               (.loadIA32EFER, 21), (.savePreemptionTimerValue, 22), (.clearIA32BNDCFGS, 23),
               (.concealVMXFromPT, 24), (.clearIA32RTITCtl, 25), (.clearIA32LBRCtl, 26), (.clearUINV, 27),
               (.loadCETState, 28), (.loadPKRS, 29), (.saveIA32PerfGlobalCtrl, 30), (.activateSecondaryControls, 31)])
        check([(VMEntryControls.loadDebugControls, 2), (.ia32eModeGuest, 9), (.entryToSMM, 10),
               (.deactivateDualMonitorTreatment, 11), (.loadIA32PerfGlobalCtrl, 13), (.loadIA32PAT, 14),
               (.loadIA32EFER, 15), (.loadIA32BNDCFGS, 16), (.concealVMXFromPT, 17), (.loadIA32RTITCtl, 18),
               (.loadUINV, 19), (.loadCETState, 20), (.loadIA32LBRCtl, 21), (.loadPKRS, 22), (.loadFRED, 23)])
    }

    @Test func exitAndEntryDefault1ClassesAreForcedWithoutTrueControls() throws {
        // SDM A.4/A.5: exit default1 bits 0-8, 10, 11, 13, 14, 16, 17; entry 0-8, 12.
        let model = BochsCapabilities.corei7_skylake_x
        let exit = try VMXControlCapability<VMExitControls>(msrValue: model.exitCtls).adjust(required: .hostAddressSpaceSize)
        #expect(exit.rawValue == 0x0003_6DFF | 1 << 9)
        let entry = try VMXControlCapability<VMEntryControls>(msrValue: model.entryCtls).adjust(required: .ia32eModeGuest)
        #expect(entry.rawValue == 0x0000_11FF | 1 << 9)
        // TRUE variants release "save/load debug controls" (bit 2).
        let trueExit = try VMXControlCapability<VMExitControls>(msrValue: model.trueExitCtls).adjust(required: .hostAddressSpaceSize)
        #expect(!trueExit.contains(.saveDebugControls))
    }

    @Test func tertiaryControlsSitAtTable25_8Positions() {
        #expect(TertiaryProcessorBasedControls.loadIWKeyExiting.rawValue == 1 << 0)
        #expect(TertiaryProcessorBasedControls.enableHLAT.rawValue == 1 << 1)
        #expect(TertiaryProcessorBasedControls.eptPagingWriteControl.rawValue == 1 << 2)
        #expect(TertiaryProcessorBasedControls.guestPagingVerification.rawValue == 1 << 3)
        #expect(TertiaryProcessorBasedControls.ipiVirtualization.rawValue == 1 << 4)
        #expect(TertiaryProcessorBasedControls.virtualizeIA32SpecCtrl.rawValue == 1 << 7)
    }
}
