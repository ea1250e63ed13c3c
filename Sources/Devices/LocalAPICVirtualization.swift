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

    /// What the CPU changed while it ran the guest: the task priority (TPR
    /// virtualization), and IRR and ISR (virtual-interrupt delivery moves a
    /// vector from one to the other; EOI virtualization clears it).
    public mutating func loadVirtualState(taskPriority: UInt32, interruptRequest irr: APICVectorBitmap,
                                          inService isr: APICVectorBitmap) {
        self.taskPriority = taskPriority & 0xFF
        interruptRequest = irr
        inService = isr
    }
}

extension APICVectorBitmap {
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
