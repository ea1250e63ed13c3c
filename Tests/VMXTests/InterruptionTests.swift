import Testing
import TestSupport
import X86Arch
import VMX

@Suite struct InterruptionTests {
    @Test func typeDecodesFromBits10To8() {
        let expected: [InterruptionType] = [.externalInterrupt, .reserved, .nmi, .hardwareException,
                                            .softwareInterrupt, .privilegedSoftwareException,
                                            .softwareException, .otherEvent]
        for (bits, type) in expected.enumerated() {
            #expect(InterruptionType(field: 0x8000_00FF | UInt32(bits) << 8) == type)
        }
        #expect("\(InterruptionType.nmi.name)" == "NMI")
    }

    /// Only INT n, INT1, INT3/INTO carry an instruction length into injection.
    @Test func instructionLengthOnlyForSoftwareEvents() {
        for bits in 0 ..< 8 {
            let type = InterruptionType(field: UInt32(bits) << 8)
            #expect(type.needsInstructionLength == (bits == 4 || bits == 5 || bits == 6))
        }
    }

    /// #DF #TS #NP #SS #GP #PF #AC #CP push an error code; nothing else does,
    /// and nothing does in real mode or when raised by software.
    @Test func errorCodeRule() {
        let withCode: Set<UInt8> = [8, 10, 11, 12, 13, 14, 17, 21]
        for v in UInt8(0) ... 31 {
            #expect(InterruptionType.hardwareException.deliversErrorCode(vector: v, protectedMode: true) == withCode.contains(v))
            #expect(!InterruptionType.hardwareException.deliversErrorCode(vector: v, protectedMode: false))
            #expect(!InterruptionType.softwareInterrupt.deliversErrorCode(vector: v, protectedMode: true))
            #expect(!InterruptionType.softwareException.deliversErrorCode(vector: v, protectedMode: true))
            #expect(!InterruptionType.externalInterrupt.deliversErrorCode(vector: v, protectedMode: true))
        }
    }

    /// SDM 7.15 "Exception and Interrupt Reference", Table "Interrupt and Exception Classes".
    @Test func exceptionClasses() {
        let contributory: Set<UInt8> = [0, 10, 11, 12, 13, 21]
        let pageFault: Set<UInt8> = [14, 20]
        for v in UInt8(0) ... 255 {
            let c = ExceptionClass(vector: v)
            if contributory.contains(v) { #expect(c == .contributory) }
            else if pageFault.contains(v) { #expect(c == .pageFault) }
            else if v == 8 { #expect(c == .doubleFault) }
            else { #expect(c == .benign) }
        }
        // INT 13 is a software interrupt, not a #GP: benign.
        #expect(ExceptionClass(vector: 13, type: .softwareInterrupt) == .benign)
        #expect(ExceptionClass(vector: 13, type: .hardwareException) == .contributory)
    }

    /// SDM Table "Protected-Mode Exceptions and Interrupts", vectors 0-21.
    @Test func mnemonicTable() {
        let table: [UInt8: String] = [0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD",
                                      7: "#NM", 8: "#DF", 9: "CSO", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP",
                                      14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP"]
        for v in UInt8(0) ... 31 {
            #expect(ExceptionVector(rawValue: v).map { "\($0.mnemonic)" } == table[v])
        }
        let names = (0 ..< 8).map { "\(InterruptionType(field: UInt32($0) << 8).name)" }
        #expect(Set(names).count == 8)
        #expect(names[3] == "hardware exception")
    }

    @Test func vectorsAndMnemonics() {
        #expect(ExceptionVector(rawValue: 13) == .generalProtection)
        #expect("\(ExceptionVector.generalProtection.mnemonic)" == "#GP")
        #expect("\(ExceptionVector.pageFault.mnemonic)" == "#PF")
        #expect("\(ExceptionVector.virtualization.mnemonic)" == "#VE")
        #expect("\(ExceptionVector.controlProtection.mnemonic)" == "#CP")
        #expect(ExceptionVector(rawValue: 15) == nil)  // reserved
        #expect(ExceptionVector(rawValue: 22) == nil)
    }

    /// Entry format: 7:0 vector, 10:8 type, 11 deliver error code, 31 valid.
    @Test func entryInfoEncoding() {
        let pf = VMEntryInterruptionInfo(vector: 14, type: .hardwareException, deliverErrorCode: true)
        #expect(pf.raw == 0x8000_0B0E)
        #expect(pf.isValid && pf.deliversErrorCode && pf.vector == 14 && pf.type == .hardwareException)
        #expect(VMEntryInterruptionInfo(vector: 2, type: .nmi, deliverErrorCode: false).raw == 0x8000_0202)
        #expect(VMEntryInterruptionInfo(vector: 0x20, type: .externalInterrupt, deliverErrorCode: false).raw == 0x8000_0020)
        #expect(VMEntryInterruptionInfo(vector: 0x80, type: .softwareInterrupt, deliverErrorCode: false).raw == 0x8000_0480)
        #expect(!VMEntryInterruptionInfo.none.isValid)
    }

    /// Exit format adds bit 12, NMI unblocking due to IRET.
    @Test func exitInfoDecoding() {
        let pf = VMExitInterruptionInfo(raw: 0x8000_1B0E)
        #expect(pf.isValid)
        #expect(pf.type == .hardwareException)
        #expect(pf.vector == 14)
        #expect(pf.hasErrorCode)
        #expect(pf.nmiUnblockingDueToIRET)
        let bp = VMExitInterruptionInfo(raw: 0x8000_0603)
        #expect(bp.type == .softwareException && bp.vector == 3 && !bp.hasErrorCode && !bp.nmiUnblockingDueToIRET)
        #expect(!VMExitInterruptionInfo(raw: 0x0000_0B0E).isValid)
    }

    /// SDM 28.2.3: NMI blocking must be restored after a fault in an IRET that
    /// unblocked NMIs, except for #DF (bit undefined) and faults during delivery.
    @Test func nmiBlockingRestoreAfterFaultingIRET() {
        let none = IDTVectoringInfo(raw: 0)
        #expect(VMExitInterruptionInfo(raw: 0x8000_1B0E).requiresNMIBlocking(idtVectoring: none))
        #expect(!VMExitInterruptionInfo(raw: 0x8000_0B0E).requiresNMIBlocking(idtVectoring: none))
        #expect(!VMExitInterruptionInfo(raw: 0x8000_1B08).requiresNMIBlocking(idtVectoring: none))
        #expect(!VMExitInterruptionInfo(raw: 0x8000_1B0E).requiresNMIBlocking(idtVectoring: IDTVectoringInfo(raw: 0x8000_0030)))
        #expect(!VMExitInterruptionInfo(raw: 0x0000_1B0E).requiresNMIBlocking(idtVectoring: none))
        // A software #BP (INT3) reported with bit 12 still needs it.
        #expect(VMExitInterruptionInfo(raw: 0x8000_1603).requiresNMIBlocking(idtVectoring: none))
    }

    @Test func idtVectoringExternalInterruptIsReinjectedAsIs() {
        let idt = IDTVectoringInfo(raw: 0x8000_0030)
        let inj = idt.reinjection(errorCode: 0xDEAD, instructionLength: 3)
        #expect(inj?.entryInfo.raw == 0x8000_0030)
        #expect(inj?.errorCode == nil)
        #expect(inj?.instructionLength == nil)
    }

    @Test func idtVectoringSoftwareInterruptKeepsInstructionLength() {
        let idt = IDTVectoringInfo(raw: 0x8000_0480)  // INT 0x80 being delivered
        #expect(idt.type == .softwareInterrupt)
        let inj = idt.reinjection(errorCode: 0, instructionLength: 2)
        #expect(inj?.entryInfo.raw == 0x8000_0480)
        #expect(inj?.instructionLength == 2)
    }

    /// The error code is carried over, and the undefined bit 12 and reserved
    /// bits 30:13 are cleared (VM entry requires them 0).
    @Test func idtVectoringGPKeepsErrorCodeAndDropsUndefinedBits() {
        let idt = IDTVectoringInfo(raw: 0x8000_1B0D | 0x0F00_0000)
        #expect(idt.hasErrorCode && idt.vector == 13 && idt.type == .hardwareException)
        let inj = idt.reinjection(errorCode: 0x18, instructionLength: 5)
        #expect(inj?.entryInfo.raw == 0x8000_0B0D)
        #expect(inj?.errorCode == 0x18)
        #expect(inj?.instructionLength == nil)
    }

    @Test func invalidIDTVectoringMeansNothingToReinject() {
        #expect(IDTVectoringInfo(raw: 0x0000_0B0E).reinjection(errorCode: 0, instructionLength: 0) == nil)
    }
}
