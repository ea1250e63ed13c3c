import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// SDM 24.6 "Discovering Support for VMX", 24.7 "Enabling and Entering VMX
// Operation", 24.8 "Restrictions on VMX Operation", 25.11.5 "VMXON Region".
@Suite struct VMXRootTests {
    let vmxe = CR4Bits.vmxe.rawValue

    @Test func enableLocksAnUnlockedFeatureControlWithVMXOutsideSMX() throws {
        let hw = FakeHardware()
        hw.cpu.msrs[0x3A] = 0x2   // unlocked; firmware set "VMX inside SMX"
        let frames = HostFrameAllocator()
        let root = try VMXRoot(enabling: hw, allocator: frames)
        // Lock (bit 0) and VMX outside SMX (bit 2), other firmware bits kept.
        #expect(hw.cpu.msrs[0x3A] == 0x7)
        #expect(hw.cpu.msrWrites.map(\.address) == [0x3A])
        #expect(root.capabilities.basic.revisionID == 0x2B)
    }

    @Test func enableLeavesALockedEnabledFeatureControlAlone() throws {
        let hw = FakeHardware()
        let frames = HostFrameAllocator()
        let root = try VMXRoot(enabling: hw, allocator: frames)
        #expect(hw.cpu.msrWrites.isEmpty)
        _ = root.capabilities
    }

    @Test func lockedWithoutVMXOutsideSMXFailsAsDisabledByFirmware() {
        let hw = FakeHardware()
        hw.cpu.msrs[0x3A] = 0x1
        let frames = HostFrameAllocator()
        #expect(throws: VMXError.vmxDisabledByFirmware) { _ = try VMXRoot(enabling: hw, allocator: frames) }
        #expect(hw.calls.isEmpty)
        #expect(hw.cpu.cr4Writes.isEmpty && hw.cpu.msrWrites.isEmpty)
        #expect(frames.liveFrames == 0)
    }

    @Test func noVMXInCPUIDFailsBeforeAnyVMXMSRIsRead() {
        let hw = FakeHardware()
        hw.cpu.setCPUID(leaf: 1, CPUIDResult(ecx: 0))
        let frames = HostFrameAllocator()
        #expect(throws: VMXError.vmxNotSupported) { _ = try VMXRoot(enabling: hw, allocator: frames) }
        #expect(hw.cpu.msrReads.isEmpty)
        #expect(hw.calls.isEmpty)
    }

    @Test func enableSetsCR4VMXEAndForcesCR0FixedBitsBeforeVMXON() throws {
        let hw = FakeHardware()
        hw.cpu.cr0 = 0x8000_0011   // NE clear: CR0 FIXED0 (0x80000021) forces it
        hw.cpu.cr4 = 0x220
        let frames = HostFrameAllocator()
        let root = try VMXRoot(enabling: hw, allocator: frames)
        #expect(hw.cpu.cr0 == 0x8000_0031)
        #expect(hw.cpu.cr4 == 0x2220)
        #expect(hw.cr4AtVMXON.map { $0 & vmxe != 0 } == true)
        _ = root.capabilities
    }

    @Test func aCR4BitThatVMXForbidsIsReportedAndNothingIsEnabled() {
        let hw = FakeHardware()
        hw.cpu.cr4 = 0x220 | 1 << 22   // PKE: not in this model's CR4 FIXED1 (0x3727FF)
        let frames = HostFrameAllocator()
        #expect(throws: VMXError.fixedBitsViolated(.cr4, violatingBits: 1 << 22)) {
            _ = try VMXRoot(enabling: hw, allocator: frames)
        }
        #expect(hw.calls.isEmpty)
        #expect(hw.cpu.cr4Writes.isEmpty)
        #expect(frames.liveFrames == 0)
    }

    @Test func aCR0BitThatVMXForbidsIsReported() {
        let hw = FakeHardware()
        hw.cpu.msrs[0x487] = 0xBFFF_FFFF   // CR0 FIXED1 without CD
        hw.cpu.cr0 = 0xC000_0031
        let frames = HostFrameAllocator()
        #expect(throws: VMXError.fixedBitsViolated(.cr0, violatingBits: 1 << 30)) {
            _ = try VMXRoot(enabling: hw, allocator: frames)
        }
        #expect(hw.calls.isEmpty)
    }

    @Test func theVMXONRegionHoldsTheRevisionIdentifier() throws {
        let hw = FakeHardware()
        let frames = HostFrameAllocator()
        let root = try VMXRoot(enabling: hw, allocator: frames)
        guard case .vmxon(let region)? = hw.calls.first else {
            Issue.record("no VMXON: \(hw.calls)"); return
        }
        #expect(region % 4096 == 0)
        #expect(frames.pointer(to: region).load(as: UInt32.self) == 0x2B)
        #expect(frames.liveFrames == 1)
        _ = root.capabilities
    }

    @Test func aVMXONFailureClearsCR4VMXEAgainAndReturnsTheRegion() {
        let hw = FakeHardware()
        hw.vmxonError = .vmFailInvalid
        let frames = HostFrameAllocator()
        #expect(throws: VMXError.vmFailInvalid) { _ = try VMXRoot(enabling: hw, allocator: frames) }
        #expect(hw.cpu.cr4 & vmxe == 0)
        #expect(hw.cpu.cr4Writes.last.map { $0 & vmxe } == 0)
        #expect(frames.liveFrames == 0)
        #expect(frames.misuse.isEmpty)
    }

    @Test func aRegionLargerThanAFrameIsRefused() {
        let hw = FakeHardware()
        hw.cpu.msrs[0x480] = 0x00D8_1800_0000_002B   // region size 0x1800
        let frames = HostFrameAllocator()
        #expect(throws: VMXError.outOfMemory) { _ = try VMXRoot(enabling: hw, allocator: frames) }
        #expect(hw.calls.isEmpty)
    }

    @Test func noFrameForTheRegionIsOutOfMemory() {
        let hw = FakeHardware()
        let frames = HostFrameAllocator()
        frames.failAfter = 0
        #expect(throws: VMXError.outOfMemory) { _ = try VMXRoot(enabling: hw, allocator: frames) }
        #expect(hw.calls.isEmpty)
        #expect(hw.cpu.cr4 & vmxe == 0)
    }

    @Test func disableDoesVMXOFFClearsVMXEAndReturnsTheRegion() throws {
        let hw = FakeHardware()
        let frames = HostFrameAllocator()
        let root = try VMXRoot(enabling: hw, allocator: frames)
        #expect(frames.liveFrames == 1)
        try root.disable(hw)
        #expect(hw.calls.count == 2)
        #expect(hw.calls.last == .vmxoff)
        #expect(hw.cpu.cr4 & vmxe == 0)
        #expect(hw.cpu.cr4 == 0x220)
        #expect(frames.liveFrames == 0)
        #expect(frames.misuse.isEmpty)
    }

    @Test func aFailedVMXOFFIsReportedAndKeepsVMXE() throws {
        let hw = FakeHardware()
        hw.vmxoffError = .vmFailValid(VMInstructionError(rawValue: 23))
        let frames = HostFrameAllocator()
        let root = try VMXRoot(enabling: hw, allocator: frames)
        do {
            try root.disable(hw)
            Issue.record("VMXOFF failure not reported")
        } catch {
            #expect(error == .vmFailValid(VMInstructionError(rawValue: 23)))
        }
        // Still in VMX operation: CR4.VMXE cannot be cleared (SDM 24.8).
        #expect(hw.cpu.cr4 & vmxe != 0)
    }
}
