import Crypto
import Foundation
import NIOPosix
import Kernel
import Testing

/// The label-photo corpus of `scripts/scan-corpus.py` (zint labels, degraded), made once per
/// test run in a temporary directory, and its manifest.
struct ScanCorpus: Sendable {
    struct Photo: Sendable, Decodable {
        var file: String
        var barcode: String
        var format: String
        var degradation: String
        var legible: Bool
        var known: [String]
    }

    let directory: URL
    let photos: [Photo]
    /// The refusal set (`--bad`).
    let bad: URL

    func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: directory.appendingPathComponent(name))) }
    func badBytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: bad.appendingPathComponent(name))) }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Made on a thread of its own: waiting for Python must not hold one of the few threads every
    /// test's tasks share.
    private static let made = Task<ScanCorpus, any Error> {
        try await NIOThreadPool.singleton.runIfActive { try make() }
    }

    static func make() throws -> ScanCorpus {
        // Made again only when the script changes (its text names the directory).
        let script = repository.appendingPathComponent("scripts/scan-corpus.py")
        let digest = SHA256.hash(data: try Data(contentsOf: script)).prefix(6).map { String(format: "%02x", $0) }.joined()
        // SCAN_CORPUS_LABELS and SCAN_CORPUS_SEED make another corpus (the benchmark's: 25 and 11), for a closer look.
        let environment = ProcessInfo.processInfo.environment
        let (labels, seed) = (environment["SCAN_CORPUS_LABELS"] ?? "12", environment["SCAN_CORPUS_SEED"] ?? "7")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sessiond-scan-corpus-\(digest)-\(labels)-\(seed)")
        let directory = root.appendingPathComponent("photos"), bad = root.appendingPathComponent("bad")
        if !FileManager.default.fileExists(atPath: bad.appendingPathComponent("image.gif").path) {
            let python = try pythonWithPillow()
            try run(python, [script.path, directory.path, "--labels", labels, "--seed", seed])
            try run(python, [script.path, bad.path, "--bad"])
        }
        let manifest = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        return ScanCorpus(directory: directory, photos: try JSONDecoder().decode([Photo].self, from: manifest), bad: bad)
    }

    static func shared() async throws -> ScanCorpus { try await made.value }

    /// Debian's python3 (where python3-pil lives) first, then whatever `python3` is.
    static func pythonWithPillow() throws -> String {
        for candidate in ["/usr/bin/python3", "/usr/local/bin/python3"] where FileManager.default.isExecutableFile(atPath: candidate) {
            if (try? run(candidate, ["-c", "import PIL"])) != nil { return candidate }
        }
        try run("/usr/bin/env", ["python3", "-c", "import PIL"])
        return "/usr/bin/env python3"
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        let parts = executable.split(separator: " ").map(String.init)
        process.executableURL = URL(fileURLWithPath: parts[0])
        process.arguments = Array(parts.dropFirst()) + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw CorpusError(detail: "\(executable) \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }

    struct CorpusError: Error, CustomStringConvertible { var detail: String; var description: String { detail } }
}
