import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// The passthrough platform's vCPU: interrupts, HLT and the local APIC are the guest's.
@Suite struct PassthroughVCPUTests {
    static func hostWithAPICFeatures() -> FakeHardware {
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        var leaf1 = hw.cpu.cpuid(leaf: 1, subleaf: 0)
        leaf1.ecx |= CPUIDLeaf1ECX.x2APIC.rawValue | CPUIDLeaf1ECX.tscDeadline.rawValue
        hw.cpu.setCPUID(leaf: 1, leaf1)
        hw.cpu.msrs[MSR.ia32APICBase.address] = APICBase.resetBSP.rawValue
        return hw
    }

    @Test func interruptsNMIsHLTAndCR8RunWithoutExits() throws {
        let rig = try VCPURig(hw: Self.hostWithAPICFeatures(), platform: .passthrough)
        let pin = PinBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.pinBasedControls)))
        let primary = PrimaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.primaryProcessorBasedControls)))
        #expect(!pin.contains(.externalInterruptExiting) && !pin.contains(.nmiExiting))
        #expect(!primary.contains(.hltExiting) && !primary.contains(.cr8LoadExiting) && !primary.contains(.cr8StoreExiting))
        #expect(primary.contains(.useIOBitmaps) && primary.contains(.useMSRBitmaps))
        // The isolated platform keeps all of them.
        let isolated = try VCPURig(hw: Self.hostWithAPICFeatures())
        let ipin = PinBasedControls(rawValue: UInt32(isolated.field(VMCSFields.Control32.pinBasedControls)))
        let iprimary = PrimaryProcessorBasedControls(rawValue: UInt32(isolated.field(VMCSFields.Control32.primaryProcessorBasedControls)))
        #expect(ipin.contains(.externalInterruptExiting) && iprimary.contains(.hltExiting))
    }

    @Test func x2APICRegistersAndTSCDeadlineAreTheGuestsAndCPUIDShowsX2APIC() throws {
        var rig = try VCPURig(hw: Self.hostWithAPICFeatures(), platform: .passthrough)
        for msr: UInt32 in [0x800, 0x802, 0x830, 0x8FF, MSR.ia32TSCDeadline.address] {
            #expect(rig.vcpu.msrBitmap.interceptsRead(msr: msr) == .bitmap(intercepted: false))
            #expect(rig.vcpu.msrBitmap.interceptsWrite(msr: msr) == .bitmap(intercepted: false))
        }
        #expect(rig.vcpu.msrBitmap.interceptsWrite(msr: MSR.ia32APICBase.address) == .bitmap(intercepted: true))
        #expect(rig.vcpu.msrBitmap.interceptsRead(msr: 0x7FF) == .bitmap(intercepted: true))
        _ = rig.run([.cpuid(leaf: 1)])
        #expect(rig.vcpu.registers.rcx & UInt64(CPUIDLeaf1ECX.x2APIC.rawValue) != 0)
        // Isolated: x2APIC hidden, its MSRs exit.
        var isolated = try VCPURig(hw: Self.hostWithAPICFeatures())
        #expect(isolated.vcpu.msrBitmap.interceptsRead(msr: 0x802) == .bitmap(intercepted: true))
        _ = isolated.run([.cpuid(leaf: 1)])
        #expect(isolated.vcpu.registers.rcx & UInt64(CPUIDLeaf1ECX.x2APIC.rawValue) == 0)
    }

    @Test func apicBaseReadsAndWritesTheCPUWithinTheSDMTransitions() throws {
        let hw = Self.hostWithAPICFeatures()
        var rig = try VCPURig(hw: hw, platform: .passthrough)
        let xapic = APICBase.resetBSP.rawValue
        let x2apic = xapic | APICBase.x2APICEnableBit
        _ = rig.run([.rdmsr(MSR.ia32APICBase.address)])
        #expect(rig.edxeax == xapic)
        _ = rig.run([.wrmsr(MSR.ia32APICBase.address, x2apic)])              // xAPIC -> x2APIC
        #expect(hw.cpu.msrs[MSR.ia32APICBase.address] == x2apic)
        for bad in [xapic,                                                    // x2APIC -> xAPIC
                    x2apic & ~APICBase.globalEnableBit,                       // EXTD without EN
                    (x2apic & ~0xFFFF_F000) | 0xFEC0_0000,                    // moved
                    x2apic | 1 << 9] {                                        // reserved bit
            _ = rig.run([.wrmsr(MSR.ia32APICBase.address, bad)])
            #expect(rig.entries.last?.injected.raw == injectGP)
            #expect(hw.cpu.msrs[MSR.ia32APICBase.address] == x2apic)
        }
        let disabled = APICBase.defaultAddress          // and the BSP bit cannot be cleared
        _ = rig.run([.wrmsr(MSR.ia32APICBase.address, disabled)])
        #expect(hw.cpu.msrs[MSR.ia32APICBase.address] == disabled | APICBase.bspBit)
        _ = rig.run([.wrmsr(MSR.ia32APICBase.address, disabled | APICBase.globalEnableBit | APICBase.x2APICEnableBit)])
        #expect(rig.entries.last?.injected.raw == injectGP)                 // disabled -> x2APIC
        #expect(hw.cpu.msrs[MSR.ia32APICBase.address] == disabled | APICBase.bspBit)
    }

    @Test func compactedXSAVEIsHiddenWhenTheHostsLeafDDisagreesWithItself() throws {
        func guestLeafD1(reportedSize: UInt32) throws -> UInt32 {
            let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
            hw.cpu.cr4 |= CR4Bits.osxsave.rawValue
            // x87, SSE, AVX: 576 + 256 compacted.
            hw.cpu.setCPUID(leaf: 0xD, subleaf: 1, CPUIDResult(eax: 0x3, ebx: reportedSize, ecx: 0, edx: 0))
            var rig = try VCPURig(hw: hw)
            _ = rig.run([.cpuid(leaf: 0xD, subleaf: 1)])
            return UInt32(truncatingIfNeeded: rig.vcpu.registers.rax)
        }
        #expect(try guestLeafD1(reportedSize: 832) == 0x3)    // consistent: XSAVEOPT and XSAVEC
        #expect(try guestLeafD1(reportedSize: 1088) == 0x1)   // Bochs-like: XSAVEC hidden
    }
}
