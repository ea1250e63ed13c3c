// VMX capability MSRs of Bochs 2.7 CPU models, as plain UInt64 constants.
//
// Measured, not merely derived: read in Bochs 2.7 (Debian package
// 2.7+dfsg-4+deb12u1) by a boot sector that executes RDMSR in real mode and
// prints each value to port 0xE9 (Tests/BochsMSRDump/dump-vmx-msrs.asm;
// run with `cpu: model=<name>` and `port_e9_hack: enabled=1`). An MSR that
// raised #GP is nil. The lead may replace them with values dumped from a
// Bochs boot of the kernel; they should come out identical.
//
// Cross-checked against the Bochs source (bochs-emu/Bochs cpu/vmcs.cc
// init_*_ctrls(), cpu/vmx.h VMX_MSR_*, cpu/cpudb/intel/<model>.cc
// get_vmx_extensions_bitmask()): e.g. Lynnfield's bitmask lacks
// BX_VMX_UNRESTRICTED_GUEST, so PROCBASED_CTLS2 allows only bits 0-6; the
// Skylake-X EPT/VPID value 0x06114141 | 1G pages (17) | A/D (21) | VPID 0xF01 << 32.
// One difference from today's Bochs source: Bochs 2.7 does not offer the
// "save IA32_PERF_GLOBAL_CTRL" exit control (bit 30), the measured EXIT_CTLS
// allow bits 0-22 only.

import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// The VMX-related MSRs of one Bochs CPU model.
package struct BochsCPUModel {
    package let name: String
    package let featureControl: UInt64        // 3AH
    package let vmxBasic: UInt64              // 480H
    package let pinbasedCtls: UInt64          // 481H
    package let procbasedCtls: UInt64         // 482H
    package let exitCtls: UInt64              // 483H
    package let entryCtls: UInt64             // 484H
    package let misc: UInt64                  // 485H
    package let cr0Fixed0: UInt64             // 486H
    package let cr0Fixed1: UInt64             // 487H
    package let cr4Fixed0: UInt64             // 488H
    package let cr4Fixed1: UInt64             // 489H
    package let vmcsEnum: UInt64              // 48AH
    package let procbasedCtls2: UInt64?       // 48BH
    package let eptVPIDCap: UInt64?           // 48CH
    package let truePinbasedCtls: UInt64      // 48DH
    package let trueProcbasedCtls: UInt64     // 48EH
    package let trueExitCtls: UInt64          // 48FH
    package let trueEntryCtls: UInt64         // 490H
    package let vmfunc: UInt64?               // 491H

    /// The MSR map a FakeCPU serves (absent MSRs raise #GP).
    package var msrs: [UInt32: UInt64] {
        var map: [UInt32: UInt64] = [
            0x3A: featureControl, 0x480: vmxBasic, 0x481: pinbasedCtls, 0x482: procbasedCtls,
            0x483: exitCtls, 0x484: entryCtls, 0x485: misc, 0x486: cr0Fixed0, 0x487: cr0Fixed1,
            0x488: cr4Fixed0, 0x489: cr4Fixed1, 0x48A: vmcsEnum, 0x48D: truePinbasedCtls,
            0x48E: trueProcbasedCtls, 0x48F: trueExitCtls, 0x490: trueEntryCtls,
        ]
        if let procbasedCtls2 { map[0x48B] = procbasedCtls2 }
        if let eptVPIDCap { map[0x48C] = eptVPIDCap }
        if let vmfunc { map[0x491] = vmfunc }
        return map
    }
}

package enum BochsCapabilities {
    /// `cpu: model=corei7_skylake_x`: EPT with 1 GiB pages and A/D flags,
    /// unrestricted guest, VPID, VMCS shadowing, PML, #VE, TSC scaling.
    package static let corei7_skylake_x = BochsCPUModel(
        name: "corei7_skylake_x",
        featureControl: 0x0000_0000_0000_0005,
        vmxBasic: 0x00D8_1000_0000_002B,
        pinbasedCtls: 0x0000_007F_0000_0016,
        procbasedCtls: 0xF7F9_FFFE_0401_E172,
        exitCtls: 0x007F_FFFF_0003_6DFF,
        entryCtls: 0x0000_FFFF_0000_11FF,
        misc: 0x0000_0000_6004_01E0,
        cr0Fixed0: 0x0000_0000_8000_0021,
        cr0Fixed1: 0x0000_0000_FFFF_FFFF,
        cr4Fixed0: 0x0000_0000_0000_2000,
        cr4Fixed1: 0x0000_0000_0037_27FF,
        vmcsEnum: 0x0000_0000_0000_0034,
        procbasedCtls2: 0x0217_7FFF_0000_0000,
        eptVPIDCap: 0x0000_0F01_0633_4141,
        truePinbasedCtls: 0x0000_007F_0000_0016,
        trueProcbasedCtls: 0xF7F9_FFFE_0400_6172,
        trueExitCtls: 0x007F_FFFF_0003_6DFB,
        trueEntryCtls: 0x0000_FFFF_0000_11FB,
        vmfunc: 0x0000_0000_0000_0001)

    /// `cpu: model=corei5_lynnfield_750`: EPT and VPID but no unrestricted
    /// guest (a real-mode guest fails VM entry with reason 33), no VM functions.
    package static let corei5_lynnfield_750 = BochsCPUModel(
        name: "corei5_lynnfield_750",
        featureControl: 0x0000_0000_0000_0005,
        vmxBasic: 0x00D8_1000_0000_002B,
        pinbasedCtls: 0x0000_007F_0000_0016,
        procbasedCtls: 0xF7F9_FFFE_0401_E172,
        exitCtls: 0x007F_FFFF_0003_6DFF,
        entryCtls: 0x0000_FFFF_0000_11FF,
        misc: 0x0000_0000_0004_01E0,
        cr0Fixed0: 0x0000_0000_8000_0021,
        cr0Fixed1: 0x0000_0000_FFFF_FFFF,
        cr4Fixed0: 0x0000_0000_0000_2000,
        cr4Fixed1: 0x0000_0000_0000_67FF,
        vmcsEnum: 0x0000_0000_0000_0034,
        procbasedCtls2: 0x0000_007F_0000_0000,
        eptVPIDCap: 0x0000_0F01_0611_4141,
        truePinbasedCtls: 0x0000_007F_0000_0016,
        trueProcbasedCtls: 0xF7F9_FFFE_0400_6172,
        trueExitCtls: 0x007F_FFFF_0003_6DFB,
        trueEntryCtls: 0x0000_FFFF_0000_11FB,
        vmfunc: nil)

    /// `cpu: model=corei7_haswell_4770`: EPT with 1 GiB pages and A/D flags,
    /// unrestricted guest, VPID, VM functions (EPTP switching).
    package static let corei7_haswell_4770 = BochsCPUModel(
        name: "corei7_haswell_4770",
        featureControl: 0x0000_0000_0000_0005,
        vmxBasic: 0x00D8_1000_0000_002B,
        pinbasedCtls: 0x0000_007F_0000_0016,
        procbasedCtls: 0xF7F9_FFFE_0401_E172,
        exitCtls: 0x007F_FFFF_0003_6DFF,
        entryCtls: 0x0000_FFFF_0000_11FF,
        misc: 0x0000_0000_2004_01E0,
        cr0Fixed0: 0x0000_0000_8000_0021,
        cr0Fixed1: 0x0000_0000_FFFF_FFFF,
        cr4Fixed0: 0x0000_0000_0000_2000,
        cr4Fixed1: 0x0000_0000_0017_27FF,
        vmcsEnum: 0x0000_0000_0000_0034,
        procbasedCtls2: 0x0004_7FFF_0000_0000,
        eptVPIDCap: 0x0000_0F01_0633_4141,
        truePinbasedCtls: 0x0000_007F_0000_0016,
        trueProcbasedCtls: 0xF7F9_FFFE_0400_6172,
        trueExitCtls: 0x007F_FFFF_0003_6DFB,
        trueEntryCtls: 0x0000_FFFF_0000_11FB,
        vmfunc: 0x0000_0000_0000_0001)

    /// `cpu: model=core2_penryn_t9600`: secondary controls exist but offer
    /// only "virtualize APIC accesses" and "WBINVD exiting": no EPT, no VPID,
    /// so IA32_VMX_EPT_VPID_CAP raises #GP.
    package static let core2_penryn_t9600 = BochsCPUModel(
        name: "core2_penryn_t9600",
        featureControl: 0x0000_0000_0000_0005,
        vmxBasic: 0x00D8_1000_0000_002B,
        pinbasedCtls: 0x0000_003F_0000_0016,
        procbasedCtls: 0xF7F9_FFFE_0401_E172,
        exitCtls: 0x0003_FFFF_0003_6DFF,
        entryCtls: 0x0000_3FFF_0000_11FF,
        misc: 0x0000_0000_0004_01E0,
        cr0Fixed0: 0x0000_0000_8000_0021,
        cr0Fixed1: 0x0000_0000_FFFF_FFFF,
        cr4Fixed0: 0x0000_0000_0000_2000,
        cr4Fixed1: 0x0000_0000_0004_67FF,
        vmcsEnum: 0x0000_0000_0000_0034,
        procbasedCtls2: 0x0000_0041_0000_0000,
        eptVPIDCap: nil,
        truePinbasedCtls: 0x0000_003F_0000_0016,
        trueProcbasedCtls: 0xF7F9_FFFE_0400_6172,
        trueExitCtls: 0x0003_FFFF_0003_6DFB,
        trueEntryCtls: 0x0000_3FFF_0000_11FB,
        vmfunc: nil)

    package static let all = [corei7_skylake_x, corei5_lynnfield_750, corei7_haswell_4770, core2_penryn_t9600]
}
