// A virtual local APIC for an isolated guest, as a pure model: the xAPIC
// register page, the x2APIC MSRs, IA32_APIC_BASE, interrupt acceptance and
// priority, the ICR for IPIs to itself, and the timer (LocalAPICTimer.swift).
// SDM Vol. 3A "Advanced Programmable Interrupt Controller (APIC)".
//
// How the vCPU drives it (the wiring is not in this file):
//   - before every access and every VM entry: `advance(toTSC:)` with the
//     guest's TSC, which fires an expired timer into the IRR;
//   - an access to the APIC page (xAPIC mode, `mmioBase`): `readRegister` /
//     `writeRegister` with the offset in the page (32-bit, 16-byte aligned);
//   - RDMSR/WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE and 800H-8FFH:
//     `readMSR` / `writeMSR`; nil is #GP(0);
//   - a write's `LocalAPICEvent`: queue an NMI, or broadcast a level EOI to
//     the IOAPIC;
//   - injection: when the guest can take an interrupt, `pendingInterrupt`
//     says whether one is deliverable and `acknowledge()` moves it from IRR
//     to ISR and returns the vector to inject;
//   - the VMX preemption timer: program it for `nextDeadline`;
//   - external interrupts (IOAPIC, MSI): `accept(vector:level:)`.

/// What a register write asks of the platform beyond the APIC itself.
public enum LocalAPICEvent: Equatable, Sendable {
    /// Nothing beyond the APIC's own state.
    case nothing
    /// An NMI delivered to this CPU (ICR): the vCPU queues an NMI.
    case nmi
    /// EOI of a level-triggered vector (its TMR bit set): the EOI message to
    /// the IOAPIC. SDM "Signaling Interrupt Servicing Completion".
    case levelEndOfInterrupt(vector: UInt8)
}

/// IA32_APIC_BASE's EN and EXTD. SDM "x2APIC State Transitions".
public enum LocalAPICMode: Equatable, Sendable {
    case disabled
    case xAPIC
    case x2APIC
}

/// One CPU's local APIC on a platform without other CPUs: IPIs to anyone
/// else go nowhere.
public struct LocalAPIC: Sendable {
    /// The initial APIC ID (CPUID.01H:EBX[31:24], the x2APIC ID of CPUID.0BH).
    public let initialID: UInt32
    public let isBootstrapProcessor: Bool
    /// Whether the LVT CMCI register (2F0H) exists; it sets the version's max LVT entry.
    public let hasCMCI: Bool
    /// MAXPHYADDR: the APIC base bits above it are reserved.
    public let physicalAddressBits: UInt8
    /// TSC ticks per APIC bus-clock tick (the timer's input before the divider), 1 ... 2^24.
    public let tscPerBusTick: UInt64

    /// The value of IA32_APIC_BASE.
    public internal(set) var apicBase: UInt64

    var xAPICID: UInt8 = 0
    var taskPriority: UInt32 = 0
    var logicalDestination: UInt32 = 0
    var destinationFormat: UInt32 = 0xFFFF_FFFF
    var spuriousVector: UInt32 = SpuriousVectorRegister.resetValue
    public internal(set) var inService = APICVectorBitmap()
    public internal(set) var triggerMode = APICVectorBitmap()
    public internal(set) var interruptRequest = APICVectorBitmap()
    /// ESR as last latched by a write; `errorsSinceLatch` collects new errors.
    var errorStatus: UInt32 = 0
    var errorsSinceLatch: UInt32 = 0
    var commandLow: UInt32 = 0
    var commandHigh: UInt32 = 0
    var lvtCMCI = LocalVectorTableEntry.resetValue
    var lvtTimer = LocalVectorTableEntry.resetValue
    var lvtThermal = LocalVectorTableEntry.resetValue
    var lvtPerformance = LocalVectorTableEntry.resetValue
    var lvtLINT0 = LocalVectorTableEntry.resetValue
    var lvtLINT1 = LocalVectorTableEntry.resetValue
    var lvtError = LocalVectorTableEntry.resetValue

    // The timer (LocalAPICTimer.swift).
    var divideConfiguration: UInt32 = 0
    var initialCount: UInt32 = 0
    /// Count modes: the TSC at which the counter held `countAtStart`.
    var countStart: UInt64 = 0
    var countAtStart: UInt32 = 0
    /// Count modes: the TSC of the next time the counter reaches 0; nil when stopped.
    var countExpiry: UInt64?
    /// IA32_TSC_DEADLINE in TSC-deadline mode; 0 is disarmed.
    var deadline: UInt64 = 0
    /// The guest TSC of the last `advance(toTSC:)`.
    public internal(set) var now: UInt64 = 0

    /// Version 14H (integrated APIC), max LVT entry in bits 23:16; no EOI-broadcast suppression.
    /// SDM "Local APIC Version Register".
    public var version: UInt32 { 0x14 | (hasCMCI ? 6 : 5) << 16 }

    public init(id: UInt32, isBootstrapProcessor: Bool = true, hasCMCI: Bool = false,
                physicalAddressBits: UInt8 = 36, tscPerBusTick: UInt64 = 1) {
        initialID = id
        self.isBootstrapProcessor = isBootstrapProcessor
        self.hasCMCI = hasCMCI
        self.physicalAddressBits = physicalAddressBits
        self.tscPerBusTick = min(max(tscPerBusTick, 1), 1 << 24)
        // SDM "Local APIC Status and Location": enabled at FEE00000H after reset.
        apicBase = APICBaseMSR.defaultBase | APICBaseMSR.globalEnable
            | (isBootstrapProcessor ? APICBaseMSR.bootstrapProcessor : 0)
        reset()
    }

    /// The power-up state of the registers (SDM "Power-Up and Reset"); IA32_APIC_BASE is kept.
    mutating func reset() {
        xAPICID = UInt8(truncatingIfNeeded: initialID)
        taskPriority = 0
        logicalDestination = 0
        destinationFormat = 0xFFFF_FFFF
        spuriousVector = SpuriousVectorRegister.resetValue
        inService = APICVectorBitmap()
        triggerMode = APICVectorBitmap()
        interruptRequest = APICVectorBitmap()
        errorStatus = 0
        errorsSinceLatch = 0
        commandLow = 0
        commandHigh = 0
        lvtCMCI = LocalVectorTableEntry.resetValue
        lvtTimer = LocalVectorTableEntry.resetValue
        lvtThermal = LocalVectorTableEntry.resetValue
        lvtPerformance = LocalVectorTableEntry.resetValue
        lvtLINT0 = LocalVectorTableEntry.resetValue
        lvtLINT1 = LocalVectorTableEntry.resetValue
        lvtError = LocalVectorTableEntry.resetValue
        divideConfiguration = 0
        initialCount = 0
        countAtStart = 0
        countExpiry = nil
        deadline = 0
    }

    // MARK: IA32_APIC_BASE

    @inline(__always)
    public var mode: LocalAPICMode {
        guard apicBase & APICBaseMSR.globalEnable != 0 else { return .disabled }
        return apicBase & APICBaseMSR.x2APICEnable != 0 ? .x2APIC : .xAPIC
    }

    /// The guest-physical address of the 4 KiB APIC page (decoded in xAPIC mode only).
    public var mmioBase: UInt64 { apicBase & APICBaseMSR.baseMask(physicalAddressBits: physicalAddressBits) }

    /// WRMSR IA32_APIC_BASE; false is #GP(0). SDM "x2APIC State Transitions": EN=0 with
    /// EXTD=1 is invalid, x2APIC -> xAPIC and disabled -> x2APIC are not allowed, and
    /// leaving the enabled states resets the APIC. The BSP flag is read-only.
    public mutating func setBase(_ value: UInt64) -> Bool {
        let writable = APICBaseMSR.baseMask(physicalAddressBits: physicalAddressBits)
            | APICBaseMSR.globalEnable | APICBaseMSR.x2APICEnable | APICBaseMSR.bootstrapProcessor
        guard value & ~writable == 0 else { return false }
        let enable = value & APICBaseMSR.globalEnable != 0
        let extended = value & APICBaseMSR.x2APICEnable != 0
        if extended && !enable { return false }
        let new: LocalAPICMode = enable ? (extended ? .x2APIC : .xAPIC) : .disabled
        let old = mode
        if old == .x2APIC && new == .xAPIC { return false }
        if old == .disabled && new == .x2APIC { return false }
        apicBase = (value & ~APICBaseMSR.bootstrapProcessor)
            | (isBootstrapProcessor ? APICBaseMSR.bootstrapProcessor : 0)
        if new == .disabled && old != .disabled {
            reset()
        } else if old == .xAPIC && new == .x2APIC {
            // SDM "State Changes From xAPIC Mode to x2APIC Mode": the ID becomes the
            // x2APIC ID and the LDR is derived from it; the rest is kept.
            logicalDestination = x2APICLogicalID
        }
        return true
    }

    /// SDM "Logical Destination Mode in x2APIC Mode": cluster ID = x2APIC ID[19:4]
    /// in bits 31:16, bit (x2APIC ID[3:0]) of the logical ID in bits 15:0.
    public var x2APICLogicalID: UInt32 { (initialID >> 4) << 16 | 1 << (initialID & 0xF) }

    @inline(__always)
    public var isSoftwareEnabled: Bool { spuriousVector & SpuriousVectorRegister.softwareEnable != 0 }

    // MARK: Priority. SDM "Interrupt, Task, and Processor Priority".

    /// PPR: TPR if its class is at least the highest in-service class, else that class.
    /// SDM "Processor Priority Register (PPR)".
    @inline(__always)
    public var processorPriority: UInt8 {
        let tpr = UInt8(truncatingIfNeeded: taskPriority)
        let isrv = inService.highest ?? 0
        return tpr >> 4 >= isrv >> 4 ? tpr : isrv & 0xF0
    }

    /// The highest requested vector whose priority class is above the PPR's: the
    /// interrupt the vCPU should inject when the guest can take one.
    @inline(__always)  // a call copied the whole APIC (~250 bytes) for each read
    public var pendingInterrupt: UInt8? {
        guard mode != .disabled, let vector = interruptRequest.highest,
              vector >> 4 > processorPriority >> 4 else { return nil }
        return vector
    }

    /// The processor's acknowledgment (the vCPU injects the vector): IRR -> ISR.
    /// SDM "Interrupt Acceptance for Fixed Interrupts".
    public mutating func acknowledge() -> UInt8? {
        guard let vector = pendingInterrupt else { return nil }
        interruptRequest.remove(vector)
        inService.insert(vector)
        return vector
    }

    /// EOI: retires the highest in-service vector; returns it if level-triggered
    /// (TMR set), for the EOI message to the IOAPIC.
    public mutating func endOfInterrupt() -> UInt8? {
        guard let vector = inService.highest else { return nil }
        inService.remove(vector)
        return triggerMode.contains(vector) ? vector : nil
    }

    /// A fixed interrupt from outside (IOAPIC, MSI) or from this APIC. Refused while
    /// the APIC is disabled or software-disabled; vectors 0-15 are illegal and set
    /// "Received Illegal Vector" (SDM "Error Handling"). The TMR records the trigger.
    @discardableResult
    public mutating func accept(vector: UInt8, level: Bool = false) -> Bool {
        guard mode != .disabled, isSoftwareEnabled else { return false }
        guard vector >= 16 else {
            recordError(APICErrorStatus.receiveIllegalVector)
            return false
        }
        interruptRequest.insert(vector)
        if level { triggerMode.insert(vector) } else { triggerMode.remove(vector) }
        return true
    }

    /// An error: if it is new since the last ESR write, the LVT error entry signals it.
    /// SDM "Error Handling".
    mutating func recordError(_ bits: UInt32) {
        let fresh = bits & ~errorsSinceLatch
        errorsSinceLatch |= bits
        guard fresh != 0, lvtError & LocalVectorTableEntry.masked == 0 else { return }
        let vector = UInt8(truncatingIfNeeded: lvtError)
        if vector < 16 {
            errorsSinceLatch |= APICErrorStatus.receiveIllegalVector
        } else {
            accept(vector: vector)
        }
    }

    /// The ESR, as the last write latched it.
    public var errorStatusRegister: UInt32 { errorStatus }

    // MARK: IPIs. SDM "Issuing Interprocessor Interrupts".

    /// Sends the IPI in `low` (ICR bits 31:0) to `destination` (the 8-bit xAPIC or the
    /// 32-bit x2APIC destination). Only this CPU exists: fixed and lowest-priority
    /// IPIs that include it are accepted, NMIs to it are reported; SMI, INIT, SIPI
    /// and anything for other CPUs are dropped. Delivery status stays idle. As KVM
    /// does, self+NMI is delivered although the SDM's table of valid ICR
    /// combinations marks the self shorthand valid only for fixed IPIs.
    mutating func sendIPI(low: UInt32, destination: UInt32) -> LocalAPICEvent {
        let vector = UInt8(truncatingIfNeeded: low)
        let deliveryMode = APICDeliveryMode(rawValue: UInt8((low >> InterruptCommandRegister.deliveryModeShift) & 7))
        let toSelf: Bool
        switch DestinationShorthand(rawValue: UInt8((low >> InterruptCommandRegister.shorthandShift) & 3)) {
        case .toSelf, .allIncludingSelf: toSelf = true
        case .allExcludingSelf: toSelf = false
        case .noShorthand, nil:
            toSelf = matches(destination: destination,
                             logical: low & InterruptCommandRegister.logicalDestination != 0)
        }
        switch deliveryMode {
        case .fixed, .lowestPriority:
            guard vector >= 16 else {
                // SDM "Error Handling": the sender's error, and the receiver's when it is us.
                recordError(APICErrorStatus.sendIllegalVector)
                if toSelf { recordError(APICErrorStatus.receiveIllegalVector) }
                return .nothing
            }
            if toSelf { accept(vector: vector) }
            return .nothing
        case .nmi:
            return toSelf ? .nmi : .nothing
        default:
            return .nothing
        }
    }

    /// SDM "Determining IPI Destination": physical (ID or broadcast) or logical
    /// (flat or cluster model in xAPIC mode; cluster in x2APIC mode).
    func matches(destination: UInt32, logical: Bool) -> Bool {
        if mode == .x2APIC {
            if destination == 0xFFFF_FFFF { return true }
            guard logical else { return destination == initialID }
            let ldr = logicalDestination
            return destination >> 16 == ldr >> 16 && destination & ldr & 0xFFFF != 0
        }
        let target = UInt8(truncatingIfNeeded: destination)
        if target == 0xFF { return true }
        guard logical else { return target == xAPICID }
        let ldr = UInt8(truncatingIfNeeded: logicalDestination >> 24)
        switch destinationFormat >> 28 {
        case 0xF: return target & ldr != 0
        case 0x0: return target >> 4 == ldr >> 4 && target & ldr & 0xF != 0
        default: return false
        }
    }
}
