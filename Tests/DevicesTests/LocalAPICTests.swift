import Testing
import Devices

// Register offsets of the APIC page (SDM "Local APIC Register Address Map").
enum APICPage {
    static let id: UInt32 = 0x20, version: UInt32 = 0x30, tpr: UInt32 = 0x80, apr: UInt32 = 0x90
    static let ppr: UInt32 = 0xA0, eoi: UInt32 = 0xB0, ldr: UInt32 = 0xD0, dfr: UInt32 = 0xE0
    static let svr: UInt32 = 0xF0, isr: UInt32 = 0x100, tmr: UInt32 = 0x180, irr: UInt32 = 0x200
    static let esr: UInt32 = 0x280, cmci: UInt32 = 0x2F0, icrLow: UInt32 = 0x300, icrHigh: UInt32 = 0x310
    static let timer: UInt32 = 0x320, thermal: UInt32 = 0x330, perf: UInt32 = 0x340
    static let lint0: UInt32 = 0x350, lint1: UInt32 = 0x360, error: UInt32 = 0x370
    static let initialCount: UInt32 = 0x380, currentCount: UInt32 = 0x390, divide: UInt32 = 0x3E0
    static let lvts: [UInt32] = [timer, thermal, perf, lint0, lint1, error]
}

let apicBaseEN: UInt64 = 1 << 11
let apicBaseEXTD: UInt64 = 1 << 10

/// An xAPIC with the software enable set (SVR 1FFH).
func lapicEnabledXAPIC(id: UInt32 = 2, tscPerBusTick: UInt64 = 1) -> LocalAPIC {
    var apic = LocalAPIC(id: id, tscPerBusTick: tscPerBusTick)
    apic.writeRegister(offset: APICPage.svr, value: 0x1FF)
    return apic
}

/// An x2APIC with the software enable set.
func lapicEnabledX2APIC(id: UInt32 = 0x123) -> LocalAPIC {
    var apic = lapicEnabledXAPIC(id: id)
    let switched = apic.setBase(0xFEE0_0000 | apicBaseEN | apicBaseEXTD)
    precondition(switched)
    return apic
}

/// The ESR as software reads it: write, then read (SDM "Error Status Register").
func lapicLatchedErrors(_ apic: inout LocalAPIC) -> UInt32 {
    apic.writeRegister(offset: APICPage.esr, value: 0)
    return apic.readRegister(offset: APICPage.esr)
}

/// The IRR bit of `vector` through the APIC page.
func lapicIRRBit(_ apic: inout LocalAPIC, _ vector: UInt8) -> Bool {
    apic.readRegister(offset: APICPage.irr + UInt32(vector >> 5) * 0x10) & (1 << UInt32(vector & 31)) != 0
}

func lapicISRBit(_ apic: inout LocalAPIC, _ vector: UInt8) -> Bool {
    apic.readRegister(offset: APICPage.isr + UInt32(vector >> 5) * 0x10) & (1 << UInt32(vector & 31)) != 0
}

@Suite struct LocalAPICRegisterTests {
    @Test func resetValues() {
        var apic = LocalAPIC(id: 3)
        #expect(apic.mode == .xAPIC)
        #expect(apic.apicBase == 0xFEE0_0900)  // base, EN, BSP
        #expect(apic.mmioBase == 0xFEE0_0000)
        do { let v = apic.readRegister(offset: APICPage.id); #expect(v == 0x0300_0000) }
        do { let v = apic.readRegister(offset: APICPage.version); #expect(v == 0x0005_0014) }
        do { let v = apic.readRegister(offset: APICPage.svr); #expect(v == 0xFF) }
        #expect(!apic.isSoftwareEnabled)
        do { let v = apic.readRegister(offset: APICPage.tpr); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.ppr); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.ldr); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.dfr); #expect(v == 0xFFFF_FFFF) }
        for lvt in APICPage.lvts { #expect(apic.readRegister(offset: lvt) == 0x0001_0000) }
        do { let v = apic.readRegister(offset: APICPage.initialCount); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.currentCount); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.divide); #expect(v == 0) }
        #expect(lapicLatchedErrors(&apic) == 0)
    }

    @Test func anApplicationProcessorHasNoBSPFlag() {
        #expect(LocalAPIC(id: 1, isBootstrapProcessor: false).apicBase == 0xFEE0_0800)
    }

    @Test func cmciSetsTheMaxLVTEntryAndExistsOnlyThen() {
        var with = LocalAPIC(id: 0, hasCMCI: true)
        do { let v = with.readRegister(offset: APICPage.version); #expect(v == 0x0006_0014) }
        do { let v = with.readRegister(offset: APICPage.cmci); #expect(v == 0x0001_0000) }
        #expect(lapicLatchedErrors(&with) == 0)
        var without = LocalAPIC(id: 0)
        do { let v = without.readRegister(offset: APICPage.cmci); #expect(v == 0) }
        #expect(lapicLatchedErrors(&without) == 0x80)  // illegal register address
    }

    @Test func readOnlyRegistersIgnoreWrites() {
        var apic = lapicEnabledXAPIC()
        apic.accept(vector: 0x40)
        _ = apic.acknowledge()
        apic.accept(vector: 0x41)
        for offset in [APICPage.version, APICPage.ppr, APICPage.isr + 0x20, APICPage.irr + 0x20, APICPage.tmr + 0x20, APICPage.currentCount] {
            let before = apic.readRegister(offset: offset)
            apic.writeRegister(offset: offset, value: 0xFFFF_FFFF)
            do { let v = apic.readRegister(offset: offset); #expect(v == before) }
        }
        #expect(lapicISRBit(&apic, 0x40) && lapicIRRBit(&apic, 0x41))
        #expect(lapicLatchedErrors(&apic) == 0)
    }

    @Test func writeOnlyEOIReadsZero() {
        var apic = lapicEnabledXAPIC()
        apic.accept(vector: 0x40)
        _ = apic.acknowledge()
        do { let v = apic.readRegister(offset: APICPage.eoi); #expect(v == 0) }
        #expect(lapicISRBit(&apic, 0x40))
    }

    @Test func writableBitsOfTheXAPICRegisters() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.id, value: 0x0712_3456)
        do { let v = apic.readRegister(offset: APICPage.id); #expect(v == 0x0700_0000) }
        apic.writeRegister(offset: APICPage.tpr, value: 0x1234)
        do { let v = apic.readRegister(offset: APICPage.tpr); #expect(v == 0x34) }
        apic.writeRegister(offset: APICPage.ldr, value: 0x5A12_3456)
        do { let v = apic.readRegister(offset: APICPage.ldr); #expect(v == 0x5A00_0000) }
        apic.writeRegister(offset: APICPage.dfr, value: 0)
        do { let v = apic.readRegister(offset: APICPage.dfr); #expect(v == 0x0FFF_FFFF) }
        apic.writeRegister(offset: APICPage.svr, value: 0xFFFF_FFFF)
        do { let v = apic.readRegister(offset: APICPage.svr); #expect(v == 0x3FF) }  // no EOI-broadcast suppression
        apic.writeRegister(offset: APICPage.lint0, value: 0xFFFF_FFFF)
        do { let v = apic.readRegister(offset: APICPage.lint0); #expect(v == 0x0001_A7FF) }  // no delivery status, no remote IRR
        apic.writeRegister(offset: APICPage.error, value: 0xFFFF_FFFF)
        do { let v = apic.readRegister(offset: APICPage.error); #expect(v == 0x0001_00FF) }
        apic.writeRegister(offset: APICPage.timer, value: 0xFFFF_FFFF)
        do { let v = apic.readRegister(offset: APICPage.timer); #expect(v == 0x0007_00FF) }
        apic.writeRegister(offset: APICPage.divide, value: 0xFFFF_FFFF)
        do { let v = apic.readRegister(offset: APICPage.divide); #expect(v == 0xB) }
        apic.writeRegister(offset: APICPage.icrHigh, value: 0xFFFF_FFFF)
        do { let v = apic.readRegister(offset: APICPage.icrHigh); #expect(v == 0xFF00_0000) }
    }

    @Test func reservedRegistersSetIllegalRegisterAddress() {
        var apic = lapicEnabledXAPIC()
        do { let v = apic.readRegister(offset: 0x40); #expect(v == 0) }
        #expect(lapicLatchedErrors(&apic) == 0x80)
        #expect(lapicLatchedErrors(&apic) == 0)
        apic.writeRegister(offset: 0x3A0, value: 1)
        #expect(lapicLatchedErrors(&apic) == 0x80)
        // Off a register's 16-byte boundary: not a register, no error.
        do { let v = apic.readRegister(offset: APICPage.id + 4); #expect(v == 0) }
        #expect(lapicLatchedErrors(&apic) == 0)
        // APR and the remote read register read 0 in xAPIC mode.
        do { let v = apic.readRegister(offset: APICPage.apr); #expect(v == 0) }
        #expect(lapicLatchedErrors(&apic) == 0)
    }

    @Test func errorStatusLatchesOnWriteAndSignalsThroughTheErrorLVT() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.error, value: 0xEE)
        do { let v = apic.accept(vector: 3); #expect(!v) }
        do { let v = apic.readRegister(offset: APICPage.esr); #expect(v == 0) }  // not latched yet
        #expect(apic.pendingInterrupt == 0xEE)
        #expect(lapicLatchedErrors(&apic) == 0x40)
        do { let v = apic.readRegister(offset: APICPage.esr); #expect(v == 0x40) }
        #expect(lapicLatchedErrors(&apic) == 0)
    }

    @Test func aRepeatedErrorSignalsOnceUntilLatched() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.error, value: 0xEE)
        apic.accept(vector: 3)
        do { let v = apic.acknowledge(); #expect(v == 0xEE) }
        _ = apic.endOfInterrupt()
        apic.accept(vector: 4)
        #expect(apic.pendingInterrupt == nil)
        apic.writeRegister(offset: APICPage.esr, value: 0)
        apic.accept(vector: 5)
        #expect(apic.pendingInterrupt == 0xEE)
    }
}

@Suite struct LocalAPICPriorityTests {
    @Test func illegalVectorsAreNeverRequested() {
        var apic = lapicEnabledXAPIC()
        for vector in UInt8(0)..<16 { let accepted = apic.accept(vector: vector); #expect(!accepted) }
        #expect(apic.interruptRequest.isEmpty)
        #expect(lapicLatchedErrors(&apic) == 0x40)
        do { let v = apic.accept(vector: 16); #expect(v) }
        #expect(apic.pendingInterrupt == 16)
    }

    @Test func taskPriorityMasksClassesUpToItsOwn() {
        var apic = lapicEnabledXAPIC()
        apic.accept(vector: 0x45)
        apic.writeRegister(offset: APICPage.tpr, value: 0x50)
        #expect(apic.pendingInterrupt == nil)
        apic.writeRegister(offset: APICPage.tpr, value: 0x40)
        #expect(apic.pendingInterrupt == nil)  // the same class is masked too
        apic.writeRegister(offset: APICPage.tpr, value: 0x3F)
        #expect(apic.pendingInterrupt == 0x45)
        do { let v = apic.readRegister(offset: APICPage.ppr); #expect(v == 0x3F) }
    }

    @Test func processorPriorityIsTheHigherOfTPRAndTheInServiceClass() {
        var apic = lapicEnabledXAPIC()
        apic.accept(vector: 0x45)
        do { let v = apic.acknowledge(); #expect(v == 0x45) }
        apic.writeRegister(offset: APICPage.tpr, value: 0x23)
        do { let v = apic.readRegister(offset: APICPage.ppr); #expect(v == 0x40) }
        apic.writeRegister(offset: APICPage.tpr, value: 0x47)
        do { let v = apic.readRegister(offset: APICPage.ppr); #expect(v == 0x47) }  // same class: TPR with its subclass
        apic.writeRegister(offset: APICPage.tpr, value: 0x52)
        do { let v = apic.readRegister(offset: APICPage.ppr); #expect(v == 0x52) }
        _ = apic.endOfInterrupt()
        apic.writeRegister(offset: APICPage.tpr, value: 0)
        do { let v = apic.readRegister(offset: APICPage.ppr); #expect(v == 0) }
    }

    @Test func acknowledgeEOINesting() {
        var apic = lapicEnabledXAPIC()
        apic.accept(vector: 0x30)
        do { let v = apic.acknowledge(); #expect(v == 0x30) }
        #expect(lapicISRBit(&apic, 0x30) && !lapicIRRBit(&apic, 0x30))
        apic.accept(vector: 0x31)  // the same class as the one in service: waits
        #expect(apic.pendingInterrupt == nil)
        apic.accept(vector: 0x80)  // a higher class nests
        do { let v = apic.acknowledge(); #expect(v == 0x80) }
        #expect(lapicISRBit(&apic, 0x80) && lapicISRBit(&apic, 0x30))
        do { let v = apic.readRegister(offset: APICPage.isr + 0x40); #expect(v == 1) }
        do { let v = apic.readRegister(offset: APICPage.ppr); #expect(v == 0x80) }
        do { let v = apic.writeRegister(offset: APICPage.eoi, value: 0); #expect(v == .nothing) }
        #expect(!lapicISRBit(&apic, 0x80) && lapicISRBit(&apic, 0x30))
        #expect(apic.pendingInterrupt == nil)
        apic.writeRegister(offset: APICPage.eoi, value: 0)
        #expect(apic.inService.isEmpty)
        do { let v = apic.acknowledge(); #expect(v == 0x31) }
        do { let v = apic.acknowledge(); #expect(v == nil) }
    }

    @Test func highestRequestWinsAcrossRegisters() {
        var apic = lapicEnabledXAPIC()
        for vector: UInt8 in [0x21, 0xFE, 0x7F, 0x80] { apic.accept(vector: vector) }
        do { let v = apic.readRegister(offset: APICPage.irr + 0x70); #expect(v == 0x4000_0000) }
        do { let v = apic.readRegister(offset: APICPage.irr + 0x30); #expect(v == 0x8000_0000) }
        do { let v = apic.readRegister(offset: APICPage.irr + 0x40); #expect(v == 1) }
        var order: [UInt8] = []
        while let vector = apic.acknowledge() {
            order.append(vector)
            _ = apic.endOfInterrupt()
        }
        #expect(order == [0xFE, 0x80, 0x7F, 0x21])
    }

    @Test func levelTriggeredEOIIsReportedForTheIOAPIC() {
        var apic = lapicEnabledXAPIC()
        apic.accept(vector: 0x60, level: true)
        do { let v = apic.readRegister(offset: APICPage.tmr + 0x30); #expect(v == 1) }
        do { let v = apic.acknowledge(); #expect(v == 0x60) }
        do { let v = apic.writeRegister(offset: APICPage.eoi, value: 0); #expect(v == .levelEndOfInterrupt(vector: 0x60)) }
        apic.accept(vector: 0x60)  // edge now: TMR cleared on acceptance
        do { let v = apic.readRegister(offset: APICPage.tmr + 0x30); #expect(v == 0) }
        _ = apic.acknowledge()
        do { let v = apic.writeRegister(offset: APICPage.eoi, value: 0); #expect(v == .nothing) }
        do { let v = apic.endOfInterrupt(); #expect(v == nil) }  // nothing in service
    }

    @Test func softwareDisabledRefusesFixedInterruptsAndMasksLVTs() {
        var apic = LocalAPIC(id: 0)
        do { let v = apic.accept(vector: 0x40); #expect(!v) }
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        do { let v = apic.readRegister(offset: APICPage.timer); #expect(v == 0x0001_0030) }
        apic.writeRegister(offset: APICPage.svr, value: 0x1FF)
        for lvt in APICPage.lvts { apic.writeRegister(offset: lvt, value: 0x31) }
        apic.accept(vector: 0x40)
        apic.writeRegister(offset: APICPage.svr, value: 0x0FF)
        for lvt in APICPage.lvts { #expect(apic.readRegister(offset: lvt) == 0x0001_0031) }
        // What was requested stays and can still be delivered; NMIs still arrive.
        #expect(apic.pendingInterrupt == 0x40)
        do { let v = apic.accept(vector: 0x41); #expect(!v) }
        do { let v = apic.writeRegister(offset: APICPage.icrLow, value: 0x0004_0400); #expect(v == .nmi) }
    }
}

@Suite struct LocalAPICInterruptCommandTests {
    @Test func selfShorthandFixed() {
        var apic = lapicEnabledXAPIC()
        do { let v = apic.writeRegister(offset: APICPage.icrLow, value: 0x0004_0055); #expect(v == .nothing) }
        #expect(lapicIRRBit(&apic, 0x55))
        do { let v = apic.readRegister(offset: APICPage.icrLow); #expect(v & 0x1000 == 0) }  // delivery status idle
        do { let v = apic.readRegister(offset: APICPage.icrLow); #expect(v == 0x0004_0055) }
        apic.writeRegister(offset: APICPage.icrLow, value: 0x0008_0056)  // all including self
        #expect(lapicIRRBit(&apic, 0x56))
        apic.writeRegister(offset: APICPage.icrLow, value: 0x000C_0057)  // all excluding self
        #expect(!lapicIRRBit(&apic, 0x57))
    }

    @Test func physicalDestination() {
        var apic = lapicEnabledXAPIC(id: 2)
        apic.writeRegister(offset: APICPage.icrHigh, value: 0x0200_0000)
        apic.writeRegister(offset: APICPage.icrLow, value: 0x66)
        #expect(lapicIRRBit(&apic, 0x66))
        apic.writeRegister(offset: APICPage.icrHigh, value: 0x0300_0000)
        apic.writeRegister(offset: APICPage.icrLow, value: 0x67)
        #expect(!lapicIRRBit(&apic, 0x67))
        apic.writeRegister(offset: APICPage.icrHigh, value: 0xFF00_0000)  // broadcast
        apic.writeRegister(offset: APICPage.icrLow, value: 0x68)
        #expect(lapicIRRBit(&apic, 0x68))
    }

    @Test func logicalDestinationFlatAndCluster() {
        var apic = lapicEnabledXAPIC(id: 2)
        apic.writeRegister(offset: APICPage.ldr, value: 0x0400_0000)
        apic.writeRegister(offset: APICPage.icrHigh, value: 0x0600_0000)
        apic.writeRegister(offset: APICPage.icrLow, value: 0x0870)
        #expect(lapicIRRBit(&apic, 0x70))
        apic.writeRegister(offset: APICPage.icrHigh, value: 0x0800_0000)
        apic.writeRegister(offset: APICPage.icrLow, value: 0x0871)
        #expect(!lapicIRRBit(&apic, 0x71))

        apic.writeRegister(offset: APICPage.dfr, value: 0x0FFF_FFFF)  // cluster model
        apic.writeRegister(offset: APICPage.ldr, value: 0x2100_0000)  // cluster 2, member bit 0
        for (destination, delivered) in [(UInt32(0x23), true), (0x31, false), (0x22, false), (0xFF, true)] {
            apic.writeRegister(offset: APICPage.icrHigh, value: destination << 24)
            apic.writeRegister(offset: APICPage.icrLow, value: 0x0872)
            #expect(lapicIRRBit(&apic, 0x72) == delivered, "destination \(destination)")
            if delivered {
                do { let v = apic.acknowledge(); #expect(v == 0x72) }
                _ = apic.endOfInterrupt()
            }
        }
    }

    @Test func nmiToItself() {
        var apic = lapicEnabledXAPIC(id: 2)
        do { let v = apic.writeRegister(offset: APICPage.icrLow, value: 0x0004_0400); #expect(v == .nmi) }
        apic.writeRegister(offset: APICPage.icrHigh, value: 0x0200_0000)
        do { let v = apic.writeRegister(offset: APICPage.icrLow, value: 0x0400); #expect(v == .nmi) }
        apic.writeRegister(offset: APICPage.icrHigh, value: 0x0500_0000)
        do { let v = apic.writeRegister(offset: APICPage.icrLow, value: 0x0400); #expect(v == .nothing) }
        do { let v = apic.writeRegister(offset: APICPage.icrLow, value: 0x000C_0400); #expect(v == .nothing) }
        #expect(apic.interruptRequest.isEmpty)
    }

    @Test(arguments: [UInt32(0x000C_4500), 0x000C_0608, 0x0000_4500, 0x0000_0608, 0x000C_0200])
    func initSIPIAndSMIToOthersAreIgnored(command: UInt32) {
        var apic = lapicEnabledXAPIC(id: 0)
        apic.writeRegister(offset: APICPage.icrHigh, value: 0x0100_0000)
        do { let v = apic.writeRegister(offset: APICPage.icrLow, value: command); #expect(v == .nothing) }
        #expect(apic.interruptRequest.isEmpty)
        do { let v = apic.readRegister(offset: APICPage.icrLow); #expect(v & 0x1000 == 0) }
        #expect(lapicLatchedErrors(&apic) == 0)
    }

    @Test func illegalVectorsInTheICR() {
        var apic = lapicEnabledXAPIC(id: 2)
        apic.writeRegister(offset: APICPage.icrLow, value: 0x0004_0005)
        #expect(apic.interruptRequest.isEmpty)
        #expect(lapicLatchedErrors(&apic) == 0x60)  // sent and received
        apic.writeRegister(offset: APICPage.icrLow, value: 0x000C_0005)
        #expect(lapicLatchedErrors(&apic) == 0x20)  // sent only
    }
}

@Suite struct LocalAPICx2APICTests {
    @Test func idAndLogicalDestinationComeFromTheX2APICID() {
        let apic = lapicEnabledX2APIC(id: 0x123)
        #expect(apic.mode == .x2APIC)
        #expect(apic.readMSR(0x802) == 0x123)
        #expect(apic.readMSR(0x80D) == 0x0012_0008)
        #expect(apic.readMSR(0x803) == 0x0005_0014)
        #expect(apic.readMSR(0x80F) == 0x1FF)  // kept across the switch
        #expect(apic.readMSR(0x80E) == nil)  // no DFR
    }

    @Test func xAPICHasDFRAndAWritableLDR() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.ldr, value: 0x0100_0000)
        do { let v = apic.readRegister(offset: APICPage.ldr); #expect(v == 0x0100_0000) }
        #expect(apic.readMSR(0x80D) == nil)  // not in x2APIC mode
        do { let v = apic.writeMSR(0x808, 0); #expect(v == nil) }
    }

    @Test func thePageIsGoneInX2APICMode() {
        var apic = lapicEnabledX2APIC()
        do { let v = apic.readRegister(offset: APICPage.svr); #expect(v == 0) }
        apic.writeRegister(offset: APICPage.tpr, value: 0x20)
        #expect(apic.readMSR(0x808) == 0)
    }

    @Test(arguments: [UInt32(0x800), 0x801, 0x804, 0x809, 0x80C, 0x80E, 0x82F, 0x831, 0x83A, 0x840, 0x8FF])
    func reservedMSRsFault(msr: UInt32) {
        var apic = lapicEnabledX2APIC()
        #expect(apic.readMSR(msr) == nil)
        do { let v = apic.writeMSR(msr, 0); #expect(v == nil) }
    }

    @Test(arguments: [UInt32(0x802), 0x803, 0x80A, 0x80D, 0x810, 0x817, 0x818, 0x820, 0x827, 0x839])
    func readOnlyMSRsFaultOnWrite(msr: UInt32) {
        var apic = lapicEnabledX2APIC()
        let before = apic.readMSR(msr)
        #expect(before != nil)
        do { let v = apic.writeMSR(msr, 0); #expect(v == nil) }
        #expect(apic.readMSR(msr) == before)
    }

    @Test func writeOnlyMSRsFaultOnRead() {
        let apic = lapicEnabledX2APIC()
        #expect(apic.readMSR(0x80B) == nil)  // EOI
        #expect(apic.readMSR(0x83F) == nil)  // SELF IPI
    }

    @Test func reservedBitsFault() {
        var apic = lapicEnabledX2APIC()
        do { let v = apic.writeMSR(0x808, 0x100); #expect(v == nil) }  // TPR
        do { let v = apic.writeMSR(0x808, 1 << 32); #expect(v == nil) }
        do { let v = apic.writeMSR(0x80B, 1); #expect(v == nil) }  // EOI takes only 0
        do { let v = apic.writeMSR(0x828, 1); #expect(v == nil) }  // ESR too
        do { let v = apic.writeMSR(0x80F, 0x11FF); #expect(v == nil) }  // SVR bit 12
        do { let v = apic.writeMSR(0x832, 0x0008_0030); #expect(v == nil) }  // timer LVT bit 19
        do { let v = apic.writeMSR(0x835, 0x0002_0000); #expect(v == nil) }  // LINT0 bit 17
        do { let v = apic.writeMSR(0x83E, 0x4); #expect(v == nil) }  // divide bit 2
        do { let v = apic.writeMSR(0x83F, 0x130); #expect(v == nil) }  // SELF IPI bits 31:8
        do { let v = apic.writeMSR(0x830, 0x1030); #expect(v == nil) }  // ICR delivery status
        #expect(apic.interruptRequest.isEmpty)
        // Read-only bits of an LVT entry are not reserved.
        do { let v = apic.writeMSR(0x835, 0x0001_5700); #expect(v == .nothing) }
        #expect(apic.readMSR(0x835) == 0x0001_0700)
        do { let v = apic.writeMSR(0x808, 0x20); #expect(v == .nothing) }
        #expect(apic.readMSR(0x808) == 0x20)
    }

    @Test func selfIPIRegister() {
        var apic = lapicEnabledX2APIC()
        do { let v = apic.writeMSR(0x83F, 0x40); #expect(v == .nothing) }
        #expect(apic.pendingInterrupt == 0x40)
        do { let v = apic.writeMSR(0x83F, 0x07); #expect(v == .nothing) }
        do { let v = apic.writeMSR(0x828, 0); #expect(v == .nothing) }
        #expect(apic.readMSR(0x828) == 0x60)
    }

    @Test func theICRIsOne64BitMSR() {
        var apic = lapicEnabledX2APIC(id: 0x123)
        do { let v = apic.writeMSR(0x830, 0x123 << 32 | 0x77); #expect(v == .nothing) }
        #expect(apic.readMSR(0x830) == 0x123 << 32 | 0x77)
        #expect(apic.pendingInterrupt == 0x77)
        _ = apic.writeMSR(0x830, 0x23 << 32 | 0x78)  // an absent CPU
        #expect(!apic.interruptRequest.contains(0x78))
        _ = apic.writeMSR(0x830, 0xFFFF_FFFF << 32 | 0x79)  // broadcast
        #expect(apic.interruptRequest.contains(0x79))
        _ = apic.writeMSR(0x830, 0x0012_0008 << 32 | 0x87A)  // logical: cluster 12H, member 3
        #expect(apic.interruptRequest.contains(0x7A))
        _ = apic.writeMSR(0x830, 0x0013_0008 << 32 | 0x87B)
        #expect(!apic.interruptRequest.contains(0x7B))
        do { let v = apic.writeMSR(0x830, 0x123 << 32 | 0x400); #expect(v == .nmi) }
        do { let v = apic.writeMSR(0x830, 0x0004_4500); #expect(v == .nothing) }  // INIT to self: not modelled
    }

    @Test func eoiThroughTheMSR() {
        var apic = lapicEnabledX2APIC()
        apic.accept(vector: 0x90, level: true)
        _ = apic.acknowledge()
        do { let v = apic.writeMSR(0x80B, 0); #expect(v == .levelEndOfInterrupt(vector: 0x90)) }
        #expect(apic.inService.isEmpty)
    }
}

@Suite struct LocalAPICBaseTests {
    @Test func transitions() {
        var apic = lapicEnabledXAPIC()
        apic.writeRegister(offset: APICPage.tpr, value: 0x30)
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEXTD); #expect(!v) }  // EN=0, EXTD=1: invalid
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEN | apicBaseEXTD); #expect(v) }
        #expect(apic.readMSR(0x808) == 0x30)  // kept
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEN); #expect(!v) }  // x2APIC -> xAPIC
        #expect(apic.mode == .x2APIC)
        do { let v = apic.setBase(0xFEE0_0000); #expect(v) }  // -> disabled: reset
        #expect(apic.mode == .disabled)
        #expect(apic.readMSR(0x808) == nil)
        do { let v = apic.readRegister(offset: APICPage.svr); #expect(v == 0) }
        do { let v = apic.accept(vector: 0x40); #expect(!v) }
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEN | apicBaseEXTD); #expect(!v) }  // disabled -> x2APIC
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEN); #expect(v) }
        do { let v = apic.readRegister(offset: APICPage.tpr); #expect(v == 0) }
        do { let v = apic.readRegister(offset: APICPage.svr); #expect(v == 0xFF) }
        do { let v = apic.readRegister(offset: APICPage.id); #expect(v == 0x0200_0000) }
    }

    @Test func disablingResetsTheState() {
        var apic = lapicEnabledXAPIC()
        apic.accept(vector: 0x50)
        apic.writeRegister(offset: APICPage.timer, value: 0x30)
        do { let v = apic.setBase(0xFEE0_0000); #expect(v) }
        #expect(apic.pendingInterrupt == nil)
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEN); #expect(v) }
        #expect(apic.interruptRequest.isEmpty)
        do { let v = apic.readRegister(offset: APICPage.timer); #expect(v == 0x0001_0000) }
    }

    @Test func relocationAndReservedBits() {
        var apic = LocalAPIC(id: 0, physicalAddressBits: 36)
        do { let v = apic.setBase(0xF_FED0_0000 | apicBaseEN); #expect(v) }
        #expect(apic.mmioBase == 0xF_FED0_0000)
        #expect(apic.readMSR(0x1B) == 0xF_FED0_0000 | apicBaseEN | 1 << 8)
        do { let v = apic.setBase(0x10_FED0_0000 | apicBaseEN); #expect(!v) }  // above MAXPHYADDR
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEN | 1 << 9); #expect(!v) }
        do { let v = apic.setBase(0xFEE0_0000 | apicBaseEN | 1); #expect(!v) }
        do { let v = apic.writeMSR(0x1B, 0xFEE0_0000 | apicBaseEN | 1 << 9); #expect(v == nil) }
        do { let v = apic.writeMSR(0x1B, 0xFEE0_0000 | apicBaseEN); #expect(v == .nothing) }
        #expect(apic.apicBase == 0xFEE0_0900)  // BSP flag kept
    }

    @Test func theBSPFlagIsReadOnly() {
        var ap = LocalAPIC(id: 1, isBootstrapProcessor: false)
        do { let v = ap.setBase(0xFEE0_0000 | apicBaseEN | 1 << 8); #expect(v) }
        #expect(ap.apicBase == 0xFEE0_0800)
    }

    @Test func handledMSRs() {
        #expect(LocalAPIC.handles(msr: 0x1B) && LocalAPIC.handles(msr: 0x6E0))
        #expect(LocalAPIC.handles(msr: 0x800) && LocalAPIC.handles(msr: 0x8FF))
        #expect(!LocalAPIC.handles(msr: 0x900) && !LocalAPIC.handles(msr: 0x7FF))
        #expect(LocalAPIC(id: 0).readMSR(0x10) == nil)
    }
}

@Suite struct LocalAPICVirtualizationTests {
    /// A model with every register away from its reset value.
    static func busy() -> LocalAPIC {
        var apic = lapicEnabledXAPIC(id: 3)
        for (offset, value): (UInt32, UInt32) in [(0x80, 0x20), (0xD0, 0x0400_0000), (0xE0, 0x0FFF_FFFF), (0x320, 0x0002_0040),
                                                   (0x350, 0x700), (0x370, 0x33), (0x380, 0x1000), (0x3E0, 0x3), (0x310, 0x0300_0000)] {
            apic.writeRegister(offset: offset, value: value)
        }
        apic.accept(vector: 0x51, level: true)
        apic.accept(vector: 0x92)
        _ = apic.acknowledge()
        return apic
    }

    @Test func theRegistersForThePageAreWhatReadsReturn() {
        var apic = Self.busy()
        var seen: [Int] = []
        apic.forEachVirtualizedRegister { offset, value in
            seen.append(offset)
            #expect(LocalAPIC.isVirtualizedRead(index: offset >> 4), "offset \(offset)")
            #expect(apic.pageValue(offset: offset) == value, "offset \(offset)")
        }
        // Every slot the page serves, once; the current count (390H) is not one.
        let served = (0..<0x40).filter { LocalAPIC.isVirtualizedRead(index: $0) }.map { $0 << 4 }
        #expect(seen.sorted() == served && Set(seen).count == seen.count)
        #expect(!LocalAPIC.isVirtualizedRead(index: 0x39))
        for offset in served {
            #expect(apic.readRegister(offset: UInt32(offset)) == apic.pageValue(offset: offset), "offset \(offset)")
        }
    }

    @Test func theCPUsStateComesBackIntoTheModel() {
        var apic = Self.busy()
        #expect(apic.inService.highest == 0x92)
        // The CPU delivered 0x51 (VIRR -> VISR), then the guest raised VTPR to 0x60.
        var irr = APICVectorBitmap(), isr = APICVectorBitmap()
        isr.insert(0x92); isr.insert(0x51)
        irr.insert(0x71)
        apic.loadVirtualState(taskPriority: 0x1_0060, interruptRequest: irr, inService: isr)
        #expect(apic.readRegister(offset: 0x80) == 0x60)
        #expect(apic.processorPriority == 0x90 && apic.pendingInterrupt == nil)
        _ = apic.endOfInterrupt()
        #expect(apic.inService.highest == 0x51)
        #expect(apic.pendingInterrupt == 0x71)
        // From a page: unchanged reports false, a VIRR bit the CPU set reports true.
        let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        apic.forEachVirtualizedRegister { offset, value in page.storeBytes(of: value, toByteOffset: offset, as: UInt32.self) }
        let unchanged = apic.loadVirtualState(page: UnsafeRawPointer(page))
        page.storeBytes(of: UInt32(1) << (0xA3 & 31), toByteOffset: 0x200 + 16 * (0xA3 >> 5), as: UInt32.self)
        let changed = apic.loadVirtualState(page: UnsafeRawPointer(page))
        #expect(!unchanged && changed)
        #expect(apic.pendingInterrupt == 0xA3 && apic.interruptRequest.contains(0x71))
        let rebuilt = APICVectorBitmap { isr.register($0) }
        #expect(rebuilt == isr && rebuilt.word(1) == 1 << (0x51 - 64))
    }

    /// Only the registers whose word changed are written; the page then reads
    /// the bitmap, and what the page holds is remembered.
    @Test func aVectorSetIsStoredOnlyWhereItChanged() {
        let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0xEE, count: 4096)
        var stored = APICVectorBitmap()
        stored.insert(0x20); stored.insert(0xF1)
        var irr = stored
        irr.insert(0x31)      // word 0 (vectors 0-63): registers 0 and 1
        irr.remove(0xF1)      // word 3 (vectors 192-255): registers 6 and 7
        irr.store(into: page, at: 0x200, over: &stored)
        #expect(stored == irr)
        func register(_ i: Int) -> UInt32 { page.load(fromByteOffset: 0x200 + 16 * i, as: UInt32.self) }
        #expect(register(0) == 0 && register(1) == 1 | 1 << (0x31 - 32))   // 0x20 and 0x31
        #expect(register(6) == 0 && register(7) == 0)
        // Words 1 and 2 were equal: untouched (still the fill pattern).
        #expect((2...5).allSatisfy { register($0) == 0xEEEE_EEEE })
        // The bytes between the registers are never written.
        #expect(page.load(fromByteOffset: 0x204, as: UInt32.self) == 0xEEEE_EEEE)
        // Nothing changed: nothing written.
        page.storeBytes(of: 0xEEEE_EEEE, toByteOffset: 0x200, as: UInt32.self)
        irr.store(into: page, at: 0x200, over: &stored)
        #expect(register(0) == 0xEEEE_EEEE)
    }

    /// The page-only answer agrees with the model's for random page states.
    @Test func aPendingInterruptReadFromThePageMatchesTheModel() {
        var apic = lapicEnabledXAPIC()
        let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        var seed: UInt64 = 0x1234_5678
        func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 33 }
        for _ in 0..<500 {
            page.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
            page.storeBytes(of: UInt32(next() & 0xFF), toByteOffset: 0x80, as: UInt32.self)
            for _ in 0..<Int(next() % 3) {
                let v = Int(16 + next() % 240)
                page.storeBytes(of: page.load(fromByteOffset: 0x200 + 16 * (v >> 5), as: UInt32.self) | 1 << UInt32(v & 31),
                                toByteOffset: 0x200 + 16 * (v >> 5), as: UInt32.self)
            }
            for _ in 0..<Int(next() % 2) {
                let v = Int(16 + next() % 240)
                page.storeBytes(of: UInt32(1) << UInt32(v & 31), toByteOffset: 0x100 + 16 * (v >> 5), as: UInt32.self)
            }
            let fromPage = LocalAPIC.virtualPageHasPendingInterrupt(UnsafeRawPointer(page))
            _ = apic.loadVirtualState(page: UnsafeRawPointer(page))
            #expect(fromPage == (apic.pendingInterrupt != nil))
        }
    }
}
