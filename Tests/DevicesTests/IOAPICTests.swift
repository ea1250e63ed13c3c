import Testing
import Devices

/// IOREGSEL/IOWIN helpers: the guest's two-step access.
extension IOAPIC {
    mutating func indirectRead(_ index: UInt8) -> UInt32 {
        _ = write(offset: IOAPIC.registerSelectOffset, value: UInt32(index))
        return read(offset: IOAPIC.windowOffset)
    }

    mutating func indirectWrite(_ index: UInt8, _ value: UInt32) -> IOAPICDeliveries {
        _ = write(offset: IOAPIC.registerSelectOffset, value: UInt32(index))
        return write(offset: IOAPIC.windowOffset, value: value)
    }

    /// Program pin `pin` as Linux does: high dword (destination) first, then low.
    mutating func program(pin: Int, vector: UInt8, level: Bool = false, masked: Bool = false,
                          activeLow: Bool = false, destination: UInt8 = 0, mode: UInt32 = 0,
                          logical: Bool = false) -> IOAPICDeliveries {
        let index = UInt8(0x10 + 2 * pin)
        _ = indirectWrite(index + 1, UInt32(destination) << 24)
        var low = UInt32(vector) | mode << 8
        if logical { low |= 1 << 11 }
        if activeLow { low |= 1 << 13 }
        if level { low |= 1 << 15 }
        if masked { low |= 1 << 16 }
        return indirectWrite(index, low)
    }
}

@Suite struct IOAPICTests {
    // MARK: Reset values and identification registers

    @Test func resetValues() {
        var ioapic = IOAPIC(id: 2)
        #expect(ioapic.indirectRead(0x00) == 0x0200_0000)
        // Version 0x20, maximum redirection entry 23 (0x17) in bits 23:16.
        #expect(ioapic.indirectRead(0x01) == 0x0017_0020)
        #expect(ioapic.indirectRead(0x02) == 0x0200_0000)
        for pin in 0..<IOAPIC.pinCount {
            #expect(ioapic.indirectRead(UInt8(0x10 + 2 * pin)) == 0x0001_0000, "pin \(pin) masked")
            #expect(ioapic.indirectRead(UInt8(0x11 + 2 * pin)) == 0)
        }
        #expect(ioapic.lines == 0)
    }

    @Test func idIsFourBitsAndLoadsTheArbitrationID() {
        var ioapic = IOAPIC()
        _ = ioapic.indirectWrite(0x00, 0xFFFF_FFFF)
        #expect(ioapic.indirectRead(0x00) == 0x0F00_0000)
        #expect(ioapic.id == 0x0F)
        #expect(ioapic.indirectRead(0x02) == 0x0F00_0000)
    }

    @Test func versionAndArbitrationAreReadOnly() {
        var ioapic = IOAPIC(id: 1)
        _ = ioapic.indirectWrite(0x01, 0xFFFF_FFFF)
        _ = ioapic.indirectWrite(0x02, 0x0500_0000)
        #expect(ioapic.indirectRead(0x01) == 0x0017_0020)
        #expect(ioapic.indirectRead(0x02) == 0x0100_0000)
    }

    @Test(arguments: [UInt8(0x03), 0x0F, 0x40, 0x41, 0xFF])
    func unimplementedRegistersReadZeroAndIgnoreWrites(index: UInt8) {
        var ioapic = IOAPIC()
        #expect(ioapic.indirectWrite(index, 0xFFFF_FFFF).isEmpty)
        #expect(ioapic.indirectRead(index) == 0)
        #expect(ioapic.indirectRead(0x10) == 0x0001_0000)
    }

    // MARK: IOREGSEL / IOWIN indirection

    @Test func registerSelectReadsBackAndSelectsTheWindow() {
        var ioapic = IOAPIC()
        _ = ioapic.write(offset: 0x00, value: 0xABCD_1013)
        #expect(ioapic.read(offset: 0x00) == 0x13, "IOREGSEL keeps bits 7:0 only")
        _ = ioapic.write(offset: 0x10, value: 0x5A00_0000)
        // 0x13 is entry 1's high dword: the window wrote neither its low dword nor entry 0.
        #expect(ioapic.entry(1).destination == 0x5A)
        #expect(ioapic.entry(1).masked)
        #expect(ioapic.entry(0).destination == 0)
        _ = ioapic.write(offset: 0x00, value: 0x01)
        #expect(ioapic.read(offset: 0x10) == 0x0017_0020)
    }

    @Test(arguments: [UInt64(0x04), 0x08, 0x20, 0x30, 0x40, 0xFFC])
    func otherOffsetsReadZero(offset: UInt64) {
        var ioapic = IOAPIC(id: 3)
        _ = ioapic.write(offset: 0x00, value: 0x00)
        #expect(ioapic.read(offset: offset) == 0)
        _ = ioapic.write(offset: offset, value: 0xFFFF_FFFF)
        #expect(ioapic.indirectRead(0x00) == 0x0300_0000)
    }

    @Test func redirectionEntryFieldsRoundTrip() {
        var ioapic = IOAPIC()
        // Vector 0x31, lowest priority, logical, active low, level, masked; destination 0xA5.
        _ = ioapic.indirectWrite(0x10 + 2 * 5 + 1, 0xA500_0000)
        _ = ioapic.indirectWrite(0x10 + 2 * 5, 0x0001_A931)
        let entry = ioapic.entry(5)
        #expect(entry.vector == 0x31)
        #expect(entry.deliveryMode == .lowestPriority)
        #expect(entry.logicalDestination)
        #expect(entry.activeLow)
        #expect(entry.triggerMode == .level)
        #expect(entry.masked)
        #expect(entry.destination == 0xA5)
        #expect(ioapic.indirectRead(0x10 + 2 * 5) == 0x0001_A931)
        #expect(ioapic.indirectRead(0x10 + 2 * 5 + 1) == 0xA500_0000)
    }

    @Test func readOnlyAndReservedBitsIgnoreWrites() {
        var ioapic = IOAPIC()
        _ = ioapic.indirectWrite(0x10, 0xFFFF_FFFF)
        // Delivery status (12), remote IRR (14) and 31:17 stay zero.
        #expect(ioapic.indirectRead(0x10) == 0x0001_AFFF)
        #expect(!ioapic.entry(0).deliveryStatus && !ioapic.entry(0).remoteIRR)
        _ = ioapic.indirectWrite(0x11, 0xFFFF_FFFF)
        // Bits 55:32 are reserved: only the destination byte sticks.
        #expect(ioapic.indirectRead(0x11) == 0xFF00_0000)
    }

    @Test func writingTheLowDwordKeepsRemoteIRR() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 3, vector: 0x40, level: true)
        #expect(ioapic.assert(pin: 3, level: true).count == 1)
        #expect(ioapic.entry(3).remoteIRR)
        // Rewriting the entry (still level) neither clears nor sets remote IRR by hand.
        _ = ioapic.indirectWrite(0x10 + 6, 0x0000_8040)
        #expect(ioapic.entry(3).remoteIRR)
        _ = ioapic.indirectWrite(0x10 + 6, 0x0000_8040 & ~(1 << 14))
        #expect(ioapic.indirectRead(0x10 + 6) & (1 << 14) != 0)
    }

    // MARK: Masking and routing

    @Test func resetEntriesAreMaskedAndSendNothing() {
        var ioapic = IOAPIC()
        for pin in 0..<IOAPIC.pinCount {
            #expect(ioapic.pulse(pin: pin).isEmpty)
            #expect(ioapic.assert(pin: pin, level: true).isEmpty)
        }
    }

    @Test func unmaskedEdgeEntryRoutesItsFields() throws {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 4, vector: 0x24, destination: 0x03, mode: 1, logical: true)
        let sent = ioapic.pulse(pin: 4)
        #expect(sent.count == 1)
        let interrupt = try #require(sent.first)
        #expect(interrupt == IOAPICInterrupt(pin: 4, vector: 0x24, deliveryMode: .lowestPriority,
                                             logicalDestination: true, destination: 0x03, triggerMode: .edge))
    }

    @Test func maskedEdgeIsDroppedNotHeld() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 1, vector: 0x21, masked: true)
        #expect(ioapic.pulse(pin: 1).isEmpty)
        #expect(ioapic.program(pin: 1, vector: 0x21).isEmpty, "unmasking does not replay an edge")
        #expect(ioapic.pulse(pin: 1).first?.vector == 0x21)
    }

    @Test func edgeSendsOnRisingEdgeOnly() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 2, vector: 0x30)
        #expect(ioapic.assert(pin: 2, level: true).count == 1)
        #expect(ioapic.assert(pin: 2, level: true).isEmpty, "still high: no new edge")
        #expect(ioapic.assert(pin: 2, level: false).isEmpty)
        #expect(ioapic.assert(pin: 2, level: true).count == 1)
        #expect(!ioapic.entry(2).remoteIRR, "edge entries never set remote IRR")
    }

    @Test func edgeEntriesDeliverEveryPulseWithoutEOI() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 0, vector: 0x20)
        for _ in 0..<3 { #expect(ioapic.pulse(pin: 0).count == 1) }
    }

    @Test(arguments: [-1, 24, 1000])
    func pinsOutsideTheTableAreIgnored(pin: Int) {
        var ioapic = IOAPIC()
        #expect(ioapic.assert(pin: pin, level: true).isEmpty)
        #expect(ioapic.pulse(pin: pin).isEmpty)
        #expect(ioapic.lines == 0)
        #expect(ioapic.entry(pin) == .reset)
    }

    // MARK: Level triggering, remote IRR and EOI

    @Test func levelSetsRemoteIRRAndWaitsForEOI() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 9, vector: 0x29, level: true, activeLow: true)
        let first = ioapic.assert(pin: 9, level: true)
        #expect(first.first?.triggerMode == .level)
        #expect(ioapic.entry(9).remoteIRR)
        #expect(ioapic.indirectRead(0x10 + 18) & (1 << 14) != 0, "remote IRR visible through IOWIN")
        // Re-asserting while remote IRR is set does not send again.
        #expect(ioapic.assert(pin: 9, level: true).isEmpty)
        #expect(ioapic.pulse(pin: 11).isEmpty)
        // An EOI for another vector changes nothing.
        #expect(ioapic.eoi(vector: 0x30).isEmpty)
        #expect(ioapic.entry(9).remoteIRR)
    }

    @Test func eoiWhileStillAssertedRedelivers() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 9, vector: 0x29, level: true)
        _ = ioapic.assert(pin: 9, level: true)
        let again = ioapic.eoi(vector: 0x29)
        #expect(again.count == 1 && again.first?.pin == 9)
        #expect(ioapic.entry(9).remoteIRR, "the re-delivery is awaiting its own EOI")
    }

    @Test func eoiAfterDeassertClearsRemoteIRRAndSendsNothing() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 9, vector: 0x29, level: true)
        _ = ioapic.assert(pin: 9, level: true)
        #expect(ioapic.assert(pin: 9, level: false).isEmpty)
        #expect(ioapic.entry(9).remoteIRR, "deasserting does not clear remote IRR")
        #expect(ioapic.eoi(vector: 0x29).isEmpty)
        #expect(!ioapic.entry(9).remoteIRR)
        #expect(ioapic.assert(pin: 9, level: true).count == 1)
    }

    @Test func eoiRegisterActsLikeTheBroadcast() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 10, vector: 0x3A, level: true)
        _ = ioapic.assert(pin: 10, level: true)
        let again = ioapic.write(offset: IOAPIC.eoiOffset, value: 0xFFFF_FF3A)  // bits 7:0 only
        #expect(again.first?.vector == 0x3A)
        #expect(ioapic.read(offset: IOAPIC.eoiOffset) == 0, "the EOI register is write-only")
    }

    @Test func eoiServesEveryPinSharingTheVector() {
        var ioapic = IOAPIC()
        for pin in [5, 7, 20] {
            _ = ioapic.program(pin: pin, vector: 0x50, level: true)
            _ = ioapic.assert(pin: pin, level: true)
        }
        let again = ioapic.eoi(vector: 0x50)
        #expect(again.count == 3)
        #expect((0..<again.count).map { again[$0].pin } == [5, 7, 20])
    }

    @Test func maskedAssertedLevelDeliversOnUnmask() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 12, vector: 0x2C, level: true, masked: true)
        #expect(ioapic.assert(pin: 12, level: true).isEmpty)
        #expect(!ioapic.entry(12).remoteIRR, "a masked level pin has no side effects")
        let sent = ioapic.program(pin: 12, vector: 0x2C, level: true)
        #expect(sent.count == 1 && sent.first?.vector == 0x2C)
        #expect(ioapic.entry(12).remoteIRR)
    }

    @Test func maskedAfterDeliveryStillNeedsEOI() {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 12, vector: 0x2C, level: true)
        _ = ioapic.assert(pin: 12, level: true)
        _ = ioapic.program(pin: 12, vector: 0x2C, level: true, masked: true)
        #expect(ioapic.eoi(vector: 0x2C).isEmpty, "masked: no re-delivery")
        #expect(!ioapic.entry(12).remoteIRR)
        #expect(ioapic.program(pin: 12, vector: 0x2C, level: true).count == 1)
    }

    @Test func switchingToEdgeClearsRemoteIRR() {
        // Linux's EOI for I/O APICs without the EOI register: mask, set edge, restore.
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 6, vector: 0x26, level: true)
        _ = ioapic.assert(pin: 6, level: true)
        _ = ioapic.program(pin: 6, vector: 0x26, level: false, masked: true)
        #expect(!ioapic.entry(6).remoteIRR)
        let sent = ioapic.program(pin: 6, vector: 0x26, level: true)
        #expect(sent.count == 1, "still asserted: restoring level re-delivers")
    }

    @Test(arguments: [(UInt32(2), IOAPICDeliveryMode.smi), (4, .nmi), (5, .initSignal), (7, .extINT)])
    func nonFixedModesAreEdgeEvenIfProgrammedLevel(mode: UInt32, expected: IOAPICDeliveryMode) {
        var ioapic = IOAPIC()
        _ = ioapic.program(pin: 8, vector: 0x00, level: true, mode: mode)
        let sent = ioapic.assert(pin: 8, level: true)
        #expect(sent.first?.deliveryMode == expected)
        #expect(sent.first?.triggerMode == .edge)
        #expect(!ioapic.entry(8).remoteIRR)
        #expect(ioapic.assert(pin: 8, level: false).isEmpty)
        #expect(ioapic.assert(pin: 8, level: true).count == 1)
    }

    @Test func deliveriesHoldAllTwentyFourPins() {
        var ioapic = IOAPIC()
        for pin in 0..<IOAPIC.pinCount {
            _ = ioapic.program(pin: pin, vector: 0x80, level: true)
            _ = ioapic.assert(pin: pin, level: true)
        }
        let again = ioapic.eoi(vector: 0x80)
        #expect(again.count == IOAPIC.pinCount)
        #expect(again[23].pin == 23)
    }
}
