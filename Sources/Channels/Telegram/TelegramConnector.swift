import AsyncHTTPClient
import Kernel
import NIOCore

/// Makes a channel's Bot API client: the shared HTTP client, or one of its own through the
/// channel's proxy. With a proxy every call goes through it or fails (never a direct connection).
public struct TelegramConnector: Sendable {
    let base: String
    let shared: HTTPClient
    let box: SecretBox?

    /// A connector with an HTTP client of its own for channels without a proxy (shut down by `shutdown()`).
    public init(base: String, box: SecretBox?) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(10)
        configuration.redirectConfiguration = .disallow
        self.base = base
        self.shared = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.box = box
    }

    public func shutdown() async {
        try? await shared.shutdown()
    }

    /// A client for the channel and, when it made an HTTP client of its own (a proxy), that
    /// client, which the caller shuts down when done.
    func client(for row: ChannelRuntimeRow) throws -> (client: TelegramClient, owned: HTTPClient?) {
        guard let box else { throw ChannelError.noSecretKey }
        let id = row.channel.id
        let token: String
        do { token = try box.open(row.tokenSealed, boundTo: id + ":token") } catch { throw ChannelError.secretUnreadable(id) }
        guard let proxy = row.channel.proxy else { return (TelegramClient(http: shared, base: base, token: token), nil) }
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(10)
        configuration.redirectConfiguration = .disallow
        switch proxy.type {
        case .http:
            var authorization: HTTPClient.Authorization?
            if let username = proxy.username {
                var password = ""
                if let sealed = row.proxyPasswordSealed {
                    do { password = try box.open(sealed, boundTo: id + ":proxy") } catch { throw ChannelError.secretUnreadable(id) }
                }
                authorization = .basic(username: username, password: password)
            }
            configuration.proxy = .server(host: proxy.host, port: proxy.port, authorization: authorization)
        case .socks5:
            // AsyncHTTPClient speaks SOCKS5 without authentication only: with a username the
            // channel fails (closed) rather than connect another way.
            guard proxy.username == nil else { throw TelegramFailure.transport("SOCKS5 proxies with a username are not supported by this server") }
            configuration.proxy = .socksServer(host: proxy.host, port: proxy.port)
        }
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        return (TelegramClient(http: http, base: base, token: token), http)
    }

    /// Runs `body` with the channel's client, shutting down a proxy's client after.
    func with<T: Sendable>(_ row: ChannelRuntimeRow, _ body: (TelegramClient) async throws -> T) async throws -> T {
        let (client, owned) = try client(for: row)
        do {
            let result = try await body(client)
            try? await owned?.shutdown()
            return result
        } catch {
            try? await owned?.shutdown()
            throw error
        }
    }
}
