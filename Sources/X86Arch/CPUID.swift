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
