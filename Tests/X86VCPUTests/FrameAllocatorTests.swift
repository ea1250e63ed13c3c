import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

@Suite struct PhysFrameTests {
    @Test func frameIsZeroedAlignedAndReturnedWhenItsOwnerGoesAway() throws {
        let fake = HostFrameAllocator(frames: 4)
        do {
            let frame = try PhysFrame(from: fake)
            #expect(frame.address % 4096 == 0)
            #expect(fake.liveFrames == 1)
            let bytes = frame.pointer.bindMemory(to: UInt8.self, capacity: 4096)
            #expect((0..<4096).allSatisfy { bytes[$0] == 0 })
        }
        #expect(fake.liveFrames == 0)
        #expect(fake.misuse.isEmpty)
    }

    @Test func exhaustionIsATypedError() {
        let fake = HostFrameAllocator(frames: 1)
        fake.failAfter = 0
        #expect(throws: FrameError.outOfMemory) { _ = try PhysFrame(from: fake) }
    }
}
