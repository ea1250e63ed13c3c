import Testing
import TestSupport
import X86Arch

@Suite struct BitFlagsTests {
    @Test func setOperationsWorkBitwise() {
        var efer = EFER.empty
        #expect(efer.isEmpty)
        efer.insert(.lme)
        efer.insert(.nxe)
        #expect(efer.rawValue == 0x900)
        #expect(efer.contains(.lme) && !efer.contains(.lme | .lma))
        #expect(efer.intersects(.lma | .nxe) && !efer.intersects(.sce | .lma))
        #expect(efer.isSuperset(of: .nxe) && EFER.nxe.isSubset(of: efer))
        efer.remove(.lme)
        #expect(efer == .nxe)
        #expect((EFER.sce | .lme) & (.lme | .lma) == .lme)
        #expect((EFER.sce | .lme).subtracting(.sce) == .lme)
    }
}
