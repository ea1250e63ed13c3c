// The hypervisor's own command line (the Multiboot2 "3.6.5 Boot command line"
// tag, i.e. the words after the kernel path on GRUB's `multiboot2` line).
//
// Grammar: tokens separated by blanks (space, tab, CR, LF); a token is `key=value`
// or a bare flag. Later options override earlier ones. Nothing here can fail:
// an unknown option or a bad value is a warning (kept, up to a fixed number,
// and also passed to an optional callback) and the default stays in force, so
// a typo never stops the machine from booting.
//
// Options:
//   log=error|warn|info|debug   console verbosity            (default info)
//   guest_mem=<size>            guest RAM, see `parseSize`   (default 64M)
//                               must be non-zero and a multiple of 4 KiB
//   test=<name>                 self-test selector, e.g. test=ud2 (default none)
//   serial=<port>               COM port base, hex or decimal (default 0x3f8)
//   bench                       run the benchmarks
//   noscreen                    do not write to the screen, serial only
//   platform=passthrough|isolated  the guest owns the machine, or gets the
//                               hypervisor's private platform (default: by
//                               the guest's format, see `platform`)
//   apicv=on|off                the CPU's APIC virtualization for the isolated
//                               platform's local APIC when it has it, or the
//                               emulation from EPT violations   (default on)
//   cpus=<n>                    CPUs brought into VMX root mode, the boot
//                               CPU included; 1: the boot CPU only (default: all)
//   smp=on|off                  the passthrough guest gets a vCPU on every
//                               CPU in VMX root mode (started by its own
//                               INIT/SIPI), or the boot CPU only, the others
//                               parked and hidden from its MADT (default on)

import X86Arch
import VMX
import X86VCPU

/// Options parsed from the kernel command line, with their defaults.
///
/// Byte spans (`testName`, warning tokens) point into the command line bytes:
/// keep the boot information mapped while they are used.
public struct KernelCommandLine {
    /// Console verbosity; each level includes the ones before it.
    public enum LogLevel: UInt8, Comparable, Sendable {
        case error, warn, info, debug

        public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
    }

    /// Something on the command line that was ignored.
    public struct Warning {
        /// Why the token was ignored.
        public enum Kind: Equatable, Sendable {
            /// No option has this name.
            case unknownOption
            /// A known option's value could not be used (bad number, overflow,
            /// unknown level, size not a multiple of 4 KiB, ...).
            case malformedValue
            /// A well-formed value outside what the option allows (`guest_mem`
            /// above `maximumGuestMemory`).
            case valueOutOfRange
            /// An option that needs a value has none (`log` or `log=`).
            case missingValue
            /// A flag was given a value (`bench=1`).
            case unexpectedValue
        }

        public let kind: Kind
        /// The option name (the part before `=`, or the whole bare token).
        public let option: UnsafeRawBufferPointer
        /// The whole offending token.
        public let token: UnsafeRawBufferPointer

        /// A one-line explanation, to print before the token.
        public var message: StaticString {
            switch kind {
            case .unknownOption: "unknown command line option"
            case .malformedValue: "malformed value for command line option, default kept"
            case .valueOutOfRange: "value out of range for command line option, default kept"
            case .missingValue: "command line option needs a value"
            case .unexpectedValue: "command line flag takes no value, ignored"
            }
        }
    }

    public static let defaultLogLevel = LogLevel.info
    public static let defaultGuestMemory: UInt64 = 64 << 20
    /// Guest RAM starts at guest-physical 0 and 4-level EPT translates 48-bit
    /// guest-physical addresses (SDM 29.3.2 "EPT Translation Mechanism").
    public static let maximumGuestMemory: UInt64 = 1 << 48
    public static let defaultSerialPort: UInt16 = 0x3F8
    /// Warnings kept for `warning(at:)`; more are counted in `droppedWarnings`.
    public static let warningCapacity = 8

    public private(set) var logLevel = defaultLogLevel
    /// Bytes of guest RAM.
    public private(set) var guestMemory = defaultGuestMemory
    /// Whether `guest_mem` was given (else the guest's format decides).
    public private(set) var guestMemoryGiven = false
    /// The self-test selector's bytes (`test=<name>`), nil when not given.
    public private(set) var testName: UnsafeRawBufferPointer? = nil
    /// I/O port base of the serial console.
    public private(set) var serialPort = defaultSerialPort
    public private(set) var bench = false
    public private(set) var noscreen = false
    /// The guest platform asked for; nil: the guest's format decides.
    public private(set) var platform: GuestPlatformKind? = nil
    /// Whether the isolated platform may use the CPU's APIC virtualization.
    public private(set) var apicVirtualization = true
    /// `smp=on` (default): a vCPU of the passthrough guest on every other CPU;
    /// `smp=off`: those CPUs park in VMX root mode, hidden from the guest.
    public private(set) var guestSMP = true
    /// `cpus=<n>`: at most this many CPUs (n >= 1); nil: every CPU the firmware lists.
    public private(set) var cpuLimit: Int? = nil

    var warnings = InlineArray<8, Warning?>(repeating: nil)
    /// Warnings kept (at most `warningCapacity`).
    public private(set) var warningCount = 0
    /// Warnings beyond `warningCapacity` (still passed to the callback).
    public private(set) var droppedWarnings = 0

    /// All defaults: the command line of a boot without one.
    public init() {}

    /// Parses `line` (without its NUL; parsing also stops at a NUL).
    public init(_ line: UnsafeRawBufferPointer) {
        self.init(line) { _ in }
    }

    /// Parses `line`, also calling `onWarning` for every warning as it is found
    /// (the fixed list keeps only the first `warningCapacity`).
    public init(_ line: UnsafeRawBufferPointer, onWarning: (Warning) -> Void) {
        var end = 0
        while end < line.count, line[end] != 0 { end += 1 }
        var index = 0
        while index < end {
            while index < end, Self.isBlank(line[index]) { index += 1 }
            let start = index
            while index < end, !Self.isBlank(line[index]) { index += 1 }
            if start < index {
                if let warning = apply(UnsafeRawBufferPointer(rebasing: line[start..<index])) {
                    onWarning(warning)
                    if warningCount < Self.warningCapacity {
                        warnings[warningCount] = warning
                        warningCount += 1
                    } else {
                        droppedWarnings += 1
                    }
                }
            }
        }
    }

    static func isBlank(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// Applies one token; returns the warning it causes, if any.
    mutating func apply(_ token: UnsafeRawBufferPointer) -> Warning? {
        var split = 0
        while split < token.count, token[split] != UInt8(ascii: "=") { split += 1 }
        let key = UnsafeRawBufferPointer(rebasing: token[0..<split])
        let hasValue = split < token.count
        let value = UnsafeRawBufferPointer(rebasing: token[(hasValue ? split + 1 : split)..<token.count])
        func warn(_ kind: Warning.Kind) -> Warning { Warning(kind: kind, option: key, token: token) }

        if Self.equal(key, "bench") || Self.equal(key, "noscreen") {
            guard !hasValue else { return warn(.unexpectedValue) }
            if Self.equal(key, "bench") { bench = true } else { noscreen = true }
            return nil
        }
        let known = Self.equal(key, "log") || Self.equal(key, "guest_mem")
            || Self.equal(key, "test") || Self.equal(key, "serial") || Self.equal(key, "platform")
            || Self.equal(key, "apicv")
            || Self.equal(key, "cpus") || Self.equal(key, "smp")
        guard known else { return warn(.unknownOption) }
        guard !value.isEmpty else { return warn(.missingValue) }

        if Self.equal(key, "log") {
            if Self.equal(value, "error") { logLevel = .error }
            else if Self.equal(value, "warn") { logLevel = .warn }
            else if Self.equal(value, "info") { logLevel = .info }
            else if Self.equal(value, "debug") { logLevel = .debug }
            else { return warn(.malformedValue) }
        } else if Self.equal(key, "guest_mem") {
            guard let size = Self.parseSize(value), size != 0, size % frameSize == 0 else {
                return warn(.malformedValue)
            }
            guard size <= Self.maximumGuestMemory else { return warn(.valueOutOfRange) }
            guestMemory = size
            guestMemoryGiven = true
        } else if Self.equal(key, "serial") {
            guard let port = Self.parseNumber(value), port != 0, port <= 0xFFFF else {
                return warn(.malformedValue)
            }
            serialPort = UInt16(port)
        } else if Self.equal(key, "cpus") {
            guard let n = Self.parseNumber(value) else { return warn(.malformedValue) }
            guard n >= 1, n <= 4096 else { return warn(.valueOutOfRange) }
            cpuLimit = Int(n)
        } else if Self.equal(key, "platform") {
            if Self.equal(value, "passthrough") { platform = .passthrough }
            else if Self.equal(value, "isolated") { platform = .isolated }
            else { return warn(.malformedValue) }
        } else if Self.equal(key, "apicv") {
            if Self.equal(value, "on") { apicVirtualization = true }
            else if Self.equal(value, "off") { apicVirtualization = false }
            else { return warn(.malformedValue) }
        } else if Self.equal(key, "smp") {
            if Self.equal(value, "on") { guestSMP = true }
            else if Self.equal(value, "off") { guestSMP = false }
            else { return warn(.malformedValue) }
        } else {
            testName = value
        }
        return nil
    }

    /// Warning `index` in command line order; nil past `warningCount`.
    public func warning(at index: Int) -> Warning? {
        guard index >= 0, index < warningCount else { return nil }
        return warnings[index]
    }

    /// Whether `test=<name>` selected `name`: `if cmdline.isTest("ud2") { ... }`.
    public func isTest(_ name: StaticString) -> Bool {
        guard let testName else { return false }
        return Self.equal(testName, name)
    }

    /// Byte-wise equality of a span and an ASCII literal.
    public static func equal(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        var index = 0
        while index < bytes.count {
            if bytes[index] != literal.utf8Start[index] { return false }
            index += 1
        }
        return true
    }

    /// An unsigned number: decimal digits, or `0x`/`0X` and hex digits. nil when
    /// empty, not all digits, or above `UInt64.max`.
    public static func parseNumber(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        var index = 0
        var radix: UInt64 = 10
        if bytes.count >= 2, bytes[0] == UInt8(ascii: "0"),
           bytes[1] == UInt8(ascii: "x") || bytes[1] == UInt8(ascii: "X") {
            radix = 16
            index = 2
        }
        guard index < bytes.count else { return nil }
        var value: UInt64 = 0
        while index < bytes.count {
            guard let digit = digitValue(bytes[index]), digit < radix else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: radix)
            let (next, overflow2) = shifted.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { return nil }
            value = next
            index += 1
        }
        return value
    }

    static func digitValue(_ byte: UInt8) -> UInt64? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt64(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// A byte count: a number as in `parseNumber`, optionally followed by one
    /// suffix K, M or G (either case) for KiB, MiB, GiB. nil when empty, a bare
    /// suffix, an unknown suffix, or above `UInt64.max`. A hex number's last digit
    /// cannot be mistaken for a suffix: `0x1G` is 1 GiB, `0x1f` is 31.
    public static func parseSize(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard let last = bytes.last else { return nil }
        let shift: UInt64
        switch last {
        case UInt8(ascii: "K"), UInt8(ascii: "k"): shift = 10
        case UInt8(ascii: "M"), UInt8(ascii: "m"): shift = 20
        case UInt8(ascii: "G"), UInt8(ascii: "g"): shift = 30
        default: shift = 0
        }
        let digits = shift == 0 ? bytes : UnsafeRawBufferPointer(rebasing: bytes[0..<(bytes.count - 1)])
        guard let number = parseNumber(digits) else { return nil }
        guard number <= UInt64.max >> shift else { return nil }
        return number << shift
    }
}
