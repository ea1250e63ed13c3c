// The TSC's rate, for the microsecond delays of the AP start sequence.
// Measured against the PIT first: in Bochs the TSC counts instructions and
// the PIT follows the same emulated clock, so CPUID's nominal frequency
// (leaf 15H/16H) would make the delays far too long there.

/// TSC ticks per millisecond and where the figure came from.
struct TSCRate {
    enum Source { case pit, cpuid15, cpuid16, guess }
    var ticksPerMillisecond: UInt64
    var source: Source

    var sourceName: StaticString {
        switch source {
        case .pit: "PIT channel 2"
        case .cpuid15: "CPUID 15H"
        case .cpuid16: "CPUID 16H"
        case .guess: "a 5 GHz guess"
        }
    }

    /// Busy-waits at least `microseconds`.
    func wait(microseconds: UInt32) {
        let ticks = (UInt64(microseconds) * ticksPerMillisecond + 999) / 1000
        let start = cpu_rdtsc()
        while cpu_rdtsc() &- start < ticks { cpu_pause() }
    }

    static func measure() -> TSCRate {
        if let pit = pitTicksPerMillisecond() { return TSCRate(ticksPerMillisecond: pit, source: .pit) }
        let max = cpuid(0).eax
        if max >= 0x15 {
            let r = cpuid(0x15)
            if r.eax != 0, r.ebx != 0, r.ecx != 0 {
                return TSCRate(ticksPerMillisecond: UInt64(r.ecx) / 1000 * UInt64(r.ebx) / UInt64(r.eax), source: .cpuid15)
            }
        }
        if max >= 0x16, cpuid(0x16).eax & 0xFFFF != 0 {
            return TSCRate(ticksPerMillisecond: UInt64(cpuid(0x16).eax & 0xFFFF) * 1000, source: .cpuid16)
        }
        // Too fast a guess only makes the waits longer.
        return TSCRate(ticksPerMillisecond: 5_000_000, source: .guess)
    }

    /// PIT channel 2 in mode 0 (interrupt on terminal count) counting 10 ms
    /// at 1.193182 MHz, its gate through port 61H bit 0 and its output read
    /// back in bit 5 (8254 datasheet; the PC's port 61H). nil when the output
    /// never rises (no PIT).
    static func pitTicksPerMillisecond() -> UInt64? {
        let count: UInt16 = 11932           // 10 ms
        let port61 = port_in8(0x61)
        port_out8(0x61, (port61 & ~0x02) | 0x01)   // gate on, speaker off
        port_out8(0x43, 0xB0)               // channel 2, low then high byte, mode 0, binary
        port_out8(0x42, UInt8(truncatingIfNeeded: count))
        let start = cpu_rdtsc()
        port_out8(0x42, UInt8(truncatingIfNeeded: count >> 8))   // counting starts
        var polls = 0
        while port_in8(0x61) & 0x20 == 0 {
            polls += 1
            if polls > 50_000_000 { port_out8(0x61, port61); return nil }
        }
        let ticks = cpu_rdtsc() &- start
        port_out8(0x61, port61)
        return ticks >= 10 ? ticks / 10 : nil
    }
}
