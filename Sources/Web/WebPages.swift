import Access
import Delivery
import Foundation
import HTTPTypes
import Hummingbird
import Kernel
import Mustache

/// Renders the dashboard's pages from the domain's values (the same values the API serves; the
/// `data-value` hooks carry them raw) with the templates in `Templates`, and answers with the
/// headers every page has: the Content-Security-Policy, no caching, no framing.
struct WebPages: Sendable {
    let library: MustacheLibrary
    /// The delivery event types, space-separated, for the live page's stream listeners.
    let liveEventTypes: String

    init(liveEventTypes: [String]) throws {
        var templates: [String: MustacheTemplate] = [:]
        for (name, text) in Templates.all { templates[name] = try MustacheTemplate(string: text) }
        self.library = MustacheLibrary(templates: templates)
        self.liveEventTypes = liveEventTypes.joined(separator: " ")
    }

    /// Scripts from this server only, no inline code or style anywhere, no framing.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    static func headers(_ status: HTTPResponse.Status) -> HTTPFields {
        [
            .contentType: "text/html; charset=utf-8", .cacheControl: "no-store", .contentSecurityPolicy: contentSecurityPolicy,
            .xFrameOptions: "DENY", .xContentTypeOptions: "nosniff", .referrerPolicy: "same-origin",
        ]
    }

    func render(_ template: String, _ model: Any, status: HTTPResponse.Status = .ok) -> Response {
        let html = library.render(model, withTemplate: template) ?? ""
        return Response(status: status, headers: Self.headers(status), body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    // MARK: answering

    /// Runs a page's work; whatever it throws becomes an HTML page with the error's status.
    func page(_ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch {
            return errorPage(error, signedIn: nil)
        }
    }

    /// A page for a signed-in browser: without a live login session, a 303 to `/login?next=…`.
    func signedInPage(
        for request: Request, session: WebSession, context: SessiondRequestContext, _ body: (Caller) async throws -> Response
    ) async -> Response {
        guard let caller = await session.caller(request) else {
            var target = request.uri.path
            if let query = request.uri.query, !query.isEmpty { target += "?" + query }
            let next = target == "/" ? "" : "?next=" + (target.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
            return Response(status: .seeOther, headers: [.location: "/login" + next, .cacheControl: "no-store"])
        }
        do {
            return try await body(caller)
        } catch {
            return errorPage(error, signedIn: caller)
        }
    }

    func errorPage(_ error: any Error, signedIn caller: Caller?) -> Response {
        let problem = (error as? Problem) ?? (error as? any ProblemConvertible)?.problem ?? Problem.internalError
        let (title, text): (String, String)
        switch problem.status {
        case .notFound: (title, text) = ("Não encontrada", "Esta página não existe ou não é sua.")
        case .unauthorized: (title, text) = ("Link inválido", "Este link de acesso não vale mais (já usado, expirado ou desconhecido). Peça um novo ou entre com a sua chave.")
        case .forbidden: (title, text) = ("Recusado", "Este pedido não veio do próprio painel e foi recusado.")
        case .conflict: (title, text) = ("Ainda não", "A exportação existe só para sessões concluídas ou arquivadas.")
        case .unprocessableContent, .badRequest: (title, text) = ("Pedido inválido", problem.detail ?? "Confira o endereço.")
        case .tooManyRequests: (title, text) = ("Muitas tentativas", "Espere um pouco e tente de novo.")
        default: (title, text) = ("Algo deu errado", "Tente de novo em instantes.")
        }
        var response = render("error", ErrorView(title: title, user: caller.map(UserBar.init), message: text), status: problem.status)
        if let retry = problem.headers[HTTPField.Name("Retry-After")!] { response.headers[HTTPField.Name("Retry-After")!] = retry }
        return response
    }

    // MARK: pages

    func login(next: String?, error: String?, status: HTTPResponse.Status) -> Response {
        render("login", LoginView(title: "Entrar", user: nil, next: next ?? "", error: error), status: status)
    }

    func sessions(_ sessions: [DeliverySession], next: String?, filter: SessionFilter, caller: Caller) -> Response {
        var query: [(String, String)] = []
        if let status = filter.status { query.append(("status", status.rawValue)) }
        if let barcode = filter.barcode { query.append(("barcode", barcode)) }
        let nextURL = next.map { cursor in "/?" + (query + [("cursor", cursor)]).map { "\($0)=\(Self.queryEscaped($1))" }.joined(separator: "&") }
        let view = SessionsView(
            title: "Minhas sessões", user: UserBar(caller),
            statuses: [StatusOption(value: "", label: "Todas (menos arquivadas)", selected: filter.status == nil)]
                + SessionStatus.allCases.map { StatusOption(value: $0.rawValue, label: Words.session($0), selected: filter.status == $0) },
            barcode: filter.barcode ?? "", filtered: filter.status != nil || filter.barcode != nil,
            sessions: sessions.map(SessionRow.init), empty: sessions.isEmpty, nextURL: nextURL)
        return render("sessions", view)
    }

    func live(_ aggregate: DeliveryAggregate, caller: Caller) -> Response {
        render("live", SessionView(aggregate, verification: nil, caller: caller, liveEventTypes: liveEventTypes))
    }

    func history(_ aggregate: DeliveryAggregate, verification: DeliveryService.Verification?, caller: Caller) -> Response {
        render("history", SessionView(aggregate, verification: verification, caller: caller, liveEventTypes: ""))
    }

    static func queryEscaped(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

extension HTTPField.Name {
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
