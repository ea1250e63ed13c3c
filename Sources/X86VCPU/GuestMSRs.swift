// The guest's view of the MSRs that exit. Every MSR the host depends on is
// either swapped by VM entry/exit (EFER, PAT, SYSENTER, FS/GS base through the
// VMCS; STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE, TSC_AUX through the MSR
// lists, see VCPU.swift; SPEC_CTRL too when the CPU has it) or emulated here;
// anything else raises #GP, as an unimplemented MSR does on hardware.

import X86Arch
import VMX

extension VCPU {
    /// The value RDMSR returns, or nil for #GP. `mutating` only so that self
    /// is passed by reference: called non-mutating from the RDMSR handler, the
    /// whole 2.7 KB vCPU was copied to the stack on every exit.
    mutating func readGuestMSR<H: VMXHardware>(_ hw: H, _ msr: UInt32) throws(VMXError) -> UInt64? {
        // The compiler tests a switch's cases one by one: the three of the
        // 0xC000_0000 range (64-bit guests' most used) apart from the rest.
        if msr >= MSR.ia32EFER.address {
            switch msr {
            case MSR.ia32EFER.address: return try hw.read(VMCSFields.Guest64.ia32EFER)
            case MSR.ia32FSBase.address: return try hw.read(VMCSFields.GuestNatural.fsBase)
            case MSR.ia32GSBase.address: return try hw.read(VMCSFields.GuestNatural.gsBase)
            default: return nil
            }
        }
        switch msr {
        case MSR.ia32PAT.address: return try hw.read(VMCSFields.Guest64.ia32PAT)
        case MSR.ia32DebugCtl.address: return try hw.read(VMCSFields.Guest64.ia32DebugCtl)
        case MSR.ia32SysenterCS.address: return UInt64(try hw.read(VMCSFields.Guest32.ia32SysenterCS))
        case MSR.ia32SysenterESP.address: return try hw.read(VMCSFields.GuestNatural.ia32SysenterESP)
        case MSR.ia32SysenterEIP.address: return try hw.read(VMCSFields.GuestNatural.ia32SysenterEIP)
        case MSR.ia32TimeStampCounter.address:
            return hw.readTSC() &+ (features.tscOffsetting ? try hw.read(VMCSFields.Control64.tscOffset) : 0)
        // Locked, VMX off: the guest sees a CPU without VMX (CPUID agrees).
        case MSR.ia32FeatureControl.address: return FeatureControl.lockBit
        case MSR.ia32APICBase.address: return platformKind == .passthrough ? hw.readMSR(msr) : apicBase
        case MSR.ia32MiscEnable.address: return miscEnable
        case MSR.ia32MTRRCap.address: return 0
        case MSR.ia32MTRRDefType.address: return mtrrDefType
        case MSR.ia32XSS.address where features.xsaves: return xss
        case MSR.ia32PlatformID.address, MSR.ia32BIOSSignID.address: return 0
        default: return nil
        }
    }

    /// Performs WRMSR for the guest; false for #GP. EFER is tested apart
    /// from the others: inside one function the compiler put it last.
    @inline(__always)
    mutating func writeGuestMSR<H: VMXHardware>(_ hw: H, _ msr: UInt32, _ value: UInt64) throws(VMXError) -> Bool {
        msr == MSR.ia32EFER.address ? try writeGuestEFER(hw, value) : try writeOtherGuestMSR(hw, msr, value)
    }

    mutating func writeOtherGuestMSR<H: VMXHardware>(_ hw: H, _ msr: UInt32, _ value: UInt64) throws(VMXError) -> Bool {
        switch msr {
        case MSR.ia32PAT.address:
            // SDM 12.12.2 "IA32_PAT MSR": each entry a valid memory type.
            guard PAT(rawValue: value).isValid else { return false }
            try hw.write(VMCSFields.Guest64.ia32PAT, value)
        case MSR.ia32DebugCtl.address:
            // Only LBR and BTF may be set; they are kept but not acted on.
            guard value & ~(DebugCtl.lbr | .btf).rawValue == 0 else { return false }
            try hw.write(VMCSFields.Guest64.ia32DebugCtl, value)
        // SDM "WRMSR": a non-canonical base or SYSENTER address raises #GP
        // (these are normally written without an exit; the same rule here).
        case MSR.ia32FSBase.address:
            guard isCanonicalForGuest(value) else { return false }
            try hw.write(VMCSFields.GuestNatural.fsBase, value)
        case MSR.ia32GSBase.address:
            guard isCanonicalForGuest(value) else { return false }
            try hw.write(VMCSFields.GuestNatural.gsBase, value)
        case MSR.ia32SysenterCS.address: try hw.write(VMCSFields.Guest32.ia32SysenterCS, UInt32(truncatingIfNeeded: value))
        case MSR.ia32SysenterESP.address:
            guard isCanonicalForGuest(value) else { return false }
            try hw.write(VMCSFields.GuestNatural.ia32SysenterESP, value)
        case MSR.ia32SysenterEIP.address:
            guard isCanonicalForGuest(value) else { return false }
            try hw.write(VMCSFields.GuestNatural.ia32SysenterEIP, value)
        case MSR.ia32TimeStampCounter.address:
            // The host's TSC is never written: the guest's moves by the offset.
            guard features.tscOffsetting else { return true }
            tscOffset = value &- hw.readTSC()
            try hw.write(VMCSFields.Control64.tscOffset, tscOffset)
        case MSR.ia32APICBase.address where platformKind == .passthrough:
            guard let value = Self.passthroughAPICBase(current: hw.readMSR(msr), requested: value,
                                                       physicalAddressBits: features.physicalAddressBits) else { return false }
            hw.writeMSR(msr, value)
            apicBase = value
        case MSR.ia32APICBase.address:
            // Bochs ignores re-enabling a disabled APIC, so the guest's view is ours.
            guard value & APICBase.reservedLowMask == 0 else { return false }
            apicBase = value
        case MSR.ia32MiscEnable.address: miscEnable = value
        case MSR.ia32MTRRDefType.address:
            guard value & ~MTRRDefType.writableMask == 0 else { return false }
            mtrrDefType = value
        case MSR.ia32XSS.address where features.xsaves:
            // SDM 14.4.4 "IA32_XSS": only supervisor states the policy exposes.
            guard value & ~cpuidPolicy.allowedXSS == 0 else { return false }
            xss = value
        // SPEC_CTRL and PRED_CMD exit only on a CPU without them: #GP, as there.
        case MSR.ia32BIOSSignID.address, MSR.ia32BIOSUpdtTrig.address: break
        default: return false
        }
        return true
    }

    /// The value a passthrough guest's IA32_APIC_BASE write stores on the
    /// CPU, or nil for #GP: the mode change must be one the SDM allows
    /// (11.12.5 "x2APIC State Transitions": never x2APIC to xAPIC, never
    /// disabled to x2APIC, never EXTD without EN), no reserved bit may be
    /// set, and the base must stay where it is: a moved APIC page would hide
    /// whatever memory it lands on, the hypervisor's included. BSP is read-only.
    static func passthroughAPICBase(current: UInt64, requested: UInt64, physicalAddressBits: Int) -> UInt64? {
        let en = APICBase.globalEnableBit, extd = APICBase.x2APICEnableBit, bsp = APICBase.bspBit
        let baseMask = (UInt64(1) << UInt64(physicalAddressBits) - 1) & ~0xFFF
        guard requested & ~(baseMask | en | extd | bsp) == 0, requested & baseMask == current & baseMask else { return nil }
        let from = current & (en | extd), to = requested & (en | extd)
        switch (from, to) {
        case (_, extd): return nil                      // invalid state
        case (en | extd, en): return nil                // x2APIC -> xAPIC
        case (0, en | extd): return nil                 // disabled -> x2APIC
        default: return (requested & ~bsp) | (current & bsp)
        }
    }

    /// Canonical for the CPU's linear-address width (57 bits with 5-level
    /// paging support, else 48), which VM entry also checks.
    func isCanonicalForGuest(_ address: UInt64) -> Bool {
        isCanonical(address, linearBits: guestCR4Bits & CR4Bits.la57.rawValue != 0 ? 57 : 48)
    }

    /// SDM 2.2.1 "Extended Feature Enable Register": SCE, LME, NXE are the
    /// guest's when CPUID reports them; LMA is read-only (it follows paging,
    /// see writeGuestCR0); LME cannot change while paging is on. The new
    /// value passes the VM-entry rules before it is stored.
    mutating func writeGuestEFER<H: VMXHardware>(_ hw: H, _ value: UInt64) throws(VMXError) -> Bool {
        let writable = features.eferWritable
        let lma = EFER.lma.rawValue
        guard value & ~(writable | lma) == 0 else { return false }
        let old = try hw.read(VMCSFields.Guest64.ia32EFER)
        let efer = (value & writable) | (old & lma)
        // No VM-entry check reads SCE or NXE (SDM 27.3.1.1 "Checks on Guest
        // Control Registers, Debug Registers, and MSRs"): with LME as it was,
        // the entry takes this EFER exactly as it takes the guest's own.
        if (efer ^ old) & EFER.lme.rawValue == 0 {
            try hw.write(VMCSFields.Guest64.ia32EFER, efer)
            return true
        }
        let cr0 = try hw.read(VMCSFields.GuestNatural.cr0)
        if cr0 & CR0Bits.pg.rawValue != 0 { return false }
        let state = GuestControlState(cr0: cr0, cr3: nil, cr4: try hw.read(VMCSFields.GuestNatural.cr4), efer: efer,
                                      ia32eModeGuest: old & lma != 0)
        guard commitable(state) else { return false }
        try hw.write(VMCSFields.Guest64.ia32EFER, efer)
        return true
    }
}

extension VCPU {
    // RDMSR and WRMSR exits (through `quickExit`, QuickExits.swift): the
    // platform's devices answer first (the isolated platform's local APIC:
    // IA32_APIC_BASE, the x2APIC registers, TSC_DEADLINE), then the vCPU.

    /// RDMSR ECX into EDX:EAX: true when done, false when it raised #GP.
    @inline(__always)
    mutating func rdmsr<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> Bool {
        let msr = UInt32(truncatingIfNeeded: registers.rcx)
        let value: UInt64
        platform.advance(toTSC: guestTSC(hw))   // a device MSR reads the guest's time
        switch platform.msrRead(msr) {
        case .done(let v): value = v
        case .generalProtection: return generalProtection()
        case .notMine:
            guard let v = try readGuestMSR(hw, msr) else { return generalProtection() }
            value = v
        }
        registers.rax = value & 0xFFFF_FFFF
        registers.rdx = value >> 32
        return true
    }

    /// WRMSR EDX:EAX to ECX: true when done, false when it raised #GP.
    /// Not inlined: writes are rarer than reads, and most check more.
    @inline(never)
    mutating func wrmsr<H: VMXHardware, P: GuestPlatform>(_ hw: H, _ platform: inout P) throws(VMXError) -> Bool {
        let msr = UInt32(truncatingIfNeeded: registers.rcx)
        let value = (registers.rdx & 0xFFFF_FFFF) << 32 | (registers.rax & 0xFFFF_FFFF)
        let mirrored = (xss, apicBase)
        platform.advance(toTSC: guestTSC(hw))
        switch platform.msrWrite(msr, value) {
        case .done:
            if msr == MSR.ia32APICBase.address { apicBase = value }   // CPUID.1:EDX.APIC follows it
        case .generalProtection: return generalProtection()
        case .notMine:
            guard try writeGuestMSR(hw, msr, value) else { return generalProtection() }
        }
        // Leaf 0xD follows IA32_XSS, leaf 1's APIC bit the APIC base.
        if mirrored != (xss, apicBase) { fastPath.invalidateCPUID() }
        return true
    }

    /// #GP(0) queued; the MSR instruction is not done.
    mutating func generalProtection() -> Bool {
        _ = raise(.exception(.generalProtection, errorCode: 0))
        return false
    }
}
