import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// Event injection at VM entry (`prepareEntry`) and re-injection of the event
// an exit interrupted (`noteInterruptedEvent`). SDM 27.6 "Event Injection",
// 26.7.5 "Interrupt-Window Exiting", 26.7.6 "NMI-Window Exiting",
// 28.2.4 "Information for VM Exits During Event Delivery".
@Suite struct VCPUEventTests {
    let interruptWindowBit = PrimaryProcessorBasedControls.interruptWindowExiting.rawValue

    @Test func anInterruptWithIFClearOpensTheWindowAndInjectsNothing() throws {
        var rig = try VCPURig()   // RFLAGS = 2: IF clear
        rig.queue(.externalInterrupt(0x30))
        _ = rig.run([])
        let e = rig.entries[0]
        #expect(e.interruptWindowExiting)
        #expect(!e.injected.isValid)
        // The window bit was written to the VMCS (not only remembered).
        let writes = rig.hw.vmcs.writes.filter { $0.encoding == VMCSFields.Control32.primaryProcessorBasedControls.encoding }
        #expect(writes.last.map { UInt32($0.value) & interruptWindowBit != 0 } == true)
        #expect(rig.vcpu.events.count == 1)
    }

    @Test func anInterruptWithIFSetIsInjectedAndTheWindowCloses() throws {
        var rig = try VCPURig()
        rig.queue(.externalInterrupt(0x30))
        // The guest sets IF (STI has completed) and the window exit follows.
        let window = ScriptedExit(.interruptWindow) { _, vmcs in vmcs.preset(VMCSFields.GuestNatural.rflags, 0x202) }
        _ = rig.run([window])
        let e = rig.entries[1]
        #expect(e.injected.raw == 0x8000_0030)   // valid | type 0 (external interrupt) | vector
        #expect(!e.interruptWindowExiting)
        #expect(rig.vcpu.events.isEmpty)
        #expect(e.rip == 0x1000)
    }

    @Test func stiBlockingHoldsTheInterruptBack() throws {
        var rig = try VCPURig { $0.rflags = 0x202 }
        rig.preset(VMCSFields.Guest32.interruptibilityState, 1)
        rig.queue(.externalInterrupt(0x30))
        _ = rig.run([])
        #expect(rig.entries[0].interruptWindowExiting)
        #expect(!rig.entries[0].injected.isValid)
    }

    /// An EPT violation while delivering an event: the kernel deals with the
    /// access (one day, MMIO) and runs the guest again.
    static func eptViolationDuringDelivery(_ info: UInt32, errorCode: UInt32 = 0, length: UInt32 = 0) -> ScriptedExit {
        var exit = ScriptedExit.eptViolation(gpa: 0xFEE0_0000, qualification: 0x2).with {
            $0.idtVectoringInformation = info
            $0.idtVectoringErrorCode = errorCode
        }
        exit.instructionLength = length
        return exit
    }

    @Test func theInterruptedEventIsReinjectedWithItsErrorCode() throws {
        var rig = try VCPURig()
        // A #PF (vector 14, hardware exception, error code valid) was being
        // delivered when the exit happened.
        _ = rig.run([Self.eptViolationDuringDelivery(0x8000_0B0E, errorCode: 0x6)])
        _ = rig.run([])
        let e = rig.entries[1]
        #expect(e.injected.raw == 0x8000_0B0E)
        #expect(e.exceptionErrorCode == 0x6)
    }

    @Test func theInterruptedEventComesBeforeTheQueue() throws {
        var rig = try VCPURig()   // IF clear: the interrupt waits for its window
        rig.queue(.externalInterrupt(0x30))
        let exit = Self.eptViolationDuringDelivery(0x8000_0B0E, errorCode: 0x2)
            .then { _, vmcs in vmcs.preset(VMCSFields.GuestNatural.rflags, 0x202) }
        _ = rig.run([exit])
        _ = rig.run([ScriptedExit(.interruptWindow)])
        #expect(rig.entries[0].interruptWindowExiting && !rig.entries[0].injected.isValid)
        // IF is now 1, yet the interrupted #PF goes first, with its error code.
        #expect(rig.entries[1].injected.raw == 0x8000_0B0E)
        #expect(rig.entries[1].exceptionErrorCode == 0x2)
        #expect(rig.entries[1].interruptWindowExiting)   // the interrupt waits its turn
        #expect(rig.entries[2].injected.raw == 0x8000_0030)
        #expect(!rig.entries[2].interruptWindowExiting)
    }

    @Test func aReinjectedSoftwareInterruptCarriesTheInstructionLength() throws {
        var rig = try VCPURig()
        // INT 0x80 (type 4) interrupted: VM entry needs the length to push the return RIP.
        _ = rig.run([Self.eptViolationDuringDelivery(0x8000_0480, length: 2)])
        _ = rig.run([])
        let e = rig.entries[1]
        #expect(e.injected.raw == 0x8000_0480)
        #expect(e.instructionLength == 2)
    }

    @Test func anInstructionExitNeverCarriesAnInterruptedEvent() throws {
        // SDM 28.2.4: only faults, task gates, APIC accesses, EPT exits (and
        // PML/SPP) happen during delivery; the field is not even read for OUT.
        var rig = try VCPURig()
        _ = rig.run([ScriptedExit.out(0x80, 0).with { $0.idtVectoringInformation = 0x8000_0B0E }])
        #expect(!rig.entries[1].injected.isValid)
    }

    @Test func aBlockedNMIOpensTheNMIWindowWithVirtualNMIs() throws {
        var rig = try VCPURig()
        #expect(rig.vcpu.features.virtualNMIs)
        rig.preset(VMCSFields.Guest32.interruptibilityState, 1 << 3)   // blocking by NMI
        rig.queue(.nmi)
        _ = rig.run([ScriptedExit(.nmiWindow) { _, vmcs in vmcs.preset(VMCSFields.Guest32.interruptibilityState, 0) }])
        #expect(rig.entries[0].nmiWindowExiting)
        #expect(!rig.entries[0].injected.isValid)
        #expect(rig.entries[1].injected.raw == 0x8000_0202)
        #expect(!rig.entries[1].nmiWindowExiting)
    }

    @Test func inRealModeAnExceptionIsInjectedWithoutAnErrorCode() throws {
        // SDM 27.2.1.3: with CR0.PE = 0 the deliver-error-code bit must be 0.
        var rig = try VCPURig(.real, rip: 0x7C00)
        _ = rig.run([.rdmsr(0x1234)])
        #expect(rig.entries[1].injected.raw == 0x8000_030D)
    }

    @Test func theQueueRefusesASeventeenthEvent() throws {
        var rig = try VCPURig()
        for v in 0..<16 { rig.queue(.externalInterrupt(UInt8(32 + v))) }
        let refused = rig.vcpu.queue(.externalInterrupt(0x50))
        #expect(!refused)
    }
}
