// The virtual I/O APIC of an isolated guest: the 82093AA as operating
// systems program it at 0xFEC00000, with the EOI register of the version-0x20
// I/O APICs that Linux uses for directed EOI. A pure model: the kernel maps
// the guest's MMIO accesses to `read(offset:)` / `write(offset:value:)`, its
// virtual devices drive the pins, its local APIC broadcasts EOIs, and every
// call returns the interrupts the I/O APIC sends (at most one per pin), which
// the kernel hands to the local APIC. No heap, no existentials.
//
// Citations: 82093AA datasheet (Intel 290566) section 3.0 "Register
// Description": 3.1 "Memory Mapped Registers for Accessing IOAPIC Registers",
// 3.2 "IOAPIC Registers" (IOAPICID, IOAPICVER, IOAPICARB, IOREDTBL[23:0]);
// SDM Vol. 3A 11.6.1 "Interrupt Command Register (ICR)" for the delivery and
// destination modes the redirection entries share with the ICR.

// MARK: - Redirection table entry (82093AA 3.2.4 "IOREDTBL[23:0]")

/// The delivery mode field (bits 10:8). Values 3 and 6 are reserved; they
/// are kept as written so the kernel can decide what a reserved mode does.
public struct IOAPICDeliveryMode: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x7 }

    public static let fixed = IOAPICDeliveryMode(rawValue: 0)
    public static let lowestPriority = IOAPICDeliveryMode(rawValue: 1)
    public static let smi = IOAPICDeliveryMode(rawValue: 2)
    public static let nmi = IOAPICDeliveryMode(rawValue: 4)
    public static let initSignal = IOAPICDeliveryMode(rawValue: 5)
    public static let extINT = IOAPICDeliveryMode(rawValue: 7)

    /// 82093AA 3.2.4: SMI requires edge; NMI and INIT are treated as edge
    /// even if programmed level; ExtINT requires edge. Only Fixed and Lowest
    /// Priority interrupts use the level-triggered remote-IRR protocol.
    public var honoursLevelTrigger: Bool { self == .fixed || self == .lowestPriority }
}

public enum IOAPICTriggerMode: Equatable, Sendable {
    case edge, level
}

/// One 64-bit redirection table entry. Each bit range is declared once here.
public struct IOAPICRedirectionEntry: Equatable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    static let vectorMask: UInt64 = 0xFF                // 7:0
    static let deliveryModeShift: UInt64 = 8             // 10:8
    static let destinationModeBit: UInt64 = 1 << 11      // 0 physical, 1 logical
    static let deliveryStatusBit: UInt64 = 1 << 12       // RO: send pending
    static let polarityBit: UInt64 = 1 << 13             // 1 = active low
    static let remoteIRRBit: UInt64 = 1 << 14            // RO: level interrupt accepted
    static let triggerModeBit: UInt64 = 1 << 15          // 1 = level
    static let maskBit: UInt64 = 1 << 16
    static let destinationShift: UInt64 = 56             // 63:56
    /// The bits software may write; 55:17 are reserved (read zero) and the
    /// delivery status and remote IRR bits are read-only.
    static let writableMask: UInt64 = 0xFF00_0000_0000_0000 | 0xFFF | polarityBit | triggerModeBit | maskBit

    /// After reset only the mask bit is defined (82093AA 3.2.4: "masked").
    public static let reset = IOAPICRedirectionEntry(rawValue: maskBit)

    public var vector: UInt8 { UInt8(truncatingIfNeeded: rawValue & Self.vectorMask) }
    public var deliveryMode: IOAPICDeliveryMode {
        IOAPICDeliveryMode(rawValue: UInt8(truncatingIfNeeded: rawValue >> Self.deliveryModeShift))
    }
    public var logicalDestination: Bool { rawValue & Self.destinationModeBit != 0 }
    public var deliveryStatus: Bool { rawValue & Self.deliveryStatusBit != 0 }
    public var activeLow: Bool { rawValue & Self.polarityBit != 0 }
    public var remoteIRR: Bool { rawValue & Self.remoteIRRBit != 0 }
    public var triggerMode: IOAPICTriggerMode { rawValue & Self.triggerModeBit != 0 ? .level : .edge }
    public var masked: Bool { rawValue & Self.maskBit != 0 }
    /// Physical mode: the APIC ID; logical mode: the message destination address.
    public var destination: UInt8 { UInt8(truncatingIfNeeded: rawValue >> Self.destinationShift) }

    /// Whether delivery follows the level-triggered protocol (remote IRR, EOI).
    var usesRemoteIRR: Bool { triggerMode == .level && deliveryMode.honoursLevelTrigger }
}

// MARK: - Routed interrupts

/// An interrupt message the I/O APIC sends to the local APIC(s).
public struct IOAPICInterrupt: Equatable, Sendable {
    public var pin: UInt8
    public var vector: UInt8
    public var deliveryMode: IOAPICDeliveryMode
    public var logicalDestination: Bool
    public var destination: UInt8
    /// Level only for Fixed and Lowest Priority entries programmed level: the
    /// local APIC then sets TMR and its EOI must reach `IOAPIC.eoi(vector:)`.
    public var triggerMode: IOAPICTriggerMode

    public init(pin: UInt8, vector: UInt8, deliveryMode: IOAPICDeliveryMode, logicalDestination: Bool,
                destination: UInt8, triggerMode: IOAPICTriggerMode) {
        self.pin = pin
        self.vector = vector
        self.deliveryMode = deliveryMode
        self.logicalDestination = logicalDestination
        self.destination = destination
        self.triggerMode = triggerMode
    }

    init(pin: Int, entry: IOAPICRedirectionEntry) {
        self.init(pin: UInt8(truncatingIfNeeded: pin), vector: entry.vector, deliveryMode: entry.deliveryMode,
                  logicalDestination: entry.logicalDestination, destination: entry.destination,
                  triggerMode: entry.usesRemoteIRR ? .level : .edge)
    }
}

/// The interrupts one call sent, in pin order: at most one per pin, so a
/// fixed capacity of `IOAPIC.pinCount` always suffices.
public struct IOAPICDeliveries: Sendable {
    var items = InlineArray<24, IOAPICInterrupt>(
        repeating: IOAPICInterrupt(pin: 0, vector: 0, deliveryMode: .fixed, logicalDestination: false,
                                   destination: 0, triggerMode: .edge))
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// The `index`th interrupt; `index` must be below `count`.
    public subscript(index: Int) -> IOAPICInterrupt { items[index] }

    /// The only interrupt of a call that can send at most one (a pin input).
    public var first: IOAPICInterrupt? { count > 0 ? items[0] : nil }

    mutating func append(_ interrupt: IOAPICInterrupt) {
        guard count < items.count else { return }
        items[count] = interrupt
        count += 1
    }
}

// MARK: - The I/O APIC

public struct IOAPIC: Sendable {
    /// Where operating systems expect the first I/O APIC (and the MADT says so).
    public static let baseAddress: UInt64 = 0xFEC0_0000
    public static let mmioSize: UInt64 = 0x1000
    public static let pinCount = 24
    /// Version 0x20: an I/O APIC with the EOI register (ICH and later); the
    /// 82093AA itself reports 0x11.
    public static let version: UInt32 = 0x20

    // 3.1 "Memory Mapped Registers for Accessing IOAPIC Registers"
    public static let registerSelectOffset: UInt64 = 0x00  // IOREGSEL
    public static let windowOffset: UInt64 = 0x10          // IOWIN
    public static let eoiOffset: UInt64 = 0x40             // EOI (version 0x20)

    // 3.2 "IOAPIC Registers": the indices IOREGSEL selects.
    public static let idRegister: UInt8 = 0x00
    public static let versionRegister: UInt8 = 0x01
    public static let arbitrationRegister: UInt8 = 0x02
    public static let redirectionTableBase: UInt8 = 0x10

    /// IOAPICID and IOAPICARB keep the 4-bit ID in bits 27:24.
    static let idMask: UInt32 = 0x0F00_0000

    /// IOREGSEL (bits 7:0; 31:8 reserved).
    public private(set) var selectedRegister: UInt8 = 0
    /// IOAPICID bits 27:24.
    public private(set) var id: UInt8
    /// IOAPICARB bits 27:24, loaded from the ID whenever the ID is written (3.2.3).
    public private(set) var arbitrationID: UInt8
    var table = InlineArray<24, IOAPICRedirectionEntry>(repeating: .reset)
    /// The logical state of each input (bit n = pin n asserted).
    public private(set) var lines: UInt32 = 0

    /// Reset state (3.2): every entry masked, the ID as the firmware would
    /// program it (the MADT's I/O APIC ID).
    public init(id: UInt8 = 0) {
        self.id = id & 0x0F
        self.arbitrationID = id & 0x0F
    }

    public func entry(_ pin: Int) -> IOAPICRedirectionEntry {
        Self.valid(pin) ? table[pin] : .reset
    }

    static func valid(_ pin: Int) -> Bool { pin >= 0 && pin < pinCount }

    // MARK: MMIO (3.1)

    /// A 32-bit read at `offset` within the I/O APIC's page. Offsets other
    /// than IOREGSEL and IOWIN read zero (the EOI register is write-only).
    public func read(offset: UInt64) -> UInt32 {
        switch offset {
        case Self.registerSelectOffset: UInt32(selectedRegister)
        case Self.windowOffset: readRegister(selectedRegister)
        default: 0
        }
    }

    /// A 32-bit write at `offset` within the I/O APIC's page; returns the
    /// interrupts it sends (unmasking an asserted level pin, an EOI).
    public mutating func write(offset: UInt64, value: UInt32) -> IOAPICDeliveries {
        switch offset {
        case Self.registerSelectOffset:
            selectedRegister = UInt8(truncatingIfNeeded: value)
            return IOAPICDeliveries()
        case Self.windowOffset:
            return writeRegister(selectedRegister, value)
        case Self.eoiOffset:
            return eoi(vector: UInt8(truncatingIfNeeded: value))
        default:
            return IOAPICDeliveries()
        }
    }

    // MARK: Registers (3.2)

    /// The register at `index`, as IOWIN reads it; unimplemented indices read zero.
    public func readRegister(_ index: UInt8) -> UInt32 {
        switch index {
        case Self.idRegister: return UInt32(id) << 24
        case Self.versionRegister: return UInt32(Self.pinCount - 1) << 16 | Self.version
        case Self.arbitrationRegister: return UInt32(arbitrationID) << 24
        default:
            guard let half = Self.redirection(index) else { return 0 }
            let raw = table[half.pin].rawValue
            return UInt32(truncatingIfNeeded: half.high ? raw >> 32 : raw)
        }
    }

    /// An IOWIN write to the register at `index`. Version, arbitration and
    /// the read-only and reserved bits of the entries ignore the write.
    public mutating func writeRegister(_ index: UInt8, _ value: UInt32) -> IOAPICDeliveries {
        switch index {
        case Self.idRegister:
            id = UInt8(truncatingIfNeeded: (value & Self.idMask) >> 24)
            arbitrationID = id
            return IOAPICDeliveries()
        case Self.versionRegister, Self.arbitrationRegister:
            return IOAPICDeliveries()
        default:
            guard let half = Self.redirection(index) else { return IOAPICDeliveries() }
            let pin = half.pin, high = half.high
            let old = table[pin].rawValue
            let written = high ? (old & 0xFFFF_FFFF) | UInt64(value) << 32
                               : (old & ~0xFFFF_FFFF) | UInt64(value)
            let readOnly = IOAPICRedirectionEntry.deliveryStatusBit | IOAPICRedirectionEntry.remoteIRRBit
            var entry = IOAPICRedirectionEntry(
                rawValue: written & IOAPICRedirectionEntry.writableMask | old & readOnly)
            // Remote IRR is meaningless for edge entries; switching an entry to
            // edge clears it, which OSes use as an EOI for I/O APICs without the
            // EOI register (Linux's __eoi_ioapic_pin; KVM and QEMU do the same).
            if !entry.usesRemoteIRR { entry.rawValue &= ~IOAPICRedirectionEntry.remoteIRRBit }
            table[pin] = entry
            var sent = IOAPICDeliveries()
            // An asserted level pin that was masked (or just switched to level)
            // delivers as soon as the entry lets it: the input is still active.
            serviceLevel(pin, into: &sent)
            return sent
        }
    }

    /// The entry and half (high dword) an index 0x10-0x3F selects.
    static func redirection(_ index: UInt8) -> (pin: Int, high: Bool)? {
        guard index >= redirectionTableBase else { return nil }
        let pin = Int(index - redirectionTableBase) / 2
        guard valid(pin) else { return nil }
        return (pin, index & 1 != 0)
    }

    // MARK: Inputs

    /// Set the logical state of `pin` (true: the device requests service).
    /// The model takes the asserted state, not the electrical level: the
    /// polarity bit tells the guest how the wire is driven, as in QEMU and
    /// KVM. Edge entries send on a rising edge; level entries send while
    /// asserted, unmasked and not awaiting an EOI (remote IRR clear).
    public mutating func assert(pin: Int, level: Bool) -> IOAPICDeliveries {
        var sent = IOAPICDeliveries()
        guard Self.valid(pin) else { return sent }
        let bit = UInt32(1) << UInt32(pin)
        let rising = level && lines & bit == 0
        if level { lines |= bit } else { lines &= ~bit }
        if table[pin].usesRemoteIRR {
            serviceLevel(pin, into: &sent)
        } else if rising {
            send(pin, into: &sent)
        }
        return sent
    }

    /// An edge (assert, then deassert) on `pin`. A masked edge entry drops
    /// it (3.2.4: "Edge-sensitive interrupts signaled on a masked interrupt
    /// pin are ignored"); a level entry sees a brief assertion.
    public mutating func pulse(pin: Int) -> IOAPICDeliveries {
        let sent = assert(pin: pin, level: true)
        _ = assert(pin: pin, level: false)  // deasserting never sends
        return sent
    }

    /// An EOI for `vector`, from the local APIC's EOI broadcast (SDM 11.8.5
    /// "Signaling Interrupt Servicing Completion") or the EOI register:
    /// clears remote IRR of the level entries with that vector and sends
    /// again for those whose input is still asserted.
    public mutating func eoi(vector: UInt8) -> IOAPICDeliveries {
        var sent = IOAPICDeliveries()
        for pin in 0..<Self.pinCount where table[pin].remoteIRR && table[pin].vector == vector {
            table[pin].rawValue &= ~IOAPICRedirectionEntry.remoteIRRBit
            serviceLevel(pin, into: &sent)
        }
        return sent
    }

    // MARK: Delivery

    /// Send a level entry's interrupt if its input is asserted, it is unmasked
    /// and no EOI is outstanding; sending sets remote IRR (3.2.4: set when the
    /// local APIC accepts the interrupt; the kernel's local APIC always does).
    mutating func serviceLevel(_ pin: Int, into sent: inout IOAPICDeliveries) {
        let entry = table[pin]
        guard entry.usesRemoteIRR, lines & (UInt32(1) << UInt32(pin)) != 0, !entry.remoteIRR else { return }
        send(pin, into: &sent)
    }

    mutating func send(_ pin: Int, into sent: inout IOAPICDeliveries) {
        let entry = table[pin]
        guard !entry.masked else { return }
        if entry.usesRemoteIRR { table[pin].rawValue |= IOAPICRedirectionEntry.remoteIRRBit }
        sent.append(IOAPICInterrupt(pin: pin, entry: entry))
    }
}
