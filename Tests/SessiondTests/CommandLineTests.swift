import Foundation
import HTTPTypes
import HummingbirdTesting
import Kernel
import Testing

/// The `sessiond` executable beside the test bundle (both built by `swift build --build-tests`).
enum SessiondBinary {
    static var url: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sessiond")
    }

    /// Runs `sessiond ARGUMENTS` to completion; returns its exit status and standard output.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The database as a `--database` value.
    static func databaseArgument(_ location: DatabaseLocation) -> String {
        switch location {
        case .sqlite(let path): return "sqlite:" + path
        case .postgres(let postgres):
            let password = postgres.password.map { ":" + ($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0) } ?? ""
            return "postgres://\(postgres.username)\(password)@\(postgres.host):\(postgres.port)/\(postgres.database)"
        }
    }
}

@Suite("Command line")
struct CommandLineTests {
    @Test("sessiond keys create, list, rotate and revoke work on the database of a running server, at once")
    func keysCommands() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: SessiondBinary.url.path), "build the executable first: swift build --build-tests")
        try await withApp { client, location in
            let database = ["--database", SessiondBinary.databaseArgument(location)]
            let created = try SessiondBinary.run(["keys", "create", "--name", "operator", "--role", "owner", "--user-id", "maria"] + database)
            #expect(created.status == 0)
            let secret = try #require(created.output.split(separator: "\n").first { $0.hasPrefix("key (shown this once): ") }.map { String($0.dropFirst(23)) })
            let keyID = try #require(created.output.split(separator: " ").first.map(String.init))
            let me = try await client.json(.get, "/api/auth/whoami", headers: TestAuth.bearer(secret))
            #expect(me["user_id"]?.string == "maria" && me["key_id"]?.string == keyID)

            let listed = try SessiondBinary.run(["keys", "list"] + database)
            #expect(listed.status == 0 && listed.output.contains(keyID) && !listed.output.contains(secret))

            let rotated = try SessiondBinary.run(["keys", "rotate", keyID] + database)
            #expect(rotated.status == 0)
            let newSecret = try #require(rotated.output.split(separator: "\n").first { $0.hasPrefix("key (shown this once): ") }.map { String($0.dropFirst(23)) })
            let newID = try #require(rotated.output.split(separator: " ").first.map(String.init))
            try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: TestAuth.bearer(secret))
            try await client.json(.get, "/api/auth/whoami", headers: TestAuth.bearer(newSecret))

            #expect(try SessiondBinary.run(["keys", "revoke", newID] + database).status == 0)
            let refused = try await client.json(.get, "/api/auth/whoami", expect: .unauthorized, headers: TestAuth.bearer(newSecret))
            #expect(refused["type"]?.string == Problem.typeBase + "revoked-key")
            #expect(try SessiondBinary.run(["keys", "revoke", "no-such-key"] + database).status != 0)
        }
    }
}
