import Testing
import Devices

@Suite struct UART16550Tests {
    @Test func dataBytesAreTransmittedUnlessTheDivisorLatchOrLoopbackIsOn() {
        var u = UART16550()
        #expect(u.write(.data, 0x41) == 0x41)
        _ = u.write(.lineControl, 0x83)           // DLAB on, 8N1
        #expect(u.write(.data, 0x01) == nil)      // divisor low: 115200 baud
        #expect(u.write(.interruptEnable, 0x00) == nil)
        #expect(u.divisor == 1 && u.read(.data) == 1 && u.read(.interruptEnable) == 0)
        _ = u.write(.lineControl, 0x03)
        _ = u.write(.modemControl, 0x1F)          // loopback
        #expect(u.write(.data, 0x42) == nil)
    }

    @Test func loopbackReflectsModemControlIntoModemStatus() {
        var u = UART16550()
        #expect(u.read(.modemStatus) == 0xB0)
        _ = u.write(.modemControl, 0x10 | 0x0A)   // loopback, RTS, OUT2
        #expect(u.read(.modemStatus) == 0x10 | 0x80)   // CTS, DCD
    }

    @Test func theTransmitterIsAlwaysEmptyAndNoInterruptIsPending() {
        let u = UART16550()
        #expect(u.read(.lineStatus) & 0x60 == 0x60)
        #expect(u.read(.interruptIdentification) & 1 == 1)
    }

    @Test func scratchAndInterruptEnableKeepWhatWasWritten() {
        var u = UART16550()
        _ = u.write(.scratch, 0x5A)
        _ = u.write(.interruptEnable, 0xFF)
        #expect(u.read(.scratch) == 0x5A && u.read(.interruptEnable) == 0x0F)
    }
}
