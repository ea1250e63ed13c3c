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

    /// The value the xAPIC page shows at register `index` (offset >> 4), with
    /// no side effect (a reserved or write-only register shows 0).
    public func pageValue(index: Int) -> UInt32 {
        guard index >= 0, index < 0x100, case .value(let v) = read(LocalAPICRegister(rawValue: UInt16(index)), x2APIC: false) else {
            return 0
        }
        return v
    }

    /// Every register a virtual-APIC page holds for reads (see
    /// `isVirtualizedRead`), as (offset, value): what `readRegister` would
    /// read, without its side effects, in one pass over the fields.
    public func forEachVirtualizedRegister(_ body: (Int, UInt32) -> Void) {
        body(0x020, UInt32(xAPICID) << 24)
        body(0x030, version)
        body(0x080, taskPriority)
        body(0x0A0, UInt32(processorPriority))
        body(0x0D0, logicalDestination)
        body(0x0E0, destinationFormat)
        body(0x0F0, spuriousVector)
        for i in 0..<8 {
            body(0x100 + 16 * i, inService.register(i))
            body(0x180 + 16 * i, triggerMode.register(i))
            body(0x200 + 16 * i, interruptRequest.register(i))
        }
        body(0x280, errorStatus)
        body(0x2F0, hasCMCI ? lvtCMCI : 0)
        body(0x300, commandLow)
        body(0x310, commandHigh)
        body(0x320, lvtTimer)
        body(0x330, lvtThermal)
        body(0x340, lvtPerformance)
        body(0x350, lvtLINT0)
        body(0x360, lvtLINT1)
        body(0x370, lvtError)
        body(0x380, initialCount)
        body(0x3E0, divideConfiguration)
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
}
