// The CPUID instruction's output. SDM Vol. 2A "CPUID—CPU Identification".

/// The four registers CPUID returns.
@frozen
public struct CPUIDResult: Equatable, Sendable {
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32
    public init(eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
}

/// CPUID leaves the hypervisor reads or answers.
public enum CPUIDLeaf {
    /// 0: the highest basic leaf and the vendor string.
    public static let basic: UInt32 = 0
    /// 1: version and feature information.
    public static let features: UInt32 = 1
    /// 7: structured extended feature flags (subleaf 0).
    public static let structuredExtendedFeatures: UInt32 = 7
    /// 0DH: XSAVE features and state-component layout.
    public static let xsave: UInt32 = 0xD
    /// 40000000H: the first hypervisor leaf (signature and highest leaf).
    public static let hypervisorBase: UInt32 = 0x4000_0000
    /// 4FFFFFFFH: the last leaf of the hypervisor range.
    public static let hypervisorLast: UInt32 = 0x4FFF_FFFF
    /// 80000000H: the highest extended leaf.
    public static let extendedBase: UInt32 = 0x8000_0000
    /// 80000001H: extended feature information.
    public static let extendedFeatures: UInt32 = 0x8000_0001
    /// 80000008H: address sizes (`AddressSizes`).
    public static let addressSizes: UInt32 = 0x8000_0008
}

// Feature bits, one type per register. SDM Vol. 2A "CPUID—CPU Identification",
// Tables "Feature Information Returned in the ECX Register" / "... EDX Register"
// and "Structured Extended Feature Flags Enumeration Leaf".

/// CPUID.01H:ECX.
@frozen
public struct CPUIDLeaf1ECX: BitFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let monitor = Self(rawValue: 1 << 3)
    public static let dsCPL = Self(rawValue: 1 << 4)
    public static let vmx = Self(rawValue: 1 << 5)
    public static let smx = Self(rawValue: 1 << 6)
    public static let est = Self(rawValue: 1 << 7)
    public static let tm2 = Self(rawValue: 1 << 8)
    public static let sdbg = Self(rawValue: 1 << 11)
    public static let pdcm = Self(rawValue: 1 << 15)
    public static let pcid = Self(rawValue: 1 << 17)
    public static let dca = Self(rawValue: 1 << 18)
    public static let x2APIC = Self(rawValue: 1 << 21)
    public static let tscDeadline = Self(rawValue: 1 << 24)
    public static let xsave = Self(rawValue: 1 << 26)
    public static let osxsave = Self(rawValue: 1 << 27)
    /// Bit 31: reserved for a hypervisor to report its presence.
    public static let hypervisor = Self(rawValue: 1 << 31)
}

/// CPUID.01H:EDX.
@frozen
public struct CPUIDLeaf1EDX: BitFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let mce = Self(rawValue: 1 << 7)
    public static let apic = Self(rawValue: 1 << 9)
    public static let mtrr = Self(rawValue: 1 << 12)
    public static let mca = Self(rawValue: 1 << 14)
    public static let ds = Self(rawValue: 1 << 21)
    public static let acpi = Self(rawValue: 1 << 22)
    public static let tm = Self(rawValue: 1 << 29)
    public static let pbe = Self(rawValue: 1 << 31)
}

/// CPUID.(EAX=07H,ECX=0):EBX.
@frozen
public struct CPUIDLeaf7EBX: BitFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let tscAdjust = Self(rawValue: 1 << 1)
    public static let sgx = Self(rawValue: 1 << 2)
    public static let invpcid = Self(rawValue: 1 << 10)
    public static let rdtMonitoring = Self(rawValue: 1 << 12)
    public static let mpx = Self(rawValue: 1 << 14)
    public static let rdtAllocation = Self(rawValue: 1 << 15)
    public static let intelPT = Self(rawValue: 1 << 25)
}

/// CPUID.(EAX=07H,ECX=0):ECX.
@frozen
public struct CPUIDLeaf7ECX: BitFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let pku = Self(rawValue: 1 << 3)
    /// Bit 4: OSPKE, mirrors CR4.PKE.
    public static let ospke = Self(rawValue: 1 << 4)
    public static let waitpkg = Self(rawValue: 1 << 5)
    public static let cetShadowStack = Self(rawValue: 1 << 7)
    public static let sgxLaunchControl = Self(rawValue: 1 << 30)
    public static let pks = Self(rawValue: 1 << 31)
}

/// CPUID.(EAX=07H,ECX=0):EDX.
@frozen
public struct CPUIDLeaf7EDX: BitFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let cetIBT = Self(rawValue: 1 << 20)
    /// IBRS and IBPB: IA32_SPEC_CTRL.IBRS and IA32_PRED_CMD exist.
    public static let ibrsIBPB = Self(rawValue: 1 << 26)
    /// IA32_SPEC_CTRL.STIBP exists.
    public static let stibp = Self(rawValue: 1 << 27)
    /// IA32_SPEC_CTRL.SSBD exists.
    public static let ssbd = Self(rawValue: 1 << 31)
    public static let amxBF16 = Self(rawValue: 1 << 22)
    public static let amxTile = Self(rawValue: 1 << 24)
    public static let amxInt8 = Self(rawValue: 1 << 25)
}

/// CPUID.(EAX=0DH,ECX=1):EAX.
@frozen
public struct CPUIDLeafDSubleaf1EAX: BitFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let xsaveopt = Self(rawValue: 1 << 0)
    public static let xsavec = Self(rawValue: 1 << 1)
    public static let xgetbv1 = Self(rawValue: 1 << 2)
    public static let xsaves = Self(rawValue: 1 << 3)
    public static let xfd = Self(rawValue: 1 << 4)
}

/// CPUID.(EAX=0DH,ECX=i):ECX for a component i >= 2.
public enum CPUIDLeafDComponentECX {
    /// Bit 0: the component is a supervisor state (IA32_XSS), not a user state (XCR0).
    public static let supervisor: UInt32 = 1 << 0
    /// Bit 1: in the compacted format, the component starts 64-byte aligned.
    public static let aligned64: UInt32 = 1 << 1
}

/// CPUID.80000001H:EDX.
@frozen
public struct CPUIDLeaf80000001EDX: BitFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let syscall = Self(rawValue: 1 << 11)
    public static let nx = Self(rawValue: 1 << 20)
    public static let page1GiB = Self(rawValue: 1 << 26)
    /// Bit 27: RDTSCP and IA32_TSC_AUX.
    public static let rdtscp = Self(rawValue: 1 << 27)
    public static let longMode = Self(rawValue: 1 << 29)
}
