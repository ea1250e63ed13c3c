import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

@Suite struct EventQueueTests {
    static let open = GuestEventContext(interruptsEnabled: true, interruptibility: InterruptibilityState(raw: 0), protectedMode: true)
    static func state(if flag: Bool = true, bits: UInt32 = 0, pe: Bool = true) -> GuestEventContext {
        GuestEventContext(interruptsEnabled: flag, interruptibility: InterruptibilityState(raw: bits), protectedMode: pe)
    }

    /// SDM 25.4.2 Table "Format of Interruptibility State": 0 STI, 1 MOV SS, 2 SMI, 3 NMI.
    @Test func interruptibilityBits() {
        var s = InterruptibilityState(raw: 0b1010)
        #expect(!s.blockingBySTI && s.blockingByMovSS && !s.blockingBySMI && s.blockingByNMI)
        s.blockingBySTI = true
        s.blockingBySMI = true
        s.blockingByMovSS = false
        #expect(s.raw == 0b1101)
        s.blockingByNMI = false
        #expect(s.raw == 0b0101)
    }

    @Test func contextFromRawFields() {
        let c = GuestEventContext(rflags: 0x202, cr0: 0x8000_0011, interruptibility: 1)
        #expect(c.interruptsEnabled && c.protectedMode && c.interruptibility.blockingBySTI)
        let real = GuestEventContext(rflags: 0x002, cr0: 0x10, interruptibility: 0)
        #expect(!real.interruptsEnabled && !real.protectedMode)
    }

    @Test func externalInterruptNeedsIFAndNoSTIOrMovSSBlocking() {
        let irq = PendingEvent.externalInterrupt(0x20)
        #expect(InjectionDecision(for: irq, guest: Self.state(if: false)) == .openInterruptWindow)
        #expect(InjectionDecision(for: irq, guest: Self.state(bits: 1)) == .openInterruptWindow)
        #expect(InjectionDecision(for: irq, guest: Self.state(bits: 2)) == .openInterruptWindow)
        // Blocking by NMI does not block maskable interrupts.
        guard case let .inject(inj) = InjectionDecision(for: irq, guest: Self.state(bits: 8)) else {
            Issue.record("external interrupt not injected"); return
        }
        #expect(inj.entryInfo.raw == 0x8000_0020)
        #expect(inj.errorCode == nil && inj.instructionLength == nil)
    }

    @Test func nmiNeedsNoNMIMovSSOrSTIBlocking() {
        for bits: UInt32 in [1, 2, 8] {
            #expect(InjectionDecision(for: .nmi, guest: Self.state(bits: bits)) == .openNMIWindow)
        }
        // IF does not mask NMIs.
        guard case let .inject(inj) = InjectionDecision(for: .nmi, guest: Self.state(if: false)) else {
            Issue.record("NMI not injected"); return
        }
        #expect(inj.entryInfo.raw == 0x8000_0202)
    }

    @Test func exceptionsIgnoreIFAndBlocking() {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0x10)
        guard case let .inject(inj) = InjectionDecision(for: gp, guest: Self.state(if: false, bits: 0xB)) else {
            Issue.record("exception not injected"); return
        }
        #expect(inj.entryInfo.raw == 0x8000_0B0D)
        #expect(inj.errorCode == 0x10)
        #expect(InjectionDecision(for: nil, guest: Self.open) == .nothing)
    }

    /// With unrestricted guest and CR0.PE=0 no error code may be delivered.
    @Test func realModeExceptionHasNoErrorCode() {
        let gp = PendingEvent.exception(.generalProtection, errorCode: 0x10)
        let inj = gp.injection(protectedMode: false)
        #expect(inj.entryInfo.raw == 0x8000_030D)
        #expect(inj.errorCode == nil)
        // A missing error code for #PF in protected mode is delivered as 0.
        let pf = PendingEvent.exception(.pageFault).injection(protectedMode: true)
        #expect(pf.entryInfo.deliversErrorCode && pf.errorCode == 0)
        // A spurious error code for #UD is not delivered.
        let ud = PendingEvent.exception(.invalidOpcode, errorCode: 7).injection(protectedMode: true)
        #expect(!ud.entryInfo.deliversErrorCode && ud.errorCode == nil)
    }

    @Test func softwareInterruptCarriesInstructionLength() {
        let int80 = PendingEvent(vector: 0x80, type: .softwareInterrupt, instructionLength: 2)
        guard case let .inject(inj) = InjectionDecision(for: int80, guest: Self.state(if: false)) else {
            Issue.record("INT n not injected"); return
        }
        #expect(inj.entryInfo.raw == 0x8000_0480)
        #expect(inj.instructionLength == 2)
    }

    @Test func fullQueueReportsInsteadOfTrapping() throws {
        var q = EventQueue()
        #expect(q.isEmpty)
        for v in 0 ..< EventQueue.capacity { try q.push(.externalInterrupt(UInt8(0x20 + v))) }
        #expect(q.isFull && q.count == 16)
        #expect(throws: EventQueueError.full) { try q.push(.nmi) }
        #expect(q.count == 16)
        #expect(!q.hasNMI)
        q.removeAll()
        let none = q.popHead()
        #expect(q.isEmpty && q.head == nil && none == nil)
    }

    @Test func exceptionsBeforeNMIsBeforeInterruptsFIFOWithin() throws {
        var q = EventQueue()
        try q.push(.externalInterrupt(0x20))
        try q.push(.nmi)
        try q.push(.exception(.invalidOpcode))
        try q.push(.externalInterrupt(0x21))
        try q.push(.exception(.debug))
        #expect(q.head == .exception(.invalidOpcode))
        do { let e = q.popHead(); #expect(e == .exception(.invalidOpcode)) }
        do { let e = q.popHead(); #expect(e == .exception(.debug)) }
        do { let e = q.popHead(); #expect(e == .nmi) }
        do { let e = q.popHead(); #expect(e == .externalInterrupt(0x20)) }
        do { let e = q.popHead(); #expect(e == .externalInterrupt(0x21)) }
        do { let e = q.popHead(); #expect(e == nil) }
    }

    @Test func planInjectsNMIAndWaitsForInterruptWindow() throws {
        var q = EventQueue()
        try q.push(.externalInterrupt(0x20))
        try q.push(.nmi)
        let first = q.plan(guest: Self.state(if: false))
        #expect(first.injection?.entryInfo.raw == 0x8000_0202)
        #expect(first.interruptWindow && !first.nmiWindow)
        let second = q.plan(guest: Self.state(if: false))
        #expect(second.injection == nil)
        #expect(second.interruptWindow)
        #expect(q.count == 1)
        let third = q.plan(guest: Self.open)
        #expect(third.injection?.entryInfo.raw == 0x8000_0020)
        #expect(!third.interruptWindow && !third.nmiWindow && q.isEmpty)
    }

    /// In an NMI handler with IF=1, a blocked NMI does not hold back interrupts.
    @Test func planInjectsInterruptWhileNMIBlocked() throws {
        var q = EventQueue()
        try q.push(.nmi)
        try q.push(.externalInterrupt(0x31))
        let plan = q.plan(guest: Self.state(bits: 8))
        #expect(plan.injection?.entryInfo.vector == 0x31)
        #expect(plan.nmiWindow && !plan.interruptWindow)
    }

    @Test func planPrefersExceptionsAndKeepsWindowsForTheRest() throws {
        var q = EventQueue()
        try q.push(.externalInterrupt(0x20))
        try q.push(.nmi)
        try q.push(.exception(.pageFault, errorCode: 2))
        let plan = q.plan(guest: Self.open)
        #expect(plan.injection?.entryInfo.raw == 0x8000_0B0E)
        #expect(plan.injection?.errorCode == 2)
        #expect(plan.interruptWindow && plan.nmiWindow)
        var empty = EventQueue()
        let nothing = empty.plan(guest: Self.open)
        #expect(nothing == InjectionPlan(injection: nil, interruptWindow: false, nmiWindow: false))
    }

    /// SDM 7.15 "Exception and Interrupt Reference", Table "Conditions for Generating a Double Fault".
    @Test func doubleAndTripleFaultRules() {
        func merge(_ a: ExceptionVector, _ b: ExceptionVector) -> ExceptionMerge {
            ExceptionMerge(delivering: a.rawValue, type: .hardwareException, raising: b.rawValue)
        }
        #expect(merge(.generalProtection, .segmentNotPresent) == .doubleFault)
        #expect(merge(.divideError, .invalidTSS) == .doubleFault)
        #expect(merge(.controlProtection, .generalProtection) == .doubleFault)
        #expect(merge(.pageFault, .pageFault) == .doubleFault)
        #expect(merge(.pageFault, .generalProtection) == .doubleFault)
        #expect(merge(.virtualization, .pageFault) == .doubleFault)
        #expect(merge(.generalProtection, .pageFault) == .deliverSecond)
        #expect(merge(.pageFault, .invalidOpcode) == .deliverSecond)
        #expect(merge(.debug, .generalProtection) == .deliverSecond)
        #expect(merge(.doubleFault, .generalProtection) == .tripleFault)
        #expect(merge(.doubleFault, .pageFault) == .tripleFault)
        // An external interrupt or INT n with vector 13 is not a #GP: benign.
        #expect(ExceptionMerge(delivering: 13, type: .externalInterrupt, raising: 13) == .deliverSecond)
        #expect(ExceptionMerge(delivering: 8, type: .softwareInterrupt, raising: 13) == .deliverSecond)
        #expect(PendingEvent.doubleFault.injection(protectedMode: true).entryInfo.raw == 0x8000_0B08)
        #expect(PendingEvent.doubleFault.injection(protectedMode: true).errorCode == 0)
    }
}
