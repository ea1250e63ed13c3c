// swift-tools-version:6.0
// The pure VMX library and its host tests. The kernel compiles the same
// Sources/X86VCPU files in Embedded mode through the Makefile.
import PackageDescription

let package = Package(
    name: "X86VCPU",
    products: [.library(name: "X86VCPU", targets: ["X86VCPU"])],
    targets: [
        .target(name: "X86VCPU", path: "Sources/X86VCPU"),
        .testTarget(name: "X86VCPUTests", dependencies: ["X86VCPU"], path: "Tests/X86VCPUTests"),
    ]
)
