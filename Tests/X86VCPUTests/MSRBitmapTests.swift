import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

private func byte(_ fake: HostFrameAllocator, _ frame: UInt64, _ offset: Int) -> UInt8 {
    fake.pointer(to: frame + UInt64(offset)).load(as: UInt8.self)
}

/// Offsets of every non-zero byte in the 4 KiB frame.
private func setBytes(_ fake: HostFrameAllocator, _ frame: UInt64) -> [Int] {
    (0..<4096).filter { byte(fake, frame, $0) != 0 }
}

// SDM 25.6.9: read-low at 0, read-high at 1024, write-low at 2048, write-high
// at 3072; low covers 00000000H-00001FFFH, high covers C0000000H-C0001FFFH.
@Suite struct MSRBitmapTests {
    @Test func readAndWriteInterceptsAreSeparateBitsAtTheSDMOffsets() throws {
        let fake = HostFrameAllocator()
        var bitmap = try MSRBitmap(from: fake, interceptAll: false)
        #expect(setBytes(fake, bitmap.address).isEmpty)

        try bitmap.setWriteIntercept(msr: 0xC000_0082, true) // IA32_LSTAR: write-high, byte 16, bit 2
        #expect(setBytes(fake, bitmap.address) == [3072 + 16])
        #expect(byte(fake, bitmap.address, 3072 + 16) == 0x04)
        #expect(bitmap.interceptsWrite(msr: 0xC000_0082) == .bitmap(intercepted: true))
        #expect(bitmap.interceptsRead(msr: 0xC000_0082) == .bitmap(intercepted: false))

        try bitmap.setReadIntercept(msr: 0x1B, true)         // IA32_APIC_BASE: read-low, byte 3, bit 3
        #expect(setBytes(fake, bitmap.address) == [3, 3072 + 16])
        #expect(byte(fake, bitmap.address, 3) == 0x08)
        #expect(bitmap.interceptsRead(msr: 0x1B).causesExit && !bitmap.interceptsWrite(msr: 0x1B).causesExit)

        try bitmap.setWriteIntercept(msr: 0x1FFF, true)      // write-low, last bit
        #expect(byte(fake, bitmap.address, 2048 + 1023) == 0x80)
        try bitmap.setReadIntercept(msr: 0xC000_1FFF, true)  // read-high, last bit
        #expect(byte(fake, bitmap.address, 1024 + 1023) == 0x80)
        try bitmap.setReadIntercept(msr: 0xC000_0000, true)  // read-high, first bit
        #expect(byte(fake, bitmap.address, 1024) == 0x01)

        try bitmap.setWriteIntercept(msr: 0xC000_0082, false)
        #expect(byte(fake, bitmap.address, 3072 + 16) == 0)
        #expect(!bitmap.interceptsWrite(msr: 0xC000_0082).causesExit)
    }

    @Test func interceptAllSetsEveryCoveredBit() throws {
        let fake = HostFrameAllocator()
        var bitmap = try MSRBitmap(from: fake, interceptAll: true)
        #expect(setBytes(fake, bitmap.address).count == 4096)
        #expect(bitmap.interceptsRead(msr: 0x10) == .bitmap(intercepted: true))
        try bitmap.setReadIntercept(msr: 0x10, false)          // TSC readable, writes still exit
        #expect(byte(fake, bitmap.address, 2) == 0xFE)
        #expect(byte(fake, bitmap.address, 2048 + 2) == 0xFF)
        #expect(bitmap.interceptsWrite(msr: 0x10) == .bitmap(intercepted: true))
    }

    @Test func msrsOutsideBothRangesAlwaysExitAndCannotBeSet() throws {
        let fake = HostFrameAllocator()
        var bitmap = try MSRBitmap(from: fake, interceptAll: false)
        for msr: UInt32 in [0x2000, 0xBFFF_FFFF, 0xC000_2000, 0x4000_0000, 0xC001_0000, .max] {
            #expect(!MSRBitmap<HostFrameAllocator>.isCoveredByBitmap(msr: msr))
            #expect(bitmap.interceptsRead(msr: msr) == .alwaysExits)
            #expect(bitmap.interceptsWrite(msr: msr).causesExit)
            #expect(throws: MSRBitmapError.notCoveredByBitmap(msr: msr)) { try bitmap.setReadIntercept(msr: msr, false) }
            #expect(throws: MSRBitmapError.notCoveredByBitmap(msr: msr)) { try bitmap.setWriteIntercept(msr: msr, true) }
        }
        #expect(setBytes(fake, bitmap.address).isEmpty)
        #expect(MSRBitmap<HostFrameAllocator>.isCoveredByBitmap(msr: 0) && MSRBitmap<HostFrameAllocator>.isCoveredByBitmap(msr: 0xC000_1FFF))
    }

    @Test func frameIsReturnedAndExhaustionIsTyped() throws {
        let fake = HostFrameAllocator()
        do {
            let bitmap = try MSRBitmap(from: fake, interceptAll: true)
            #expect(bitmap.address % 4096 == 0 && fake.liveFrames == 1)
        }
        #expect(fake.liveFrames == 0 && fake.misuse.isEmpty)
        fake.failAfter = 0
        #expect(throws: FrameError.outOfMemory) { _ = try MSRBitmap(from: fake, interceptAll: false) }
    }
}
