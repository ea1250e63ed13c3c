import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU

// Guest RAM: every access bounds-checked, so no guest address reaches past it.
@Suite struct GuestRAMTests {
    let memory = FakeGuestMemory(size: 0x4000)
    var ram: GuestRAM { memory.ram }

    @Test func accessesInsideWork() {
        #expect(ram.write8(0x3FFF, 0xAB))
        #expect(ram.read8(0x3FFF) == 0xAB)
        memory.store64(0x1122_3344_5566_7788, at: 0x3FF8)
        #expect(ram.read64(0x3FF8) == 0x1122_3344_5566_7788)
        #expect(ram.read32(0x3FFC) == 0x1122_3344)
        #expect(ram.read64(0x3FF9) == nil)   // one byte past the end
        #expect(ram.bytes(at: 0x4000, count: 0)?.count == 0)
    }

    @Test func accessesOutsideFail() {
        #expect(ram.read8(0x4000) == nil)
        #expect(!ram.write8(0x4000, 1))
        #expect(ram.read32(0x3FFD) == nil)
        #expect(ram.bytes(at: 0x4001, count: 0) == nil)
        #expect(ram.bytes(at: 0, count: -1) == nil)
        #expect(ram.bytes(at: UInt64.max, count: 2) == nil)   // no wrap-around
        #expect(ram.bytes(at: 8, count: Int.max) == nil)
    }

    @Test func holesAreNotGuestRAM() {
        var holes = [4 of Range<UInt64>](repeating: 0..<0)
        holes[0] = 0x1000..<0x2000
        holes[2] = 0x3000..<0x3001
        let holed = GuestRAM(hostPhysical: ram.hostPhysical, base: ram.base, size: ram.size, holes: holes)
        #expect(holed.read8(0xFFF) != nil && holed.read8(0x2000) != nil && holed.read8(0x3001) != nil)
        #expect(holed.read8(0x1000) == nil && holed.read8(0x1FFF) == nil && holed.read8(0x3000) == nil)
        #expect(holed.read64(0xFFC) == nil)      // straddles the hole's start
        #expect(holed.read32(0x1FFE) == nil)     // straddles its end
        #expect(!holed.write8(0x1800, 1))
        #expect(holed.bytes(at: 0x1000, count: 0)?.count == 0)
        let short = holed.truncated(to: 0x2800)
        #expect(short.size == 0x2800 && short.read8(0x1000) == nil && short.read8(0x27FF) != nil && short.read8(0x2800) == nil)
        #expect(holed.truncated(to: 0x8000).size == ram.size)
    }

    @Test func copyIsAllOrNothing() {
        let data: [UInt8] = [1, 2, 3, 4]
        let fits = data.withUnsafeBytes { ram.copy($0, to: 0x3FFC) }
        #expect(fits)
        #expect(ram.read32(0x3FFC) == 0x0403_0201)
        let overflows = data.withUnsafeBytes { ram.copy($0, to: 0x3FFD) }
        #expect(!overflows)
        #expect(ram.read8(0x3FFD) == 2)
        let empty = [UInt8]().withUnsafeBytes { ram.copy($0, to: 0x4000) }
        #expect(empty)
    }
}
