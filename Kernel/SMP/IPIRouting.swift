// The guest's INIT and STARTUP IPIs with smp=on (Devices' StartupIPIRouting
// decides; this delivers). The ICR is the guest's real one, so its writes
// are taken: in xAPIC mode the APIC page is mapped read-only in EPT (a write
// is an EPT violation the vCPU decodes; everything but ICR bits 31:0 goes to
// the real register as written), in x2APIC mode WRMSR to 830H exits. An INIT
// becomes a flag in the target vCPU's mailbox, which it takes at its next exit
// (a STARTUP IPI is one: the wait-for-SIPI state takes the INIT); a STARTUP
// IPI is sent for real, so a vCPU that waits for SIPI exits with its vector.
// No real INIT reaches a CPU that runs the guest, and no IPI at all a CPU
// without a vCPU.
import X86Arch
import VMX
import X86VCPU
import HostBoot
import Devices

/// Per-CPU words in the shared frame (GuestCPUs.swift): the INIT and
/// STARTUP mailbox, whether the vCPU waits for SIPI.
let initMailboxOffset = 3584
let waitingOffset = 3328

extension KernelPlatform {
    /// Makes this vCPU's platform route the guest's INIT and STARTUP IPIs
    /// and poll its mailbox every millisecond (the preemption timer: a vCPU
    /// in HLT, which does not exit here, still exits for it).
    mutating func routeIPIs(cpu: Int) {
        routesIPIs = true
        cpuIndex = cpu
        realAPICPage = cpu_rdmsr(MSR.ia32APICBase.address) & 0xF_FFFF_F000
        pollTicks = smpTSCRate?.ticksPerMillisecond ?? 1_000_000
        cachedDeadline = 0
    }

    func sharedWord(_ offset: Int, _ cpu: Int) -> UnsafeMutableRawPointer {
        KernelFrames().pointer(to: guestStopWord + UInt64(offset + 4 * cpu))
    }

    @inline(__always)  // after every exit: the common answer without a call
    mutating func takeStartSignals() -> StartSignals? {
        guard routesIPIs else { return nil }
        return takeMailbox()
    }

    mutating func takeMailbox() -> StartSignals? {
        let p = sharedWord(initMailboxOffset, cpuIndex)
        var word = mem_load32(p)
        while word != 0 {
            let seen = atomic_cas32(p, word, 0)
            if seen == word { break }
            word = seen
        }
        guard word != 0 else { return nil }
        return StartSignals(initialize: word & Mailbox.initialize != 0,
                            startupVector: word & Mailbox.startup != 0 ? UInt8(truncatingIfNeeded: word >> 8) : nil)
    }

    mutating func waitingForSIPI(_ waiting: Bool) {
        if routesIPIs { mem_store32(sharedWord(waitingOffset, cpuIndex), waiting ? 1 : 0) }
    }

    /// The mailbox word: INIT (bit 0), a STARTUP IPI's vector (15:8) and valid bit (16).
    enum Mailbox {
        static let initialize: UInt32 = 1
        static let startup: UInt32 = 1 << 16
    }

    /// The offset in the real APIC page, when the write-protected page is it.
    func realAPICOffset(_ gpa: UInt64) -> UInt64? {
        guard routesIPIs, gpa & ~0xFFF == realAPICPage else { return nil }
        return gpa & 0xFFF
    }

    /// A read the instruction made together with its write (read-modify-write).
    func realAPICRead(_ offset: UInt64, size: Int) -> UInt64 {
        let p = KernelFrames().pointer(to: realAPICPage + offset)
        switch size {
        case 1: return UInt64(p.load(as: UInt8.self))
        case 2: return UInt64(p.loadUnaligned(as: UInt16.self))
        case 4: return UInt64(mem_load32(p))
        default: return p.loadUnaligned(as: UInt64.self)
        }
    }

    mutating func realAPICWrite(_ offset: UInt64, size: Int, value: UInt64) {
        let p = KernelFrames().pointer(to: realAPICPage + offset)
        if offset == 0x300 && size == 4 {
            let destination = mem_load32(KernelFrames().pointer(to: realAPICPage + 0x310)) >> 24
            routeICR(low: UInt32(truncatingIfNeeded: value), destination: destination, x2APIC: false)
            return
        }
        switch size {
        case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
        case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self)
        case 4: mem_store32(p, UInt32(truncatingIfNeeded: value))
        default: p.storeBytes(of: value, as: UInt64.self)
        }
    }

    /// WRMSR 830H in x2APIC mode: the whole ICR.
    mutating func x2APICICRWrite(_ value: UInt64) -> PlatformMSRAnswer {
        guard routesIPIs else { return .notMine }
        routeICR(low: UInt32(truncatingIfNeeded: value), destination: UInt32(truncatingIfNeeded: value >> 32), x2APIC: true)
        return .done(0)
    }

    mutating func routeICR(low: UInt32, destination: UInt32, x2APIC: Bool) {
        // Most IPIs (fixed, NMI) go out before the shared guest is even read.
        guard StartupIPIRouting.isStartSignal(low: low) else { return forwardICR(low: low, destination: destination, x2APIC: x2APIC) }
        guard let guest = sharedGuest else { return }
        let count = 1 + guest.apCount
        let route = StartupIPIRouting.route(low: low, destination: destination, x2APIC: x2APIC, sender: cpuIndex,
                                            count: count, apicID: { guestCPU($0, guest).apicID })
        switch route {
        case .forward:
            forwardICR(low: low, destination: destination, x2APIC: x2APIC)
        case .ignore:
            break
        case .initialize(let targets):
            // Taken at the target's next exit (at most a poll away); a
            // STARTUP IPI sent before then is kept with it.
            for cpu in 0..<min(count, StartupIPIRouting.capacity) where targets & (1 << UInt64(cpu)) != 0 {
                mem_store32(sharedWord(initMailboxOffset, cpu), Mailbox.initialize)
            }
        case .startup(let vector, let targets):
            for cpu in 0..<min(count, StartupIPIRouting.capacity) where targets & (1 << UInt64(cpu)) != 0 && cpu != cpuIndex {
                startup(cpu, vector: vector, guest, x2APIC: x2APIC)
            }
        }
    }

    /// The guest's IPI to the real ICR as written.
    func forwardICR(low: UInt32, destination: UInt32, x2APIC: Bool) {
        if x2APIC { cpu_wrmsr(0x830, UInt64(destination) << 32 | UInt64(low)) }
        else { mem_store32(KernelFrames().pointer(to: realAPICPage + 0x300), low) }
    }

    /// A STARTUP IPI to guest CPU `cpu`: sent for real to a vCPU that waits
    /// for SIPI (it exits with the vector; an INIT still in its mailbox is
    /// the one the wait took); kept with an INIT a running vCPU has not taken
    /// yet; otherwise dropped, as a running CPU drops it.
    func startup(_ cpu: Int, vector: UInt8, _ guest: SharedGuest, x2APIC: Bool) {
        if mem_load32(sharedWord(waitingOffset, cpu)) != 0 {
            sendStartup(to: guestCPU(cpu, guest).apicID, vector: vector, x2APIC: x2APIC)
            return
        }
        let box = sharedWord(initMailboxOffset, cpu)
        var word = mem_load32(box)
        while word & Mailbox.initialize != 0 {
            let seen = atomic_cas32(box, word, Mailbox.initialize | Mailbox.startup | UInt32(vector) << 8)
            if seen == word { return }
            word = seen
        }
    }

    /// A real STARTUP IPI; the guest's ICR destination (xAPIC) comes back after it.
    func sendStartup(to apicID: UInt32, vector: UInt8, x2APIC: Bool) {
        if x2APIC {
            LocalAPICICR.send(.startup(to: apicID, vector: vector), x2APIC: X2APICMSRs())
            return
        }
        let high = KernelFrames().pointer(to: realAPICPage + 0x310)
        let saved = mem_load32(high)
        _ = LocalAPICICR.send(.startup(to: apicID, vector: vector), xAPIC: XAPICMMIO(base: realAPICPage))
        mem_store32(high, saved)
    }
}
