import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// Exits per reason and the hypervisor's cycles on each, as `run` records them.
@Suite struct ExitStatisticsTests {
    @Test func runCountsEveryExitByReason() throws {
        var rig = try VCPURig()
        _ = rig.run([.cpuid(leaf: 0), .out(0x80, 1), .cpuid(leaf: 1), .out(0x80, 2), .cpuid(leaf: 0)])
        let s = rig.vcpu.statistics
        #expect(s.count(of: .cpuid) == 3)
        #expect(s.count(of: .ioInstruction) == 2)
        #expect(s.count(of: .tripleFault) == 1)   // the script's end
        #expect(s.count(of: .hlt) == 0)
        #expect(s.totalExits == 6)
    }

    @Test func cyclesAreTheHypervisorsTimeFromTheTSCNotTheGuests() throws {
        var rig = try VCPURig()
        rig.hw.tscStep = 7
        var cpuid = ScriptedExit.cpuid(leaf: 0)
        cpuid.guestCycles = 1000   // time in the guest: not the exit's cost
        _ = rig.run([cpuid, cpuid, .exitPort(0)])
        let s = rig.vcpu.statistics
        // From the TSC read after the exit to the one before the next entry
        // (or the return): one fake TSC step each here.
        #expect(s.cycles(of: .cpuid) == 2 * 7)
        #expect(s.cycles(of: .ioInstruction) == 7)
        #expect(s.count(of: .ioInstruction) == 1)
    }

    @Test func aStoppingExitIsCountedOnceWhenTheGuestIsRunAgain() throws {
        var rig = try VCPURig()
        _ = rig.run([.eptViolation(gpa: 0xFEE0_0000, qualification: 1)])
        _ = rig.run([.cpuid(leaf: 0)])   // e.g. after the kernel emulated the access
        let s = rig.vcpu.statistics
        #expect(s.count(of: .eptViolation) == 1)
        #expect(s.totalExits == 3)   // EPT violation, CPUID, the script's end
        #expect(rig.hw.resumeFlags == [false, true, true])
    }

    @Test func forEachVisitsReasonsInOrder() throws {
        var rig = try VCPURig()
        _ = rig.run([.out(0x80, 1), .cpuid(leaf: 0), .hlt()])
        var seen: [(UInt16, UInt64)] = []
        rig.vcpu.statistics.forEach { reason, count, _, _ in seen.append((reason.rawValue, count)) }
        #expect(seen.map(\.0) == [10, 12, 30])
        #expect(seen.map(\.1) == [1, 1, 1])
    }

    @Test func reasonsPastTheTableShareTheLastSlot() {
        var s = ExitStatistics()
        s.record(ExitReason(rawValue: 200), cycles: 5)
        s.record(ExitReason(rawValue: 95), cycles: 6)
        #expect(s.count(of: ExitReason(rawValue: 1000)) == 2)
        #expect(s.cycles(of: ExitReason(rawValue: 95)) == 11)
        #expect(s.totalExits == 2)
    }
}
