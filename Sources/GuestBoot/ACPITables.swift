// ACPI tables for an isolated guest: the smallest set an OS accepts that
// describes the virtual platform (one CPU, its local APIC, the virtual I/O
// APIC at 0xFEC00000) and claims no fixed ACPI hardware.
//
//   RSDP (rev 2) -> XSDT -> FADT ("FACP", rev 6.4, HW_REDUCED_ACPI) -> DSDT (no AML)
//                        -> MADT ("APIC", rev 5)
//
// Hardware-reduced ACPI (ACPI 6.4 4.1 "Hardware-Reduced ACPI"; FADT flag bit
// 20) tells the OS there is no PM timer, PM1/GPE blocks, SMI command port or
// FACS, so the hypervisor emulates none of them. Linux (ACPICA tbfadt.c)
// then skips the FACS and the fixed registers, installs the DSDT from
// X_DSDT, and installs no SCI handler; arch/x86 (acpi_generic_reduced_hw_init)
// also bypasses the legacy PIC and the PIT/HPET timer setup, so the guest's
// clock comes from the local APIC timer and the TSC.
//
// Layouts: ACPI 6.4 5.2.5.3 "Root System Description Pointer (RSDP)
// Structure", 5.2.6 "System Description Table Header", 5.2.8 "Extended System
// Description Table (XSDT)", 5.2.9 "Fixed ACPI Description Table (FADT)",
// 5.2.12 "Multiple APIC Description Table (MADT)".

/// Why the tables could not be written.
public enum ACPITableError: Error, Equatable, Sendable {
    /// The buffer holds fewer bytes than the tables need.
    case bufferTooSmall(needed: Int, available: Int)
    /// The RSDP must start on a 16-byte boundary (5.2.5.1 "Finding the RSDP
    /// on IA-PC Systems"): the base must be 16-byte aligned.
    case misalignedBase(UInt64)
    /// The tables would end beyond the 64-bit address space.
    case addressOutOfRange(UInt64)
}

/// What the tables describe; the defaults are the isolated guest's platform.
public struct ACPIPlatform: Equatable, Sendable {
    /// The boot processor's local APIC ID and ACPI processor UID.
    public var localAPICID: UInt8 = 0
    public var processorUID: UInt8 = 0
    /// The virtual I/O APIC's ID (its IOAPICID register must match).
    public var ioAPICID: UInt8 = 0
    /// The ISA IRQ of the SCI (FADT SCI_INT, overridden to level, active low).
    public var sciInterrupt: UInt8 = 9
    /// FADT IAPC_BOOT_ARCH (5.2.9.3): by default no legacy devices, no 8042,
    /// VGA not present, MSI not supported; the CMOS RTC is present.
    public var bootArchitecture: UInt16 = ACPITables.BootArchitecture.vgaNotPresent
        | ACPITables.BootArchitecture.msiNotSupported
    /// Describe COM1 (I/O 0x3F8-0x3FF, ISA IRQ 4) in the DSDT: with a
    /// hardware-reduced FADT there is no legacy PIC, so Linux maps ISA IRQs
    /// only for devices the namespace lists.
    public var com1 = false

    public init() {}
}

/// Where the tables went.
public struct ACPITablesPlacement: Equatable, Sendable {
    /// The RSDP's guest-physical address: what the boot protocol passes
    /// (boot_params.acpi_rsdp_addr, PVH start_info.rsdp_paddr) or what the
    /// OS finds by scanning 0xE0000-0xFFFFF.
    public var rsdpAddress: UInt64
    /// The bytes written from the base.
    public var size: Int
}

public enum ACPITables {
    public static let oemID: StaticString = "SWIFTV"         // 6 bytes
    public static let oemTableID: StaticString = "ISOLATED"  // 8 bytes
    public static let oemRevision: UInt32 = 1
    public static let creatorID: StaticString = "SWFT"       // 4 bytes
    public static let creatorRevision: UInt32 = 1

    /// The local APIC and I/O APIC addresses the MADT gives (the Devices
    /// module's `IOAPIC.baseAddress`; GuestBoot does not import Devices).
    public static let localAPICAddress: UInt32 = 0xFEE0_0000
    public static let ioAPICAddress: UInt32 = 0xFEC0_0000

    /// 5.2.9.3 "IA-PC Boot Architecture Flags".
    public enum BootArchitecture {
        public static let legacyDevices: UInt16 = 1 << 0
        public static let has8042: UInt16 = 1 << 1
        public static let vgaNotPresent: UInt16 = 1 << 2
        public static let msiNotSupported: UInt16 = 1 << 3
        public static let pcieASPMControls: UInt16 = 1 << 4
        public static let cmosRTCNotPresent: UInt16 = 1 << 5
    }

    /// 5.2.9 Table 5.10 "Fixed ACPI Description Table Fixed Feature Flags".
    public enum FADTFlags {
        public static let wbinvd: UInt32 = 1 << 0
        public static let powerButton: UInt32 = 1 << 4   // no fixed power button
        public static let sleepButton: UInt32 = 1 << 5   // no fixed sleep button
        public static let hardwareReducedACPI: UInt32 = 1 << 20
    }

    /// 5.2.12 "MADT Flags": the system also has dual 8259s (Linux masks them).
    public static let pcatCompatible: UInt32 = 1 << 0

    /// 5.2.12.5 "Interrupt Source Override Structure" MPS INTI flags.
    public enum INTIFlags {
        public static let activeHigh: UInt16 = 0b01
        public static let activeLow: UInt16 = 0b11
        public static let edge: UInt16 = 0b01 << 2
        public static let level: UInt16 = 0b11 << 2
    }

    // Sizes and revisions of the fixed-size structures.
    static let rsdpChecksummedLength = 20     // the ACPI 1.0 part
    static let rsdpLength = 36
    static let headerLength = 36
    static let xsdtEntries = 2                // FADT, MADT
    static let fadtLength = 276               // through the hypervisor vendor identity (6.0+)
    static let fadtRevision: UInt8 = 6
    static let fadtMinorVersion: UInt8 = 4    // ACPI 6.4
    static let madtRevision: UInt8 = 5
    static let dsdtRevision: UInt8 = 2        // 64-bit AML integers

    // FADT field offsets (5.2.9 Table 5.9).
    static let fadtDSDT = 40
    static let fadtSCIInterrupt = 46
    static let fadtBootArchitecture = 109
    static let fadtFlags = 112
    static let fadtMinorVersionOffset = 131
    static let fadtXDSDT = 140

    /// Scope (\_SB) { Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, One)
    /// Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 1, 8) IRQNoFlags () {4} }) } }
    /// ACPI 20 "ACPI Machine Language (AML) Specification"; 6.4.2 resource descriptors.
    static let com1AML: [52 of UInt8] = [
        0x10, 0x33, 0x5C, 0x5F, 0x53, 0x42, 0x5F,                  // Scope (\_SB_), PkgLength 51
        0x5B, 0x82, 0x2B, 0x43, 0x4F, 0x4D, 0x31,                  // Device (COM1), PkgLength 43
        0x08, 0x5F, 0x48, 0x49, 0x44, 0x0C, 0x41, 0xD0, 0x05, 0x01, // Name (_HID, DWord EisaId PNP0501)
        0x08, 0x5F, 0x55, 0x49, 0x44, 0x01,                        // Name (_UID, One)
        0x08, 0x5F, 0x43, 0x52, 0x53, 0x11, 0x10, 0x0A, 0x0D,      // Name (_CRS, Buffer (13)), PkgLength 16
        0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08,            //   IO: decode 16, 0x3F8-0x3F8, align 1, 8 ports
        0x22, 0x10, 0x00,                                          //   IRQNoFlags: IRQ 4
        0x79, 0x00,                                                //   End tag
    ]

    /// Where each table starts, from the base (16-byte aligned, as the RSDP must be).
    struct Layout {
        let xsdt: Int
        let fadt: Int
        let madt: Int
        let madtLength: Int
        let dsdt: Int
        let size: Int

        static func align(_ n: Int) -> Int { (n + 15) & ~15 }

        init(_ platform: ACPIPlatform) {
            var measure = TableWriter(nil, at: 0)
            writeMADTEntries(platform, &measure)
            madtLength = headerLength + 8 + measure.offset
            xsdt = Self.align(rsdpLength)
            fadt = Self.align(xsdt + headerLength + 8 * xsdtEntries)
            madt = Self.align(fadt + fadtLength)
            dsdt = Self.align(madt + madtLength)
            size = dsdt + headerLength + (platform.com1 ? com1AML.count : 0)
        }
    }

    /// The bytes `write` needs for `platform`.
    public static func size(for platform: ACPIPlatform = ACPIPlatform()) -> Int {
        Layout(platform).size
    }

    /// Write the tables into `buffer`, whose first byte is guest-physical
    /// `base`; every pointer in them is `base` plus the table's offset.
    /// Bytes past the returned size are untouched.
    public static func write(into buffer: UnsafeMutableRawBufferPointer, at base: UInt64,
                             platform: ACPIPlatform = ACPIPlatform()) throws(ACPITableError) -> ACPITablesPlacement {
        let layout = Layout(platform)
        guard base & 15 == 0 else { throw .misalignedBase(base) }
        guard base <= UInt64.max - UInt64(layout.size) else { throw .addressOutOfRange(base) }
        guard buffer.count >= layout.size else {
            throw .bufferTooSmall(needed: layout.size, available: buffer.count)
        }
        let tables = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<layout.size])
        tables.initializeMemory(as: UInt8.self, repeating: 0)
        func address(_ offset: Int) -> UInt64 { base + UInt64(offset) }

        // RSDP (5.2.5.3).
        var w = TableWriter(tables, at: 0)
        w.text("RSD PTR ")
        w.u8(0)                                     // checksum of the first 20 bytes
        w.text(oemID)
        w.u8(2)                                     // revision: ACPI 2.0+
        w.u32(0)                                    // no RSDT: an XSDT-only platform
        w.u32(UInt32(rsdpLength))
        w.u64(address(layout.xsdt))
        w.u8(0)                                     // extended checksum (all 36 bytes)
        tables[8] = checksum(tables, 0, rsdpChecksummedLength)
        tables[32] = checksum(tables, 0, rsdpLength)

        // XSDT (5.2.8): the FADT and the MADT. The DSDT is reached through the FADT.
        w = TableWriter(tables, at: layout.xsdt)
        w.header("XSDT", length: headerLength + 8 * xsdtEntries, revision: 1)
        w.u64(address(layout.fadt))
        w.u64(address(layout.madt))
        seal(tables, layout.xsdt)

        // FADT (5.2.9): hardware-reduced, so every PM and GPE field stays zero.
        w = TableWriter(tables, at: layout.fadt)
        w.header("FACP", length: fadtLength, revision: fadtRevision)
        let dsdt = address(layout.dsdt)
        if dsdt <= UInt64(UInt32.max) { w.store(dsdt, bytes: 4, at: layout.fadt + fadtDSDT) }
        w.store(UInt64(platform.sciInterrupt), bytes: 2, at: layout.fadt + fadtSCIInterrupt)
        w.store(UInt64(platform.bootArchitecture), bytes: 2, at: layout.fadt + fadtBootArchitecture)
        let flags = FADTFlags.wbinvd | FADTFlags.powerButton | FADTFlags.sleepButton | FADTFlags.hardwareReducedACPI
        w.store(UInt64(flags), bytes: 4, at: layout.fadt + fadtFlags)
        w.store(UInt64(fadtMinorVersion), bytes: 1, at: layout.fadt + fadtMinorVersionOffset)
        w.store(dsdt, bytes: 8, at: layout.fadt + fadtXDSDT)
        seal(tables, layout.fadt)

        // MADT (5.2.12).
        w = TableWriter(tables, at: layout.madt)
        w.header("APIC", length: layout.madtLength, revision: madtRevision)
        w.u32(localAPICAddress)
        w.u32(pcatCompatible)
        writeMADTEntries(platform, &w)
        seal(tables, layout.madt)

        // DSDT (5.2.11.1): a header, and COM1's device when asked for.
        w = TableWriter(tables, at: layout.dsdt)
        let aml = platform.com1 ? com1AML.count : 0
        w.header("DSDT", length: headerLength + aml, revision: dsdtRevision)
        for i in 0..<aml { tables[layout.dsdt + headerLength + i] = com1AML[i] }
        seal(tables, layout.dsdt)

        return ACPITablesPlacement(rsdpAddress: base, size: layout.size)
    }

    /// The MADT's interrupt controller structures, written once (the layout
    /// measures them with a writer that has no buffer).
    static func writeMADTEntries(_ platform: ACPIPlatform, _ w: inout TableWriter) {
        // 5.2.12.2 "Processor Local APIC Structure": type 0, enabled.
        w.u8(0); w.u8(8); w.u8(platform.processorUID); w.u8(platform.localAPICID); w.u32(1)
        // 5.2.12.3 "I/O APIC Structure": type 1, GSIs 0-23.
        w.u8(1); w.u8(12); w.u8(platform.ioAPICID); w.u8(0); w.u32(ioAPICAddress); w.u32(0)
        // 5.2.12.5 "Interrupt Source Override Structure": type 2, bus 0 (ISA).
        // The PIT's IRQ 0 is wired to pin 2, as on every PC.
        w.u8(2); w.u8(10); w.u8(0); w.u8(0); w.u32(2); w.u16(INTIFlags.activeHigh | INTIFlags.edge)
        // The SCI: level, active low (5.2.9: "sharable, level, active low").
        w.u8(2); w.u8(10); w.u8(0); w.u8(platform.sciInterrupt); w.u32(UInt32(platform.sciInterrupt))
        w.u16(INTIFlags.activeLow | INTIFlags.level)
        // 5.2.12.7 "Local APIC NMI Structure": type 4, all processors (0xFF), LINT1.
        w.u8(4); w.u8(6); w.u8(0xFF); w.u16(INTIFlags.activeHigh | INTIFlags.edge); w.u8(1)
    }

    /// The byte that makes `count` bytes from `start` sum to zero (5.2.6 "Checksum").
    static func checksum(_ bytes: UnsafeMutableRawBufferPointer, _ start: Int, _ count: Int) -> UInt8 {
        var sum: UInt8 = 0
        for i in start..<(start + count) { sum &+= bytes[i] }
        return 0 &- sum
    }

    /// Set the checksum of the table at `start` over its header's length.
    static func seal(_ bytes: UnsafeMutableRawBufferPointer, _ start: Int) {
        var length = 0
        for i in 0..<4 { length |= Int(bytes[start + 4 + i]) << (8 * i) }
        bytes[start + 9] = 0
        bytes[start + 9] = checksum(bytes, start, length)
    }
}

/// Little-endian sequential writer; with no buffer it only counts bytes.
struct TableWriter {
    let bytes: UnsafeMutableRawBufferPointer?
    var offset: Int

    init(_ bytes: UnsafeMutableRawBufferPointer?, at offset: Int) {
        self.bytes = bytes
        self.offset = offset
    }

    mutating func u8(_ value: UInt8) {
        bytes?[offset] = value
        offset += 1
    }

    mutating func u16(_ value: UInt16) { put(UInt64(value), 2) }
    mutating func u32(_ value: UInt32) { put(UInt64(value), 4) }
    mutating func u64(_ value: UInt64) { put(value, 8) }

    mutating func put(_ value: UInt64, _ count: Int) {
        for i in 0..<count { u8(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }

    func store(_ value: UInt64, bytes count: Int, at position: Int) {
        for i in 0..<count { bytes?[position + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    mutating func text(_ s: StaticString) {
        s.withUTF8Buffer { for byte in $0 { u8(byte) } }
    }

    /// 5.2.6 "System Description Table Header"; the checksum (offset 9) is sealed last.
    mutating func header(_ signature: StaticString, length: Int, revision: UInt8) {
        text(signature)
        u32(UInt32(length))
        u8(revision)
        u8(0)
        text(ACPITables.oemID)
        text(ACPITables.oemTableID)
        u32(ACPITables.oemRevision)
        text(ACPITables.creatorID)
        u32(ACPITables.creatorRevision)
    }
}
