import Foundation
import TestSupport
import X86VCPU

// A Swift trap in a handler kills the test process: the property's worst
// failure. Each worker notes the case it runs in a slot, and a signal
// handler prints those case seeds (with write(2) only) before the process dies.

enum FuzzTrapReport {
    static let slots = 8
    nonisolated(unsafe) static let seeds = UnsafeMutablePointer<UInt64>.allocate(capacity: slots)
    nonisolated(unsafe) static let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 128)
    nonisolated(unsafe) static var installed = false

    static func current(_ worker: Int, _ seed: UInt64) { seeds[worker % slots] = seed }

    static func install() {
        guard !installed else { return }
        installed = true
        seeds.initialize(repeating: 0, count: slots)
        for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT] {
            signal(sig) { sig in
                for w in 0..<FuzzTrapReport.slots where FuzzTrapReport.seeds[w] != 0 {
                    FuzzTrapReport.writeLine(FuzzTrapReport.seeds[w])
                }
                signal(sig, SIG_DFL)
                raise(sig)
            }
        }
    }

    /// "fuzz: TRAP in case 0x... (one of the cases running); replay: ..." without allocating.
    static func writeLine(_ seed: UInt64) {
        var n = 0
        func put(_ s: StaticString) {
            s.withUTF8Buffer { for b in $0 { buffer[n] = b; n += 1 } }
        }
        func putHex() {
            put("0x")
            for shift in stride(from: 60, through: 0, by: -4) {
                let d = UInt8(seed >> UInt64(shift) & 0xF)
                buffer[n] = d < 10 ? 48 + d : 55 + d; n += 1
            }
        }
        put("\nfuzz: TRAP in case "); putHex(); put(" (one of the cases running); replay: make fuzz REPLAY="); putHex(); put("\n")
        _ = write(2, buffer, n)
    }
}
