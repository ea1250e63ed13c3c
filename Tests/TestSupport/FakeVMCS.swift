import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// The current VMCS, over a dictionary. Models what hardware does that tests
/// rely on: VMWRITE keeps only the field's width, VMREAD zero-extends, a
/// 64-bit field can be reached through its high encoding, unknown encodings
/// fail with VM-instruction error 12 and VMWRITE to a read-only field with 13.
/// Can be told to fail a given field with a given error; records writes.
package final class FakeVMCS: VMCSAccess {
    private var storage: [UInt32: UInt64] = [:]
    private var failures: [UInt32: VMXError] = [:]
    private let known: Set<UInt32>
    /// Every successful VMWRITE, in order.
    package private(set) var writes: [(encoding: UInt32, value: UInt64)] = []
    /// Every VMREAD attempted, in order.
    package private(set) var reads: [UInt32] = []
    /// IA32_VMX_MISC bit 29: VMWRITE may write read-only fields.
    package var vmwriteToAnyField = false

    package init() {
        var known = Set<UInt32>()
        VMCSFields.forEach { known.insert($0.encoding.rawValue) }
        self.known = known
    }

    /// Makes every later access to `encoding` (full or high) fail with `error`.
    package func fail(_ encoding: UInt32, with error: VMXError) { failures[encoding & ~1] = error }
    package func fail<F: VMCSReadableField>(_ field: F, with error: VMXError) { fail(field.encoding, with: error) }
    package func stopFailing(_ encoding: UInt32) { failures[encoding & ~1] = nil }

    /// Sets a field as the CPU would on a VM exit, without recording a write.
    package func preset(_ encoding: UInt32, _ value: UInt64) { storage[encoding] = truncate(value, encoding) }
    package func preset<F: VMCSReadableField>(_ field: F, _ value: F.Value) { preset(field.encoding, UInt64(value)) }

    /// The stored value of a field (full encoding), nil if never written.
    package func value(_ encoding: UInt32) -> UInt64? { storage[encoding] }
    package func value<F: VMCSReadableField>(_ field: F) -> UInt64? { storage[field.encoding] }

    /// The encodings written, in order.
    package var writtenEncodings: [UInt32] { writes.map(\.encoding) }

    package func vmread(_ encoding: UInt32) throws(VMXError) -> UInt64 {
        reads.append(encoding)
        let full = encoding & ~1
        if let error = failures[full] { throw error }
        try check(encoding)
        let value = storage[full] ?? 0
        return encoding & 1 == 1 ? value >> 32 : value
    }

    package func vmwrite(_ encoding: UInt32, _ value: UInt64) throws(VMXError) {
        let full = encoding & ~1
        if let error = failures[full] { throw error }
        try check(encoding)
        if VMCSFieldEncoding(rawValue: encoding).type == .readOnlyData && !vmwriteToAnyField {
            throw .vmFailValid(.vmwriteReadOnlyComponent)
        }
        if encoding & 1 == 1 {
            let old = storage[full] ?? 0
            storage[full] = (old & 0xFFFF_FFFF) | (value & 0xFFFF_FFFF) << 32
        } else {
            storage[full] = truncate(value, full)
        }
        writes.append((encoding, value))
    }

    private func check(_ encoding: UInt32) throws(VMXError) {
        let decoded = VMCSFieldEncoding(rawValue: encoding)
        guard decoded.isWellFormed, known.contains(encoding & ~1) else {
            throw .vmFailValid(.unsupportedVMCSComponent)
        }
    }

    private func truncate(_ value: UInt64, _ encoding: UInt32) -> UInt64 {
        switch VMCSFieldEncoding(rawValue: encoding).width {
        case .bits16: return value & 0xFFFF
        case .bits32: return value & 0xFFFF_FFFF
        case .bits64, .natural: return value
        }
    }
}
