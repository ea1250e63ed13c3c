// The INIT and STARTUP IPIs of a guest that owns several CPUs' local APICs
// (the passthrough platform with a vCPU per CPU). The hypervisor takes them
// out of the guest's ICR writes and delivers them to the vCPUs itself: a real
// INIT must never reach a CPU that runs a vCPU (in VMX non-root operation it
// is a VM exit; in the wait-for-SIPI state it stays pending until the SIPI
// has started the CPU, SDM 26.2 "Other Causes of VM Exits"), and an IPI to a
// CPU without a vCPU would start it outside VMX. Every other IPI goes to the
// real ICR as written. SDM 11.6.1 "Interrupt Command Register (ICR)".

/// What to do with one ICR write.
public enum StartupIPIRoute: Equatable, Sendable {
    /// Not INIT or STARTUP: write it to the real ICR.
    case forward
    /// Nothing to deliver: an INIT level de-assert, a logical destination, or
    /// no CPU of the guest addressed.
    case ignore
    /// INIT to the guest CPUs in the mask (bit i: the guest's CPU i).
    case initialize(UInt64)
    /// STARTUP with this vector to the guest CPUs in the mask.
    case startup(vector: UInt8, UInt64)
}

public enum StartupIPIRouting {
    /// Guest CPUs beyond this many are never addressed (the mask's width).
    public static let capacity = 64

    /// Whether ICR bits 31:0 `low` send INIT or STARTUP (else `route` forwards them).
    public static func isStartSignal(low: UInt32) -> Bool {
        let mode = APICDeliveryMode(rawValue: UInt8((low >> InterruptCommandRegister.deliveryModeShift) & 7))
        return mode == .initialize || mode == .startup
    }

    /// The route of ICR bits 31:0 `low` with `destination` (the xAPIC's 8-bit
    /// field or the x2APIC's 32-bit one) sent by guest CPU `sender`, for
    /// `count` guest CPUs whose APIC IDs `apicID` gives.
    public static func route(low: UInt32, destination: UInt32, x2APIC: Bool, sender: Int, count: Int,
                             apicID: (Int) -> UInt32) -> StartupIPIRoute {
        guard isStartSignal(low: low) else { return .forward }
        let mode = APICDeliveryMode(rawValue: UInt8((low >> InterruptCommandRegister.deliveryModeShift) & 7))
        // INIT level de-assert (level-triggered, level 0): only a P6-era
        // APIC acts on it. SDM 11.6.1, "Level" and "Trigger Mode".
        if mode == .initialize && low & InterruptCommandRegister.levelTriggered != 0
            && low & InterruptCommandRegister.levelAssert == 0 { return .ignore }
        let cpus = min(count, capacity)
        let all: UInt64 = cpus >= 64 ? UInt64.max : (1 << UInt64(cpus)) - 1
        let me: UInt64 = sender >= 0 && sender < cpus ? 1 << UInt64(sender) : 0
        var targets: UInt64 = 0
        switch DestinationShorthand(rawValue: UInt8((low >> InterruptCommandRegister.shorthandShift) & 3)) ?? .noShorthand {
        case .toSelf: targets = me
        case .allIncludingSelf: targets = all
        case .allExcludingSelf: targets = all & ~me
        case .noShorthand:
            // Logical destinations name LDR groups the hypervisor does not track.
            guard low & InterruptCommandRegister.logicalDestination == 0 else { return .ignore }
            let broadcast: UInt32 = x2APIC ? 0xFFFF_FFFF : 0xFF
            if destination == broadcast { targets = all } else {
                for i in 0..<cpus where apicID(i) == destination { targets |= 1 << UInt64(i) }
            }
        }
        guard targets != 0 else { return .ignore }
        return mode == .initialize ? .initialize(targets) : .startup(vector: UInt8(truncatingIfNeeded: low), targets)
    }
}
