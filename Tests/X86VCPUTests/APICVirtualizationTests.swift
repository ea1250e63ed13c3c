import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

/// A platform whose local APIC the CPU virtualizes: records the page it is
/// given and what the vCPU hands it; `status` is what its next store returns.
struct VirtualAPICPlatform: GuestPlatform {
    var page: UnsafeMutableRawPointer?
    var loads = 0
    var status: VirtualInterruptStatus?
    var stores = 0
    var writes: [(Int, UInt32)] = []
    var eois: [UInt8] = []
    var reads: [(UInt64, Int)] = []
    var pending = false
    var acknowledged = 0
    var deadline: UInt64?

    mutating func portIn(_ port: UInt16, width: OperandWidth) -> UInt32 { UInt32.max }
    mutating func portOut(_ port: UInt16, width: OperandWidth, value: UInt32) -> VCPUExit? { nil }
    mutating func consoleWrite(_ bytes: UnsafeRawBufferPointer) {}
    func decodesMMIO(_ gpa: UInt64) -> Bool { gpa >> 12 == 0xFEE00 }
    mutating func mmioRead(_ gpa: UInt64, size: Int) -> UInt64 { reads.append((gpa, size)); return 0x55 }
    var interruptPending: Bool { pending }
    var nextDeadline: UInt64? { deadline }
    mutating func acknowledgeInterrupt() -> UInt8? { acknowledged += 1; return 0x30 }
    mutating func loadAPIC(from page: VirtualAPICPage) { self.page = page.pointer; loads += 1 }
    mutating func storeAPIC(into page: VirtualAPICPage, status: inout VirtualInterruptStatus) -> Bool {
        stores += 1
        defer { self.status = nil }
        guard let next = self.status else { return false }
        status = next
        return true
    }
    mutating func apicWrite(offset: Int, value: UInt32) { writes.append((offset, value)) }
    mutating func apicEOI(vector: UInt8) { eois.append(vector) }
}

@Suite struct APICVirtualizationTests {
    static let base: UInt64 = 0xFEE0_0000

    static func virtualized() throws -> VCPURig {
        var rig = try VCPURig()
        let page = try rig.vcpu.virtualizeAPIC(rig.hw, at: base)
        #expect(page != nil)
        return rig
    }

    @Test func turningItOnSetsTheControlsAndThePages() throws {
        var rig = try VCPURig()
        let can = rig.vcpu.canVirtualizeAPIC
        #expect(can)
        let cr8 = PrimaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.primaryProcessorBasedControls)))
        let page = try rig.vcpu.virtualizeAPIC(rig.hw, at: Self.base)
        #expect(page == rig.field(VMCSFields.Control64.apicAccessAddress) && page != 0)
        #expect(rig.field(VMCSFields.Control64.virtualAPICAddress) != 0)
        #expect(rig.field(VMCSFields.Control64.virtualAPICAddress) != page)
        let secondary = SecondaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.secondaryProcessorBasedControls)))
        #expect(secondary.contains(.virtualizeAPICAccesses) && secondary.contains(.apicRegisterVirtualization)
                && secondary.contains(.virtualInterruptDelivery) && !secondary.contains(.virtualizeX2APICMode))
        let primary = PrimaryProcessorBasedControls(rawValue: UInt32(rig.field(VMCSFields.Control32.primaryProcessorBasedControls)))
        #expect(primary.contains(.useTPRShadow))
        // CR8 exits were on before (the vCPU's own TPR); now CR8 is the page's TPR.
        #expect(cr8.contains(.cr8LoadExiting) && !primary.contains(.cr8LoadExiting) && !primary.contains(.cr8StoreExiting))
        let on = rig.vcpu.apicVirtualized
        #expect(on)
    }

    @Test func notOnThePassthroughPlatform() throws {
        var rig = try VCPURig(platform: .passthrough)
        let can = rig.vcpu.canVirtualizeAPIC
        let page = try rig.vcpu.virtualizeAPIC(rig.hw, at: Self.base)
        let on = rig.vcpu.apicVirtualized
        #expect(!can && page == nil && !on)
    }

    @Test func withoutVirtualInterruptDeliveryTheCPUIsNotUsed() throws {
        // The Skylake-X model without virtual-interrupt delivery (allowed-1 bit 9 of 48BH).
        let hw = FakeHardware(bochs: BochsCapabilities.corei7_skylake_x)
        hw.cpu.msrs[0x48B] = hw.cpu.msrs[0x48B]! & ~(UInt64(1) << (32 + 9))
        var rig = try VCPURig(hw: hw)
        let can = rig.vcpu.canVirtualizeAPIC
        let page = try rig.vcpu.virtualizeAPIC(rig.hw, at: Self.base)
        #expect(!can && page == nil)
    }

    @Test func everyExitLoadsThePageAndEveryEntryStoresWithoutInjecting() throws {
        var rig = try Self.virtualized()
        var platform = VirtualAPICPlatform()
        platform.pending = true
        platform.status = VirtualInterruptStatus(requesting: 0x41, servicing: 0x30, eoiExit1: 1 << 2)
        rig.preset(VMCSFields.GuestNatural.rflags, 0x202)
        // Port exits (CPUID and VMCALL may be handled without leaving the assembly fast path).
        rig.hw.script = [.out(0x80, 1), .out(0x80, 2)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.loads == rig.entries.count && platform.stores == rig.entries.count && platform.page != nil)
        #expect(rig.field(VMCSFields.Guest16.interruptStatus) == 0x3041)
        #expect(rig.field(VMCSFields.Control64.eoiExitBitmap1) == 1 << 2)
        // The CPU delivers: no acknowledgment, no injection, no interrupt window.
        #expect(platform.acknowledged == 0)
        #expect(rig.entries.allSatisfy { !$0.injected.isValid && !$0.interruptWindowExiting })
    }

    /// Quick exits (QuickExits.swift) do what the run loop does around them:
    /// the page is the model's to load after the exit and the model's
    /// changes go into it before the guest resumes.
    @Test func aQuickExitLoadsThePageAndStoresWhatChangedBeforeResuming() throws {
        var rig = try Self.virtualized()
        rig.enableQuickExits(for: VirtualAPICPlatform.self)
        var platform = VirtualAPICPlatform()
        platform.status = VirtualInterruptStatus(requesting: 0x41, servicing: 0x30)
        rig.preset(VMCSFields.GuestNatural.rflags, 0x202)
        rig.hw.script = [.out(0x80, 1), .out(0x80, 2)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.hw.quickResumes == 2)
        // Three exits (two quick, then the script's end) and one entry, two quick resumes.
        #expect(platform.loads == 3 && platform.stores == 3)
        #expect(rig.field(VMCSFields.Guest16.interruptStatus) == 0x3041)
        #expect(platform.acknowledged == 0)
    }

    /// The CPU moves RVI and SVI itself; the same status again (a second
    /// timer interrupt of the same vector) must still reach the VMCS.
    @Test func theInterruptStatusIsWrittenEvenWhenUnchangedSinceTheLastStore() throws {
        var rig = try Self.virtualized()
        var platform = VirtualAPICPlatform()
        platform.status = VirtualInterruptStatus(requesting: 0xEC)
        rig.hw.script = [.out(0x80, 1)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.field(VMCSFields.Guest16.interruptStatus) == 0xEC)
        rig.preset(VMCSFields.Guest16.interruptStatus, 0xEC00)   // delivered: RVI 0, SVI 0xEC
        platform.status = VirtualInterruptStatus(requesting: 0xEC)
        rig.hw.script = [.out(0x80, 2)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.field(VMCSFields.Guest16.interruptStatus) == 0xEC)
    }

    @Test func anAPICWriteHandsTheValueInThePageToThePlatform() throws {
        var rig = try Self.virtualized()
        var platform = VirtualAPICPlatform()
        rig.hw.script = [.out(0x80, 1)]
        _ = rig.vcpu.run(rig.hw, &platform)
        let page = try #require(platform.page)
        page.storeBytes(of: UInt32(0x0002_0030), toByteOffset: 0x320, as: UInt32.self)
        let rip = rig.rip
        rig.hw.script = [ScriptedExit(.apicWrite, qualification: 0x320)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.writes.count == 1 && platform.writes.first.map { $0 == (0x320, 0x0002_0030) } == true)
        #expect(rig.rip == rip)   // trap-like: the CPU already stepped over the write
    }

    @Test func anEOIExitNamesTheVector() throws {
        var rig = try Self.virtualized()
        var platform = VirtualAPICPlatform()
        rig.hw.script = [ScriptedExit(.virtualizedEOI, qualification: 0x61)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.eois == [0x61])
    }

    @Test func anAPICAccessOfTheInstructionIsEmulatedOtherAccessesStop() throws {
        var rig = try Self.virtualized()
        var platform = VirtualAPICPlatform()
        let start = rig.rip
        rig.memory.store([0x8B, 0x87, 0x90, 0x03, 0x00, 0x00], at: start)   // mov eax, [edi+0x390]
        rig.hw.script = [ScriptedExit(.apicAccess, qualification: 0x0390)]    // linear read at 390H
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(platform.reads.count == 1 && platform.reads.first.map { $0 == (Self.base + 0x390, 4) } == true)
        #expect(rig.entries.last?.registers.rax == 0x55 && rig.entries.last?.rip == start + 6)
        // A write qualification for a reading instruction, an access of event
        // delivery (type 3) and a page walk (type 15): the guest stops.
        for q: UInt64 in [0x1390, 0x3030, 0xF030] {
            rig.hw.script = [ScriptedExit(.apicAccess, qualification: q)]
            guard case .unhandled(let reason, let qualification, _) = rig.vcpu.run(rig.hw, &platform) else {
                Issue.record("no stop for \(q)"); continue
            }
            #expect(reason == .apicAccess && qualification == q)
        }
        #expect(platform.reads.count == 1)
    }

    @Test func aHaltedGuestWithADeliverableInterruptIsWoken() throws {
        var rig = try Self.virtualized()
        var platform = VirtualAPICPlatform()
        platform.deadline = rig.hw.readTSC() + 1_000_000_000
        rig.preset(VMCSFields.GuestNatural.rflags, 0x202)
        rig.hw.script = [.hlt()]                      // halts until the deadline
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.entries.last?.activityState == ActivityState.hlt.rawValue)
        platform.pending = true                       // an interrupt arrived meanwhile
        rig.hw.script = [.out(0x80, 1)]
        _ = rig.vcpu.run(rig.hw, &platform)
        #expect(rig.entries.last?.activityState == ActivityState.active.rawValue)
    }
}
