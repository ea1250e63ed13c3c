import Testing
import TestSupport
import X86Arch
import VMX

// SDM 27.3.1.5-27.3.1.6, guest non-register state and PDPTEs: one broken
// rule per case, and the activity and interruptibility states that must pass.

private typealias C32 = VMCSFields.Control32
private typealias G32 = VMCSFields.Guest32
private typealias G64 = VMCSFields.Guest64
private typealias GN = VMCSFields.GuestNatural

private let hlt: Mutation = set(G32.activityState, 1)

let guestNonRegisterCases: [Breakage] = [
    // Activity state.
    brk("activity state 4", .long, G32.activityState, 4, .guestActivityStateInvalid),
    brk("HLT on a CPU without it", .long, G32.activityState, 1, .guestActivityStateInvalid,
        prepare: { _, env in env.capabilities.misc = VMXMisc(rawValue: env.capabilities.misc.rawValue & ~(1 << 6)) }),
    brk("HLT with SS DPL 3", .virtual8086, G32.activityState, 1, .guestActivityHLTWithSSDPL),
    brk("HLT with blocking by MOV SS", .long, reported: G32.activityState, .guestActivityHLTWithBlocking,
        prepare: hlt, set(G32.interruptibilityState, 2)),
    brk("shutdown state with #UD injected", .long, G32.activityState, 2, .guestActivityStateRejectsInjection,
        prepare: inject(0x8000_0306)),
    brk("wait-for-SIPI with NMI injected", .long, G32.activityState, 3, .guestActivityStateRejectsInjection,
        prepare: inject(0x8000_0202)),
    brk("HLT with #GP injected", .long, G32.activityState, 1, .guestActivityStateRejectsInjection,
        prepare: inject(0x8000_0B0D)),
    // Interruptibility state.
    brk("interruptibility bit 5", .long, G32.interruptibilityState, 0x20, .guestInterruptibilityReservedBits),
    brk("blocking by STI and MOV SS", .long, G32.interruptibilityState, 3, .guestInterruptibilitySTIAndMOVSS,
        prepare: interruptsEnabled),
    brk("blocking by STI with IF clear", .long, G32.interruptibilityState, 1, .guestInterruptibilitySTIWithoutIF),
    brk("external interrupt under blocking by STI", .long, G32.interruptibilityState, 1,
        .guestInterruptibilityExternalInterruptInjection, prepare: both(interruptsEnabled, inject(0x8000_0030))),
    brk("NMI under blocking by MOV SS", .long, G32.interruptibilityState, 2, .guestInterruptibilityNMIInjection,
        prepare: inject(0x8000_0202)),
    brk("blocking by SMI outside SMM", .long, G32.interruptibilityState, 4, .guestInterruptibilitySMIOutsideSMM),
    brk("virtual NMI injected under blocking by NMI", .long, G32.interruptibilityState, 8,
        .guestInterruptibilityVirtualNMIInjection, prepare: inject(0x8000_0202)),
    // Pending debug exceptions.
    brk("pending debug bit 4", .long, GN.pendingDebugExceptions, 0x10, .guestPendingDebugReservedBits),
    brk("pending debug bit 16 and up", .real, GN.pendingDebugExceptions, 0x2_0000, .guestPendingDebugReservedBits),
    brk("single-step under MOV SS without BS", .long, reported: GN.pendingDebugExceptions, .guestPendingDebugBSRequired,
        prepare: set(G32.interruptibilityState, 2), set(GN.rflags, 0x102)),
    brk("BS pending without single-step in HLT", .long, GN.pendingDebugExceptions, 0x4000,
        .guestPendingDebugBSNotAllowed, prepare: hlt),
    brk("BS with DEBUGCTL.BTF under MOV SS", .long, reported: GN.pendingDebugExceptions, .guestPendingDebugBSNotAllowed,
        prepare: both(set(G32.interruptibilityState, 2), both(set(GN.rflags, 0x102),
                                                              set(GN.pendingDebugExceptions, 0x4000))),
        set(G64.ia32DebugCtl, 2)),
    // VMCS link pointer.
    brk("link pointer not aligned", .long, G64.vmcsLinkPointer, 0x0030_D010, .guestVMCSLinkPointerAddress),
    brk("link pointer beyond MAXPHYADDR", .long, G64.vmcsLinkPointer, 1 << 45, .guestVMCSLinkPointerAddress),
    brk("link pointer set without VMCS shadowing", .real, G64.vmcsLinkPointer, 0x0030_D000,
        .guestVMCSLinkPointerNotInvalid),
    // 27.3.1.6 PDPTEs.
    brk("PDPTE1 with reserved bit 1", .pae, G64.pdpte1, 0x5003, .guestPDPTEReservedBits),
    brk("PDPTE3 beyond MAXPHYADDR", .pae, G64.pdpte3, 1 << 40 | 0x7001, .guestPDPTEReservedBits),
]

@Suite struct VMEntryGuestNonRegisterStateChecksTests {
    @Test func validActivityAndInterruptibilityCombinationsPass() {
        let env = Fixture.environment(for: .long)
        let states: [(activity: UInt32, interruptibility: UInt32, rflags: UInt64, pending: UInt64, info: UInt32)] = [
            (1, 0, 0x2, 0, 0),                     // HLT
            (1, 0, 0x202, 0, 0x8000_0020),         // HLT, external interrupt injected
            (1, 0, 0x2, 0, 0x8000_0301),           // HLT, #DB injected
            (1, 0, 0x2, 0, 0x8000_0312),           // HLT, #MC injected
            (2, 0, 0x2, 0, 0x8000_0202),           // shutdown, NMI injected
            (2, 0, 0x2, 0, 0x8000_0312),           // shutdown, #MC injected
            (3, 0, 0x2, 0, 0),                     // wait-for-SIPI
            (0, 1, 0x202, 0, 0),                   // blocking by STI, IF = 1
            (0, 2, 0x102, 0x4000, 0),              // MOV SS blocking while single-stepping: BS set
            (0, 8, 0x2, 0, 0),                     // blocking by NMI, nothing injected
        ]
        for s in states {
            let vmcs = Fixture.vmcs(.long)
            vmcs.preset(G32.activityState, s.activity)
            vmcs.preset(G32.interruptibilityState, s.interruptibility)
            vmcs.preset(GN.rflags, s.rflags)
            vmcs.preset(GN.pendingDebugExceptions, s.pending)
            vmcs.preset(C32.entryInterruptionInformation, s.info)
            let violation = env.check(vmcs)
            #expect(violation == nil, "\(s): \(violation.map { "\($0.rule)" } ?? "")")
        }
    }
}
