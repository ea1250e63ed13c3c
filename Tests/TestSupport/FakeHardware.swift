import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot

/// One VM exit the fake CPU produces: the exit-information fields it stores
/// (SDM 28.2 "Recording VM-Exit Information"), and what the guest did before
/// exiting (`guest`, e.g. load RAX with a CPUID leaf). Every field not named
/// is stored as 0, as a real exit overwrites them all.
package struct ScriptedExit {
    /// The whole exit-reason field (bit 31 for an entry failure).
    package var reason: UInt32
    package var qualification: UInt64 = 0
    package var instructionLength: UInt32 = 0
    package var instructionInformation: UInt32 = 0
    package var interruptionInformation: UInt32 = 0
    package var interruptionErrorCode: UInt32 = 0
    package var idtVectoringInformation: UInt32 = 0
    package var idtVectoringErrorCode: UInt32 = 0
    package var guestPhysicalAddress: UInt64 = 0
    /// TSC ticks the guest runs before this exit.
    package var guestCycles: UInt64 = 0
    /// What the guest did: its registers (RSP excepted) and the VMCS guest state.
    package var guest: (inout GeneralRegisters, FakeVMCS) -> Void = { _, _ in }

    package init(_ reason: ExitReason, qualification: UInt64 = 0, length: UInt32 = 0,
         guest: @escaping (inout GeneralRegisters, FakeVMCS) -> Void = { _, _ in }) {
        self.reason = UInt32(reason.rawValue)
        self.qualification = qualification
        self.instructionLength = length
        self.guest = guest
    }

    package init(rawReason: UInt32, qualification: UInt64 = 0) {
        reason = rawReason
        self.qualification = qualification
    }

    /// The same exit, with more guest activity before it.
    package func then(_ more: @escaping (inout GeneralRegisters, FakeVMCS) -> Void) -> ScriptedExit {
        var copy = self
        let first = guest
        copy.guest = { r, v in first(&r, v); more(&r, v) }
        return copy
    }

    package func with(_ body: (inout ScriptedExit) -> Void) -> ScriptedExit {
        var copy = self
        body(&copy)
        return copy
    }

    // MARK: Exits by instruction

    /// CPUID with EAX = leaf, ECX = subleaf (2 bytes: 0F A2).
    package static func cpuid(leaf: UInt32, subleaf: UInt32 = 0, length: UInt32 = 2) -> ScriptedExit {
        ScriptedExit(.cpuid, length: length) { r, _ in r.rax = UInt64(leaf); r.rcx = UInt64(subleaf) }
    }

    package static func hlt(length: UInt32 = 1) -> ScriptedExit { ScriptedExit(.hlt, length: length) }

    /// RDMSR with ECX = msr.
    package static func rdmsr(_ msr: UInt32, length: UInt32 = 2) -> ScriptedExit {
        ScriptedExit(.rdmsr, length: length) { r, _ in r.rcx = UInt64(msr) }
    }

    /// WRMSR of EDX:EAX = value to ECX = msr.
    package static func wrmsr(_ msr: UInt32, _ value: UInt64, length: UInt32 = 2) -> ScriptedExit {
        ScriptedExit(.wrmsr, length: length) { r, _ in
            r.rcx = UInt64(msr); r.rax = value & 0xFFFF_FFFF; r.rdx = value >> 32
        }
    }

    /// XSETBV of EDX:EAX = value to XCR[ECX] (3 bytes: 0F 01 D1).
    package static func xsetbv(ecx: UInt32 = 0, _ value: UInt64, length: UInt32 = 3) -> ScriptedExit {
        ScriptedExit(.xsetbv, length: length) { r, _ in
            r.rcx = UInt64(ecx); r.rax = value & 0xFFFF_FFFF; r.rdx = value >> 32
        }
    }

    /// VMCALL with RAX = number, RBX and RCX the arguments (3 bytes: 0F 01 C1).
    package static func vmcall(_ number: UInt64, rbx: UInt64 = 0, rcx: UInt64 = 0, length: UInt32 = 3) -> ScriptedExit {
        ScriptedExit(.vmcall, length: length) { r, _ in r.rax = number; r.rbx = rbx; r.rcx = rcx }
    }

    /// A control-register access; the qualification as SDM Table 28-3 lays it out.
    package static func crAccess(cr: Int, type: ControlRegisterAccessQualification.AccessType, gpr: Int = 0,
                         lmswSource: UInt16 = 0, length: UInt32 = 3) -> ScriptedExit {
        let q = UInt64(cr & 0xF) | UInt64(type.rawValue) << 4 | UInt64(gpr & 0xF) << 8 | UInt64(lmswSource) << 16
        return ScriptedExit(.controlRegisterAccess, qualification: q, length: length)
    }

    /// MOV CRn, reg with the register holding `value` (RSP: the VMCS guest RSP).
    package static func movToCR(_ cr: Int, _ value: UInt64, gpr: Int = 0, length: UInt32 = 3) -> ScriptedExit {
        crAccess(cr: cr, type: .movToCR, gpr: gpr, length: length).then { r, vmcs in
            if gpr == 4 { vmcs.preset(VMCSFields.GuestNatural.rsp, value) } else { _ = r.setFull(gpr, value) }
        }
    }

    /// An I/O instruction; the qualification as SDM Table 28-5 lays it out.
    package static func io(port: UInt16, width: OperandWidth, in isIn: Bool, string: Bool = false, rep: Bool = false,
                   immediate: Bool = false, length: UInt32 = 1) -> ScriptedExit {
        let size: UInt64 = width == .byte ? 0 : width == .word ? 1 : 3
        let q = size | (isIn ? 1 << 3 : 0) | (string ? 1 << 4 : 0) | (rep ? 1 << 5 : 0)
            | (immediate ? 1 << 6 : 0) | UInt64(port) << 16
        return ScriptedExit(.ioInstruction, qualification: q, length: length)
    }

    /// OUT port, AL/AX/EAX with RAX = value.
    package static func out(_ port: UInt16, _ value: UInt64, width: OperandWidth = .byte, length: UInt32 = 1) -> ScriptedExit {
        io(port: port, width: width, in: false, length: length).then { r, _ in r.rax = value }
    }

    /// The guest writes `status` to the exit port 0xF4.
    package static func exitPort(_ status: UInt8) -> ScriptedExit { out(FakePlatform.exitPort, UInt64(status), length: 2) }

    /// An exception or NMI exit with its interruption information.
    package static func exceptionOrNMI(info: UInt32, errorCode: UInt32 = 0) -> ScriptedExit {
        ScriptedExit(.exceptionOrNMI).with { $0.interruptionInformation = info; $0.interruptionErrorCode = errorCode }
    }

    package static func eptViolation(gpa: UInt64, qualification: UInt64) -> ScriptedExit {
        ScriptedExit(.eptViolation, qualification: qualification).with { $0.guestPhysicalAddress = gpa }
    }
}

/// A VMX-capable CPU for host tests: a FakeCPU and the current FakeVMCS behind
/// the VMXHardware seam, recording the VMX instructions and playing a script
/// of VM exits. When the script runs out, the next entry ends in a triple
/// fault (`scriptExhausted` tells), so `run` always returns.
package final class FakeHardware: VMXHardware {
    package enum Call: Equatable {
        case vmxon(UInt64), vmxoff, vmclear(UInt64), vmptrld(UInt64), invept(UInt64), enter(resume: Bool)
    }

    /// What the CPU would use at one VM entry, sampled when it happens.
    package struct Entry {
        package var resume: Bool
        package var registers: GeneralRegisters
        package var rip: UInt64
        package var rsp: UInt64
        package var interruptionInformation: UInt32
        package var exceptionErrorCode: UInt32
        package var instructionLength: UInt32
        package var primaryControls: UInt32
        package var pinControls: UInt32
        package var exitControls: UInt32
        package var activityState: UInt32
        package var preemptionTimer: UInt32
        package var tsc: UInt64
        /// `ExitFastPath.enabled` at this entry (the fake never takes the fast path).
        package var fastPathEnabled: UInt64

        package var injected: VMEntryInterruptionInfo { VMEntryInterruptionInfo(raw: interruptionInformation) }
        package var interruptWindowExiting: Bool { primaryControls & (1 << 2) != 0 }
        package var nmiWindowExiting: Bool { primaryControls & (1 << 22) != 0 }
    }

    package let cpu: FakeCPU
    package let vmcs: FakeVMCS
    package private(set) var calls: [Call] = []
    package private(set) var entries: [Entry] = []
    package var script: [ScriptedExit] = []
    package private(set) var scriptExhausted = false

    /// The time-stamp counter: each `readTSC` returns it, then adds `tscStep`.
    package var tsc: UInt64 = 1_000_000
    package var tscStep: UInt64 = 10
    package private(set) var tscReads = 0
    /// CR2 as the vCPU last wrote it (for a #PF it injects).
    package var cr2: UInt64 = 0
    /// NMIs that arrived in root mode, not yet taken by the vCPU.
    package var hostNMIs = 0

    package var segments = HostSegments(cs: 0x08, ss: 0x10, ds: 0x10, es: 0x10, fs: 0x10, gs: 0x10, tr: 0x28,
                                fsBase: 0x1111_0000, gsBase: 0x2222_0000, trBase: 0x0010_3000,
                                gdtrBase: 0x0010_2000, idtrBase: 0x0010_4000)
    package var exitEntryPoint: UInt64 = 0xFFFF_FFFF_8010_7A30

    /// CR4 when VMXON ran (SDM 24.7: VMXON #UDs unless CR4.VMXE = 1).
    package private(set) var cr4AtVMXON: UInt64?

    /// Failures to produce, by instruction.
    package var vmxonError: VMXError?
    package var vmxoffError: VMXError?
    package var vmclearError: VMXError?
    package var vmptrldError: VMXError?
    package var enterError: VMXError?
    /// CPUID instructions the hypervisor executed.
    package var cpuidQueries = 0
    /// Exits the fake claims to handle itself at each entry whose fast path
    /// enables them, as the assembly would (counted, never returned).
    package var fastExitsPerEntry: [ExitFastPath.Kind] = []
    /// The kernel's `vmx_quick_exit`: called as the assembly calls it, for
    /// the I/O, RDMSR and WRMSR exits of an entry whose fast path enables
    /// quick exits (see `VCPURig.enableQuickExits`).
    package var quickHandler: ((FakeHardware, ExitFastPath) -> QuickExit)?
    /// Quick exits that resumed the guest without returning from `enterGuest`.
    package private(set) var quickResumes = 0
    /// Every VM entry: `entries` and the quick resumes, in order.
    package private(set) var everyEntry: [Entry] = []
    /// The preemption timer's values the assembly wrote, one per entry or
    /// quick resume with a deadline set.
    package private(set) var preemptionTimerWrites: [UInt32] = []
    /// What the quick handler found in RBX, RBP and R12-R15: the assembly
    /// does not store them for it, so it must never read them.
    package static let staleRegister: UInt64 = 0x5757_5757_5757_5757

    /// Host MSRs the VMX layer saves, restores or copies into host state.
    package static let hostMSRs: [UInt32: UInt64] = [
        0x174: 0x0008,                   // IA32_SYSENTER_CS
        0x175: 0xFFFF_8000_0000_5000,    // IA32_SYSENTER_ESP
        0x176: 0xFFFF_8000_0000_6000,    // IA32_SYSENTER_EIP
        0x277: 0x0007_0406_0007_0406,    // IA32_PAT
        0xC000_0080: 0xD01,              // IA32_EFER: SCE, LME, LMA, NXE
        0xC000_0081: 0x0023_0010_0000_0000, // IA32_STAR
        0xC000_0082: 0xFFFF_8000_0010_0000, // IA32_LSTAR
        0xC000_0083: 0xFFFF_8000_0010_0100, // IA32_CSTAR
        0xC000_0084: 0x0004_7700,        // IA32_FMASK
        0xC000_0100: 0x1111_0000,        // IA32_FS_BASE
        0xC000_0101: 0x2222_0000,        // IA32_GS_BASE
        0xC000_0102: 0xFFFF_8000_0020_0000, // IA32_KERNEL_GS_BASE
        0xC000_0103: 0x0000_0001,        // IA32_TSC_AUX
    ]

    package init(cpu: FakeCPU, vmcs: FakeVMCS = FakeVMCS()) {
        self.cpu = cpu
        self.vmcs = vmcs
    }

    /// A Bochs CPU model with the host MSRs above and, unless told otherwise,
    /// a host with XSAVE (x87, SSE, AVX) and RDTSCP.
    package convenience init(bochs model: BochsCPUModel = BochsCapabilities.corei7_skylake_x) {
        let cpu = FakeCPU(bochs: model)
        for (msr, value) in Self.hostMSRs { cpu.msrs[msr] = value }
        cpu.cr3 = 0x0010_0000
        cpu.setCPUID(leaf: 0, CPUIDResult(eax: 0x16, ebx: 0x756E_6547, ecx: 0x6C65_746E, edx: 0x4965_6E69))
        cpu.setCPUID(leaf: 1, CPUIDResult(eax: 0x0005_0654, ebx: 0x0001_0800, ecx: 1 << 5 | 1 << 26 | 1 << 0,
                                         edx: 0xBFEB_FBFF))
        cpu.setCPUID(leaf: 0xD, subleaf: 0, CPUIDResult(eax: 0x7, ebx: 0x340, ecx: 0x340, edx: 0))
        cpu.setCPUID(leaf: 0xD, subleaf: 2, CPUIDResult(eax: 0x100, ebx: 0x240, ecx: 0, edx: 0))
        cpu.setCPUID(leaf: 0x8000_0000, CPUIDResult(eax: 0x8000_0008))
        cpu.setCPUID(leaf: 0x8000_0001, CPUIDResult(ecx: 1, edx: 1 << 27 | 1 << 29 | 1 << 20 | 1 << 11))
        self.init(cpu: cpu)
    }

    // MARK: CPUAccess, VMCSAccess: forwarded

    package func cpuid(leaf: UInt32, subleaf: UInt32) -> CPUIDResult {
        cpuidQueries += 1
        return cpu.cpuid(leaf: leaf, subleaf: subleaf)
    }
    package func readMSR(_ address: UInt32) -> UInt64 { cpu.readMSR(address) }
    package func writeMSR(_ address: UInt32, _ value: UInt64) { cpu.writeMSR(address, value) }
    package func readCR0() -> UInt64 { cpu.readCR0() }
    package func readCR3() -> UInt64 { cpu.readCR3() }
    package func readCR4() -> UInt64 { cpu.readCR4() }
    package func writeCR0(_ value: UInt64) { cpu.writeCR0(value) }
    package func writeCR4(_ value: UInt64) { cpu.writeCR4(value) }
    package func readXCR0() -> UInt64 { cpu.readXCR0() }
    package func writeXCR0(_ value: UInt64) { cpu.writeXCR0(value) }
    package func vmread(_ encoding: UInt32) throws(VMXError) -> UInt64 { try vmcs.vmread(encoding) }
    package func vmwrite(_ encoding: UInt32, _ value: UInt64) throws(VMXError) { try vmcs.vmwrite(encoding, value) }

    // MARK: VMX instructions

    package func vmxon(_ region: UInt64) throws(VMXError) {
        calls.append(.vmxon(region))
        cr4AtVMXON = cpu.cr4
        if let vmxonError { throw vmxonError }
    }

    package func vmxoff() throws(VMXError) {
        calls.append(.vmxoff)
        if let vmxoffError { throw vmxoffError }
    }

    package func vmclear(_ vmcs: UInt64) throws(VMXError) {
        calls.append(.vmclear(vmcs))
        if let vmclearError { throw vmclearError }
    }

    package func vmptrld(_ vmcs: UInt64) throws(VMXError) {
        calls.append(.vmptrld(vmcs))
        if let vmptrldError { throw vmptrldError }
    }

    package func invept(_ eptPointer: UInt64) throws(VMXError) { calls.append(.invept(eptPointer)) }

    package func writeCR2(_ value: UInt64) { cr2 = value }

    package func takeHostNMI() -> Bool {
        guard hostNMIs > 0 else { return false }
        hostNMIs -= 1
        return true
    }

    package func readTSC() -> UInt64 {
        tscReads += 1
        defer { tsc &+= tscStep }
        return tsc
    }

    package func hostSegments() -> HostSegments { segments }

    /// VM entry, the guest's run, and the next scripted VM exit.
    package func enterGuest(_ registers: inout GeneralRegisters, fastPath: ExitFastPath, resume: Bool) throws(VMXError) {
        calls.append(.enter(resume: resume))
        if let enterError { throw enterError }
        armPreemptionTimer(fastPath)
        entries.append(sample(resume: resume, registers, fastPath))
        everyEntry.append(entries[entries.count - 1])
        for kind in fastExitsPerEntry where fastPath.enabled & kind.rawValue != 0 { fastPath.countHandled(kind) }
        // SDM 28.2 "Recording VM-Exit Information": a VM exit clears the valid
        // bit of the VM-entry interruption-information field.
        let info = field(VMCSFields.Control32.entryInterruptionInformation)
        vmcs.preset(VMCSFields.Control32.entryInterruptionInformation.encoding, info & ~(1 << 31))
        while scriptExit(&registers), quickExit(&registers, fastPath) {}
    }

    /// What the CPU uses at a VM entry, now.
    func sample(resume: Bool, _ registers: GeneralRegisters, _ fastPath: ExitFastPath) -> Entry {
        Entry(
            resume: resume, registers: registers,
            rip: field(VMCSFields.GuestNatural.rip), rsp: field(VMCSFields.GuestNatural.rsp),
            interruptionInformation: UInt32(field(VMCSFields.Control32.entryInterruptionInformation)),
            exceptionErrorCode: UInt32(field(VMCSFields.Control32.entryExceptionErrorCode)),
            instructionLength: UInt32(field(VMCSFields.Control32.entryInstructionLength)),
            primaryControls: UInt32(field(VMCSFields.Control32.primaryProcessorBasedControls)),
            pinControls: UInt32(field(VMCSFields.Control32.pinBasedControls)),
            exitControls: UInt32(field(VMCSFields.Control32.primaryExitControls)),
            activityState: UInt32(field(VMCSFields.Guest32.activityState)),
            preemptionTimer: UInt32(field(VMCSFields.Guest32.preemptionTimerValue)),
            tsc: tsc, fastPathEnabled: fastPath.enabled)
    }

    private func field<F: VMCSReadableField>(_ f: F) -> UInt64 { vmcs.value(f) ?? 0 }

    /// ARM_PREEMPTION (Boot/vmx.asm): the timer's value from the block's
    /// deadline, written just before each entry (fast resumes included).
    func armPreemptionTimer(_ fastPath: ExitFastPath) {
        guard let value = fastPath.preemptionTimerValue(at: tsc) else { return }
        vmcs.preset(VMCSFields.Guest32.preemptionTimerValue, value)
        preemptionTimerWrites.append(value)
    }

    /// The trampoline's quick path (Boot/vmx.asm): true when it resumed the guest.
    func quickExit(_ registers: inout GeneralRegisters, _ fastPath: ExitFastPath) -> Bool {
        let reason = UInt32(field(VMCSFields.ReadOnly32.exitReason))
        let quick = (UInt32(ExitReason.ioInstruction.rawValue)...UInt32(ExitReason.wrmsr.rawValue)).contains(reason)
            || reason == UInt32(ExitReason.preemptionTimerExpired.rawValue)
        guard let handler = quickHandler, fastPath.enabled & ExitFastPath.Kind.quick.rawValue != 0, quick
        else { return false }
        fastPath.quickReason = reason
        let kept = (registers.rbx, registers.rbp, registers.r12, registers.r13, registers.r14, registers.r15)
        let stale = Self.staleRegister
        (registers.rbx, registers.rbp, registers.r12, registers.r13, registers.r14, registers.r15) =
            (stale, stale, stale, stale, stale, stale)
        let result = handler(self, fastPath)
        (registers.rbx, registers.rbp, registers.r12, registers.r13, registers.r14, registers.r15) = kept
        // FAST_ADVANCE: not with STI, MOV SS or SMI blocking, nor RFLAGS.TF.
        if result == .complete, field(VMCSFields.Guest32.interruptibilityState) & 7 == 0,
           field(VMCSFields.GuestNatural.rflags) & RFLAGS.tf.rawValue == 0 {
            let rip = field(VMCSFields.GuestNatural.rip) &+ field(VMCSFields.ReadOnly32.exitInstructionLength)
            vmcs.preset(VMCSFields.GuestNatural.rip, rip)
            resumeQuickly(registers, fastPath)
            return true
        }
        if result == .resumed {
            resumeQuickly(registers, fastPath)
            return true
        }
        fastPath.quickState = result.rawValue
        return false
    }

    /// The assembly's VMRESUME after a quick exit.
    func resumeQuickly(_ registers: GeneralRegisters, _ fastPath: ExitFastPath) {
        fastPath.countHandled(.quick)
        quickResumes += 1
        armPreemptionTimer(fastPath)
        everyEntry.append(sample(resume: true, registers, fastPath))
    }

    /// The next scripted exit into the VMCS; false when the script ran out (a triple fault).
    func scriptExit(_ registers: inout GeneralRegisters) -> Bool {
        let step: ScriptedExit
        if script.isEmpty {
            scriptExhausted = true
            step = ScriptedExit(.tripleFault)
        } else {
            step = script.removeFirst()
        }
        tsc &+= step.guestCycles
        step.guest(&registers, vmcs)
        vmcs.preset(VMCSFields.ReadOnly32.exitReason, step.reason)
        vmcs.preset(VMCSFields.ReadOnlyNatural.exitQualification, step.qualification)
        vmcs.preset(VMCSFields.ReadOnly32.exitInstructionLength, step.instructionLength)
        vmcs.preset(VMCSFields.ReadOnly32.exitInstructionInformation, step.instructionInformation)
        vmcs.preset(VMCSFields.ReadOnly32.exitInterruptionInformation, step.interruptionInformation)
        vmcs.preset(VMCSFields.ReadOnly32.exitInterruptionErrorCode, step.interruptionErrorCode)
        vmcs.preset(VMCSFields.ReadOnly32.idtVectoringInformation, step.idtVectoringInformation)
        vmcs.preset(VMCSFields.ReadOnly32.idtVectoringErrorCode, step.idtVectoringErrorCode)
        vmcs.preset(VMCSFields.ReadOnly64.guestPhysicalAddress, step.guestPhysicalAddress)
        return !scriptExhausted
    }

    /// How many VM entries happened with `resume` (VMRESUME) or without (VMLAUNCH).
    package var resumeFlags: [Bool] { entries.map(\.resume) }
}

/// The kernel's side of the guest's devices, recorded: every port access and
/// console byte; IN answers from `inValues` (per port, in order), else all
/// ones; an OUT to the exit port 0xF4 powers the guest off with its value.
package struct FakePlatform: GuestPlatform {
    package static let exitPort: UInt16 = 0xF4

    package struct PortAccess: Equatable {
        package var port: UInt16
        package var width: OperandWidth
        package var value: UInt32
        package init(port: UInt16, width: OperandWidth, value: UInt32) {
            self.port = port; self.width = width; self.value = value
        }
    }

    package var ins: [PortAccess] = []
    package var outs: [PortAccess] = []
    package var console: [UInt8] = []
    package var inValues: [UInt16: [UInt32]] = [:]
    package var stopRequested = false
    /// What an OUT to a port sets off besides being recorded (a device reacting).
    package var onOut: [UInt16: (inout FakePlatform) -> Void] = [:]
    /// An NMI the devices sent (taken once), an interrupt that waits (vector
    /// 0x30, taken by `acknowledgeInterrupt`), the devices' next deadline.
    package var nmiPending = false
    package var pendingInterrupt = false
    package var deadline: UInt64? = nil
    package mutating func takeNMI() -> Bool { defer { nmiPending = false }; return nmiPending }
    package var interruptPending: Bool { pendingInterrupt }
    package mutating func acknowledgeInterrupt() -> UInt8? {
        defer { pendingInterrupt = false }
        return pendingInterrupt ? 0x30 : nil
    }
    package var nextDeadline: UInt64? { deadline }
    /// INIT and STARTUP IPIs another vCPU sent (taken once).
    package var startSignals: StartSignals? = nil
    package mutating func takeStartSignals() -> StartSignals? { defer { startSignals = nil }; return startSignals }

    package mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32 {
        var value = UInt32(truncatingIfNeeded: width.mask)
        if var queue = inValues[port], !queue.isEmpty {
            value = queue.removeFirst()
            inValues[port] = queue
        }
        ins.append(PortAccess(port: port, width: width, value: value))
        return value
    }

    package mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit? {
        outs.append(PortAccess(port: port, width: width, value: value))
        onOut[port]?(&self)
        return port == Self.exitPort ? .powerOff(status: UInt8(truncatingIfNeeded: value)) : nil
    }

    package mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer) { console.append(contentsOf: bytes) }

    package var consoleText: String { String(decoding: console, as: UTF8.self) }
}

/// Host memory playing guest RAM at host-physical `hostPhysical`.
package final class FakeGuestMemory {
    package let ram: GuestRAM
    private let base: UnsafeMutableRawPointer

    package init(size: Int = 2 << 20, hostPhysical: UInt64 = 0x4000_0000) {
        base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        base.initializeMemory(as: UInt64.self, repeating: 0, count: size / 8)
        ram = GuestRAM(hostPhysical: hostPhysical, base: base, size: UInt64(size))
    }

    deinit { base.deallocate() }

    package func store64(_ value: UInt64, at gpa: UInt64) { (base + Int(gpa)).storeBytes(of: value, as: UInt64.self) }
    package func store(_ bytes: [UInt8], at gpa: UInt64) {
        for (i, b) in bytes.enumerated() { (base + Int(gpa) + i).storeBytes(of: b, as: UInt8.self) }
    }
    package func load8(_ gpa: UInt64) -> UInt8 { (base + Int(gpa)).load(as: UInt8.self) }
}

// Tests compare exits whole; the library keeps VCPUExit free of Equatable.
extension VCPUExit: Equatable {
    public static func == (a: VCPUExit, b: VCPUExit) -> Bool {
        switch (a, b) {
        case let (.powerOff(x), .powerOff(y)): return x == y
        case let (.halted(x), .halted(y)): return x == y
        case let (.eptViolation(g1, q1, r1), .eptViolation(g2, q2, r2)): return g1 == g2 && q1 == q2 && r1 == r2
        case let (.eptMisconfiguration(g1, r1), .eptMisconfiguration(g2, r2)): return g1 == g2 && r1 == r2
        case let (.tripleFault(x), .tripleFault(y)): return x == y
        case let (.entryFailure(f1, q1), .entryFailure(f2, q2)): return f1 == f2 && q1 == q2
        case let (.instructionFailure(x), .instructionFailure(y)): return x == y
        case let (.unhandled(r1, q1, i1), .unhandled(r2, q2, i2)): return r1 == r2 && q1 == q2 && i1 == i2
        case let (.badGuestAddress(l1, r1), .badGuestAddress(l2, r2)): return l1 == l2 && r1 == r2
        case (.stopRequested, .stopRequested): return true
        default: return false
        }
    }
}
