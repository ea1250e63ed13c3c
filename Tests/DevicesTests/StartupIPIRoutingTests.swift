// The guest's INIT and STARTUP IPIs, taken out of its ICR writes: which of
// its CPUs each one reaches, and what goes to the real ICR unchanged.
import Testing
@testable import Devices

@Suite struct StartupIPIRoutingTests {
    /// Guest CPUs 0..3 with APIC IDs 0, 2, 4, 6 (as on a machine with SMT off).
    static let ids: [UInt32] = [0, 2, 4, 6]

    func route(_ low: UInt32, to destination: UInt32 = 0, x2APIC: Bool = false, from sender: Int = 0) -> StartupIPIRoute {
        StartupIPIRouting.route(low: low, destination: destination, x2APIC: x2APIC, sender: sender, count: Self.ids.count,
                                apicID: { Self.ids[$0] })
    }

    // Linux's wakeup_secondary_cpu_via_init: INIT assert (level), INIT
    // de-assert, then STARTUP twice, each to one physical APIC ID.
    @Test func linuxsSequenceReachesTheOneCPU() {
        #expect(route(0x0000_C500, to: 4) == .initialize(0b0100))
        #expect(route(0x0000_8500, to: 4) == .ignore)
        #expect(route(0x0000_0699, to: 4) == .startup(vector: 0x99, 0b0100))
    }

    @Test func otherDeliveryModesGoToTheRealICR() {
        #expect(route(0x0000_40F0, to: 2) == .forward)         // fixed
        #expect(route(0x0000_0400, to: 2) == .forward)         // NMI
        #expect(route(0x000C_00F0) == .forward)                // fixed, all excluding self
    }

    /// The kernel's early answer agrees with `route` for every delivery mode.
    @Test func onlyINITAndSTARTUPAreStartSignals() {
        for mode: UInt32 in 0...7 {
            let low = mode << 8 | 0x4000 | 0x20
            #expect(StartupIPIRouting.isStartSignal(low: low) == (mode == 5 || mode == 6), "mode \(mode)")
            #expect(StartupIPIRouting.isStartSignal(low: low) == (route(low, to: 2) != .forward), "mode \(mode)")
        }
    }

    @Test func shorthandsNameTheGuestsCPUs() {
        #expect(route(0x000C_4500, from: 1) == .initialize(0b1101))     // all excluding self
        #expect(route(0x0008_0608, from: 1) == .startup(vector: 8, 0b1111))   // all including self
        #expect(route(0x0004_4500, from: 3) == .initialize(0b1000))     // self
    }

    @Test func aCPUThatRunsNoVCPUIsNeverAddressed() {
        #expect(route(0x0000_4500, to: 1) == .ignore)    // APIC ID 1: not the guest's
        #expect(route(0x0000_0608, to: 7) == .ignore)
    }

    @Test func broadcastDestinationsAndX2APICIDs() {
        #expect(route(0x0000_4500, to: 0xFF) == .initialize(0b1111))
        #expect(route(0x0000_4500, to: 0xFF, x2APIC: true) == .ignore)  // an x2APIC ID 255 nobody has
        #expect(route(0x0000_0610, to: 0xFFFF_FFFF, x2APIC: true) == .startup(vector: 0x10, 0b1111))
        #expect(route(0x0000_0610, to: 6, x2APIC: true) == .startup(vector: 0x10, 0b1000))
    }

    @Test func logicalDestinationsAreNotDelivered() {
        #expect(route(0x0000_4D00, to: 0x01) == .ignore)
    }

    @Test func atMostSixtyFourCPUsAreAddressed() {
        let r = StartupIPIRouting.route(low: 0x0008_4500, destination: 0, x2APIC: false, sender: 0, count: 100,
                                        apicID: { UInt32($0) })
        #expect(r == .initialize(UInt64.max))
        let far = StartupIPIRouting.route(low: 0x0000_4500, destination: 80, x2APIC: true, sender: 0, count: 100,
                                          apicID: { UInt32($0) })
        #expect(far == .ignore)
    }
}
