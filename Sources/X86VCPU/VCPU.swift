// The virtual CPU: its VMCS, bitmaps and MSR lists, the
// guest's register file, and the VMCS setup for the three kinds of start.
// SDM 25 "Virtual Machine Control Structures", 27 "VM Entries".

import X86Arch
import VMX

/// The processor mode a guest starts in.
public enum GuestStartMode: Sendable {
    /// Real mode through unrestricted guest (as after reset, CS:IP from `rip`).
    case real
    /// 32-bit protected mode, flat segments, paging off.
    case protected32
    /// 64-bit mode with the guest's page tables at `cr3`.
    case long64
    /// The state after INIT, waiting for a start-up IPI (an application
    /// processor's vCPU until the guest starts it); `rip` is ignored.
    case waitForSIPI
}

/// Where and how the guest begins.
public struct GuestStart: Sendable {
    public var mode: GuestStartMode
    public var rip: UInt64
    public var rsp: UInt64 = 0
    public var rflags: UInt64 = RFLAGS.initial.rawValue
    /// Page-table root (long64); also used by protected32 when paging is off (ignored).
    public var cr3: UInt64 = 0
    public var gdtrBase: UInt64 = 0
    public var gdtrLimit: UInt32 = 0xFFFF
    public var idtrBase: UInt64 = 0
    public var idtrLimit: UInt32 = 0x3FF
    /// Selectors loaded for protected32 and long64 (the loader's GDT must hold them).
    public var codeSelector: UInt16 = 0x08
    public var dataSelector: UInt16 = 0x10
    public var registers = GeneralRegisters()

    public init(mode: GuestStartMode, rip: UInt64) { self.mode = mode; self.rip = rip }
}

/// Why `VCPU.run` returned to the kernel: the guest stopped, or something the
/// vCPU does not handle itself happened.
public enum VCPUExit: Sendable {
    /// The guest asked to power off (its exit port or the power-off hypercall).
    case powerOff(status: UInt8)
    /// HLT with nothing that could ever wake the guest.
    case halted(rip: UInt64)
    /// A guest access outside its memory, with no device behind it.
    case eptViolation(guestPhysical: UInt64, qualification: EPTViolationQualification, rip: UInt64)
    case eptMisconfiguration(guestPhysical: UInt64, rip: UInt64)
    case tripleFault(rip: UInt64)
    /// VM entry failed its guest-state or MSR-loading checks (exit reason bit 31).
    case entryFailure(ExitReasonField, qualification: UInt64)
    /// A VMX instruction of the hypervisor failed (VMLAUNCH, VMREAD, ...).
    case instructionFailure(VMXError)
    /// An exit this vCPU has no handler for: the guest is stopped, not the hypervisor.
    case unhandled(reason: ExitReason, qualification: UInt64, rip: UInt64)
    /// String I/O or a hypercall touched a guest address that does not translate.
    case badGuestAddress(linear: UInt64, rip: UInt64)
    /// Another CPU stopped the guest (`GuestPlatform.stopRequested`).
    case stopRequested
}

/// The devices behind the guest's I/O ports and console: the kernel's side.
/// Called from inside the run loop, so a port access costs one exit and no
/// return to the kernel's loop.
public protocol GuestPlatform {
    /// IN: the value, all ones when no device claims the port.
    mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32
    /// OUT: nil to continue, or why the guest stops (e.g. its power-off port).
    mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit?
    /// Bytes from the console hypercall.
    mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer)

    // Memory-mapped devices and the interrupt controller (the isolated
    // platform's local APIC and IOAPIC). Defaults: none.

    /// Whether a device decodes guest-physical `gpa` (outside guest RAM): the
    /// vCPU then decodes the instruction and calls `mmioRead` / `mmioWrite`.
    func decodesMMIO(_ gpa: UInt64) -> Bool
    mutating func mmioRead(_ gpa: UInt64, size: Int) -> UInt64
    mutating func mmioWrite(_ gpa: UInt64, size: Int, value: UInt64)
    /// RDMSR, asked before the vCPU's own MSRs.
    mutating func msrRead(_ msr: UInt32) -> PlatformMSRAnswer
    /// WRMSR, asked before the vCPU's own MSRs (a read's `.done` value is ignored).
    mutating func msrWrite(_ msr: UInt32, _ value: UInt64) -> PlatformMSRAnswer
    /// The devices sent the CPU an NMI (a self-NMI through the local APIC's ICR).
    mutating func takeNMI() -> Bool
    /// A device interrupt that arrived while the guest ran (its vector, as the
    /// host's PIC gave it): true when the platform's interrupt controllers
    /// took it (the guest then gets it from them), false to inject it as is.
    mutating func hostInterrupt(_ vector: UInt8) -> Bool
    /// An interrupt waits that the guest would take once it accepts interrupts.
    var interruptPending: Bool { get }
    /// The highest-priority waiting vector, now in service (the CPU's INTA).
    mutating func acknowledgeInterrupt() -> UInt8?
    /// The TSC value at which a device next needs time to pass (its timer); nil: none armed.
    var nextDeadline: UInt64? { get }
    /// Lets the devices' time run up to `tsc` (timers fire, interrupts become pending).
    mutating func advance(toTSC tsc: UInt64)

    // The CPU's APIC virtualization (APICVirtualization.swift), once the
    // kernel turned it on with `VCPU.virtualizeAPIC`. Defaults: none.

    /// After every exit: the CPU's changes (VTPR, VIRR, VISR) into the model.
    mutating func loadAPIC(from page: VirtualAPICPage)
    /// Before every entry: the model's changes into the page and `status`;
    /// false (nothing written) when nothing changed.
    mutating func storeAPIC(into page: VirtualAPICPage, status: inout VirtualInterruptStatus) -> Bool
    /// APIC-write exit: the guest wrote `value` to the register at `offset`.
    mutating func apicWrite(offset: Int, value: UInt32)
    /// EOI-induced exit: the CPU retired `vector`, a level-triggered one.
    mutating func apicEOI(vector: UInt8)
    /// A preemption-timer exit the trampoline takes: the devices' time runs
    /// to `tsc` and what their timers fire goes straight into the page's IRR
    /// (QuickExits.swift); nil when that needs the full path (`advance`),
    /// and nothing changed then.
    mutating func postTimers(toTSC tsc: UInt64, into page: VirtualAPICPage) -> PostedTimers?

    /// Another CPU stopped the guest: this vCPU's run ends before its next
    /// entry, or at the INIT or SIPI the stopping CPU sends. Default: never.
    var stopRequested: Bool { get }
    /// The INIT (and a STARTUP IPI that came after it) another vCPU sent
    /// this one, when the platform routes the guest's INIT and STARTUP IPIs;
    /// taken once. Asked after every exit. Default: never.
    mutating func takeStartSignals() -> StartSignals?
    /// The vCPU entered (true) or left (false) the wait-for-SIPI state.
    mutating func waitingForSIPI(_ waiting: Bool)
}

/// INIT and STARTUP IPIs another vCPU sent, as the platform's mailbox holds them.
public struct StartSignals: Equatable, Sendable {
    public var initialize: Bool
    /// A STARTUP IPI's vector, sent while the INIT before it was not yet taken.
    public var startupVector: UInt8?
    public init(initialize: Bool, startupVector: UInt8? = nil) {
        self.initialize = initialize; self.startupVector = startupVector
    }
}

/// What `GuestPlatform.postTimers` did.
public struct PostedTimers: Equatable, Sendable {
    /// The highest vector it set in the page's IRR; 0 when none fired.
    public var highestVector: UInt8
    public init(highestVector: UInt8) { self.highestVector = highestVector }
}

/// A platform device's answer to RDMSR or WRMSR.
public enum PlatformMSRAnswer: Equatable, Sendable {
    /// No device has this MSR: the vCPU's own, or #GP.
    case notMine
    /// Done; for RDMSR the value read.
    case done(UInt64)
    /// The device's MSR, but the access raises #GP(0).
    case generalProtection
}

extension GuestPlatform {
    public func decodesMMIO(_ gpa: UInt64) -> Bool { false }
    public mutating func mmioRead(_ gpa: UInt64, size: Int) -> UInt64 { UInt64.max }
    public mutating func mmioWrite(_ gpa: UInt64, size: Int, value: UInt64) {}
    public mutating func msrRead(_ msr: UInt32) -> PlatformMSRAnswer { .notMine }
    public mutating func msrWrite(_ msr: UInt32, _ value: UInt64) -> PlatformMSRAnswer { .notMine }
    public mutating func takeNMI() -> Bool { false }
    public mutating func hostInterrupt(_ vector: UInt8) -> Bool { false }
    public var interruptPending: Bool { false }
    public mutating func acknowledgeInterrupt() -> UInt8? { nil }
    public var nextDeadline: UInt64? { nil }
    public mutating func advance(toTSC tsc: UInt64) {}
    public var stopRequested: Bool { false }
    public mutating func takeStartSignals() -> StartSignals? { nil }
    public mutating func waitingForSIPI(_ waiting: Bool) {}
}

/// What the vCPU was built with, and which optional controls it got.
public struct VCPUFeatures: Sendable {
    public var preemptionTimer = false
    public var virtualNMIs = false
    public var rdtscp = false
    public var invpcid = false
    public var xsaves = false
    public var tscOffsetting = false
    public var activityHLT = false
    public var switchesTSCAux = false
    /// MAXPHYADDR, CPUID 0x80000008 EAX[7:0] (36 without the leaf): the width
    /// of CR3, PDPTE and page-table addresses.
    public var physicalAddressBits = 36
    /// CPUID 0x80000001 EDX[26]: PS in a PDPTE maps 1 GiB.
    public var supports1GiBPages = false
    /// The EFER bits WRMSR may change: SCE, LME, NXE as CPUID 0x80000001 EDX
    /// reports SYSCALL, long mode and NX (SDM 2.2.1).
    public var eferWritable: UInt64 = 0
    /// IA32_SPEC_CTRL exists (CPUID.(7,0):EDX IBRS 26, STIBP 27 or SSBD 31):
    /// the guest uses the real MSR, switched at entry and exit.
    public var switchesSpecCtrl = false
    /// IA32_PRED_CMD exists (CPUID.(7,0):EDX[26], IBPB): guest writes reach it.
    public var predictionCommand = false
    public init() {}
}

/// The MSRs the guest uses directly and the CPU swaps at every entry and exit
/// through the VM-entry MSR-load / VM-exit MSR-store lists (guest values) and
/// the VM-exit MSR-load list (host values). SDM 25.7.2 "VM-Exit Controls for
/// MSRs", 25.8.2 "VM-Entry Controls for MSRs".
let switchedMSRs: [7 of MSR] = [.ia32STAR, .ia32LSTAR, .ia32CSTAR, .ia32FMask, .ia32KernelGSBase, .ia32TSCAux,
                                .ia32SpecCtrl]

/// Runs an allocation, reporting exhaustion as the VMX layer's error.
func outOfMemoryAsVMXError<T: ~Copyable>(_ body: () throws(FrameError) -> T) throws(VMXError) -> T {
    do { return try body() } catch { throw .outOfMemory }
}

/// What the guest gets: the machine itself (its memory, devices, interrupts
/// and ACPI tables, less the hypervisor's own memory), or the hypervisor's
/// private RAM and emulated devices.
public enum GuestPlatformKind: Equatable, Sendable {
    case passthrough, isolated
}

public struct VCPU<A: FrameAllocator>: ~Copyable {
    let vmcs: PhysFrame<A>
    public var ioBitmap: IOBitmap<A>
    public var msrBitmap: MSRBitmap<A>
    /// Guest MSR list at offset 0, host MSR list at offset 2048.
    let msrLists: PhysFrame<A>
    let msrCount: Int

    public var registers = GeneralRegisters()
    /// The exits Boot/vmx.asm handles itself, and the CPUID answers it
    /// repeats: a view of `fastPathFrame`.
    public let fastPath: ExitFastPath
    let fastPathFrame: PhysFrame<A>
    /// APIC virtualization (APICVirtualization.swift): the virtual-APIC page,
    /// the APIC-access page, and where the guest sees the latter.
    let virtualAPICPage: PhysFrame<A>
    let apicAccessPage: PhysFrame<A>
    public internal(set) var apicVirtualized = false
    var apicAccessGuestPhysical: UInt64 = 0
    /// What the platform's last store asked for, and the EOI-exit bitmap the
    /// VMCS holds (compared field by field: a copy of the whole status costs
    /// a byte-wise move on every entry).
    var interruptStatus = VirtualInterruptStatus()
    /// A HLT exit may have left the guest in the HLT state (see `storeVirtualAPIC`).
    var mayBeHalted = false
    /// The page the last SIPI started the vCPU at, and the exit count then
    /// (see `handleINIT`: the INIT the wait-for-SIPI state held back).
    var sipiPage: UInt64? = nil
    var exitsAtSIPI: UInt64 = 0
    /// Started by a SIPI: exits may save SMI blocking (see `clearSMIBlocking`).
    var startedBySIPI = false
    var eoiExitWritten0: UInt64 = 0, eoiExitWritten1: UInt64 = 0, eoiExitWritten2: UInt64 = 0, eoiExitWritten3: UInt64 = 0
    /// When the guest owns the interrupt controller (passed-through PIC), an
    /// interrupt that arrives while it runs is its own: it is re-injected.
    public var reflectsExternalInterrupts = false
    public var statistics = ExitStatistics()
    public var events = EventQueue()
    public let capabilities: VMXCapabilities
    public let features: VCPUFeatures
    public let platformKind: GuestPlatformKind
    public let ram: GuestRAM
    public var cpuidPolicy: CPUIDPolicy
    let cr0View: GuestControlRegisterView
    let cr4View: GuestControlRegisterView
    /// The adjusted controls; `primaryControls` tracks the window bits since.
    let controls: VMXControlSettings
    var primaryControls: PrimaryProcessorBasedControls
    var launched = false

    // Emulated guest state.
    public internal(set) var xcr0: UInt64 = 1
    var apicBase: UInt64 = APICBase.resetBSP.rawValue
    var mtrrDefType: UInt64 = 0
    var miscEnable: UInt64 = 1
    var xss: UInt64 = 0
    var tpr: UInt64 = 0
    /// The CR4 bits MOV to CR4 may set (see `allowedCR4Bits`), from `setup`.
    var guestCR4Bits: UInt64 = 0
    /// CR2 for the #PF the vCPU queued (string I/O), written just before its injection.
    var faultAddress: UInt64?
    var timerVector: UInt8 = 0
    var timerPeriod: UInt64 = 0
    var timerDeadline: UInt64 = 0
    /// The platform's next timer deadline as of the last entry, in host TSC.
    var platformDeadline: UInt64?
    /// The VMCS TSC offset: the guest's TSC is the host's plus it (devices
    /// keep the guest's time; the preemption timer counts the host's).
    var tscOffset: UInt64 = 0
    /// Whether "activate VMX-preemption timer" is set in the VMCS.
    var preemptionTimerOn = false
    /// The event the last exit interrupted (IDT-vectoring information): it is
    /// delivered again before anything else.
    var reinjection: EventInjection?
    var lastExitTSC: UInt64 = 0
    var lastExitReason = ExitReason(rawValue: 0)
    /// The last exit resumed the guest and is counted at the next entry.
    var exitUnrecorded = false
    /// I/O and MSR exits may be handled inside the exit trampoline
    /// (QuickExits.swift). Only for a kernel whose trampoline hands them to
    /// `ExitFastPath.quickExit` with this vCPU's and its platform's types.
    public var quickExits = false
    /// What the run loop does after a quick exit that came back to it.
    var quickAction = ExitAction.resume

    /// Frames `init` takes from its allocator: the VMCS, the two I/O bitmaps,
    /// the MSR bitmap, the MSR lists, the fast path's block, the virtual-APIC
    /// page and the APIC-access page.
    public static var frameCount: Int { 8 }

    /// Creation: allocates the VMCS, bitmaps and MSR lists and decides the
    /// controls. `setup` then writes the VMCS.
    public init<H: VMXHardware>(_ hw: H, allocator: A, capabilities caps: VMXCapabilities, ram: GuestRAM,
                                platform: GuestPlatformKind = .isolated) throws(VMXError) {
        // Everything that can fail before `self` is whole happens on locals:
        // a noncopyable value cannot be half-built when an init throws.
        let vmcsFrame = try outOfMemoryAsVMXError { () throws(FrameError) in try PhysFrame(from: allocator) }
        let io = try outOfMemoryAsVMXError { () throws(FrameError) in try IOBitmap(from: allocator, interceptAll: true) }
        var msrs = try outOfMemoryAsVMXError { () throws(FrameError) in try MSRBitmap(from: allocator, interceptAll: true) }
        let lists = try outOfMemoryAsVMXError { () throws(FrameError) in try PhysFrame(from: allocator) }
        let fastFrame = try outOfMemoryAsVMXError { () throws(FrameError) in try PhysFrame(from: allocator) }
        let virtualAPIC = try outOfMemoryAsVMXError { () throws(FrameError) in try PhysFrame(from: allocator) }
        let apicAccess = try outOfMemoryAsVMXError { () throws(FrameError) in try PhysFrame(from: allocator) }
        let settings = try Self.controlSettings(caps, platform: platform)
        let f = Self.features(hw, caps, settings)
        var policy = CPUIDPolicy(querying: { leaf, subleaf in hw.cpuid(leaf: leaf, subleaf: subleaf) })
        if platform == .passthrough { Self.openLocalAPIC(hw, &msrs, &policy) }
        // Instructions the controls let the guest run are the ones CPUID may show.
        if f.rdtscp { policy.extended1EDXHidden &= ~CPUIDLeaf80000001EDX.rdtscp.rawValue }
        if f.invpcid { policy.leaf7EBXHidden &= ~CPUIDLeaf7EBX.invpcid.rawValue }
        if f.xsaves { policy.xsaveFeaturesHidden &= ~CPUIDLeafDSubleaf1EAX.xsaves.rawValue }
        Self.checkCompactedXSAVE(hw, &policy)
        let count = Self.fillMSRLists(hw, lists.pointer, &msrs, f)

        vmcs = vmcsFrame
        ioBitmap = io
        msrBitmap = msrs
        msrLists = lists
        msrCount = count
        fastPath = ExitFastPath(zeroed: fastFrame.pointer)
        fastPath.timerShift = UInt32(caps.misc.preemptionTimerTSCShift)
        fastPathFrame = fastFrame
        virtualAPICPage = virtualAPIC
        apicAccessPage = apicAccess
        capabilities = caps
        features = f
        platformKind = platform
        self.ram = ram
        cpuidPolicy = policy
        cr0View = .cr0(fixed: caps.cr0Fixed, unrestrictedGuest: true)
        // CPUID mirrors OSXSAVE and PKE: their changes must exit, to drop cached answers.
        cr4View = .cr4(fixed: caps.cr4Fixed, tracked: CR4Bits.osxsave.rawValue | CR4Bits.pke.rawValue)
        controls = settings
        primaryControls = settings.primary
        // SDM 25.2 "Format of the VMCS Region": the revision identifier first.
        vmcs.pointer.storeBytes(of: caps.basic.revisionID, as: UInt32.self)
    }

    /// The passthrough guest's local APIC is the CPU's: its x2APIC registers
    /// (MSRs 800H-8FFH) and TSC deadline run without exits, and CPUID shows
    /// x2APIC when the CPU has it. IA32_APIC_BASE still exits (see
    /// `writeGuestAPICBase`): the APIC page must not be moved over memory.
    // SDM 11.12.1.2 "x2APIC Register Address Space"
    static func openLocalAPIC<H: VMXHardware>(_ hw: H, _ bitmap: inout MSRBitmap<A>, _ policy: inout CPUIDPolicy) {
        let leaf1 = CPUIDLeaf1ECX(rawValue: hw.cpuid(leaf: CPUIDLeaf.features, subleaf: 0).ecx)
        if leaf1.contains(.x2APIC) {
            policy.leaf1ECXHidden &= ~CPUIDLeaf1ECX.x2APIC.rawValue
            for msr in UInt32(0x800)...0x8FF {
                try? bitmap.setReadIntercept(msr: msr, false)
                try? bitmap.setWriteIntercept(msr: msr, false)
            }
        }
        if leaf1.contains(.tscDeadline) {
            try? bitmap.setReadIntercept(msr: MSR.ia32TSCDeadline.address, false)
            try? bitmap.setWriteIntercept(msr: MSR.ia32TSCDeadline.address, false)
        }
    }

    /// The TSC the guest reads now (RDTSC with TSC offsetting).
    func guestTSC<H: VMXHardware>(_ hw: H) -> UInt64 { hw.readTSC() &+ tscOffset }

    /// Asks the host CPU for the compacted XSAVE size with every component
    /// the guest may enable switched on (CPUID.(0xD,1):EBX follows XCR0), and
    /// keeps the compacted format from the guest if the answer disagrees with
    /// the CPU's own layout. Needs the host's CR4.OSXSAVE (see `prepareCPU`).
    static func checkCompactedXSAVE<H: VMXHardware>(_ hw: H, _ policy: inout CPUIDPolicy) {
        let mask = policy.supportedXCR0
        guard mask != 0, hw.readCR4() & CR4Bits.osxsave.rawValue != 0,
              hw.cpuid(leaf: CPUIDLeaf.xsave, subleaf: 1).eax & CPUIDLeafDSubleaf1EAX.xsavec.rawValue != 0 else { return }
        let saved = hw.readXCR0()
        hw.writeXCR0(mask)
        let reported = hw.cpuid(leaf: CPUIDLeaf.xsave, subleaf: 1).ebx
        hw.writeXCR0(saved)
        policy.requireConsistentCompactedFormat(reportedSize: reported, for: mask)
    }

    /// Makes this VMCS current on this CPU (VMPTRLD).
    public func bind<H: VMXHardware>(_ hw: H) throws(VMXError) { try hw.vmptrld(vmcs.address) }

    /// Writes the VMCS back to memory and makes it inactive (VMCLEAR); the
    /// next entry after `bind` is a VMLAUNCH again.
    public mutating func unbind<H: VMXHardware>(_ hw: H) throws(VMXError) {
        try hw.vmclear(vmcs.address)
        launched = false
    }

    /// Setup: VMCLEAR and VMPTRLD, then controls (with the EPT root), host
    /// state, and guest state for `start`.
    public mutating func setup<H: VMXHardware>(_ hw: H, eptPointer: UInt64, start: GuestStart) throws(VMXError) {
        try unbind(hw)
        try bind(hw)
        var settings = controls
        if start.mode == .long64 { settings.entry.insert(.ia32eModeGuest) }
        registers = start.registers
        let policy = cpuidPolicy
        guestCR4Bits = Self.allowedCR4Bits(fixed1: capabilities.cr4Fixed.fixed1) { leaf, subleaf in
            policy.guestView(leaf: leaf, subleaf: subleaf, host: hw.cpuid(leaf: leaf, subleaf: subleaf),
                             guest: CPUIDGuestState(cr4: 0, xcr0: 1))
        }
        try writeControls(hw, settings, eptPointer: eptPointer)
        tscOffset = 0   // writeControls starts the guest's TSC at the host's
        // Mappings cached for this EPTP before its tables were written must
        // not be used. SDM 29.4.3.1 "Operations that Invalidate Cached Mappings".
        if capabilities.eptVPID?.inveptSingleContext == true { try hw.invept(eptPointer) }
        try writeHostState(hw)
        try writeGuestState(hw, start)
        if start.mode == .waitForSIPI { try enterWaitForSIPI(hw, afterINIT: false) }
    }

    /// What the vCPU relies on is required; the rest is taken when offered.
    /// SDM Appendix A.3-A.5 for the allowed settings.
    /// On the passthrough platform the guest owns the interrupt controllers:
    /// external interrupts and NMIs are delivered through its IDT without an
    /// exit, HLT waits for them in the guest, and CR8 is its own TPR.
    static func controlSettings(_ caps: VMXCapabilities, platform: GuestPlatformKind = .isolated) throws(VMXError)
        -> VMXControlSettings {
        let own = platform == .isolated
        let required = VMXControlSettings(
            pinBased: own ? .externalInterruptExiting : PinBasedControls(rawValue: 0),
            primary: (own ? .hltExiting : PrimaryProcessorBasedControls(rawValue: 0))
                | .useIOBitmaps | .useMSRBitmaps | .activateSecondaryControls,
            secondary: .enableEPT | .unrestrictedGuest,
            exit: .hostAddressSpaceSize | .acknowledgeInterruptOnExit | .saveIA32EFER | .loadIA32EFER
                | .saveIA32PAT | .loadIA32PAT,
            entry: .loadIA32EFER | .loadIA32PAT)
        let optional = VMXControlSettings(
            pinBased: own ? .nmiExiting | .virtualNMIs | .activatePreemptionTimer : .activatePreemptionTimer,
            // CR8 exits keep a 64-bit guest off the host's APIC TPR (SDM 26.3).
            primary: .mwaitExiting | .monitorExiting | .useTSCOffsetting
                | (own ? .cr8LoadExiting | .cr8StoreExiting : PrimaryProcessorBasedControls(rawValue: 0)),
            // No VPID: then every VM entry and exit flushes the guest's
            // translations (SDM 28.3.3.1), which emulated MOV to CR0/CR3/CR4
            // rely on; with VPID they would need INVVPID (SDM 28.3.3.3).
            secondary: .enableRDTSCP | .enableINVPCID | .enableXSAVES,
            exit: .saveDebugControls, entry: .loadDebugControls)
        var settings: VMXControlSettings
        do { settings = try caps.adjust(required: required, optional: optional) } catch { throw .controlsUnsupported(error) }
        // Virtual NMIs need NMI exiting (SDM 27.2.1.1 "VM-Execution Control Fields").
        if !settings.pinBased.contains(.nmiExiting) { settings.pinBased.remove(.virtualNMIs) }
        // The preemption timer is switched on only while the guest's timer is armed.
        if !caps.pinBased.mustBeOne.contains(.activatePreemptionTimer) {
            settings.pinBased.remove(.activatePreemptionTimer)
        }
        return settings
    }

    static func features<H: VMXHardware>(_ hw: H, _ caps: VMXCapabilities, _ settings: VMXControlSettings) -> VCPUFeatures {
        var f = VCPUFeatures()
        f.preemptionTimer = caps.pinBased.allows(.activatePreemptionTimer)
        f.virtualNMIs = settings.pinBased.contains(.virtualNMIs)
        f.rdtscp = settings.secondary.contains(.enableRDTSCP)
        f.invpcid = settings.secondary.contains(.enableINVPCID)
        f.xsaves = settings.secondary.contains(.enableXSAVES)
        f.tscOffsetting = settings.primary.contains(.useTSCOffsetting)
        f.activityHLT = caps.misc.supportsActivityHLT
        let extended = CPUIDLeaf80000001EDX(rawValue: hw.cpuid(leaf: CPUIDLeaf.extendedFeatures, subleaf: 0).edx)
        f.switchesTSCAux = extended.contains(.rdtscp)
        f.supports1GiBPages = extended.contains(.page1GiB)
        if extended.contains(.syscall) { f.eferWritable |= EFER.sce.rawValue }
        if extended.contains(.longMode) { f.eferWritable |= EFER.lme.rawValue }
        if extended.contains(.nx) { f.eferWritable |= EFER.nxe.rawValue }
        if hw.cpuid(leaf: CPUIDLeaf.extendedBase, subleaf: 0).eax >= CPUIDLeaf.addressSizes {
            let width = hw.addressSizes.physicalAddressBits
            if width >= 32 && width <= 52 { f.physicalAddressBits = width }
        }
        if hw.cpuid(leaf: CPUIDLeaf.basic, subleaf: 0).eax >= CPUIDLeaf.structuredExtendedFeatures {
            let leaf7 = CPUIDLeaf7EDX(rawValue: hw.cpuid(leaf: CPUIDLeaf.structuredExtendedFeatures, subleaf: 0).edx)
            f.switchesSpecCtrl = leaf7.intersects(.ibrsIBPB | .stibp | .ssbd)
            f.predictionCommand = leaf7.contains(.ibrsIBPB)
        }
        return f
    }

    /// Fills the MSR lists and opens the bitmap for the MSRs the CPU swaps or
    /// the VMCS holds. Returns the number of swapped MSRs.
    static func fillMSRLists<H: VMXHardware>(_ hw: H, _ lists: UnsafeMutableRawPointer,
                                             _ bitmap: inout MSRBitmap<A>, _ f: VCPUFeatures) -> Int {
        var count = 0
        for i in 0..<switchedMSRs.count {
            let msr = switchedMSRs[i].address
            if msr == MSR.ia32TSCAux.address && !f.switchesTSCAux { continue }
            if msr == MSR.ia32SpecCtrl.address && !f.switchesSpecCtrl { continue }
            lists.storeBytes(of: UInt64(msr), toByteOffset: count * 16, as: UInt64.self)
            lists.storeBytes(of: UInt64(0), toByteOffset: count * 16 + 8, as: UInt64.self)
            lists.storeBytes(of: UInt64(msr), toByteOffset: 2048 + count * 16, as: UInt64.self)
            lists.storeBytes(of: hw.readMSR(msr), toByteOffset: 2048 + count * 16 + 8, as: UInt64.self)
            // The guest reads and writes them directly: the CPU swaps them.
            try? bitmap.setReadIntercept(msr: msr, false)
            try? bitmap.setWriteIntercept(msr: msr, false)
            count += 1
        }
        // IBPB is a command: the guest's write reaches the CPU; RDMSR #GPs.
        if f.predictionCommand { try? bitmap.setWriteIntercept(msr: MSR.ia32PredCmd.address, false) }
        let vmcsHeld: [7 of MSR] = [.ia32FSBase, .ia32GSBase, .ia32SysenterCS, .ia32SysenterESP,
                                     .ia32SysenterEIP, .ia32PAT, .ia32TimeStampCounter]
        for i in 0..<vmcsHeld.count {
            try? bitmap.setReadIntercept(msr: vmcsHeld[i].address, false)
            // Writing the TSC would change the host's; a PAT write is validated.
            let address = vmcsHeld[i].address
            if address != MSR.ia32TimeStampCounter.address && address != MSR.ia32PAT.address {
                try? bitmap.setWriteIntercept(msr: address, false)
            }
        }
        return count
    }

    func writeControls<H: VMXHardware>(_ hw: H, _ settings: VMXControlSettings, eptPointer: UInt64) throws(VMXError) {
        try hw.write(VMCSFields.Control32.pinBasedControls, settings.pinBased.rawValue)
        try hw.write(VMCSFields.Control32.primaryProcessorBasedControls, settings.primary.rawValue)
        try hw.write(VMCSFields.Control32.secondaryProcessorBasedControls, settings.secondary.rawValue)
        try hw.write(VMCSFields.Control32.primaryExitControls, settings.exit.rawValue)
        try hw.write(VMCSFields.Control32.entryControls, settings.entry.rawValue)
        try hw.write(VMCSFields.Control32.exceptionBitmap, 0)
        try hw.write(VMCSFields.Control32.pageFaultErrorCodeMask, 0)
        try hw.write(VMCSFields.Control32.pageFaultErrorCodeMatch, 0)
        try hw.write(VMCSFields.Control32.cr3TargetCount, 0)
        try hw.write(VMCSFields.Control32.entryInterruptionInformation, 0)
        try hw.write(VMCSFields.Control64.ioBitmapA, ioBitmap.addressA)
        try hw.write(VMCSFields.Control64.ioBitmapB, ioBitmap.addressB)
        try hw.write(VMCSFields.Control64.msrBitmaps, msrBitmap.address)
        try hw.write(VMCSFields.Control64.eptPointer, eptPointer)
        try hw.write(VMCSFields.Control64.tscOffset, 0)
        try hw.write(VMCSFields.ControlNatural.cr0GuestHostMask, cr0View.guestHostMask)
        try hw.write(VMCSFields.ControlNatural.cr4GuestHostMask, cr4View.guestHostMask)
        // The same list is the exit store and the entry load list, so what the
        // guest left is what it gets back; the host list restores the host.
        try hw.write(VMCSFields.Control64.exitMSRStoreAddress, msrLists.address)
        try hw.write(VMCSFields.Control64.entryMSRLoadAddress, msrLists.address)
        try hw.write(VMCSFields.Control64.exitMSRLoadAddress, msrLists.address + 2048)
        try hw.write(VMCSFields.Control32.exitMSRStoreCount, UInt32(msrCount))
        try hw.write(VMCSFields.Control32.entryMSRLoadCount, UInt32(msrCount))
        try hw.write(VMCSFields.Control32.exitMSRLoadCount, UInt32(msrCount))
    }

    /// SDM 25.5 "Host-State Area": what a VM exit loads.
    func writeHostState<H: VMXHardware>(_ hw: H) throws(VMXError) {
        let s = hw.hostSegments()
        try hw.write(VMCSFields.HostNatural.cr0, hw.readCR0())
        try hw.write(VMCSFields.HostNatural.cr3, hw.readCR3())
        try hw.write(VMCSFields.HostNatural.cr4, hw.readCR4())
        try hw.write(VMCSFields.Host16.csSelector, s.cs)
        try hw.write(VMCSFields.Host16.ssSelector, s.ss)
        try hw.write(VMCSFields.Host16.dsSelector, s.ds)
        try hw.write(VMCSFields.Host16.esSelector, s.es)
        try hw.write(VMCSFields.Host16.fsSelector, s.fs)
        try hw.write(VMCSFields.Host16.gsSelector, s.gs)
        try hw.write(VMCSFields.Host16.trSelector, s.tr)
        try hw.write(VMCSFields.HostNatural.fsBase, s.fsBase)
        try hw.write(VMCSFields.HostNatural.gsBase, s.gsBase)
        try hw.write(VMCSFields.HostNatural.trBase, s.trBase)
        try hw.write(VMCSFields.HostNatural.gdtrBase, s.gdtrBase)
        try hw.write(VMCSFields.HostNatural.idtrBase, s.idtrBase)
        try hw.write(VMCSFields.Host32.ia32SysenterCS, UInt32(truncatingIfNeeded: hw.readMSR(.ia32SysenterCS)))
        try hw.write(VMCSFields.HostNatural.ia32SysenterESP, hw.readMSR(.ia32SysenterESP))
        try hw.write(VMCSFields.HostNatural.ia32SysenterEIP, hw.readMSR(.ia32SysenterEIP))
        try hw.write(VMCSFields.Host64.ia32EFER, hw.readMSR(.ia32EFER))
        try hw.write(VMCSFields.Host64.ia32PAT, hw.readMSR(.ia32PAT))
        try hw.write(VMCSFields.HostNatural.rip, hw.exitEntryPoint)
    }

    /// SS, DS, ES, FS and GS alike, based at 0.
    func writeDataSegments<H: VMXHardware>(_ hw: H, selector: UInt16, limit: UInt32, rights: SegmentAccessRights)
        throws(VMXError) {
        let data: [5 of (VMCSField16, VMCSFieldNatural, VMCSField32, VMCSField32)] = [
            (VMCSFields.Guest16.ssSelector, VMCSFields.GuestNatural.ssBase, VMCSFields.Guest32.ssLimit, VMCSFields.Guest32.ssAccessRights),
            (VMCSFields.Guest16.dsSelector, VMCSFields.GuestNatural.dsBase, VMCSFields.Guest32.dsLimit, VMCSFields.Guest32.dsAccessRights),
            (VMCSFields.Guest16.esSelector, VMCSFields.GuestNatural.esBase, VMCSFields.Guest32.esLimit, VMCSFields.Guest32.esAccessRights),
            (VMCSFields.Guest16.fsSelector, VMCSFields.GuestNatural.fsBase, VMCSFields.Guest32.fsLimit, VMCSFields.Guest32.fsAccessRights),
            (VMCSFields.Guest16.gsSelector, VMCSFields.GuestNatural.gsBase, VMCSFields.Guest32.gsLimit, VMCSFields.Guest32.gsAccessRights),
        ]
        for i in 0..<data.count {
            try hw.write(data[i].0, selector)
            try hw.write(data[i].1, 0)
            try hw.write(data[i].2, limit)
            try hw.write(data[i].3, rights.rawValue)
        }
    }

    /// SDM 25.4 "Guest-State Area", with the start's mode.
    func writeGuestState<H: VMXHardware>(_ hw: H, _ start: GuestStart) throws(VMXError) {
        var cr0: UInt64 = CR0Bits.et.rawValue
        var cr4: UInt64 = 0
        var efer: UInt64 = 0
        var codeRights = SegmentAccessRights.code16, dataRights = SegmentAccessRights.data16
        var codeSelector: UInt16 = UInt16(truncatingIfNeeded: (start.rip >> 4) & 0xF000)
        var dataSelector: UInt16 = 0
        var limit: UInt32 = 0xFFFF
        var codeBase: UInt64 = UInt64(codeSelector) << 4
        switch start.mode {
        case .real, .waitForSIPI:
            break
        case .protected32:
            cr0 |= CR0Bits.pe.rawValue
            codeRights = .code32; dataRights = .data32
            codeSelector = start.codeSelector; dataSelector = start.dataSelector
            limit = 0xFFFF_FFFF; codeBase = 0
        case .long64:
            cr0 |= CR0Bits.pe.rawValue | CR0Bits.pg.rawValue | CR0Bits.wp.rawValue
            cr4 = CR4Bits.pae.rawValue
            efer = EFER.lme.rawValue | EFER.lma.rawValue
            codeRights = .code64; dataRights = .data32
            codeSelector = start.codeSelector; dataSelector = start.dataSelector
            limit = 0xFFFF_FFFF; codeBase = 0
        }
        try hw.write(VMCSFields.GuestNatural.cr0, cr0View.realValue(forGuestValue: cr0))
        try hw.write(VMCSFields.ControlNatural.cr0ReadShadow, cr0View.readShadow(forGuestValue: cr0))
        try hw.write(VMCSFields.GuestNatural.cr4, cr4View.realValue(forGuestValue: cr4))
        try hw.write(VMCSFields.ControlNatural.cr4ReadShadow, cr4View.readShadow(forGuestValue: cr4))
        try hw.write(VMCSFields.GuestNatural.cr3, start.cr3)
        try hw.write(VMCSFields.GuestNatural.dr7, DR7.initial)
        try hw.write(VMCSFields.GuestNatural.rsp, start.rsp)
        try hw.write(VMCSFields.GuestNatural.rip, start.rip - codeBase)
        try hw.write(VMCSFields.GuestNatural.rflags, start.rflags | RFLAGS.fixedOne.rawValue)
        try hw.write(VMCSFields.Guest64.ia32EFER, efer)
        try hw.write(VMCSFields.Guest64.ia32PAT, PAT.powerOn.rawValue)
        try hw.write(VMCSFields.Guest64.ia32DebugCtl, 0)
        try hw.write(VMCSFields.Guest64.vmcsLinkPointer, UInt64.max)
        try hw.write(VMCSFields.Guest32.ia32SysenterCS, 0)
        try hw.write(VMCSFields.GuestNatural.ia32SysenterESP, 0)
        try hw.write(VMCSFields.GuestNatural.ia32SysenterEIP, 0)
        try hw.write(VMCSFields.Guest32.interruptibilityState, 0)
        try hw.write(VMCSFields.Guest32.activityState, ActivityState.active.rawValue)
        try hw.write(VMCSFields.GuestNatural.pendingDebugExceptions, 0)

        try hw.write(VMCSFields.Guest16.csSelector, codeSelector)
        try hw.write(VMCSFields.GuestNatural.csBase, codeBase)
        try hw.write(VMCSFields.Guest32.csLimit, limit)
        try hw.write(VMCSFields.Guest32.csAccessRights, codeRights.rawValue)
        try writeDataSegments(hw, selector: dataSelector, limit: limit, rights: dataRights)
        // LDTR unusable; TR a busy 32/64-bit TSS, as VM entry requires.
        try hw.write(VMCSFields.Guest16.ldtrSelector, 0)
        try hw.write(VMCSFields.GuestNatural.ldtrBase, 0)
        try hw.write(VMCSFields.Guest32.ldtrLimit, 0)
        try hw.write(VMCSFields.Guest32.ldtrAccessRights, SegmentAccessRights.unusable.rawValue)
        try hw.write(VMCSFields.Guest16.trSelector, 0)
        try hw.write(VMCSFields.GuestNatural.trBase, 0)
        try hw.write(VMCSFields.Guest32.trLimit, 0xFFFF)
        try hw.write(VMCSFields.Guest32.trAccessRights, SegmentAccessRights.busyTSS.rawValue)
        try hw.write(VMCSFields.GuestNatural.gdtrBase, start.gdtrBase)
        try hw.write(VMCSFields.Guest32.gdtrLimit, start.gdtrLimit)
        try hw.write(VMCSFields.GuestNatural.idtrBase, start.idtrBase)
        try hw.write(VMCSFields.Guest32.idtrLimit, start.idtrLimit)
    }
}
