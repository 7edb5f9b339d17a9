import Access
import Foundation
import HTTPTypes
import Hummingbird
import Kernel

/// The browser's side of access: the login cookie read for pages, the `Origin` rule for every form
/// that changes something, the API-key login form and logout. The rules themselves (what a key
/// or a login session is worth) stay in the access service.
struct WebSession: Sendable {
    let access: AccessService
    let clock: WallClock

    /// The login session the request's cookie names, if it is live (anything else: not signed in).
    func caller(_ request: Request) async -> Caller? {
        guard let token = AccessMiddleware.cookie(AccessConfiguration.cookieName, in: request.headers), !token.isEmpty else { return nil }
        guard let caller = try? await access.authenticate(.cookie(token), now: clock.now()), caller.kind == .loginSession else { return nil }
        return caller
    }

    /// A form that changes something (logging in or out) must come from this server's own pages.
    func requireOwnOrigin(_ request: Request) throws {
        guard AccessMiddleware.isOwnOrigin(request.headers[.origin], host: request.head.authority, publicBaseURL: access.configuration.publicBaseURL) else {
            throw AccessError.foreignOrigin
        }
    }

    struct LoginRefused: Error {
        var status: HTTPResponse.Status
        var message: String
    }

    /// The API-key form: an owner or viewer key starts a login session like a login link's. A
    /// wrong, expired or revoked key logs nobody in, is audited and counts against the address's
    /// failed-authentication budget.
    func logIn(apiKey: String, request: Request, context: SessiondRequestContext) async throws -> (LoginSession, String) {
        let now = clock.now()
        let address = context.clientAddress ?? "unknown"
        let limiter = access.failureLimiter
        let key = apiKey.trimmingCharacters(in: .whitespacesAndNewlines)
        let caller: Caller
        do {
            caller = try await access.authenticate(key.isEmpty ? .none : .key(key), now: now)
        } catch let error as AccessError {
            // Only failures count and only failures are refused: a valid key always logs in.
            if limiter.isEnabled, !limiter.take(address, nowMilliseconds: now.milliseconds).allowed {
                throw LoginRefused(status: .tooManyRequests, message: "Muitas tentativas. Espere um pouco e tente de novo.")
            }
            await access.record(
                AuditAction.login, .failure, userID: nil, caller: nil, details: ["method": "api_key", "reason": .string(error.problem.slug)], ip: context.clientAddress)
            throw LoginRefused(status: .unauthorized, message: "Chave inválida, expirada ou revogada.")
        }
        do {
            return try await access.startLoginSession(for: caller, ip: context.clientAddress, userAgent: request.headers[.userAgent])
        } catch let error as AccessError where error.problem.status == .forbidden {
            await access.record(
                AuditAction.login, .failure, userID: caller.userID, caller: caller, details: ["method": "api_key", "reason": "role"], ip: context.clientAddress)
            throw LoginRefused(status: .forbidden, message: "Esta chave não entra no painel: use a chave de um dono ou de um leitor.")
        }
    }

    /// Ends the login session the cookie names, if it is still live. A cookie that names no live
    /// session has nothing to end; a failure to end one (the database) is thrown, never passed
    /// off as a logout: the session would still be valid.
    func logOut(_ request: Request, context: SessiondRequestContext) async throws {
        guard let token = AccessMiddleware.cookie(AccessConfiguration.cookieName, in: request.headers), !token.isEmpty else { return }
        let caller: Caller
        do {
            caller = try await access.authenticate(.cookie(token), now: clock.now())
        } catch is AccessError {
            return
        }
        guard caller.kind == .loginSession else { return }
        try await access.logout(caller: caller, ip: context.clientAddress)
    }

    /// Where to go after logging in: a path on this server only (never `//host` or a URL).
    static func safeNext(_ next: String?) -> String? {
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), !next.hasPrefix("/\\"), next.utf8.count <= 512,
            next.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 })
        else { return nil }
        return next
    }
}
