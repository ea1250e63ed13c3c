import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

/// The byte at `offset` in the frame at `frame`, read from the fake's memory.
private func byte(_ fake: HostFrameAllocator, _ frame: UInt64, _ offset: Int) -> UInt8 {
    fake.pointer(to: frame + UInt64(offset)).load(as: UInt8.self)
}

private func allBytes(_ fake: HostFrameAllocator, _ frame: UInt64, equal value: UInt8, except: Int? = nil) -> Bool {
    (0..<4096).allSatisfy { $0 == except || byte(fake, frame, $0) == value }
}

@Suite struct IOBitmapTests {
    @Test func startsEmptyOrFullAndReturnsBothFrames() throws {
        let fake = HostFrameAllocator()
        do {
            let open = try IOBitmap(from: fake, interceptAll: false)
            #expect(open.addressA % 4096 == 0 && open.addressB % 4096 == 0 && open.addressA != open.addressB)
            #expect(allBytes(fake, open.addressA, equal: 0) && allBytes(fake, open.addressB, equal: 0))
            #expect(!open.intercepts(port: 0) && !open.accessExits(port: 0x80, size: 1))
            let closed = try IOBitmap(from: fake, interceptAll: true)
            #expect(allBytes(fake, closed.addressA, equal: 0xFF) && allBytes(fake, closed.addressB, equal: 0xFF))
            #expect(closed.intercepts(port: 0) && closed.intercepts(port: 0xFFFF))
            #expect(fake.liveFrames == 4)
        }
        #expect(fake.liveFrames == 0)
        #expect(fake.misuse.isEmpty)
    }

    @Test func failingSecondFrameReturnsTheFirst() {
        let fake = HostFrameAllocator()
        fake.failAfter = 1
        #expect(throws: FrameError.outOfMemory) { _ = try IOBitmap(from: fake, interceptAll: true) }
        #expect(fake.liveFrames == 0)
        #expect(fake.misuse.isEmpty)
    }

    // SDM 25.6.4: bitmap A holds ports 0000H-7FFFH, B holds 8000H-FFFFH, one bit each.
    @Test func portBitsLandWhereTheSDMPutsThem() throws {
        let fake = HostFrameAllocator()
        var bitmap = try IOBitmap(from: fake, interceptAll: false)
        bitmap.setIntercept(port: 0x64, true)       // A, byte 12, bit 4
        #expect(byte(fake, bitmap.addressA, 12) == 0x10)
        #expect(allBytes(fake, bitmap.addressA, equal: 0, except: 12))
        bitmap.setIntercept(port: 0x8000, true)     // B, byte 0, bit 0
        #expect(byte(fake, bitmap.addressB, 0) == 0x01)
        bitmap.setIntercept(port: 0xFFFF, true)     // B, byte 4095, bit 7
        #expect(byte(fake, bitmap.addressB, 4095) == 0x80)
        bitmap.setIntercept(port: 0x7FFF, true)     // A, byte 4095, bit 7
        #expect(byte(fake, bitmap.addressA, 4095) == 0x80)
        #expect(bitmap.intercepts(port: 0x64) && !bitmap.intercepts(port: 0x60) && !bitmap.intercepts(port: 0x65))

        bitmap.setIntercept(ports: 0x3F8...0x3FF, true) // COM1: all of A's byte 0x7F
        #expect(byte(fake, bitmap.addressA, 0x7F) == 0xFF)
        #expect(byte(fake, bitmap.addressA, 0x7E) == 0 && byte(fake, bitmap.addressA, 0x80) == 0)
        bitmap.setIntercept(port: 0x3FA, false)
        #expect(byte(fake, bitmap.addressA, 0x7F) == 0xFB)
    }

    @Test func rangesReachTheLastPortWithoutOverflow() throws {
        let fake = HostFrameAllocator()
        var bitmap = try IOBitmap(from: fake, interceptAll: false)
        bitmap.setIntercept(ports: 0xFFF8...0xFFFF, true)
        #expect(byte(fake, bitmap.addressB, 4095) == 0xFF)
        bitmap.setIntercept(ports: 0...0xFFFF, true)
        #expect(allBytes(fake, bitmap.addressA, equal: 0xFF) && allBytes(fake, bitmap.addressB, equal: 0xFF))
        bitmap.setIntercept(ports: 0x7FFF...0x8000, false) // straddles the two bitmaps
        #expect(byte(fake, bitmap.addressA, 4095) == 0x7F && byte(fake, bitmap.addressB, 0) == 0xFE)
    }

    // SDM 26.1.3: an access exits if any port it touches is intercepted, and
    // always if it wraps from FFFFH to 0000H.
    @Test func multiByteAccessesExitIfAnyPortIsIntercepted() throws {
        let fake = HostFrameAllocator()
        var bitmap = try IOBitmap(from: fake, interceptAll: false)
        bitmap.setIntercept(port: 0x3F8, true)
        #expect(bitmap.accessExits(port: 0x3F7, size: 1) == false)
        #expect(bitmap.accessExits(port: 0x3F7, size: 2) == true)
        #expect(bitmap.accessExits(port: 0x3F4, size: 4) == false)
        #expect(bitmap.accessExits(port: 0x3F5, size: 4) == true)
        #expect(bitmap.accessExits(port: 0x3F9, size: 4) == false)
        bitmap.setIntercept(port: 0x8000, true)
        #expect(bitmap.accessExits(port: 0x7FFF, size: 2) == true) // crosses from A into B
        #expect(bitmap.accessExits(port: 0xFFFC, size: 4) == false)
        #expect(bitmap.accessExits(port: 0xFFFD, size: 4) == true) // wraps: always exits
        #expect(bitmap.accessExits(port: 0xFFFF, size: 2) == true)
        #expect(bitmap.accessExits(port: 0xFFFF, size: 1) == false)
        #expect(bitmap.accessExits(port: 0x10, size: 3) == true)   // not a valid size
        #expect(bitmap.accessExits(port: 0x10, size: 0) == true)
    }
}
