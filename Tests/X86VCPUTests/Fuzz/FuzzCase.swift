import TestSupport
import X86Arch
import VMX
import X86VCPU

// One fuzz case: a guest state a guest could legitimately be in at a VM exit,
// and the exit. Everything derives from one 64-bit case seed, so a case is
// replayed from its seed alone (X86VCPU_FUZZ_REPLAY).

/// splitmix64: small, fast, and the same on every platform.
struct SplitMix64 {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: UInt64) -> UInt64 { next() % n }
    mutating func chance(_ percent: UInt64) -> Bool { below(100) < percent }
    mutating func pick<T>(_ choices: [T]) -> T { choices[Int(below(UInt64(choices.count)))] }
    /// A random subset of `bits`: sparse (about a quarter) or about half, half the time each.
    mutating func subset(_ bits: UInt64) -> UInt64 { next() & next() & bits | next() & bits & (chance(50) ? 0 : bits) }

    /// The seed of case `index` of a run: independent of the worker that runs it.
    static func caseSeed(run: UInt64, index: UInt64) -> UInt64 {
        var g = SplitMix64(run ^ (index &* 0xD1B5_4A32_D192_ED03))
        return g.next()
    }
}

enum FuzzMode: CaseIterable, Sendable {
    case real, protected32, paging32, pae32, long64, compatibility

    var isIA32e: Bool { self == .long64 || self == .compatibility }
    var is64Bit: Bool { self == .long64 }
    var paging: Bool { self == .paging32 || self == .pae32 || isIA32e }
}

enum FuzzExit: Sendable {
    case movToCR(cr: Int, gpr: Int, value: UInt64)
    case movFromCR(cr: Int, gpr: Int)
    case clts
    case lmsw(source: UInt16)
    case xsetbv(ecx: UInt32, value: UInt64)
    case rdmsr(UInt32)
    case wrmsr(UInt32, UInt64)
    case io(port: UInt16, width: OperandWidth, isIn: Bool, value: UInt64)
    /// INS/OUTS; addressSize as the instruction-information field encodes it (0: 16, 1: 32, 2: 64 bits).
    case stringIO(port: UInt16, width: OperandWidth, isIn: Bool, rep: Bool, addressSize: UInt32, segment: UInt32,
                  index: UInt64, count: UInt64)
    case cpuid(leaf: UInt32, subleaf: UInt32)
    case hlt
    /// An NMI exit, with the IDT-vectoring information of the event it interrupted.
    case nmi(idtVectoring: UInt32, errorCode: UInt32)

    /// Executes only at CPL 0 (else a #GP the CPU raises before any exit).
    var privileged: Bool {
        switch self {
        case .movToCR, .movFromCR, .clts, .lmsw, .xsetbv, .rdmsr, .wrmsr, .hlt: return true
        case .io, .stringIO, .cpuid, .nmi: return false
        }
    }
}

/// The guest state before the exit, as the guest sees it.
struct FuzzState: Sendable {
    var mode: FuzzMode
    var cr0: UInt64          // guest view
    var cr0ShadowStale: UInt64   // read-shadow bits the guest owns: whatever was last written
    var cr4: UInt64          // guest view (VMXE hidden)
    var cr4ShadowStale: UInt64
    var cr3: UInt64
    var efer: UInt64
    var cpl: UInt32
    var csRights: UInt32
    var rflags: UInt64
    var interruptibility: UInt32
    var pendingDebug: UInt64
    var rip: UInt64
    var rsp: UInt64
    var gprs: [UInt64]       // 16, RSP slot unused
    var events: [PendingEvent]
    var pdptes: [UInt64]     // the PDPT at 3000H (PAE), VMCS copy as the last load left it
    var altPDPT: [UInt64]    // a second PDPT at 3020H for MOV to CR3
    var reflectsInterrupts: Bool
    var segmentBase: UInt64  // DS/ES base
    /// A CPU that also has UMIP, LA57, PKE and CET (IA32_VMX_CR4_FIXED1), which Skylake-X lacks.
    var wideCR4: Bool
}

struct FuzzCase: Sendable {
    var seed: UInt64
    var state: FuzzState
    var exit: FuzzExit
    var length: UInt32
}

// Bits of the architectural registers the generator uses.
enum Bit {
    static let pe: UInt64 = 1, mp: UInt64 = 1 << 1, em: UInt64 = 1 << 2, ts: UInt64 = 1 << 3, et: UInt64 = 1 << 4
    static let ne: UInt64 = 1 << 5, wp: UInt64 = 1 << 16, am: UInt64 = 1 << 18, nw: UInt64 = 1 << 29
    static let cd: UInt64 = 1 << 30, pg: UInt64 = 1 << 31
    static let pse: UInt64 = 1 << 4, pae: UInt64 = 1 << 5, la57: UInt64 = 1 << 12, vmxe: UInt64 = 1 << 13
    static let pcide: UInt64 = 1 << 17, osxsave: UInt64 = 1 << 18, pke: UInt64 = 1 << 22, cet: UInt64 = 1 << 23
    static let sce: UInt64 = 1, lme: UInt64 = 1 << 8, lma: UInt64 = 1 << 10, nxe: UInt64 = 1 << 11
    static let tf: UInt64 = 1 << 8, ifl: UInt64 = 1 << 9, df: UInt64 = 1 << 10
}

extension FuzzCase {
    /// MSRs the handlers know, and their neighbours.
    static let msrs: [UInt32] = [0x10, 0x17, 0x1B, 0x3A, 0x48, 0x49, 0x79, 0x8B, 0xFE, 0x174, 0x175, 0x176, 0x1A0,
                                 0x1D9, 0x277, 0x2FF, 0xDA0, 0xC000_0080, 0xC000_0081, 0xC000_0082, 0xC000_0084,
                                 0xC000_0100, 0xC000_0101, 0xC000_0102, 0xC000_0103]

    static let skylakeCR4: UInt64 = BochsCapabilities.corei7_skylake_x.cr4Fixed1
    static let wideCR4Bits: UInt64 = 1 << 11 | Bit.la57 | Bit.pke | Bit.cet

    static func generate(seed: UInt64) -> FuzzCase {
        var g = SplitMix64(seed)
        let mode = g.pick(FuzzMode.allCases)
        let wide = g.chance(25)
        let cr4Allowed = skylakeCR4 | (wide ? wideCR4Bits : 0)
        let exit = generateExit(&g, mode)

        // CR0: PE/PG from the mode; the rest any consistent choice.
        var cr0 = Bit.et | Bit.ne | g.subset(Bit.mp | Bit.em | Bit.ts | Bit.wp | Bit.am)
        cr0 |= g.pick([0, 0, Bit.cd, Bit.cd | Bit.nw])
        switch mode {
        case .real: break
        case .protected32: cr0 |= Bit.pe
        case .paging32, .pae32, .long64, .compatibility: cr0 |= Bit.pe | Bit.pg
        }
        // CR4: any bits the CPU has, within the rules a valid state keeps.
        var cr4 = g.subset(cr4Allowed & ~(Bit.vmxe | Bit.la57 | Bit.pae | Bit.pcide))
        switch mode {
        case .pae32, .long64, .compatibility: cr4 |= Bit.pae
        case .paging32: cr4 |= Bit.pse
        case .real, .protected32: if g.chance(30) { cr4 |= Bit.pae }
        }
        if mode.isIA32e && g.chance(30) { cr4 |= Bit.pcide & cr4Allowed }
        if mode.isIA32e && g.chance(20) { cr4 |= Bit.la57 & cr4Allowed }   // 5-level paging
        if cr0 & Bit.wp == 0 { cr4 &= ~Bit.cet }   // CET needs WP (SDM 2.5)
        if case .xsetbv = exit { cr4 |= Bit.osxsave & cr4Allowed }   // else #UD before any exit

        var efer = g.subset(Bit.sce | Bit.nxe)
        if mode.isIA32e { efer |= Bit.lme | Bit.lma } else if cr0 & Bit.pg == 0 && g.chance(20) { efer |= Bit.lme }

        // CPL 0 for privileged instructions; CPL 0 in real mode.
        var cpl: UInt32 = mode == .real || exit.privileged || g.chance(50) ? 0 : UInt32(g.below(4))
        if mode == .real { cpl = 0 }
        var csRights: UInt32
        switch mode {
        case .real: csRights = 0x9B
        case .long64: csRights = 0xA09B
        case .protected32, .paging32, .pae32: csRights = g.chance(80) ? 0xC09B : 0x809B   // D = 1 or 0
        case .compatibility: csRights = g.chance(80) ? 0xC09B : 0x809B
        }
        csRights |= cpl << 5

        var rflags: UInt64 = 0x2 | g.subset(0x8D5 | 1 << 14 | 1 << 16 | 1 << 18 | 1 << 21) | g.below(4) << 12
        if g.chance(10) { rflags |= Bit.tf }
        if g.chance(50) { rflags |= Bit.ifl }
        if g.chance(30) { rflags |= Bit.df }
        switch exit {
        case .io, .stringIO:
            if cpl > (rflags >> 12) & 3 { rflags |= 3 << 12 }   // else #GP before any exit (no TSS bitmap)
        default: break
        }
        var interruptibility: UInt32 = 0
        switch g.below(6) {
        case 0: if rflags & Bit.ifl != 0 { interruptibility = 1 }   // STI blocking needs IF = 1
        case 1: interruptibility = 2
        default: break
        }
        if g.chance(20) { interruptibility |= 8 }
        if case .nmi(let vectoring, _) = exit, vectoring >> 31 == 1 {
            // The exit saved the state from before the interrupted delivery began,
            // when the guest could take that event (SDM 28.2.4, 27.3.1.5).
            switch vectoring >> 8 & 7 {
            case 0: rflags |= Bit.ifl; interruptibility &= ~3
            case 2: interruptibility &= ~0xB
            default: break
            }
        }
        // SDM 27.3.1.5: BS must reflect TF under STI / MOV SS blocking.
        let pendingDebug: UInt64 = interruptibility & 3 != 0 && rflags & Bit.tf != 0 ? 1 << 14 : 0

        let rip: UInt64
        switch mode {
        case .real: rip = g.below(0xFFF0)
        case .long64: rip = g.chance(50) ? g.below(0x0000_7FFF_FFFF_FF00) : 0xFFFF_8000_0000_0000 | g.below(0x7FFF_FFFF_FF00)
        default: rip = g.below(0xFFFF_FF00)
        }
        var gprs = (0..<16).map { _ in randomValue(&g) }
        if !mode.is64Bit && g.chance(50) { gprs = gprs.map { $0 & 0xFFFF_FFFF } }

        var events: [PendingEvent] = []
        for _ in 0..<g.below(4) { events.append(randomEvent(&g)) }

        let validPDPTE: [UInt64] = [0x5001, 0, 0x7001, 0x5001 | 1 << 63, 0x5019]   // P, absent, PWT/PCD
        let pdptes = (0..<4).map { _ in g.chance(90) ? g.pick(validPDPTE) : randomPDPTE(&g) }
        let altPDPT = (0..<4).map { _ in g.chance(60) ? g.pick(validPDPTE) : randomPDPTE(&g) }

        var cr3: UInt64
        switch mode {
        case .real, .protected32: cr3 = g.chance(50) ? 0 : 0x3000
        case .paging32: cr3 = 0x6000
        case .pae32: cr3 = 0x3000
        case .long64, .compatibility: cr3 = 0x1000 | (cr4 & Bit.pcide != 0 ? g.below(0x1000) : g.subset(0x18))
        }
        if mode == .pae32 { cr3 |= g.subset(0x18) }

        let state = FuzzState(
            mode: mode, cr0: cr0, cr0ShadowStale: g.chance(50) ? cr0 : g.next() & 0xFFFF_FFFF,
            cr4: cr4, cr4ShadowStale: g.chance(50) ? cr4 : g.next() & 0x3F_FFFF,
            cr3: cr3, efer: efer, cpl: cpl, csRights: csRights, rflags: rflags,
            interruptibility: interruptibility, pendingDebug: pendingDebug, rip: rip, rsp: g.below(0x10_0000),
            gprs: gprs, events: events, pdptes: pdptes, altPDPT: altPDPT, reflectsInterrupts: g.chance(50),
            segmentBase: g.chance(70) ? 0 : g.below(0x10_0000) & ~0xF, wideCR4: wide)
        return FuzzCase(seed: seed, state: state, exit: exit, length: instructionLength(&g, exit))
    }

    static func randomValue(_ g: inout SplitMix64) -> UInt64 {
        switch g.below(6) {
        case 0: return g.below(0x100)
        case 1: return g.below(0x20_0000)
        case 2: return g.next() & 0xFFFF_FFFF
        case 3: return g.next()
        case 4: return 0xFFFF_8000_0000_0000 | g.next() >> 17   // canonical high half
        default: return 1 << g.below(64)
        }
    }

    static func randomPDPTE(_ g: inout SplitMix64) -> UInt64 {
        // Present, with a reserved bit (2:1, 8:5, or above MAXPHYADDR) or not.
        let reserved: UInt64 = g.pick([1 << 1, 1 << 2, 1 << 5, 1 << 7, 1 << 8, 1 << 45, 1 << 62])
        return 0x5001 | (g.chance(80) ? reserved : 0)
    }

    // No #CP: the fuzzed CPU (Skylake-X) has no CET.
    static let errorCodeVectors: Set<UInt8> = [8, 10, 11, 12, 13, 14, 17]

    static func randomEvent(_ g: inout SplitMix64) -> PendingEvent {
        switch g.below(4) {
        case 0: return .nmi
        case 1:
            let vector = g.pick([0, 1, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20] as [UInt8])
            let code: UInt32? = errorCodeVectors.contains(vector) ? UInt32(g.below(0x1_0000)) : nil
            return .exception(ExceptionVector(rawValue: vector)!, errorCode: code)
        default: return .externalInterrupt(UInt8(32 + g.below(224)))
        }
    }

    /// An IDT-vectoring information field as hardware stores it (SDM 25.9.3):
    /// an error code only for those exceptions that push one in protected mode.
    static func randomIDTVectoring(_ g: inout SplitMix64, protectedMode: Bool) -> UInt32 {
        let valid: UInt32 = 1 << 31
        switch g.below(7) {
        case 0: return 0
        case 1: return valid | UInt32(32 + g.below(224))                     // external interrupt
        case 2: return valid | 2 << 8 | 2                                     // NMI
        case 3:
            let vector = g.pick([0, 1, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20] as [UInt8])
            let code: UInt32 = protectedMode && errorCodeVectors.contains(vector) ? 1 << 11 : 0
            return valid | 3 << 8 | code | UInt32(vector)
        case 4: return valid | 4 << 8 | UInt32(g.below(256))                 // INT n
        case 5: return valid | 5 << 8 | 1                                     // INT1
        default: return valid | 6 << 8 | UInt32(g.pick([3, 4] as [UInt32]))  // INT3, INTO
        }
    }

    static func generateExit(_ g: inout SplitMix64, _ mode: FuzzMode) -> FuzzExit {
        let gprLimit: UInt64 = mode.is64Bit ? 16 : 8
        switch g.below(14) {
        case 0, 1, 2:
            var crs = [0, 0, 3, 4, 4]
            if mode.is64Bit { crs.append(8) }
            let cr = g.pick(crs)
            var value: UInt64
            switch cr {
            case 0: value = g.chance(90) ? g.subset(0xE005_003F | 1 << 31) : randomValue(&g)
            case 3: value = g.chance(80) ? g.pick([0x1000, 0x3000, 0x3020, 0x6000, 0x10_0000]) | g.subset(0x18) : randomValue(&g)
                if mode.is64Bit && g.chance(20) { value |= 1 << 63 }   // PCID no-flush
            case 4: value = g.chance(90) ? g.subset(0xFF_FFFF) : randomValue(&g)
            default: value = g.chance(90) ? g.below(16) : randomValue(&g)
            }
            // Outside 64-bit mode a register's upper half is whatever 64-bit code left (SDM 3.4.1.1).
            if !mode.is64Bit && g.chance(30) { value |= g.next() << 32 }
            return .movToCR(cr: cr, gpr: Int(g.below(gprLimit)), value: value)
        case 3:
            return .movFromCR(cr: mode.is64Bit ? g.pick([3, 8]) : 3, gpr: Int(g.below(gprLimit)))
        case 4: return g.chance(50) ? .clts : .lmsw(source: UInt16(truncatingIfNeeded: g.next()))
        case 5:
            let ecx: UInt32 = g.chance(85) ? 0 : UInt32(truncatingIfNeeded: g.pick([1, g.next()]))
            let value = g.chance(80) ? g.subset(0xFF) : randomValue(&g)
            return .xsetbv(ecx: ecx, value: value)
        case 6: return .rdmsr(g.chance(80) ? g.pick(msrs) : UInt32(truncatingIfNeeded: g.next()))
        case 7: return .wrmsr(g.chance(80) ? g.pick(msrs) : UInt32(truncatingIfNeeded: g.next()), randomValue(&g))
        case 8:
            return .io(port: g.chance(80) ? g.pick([0x20, 0x21, 0x40, 0x60, 0x70, 0x80, 0x3F8, 0xCF8, 0xCFC]) : UInt16(truncatingIfNeeded: g.next()),
                       width: g.pick([.byte, .word, .dword]), isIn: g.chance(50), value: randomValue(&g))
        case 9, 10:
            let sizes: [UInt32] = mode.is64Bit ? [1, 2] : [0, 1]
            return .stringIO(port: g.pick([0x60, 0x80, 0x1F0, 0x3F8]), width: g.pick([.byte, .word, .dword]),
                             isIn: g.chance(50), rep: g.chance(70), addressSize: g.pick(sizes),
                             segment: UInt32(g.below(6)),
                             index: g.chance(80) ? g.below(0x1F_0000) : randomValue(&g),
                             count: g.chance(80) ? g.below(40) : randomValue(&g))
        case 11: return .cpuid(leaf: g.chance(80) ? g.pick([0, 1, 4, 6, 7, 0xB, 0xD, 0x4000_0000, 0x8000_0000, 0x8000_0001, 0x8000_0008])
                                                     : UInt32(truncatingIfNeeded: g.next()),
                                  subleaf: UInt32(g.below(3)))
        case 12: return .hlt
        default:
            return .nmi(idtVectoring: randomIDTVectoring(&g, protectedMode: mode != .real), errorCode: UInt32(g.below(0x1_0000)))
        }
    }

    static func instructionLength(_ g: inout SplitMix64, _ exit: FuzzExit) -> UInt32 {
        let base: UInt32
        switch exit {
        case .movToCR, .movFromCR, .xsetbv, .lmsw: base = 3
        case .clts, .rdmsr, .wrmsr, .cpuid: base = 2
        case .io, .stringIO, .hlt: base = 1
        case .nmi(let info, _):
            // Software events the exit interrupted leave their instruction's length (SDM 28.2.4).
            let type = info >> 8 & 7
            return info >> 31 == 1 && (4...6).contains(type) ? (type == 4 ? 2 : 1) : 0
        }
        return g.chance(70) ? base : base + UInt32(g.below(UInt64(16 - base)))   // prefixes
    }
}
