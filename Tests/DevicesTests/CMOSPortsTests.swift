import Testing
import Devices

@Suite struct CMOSPortsTests {
    @Test(arguments: [UInt8(0x00), 0x04, 0x0A, 0x0B, 0x0D])
    func clockRegistersAreWritable(index: UInt8) {
        var cmos = CMOSPorts()
        cmos.select(index)
        #expect(cmos.dataWritable)
    }

    @Test(arguments: [UInt8(0x0E), 0x0F, 0x10, 0x2E, 0x2F, 0x7F, 0x8E, 0xFF])
    func nvramIsReadOnlyWhateverTheNMIBit(value: UInt8) {
        var cmos = CMOSPorts()
        cmos.select(value)
        #expect(!cmos.dataWritable)
        #expect(cmos.index == value & 0x7F)
    }

    @Test func theNMIBitIsKeptForTheGuestAndNotPartOfTheIndex() {
        var cmos = CMOSPorts()
        cmos.select(0x8B)
        #expect(cmos.index == 0x0B && cmos.nmiMasked && cmos.dataWritable)
        #expect(cmos.indexValue == 0x8B)
        cmos.select(0x0B)
        #expect(!cmos.nmiMasked)
    }
}
