// The seams: the only ways the pure library reaches the hardware. The kernel
// conforms with thin wrappers over the instructions; host tests conform with
// fakes. Write generic code (`func f<V: VMCSAccess>(_ v: V)`), never `any`.

import X86Arch

/// Why a VMX operation failed. Typed, so callers report instead of trapping.
public enum VMXError: Error, Equatable, Sendable {
    /// VMfailInvalid (CF=1): no current VMCS, or the operand was unusable.
    /// SDM 31.2 "Conventions", VMfailInvalid.
    case vmFailInvalid
    /// VMfailValid (ZF=1): the current VMCS holds the VM-instruction error.
    /// SDM 31.2 "Conventions", VMfailValid(ErrorNumber).
    case vmFailValid(VMInstructionError)
    /// CPUID.1:ECX.VMX[bit 5] is 0. SDM 24.6 "Discovering Support for VMX".
    case vmxNotSupported
    /// IA32_FEATURE_CONTROL is locked without "enable VMX outside SMX", so
    /// VMXON would #GP. SDM 24.7 "Enabling and Entering VMX Operation".
    case vmxDisabledByFirmware
    /// A control register has bits that VMX operation fixes the other way.
    /// SDM 24.8 "Restrictions on VMX Operation".
    case fixedBitsViolated(ControlRegisterName, violatingBits: UInt64)
    /// The CPU cannot provide VM-execution, VM-exit or VM-entry controls we require.
    case controlsUnsupported(ControlAdjustmentError)
    /// VM entry failed after the VMLAUNCH/VMRESUME checks passed (exit-reason bit 31).
    /// SDM 27.8 "VM-Entry Failure During or After Loading Guest State".
    case entryFailed(ExitReasonField, qualification: UInt64)
    /// A frame for a VMX structure could not be allocated.
    case outOfMemory

    /// The kind of failure, for a one-line report; details are in the payload.
    public var summary: StaticString {
        switch self {
        case .vmFailInvalid: return "VMfailInvalid"
        case .vmFailValid: return "VMfailValid"
        case .vmxNotSupported: return "VMX not supported by this CPU"
        case .vmxDisabledByFirmware: return "VMX disabled by firmware (IA32_FEATURE_CONTROL locked)"
        case .fixedBitsViolated: return "control register violates VMX fixed bits"
        case .controlsUnsupported: return "required VMX controls not supported"
        case .entryFailed: return "VM entry failed"
        case .outOfMemory: return "out of memory"
        }
    }
}

/// The control registers that have VMX-fixed bits.
public enum ControlRegisterName: Sendable, Equatable {
    case cr0, cr4
}

/// VMREAD/VMWRITE on the current VMCS, by raw encoding.
///
/// Requirements are non-mutating: a conformer is a handle to "the current
/// VMCS of this CPU", not the VMCS itself.
public protocol VMCSAccess {
    /// VMREAD. The value is zero-extended to 64 bits.
    func vmread(_ encoding: UInt32) throws(VMXError) -> UInt64
    /// VMWRITE. Bits above the field's width are ignored by the CPU.
    func vmwrite(_ encoding: UInt32, _ value: UInt64) throws(VMXError)
}

extension VMCSAccess {
    /// Reads a field at its own width. Always inlined: only the encoding
    /// reaches the instruction, not the field's name.
    @inlinable @inline(__always)
    public func read<F: VMCSReadableField>(_ field: F) throws(VMXError) -> F.Value {
        F.Value(truncatingIfNeeded: try vmread(field.encoding))
    }

    /// Writes a field at its own width. Read-only fields do not compile here.
    @inlinable @inline(__always)
    public func write<F: VMCSWritableField>(_ field: F, _ value: F.Value) throws(VMXError) {
        try vmwrite(field.encoding, UInt64(truncatingIfNeeded: value))
    }

    /// The decoded exit-reason field. SDM 25.9.1 "Basic VM-Exit Information".
    public func readExitReason() throws(VMXError) -> ExitReasonField {
        ExitReasonField(rawValue: try read(VMCSFields.ReadOnly32.exitReason))
    }

    /// The VM-instruction error left by the last VMfailValid. SDM 31.4.
    public func readInstructionError() throws(VMXError) -> VMInstructionError {
        VMInstructionError(rawValue: try read(VMCSFields.ReadOnly32.vmInstructionError))
    }
}

/// The privileged CPU state the VMX layer reads and sets up: CPUID, MSRs,
/// CR0/CR3/CR4 and XCR0. Non-mutating requirements: conformers are handles.
///
/// RDMSR/WRMSR of an MSR the CPU lacks raise #GP on hardware; callers must
/// only touch MSRs whose existence they checked (see `VMXCapabilities.read`).
public protocol CPUAccess {
    func cpuid(leaf: UInt32, subleaf: UInt32) -> CPUIDResult
    func readMSR(_ address: UInt32) -> UInt64
    func writeMSR(_ address: UInt32, _ value: UInt64)
    func readCR0() -> UInt64
    func readCR3() -> UInt64
    func readCR4() -> UInt64
    func writeCR0(_ value: UInt64)
    func writeCR4(_ value: UInt64)
    /// XGETBV with ECX = 0 (requires CR4.OSXSAVE).
    func readXCR0() -> UInt64
    /// XSETBV with ECX = 0 (requires CR4.OSXSAVE).
    func writeXCR0(_ value: UInt64)
}

extension CPUAccess {
    @inlinable
    public func readMSR(_ msr: MSR) -> UInt64 { readMSR(msr.address) }

    @inlinable
    public func writeMSR(_ msr: MSR, _ value: UInt64) { writeMSR(msr.address, value) }

    /// CPUID.1:ECX.VMX. SDM 24.6 "Discovering Support for VMX".
    public var supportsVMX: Bool {
        CPUIDLeaf1ECX(rawValue: cpuid(leaf: CPUIDLeaf.features, subleaf: 0).ecx).contains(.vmx)
    }

    /// The physical (MAXPHYADDR) and linear address widths, CPUID.80000008H:
    /// the one place they are read.
    public var addressSizes: AddressSizes {
        AddressSizes(leaf80000008EAX: cpuid(leaf: CPUIDLeaf.addressSizes, subleaf: 0).eax)
    }
}
