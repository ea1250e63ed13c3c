import Foundation
import TestSupport
import X86Arch
import VMX
import X86VCPU

// The property: after one exit, the run either stopped with a reason (not a
// failed VMX instruction or VM entry), or every VM entry it made (the one
// carrying the pre-state and its injection, and the one after the handler)
// passes the VM-entry checker, including the event-injection checks of
// SDM 27.2.1.3. A case whose pre-state does not pass is discarded.

struct FuzzFailure: Sendable {
    /// 1: the entry before the fuzzed exit (injection of queued events); 2: after its handler.
    var entry: Int
    /// The checker's rule, nil when the run itself failed.
    var rule: VMEntryRule?
    var detail: String
}

enum FuzzOutcome: Sendable {
    case resumed
    case stopped(String)
    case discarded(String)
    case failed(FuzzFailure)
}

/// Collects what the checks inside the fake's entries find.
private final class EntryLog {
    var violations: [(entry: Int, violation: VMEntryViolation)] = []
    var reachedEnd = false
}

extension FuzzCase {
    static let physicalAddressWidth = 40
    static let validPDPTable: UInt64 = 0x3000

    var rigMode: GuestStartMode {
        switch state.mode {
        case .real: return .real
        case .protected32, .paging32, .pae32: return .protected32
        case .long64, .compatibility: return .long64
        }
    }

    /// Writes the pre-state into a fresh rig's VMCS, registers and RAM.
    func apply(_ rig: inout VCPURig) {
        let s = state
        let caps = rig.vcpu.capabilities
        // The views the vCPU uses (VCPU.init): which bits the shadows own.
        let cr0View = GuestControlRegisterView.cr0(fixed: caps.cr0Fixed, unrestrictedGuest: true)
        let cr4View = GuestControlRegisterView.cr4(fixed: caps.cr4Fixed, tracked: Bit.osxsave | Bit.pke)
        typealias GN = VMCSFields.GuestNatural
        typealias G32 = VMCSFields.Guest32
        typealias G16 = VMCSFields.Guest16
        typealias G64 = VMCSFields.Guest64
        typealias CN = VMCSFields.ControlNatural
        rig.preset(GN.cr0, cr0View.realValue(forGuestValue: s.cr0))
        rig.preset(CN.cr0ReadShadow, cr0View.readShadow(forGuestValue: s.cr0) & cr0View.guestHostMask
                   | s.cr0ShadowStale & ~cr0View.guestHostMask)
        rig.preset(GN.cr4, cr4View.realValue(forGuestValue: s.cr4))
        rig.preset(CN.cr4ReadShadow, cr4View.readShadow(forGuestValue: s.cr4) & cr4View.guestHostMask
                   | s.cr4ShadowStale & ~cr4View.guestHostMask)
        rig.preset(GN.cr3, s.cr3)
        rig.preset(G64.ia32EFER, s.efer)
        if s.mode != .real {
            let data: UInt32 = 0xC093 | s.cpl << 5   // flat read/write data at DPL = CPL
            rig.preset(G16.csSelector, UInt16(0x08 | s.cpl))
            rig.preset(G32.csAccessRights, s.csRights)
            for (sel, rights) in [(G16.ssSelector, G32.ssAccessRights), (G16.dsSelector, G32.dsAccessRights),
                                  (G16.esSelector, G32.esAccessRights), (G16.fsSelector, G32.fsAccessRights),
                                  (G16.gsSelector, G32.gsAccessRights)] {
                rig.preset(sel, UInt16(0x10 | s.cpl))
                rig.preset(rights, data)
            }
        } else {
            rig.preset(G16.dsSelector, UInt16(s.segmentBase >> 4))
            rig.preset(G16.esSelector, UInt16(s.segmentBase >> 4))
        }
        rig.preset(GN.dsBase, s.segmentBase)
        rig.preset(GN.esBase, s.segmentBase)
        rig.preset(GN.rflags, s.rflags)
        rig.preset(G32.interruptibilityState, s.interruptibility)
        rig.preset(GN.pendingDebugExceptions, s.pendingDebug)
        rig.preset(GN.rip, s.rip)
        rig.preset(GN.rsp, s.rsp)
        for i in 0..<16 where i != 4 { _ = rig.vcpu.registers.setFull(i, s.gprs[i]) }
        rig.vcpu.reflectsExternalInterrupts = s.reflectsInterrupts

        // Identity maps of the first 2 MiB for each paging mode.
        let m = rig.memory
        m.store64(0x2003, at: 0x1000)     // PML4 -> PDPT
        m.store64(0x4003, at: 0x2000)     // PDPT -> PD
        m.store64(0x83, at: 0x4000)       // 2 MiB page
        m.store64(0x83, at: 0x5000)       // PAE PD
        m.store64(0x83, at: 0x7000)
        m.store64(0x83, at: 0x6000)       // 32-bit PD, 4 MiB page (PSE)
        for i in 0..<4 {
            m.store64(s.pdptes[i], at: Self.validPDPTable + UInt64(i) * 8)
            m.store64(s.altPDPT[i], at: Self.validPDPTable + 0x20 + UInt64(i) * 8)
        }
        let pdpteFields = [G64.pdpte0, G64.pdpte1, G64.pdpte2, G64.pdpte3]
        for i in 0..<4 { rig.preset(pdpteFields[i], s.mode == .pae32 ? s.pdptes[i] : 0) }

        // The exit's operands.
        switch exit {
        case .movToCR(_, let gpr, let value):
            if gpr == 4 { rig.preset(GN.rsp, value) } else { _ = rig.vcpu.registers.setFull(gpr, value) }
        case .xsetbv(let ecx, let value), .wrmsr(let ecx, let value):
            rig.vcpu.registers.rcx = UInt64(ecx)
            rig.vcpu.registers.rax = value & 0xFFFF_FFFF
            rig.vcpu.registers.rdx = value >> 32
        case .rdmsr(let msr): rig.vcpu.registers.rcx = UInt64(msr)
        case .io(_, _, _, let value): rig.vcpu.registers.rax = value
        case .stringIO(_, _, let isIn, _, _, _, let index, let count):
            if isIn { rig.vcpu.registers.rdi = index } else { rig.vcpu.registers.rsi = index }
            rig.vcpu.registers.rcx = count
        case .cpuid(let leaf, let subleaf):
            rig.vcpu.registers.rax = UInt64(leaf)
            rig.vcpu.registers.rcx = UInt64(subleaf)
        case .movFromCR, .clts, .lmsw, .hlt, .nmi: break
        }
        for event in s.events { _ = rig.vcpu.queue(event) }
    }

    var scriptedExit: ScriptedExit {
        switch exit {
        case .movToCR(let cr, let gpr, _): return .crAccess(cr: cr, type: .movToCR, gpr: gpr, length: length)
        case .movFromCR(let cr, let gpr): return .crAccess(cr: cr, type: .movFromCR, gpr: gpr, length: length)
        case .clts: return .crAccess(cr: 0, type: .clts, length: length)
        case .lmsw(let source): return .crAccess(cr: 0, type: .lmsw, lmswSource: source, length: length)
        case .xsetbv: return ScriptedExit(.xsetbv, length: length)
        case .rdmsr: return ScriptedExit(.rdmsr, length: length)
        case .wrmsr: return ScriptedExit(.wrmsr, length: length)
        case .io(let port, let width, let isIn, _): return .io(port: port, width: width, in: isIn, length: length)
        case .stringIO(let port, let width, let isIn, let rep, let size, let segment, _, _):
            // Instruction information (SDM Table 28-8): address size 9:7, segment 17:15.
            return ScriptedExit.io(port: port, width: width, in: isIn, string: true, rep: rep, length: length)
                .with { $0.instructionInformation = size << 7 | segment << 15 }
        case .cpuid: return ScriptedExit(.cpuid, length: length)
        case .hlt: return ScriptedExit(.hlt, length: length)
        case .nmi(let vectoring, let code):
            return ScriptedExit.exceptionOrNMI(info: 0x8000_0202).with {
                $0.idtVectoringInformation = vectoring
                $0.idtVectoringErrorCode = vectoring & 1 << 11 != 0 ? code : 0
                $0.instructionLength = length
            }
        }
    }

    /// Runs the case on a fresh rig.
    func run() -> FuzzOutcome { run(on: FuzzMemory()) }

    /// Runs the case on a fresh vCPU over `reused` RAM and frames.
    func run(on reused: FuzzMemory) -> FuzzOutcome {
        reused.reset(all: reused.dirty)
        if case .stringIO(_, _, let isIn, _, _, _, _, _) = exit {
            // OUTS reads a pattern, so that the bytes sent tell where they came from.
            if !isIn { reused.fillPattern() }
            reused.dirty = true
        }
        var rig: VCPURig
        // The host as VMX root leaves it (VMXON needs CR4.VMXE): the host state is not under test.
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        hw.cpu.cr4 |= Bit.vmxe
        if state.wideCR4 { hw.cpu.msrs[0x489, default: 0] |= Self.wideCR4Bits }
        do { rig = try VCPURig(rigMode, hw: hw, frames: reused.frames, memory: reused.memory) } catch { return .failed(FuzzFailure(entry: 0, rule: nil, detail: "rig: \(error)")) }
        apply(&rig)
        let caps = rig.vcpu.capabilities
        let env = { (vmcs: FakeVMCS) in
            VMEntryChecker(vmcs: vmcs, capabilities: caps, physicalAddressWidth: Self.physicalAddressWidth).check()
        }
        if let v = env(rig.hw.vmcs) { return .discarded("\(v.rule)") }

        let log = EntryLog()
        // The fake clears the injection's valid bit before the guest runs: check the entry as it was.
        func checkEntry(_ n: Int) -> (inout GeneralRegisters, FakeVMCS) -> Void {
            return { _, vmcs in
                let field = VMCSFields.Control32.entryInterruptionInformation
                let cleared = vmcs.value(field) ?? 0
                vmcs.preset(field, hw.entries.last?.interruptionInformation ?? 0)
                if let v = env(vmcs) { log.violations.append((n, v)) }
                vmcs.preset(field, UInt32(cleared))
                if n == 2 { log.reachedEnd = true }
            }
        }
        let exit = rig.run([scriptedExit.then(checkEntry(1)), ScriptedExit(.tripleFault).then(checkEntry(2))])
        if let (n, v) = log.violations.first {
            return .failed(FuzzFailure(entry: n, rule: v.ruleID,
                                       detail: "entry \(n): \(v.fieldName) = \(hex(v.value)): \(v.rule) (SDM \(v.section))"))
        }
        switch exit {
        case .instructionFailure, .entryFailure:
            return .failed(FuzzFailure(entry: 2, rule: nil, detail: "run failed: \(exit)"))
        default:
            guard log.reachedEnd else { return .stopped(Self.stopKind(exit)) }
            if let wrong = controlRegisterError(rig) { return .failed(FuzzFailure(entry: 2, rule: nil, detail: "MOV CR: \(wrong)")) }
            if let wrong = stringIOError(rig) { return .failed(FuzzFailure(entry: 2, rule: nil, detail: "string I/O: \(wrong)")) }
            return .resumed
        }
    }

    /// MOV to CR4 rules the VM-entry checks cannot see, being about the
    /// change rather than the result (SDM "MOV—Move to/from Control Registers").
    func controlRegisterError(_ rig: borrowing VCPURig) -> String? {
        guard case .movToCR(4, _, let raw) = exit, rig.rip == state.rip &+ UInt64(length) else { return nil }
        let value = state.mode.is64Bit ? raw : raw & 0xFFFF_FFFF
        let s = state
        if s.efer & Bit.lma != 0 && (value ^ s.cr4) & Bit.la57 != 0 { return "CR4.LA57 changed in IA-32e mode" }
        if s.cr4 & Bit.pcide == 0 && value & Bit.pcide != 0 && s.cr3 & 0xFFF != 0 {
            return "CR4.PCIDE set with CR3[11:0] = \(hex(s.cr3 & 0xFFF))"
        }
        return nil
    }

    /// INS/OUTS against the SDM's definition, for the elements the exit moved:
    /// the addresses (segment, override, address size, direction), the data,
    /// RSI/RDI, RCX and RIP. Nil when right or not string I/O.
    func stringIOError(_ rig: borrowing VCPURig) -> String? {
        guard case .stringIO(_, let width, let isIn, let rep, let size, let segment, let index, let count) = exit else { return nil }
        let s = state
        let mask: UInt64 = size == 0 ? 0xFFFF : size == 1 ? 0xFFFF_FFFF : .max
        let w = UInt64(width.bytes)
        let down = s.rflags & Bit.df != 0
        let n = UInt64(isIn ? rig.platform.ins.count : rig.platform.outs.count)
        // SDM 3.4.2.1: in 64-bit mode only FS and GS have bases; INS always uses ES.
        let seg = isIn ? 0 : segment
        let base: UInt64 = s.mode.is64Bit ? 0 : (seg == 0 || seg == 3 ? s.segmentBase : 0)
        for i in 0..<n {
            let offset = (index &+ (down ? 0 &- i * w : i * w)) & mask
            var linear = base &+ offset
            if !s.mode.is64Bit { linear &= 0xFFFF_FFFF }
            guard linear >= 0x8000 && linear <= rig.memory.ram.size - w else { continue }
            let bytes = (0..<w).map { rig.memory.load8(linear + $0) }
            let value = bytes.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
            if isIn ? value != UInt32(truncatingIfNeeded: width.mask) : value != rig.platform.outs[Int(i)].value {
                return "element \(i) is not at linear \(hex(linear)) (segment \(seg), base \(hex(base)))"
            }
        }
        let moved = (index &+ (down ? 0 &- n * w : n * w)) & mask
        let register = isIn ? rig.vcpu.registers.rdi : rig.vcpu.registers.rsi
        if register & mask != moved { return "index register \(hex(register)) after \(n) elements, expected \(hex(moved))" }
        let left = rep ? (count & mask) &- n : 0   // wraps when more moved than RCX allowed: reported below
        if rep && rig.vcpu.registers.rcx & mask != left { return "RCX \(hex(rig.vcpu.registers.rcx)) after \(n) elements" }
        let total = rep ? count & mask : 1
        if n < total && rig.rip == s.rip && n < 4096 / w {
            // Stopped before the last element and the exit's budget: element n must fault.
            let offset = (index &+ (down ? 0 &- n * w : n * w)) & mask
            return faultJustification(rig, offset: offset, width: w, segment: seg, isIn: isIn)
        }
        let rip = left == 0 ? s.rip &+ UInt64(length) : s.rip
        if rig.rip != rip { return "RIP \(hex(rig.rip)), expected \(hex(rip))" }
        return nil
    }

    /// Why element `offset` of segment `segment` may fault, or the complaint
    /// that it should not have: the segment's limit, type and canonical
    /// rules (SDM 6.3 "Limit Checking", 6.4 "Type Checking", Vol. 1 3.3.7.1),
    /// then paging, which the fixtures make an identity map of the first
    /// 2 MiB for supervisor accesses only (a PAE guest's PDPTEs are random,
    /// so any PAE element may fault); a #PF must leave CR2 on the element.
    func faultJustification(_ rig: borrowing VCPURig, offset: UInt64, width w: UInt64, segment seg: UInt32,
                            isIn: Bool) -> String? {
        let s = state
        typealias G32 = VMCSFields.Guest32
        let limits = [G32.esLimit, G32.csLimit, G32.ssLimit, G32.dsLimit, G32.fsLimit, G32.gsLimit]
        let rights = [G32.esAccessRights, G32.csAccessRights, G32.ssAccessRights, G32.dsAccessRights,
                      G32.fsAccessRights, G32.gsAccessRights]
        let index = Int(min(seg, 5))
        let limit = rig.field(limits[index])
        let type = rig.field(rights[index]) & 0xF
        var linear: UInt64
        if s.mode.is64Bit {
            linear = offset   // the fixtures' FS and GS bases are 0
            if !isCanonical(linear, linearBits: 48) || !isCanonical(linear &+ (w - 1), linearBits: 48) { return nil }
        } else {
            if offset &+ (w - 1) > limit { return nil }
            let code = type & 0x8 != 0, rw = type & 0x2 != 0
            if s.mode != .real && ((isIn && (code || !rw)) || (!isIn && code && !rw)) { return nil }
            let base: UInt64 = seg == 0 || seg == 3 ? s.segmentBase : 0
            linear = (base &+ offset) & 0xFFFF_FFFF
        }
        guard s.mode.paging else { return "stopped at element offset \(hex(offset)) that neither segment nor RAM forbids" }
        let cr2 = rig.hw.cr2
        let onElement = cr2 &- linear <= w - 1   // wraps with the element
        // The fixtures' tables are 4-level: with CR4.LA57 they are walked as 5-level ones.
        // An INS may have written the tables themselves (below 0x8000).
        let mayFault = s.cpl == 3 || s.mode == .pae32 || linear > (2 << 20) - w
            || (s.mode.isIA32e && s.cr4 & Bit.la57 != 0) || (isIn && linear < 0x8000)
        if !mayFault { return "stopped at linear \(hex(linear)), which the identity map translates" }
        if cr2 != 0 && !onElement { return "#PF with CR2 \(hex(cr2)) for the element at \(hex(linear))" }
        return nil
    }

    static func stopKind(_ exit: VCPUExit) -> String {
        switch exit {
        case .powerOff: return "powerOff"
        case .halted: return "halted"
        case .eptViolation: return "eptViolation"
        case .eptMisconfiguration: return "eptMisconfiguration"
        case .tripleFault: return "tripleFault"
        case .entryFailure: return "entryFailure"
        case .instructionFailure: return "instructionFailure"
        case .unhandled: return "unhandled"
        case .badGuestAddress: return "badGuestAddress"
        case .stopRequested: return "stopRequested"
        }
    }

    /// Everything needed to read the case by eye.
    var description: String {
        let s = state
        return """
        case seed \(hex(seed)): mode \(s.mode), exit \(exit), length \(length)
          CR0 \(hex(s.cr0)) (stale shadow \(hex(s.cr0ShadowStale))) CR4 \(hex(s.cr4)) (stale shadow \(hex(s.cr4ShadowStale))) \
        CR3 \(hex(s.cr3)) EFER \(hex(s.efer))
          CPL \(s.cpl) CS rights \(hex(UInt64(s.csRights))) RFLAGS \(hex(s.rflags)) interruptibility \(s.interruptibility) \
        pending debug \(hex(s.pendingDebug)) RIP \(hex(s.rip)) RSP \(hex(s.rsp)) DS/ES base \(hex(s.segmentBase))
          GPRs \(s.gprs.map(hex).joined(separator: " "))
          events \(s.events.map { "\($0.type) \($0.vector)\($0.errorCode.map { " code \(hex(UInt64($0)))" } ?? "")" }) \
        reflects interrupts \(s.reflectsInterrupts)
          PDPTEs \(s.pdptes.map(hex)) at 3020H \(s.altPDPT.map(hex))
        """
    }
}

/// Guest RAM and host frames one worker reuses from case to case.
final class FuzzMemory {
    let frames = HostFrameAllocator(frames: 16)   // the vCPU needs 5
    let memory = FakeGuestMemory()
    /// An INS may have written anywhere.
    var dirty = false

    /// Bytes that differ from their neighbours, 2 MiB of them.
    static let pattern: [UInt8] = (0..<(2 << 20)).map { (a: Int) -> UInt8 in
        var g = SplitMix64(UInt64(a)); return UInt8(truncatingIfNeeded: g.next())
    }

    /// RAM full of the pattern, page-table pages zero.
    func fillPattern() {
        Self.pattern.withUnsafeBytes { _ = memcpy(memory.ram.base, $0.baseAddress!, Int(memory.ram.size)) }
        memset(memory.ram.base, 0, 0x8000)
    }

    /// Zeroes the page tables' pages, or all of RAM.
    func reset(all: Bool) {
        memset(memory.ram.base, 0, all ? Int(memory.ram.size) : 0x8000)
        dirty = false
    }
}

func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16, uppercase: true) }
