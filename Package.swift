// swift-tools-version:6.0
// One target per layer, each importing only the layers below it:
//   X86Arch  architectural formats (no logic)
//   VMX      VMX definitions: VMCS fields, controls, capabilities, exit and
//            event formats, the VM-entry checker
//   X86VCPU  the vCPU library (the x86_vcpu counterpart): VMX root, vCPU,
//            exit handlers, events, CPUID policy, EPT, guest page walk
//   GuestBoot  guest boot protocols, ending in a guest start state
//   HostBoot   the hypervisor's own boot information (multiboot2, memory
//              map, frame bitmap, command line)
//   Devices    the devices a guest sees, as pure models (UART, console)
// The kernel compiles the same sources in Embedded mode through the Makefile.
import PackageDescription

let layers: [(name: String, dependencies: [String])] = [
    ("X86Arch", []),
    ("VMX", ["X86Arch"]),
    ("X86VCPU", ["X86Arch", "VMX"]),
    ("GuestBoot", ["X86Arch", "VMX", "X86VCPU"]),
    ("HostBoot", ["X86Arch", "VMX", "X86VCPU"]),
    ("Devices", ["X86Arch", "VMX", "X86VCPU"]),
]

let package = Package(
    name: "X86VCPU",
    products: layers.map { .library(name: $0.name, targets: [$0.name]) },
    targets: layers.map { layer in
        .target(name: layer.name, dependencies: layer.dependencies.map { .target(name: $0) },
                path: "Sources/\(layer.name)")
    } + [
        // Fakes and fixtures shared by the test targets.
        .target(name: "TestSupport", dependencies: layers.map { .target(name: $0.name) },
                path: "Tests/TestSupport"),
    ] + layers.map { layer in
        .testTarget(name: "\(layer.name)Tests", dependencies: [.target(name: layer.name), "TestSupport"]
                        + layer.dependencies.map { .target(name: $0) },
                    path: "Tests/\(layer.name)Tests")
    }
)
