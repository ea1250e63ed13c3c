// The kernel's entry from Boot/entry.asm.

@c(kmain)
func kmain(_ magic: UInt32, _ info: UInt64) {
    Serial.initialize()
    Screen.clear()
    Console.line("X86VCPU hypervisor (Embedded Swift) starting")
    logInfo("multiboot2 magic \(hex: magic), boot info at \(hex: info)")
    powerOff(.success)
}
