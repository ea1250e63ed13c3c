// Pending guest events and the decision of what to inject at the next VM entry.
// Order of work for the vCPU before each VM entry:
//   1. if the last exit had a valid IDT-vectoring record, re-inject it
//      (`IDTVectoringInfo.reinjection`) and inject nothing else;
//   2. otherwise ask the queue for a plan (`EventQueue.plan(guest:)`), write
//      its injection, and set "interrupt-window exiting" / "NMI-window exiting"
//      as the plan says.

import X86Arch
import VMX

/// The parts of guest state that decide whether an event can be injected.
@frozen
public struct GuestEventContext: Equatable, Sendable {
    /// RFLAGS.IF.
    public var interruptsEnabled: Bool
    public var interruptibility: InterruptibilityState
    /// CR0.PE: in real mode no exception delivers an error code.
    public var protectedMode: Bool

    @inlinable
    public init(interruptsEnabled: Bool, interruptibility: InterruptibilityState, protectedMode: Bool) {
        self.interruptsEnabled = interruptsEnabled
        self.interruptibility = interruptibility
        self.protectedMode = protectedMode
    }

    /// From the raw guest RFLAGS, guest CR0 and interruptibility-state fields.
    @inlinable
    public init(rflags: UInt64, cr0: UInt64, interruptibility: UInt32) {
        self.init(interruptsEnabled: rflags & RFLAGS.interruptEnable.rawValue != 0,
                  interruptibility: InterruptibilityState(raw: interruptibility),
                  protectedMode: cr0 & CR0Bits.pe.rawValue != 0)
    }

    /// An external interrupt can be injected: IF=1 and no blocking by STI or MOV SS.
    // SDM 27.3.1.5 "Checks on Guest Non-Register State" (interruptibility state vs. injection)
    @inlinable
    public var acceptsExternalInterrupt: Bool {
        interruptsEnabled && !interruptibility.blockingBySTI && !interruptibility.blockingByMovSS
    }

    /// An NMI can be injected: no blocking by NMI or MOV SS, and (as processors
    /// may treat STI blocking as blocking NMIs, and Linux KVM does) none by STI.
    // SDM 27.3.1.5 "Checks on Guest Non-Register State"
    @inlinable
    public var acceptsNMI: Bool {
        !interruptibility.blockingByNMI && !interruptibility.blockingByMovSS && !interruptibility.blockingBySTI
    }
}

/// An event waiting to be injected into the guest.
@frozen
public struct PendingEvent: Equatable, Sendable {
    public var vector: UInt8
    public var type: InterruptionType
    /// The error code for hardware exceptions that push one; ignored for the
    /// others and in real mode. A missing one is delivered as 0.
    public var errorCode: UInt32?
    /// For software interrupts and (privileged) software exceptions: the
    /// length of the instruction that raised it (1...15).
    public var instructionLength: UInt32

    @inlinable
    public init(vector: UInt8, type: InterruptionType, errorCode: UInt32? = nil, instructionLength: UInt32 = 0) {
        self.vector = vector
        self.type = type
        self.errorCode = errorCode
        self.instructionLength = instructionLength
    }

    /// A hardware exception (fault or abort raised by the VMM on the guest's behalf).
    @inlinable
    public static func exception(_ vector: ExceptionVector, errorCode: UInt32? = nil) -> PendingEvent {
        PendingEvent(vector: vector.rawValue, type: .hardwareException, errorCode: errorCode)
    }

    /// An NMI (vector 2, as VM entry requires).
    public static var nmi: PendingEvent { PendingEvent(vector: 2, type: .nmi) }

    /// A maskable external interrupt.
    @inlinable
    public static func externalInterrupt(_ vector: UInt8) -> PendingEvent {
        PendingEvent(vector: vector, type: .externalInterrupt)
    }

    /// #DF with its error code, always 0.
    public static var doubleFault: PendingEvent { .exception(.doubleFault, errorCode: 0) }

    /// Injection order: exceptions and other instruction-caused events first,
    /// then NMIs, then external interrupts.
    @usableFromInline
    var rank: Int {
        switch type {
        case .nmi: return 1
        case .externalInterrupt: return 2
        default: return 0
        }
    }

    /// The VMCS values that inject this event into a guest in `protectedMode`.
    @inlinable
    public func injection(protectedMode: Bool) -> EventInjection {
        let deliver = type.deliversErrorCode(vector: vector, protectedMode: protectedMode)
        return EventInjection(
            entryInfo: VMEntryInterruptionInfo(vector: vector, type: type, deliverErrorCode: deliver),
            errorCode: deliver ? (errorCode ?? 0) : nil,
            instructionLength: type.needsInstructionLength ? instructionLength : nil)
    }
}

/// What to do about one pending event at the next VM entry.
public enum InjectionDecision: Equatable, Sendable {
    /// Write these values to the VM-entry event-injection fields.
    case inject(EventInjection)
    /// The guest cannot take an external interrupt now: set "interrupt-window
    /// exiting" to get a VM exit as soon as it can.
    case openInterruptWindow
    /// The guest cannot take an NMI now: set "NMI-window exiting" (requires
    /// "virtual NMIs") to get a VM exit as soon as it can.
    case openNMIWindow
    /// No event.
    case nothing

    /// The decision for `event` given the guest's state.
    ///
    /// Exceptions, software interrupts and other events are injected regardless
    /// of RFLAGS.IF and interruptibility; NMIs need `acceptsNMI`; external
    /// interrupts need `acceptsExternalInterrupt`.
    // SDM 27.6 "Event Injection"; 26.7.5 "Interrupt-Window Exiting and Virtual-Interrupt Delivery", 26.7.6 "NMI-Window Exiting"
    @inlinable
    public init(for event: PendingEvent?, guest: GuestEventContext) {
        guard let event else { self = .nothing; return }
        switch event.type {
        case .externalInterrupt:
            self = guest.acceptsExternalInterrupt ? .inject(event.injection(protectedMode: guest.protectedMode)) : .openInterruptWindow
        case .nmi:
            self = guest.acceptsNMI ? .inject(event.injection(protectedMode: guest.protectedMode)) : .openNMIWindow
        default:
            self = .inject(event.injection(protectedMode: guest.protectedMode))
        }
    }
}

/// What the vCPU sets up for the next VM entry.
@frozen
public struct InjectionPlan: Equatable, Sendable {
    /// The event to inject (already removed from the queue), if any.
    public var injection: EventInjection?
    /// Set "interrupt-window exiting": an external interrupt stays queued.
    public var interruptWindow: Bool
    /// Set "NMI-window exiting": an NMI stays queued.
    public var nmiWindow: Bool

    @inlinable
    public init(injection: EventInjection?, interruptWindow: Bool, nmiWindow: Bool) {
        self.injection = injection
        self.interruptWindow = interruptWindow
        self.nmiWindow = nmiWindow
    }
}

public enum EventQueueError: Error, Equatable, Sendable {
    /// All `EventQueue.capacity` slots are taken; the event was not queued.
    case full
}

/// A fixed-capacity queue of pending events (no heap): first in, first out
/// within a rank, exceptions before NMIs before external interrupts.
@frozen
public struct EventQueue: Sendable {
    public static var capacity: Int { 16 }

    @usableFromInline var slots: InlineArray<16, PendingEvent>
    /// Events are kept in arrival order in `slots[0 ..< used]`.
    @usableFromInline var used: Int

    @inlinable
    public init() {
        slots = InlineArray(repeating: PendingEvent(vector: 0, type: .reserved))
        used = 0
    }

    @inlinable public var count: Int { used }
    @inlinable public var isEmpty: Bool { used == 0 }
    @inlinable public var isFull: Bool { used == Self.capacity }

    /// An external interrupt waits: the interrupt controller is asked for the
    /// next one only once it has been delivered (one INTA at a time).
    /// (`mutating` gets: reading the slots of a borrowed queue copied all of them first.)
    @inlinable public var holdsExternalInterrupt: Bool {
        mutating get {
            for i in 0..<used where slots[i].type == .externalInterrupt { return true }
            return false
        }
    }

    /// External interrupt `vector` waits: a timer that fires again before it
    /// is delivered has nothing to add (an interrupt line, not a counter).
    @inlinable public mutating func holdsExternalInterrupt(_ vector: UInt8) -> Bool {
        for i in 0..<used where slots[i].type == .externalInterrupt && slots[i].vector == vector { return true }
        return false
    }

    /// Queues `event`; throws `.full` (queueing nothing) when there is no room.
    @inlinable
    public mutating func push(_ event: PendingEvent) throws(EventQueueError) {
        guard used < Self.capacity else { throw .full }
        slots[used] = event
        used += 1
    }

    // The index searches are `mutating` only so that they read the slots in
    // place: a non-mutating call copied all 16 slots first (256 bytes, each
    // one a Bochs instruction), up to five times per plan.

    /// The index of the oldest event of `rank`, if any.
    @inlinable
    mutating func firstIndex(rank: Int) -> Int? {
        var i = 0
        while i < used {
            if slots[i].rank == rank { return i }
            i += 1
        }
        return nil
    }

    /// The index of the event injected next: lowest rank, then oldest.
    @inlinable
    mutating func headIndex() -> Int? {
        var best: Int? = nil
        var i = 0
        while i < used {
            if let b = best {
                if slots[i].rank < slots[b].rank { best = i }
            } else {
                best = i
            }
            i += 1
        }
        return best
    }

    @inlinable
    mutating func remove(at index: Int) -> PendingEvent {
        let event = slots[index]
        var i = index
        while i + 1 < used {
            slots[i] = slots[i + 1]
            i += 1
        }
        used -= 1
        return event
    }

    /// The event with the highest priority (oldest among equals), not removed.
    @inlinable
    public var head: PendingEvent? {
        var queue = self
        guard let i = queue.headIndex() else { return nil }
        return slots[i]
    }

    /// Removes and returns `head`.
    @inlinable
    public mutating func popHead() -> PendingEvent? {
        guard let i = headIndex() else { return nil }
        return remove(at: i)
    }

    /// True when an NMI is queued.
    @inlinable public var hasNMI: Bool { var queue = self; return queue.firstIndex(rank: 1) != nil }

    /// Drops every queued event (e.g. on INIT or guest reset).
    @inlinable
    public mutating func removeAll() { used = 0 }

    /// Chooses the event to inject at the next VM entry and removes it.
    ///
    /// An exception-class event is always injected. Otherwise the oldest NMI is
    /// injected if the guest accepts NMIs, else the oldest external interrupt
    /// if it accepts those (an NMI blocked only by NMI blocking does not hold
    /// back interrupts). Whatever NMI or interrupt stays queued asks for its
    /// window, so the guest exits as soon as it can take it.
    @inlinable
    public mutating func plan(guest: GuestEventContext) -> InjectionPlan {
        var injection: EventInjection? = nil
        for rank in 0 ..< 3 {
            guard let i = firstIndex(rank: rank) else { continue }
            if case let .inject(values) = InjectionDecision(for: slots[i], guest: guest) {
                injection = values
                _ = remove(at: i)
                break
            }
        }
        return InjectionPlan(injection: injection, interruptWindow: firstIndex(rank: 2) != nil,
                             nmiWindow: firstIndex(rank: 1) != nil)
    }
}

/// What happens when delivering one event raises an exception.
// SDM 7.15 "Exception and Interrupt Reference", Interrupt 8, Table "Conditions for Generating a Double Fault"
public enum ExceptionMerge: Equatable, Sendable {
    /// Handle serially: deliver the new exception. If the first event was an
    /// exception, re-executing the instruction raises it again; if it was an
    /// NMI or external interrupt, keep it queued.
    case deliverSecond
    /// Deliver #DF (error code 0) instead of both.
    case doubleFault
    /// The guest has triple-faulted: it shuts down.
    case tripleFault

    /// The outcome when delivering `firstVector` of `firstType` raises the
    /// hardware exception `secondVector`.
    ///
    /// Contributory then contributory, and page fault then contributory or
    /// page fault, give #DF. An exception while delivering #DF gives a triple
    /// fault (the SDM names contributory and page faults, the only ones event
    /// delivery can raise; Bochs and KVM shut down on any).
    @inlinable
    public init(delivering firstVector: UInt8, type firstType: InterruptionType, raising secondVector: UInt8) {
        let first = ExceptionClass(vector: firstVector, type: firstType)
        let second = ExceptionClass(vector: secondVector)
        switch (first, second) {
        case (.doubleFault, _):
            self = .tripleFault
        case (.contributory, .contributory), (.pageFault, .contributory), (.pageFault, .pageFault):
            self = .doubleFault
        default:
            self = .deliverSecond
        }
    }
}
