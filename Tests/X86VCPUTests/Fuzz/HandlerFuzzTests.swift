import Foundation
import Testing

// Issue 11: a property fuzzer over the exit handlers (see FuzzProperty.swift).
// X86VCPU_FUZZ_CASES (default 10^5, as `make test` runs it: about 40 s on the
// 2-core test machine), X86VCPU_FUZZ_SEED (a run seed, decimal
// or 0x-hex; random when unset), X86VCPU_FUZZ_REPLAY=<case seed> (that case
// only, printed in full), X86VCPU_FUZZ_STRICT=1 (known findings fail too).

/// What one worker saw.
struct FuzzTally: Sendable {
    var resumed = 0
    var stops: [String: Int] = [:]
    var discards: [String: Int] = [:]
    var known: [Int: (count: Int, example: UInt64)] = [:]
    var failures: [(seed: UInt64, detail: String)] = []

    mutating func merge(_ o: FuzzTally) {
        resumed += o.resumed
        stops.merge(o.stops, uniquingKeysWith: +)
        discards.merge(o.discards, uniquingKeysWith: +)
        known.merge(o.known) { a, b in (a.count + b.count, min(a.example, b.example)) }
        failures += o.failures
    }
    var discarded: Int { discards.values.reduce(0, +) }
    var stopped: Int { stops.values.reduce(0, +) }
}

/// One tally per worker, each written by its own thread.
final class FuzzResults: @unchecked Sendable {
    private let lock = NSLock()
    private var tallies: [FuzzTally]
    init(count: Int) { tallies = Array(repeating: FuzzTally(), count: count) }
    func store(_ i: Int, _ t: FuzzTally) { lock.lock(); tallies[i] = t; lock.unlock() }
    var all: [FuzzTally] { lock.lock(); defer { lock.unlock() }; return tallies }
}

enum FuzzRun {
    static let environment = ProcessInfo.processInfo.environment
    static let strict = environment["X86VCPU_FUZZ_STRICT"] == "1"

    static func parse(_ text: String?) -> UInt64? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
        return UInt64(text)
    }

    /// Every `stride`-th case from `first`, on this thread.
    static func worker(run seed: UInt64, cases: Int, first: Int, stride: Int) -> FuzzTally {
        var t = FuzzTally()
        let memory = FuzzMemory()
        var i = first
        while i < cases {
            let c = FuzzCase.generate(seed: SplitMix64.caseSeed(run: seed, index: UInt64(i)))
            FuzzTrapReport.current(first, c.seed)
            t.record(c, c.run(on: memory))
            i += stride
        }
        return t
    }
}

extension FuzzTally {
    mutating func record(_ c: FuzzCase, _ outcome: FuzzOutcome) {
        switch outcome {
        case .resumed: resumed += 1
        case .stopped(let why): stops[why, default: 0] += 1
        case .discarded(let why): discards[why, default: 0] += 1
        case .failed(let f):
            if !FuzzRun.strict, let k = KnownFuzzFindings.classify(c, f) {
                let old = known[k.number] ?? (0, c.seed)
                known[k.number] = (old.count + 1, min(old.example, c.seed))
            } else {
                failures.append((c.seed, f.detail))
            }
        }
    }
}

@Suite struct HandlerFuzzTests {
    /// Replay depends on it: a case is a function of its seed alone, and case
    /// seeds of one run are distinct.
    @Test func aCaseIsAFunctionOfItsSeed() {
        let seeds = (0..<1000).map { SplitMix64.caseSeed(run: 42, index: UInt64($0)) }
        #expect(Set(seeds).count == seeds.count)
        for seed in seeds.prefix(50) {
            #expect(FuzzCase.generate(seed: seed).description == FuzzCase.generate(seed: seed).description)
        }
        #expect(FuzzCase.generate(seed: seeds[0]).description != FuzzCase.generate(seed: seeds[1]).description)
    }

    @Test func everyExitLeavesAValidVMCSOrAStop() throws {
        if let replay = FuzzRun.parse(FuzzRun.environment["X86VCPU_FUZZ_REPLAY"]) {
            let c = FuzzCase.generate(seed: replay)
            let outcome = c.run()
            print(c.description)
            print("outcome: \(outcome)")
            print("fuzz: replayed case \(hex(replay))")
            if case .failed(let f) = outcome {
                let known = FuzzRun.strict ? nil : KnownFuzzFindings.classify(c, f)
                if let known { print("known finding \(known.number): \(known.rule)") }
                #expect(known != nil, "case \(hex(replay)): \(f.detail)")
            }
            return
        }
        let cases = Int(FuzzRun.environment["X86VCPU_FUZZ_CASES"] ?? "") ?? 100_000
        let seed = FuzzRun.parse(FuzzRun.environment["X86VCPU_FUZZ_SEED"]) ?? UInt64.random(in: 0...UInt64.max)
        print("fuzz: seed \(hex(seed)), \(cases) cases\(FuzzRun.strict ? ", strict" : "")")
        FuzzTrapReport.install()
        let workers = max(1, min(FuzzTrapReport.slots, ProcessInfo.processInfo.activeProcessorCount))
        // Threads of their own: the cooperative pool kept the two workers at one core between them.
        let results = FuzzResults(count: workers)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            results.store(w, FuzzRun.worker(run: seed, cases: cases, first: w, stride: workers))
        }
        var tally = FuzzTally()
        for t in results.all { tally.merge(t) }
        print("fuzz: \(tally.resumed) resumed and checked, \(tally.stopped) stopped \(tally.stops.sorted { $0.key < $1.key }), "
              + "\(tally.discarded) discarded")
        for (why, n) in tally.discards.sorted(by: { $0.value > $1.value }).prefix(5) { print("fuzz:   discarded \(n): \(why)") }
        for k in KnownFuzzFindings.all {
            if let seen = tally.known[k.number] {
                print("fuzz: known finding \(k.number) (\(seen.count) cases, e.g. \(hex(seen.example))): \(k.rule)")
            }
        }
        tally.failures.sort { $0.seed < $1.seed }
        for f in tally.failures {
            print("fuzz: FAILED case \(hex(f.seed)): \(f.detail)")
            print("fuzz:   replay: make fuzz REPLAY=\(hex(f.seed))")
        }
        #expect(tally.failures.count == 0, "failing cases, run seed \(hex(seed))")
        // The generator must keep producing valid pre-states that reach a checked entry.
        #expect(tally.discarded * 10 < cases * 3, "\(tally.discarded) of \(cases) pre-states discarded")
        #expect(tally.resumed * 3 > cases, "only \(tally.resumed) of \(cases) cases resumed the guest")
    }
}
