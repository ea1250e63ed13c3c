import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

// Complete, valid VMCS contents as a 64-bit hypervisor writes them before
// VMLAUNCH, on the Bochs Skylake-X capability MSRs: controls adjusted from the
// measured capabilities, the host state of a 64-bit kernel, and one of several
// guest starts. Each must pass every VM-entry check; tests break one field.

/// The starting points the VM-entry tests break.
package enum GuestStateFixture: Sendable, CustomStringConvertible {
    /// Real mode under unrestricted guest, as after a boot-sector load at 0000:7C00.
    case real
    /// 64-bit mode: paging, PAE, EFER.LME/LMA, CS.L, a busy TSS.
    case long
    /// 64-bit mode without unrestricted guest (as on a CPU that lacks it).
    case longRestricted
    /// Virtual-8086 mode in a 32-bit protected-mode guest.
    case virtual8086
    /// 32-bit protected mode with PAE paging under EPT (PDPTEs in the VMCS).
    case pae
    /// Real-mode guest of a 32-bit host (VM entry outside IA-32e mode).
    case host32

    package var description: String {
        switch self {
        case .real: return "real"
        case .long: return "long"
        case .longRestricted: return "longRestricted"
        case .virtual8086: return "virtual8086"
        case .pae: return "pae"
        case .host32: return "host32"
        }
    }
}

/// What the checker is told besides the VMCS.
package struct CheckEnvironment {
    package var capabilities: VMXCapabilities
    package var physicalAddressWidth = 40
    package var processorInIA32eMode = true

    package func check(_ vmcs: FakeVMCS) -> VMEntryViolation? {
        VMEntryChecker(vmcs: vmcs, capabilities: capabilities, physicalAddressWidth: physicalAddressWidth,
                       processorInIA32eMode: processorInIA32eMode).check()
    }
}

package enum Fixture {
    package typealias C16 = VMCSFields.Control16
    package typealias C32 = VMCSFields.Control32
    package typealias C64 = VMCSFields.Control64
    package typealias CN = VMCSFields.ControlNatural
    package typealias H16 = VMCSFields.Host16
    package typealias H32 = VMCSFields.Host32
    package typealias H64 = VMCSFields.Host64
    package typealias HN = VMCSFields.HostNatural
    package typealias G16 = VMCSFields.Guest16
    package typealias G32 = VMCSFields.Guest32
    package typealias G64 = VMCSFields.Guest64
    package typealias GN = VMCSFields.GuestNatural

    /// The measured Bochs 2.7 corei7_skylake_x capabilities.
    package static func skylake() -> VMXCapabilities {
        do {
            return try VMXCapabilities.read(from: FakeCPU(bochs: BochsCapabilities.corei7_skylake_x))
        } catch {
            preconditionFailure("Bochs Skylake-X capabilities do not decode: \(error)")
        }
    }

    package static func environment(for fixture: GuestStateFixture) -> CheckEnvironment {
        var env = CheckEnvironment(capabilities: skylake())
        if case .host32 = fixture { env.processorInIA32eMode = false }
        return env
    }

    /// A VMCS holding the fixture's complete state.
    package static func vmcs(_ fixture: GuestStateFixture) -> FakeVMCS {
        let v = FakeVMCS()
        writeControls(v, fixture)
        writeHostState(v, fixture)
        switch fixture {
        case .real, .host32: writeRealModeGuest(v)
        case .long, .longRestricted: writeLongModeGuest(v)
        case .virtual8086: writeVirtual8086Guest(v)
        case .pae: writePAEGuest(v)
        }
        return v
    }

    package static let eptPointer: UInt64 = 0x0030_3000 | 6 | 3 << 3

    package static func writeControls(_ v: FakeVMCS, _ fixture: GuestStateFixture) {
        var required = VMXControlSettings(
            pinBased: .externalInterruptExiting | .nmiExiting | .virtualNMIs,
            primary: .hltExiting | .useIOBitmaps | .useMSRBitmaps,
            secondary: .enableEPT | .unrestrictedGuest | .enableVPID,
            exit: .hostAddressSpaceSize | .acknowledgeInterruptOnExit | .saveIA32PAT | .loadIA32PAT
                | .saveIA32EFER | .loadIA32EFER,
            entry: .loadDebugControls | .loadIA32PAT | .loadIA32EFER)
        switch fixture {
        case .long: required.entry.insert(.ia32eModeGuest)
        case .longRestricted:
            required.entry.insert(.ia32eModeGuest)
            required.secondary.remove(.unrestrictedGuest)
        case .host32: required.exit.remove(.hostAddressSpaceSize)
        case .real, .virtual8086, .pae: break
        }
        let settings: VMXControlSettings
        do { settings = try skylake().adjust(required: required) } catch {
            preconditionFailure("Skylake-X cannot provide the fixture controls: \(error)")
        }
        v.preset(C32.pinBasedControls, settings.pinBased.rawValue)
        v.preset(C32.primaryProcessorBasedControls, settings.primary.rawValue)
        v.preset(C32.secondaryProcessorBasedControls, settings.secondary.rawValue)
        v.preset(C32.primaryExitControls, settings.exit.rawValue)
        v.preset(C32.entryControls, settings.entry.rawValue)
        v.preset(C32.exceptionBitmap, 0)
        v.preset(C32.cr3TargetCount, 0)
        v.preset(C32.entryInterruptionInformation, 0)
        v.preset(C32.entryExceptionErrorCode, 0)
        v.preset(C32.entryInstructionLength, 0)
        v.preset(C64.ioBitmapA, 0x0030_0000)
        v.preset(C64.ioBitmapB, 0x0030_1000)
        v.preset(C64.msrBitmaps, 0x0030_2000)
        v.preset(C64.eptPointer, eptPointer)
        v.preset(C16.virtualProcessorID, 1)
        // One page of MSR lists: store and entry-load share the first half.
        v.preset(C64.exitMSRStoreAddress, 0x0030_4000)
        v.preset(C64.entryMSRLoadAddress, 0x0030_4000)
        v.preset(C64.exitMSRLoadAddress, 0x0030_4800)
        v.preset(C32.exitMSRStoreCount, 4)
        v.preset(C32.entryMSRLoadCount, 4)
        v.preset(C32.exitMSRLoadCount, 4)
        v.preset(CN.cr0GuestHostMask, 0x8000_0021)
        v.preset(CN.cr4GuestHostMask, 0x2000)
    }

    package static func writeHostState(_ v: FakeVMCS, _ fixture: GuestStateFixture) {
        let host32: Bool
        if case .host32 = fixture { host32 = true } else { host32 = false }
        v.preset(HN.cr0, 0x8001_0033)                 // PG WP NE ET MP PE
        v.preset(HN.cr3, host32 ? 0x0010_9000 : 0x0010_8000)
        v.preset(HN.cr4, host32 ? 0x2610 : 0x2620)    // VMXE OSXMMEXCPT OSFXSR, PAE (64-bit) or PSE
        v.preset(H16.csSelector, 0x08)
        v.preset(H16.ssSelector, 0x10)
        v.preset(H16.dsSelector, 0x10)
        v.preset(H16.esSelector, 0x10)
        v.preset(H16.fsSelector, 0)
        v.preset(H16.gsSelector, 0)
        v.preset(H16.trSelector, 0x18)
        v.preset(HN.fsBase, 0)
        v.preset(HN.gsBase, 0)
        v.preset(HN.trBase, 0x0010_4000)
        v.preset(HN.gdtrBase, 0x0010_3000)
        v.preset(HN.idtrBase, 0x0010_5000)
        v.preset(H32.ia32SysenterCS, 0)
        v.preset(HN.ia32SysenterESP, 0)
        v.preset(HN.ia32SysenterEIP, 0)
        v.preset(H64.ia32EFER, host32 ? 0 : 0xD00)     // NXE LMA LME
        v.preset(H64.ia32PAT, 0x0007_0406_0007_0406)
        v.preset(HN.rsp, 0x0020_0000)
        v.preset(HN.rip, 0x0010_2000)
    }

    /// Everything the guest-state area needs besides CR0/CR4/EFER and segments.
    package static func writeCommonGuest(_ v: FakeVMCS) {
        v.preset(GN.dr7, 0x400)
        v.preset(GN.rflags, 0x2)
        v.preset(G64.ia32PAT, 0x0007_0406_0007_0406)
        v.preset(G64.ia32DebugCtl, 0)
        v.preset(G64.vmcsLinkPointer, UInt64.max)
        v.preset(G32.ia32SysenterCS, 0)
        v.preset(GN.ia32SysenterESP, 0)
        v.preset(GN.ia32SysenterEIP, 0)
        v.preset(G32.interruptibilityState, 0)
        v.preset(G32.activityState, 0)
        v.preset(GN.pendingDebugExceptions, 0)
        v.preset(G32.preemptionTimerValue, 0)
    }

    package static func segment(_ v: FakeVMCS, _ selector: VMCSField16, _ base: VMCSFieldNatural, _ limit: VMCSField32,
                        _ rights: VMCSField32, _ values: (UInt16, UInt64, UInt32, UInt32)) {
        v.preset(selector, values.0)
        v.preset(base, values.1)
        v.preset(limit, values.2)
        v.preset(rights, values.3)
    }

    /// CS, then SS, DS, ES, FS, GS with the same data descriptor.
    package static func segments(_ v: FakeVMCS, code: (UInt16, UInt64, UInt32, UInt32), data: (UInt16, UInt64, UInt32, UInt32)) {
        segment(v, G16.csSelector, GN.csBase, G32.csLimit, G32.csAccessRights, code)
        segment(v, G16.ssSelector, GN.ssBase, G32.ssLimit, G32.ssAccessRights, data)
        segment(v, G16.dsSelector, GN.dsBase, G32.dsLimit, G32.dsAccessRights, data)
        segment(v, G16.esSelector, GN.esBase, G32.esLimit, G32.esAccessRights, data)
        segment(v, G16.fsSelector, GN.fsBase, G32.fsLimit, G32.fsAccessRights, data)
        segment(v, G16.gsSelector, GN.gsBase, G32.gsLimit, G32.gsAccessRights, data)
    }

    /// Real mode at 0000:7C00 with unrestricted guest: CR0 = ET|NE (PE and PG
    /// clear), CR4 = VMXE, 64 KiB segments, LDTR unusable, TR a busy TSS.
    package static func writeRealModeGuest(_ v: FakeVMCS) {
        writeCommonGuest(v)
        v.preset(GN.cr0, 0x30)
        v.preset(GN.cr3, 0)
        v.preset(GN.cr4, 0x2000)
        v.preset(CN.cr0ReadShadow, 0x10)
        v.preset(CN.cr4ReadShadow, 0)
        v.preset(G64.ia32EFER, 0)
        v.preset(GN.rip, 0x7C00)
        v.preset(GN.rsp, 0x7000)
        segments(v, code: (0, 0, 0xFFFF, 0x9B), data: (0, 0, 0xFFFF, 0x93))
        segment(v, G16.ldtrSelector, GN.ldtrBase, G32.ldtrLimit, G32.ldtrAccessRights, (0, 0, 0, 0x1_0000))
        segment(v, G16.trSelector, GN.trBase, G32.trLimit, G32.trAccessRights, (0, 0, 0xFFFF, 0x8B))
        v.preset(GN.gdtrBase, 0)
        v.preset(G32.gdtrLimit, 0xFFFF)
        v.preset(GN.idtrBase, 0)
        v.preset(G32.idtrLimit, 0x3FF)
    }

    /// 64-bit mode: flat CS (L=1), flat data, 4-level paging at 1000H.
    package static func writeLongModeGuest(_ v: FakeVMCS) {
        writeCommonGuest(v)
        v.preset(GN.cr0, 0x8001_0031)                  // PG WP NE ET PE
        v.preset(GN.cr3, 0x1000)
        v.preset(GN.cr4, 0x2020)                       // VMXE PAE
        v.preset(CN.cr0ReadShadow, 0x8001_0031)
        v.preset(CN.cr4ReadShadow, 0x20)
        v.preset(G64.ia32EFER, 0x500)                  // LMA LME
        v.preset(GN.rip, 0x0010_0000)
        v.preset(GN.rsp, 0x0008_0000)
        segments(v, code: (0x08, 0, 0xFFFF_FFFF, 0xA09B), data: (0x10, 0, 0xFFFF_FFFF, 0xC093))
        segment(v, G16.ldtrSelector, GN.ldtrBase, G32.ldtrLimit, G32.ldtrAccessRights, (0, 0, 0, 0x1_0000))
        segment(v, G16.trSelector, GN.trBase, G32.trLimit, G32.trAccessRights, (0x18, 0x0000_2000, 0x67, 0x8B))
        v.preset(GN.gdtrBase, 0x500)
        v.preset(G32.gdtrLimit, 0x1F)
        v.preset(GN.idtrBase, 0)
        v.preset(G32.idtrLimit, 0)
    }

    /// Virtual-8086 mode: CR0.PE, RFLAGS.VM, segments 1000:xxxx as F3H.
    package static func writeVirtual8086Guest(_ v: FakeVMCS) {
        writeCommonGuest(v)
        v.preset(GN.cr0, 0x31)
        v.preset(GN.cr3, 0)
        v.preset(GN.cr4, 0x2000)
        v.preset(G64.ia32EFER, 0)
        v.preset(GN.rflags, 0x2_0002)
        v.preset(GN.rip, 0x0100)
        v.preset(GN.rsp, 0xFFFE)
        segments(v, code: (0x1000, 0x1_0000, 0xFFFF, 0xF3), data: (0x1000, 0x1_0000, 0xFFFF, 0xF3))
        segment(v, G16.ldtrSelector, GN.ldtrBase, G32.ldtrLimit, G32.ldtrAccessRights, (0, 0, 0, 0x1_0000))
        segment(v, G16.trSelector, GN.trBase, G32.trLimit, G32.trAccessRights, (0x18, 0x2000, 0x2067, 0x8B))
        v.preset(GN.gdtrBase, 0x500)
        v.preset(G32.gdtrLimit, 0x1F)
        v.preset(GN.idtrBase, 0x600)
        v.preset(G32.idtrLimit, 0x7FF)
    }

    /// 32-bit protected mode with PAE paging: flat 4 GiB segments, PDPTEs
    /// loaded from the VMCS because EPT is on.
    package static func writePAEGuest(_ v: FakeVMCS) {
        writeCommonGuest(v)
        v.preset(GN.cr0, 0x8000_0031)
        v.preset(GN.cr3, 0x3000)
        v.preset(GN.cr4, 0x2020)
        v.preset(G64.ia32EFER, 0)
        v.preset(GN.rip, 0x0010_0000)
        v.preset(GN.rsp, 0x0009_0000)
        segments(v, code: (0x08, 0, 0xFFFF_FFFF, 0xC09B), data: (0x10, 0, 0xFFFF_FFFF, 0xC093))
        segment(v, G16.ldtrSelector, GN.ldtrBase, G32.ldtrLimit, G32.ldtrAccessRights, (0, 0, 0, 0x1_0000))
        segment(v, G16.trSelector, GN.trBase, G32.trLimit, G32.trAccessRights, (0x18, 0x2000, 0x67, 0x8B))
        v.preset(GN.gdtrBase, 0x500)
        v.preset(G32.gdtrLimit, 0x1F)
        v.preset(GN.idtrBase, 0x600)
        v.preset(G32.idtrLimit, 0x7FF)
        v.preset(G64.pdpte0, 0x4001)
        v.preset(G64.pdpte1, 0x5001)
        v.preset(G64.pdpte2, 0)
        v.preset(G64.pdpte3, 0x7001)
    }
}
