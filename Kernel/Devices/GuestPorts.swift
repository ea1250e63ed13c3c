// The test guests' ports: a 16550 UART at COM1 whose output reaches the
// hypervisor's console line by line as "[guest] ...", and the exit port 0xF4
// (QEMU's isa-debug-exit convention) that powers off with the guest's status.
// An operating-system guest also gets the RTC (CMOSPorts). Every other port
// reads as all ones and ignores writes (an empty bus).
import X86Arch
import X86VCPU
import Devices

struct KernelPlatform: GuestPlatform {
    static let com1: UInt16 = 0x3F8
    static let exitPort: UInt16 = 0xF4

    var uart = UART16550()
    var console = GuestConsole()
    /// The guest drives the real RTC (0x70, 0x71), NVRAM read-only.
    var ownsClock = false
    var cmos = CMOSPorts()
    /// The isolated platform's interrupt controllers (see InterruptControllers.swift).
    var hasControllers = false
    var apic = LocalAPIC(id: 0)
    var ioapic = IOAPIC(id: 1)
    var nmiPending = false
    /// What the vCPU asks at every entry, kept as plain values: reading
    /// them from the models cost ~2,000 instructions per exit.
    var cachedPending = false
    var cachedDeadline: UInt64? = nil
    /// What changed in the local APIC since the virtual-APIC page last got
    /// it (`APICChanges`); only used while the CPU virtualizes the APIC.
    var apicChanges: UInt8 = 0
    /// The virtual-APIC page, and whether the guest ran since the model last
    /// took VTPR, VIRR and VISR from it (`syncAPIC`).
    var virtualPage: UnsafeMutableRawPointer? = nil
    var pageStale = false
    var changedRegister = 0
    /// IRR and ISR as the virtual-APIC page holds them while the model is in
    /// step with it: `storeAPIC` writes only the words that differ.
    var pageIRR = APICVectorBitmap()
    var pageISR = APICVectorBitmap()
    /// The guest's TSC as of the vCPU's last `advance`.
    var guestTime: UInt64 = 0
    /// An isolated OS guest's own devices' interrupts (PIT, COM1, RTC) go
    /// through the virtual IOAPIC once it unmasks their pins.
    var routesLegacyIRQs = false
    /// smp=on: the guest's INIT and STARTUP IPIs go through the hypervisor
    /// (IPIRouting.swift); this vCPU's index among the guest's CPUs and the
    /// real local APIC's page.
    var routesIPIs = false
    var cpuIndex = 0
    var realAPICPage: UInt64 = 0
    /// TSC ticks between two polls of the INIT mailbox.
    var pollTicks: UInt64 = 0
    /// The real PICs' masks as the hypervisor last wrote them (APIC mode).
    var realPICMask: UInt16 = 0xFFFF
    /// Where prepareCPU puts the real PICs' vectors (master, then slave + 8).
    static let picBase: UInt8 = 0x20

    @inline(__always)
    func uartRegister(_ port: UInt16) -> UART16550.Register? {
        port >= Self.com1 ? UART16550.register(at: port - Self.com1) : nil
    }

    @inline(__always)  // into the quick exit path
    mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32 {
        if ownsClock && width == .byte && port == CMOSPorts.indexPort { return UInt32(cmos.indexValue) }
        if ownsClock && width == .byte && port == CMOSPorts.dataPort {
            port_out8(CMOSPorts.indexPort, cmos.index)
            return UInt32(port_in8(CMOSPorts.dataPort))
        }
        guard width == .byte, let register = uartRegister(port) else { return UInt32(truncatingIfNeeded: width.mask) }
        return UInt32(uart.read(register))
    }

    @inline(__always)  // into the quick exit path
    mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit? {
        if port == Self.exitPort {
            flush()
            return .powerOff(status: UInt8(truncatingIfNeeded: value))
        }
        if ownsClock && width == .byte && port == CMOSPorts.indexPort { cmos.select(UInt8(truncatingIfNeeded: value)) }
        if ownsClock && width == .byte && port == CMOSPorts.dataPort && cmos.dataWritable {
            port_out8(CMOSPorts.indexPort, cmos.index)
            port_out8(CMOSPorts.dataPort, UInt8(truncatingIfNeeded: value))
        }
        if let register = uartRegister(port), let byte = uart.write(register, UInt8(truncatingIfNeeded: value)) {
            console.append(byte, emit: Self.printLine)
        }
        return nil
    }

    mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes { console.append(b, emit: Self.printLine) }
    }

    /// Prints the pending partial line, if any.
    @inline(never)  // once, at power-off: kept out of the inlined port path
    mutating func flush() { console.flush(emit: Self.printLine) }

    static func printLine(_ line: UnsafeRawBufferPointer) { Console.line("[guest] \(bytes: line)") }
}
