// One guest, one vCPU per CPU (the passthrough platform). Each AP builds its
// own vCPU on the shared EPT and waits in the wait-for-SIPI state until the
// guest starts it through its local APIC. The exit path takes no lock: each
// CPU has its own vCPU, platform and statistics. What the CPUs share lives in
// one frame, written with single stores and one compare-and-swap:
//
//   0     the CPU that stopped the guest, plus 1 (0: running)
//   4     the boot CPU's state (APControlBlock.State: guestReady, stopped)
//   8     how many APs have a vCPU
//   64    their tables frames (8 bytes each; an AP's control block and
//         statistics are there, see PerCPUTables)
//   1024  the boot CPU's exit statistics once it stopped
//   3328  each CPU's vCPU waits for SIPI (4 bytes each; IPIRouting.swift)
//   3584  each CPU's INIT and STARTUP mailbox (4 bytes each)
//
// The first CPU whose guest stops (power-off port, a failure, a triple fault
// on the passthrough platform resets the machine instead) claims the stop,
// reports what and where with its own VMCS, and stops the others: INIT makes
// a CPU in VMX non-root operation exit, a start-up IPI one that waits for
// SIPI; a CPU in root mode sees the claim before its next entry. Each stopped
// CPU leaves its statistics and halts; the claimant sums them and powers off.
import X86Arch
import VMX
import X86VCPU
import GuestBoot
import HostBoot
import Devices

@_extern(c, "atomic_cas32") func atomic_cas32(_ pointer: UnsafeMutableRawPointer, _ expected: UInt32, _ new: UInt32) -> UInt32

/// What every AP's vCPU is built from, written by the boot CPU before any AP starts.
struct SharedGuest {
    let frame: UInt64
    let eptPointer: UInt64
    let ram: GuestRAM

    static let stopperOffset = 0
    static let bootStateOffset = 4
    static let countOffset = 8
    static let tablesOffset = 64
    static let capacity = StartupIPIRouting.capacity - 1
    static let bootStatisticsOffset = 1024

    var base: UnsafeMutableRawPointer { KernelFrames().pointer(to: frame) }
    var apCount: Int { Int(mem_load32(base + Self.countOffset)) }
    func apRecord(_ i: Int) -> APRecord { APRecord(tables: base.load(fromByteOffset: Self.tablesOffset + 8 * i, as: UInt64.self)) }

    /// The boot CPU, during bring-up: `record`'s AP gets a vCPU (false: no room).
    func register(_ record: APRecord) -> Bool {
        let count = apCount
        guard count < Self.capacity else { return false }
        base.storeBytes(of: record.tables, toByteOffset: Self.tablesOffset + 8 * count, as: UInt64.self)
        mem_store32(base + Self.countOffset, UInt32(count + 1))
        return true
    }
}

nonisolated(unsafe) var sharedGuest: SharedGuest? = nil
/// The stop word's address (0: one CPU only), read before every entry.
nonisolated(unsafe) var guestStopWord: UInt64 = 0
/// The TSC rate bring-up measured, for the stop's waits.
nonisolated(unsafe) var smpTSCRate: TSCRate? = nil

/// Allocates the shared frame for a passthrough guest that may get several CPUs.
func shareGuest(eptPointer: UInt64, ram: GuestRAM) {
    guard let frame = KernelFrames().allocateFrame() else {
        logWarn("cpus: no frame for the CPUs' shared state: the guest gets the boot CPU only")
        return
    }
    sharedGuest = SharedGuest(frame: frame, eptPointer: eptPointer, ram: ram)
    guestStopWord = frame
}

/// x2APIC mode: WRMSR to the ICR exits (xAPIC mode: `protectAPICPage`).
func takeICRWrites(_ vcpu: inout VCPU<KernelFrames>) {
    try? vcpu.msrBitmap.setWriteIntercept(msr: 0x830, true)
}

/// The real local APIC page read-only in EPT, so the guest's ICR writes exit;
/// false (smp stays off) when EPT cannot map it so.
func protectAPICPage(_ ept: inout ExtendedPageTable<KernelFrames>) -> Bool {
    let page = cpu_rdmsr(MSR.ia32APICBase.address) & 0xF_FFFF_F000
    do {
        try ept.unmap(guestPhysical: page, size: frameSize)
        try ept.map(guestPhysical: page, hostPhysical: page, size: frameSize, permissions: .read, memoryType: .uncacheable)
    } catch {
        logWarn("smp: EPT cannot write-protect the local APIC page at \(hex: page): the guest gets the boot CPU only")
        return false
    }
    return true
}

func guestStopRequested() -> Bool {
    guestStopWord != 0 && mem_load32(KernelFrames().pointer(to: guestStopWord)) != 0
}

/// An AP after VMXON on the passthrough platform: its vCPU waits for the
/// guest's SIPI, then runs the guest on this CPU until it stops.
func runAPVCPU(_ root: consuming VMXRoot<ReservedFrame>, _ guest: SharedGuest, _ record: APRecord) -> Never {
    let hw = Hardware()
    let caps = root.capabilities
    var vcpu: VCPU<KernelFrames>
    do {
        vcpu = try VCPU(hw, allocator: KernelFrames(), capabilities: caps, ram: guest.ram, platform: .passthrough)
        try vcpu.setup(hw, eptPointer: guest.eptPointer, start: GuestStart(mode: .waitForSIPI, rip: 0))
    } catch {
        record.error.pointee = error
        record.checkIn(.failed, .vcpu)
        parkInVMXRoot(root)
    }
    giveMachine(&vcpu)
    takeICRWrites(&vcpu)
    vcpu.quickExits = true   // vmxQuickExit runs this vCPU type with KernelPlatform
    var platform = KernelPlatform()
    platform.routeIPIs(cpu: Int(record.block.pointee.index))
    platform.waitingForSIPI(true)   // before the check-in: the guest may start it any time after
    record.checkIn(.guestReady)
    let exit = vcpu.run(hw, &platform)
    let me = Int(record.block.pointee.index)
    let stats = vcpu.statistics
    if case .tripleFault = exit {
        // Reported before anything else: the machine resets after it.
        _ = reportGuestExit(exit, hw, caps)
        logInfo("passthrough: the guest reset the machine (triple fault on cpu \(me)): resetting it")
        resetMachine()
    }
    guard claimStop(me, exit) else { leaveStatistics(stats, record.tables + UInt64(PerCPUTables.statisticsOffset), record.statePointer) }
    logInfo("cpu \(me) (APIC ID \(record.block.pointee.apicID)) stopped the guest")
    let status = reportGuestExit(exit, hw, caps)
    reportAllStatistics(stopOtherCPUs(me), own: stats, me: me)
    powerOff(code: status)
}

/// True when this CPU is the first to stop the guest (it then reports and
/// stops the others); false when another CPU did (this one then halts).
func claimStop(_ me: Int, _ exit: VCPUExit) -> Bool {
    guard guestStopWord != 0 else { return true }
    if case .stopRequested = exit { return false }
    return atomic_cas32(KernelFrames().pointer(to: guestStopWord), 0, UInt32(me + 1)) == 0
}

/// A CPU another one stopped: its statistics for the report, then it halts.
func leaveStatistics(_ stats: ExitStatistics, _ at: UInt64, _ state: UnsafeMutableRawPointer) -> Never {
    KernelFrames().pointer(to: at).storeBytes(of: stats, as: ExitStatistics.self)
    mem_store32(state, APControlBlock.State.stopped.rawValue)
    park()
}

/// The boot CPU's side of `leaveStatistics`.
func leaveBootStatistics(_ stats: ExitStatistics) -> Never {
    guard let guest = sharedGuest else { park() }
    leaveStatistics(stats, guest.frame + UInt64(SharedGuest.bootStatisticsOffset), guest.base + SharedGuest.bootStateOffset)
}

/// A CPU with a vCPU, by index (0: the boot CPU).
struct GuestCPU {
    var apicID: UInt32
    var state: UnsafeMutableRawPointer
    var statistics: UInt64
}

/// Stops every other CPU that runs the guest: INIT, then a start-up IPI,
/// repeated until it says it stopped (at most ~200 ms). Returns how many
/// CPUs took part, this one included.
func stopOtherCPUs(_ me: Int) -> Int {
    guard let guest = sharedGuest, guest.apCount > 0 else { return 1 }
    let total = guest.apCount + 1
    let rate = smpTSCRate ?? TSCRate(ticksPerMillisecond: 1_000_000, source: .guess)
    for cpu in 0..<total where cpu != me {
        let target = guestCPU(cpu, guest)
        var stopped = false
        for _ in 0..<100 where !stopped {
            sendToCPU(.initAssert(to: target.apicID))
            rate.wait(microseconds: 1000)
            sendToCPU(.startup(to: target.apicID, vector: 0))
            rate.wait(microseconds: 1000)
            stopped = mem_load32(target.state) == APControlBlock.State.stopped.rawValue
        }
        if !stopped { logWarn("cpu \(cpu) (APIC ID \(target.apicID)) did not stop within 200 ms; its exits are not counted") }
    }
    return total
}

func guestCPU(_ cpu: Int, _ guest: SharedGuest) -> GuestCPU {
    if cpu == 0 {
        return GuestCPU(apicID: bootCPUAPICID, state: guest.base + SharedGuest.bootStateOffset,
                        statistics: guest.frame + UInt64(SharedGuest.bootStatisticsOffset))
    }
    let record = guest.apRecord(cpu - 1)
    return GuestCPU(apicID: record.block.pointee.apicID, state: record.statePointer,
                    statistics: record.tables + UInt64(PerCPUTables.statisticsOffset))
}

nonisolated(unsafe) var bootCPUAPICID: UInt32 = 0

/// An IPI from this CPU's local APIC, in the mode the guest left it in.
func sendToCPU(_ command: InterruptCommand) {
    let base = cpu_rdmsr(MSR.ia32APICBase.address)
    if base & (1 << 10) != 0 { LocalAPICICR.send(command, x2APIC: X2APICMSRs()); return }
    let mmio = base & 0xF_FFFF_F000
    guard mmio < identityMappedEnd else { return }
    _ = LocalAPICICR.send(command, xAPIC: XAPICMMIO(base: mmio))
}

/// Each CPU's exits, then their sum.
func reportAllStatistics(_ total: Int, own: ExitStatistics, me: Int) {
    guard total > 1, let guest = sharedGuest else {
        reportStatistics(own)
        return
    }
    var sum = ExitStatistics()
    for cpu in 0..<total {
        let target = guestCPU(cpu, guest)
        if cpu == me {
            sum.add(own)
            logInfo("exit statistics: cpu \(cpu) (APIC ID \(target.apicID)): \(own.totalExits) exits")
        } else if mem_load32(target.state) == APControlBlock.State.stopped.rawValue {
            let theirs = KernelFrames().pointer(to: target.statistics).load(as: ExitStatistics.self)
            sum.add(theirs)
            logInfo("exit statistics: cpu \(cpu) (APIC ID \(target.apicID)): \(theirs.totalExits) exits")
        }
    }
    reportStatistics(sum)
}
