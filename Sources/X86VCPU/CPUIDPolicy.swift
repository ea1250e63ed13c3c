// What the guest sees when it executes CPUID (an unconditional VM exit): the
// host's answer, filtered so the guest is told only about features this
// hypervisor lets it use, plus a hypervisor leaf range at 0x4000_0000.
//
// Topology (leaves 4, 0xB, 0x1F and CPUID.1:EBX[31:16]) passes through: the
// guest sees the host package's topology but there is only one vCPU; a guest
// finds its CPUs through ACPI/MP tables, so it runs with one.

import X86Arch
import VMX

/// The policy speaks of the same four registers the CPU seam returns.
public typealias CPUIDValues = CPUIDResult

extension CPUIDResult {
    /// All four registers zero: what CPUID reports for an absent feature leaf.
    public static var zero: CPUIDResult { CPUIDResult() }
}

/// The guest state some CPUID bits mirror: they describe the guest's
/// configuration, not the host's.
@frozen
public struct CPUIDGuestState: Equatable, Sendable {
    /// The guest's CR4 (what the guest believes it wrote, i.e. the read shadow
    /// merged with the real bits): OSXSAVE (bit 18) and PKE (bit 22) matter.
    public var cr4: UInt64
    /// The guest's XCR0.
    public var xcr0: UInt64
    /// The guest's IA32_XSS (0 unless XSAVES is exposed).
    public var xss: UInt64
    /// IA32_APIC_BASE global enable (bit 11) as the guest set it: CPUID.1:EDX.APIC follows it.
    public var apicGloballyEnabled: Bool

    @inlinable
    public init(cr4: UInt64, xcr0: UInt64, xss: UInt64 = 0, apicGloballyEnabled: Bool = true) {
        self.cr4 = cr4
        self.xcr0 = xcr0
        self.xss = xss
        self.apicGloballyEnabled = apicGloballyEnabled
    }
}

/// Where each XSAVE state component lives, read once from the host's CPUID
/// leaf 0xD subleaves 2...31, so the XSAVE-area sizes reported to the guest can
/// be computed for the guest's XCR0 rather than the host's.
// SDM 14.2 "Enumeration of CPU Support for XSAVE Instructions and XSAVE-Supported Features";
// 14.4.3 "Extended Region of an XSAVE Area"
@frozen
public struct XSAVELayout: Sendable {
    /// Bytes of the legacy region (512) plus the XSAVE header (64).
    public static var legacyAndHeaderSize: UInt32 { 576 }
    /// Components 2...31: those with a size and offset of their own.
    @inlinable static var extendedComponents: UInt64 { 0xFFFF_FFFF & ~(XCR0Bits.x87 | XCR0Bits.sse).rawValue }

    @usableFromInline var sizes: InlineArray<32, UInt32>
    @usableFromInline var offsets: InlineArray<32, UInt32>
    /// Bit i: component i is 64-byte aligned in the compacted format.
    @usableFromInline var aligned: UInt32

    /// No component beyond x87 and SSE known.
    @inlinable
    public init() {
        sizes = InlineArray(repeating: 0)
        offsets = InlineArray(repeating: 0)
        aligned = 0
    }

    /// The layout the host reports: `cpuid(0xD, i)` for i in 2...31 gives
    /// component i's size (EAX), standard-format offset (EBX) and compacted
    /// alignment (ECX bit 1).
    @inlinable
    public init(querying cpuid: (_ leaf: UInt32, _ subleaf: UInt32) -> CPUIDValues) {
        self.init()
        for i in 2 ..< 32 {
            let v = cpuid(CPUIDLeaf.xsave, UInt32(i))
            setComponent(i, size: v.eax, offset: v.ebx, alignedTo64: v.ecx & CPUIDLeafDComponentECX.aligned64 != 0)
        }
    }

    /// Records component `index` (2...31; other indices are ignored).
    @inlinable
    public mutating func setComponent(_ index: Int, size: UInt32, offset: UInt32, alignedTo64: Bool) {
        guard index >= 2, index < 32 else { return }
        sizes[index] = size
        offsets[index] = offset
        if alignedTo64 { aligned |= 1 << UInt32(index) } else { aligned &= ~(1 << UInt32(index)) }
    }

    /// Bytes XSAVE needs (standard format) for the components in `mask`:
    /// the end of the furthest enabled component, at least 576.
    @inlinable
    public func standardSize(for mask: UInt64) -> UInt32 {
        var size = Self.legacyAndHeaderSize
        var rest = mask & Self.extendedComponents  // visited by set bit
        while rest != 0 {
            let i = rest.trailingZeroBitCount
            rest &= rest &- 1
            let end = offsets[i] &+ sizes[i]
            if end > size { size = end }
        }
        return size
    }

    /// Bytes XSAVEC/XSAVES need (compacted format) for the components in
    /// `mask`: enabled components packed in order after the header, each
    /// 64-byte-aligned one rounded up first.
    @inlinable
    public func compactedSize(for mask: UInt64) -> UInt32 {
        var size = Self.legacyAndHeaderSize
        var rest = mask & Self.extendedComponents  // in component order: lowest set bit first
        while rest != 0 {
            let i = rest.trailingZeroBitCount
            rest &= rest &- 1
            if (aligned >> UInt32(i)) & 1 != 0 { size = (size &+ 63) & ~63 }
            size = size &+ sizes[i]
        }
        return size
    }
}

/// The CPUID filter. Its properties are the configuration: each `hidden`
/// mask lists the bits cleared from the host's answer; the defaults hide what
/// this hypervisor does not virtualize.
public struct CPUIDPolicy: Sendable {
    /// CPUID.1:ECX bits hidden. VMX (bit 5) is hidden whatever this says.
    /// Default: MONITOR/MWAIT 3, DS-CPL 4, SMX 6, EST 7, TM2 8, SDBG 11,
    /// PDCM 15, DCA 18, x2APIC 21 (until x2APIC is emulated).
    public var leaf1ECXHidden: UInt32
    /// CPUID.1:EDX bits hidden. Default: DS 21, ACPI thermal 22, TM 29, PBE 31.
    public var leaf1EDXHidden: UInt32
    /// CPUID.(7,0):EBX bits hidden. Default: SGX 2, INVPCID 10 (needs the
    /// "enable INVPCID" control), PQM 12, MPX 14, PQE 15, Intel PT 25.
    public var leaf7EBXHidden: UInt32
    /// CPUID.(7,0):ECX bits hidden. Default: WAITPKG 5 (needs "enable user
    /// wait and pause"), CET shadow stack 7, SGX launch control 30, PKS 31.
    public var leaf7ECXHidden: UInt32
    /// CPUID.(7,0):EDX bits hidden. Default: CET IBT 20, AMX-BF16 22,
    /// AMX-TILE 24, AMX-INT8 25.
    public var leaf7EDXHidden: UInt32
    /// CPUID.(0xD,1):EAX bits hidden. Default: XSAVES 3 (needs "enable
    /// XSAVES/XRSTORS" and IA32_XSS), XFD 4 (needs IA32_XFD handling).
    public var xsaveFeaturesHidden: UInt32
    /// CPUID.0x80000001:ECX bits hidden. Default: none.
    public var extended1ECXHidden: UInt32
    /// CPUID.0x80000001:EDX bits hidden. Default: RDTSCP 27 (needs "enable RDTSCP").
    public var extended1EDXHidden: UInt32
    /// Bit n set: basic leaf n (0...31) reads as all zeros. Default: 5
    /// (MONITOR), 0xA (performance monitoring), 0x12 (SGX), 0x14 (Intel PT):
    /// the leaves describing hidden features.
    public var zeroedBasicLeaves: UInt32
    /// The XCR0 bits the guest may enable (besides what the host lacks).
    /// Default 0x2E7: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), PKRU;
    /// not MPX (no BNDCFGS handling) and not AMX (no XFD).
    public var allowedXCR0: UInt64
    /// The IA32_XSS bits the guest may enable when XSAVES is exposed. Default 0.
    public var allowedXSS: UInt64
    /// The XCR0 bits the host supports: CPUID.(0xD,0) EDX:EAX, 0 without XSAVE.
    public var hostXCR0: UInt64
    /// The host's XSAVE component layout.
    public var xsaveLayout: XSAVELayout

    /// The highest hypervisor leaf: 0x4000_0000 (signature) and 0x4000_0001
    /// (paravirtual features: none, all zero).
    public static var maxHypervisorLeaf: UInt32 { CPUIDLeaf.hypervisorBase + 1 }

    /// The hypervisor signature in leaf 0x4000_0000 EBX, ECX, EDX: the 12 bytes
    /// "SwiftVMXhv\0\0" in little-endian register order ("Swif", "tVMX", "hv\0\0").
    public static var signature: (ebx: UInt32, ecx: UInt32, edx: UInt32) {
        (0x6669_7753, 0x584D_5674, 0x0000_7668)
    }

    /// The default policy (see each property) for a host whose XSAVE support
    /// is `hostXCR0` (CPUID.(0xD,0) EDX:EAX) laid out as `xsaveLayout`.
    @inlinable
    public init(hostXCR0: UInt64, xsaveLayout: XSAVELayout) {
        leaf1ECXHidden = (CPUIDLeaf1ECX.monitor | .dsCPL | .smx | .est | .tm2 | .sdbg | .pdcm | .dca | .x2APIC).rawValue
        // MCE and MCA: machine checks belong to the host; the guest would
        // read MCG_* and bank MSRs that raise #GP.
        leaf1EDXHidden = (CPUIDLeaf1EDX.mce | .mca | .ds | .acpi | .tm | .pbe).rawValue
        // TSC_ADJUST: the guest's TSC moves by the VMCS offset, not that MSR.
        leaf7EBXHidden = (CPUIDLeaf7EBX.tscAdjust | .sgx | .invpcid | .rdtMonitoring | .mpx | .rdtAllocation
            | .intelPT).rawValue
        leaf7ECXHidden = (CPUIDLeaf7ECX.waitpkg | .cetShadowStack | .sgxLaunchControl | .pks).rawValue
        leaf7EDXHidden = (CPUIDLeaf7EDX.cetIBT | .amxBF16 | .amxTile | .amxInt8).rawValue
        xsaveFeaturesHidden = (CPUIDLeafDSubleaf1EAX.xsaves | .xfd).rawValue
        extended1ECXHidden = 0
        extended1EDXHidden = CPUIDLeaf80000001EDX.rdtscp.rawValue
        // 6 (thermal and power: APERF/MPERF, HWP): MSRs the guest does not get.
        zeroedBasicLeaves = 1 << 0x5 | 1 << 0x6 | 1 << 0xA | 1 << 0x12 | 1 << 0x14
        allowedXCR0 = (XCR0Bits.x87 | .sse | .avx | .avx512 | .pkru).rawValue
        allowedXSS = 0
        self.hostXCR0 = hostXCR0
        self.xsaveLayout = xsaveLayout
    }

    /// The default policy for the host that answers `cpuid(leaf, subleaf)`:
    /// reads its XSAVE support (when leaf 0xD exists and CPUID.1:ECX.XSAVE is set).
    @inlinable
    public init(querying cpuid: (_ leaf: UInt32, _ subleaf: UInt32) -> CPUIDValues) {
        let hasXSAVE = cpuid(CPUIDLeaf.basic, 0).eax >= CPUIDLeaf.xsave
            && CPUIDLeaf1ECX(rawValue: cpuid(CPUIDLeaf.features, 0).ecx).contains(.xsave)
        if hasXSAVE {
            let d = cpuid(CPUIDLeaf.xsave, 0)
            self.init(hostXCR0: UInt64(d.edx) << 32 | UInt64(d.eax), xsaveLayout: XSAVELayout(querying: cpuid))
        } else {
            self.init(hostXCR0: 0, xsaveLayout: XSAVELayout())
        }
    }

    /// The XCR0 bits the guest may set: those the host supports that the
    /// policy allows, always including x87 (bit 0, which XCR0 requires) when
    /// the host has XSAVE at all. Pass it to `XSETBV.validate`.
    @inlinable
    public var supportedXCR0: UInt64 { hostXCR0 & (allowedXCR0 | XCR0Bits.x87.rawValue) }

    /// Hides XSAVEC and XSAVES unless the host's own CPUID.(0xD,1):EBX, read
    /// with XCR0 = `mask`, equals the compacted size its component layout
    /// gives for `mask`. A CPU whose leaf 0xD disagrees with itself (Bochs
    /// 2.7: 2,688 reported, 2,432 laid out) also gets the compacted format
    /// wrong; the standard format is then the guest's only one. Returns
    /// whether the leaf was consistent.
    // SDM 14.2 "Enumeration of CPU Support for XSAVE Instructions and XSAVE-Supported Features"
    @discardableResult
    public mutating func requireConsistentCompactedFormat(reportedSize: UInt32, for mask: UInt64) -> Bool {
        let consistent = xsaveLayout.compactedSize(for: mask) == reportedSize
        if !consistent { xsaveFeaturesHidden |= (CPUIDLeafDSubleaf1EAX.xsavec | .xsaves).rawValue }
        return consistent
    }

    /// True when the policy exposes XSAVES (so IA32_XSS is meaningful).
    @inlinable
    func exposesXSAVES(hostLeafD1EAX: UInt32) -> Bool {
        hostLeafD1EAX & ~xsaveFeaturesHidden & CPUIDLeafDSubleaf1EAX.xsaves.rawValue != 0
    }

    /// What the guest's CPUID(`leaf`, `subleaf`) returns, given the host's
    /// answer to the same query and the guest state some bits mirror.
    @inlinable
    public func guestView(leaf: UInt32, subleaf: UInt32, host: CPUIDValues,
                          guest: CPUIDGuestState) -> CPUIDValues {
        var v = host
        if leaf < 32, (zeroedBasicLeaves >> leaf) & 1 != 0 { return .zero }
        switch leaf {
        case CPUIDLeaf.features:
            // SDM CPUID, Table "Feature Information Returned in the ECX Register";
            // EAX (family, model, stepping) passes through unchanged.
            v.ecx &= ~(leaf1ECXHidden | CPUIDLeaf1ECX.vmx.rawValue)
            v.ecx |= CPUIDLeaf1ECX.hypervisor.rawValue
            let osxsaveBit = CPUIDLeaf1ECX.osxsave.rawValue
            let osxsave = v.ecx & CPUIDLeaf1ECX.xsave.rawValue != 0 && guest.cr4 & CR4Bits.osxsave.rawValue != 0
            v.ecx = osxsave ? v.ecx | osxsaveBit : v.ecx & ~osxsaveBit
            v.edx &= ~leaf1EDXHidden
            if !guest.apicGloballyEnabled { v.edx &= ~CPUIDLeaf1EDX.apic.rawValue }
        case CPUIDLeaf.structuredExtendedFeatures:
            if subleaf == 0 {
                v.ebx &= ~leaf7EBXHidden
                v.ecx &= ~leaf7ECXHidden
                v.edx &= ~leaf7EDXHidden
                // OSPKE mirrors the guest's CR4.PKE, like OSXSAVE.
                let ospkeBit = CPUIDLeaf7ECX.ospke.rawValue
                let ospke = v.ecx & CPUIDLeaf7ECX.pku.rawValue != 0 && guest.cr4 & CR4Bits.pke.rawValue != 0
                v.ecx = ospke ? v.ecx | ospkeBit : v.ecx & ~ospkeBit
            }
        case CPUIDLeaf.xsave:
            v = xsaveLeaf(subleaf: subleaf, host: host, guest: guest)
        case CPUIDLeaf.hypervisorBase:
            let s = Self.signature
            v = CPUIDValues(eax: Self.maxHypervisorLeaf, ebx: s.ebx, ecx: s.ecx, edx: s.edx)
        case CPUIDLeaf.hypervisorBase + 1 ... CPUIDLeaf.hypervisorLast:
            v = .zero
        case CPUIDLeaf.extendedFeatures:
            v.ecx &= ~extended1ECXHidden
            v.edx &= ~extended1EDXHidden
        default:
            break
        }
        return v
    }

    /// Leaf 0xD, kept consistent with the XCR0 the guest may set.
    // SDM 14.2 "Enumeration of CPU Support for XSAVE Instructions and XSAVE-Supported Features"
    @inlinable
    func xsaveLeaf(subleaf: UInt32, host: CPUIDValues, guest: CPUIDGuestState) -> CPUIDValues {
        let supported = supportedXCR0
        guard supported != 0 else { return .zero }  // no XSAVE: no leaf 0xD
        switch subleaf {
        case 0:
            return CPUIDValues(eax: UInt32(truncatingIfNeeded: supported),
                               ebx: xsaveLayout.standardSize(for: guest.xcr0 & supported),
                               ecx: xsaveLayout.standardSize(for: supported),
                               edx: UInt32(truncatingIfNeeded: supported >> 32))
        case 1:
            let features = host.eax & ~xsaveFeaturesHidden
            let xsaves = exposesXSAVES(hostLeafD1EAX: host.eax)
            let supportedXSS = xsaves ? (UInt64(host.edx) << 32 | UInt64(host.ecx)) & allowedXSS : 0
            let compactedMask = (guest.xcr0 & supported) | (guest.xss & supportedXSS)
            let compacting = CPUIDLeafDSubleaf1EAX(rawValue: features).intersects(.xsavec | .xsaves)
            return CPUIDValues(eax: features,
                               ebx: compacting ? xsaveLayout.compactedSize(for: compactedMask) : 0,
                               ecx: UInt32(truncatingIfNeeded: supportedXSS),
                               edx: UInt32(truncatingIfNeeded: supportedXSS >> 32))
        case 2 ..< 64:
            // A component the guest can never enable is reported as absent:
            // user components (ECX bit 0 clear) need the supported XCR0 bit,
            // supervisor components (ECX bit 0 set) need `allowedXSS`.
            let mask = host.ecx & CPUIDLeafDComponentECX.supervisor != 0 ? allowedXSS : supported
            return (mask >> UInt64(subleaf)) & 1 != 0 ? host : .zero
        default:
            return .zero
        }
    }
}
