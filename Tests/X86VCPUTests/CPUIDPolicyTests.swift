import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

@Suite struct CPUIDPolicyTests {
    /// Skylake-X XSAVE layout (CPUID.(0xD,i) EAX size, EBX offset).
    static var skylakeXLayout: XSAVELayout {
        var l = XSAVELayout()
        l.setComponent(2, size: 256, offset: 576, alignedTo64: false)   // AVX
        l.setComponent(3, size: 64, offset: 960, alignedTo64: false)    // BNDREGS
        l.setComponent(4, size: 64, offset: 1024, alignedTo64: false)   // BNDCSR
        l.setComponent(5, size: 64, offset: 1088, alignedTo64: false)   // opmask
        l.setComponent(6, size: 512, offset: 1152, alignedTo64: false)  // ZMM_Hi256
        l.setComponent(7, size: 1024, offset: 1664, alignedTo64: false) // Hi16_ZMM
        l.setComponent(9, size: 8, offset: 2688, alignedTo64: false)    // PKRU
        return l
    }
    static var policy: CPUIDPolicy { CPUIDPolicy(hostXCR0: 0x2FF, xsaveLayout: skylakeXLayout) }
    static let guestNoOSXSAVE = CPUIDGuestState(cr4: 0x20, xcr0: 1)
    static let guestOSXSAVE = CPUIDGuestState(cr4: 0x20 | 1 << 18, xcr0: 0x7)
    static func bytes(_ r: UInt32) -> [UInt8] { (0 ..< 4).map { UInt8(truncatingIfNeeded: r >> ($0 * 8)) } }

    @Test func hypervisorLeafCarriesSignature() {
        let v = Self.policy.guestView(leaf: 0x4000_0000, subleaf: 0, host: CPUIDValues(eax: 0x16, ebx: 1, ecx: 2, edx: 3), guest: Self.guestNoOSXSAVE)
        #expect(v.eax == 0x4000_0001)
        let sig = Self.bytes(v.ebx) + Self.bytes(v.ecx) + Self.bytes(v.edx)
        #expect(sig == Array("SwiftVMXhv".utf8) + [0, 0])
        #expect(Self.policy.guestView(leaf: 0x4000_0001, subleaf: 0, host: CPUIDValues(eax: 9, ebx: 9, ecx: 9, edx: 9), guest: Self.guestNoOSXSAVE) == .zero)
        #expect(Self.policy.guestView(leaf: 0x4000_0100, subleaf: 0, host: CPUIDValues(eax: 9, ebx: 9, ecx: 9, edx: 9), guest: Self.guestNoOSXSAVE) == .zero)
    }

    @Test func leaf1HidesVMXSetsHypervisorBitAndKeepsEAX() {
        // Host: family 6 model 0x55 stepping 4; ECX with MONITOR, VMX, SSE4.2,
        // x2APIC, XSAVE, OSXSAVE, AVX; EDX with FPU, APIC, DS, SSE2.
        let hostECX: UInt32 = 1 << 3 | 1 << 5 | 1 << 20 | 1 << 21 | 1 << 26 | 1 << 27 | 1 << 28
        let hostEDX: UInt32 = 1 << 0 | 1 << 9 | 1 << 21 | 1 << 26
        let host = CPUIDValues(eax: 0x0005_0654, ebx: 0x0010_0800, ecx: hostECX, edx: hostEDX)
        let v = Self.policy.guestView(leaf: 1, subleaf: 0, host: host, guest: Self.guestNoOSXSAVE)
        #expect(v.eax == 0x0005_0654)  // the Rust reference clobbered EAX
        #expect(v.ebx == 0x0010_0800)
        #expect(v.ecx & 1 << 5 == 0)    // VMX
        #expect(v.ecx & 1 << 3 == 0)    // MONITOR
        #expect(v.ecx & 1 << 21 == 0)   // x2APIC not emulated by default
        #expect(v.ecx & 1 << 31 != 0)   // hypervisor
        #expect(v.ecx & 1 << 20 != 0 && v.ecx & 1 << 26 != 0 && v.ecx & 1 << 28 != 0)
        #expect(v.ecx & 1 << 27 == 0)   // host has OSXSAVE, guest CR4.OSXSAVE is 0
        #expect(v.edx == 1 << 0 | 1 << 9 | 1 << 26)  // DS hidden
        let withOSXSAVE = Self.policy.guestView(leaf: 1, subleaf: 0, host: host, guest: Self.guestOSXSAVE)
        #expect(withOSXSAVE.ecx & 1 << 27 != 0)
        // Without XSAVE on the host, CR4.OSXSAVE cannot make OSXSAVE appear.
        let noXSAVE = CPUIDValues(eax: 0x0005_0654, ebx: 0, ecx: hostECX & ~(1 << 26 | 1 << 27), edx: 0)
        #expect(Self.policy.guestView(leaf: 1, subleaf: 0, host: noXSAVE, guest: Self.guestOSXSAVE).ecx & 1 << 27 == 0)
        // APIC bit follows the guest's IA32_APIC_BASE global enable.
        let apicOff = CPUIDGuestState(cr4: 0, xcr0: 1, apicGloballyEnabled: false)
        #expect(Self.policy.guestView(leaf: 1, subleaf: 0, host: host, guest: apicOff).edx & 1 << 9 == 0)
    }

    @Test func masksAreConfigurableButVMXStaysHidden() {
        var p = Self.policy
        p.leaf1ECXHidden = 0
        let host = CPUIDValues(eax: 0, ebx: 0, ecx: 1 << 5 | 1 << 21, edx: 0)
        let v = p.guestView(leaf: 1, subleaf: 0, host: host, guest: Self.guestNoOSXSAVE)
        #expect(v.ecx & 1 << 21 != 0)
        #expect(v.ecx & 1 << 5 == 0)
        // Leaf 6 (APERF/MPERF in ECX bit 0) is zeroed by default: Linux would read APERF.
        let thermal = CPUIDValues(eax: 0x77, ebx: 2, ecx: 9, edx: 0)
        #expect(Self.policy.guestView(leaf: 6, subleaf: 0, host: thermal, guest: Self.guestNoOSXSAVE) == .zero)
        p.zeroedBasicLeaves = 0
        #expect(p.guestView(leaf: 6, subleaf: 0, host: thermal, guest: Self.guestNoOSXSAVE) == thermal)
    }

    @Test func leaf7HidesSGXPTMPXAndMirrorsOSPKE() {
        // EBX: SGX 2, AVX2 5, MPX 14, AVX512F 16, PT 25; ECX: PKU 3, OSPKE 4, WAITPKG 5; EDX: AMX-TILE 24.
        let host = CPUIDValues(eax: 2, ebx: 1 << 2 | 1 << 5 | 1 << 14 | 1 << 16 | 1 << 25,
                               ecx: 1 << 3 | 1 << 4 | 1 << 5, edx: 1 << 24 | 1 << 26)
        let v = Self.policy.guestView(leaf: 7, subleaf: 0, host: host, guest: Self.guestNoOSXSAVE)
        #expect(v.eax == 2)
        #expect(v.ebx == 1 << 5 | 1 << 16)
        #expect(v.ecx == 1 << 3)               // OSPKE off: guest CR4.PKE is 0
        #expect(v.edx == 1 << 26)
        let pke = CPUIDGuestState(cr4: 1 << 22, xcr0: 1)
        #expect(Self.policy.guestView(leaf: 7, subleaf: 0, host: host, guest: pke).ecx == 1 << 3 | 1 << 4)
        // Other subleaves pass through.
        #expect(Self.policy.guestView(leaf: 7, subleaf: 1, host: host, guest: pke) == host)
    }

    @Test func leaf7HidesTSCAdjustBecauseTheGuestTSCIsOffsetNotAdjusted() {
        // EBX bit 1: IA32_TSC_ADJUST; Linux reads that MSR when the bit is set.
        let host = CPUIDValues(eax: 0, ebx: 1 << 0 | 1 << 1 | 1 << 3, ecx: 0, edx: 0)
        let v = Self.policy.guestView(leaf: 7, subleaf: 0, host: host, guest: Self.guestNoOSXSAVE)
        #expect(v.ebx == 1 << 0 | 1 << 3)
    }

    @Test func leavesOfHiddenFeaturesAreZero() {
        let host = CPUIDValues(eax: 0x40, ebx: 0x40, ecx: 3, edx: 0x1120)
        for leaf: UInt32 in [5, 0xA, 0x12, 0x14] {
            #expect(Self.policy.guestView(leaf: leaf, subleaf: 0, host: host, guest: Self.guestNoOSXSAVE) == .zero)
        }
        #expect(Self.policy.guestView(leaf: 0, subleaf: 0, host: host, guest: Self.guestNoOSXSAVE) == host)
        #expect(Self.policy.guestView(leaf: 0xB, subleaf: 1, host: host, guest: Self.guestNoOSXSAVE) == host)
    }

    @Test func extendedLeafHidesRDTSCPKeepsLongMode() {
        let host = CPUIDValues(eax: 0, ebx: 0, ecx: 1 << 0 | 1 << 5, edx: 1 << 11 | 1 << 20 | 1 << 27 | 1 << 29)
        let v = Self.policy.guestView(leaf: 0x8000_0001, subleaf: 0, host: host, guest: Self.guestNoOSXSAVE)
        #expect(v.edx == 1 << 11 | 1 << 20 | 1 << 29)
        #expect(v.ecx == host.ecx)
    }

    /// Leaf 0xD subleaf 0 reports the XCR0 bits XSETBV will accept and the
    /// XSAVE size for the guest's own XCR0 (Skylake-X sizes: 832 for x87|SSE|AVX,
    /// 2696 with AVX-512 and PKRU).
    @Test func xsaveLeafMatchesGuestXCR0() {
        let p = Self.policy
        #expect(p.supportedXCR0 == 0x2E7)  // host MPX not offered
        let host0 = CPUIDValues(eax: 0x2FF, ebx: 2696, ecx: 2696, edx: 0)
        let v = p.guestView(leaf: 0xD, subleaf: 0, host: host0, guest: Self.guestOSXSAVE)
        #expect(v.eax == 0x2E7 && v.edx == 0)
        #expect(v.ebx == 832)
        #expect(v.ecx == 2696)
        let full = CPUIDGuestState(cr4: 1 << 18, xcr0: 0x2E7)
        #expect(p.guestView(leaf: 0xD, subleaf: 0, host: host0, guest: full).ebx == 2696)
        let legacy = p.guestView(leaf: 0xD, subleaf: 0, host: host0, guest: Self.guestNoOSXSAVE)
        #expect(legacy.ebx == 576)
        // Every value subleaf 0 advertises is accepted by XSETBV.
        #expect(XSETBV.validate(ecx: 0, value: UInt64(v.eax), supported: p.supportedXCR0) == .valid(xcr0: 0x2E7))
    }

    @Test func xsaveSubleaf1HidesXSAVESAndReportsCompactedSize() {
        let host1 = CPUIDValues(eax: 0xF, ebx: 3000, ecx: 0x100, edx: 0)  // XSAVEOPT XSAVEC XGETBV1 XSAVES; XSS: PT
        let v = Self.policy.guestView(leaf: 0xD, subleaf: 1, host: host1, guest: Self.guestOSXSAVE)
        #expect(v.eax == 0x7)
        #expect(v.ebx == 576 + 256)
        #expect(v.ecx == 0 && v.edx == 0)
        // With XSAVES exposed and PT state allowed, IA32_XSS bits appear.
        var p = Self.policy
        p.xsaveFeaturesHidden = 0
        p.allowedXSS = 0x100
        var layout = Self.skylakeXLayout
        layout.setComponent(8, size: 128, offset: 0, alignedTo64: false)
        p.xsaveLayout = layout
        let g = CPUIDGuestState(cr4: 1 << 18, xcr0: 0x7, xss: 0x100)
        let x = p.guestView(leaf: 0xD, subleaf: 1, host: host1, guest: g)
        #expect(x.eax == 0xF && x.ecx == 0x100)
        #expect(x.ebx == 576 + 256 + 128)
        // Neither XSAVEC nor XSAVES: no compacted size.
        let plain = CPUIDValues(eax: 0x1, ebx: 3000, ecx: 0, edx: 0)
        #expect(Self.policy.guestView(leaf: 0xD, subleaf: 1, host: plain, guest: Self.guestOSXSAVE).ebx == 0)
    }

    @Test func xsaveComponentSubleavesFollowThePolicy() {
        let avx = CPUIDValues(eax: 256, ebx: 576, ecx: 0, edx: 0)
        #expect(Self.policy.guestView(leaf: 0xD, subleaf: 2, host: avx, guest: Self.guestOSXSAVE) == avx)
        let mpx = CPUIDValues(eax: 64, ebx: 960, ecx: 0, edx: 0)
        #expect(Self.policy.guestView(leaf: 0xD, subleaf: 3, host: mpx, guest: Self.guestOSXSAVE) == .zero)
        let pt = CPUIDValues(eax: 128, ebx: 0, ecx: 1, edx: 0)  // supervisor component
        #expect(Self.policy.guestView(leaf: 0xD, subleaf: 8, host: pt, guest: Self.guestOSXSAVE) == .zero)
        #expect(Self.policy.guestView(leaf: 0xD, subleaf: 64, host: avx, guest: Self.guestOSXSAVE) == .zero)
    }

    /// SDM 14.4.3 "Extended Region of an XSAVE Area": in the compacted format a component with ECX bit 1 set
    /// starts on a 64-byte boundary.
    @Test func compactedSizeHonoursAlignment() {
        var l = XSAVELayout()
        l.setComponent(2, size: 100, offset: 576, alignedTo64: false)
        l.setComponent(3, size: 8, offset: 700, alignedTo64: true)
        #expect(l.compactedSize(for: 0x7) == 676)
        #expect(l.compactedSize(for: 0xF) == 704 + 8)
        #expect(l.compactedSize(for: 0xB) == 576 + 8)  // 576 is already aligned
        #expect(l.standardSize(for: 0xF) == 708)
        l.setComponent(3, size: 8, offset: 700, alignedTo64: false)
        #expect(l.compactedSize(for: 0xF) == 684)
        l.setComponent(40, size: 1, offset: 1, alignedTo64: true)  // ignored
        l.setComponent(1, size: 9999, offset: 0, alignedTo64: true)  // ignored
        #expect(l.standardSize(for: 0x3) == 576)
    }

    @Test func policyFromHostQueries() {
        func host(_ leaf: UInt32, _ sub: UInt32) -> CPUIDValues {
            switch (leaf, sub) {
            case (0, _): return CPUIDValues(eax: 0x16, ebx: 0, ecx: 0, edx: 0)
            case (1, _): return CPUIDValues(eax: 0, ebx: 0, ecx: 1 << 26, edx: 0)
            case (0xD, 0): return CPUIDValues(eax: 0x2FF, ebx: 0, ecx: 2696, edx: 0)
            case (0xD, 2): return CPUIDValues(eax: 256, ebx: 576, ecx: 0, edx: 0)
            case (0xD, 5): return CPUIDValues(eax: 64, ebx: 1088, ecx: 2, edx: 0)
            case (0xD, 6): return CPUIDValues(eax: 512, ebx: 1152, ecx: 0, edx: 0)
            case (0xD, 7): return CPUIDValues(eax: 1024, ebx: 1664, ecx: 0, edx: 0)
            case (0xD, 9): return CPUIDValues(eax: 8, ebx: 2688, ecx: 0, edx: 0)
            default: return .zero
            }
        }
        let p = CPUIDPolicy(querying: host)
        #expect(p.hostXCR0 == 0x2FF)
        #expect(p.supportedXCR0 == 0x2E7)
        #expect(p.xsaveLayout.standardSize(for: 0x2E7) == 2696)
        #expect(p.xsaveLayout.compactedSize(for: 0x27) == 576 + 256 + 64)  // opmask aligned at 832
        let none = CPUIDPolicy(querying: { leaf, _ in leaf == 0 ? CPUIDValues(eax: 0xD, ebx: 0, ecx: 0, edx: 0) : .zero })
        #expect(none.supportedXCR0 == 0)
        let leafD = CPUIDValues(eax: 3, ebx: 576, ecx: 576, edx: 0)
        #expect(none.guestView(leaf: 0xD, subleaf: 0, host: leafD, guest: Self.guestNoOSXSAVE) == .zero)
        #expect(XSETBV.validate(ecx: 0, value: 3, supported: none.supportedXCR0) == .generalProtection(.reservedBits(2)))
    }
}
