// The local APIC and the CPU's virtual-APIC page. With APIC virtualization
// (SDM 30 "APIC Virtualization and Virtual Interrupts") the CPU serves most
// register reads from that page and delivers interrupts from its IRR and
// ISR itself; the model stays the one that decides everything else. Between
// the two: after an exit the model takes back what the CPU may have changed
// (VTPR, VIRR, VISR: SDM 30.1.1 "Virtualized APIC Registers"), and before
// an entry it writes what it changed into the page.

extension LocalAPIC {
    /// The register slots (index = offset >> 4) a virtual-APIC page holds
    /// for reads: everything readable but the current count, which changes
    /// with time and is read through an APIC-access exit.
    public static func isVirtualizedRead(index: Int) -> Bool {
        switch index {
        case 0x02, 0x03, 0x08, 0x0A, 0x0D, 0x0E, 0x0F, 0x10...0x28, 0x2F...0x38, 0x3E: return true
        default: return false
        }
    }

    /// The value the xAPIC page shows at `offset` (16-byte aligned), as
    /// `readRegister` would read it but without its side effects; 0 for the
    /// slots the page does not serve.
    @inline(__always)  // a call copied the whole APIC (~250 bytes)
    public func pageValue(offset: Int) -> UInt32 {
        // By register index, a dense switch: a jump table, not a chain of compares.
        guard offset & 0xF == 0 else { return 0 }
        switch offset >> 4 {
        case 0x02: return UInt32(xAPICID) << 24
        case 0x03: return version
        case 0x08: return taskPriority
        case 0x0A: return UInt32(processorPriority)
        case 0x0D: return logicalDestination
        case 0x0E: return destinationFormat
        case 0x0F: return spuriousVector
        case 0x10...0x17: return inService.register((offset >> 4) - 0x10)
        case 0x18...0x1F: return triggerMode.register((offset >> 4) - 0x18)
        case 0x20...0x27: return interruptRequest.register((offset >> 4) - 0x20)
        case 0x28: return errorStatus
        case 0x2F: return hasCMCI ? lvtCMCI : 0
        case 0x30: return commandLow
        case 0x31: return commandHigh
        case 0x32: return lvtTimer
        case 0x33: return lvtThermal
        case 0x34: return lvtPerformance
        case 0x35: return lvtLINT0
        case 0x36: return lvtLINT1
        case 0x37: return lvtError
        case 0x38: return initialCount
        case 0x3E: return divideConfiguration
        default: return 0
        }
    }

    /// `pageValue` for another module. `mutating` only so the model is passed
    /// by address: a by-value call from another module copied all of it
    /// (-Osize, `rep movsb` of ~250 bytes) on the exit path.
    public mutating func pageValueInPlace(offset: Int) -> UInt32 { pageValue(offset: offset) }

    /// Every register a virtual-APIC page holds for reads, as (offset, value).
    @inline(__always)  // a call copied the whole APIC (~250 bytes)
    public func forEachVirtualizedRegister(_ body: (Int, UInt32) -> Void) {
        for index in 2..<0x3F where Self.isVirtualizedRead(index: index) {
            body(index << 4, pageValue(offset: index << 4))
        }
    }

    /// Whether a virtual-APIC page (as the CPU left it) holds a requested
    /// vector above its processor priority: `pendingInterrupt` without
    /// loading the page into the model. SDM "Processor Priority Register".
    public static func virtualPageHasPendingInterrupt(_ page: UnsafeRawPointer) -> Bool {
        func highest(_ base: Int) -> Int {
            var index = 7
            while index >= 0 {
                let word = page.load(fromByteOffset: base + 16 * index, as: UInt32.self)
                if word != 0 { return index * 32 + 31 - word.leadingZeroBitCount }
                index -= 1
            }
            return -1
        }
        let irr = highest(0x200)
        guard irr >= 0 else { return false }
        let tpr = Int(page.load(fromByteOffset: 0x80, as: UInt32.self) & 0xFF)
        let isr = max(highest(0x100), 0)
        let ppr = tpr >> 4 >= isr >> 4 ? tpr : isr & 0xF0
        return irr >> 4 > ppr >> 4
    }

    /// What the CPU changed while it ran the guest: the task priority (TPR
    /// virtualization), and IRR and ISR (virtual-interrupt delivery moves a
    /// vector from one to the other; EOI virtualization clears it).
    public mutating func loadVirtualState(taskPriority: UInt32, interruptRequest irr: APICVectorBitmap,
                                          inService isr: APICVectorBitmap) {
        self.taskPriority = taskPriority & 0xFF
        interruptRequest = irr
        inService = isr
    }

    /// The same from a virtual-APIC page (TPR at 80H, ISR at 100H, IRR at
    /// 200H, 16 bytes apart); false when nothing differs, the common case,
    /// which costs a comparison per register.
    public mutating func loadVirtualState(page: UnsafeRawPointer) -> Bool {
        func pair(_ offset: Int) -> UInt64 {
            UInt64(page.load(fromByteOffset: offset, as: UInt32.self))
                | UInt64(page.load(fromByteOffset: offset + 16, as: UInt32.self)) << 32
        }
        let tpr = page.load(fromByteOffset: 0x80, as: UInt32.self) & 0xFF
        let r0 = pair(0x200), r1 = pair(0x220), r2 = pair(0x240), r3 = pair(0x260)
        let s0 = pair(0x100), s1 = pair(0x120), s2 = pair(0x140), s3 = pair(0x160)
        let irr = interruptRequest, isr = inService
        guard tpr != taskPriority || r0 != irr.w0 || r1 != irr.w1 || r2 != irr.w2 || r3 != irr.w3
                || s0 != isr.w0 || s1 != isr.w1 || s2 != isr.w2 || s3 != isr.w3 else { return false }
        taskPriority = tpr
        interruptRequest = APICVectorBitmap(w0: r0, w1: r1, w2: r2, w3: r3)
        inService = APICVectorBitmap(w0: s0, w1: s1, w2: s2, w3: s3)
        return true
    }
}

extension LocalAPIC {
    /// `advance(toTSC:)` for a vCPU whose CPU delivers from `page`: the timer's
    /// interrupt goes straight into the page's IRR, as posted-interrupt
    /// processing puts another CPU's there (SDM 30.6), and not into the
    /// model, whose IRR the page overrides at its next `loadVirtualState`.
    /// Returns the vector set in the page (0 when the timer did not fire or
    /// its entry is masked), or nil when accepting it needs the model (the
    /// APIC disabled, an illegal vector, the vector's TMR bit to clear):
    /// nothing changed then.
    public mutating func postTimer(toTSC tsc: UInt64, into page: UnsafeMutableRawPointer) -> UInt8? {
        let vector = UInt8(truncatingIfNeeded: lvtTimer)
        let delivers = lvtTimer & LocalVectorTableEntry.masked == 0
        if delivers {
            guard mode != .disabled, isSoftwareEnabled, vector >= 16, !triggerMode.contains(vector) else { return nil }
        }
        now = tsc
        guard timerExpired(), delivers else { return 0 }
        let word = page + 0x200 + 16 * Int(vector >> 5)
        word.storeBytes(of: word.load(as: UInt32.self) | 1 << UInt32(vector & 31), as: UInt32.self)
        return vector
    }
}

extension APICVectorBitmap {
    init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// The bitmap from its eight 32-bit registers (as in the APIC page, 16 bytes apart).
    public init(registers: (Int) -> UInt32) {
        self.init()
        for i in 0..<4 {
            setWord64(i, UInt64(registers(2 * i)) | UInt64(registers(2 * i + 1)) << 32)
        }
    }

    /// Bits 64 * index ... 64 * index + 63 (the EOI-exit bitmap's layout).
    public func word(_ index: Int) -> UInt64 { word64(index) }

    /// Writes into a page at `base` (eight 32-bit registers, 16 bytes apart)
    /// the registers whose 64-bit word differs from `stored`, what the page
    /// holds, and remembers the bitmap there.
    public func store(into page: UnsafeMutableRawPointer, at base: Int, over stored: inout APICVectorBitmap) {
        for i in 0..<4 where word64(i) != stored.word64(i) {
            let word = word64(i)
            page.storeBytes(of: UInt32(truncatingIfNeeded: word), toByteOffset: base + 32 * i, as: UInt32.self)
            page.storeBytes(of: UInt32(truncatingIfNeeded: word >> 32), toByteOffset: base + 32 * i + 16, as: UInt32.self)
        }
        stored = self
    }
}
