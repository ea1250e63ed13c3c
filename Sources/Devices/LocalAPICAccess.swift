// The local APIC's two interfaces: the xAPIC register page and the x2APIC
// MSRs, with IA32_APIC_BASE and IA32_TSC_DEADLINE. SDM "Local APIC Register
// Address Map", "x2APIC Register Address Space", "Reserved Bit Checking".

import X86Arch

extension LocalAPIC {
    enum RegisterRead: Equatable {
        case value(UInt32)
        case writeOnly
        case reserved
    }

    enum RegisterWrite: Equatable {
        case done(LocalAPICEvent)
        case readOnly
        case reserved
        /// x2APIC mode: a non-zero write to a reserved bit (#GP).
        case reservedBits
    }

    // MARK: xAPIC: the APIC page

    /// A 32-bit read at `offset` in the APIC page. Outside xAPIC mode, or off a
    /// register's 16-byte boundary, it reads 0. A reserved register reads 0 and
    /// sets "Illegal Register Address"; a write-only one (EOI) reads 0.
    public mutating func readRegister(offset: UInt32) -> UInt32 {
        guard mode == .xAPIC, let register = LocalAPICRegister(mmioOffset: offset) else { return 0 }
        switch read(register, x2APIC: false) {
        case .value(let value): return value
        case .writeOnly: return 0
        case .reserved:
            recordError(APICErrorStatus.illegalRegisterAddress)
            return 0
        }
    }

    /// A 32-bit write at `offset` in the APIC page: reserved bits are ignored, writes
    /// to read-only registers too; a reserved register sets "Illegal Register Address".
    @discardableResult
    public mutating func writeRegister(offset: UInt32, value: UInt32) -> LocalAPICEvent {
        guard mode == .xAPIC, let register = LocalAPICRegister(mmioOffset: offset) else { return .nothing }
        switch write(register, value: value, x2APIC: false) {
        case .done(let event): return event
        case .readOnly, .reservedBits: return .nothing
        case .reserved:
            recordError(APICErrorStatus.illegalRegisterAddress)
            return .nothing
        }
    }

    // MARK: MSRs

    /// Whether `msr` is one the APIC answers: IA32_APIC_BASE, IA32_TSC_DEADLINE, 800H-8FFH.
    public static func handles(msr: UInt32) -> Bool {
        msr == MSR.ia32APICBase.address || msr == MSR.ia32TSCDeadline.address
            || LocalAPICRegister(msr: msr) != nil
    }

    /// RDMSR; nil is #GP(0): an x2APIC MSR outside x2APIC mode, a reserved one
    /// (including DFR, 831H and CMCI when absent) or a write-only one (EOI, SELF IPI).
    public func readMSR(_ msr: UInt32) -> UInt64? {
        if msr == MSR.ia32APICBase.address { return apicBase }
        if msr == MSR.ia32TSCDeadline.address { return tscDeadline }
        guard mode == .x2APIC, let register = LocalAPICRegister(msr: msr) else { return nil }
        if register == .interruptCommand { return UInt64(commandHigh) << 32 | UInt64(commandLow) }
        guard case .value(let value) = read(register, x2APIC: true) else { return nil }
        return UInt64(value)
    }

    /// WRMSR; nil is #GP(0): besides `readMSR`'s cases, a read-only register (ID,
    /// version, PPR, LDR, ISR/TMR/IRR, current count) and a non-zero write to a
    /// reserved bit (bits 63:32 of every register but the ICR; EOI and ESR take only 0).
    public mutating func writeMSR(_ msr: UInt32, _ value: UInt64) -> LocalAPICEvent? {
        if msr == MSR.ia32APICBase.address { return setBase(value) ? .nothing : nil }
        if msr == MSR.ia32TSCDeadline.address {
            writeTSCDeadline(value)
            return .nothing
        }
        guard mode == .x2APIC, let register = LocalAPICRegister(msr: msr) else { return nil }
        if register == .interruptCommand {
            // SDM "ICR Operation in x2APIC Mode": one 64-bit write sends; bits 63:32
            // are the 32-bit destination, and the delivery status bit is gone.
            let low = UInt32(truncatingIfNeeded: value)
            guard low & ~InterruptCommandRegister.writable == 0 else { return nil }
            commandLow = low
            commandHigh = UInt32(truncatingIfNeeded: value >> 32)
            return sendIPI(low: low, destination: commandHigh)
        }
        guard value >> 32 == 0 else { return nil }
        guard case .done(let event) = write(register, value: UInt32(value), x2APIC: true) else { return nil }
        return event
    }

    // MARK: One register

    func read(_ register: LocalAPICRegister, x2APIC: Bool) -> RegisterRead {
        let index = register.rawValue
        switch index {
        case 0x02: return .value(x2APIC ? initialID : UInt32(xAPICID) << 24)
        case 0x03: return .value(version)
        case 0x08: return .value(taskPriority)
        case 0x09, 0x0C: return x2APIC ? .reserved : .value(0)
        case 0x0A: return .value(UInt32(processorPriority))
        case 0x0B: return .writeOnly
        case 0x0D: return .value(logicalDestination)
        case 0x0E: return x2APIC ? .reserved : .value(destinationFormat)
        case 0x0F: return .value(spuriousVector)
        case 0x10...0x17: return .value(inService.register(Int(index - 0x10)))
        case 0x18...0x1F: return .value(triggerMode.register(Int(index - 0x18)))
        case 0x20...0x27: return .value(interruptRequest.register(Int(index - 0x20)))
        case 0x28: return .value(errorStatus)
        case 0x2F: return hasCMCI ? .value(lvtCMCI) : .reserved
        case 0x30: return .value(commandLow)
        case 0x31: return x2APIC ? .reserved : .value(commandHigh)
        case 0x32: return .value(lvtTimer)
        case 0x33: return .value(lvtThermal)
        case 0x34: return .value(lvtPerformance)
        case 0x35: return .value(lvtLINT0)
        case 0x36: return .value(lvtLINT1)
        case 0x37: return .value(lvtError)
        case 0x38: return .value(initialCount)
        case 0x39: return .value(currentCount)
        case 0x3E: return .value(divideConfiguration)
        case 0x3F: return x2APIC ? .writeOnly : .reserved
        default: return .reserved
        }
    }

    mutating func write(_ register: LocalAPICRegister, value: UInt32, x2APIC: Bool) -> RegisterWrite {
        // SDM "Reserved Bit Checking": in x2APIC mode a 1 in a reserved bit is #GP;
        // read-only bits (delivery status, remote IRR) may be written with any value.
        func fits(_ writable: UInt32, readOnly: UInt32 = 0) -> Bool {
            !x2APIC || value & ~(writable | readOnly) == 0
        }
        let lvtReadOnly = LocalVectorTableEntry.deliveryStatus
        switch register.rawValue {
        case 0x02:
            guard !x2APIC else { return .readOnly }
            xAPICID = UInt8(truncatingIfNeeded: value >> 24)
        case 0x03, 0x0A, 0x10...0x27, 0x39:
            return .readOnly
        case 0x09, 0x0C:
            return x2APIC ? .reserved : .readOnly
        case 0x08:
            guard fits(0xFF) else { return .reservedBits }
            taskPriority = value & 0xFF
        case 0x0B:
            guard fits(0) else { return .reservedBits }
            if let vector = endOfInterrupt() { return .done(.levelEndOfInterrupt(vector: vector)) }
        case 0x0D:
            guard !x2APIC else { return .readOnly }
            logicalDestination = value & 0xFF00_0000
        case 0x0E:
            guard !x2APIC else { return .reserved }
            destinationFormat = value | 0x0FFF_FFFF
        case 0x0F:
            guard fits(SpuriousVectorRegister.writable) else { return .reservedBits }
            writeSpuriousVector(value & SpuriousVectorRegister.writable)
        case 0x28:
            // SDM "Error Status Register": a write latches the errors since the last one.
            guard fits(0) else { return .reservedBits }
            errorStatus = errorsSinceLatch
            errorsSinceLatch = 0
        case 0x2F:
            guard hasCMCI else { return .reserved }
            guard fits(LocalVectorTableEntry.withDeliveryModeWritable, readOnly: lvtReadOnly) else { return .reservedBits }
            lvtCMCI = lvtEntry(value & LocalVectorTableEntry.withDeliveryModeWritable)
        case 0x30:
            guard !x2APIC else { return .reserved }  // the 64-bit MSR is writeMSR's
            commandLow = value & InterruptCommandRegister.writable
            return .done(sendIPI(low: commandLow, destination: commandHigh >> InterruptCommandRegister.xAPICDestinationShift))
        case 0x31:
            guard !x2APIC else { return .reserved }
            commandHigh = value & 0xFF00_0000
        case 0x32:
            guard fits(LocalVectorTableEntry.timerWritable, readOnly: lvtReadOnly) else { return .reservedBits }
            writeTimerEntry(lvtEntry(value & LocalVectorTableEntry.timerWritable))
        case 0x33, 0x34:
            guard fits(LocalVectorTableEntry.withDeliveryModeWritable, readOnly: lvtReadOnly) else { return .reservedBits }
            let entry = lvtEntry(value & LocalVectorTableEntry.withDeliveryModeWritable)
            if register == .lvtThermal { lvtThermal = entry } else { lvtPerformance = entry }
        case 0x35, 0x36:
            guard fits(LocalVectorTableEntry.lintWritable, readOnly: lvtReadOnly | LocalVectorTableEntry.remoteIRR) else {
                return .reservedBits
            }
            let entry = lvtEntry(value & LocalVectorTableEntry.lintWritable)
            if register == .lvtLINT0 { lvtLINT0 = entry } else { lvtLINT1 = entry }
        case 0x37:
            guard fits(LocalVectorTableEntry.errorWritable, readOnly: lvtReadOnly) else { return .reservedBits }
            lvtError = lvtEntry(value & LocalVectorTableEntry.errorWritable)
        case 0x38:
            writeInitialCount(value)
        case 0x3E:
            guard fits(0xB) else { return .reservedBits }
            writeDivideConfiguration(value & 0xB)
        case 0x3F:
            // SDM "SELF IPI Register": a fixed, edge-triggered IPI to this APIC.
            guard x2APIC else { return .reserved }
            guard fits(0xFF) else { return .reservedBits }
            return .done(sendIPI(low: (value & 0xFF) | UInt32(DestinationShorthand.toSelf.rawValue) << InterruptCommandRegister.shorthandShift,
                                 destination: 0))
        default:
            return .reserved
        }
        return .done(.nothing)
    }

    /// SDM "Local APIC State After It Has Been Software Disabled": every LVT entry
    /// is masked, and the mask cannot be cleared until the APIC is enabled again.
    func lvtEntry(_ value: UInt32) -> UInt32 {
        isSoftwareEnabled ? value : value | LocalVectorTableEntry.masked
    }

    mutating func writeSpuriousVector(_ value: UInt32) {
        spuriousVector = value
        guard !isSoftwareEnabled else { return }
        let masked = LocalVectorTableEntry.masked
        lvtCMCI |= masked
        lvtTimer |= masked
        lvtThermal |= masked
        lvtPerformance |= masked
        lvtLINT0 |= masked
        lvtLINT1 |= masked
        lvtError |= masked
    }
}
