// Per-CPU VMX operation: the checks and steps before VMXON, and VMXOFF.
// SDM 24.6 "Discovering Support for VMX", 24.7 "Enabling and Entering VMX
// Operation", 24.8 "Restrictions on VMX Operation".

import X86Arch
import VMX

/// This CPU in VMX root operation. Owns the VMXON region; `disable` leaves.
public struct VMXRoot<A: FrameAllocator>: ~Copyable {
    public let capabilities: VMXCapabilities
    let region: PhysFrame<A>

    /// Each failure is reported by name: no VMX, locked off by firmware, a
    /// control register that cannot satisfy the fixed bits, no memory, VMXON.
    public init<H: VMXHardware>(enabling hw: H, allocator: A) throws(VMXError) {
        let caps = try VMXCapabilities.read(from: hw)
        let control = FeatureControl(rawValue: hw.readMSR(.ia32FeatureControl))
        switch control.vmxEnablement {
        case .enabled: break
        case .needsWrite(let value): hw.writeMSR(.ia32FeatureControl, value.rawValue)
        case .disabledByFirmware: throw .vmxDisabledByFirmware
        }
        // Must-be-1 bits are set; a must-be-0 bit the host has on is reported,
        // not cleared behind its back (clearing CR4.LA57 or CR0.PG would fault).
        let cr0 = hw.readCR0() | caps.cr0Fixed.fixed0
        guard caps.cr0Fixed.isValid(cr0) else { throw .fixedBitsViolated(.cr0, violatingBits: caps.cr0Fixed.violations(in: cr0)) }
        let cr4 = hw.readCR4() | CR4Bits.vmxe.rawValue | caps.cr4Fixed.fixed0
        guard caps.cr4Fixed.isValid(cr4) else { throw .fixedBitsViolated(.cr4, violatingBits: caps.cr4Fixed.violations(in: cr4)) }
        guard caps.basic.regionSize <= UInt32(frameSize) else { throw .outOfMemory }
        let frame: PhysFrame<A>
        do { frame = try PhysFrame(from: allocator) } catch { throw .outOfMemory }
        // SDM 25.11.5 "VMXON Region": revision identifier in the first 31 bits.
        frame.pointer.storeBytes(of: caps.basic.revisionID, as: UInt32.self)
        hw.writeCR0(cr0)
        hw.writeCR4(cr4)
        do {
            try hw.vmxon(frame.address)
        } catch {
            hw.writeCR4(cr4 & ~CR4Bits.vmxe.rawValue)
            throw error
        }
        capabilities = caps
        region = frame
    }

    /// VMXOFF, then CR4.VMXE cleared. The region goes back to the allocator.
    public consuming func disable<H: VMXHardware>(_ hw: H) throws(VMXError) {
        try hw.vmxoff()
        hw.writeCR4(hw.readCR4() & ~CR4Bits.vmxe.rawValue)
    }
}
