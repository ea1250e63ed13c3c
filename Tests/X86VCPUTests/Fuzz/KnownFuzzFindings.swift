import VMX
import X86VCPU

// Failures the property run counts as known findings instead of failing.
// Each entry is one finding of FuzzFindingsTests: a self-contained predicate
// over the case (pre-state and exit) and what the checker reported. When a
// finding is fixed, delete its entry here and the `.disabled` of its test.
// X86VCPU_FUZZ_STRICT=1 ignores this list.

struct KnownFinding: Sendable {
    let number: Int
    let rule: String
    let matches: @Sendable (FuzzCase, FuzzFailure) -> Bool
}

enum KnownFuzzFindings {
    // Findings 1-13 (FuzzFindingsTests) are fixed; a new one goes here
    // with its test until its fix lands.
    static let all: [KnownFinding] = []

    static func classify(_ c: FuzzCase, _ f: FuzzFailure) -> KnownFinding? {
        all.first { $0.matches(c, f) }
    }
}
