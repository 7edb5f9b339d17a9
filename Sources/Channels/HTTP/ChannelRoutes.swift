import Foundation
import HTTPTypes
import Hummingbird
import Kernel

/// The channels contract's HTTP surface, and Telegram's webhook route: decode, call the service, encode.
public struct ChannelRoutes: Sendable {
    let service: ChannelService

    public init(service: ChannelService) { self.service = service }

    struct ProxyBody: Decodable {
        var type: String?
        var host: String?
        var port: Int64?
        var username: String?
        var password: String?

        var proxy: ChannelService.NewProxy { .init(type: type, host: host, port: port, username: username, password: password) }
    }

    struct CreateBody: Decodable {
        var kind: String?
        var name: String?
        var userID: String?
        var token: String?
        var mode: String?
        var proxy: ProxyBody?
        var defaultPackageValueCents: Int64?
        enum CodingKeys: String, CodingKey {
            case kind, name, userID = "user_id", token, mode, proxy, defaultPackageValueCents = "default_package_value_cents"
        }
    }

    /// Absent fields stay as they are; `proxy: null` removes the proxy.
    struct PatchBody: Decodable {
        var patch: ChannelService.Patch

        enum CodingKeys: String, CodingKey { case name, token, mode, proxy, defaultPackageValueCents = "default_package_value_cents" }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            func field<T: Decodable>(_ key: CodingKeys, _ type: T.Type) throws -> T?? {
                guard container.contains(key) else { return .none }
                if try container.decodeNil(forKey: key) { return .some(nil) }
                return .some(try container.decode(T.self, forKey: key))
            }
            patch = ChannelService.Patch(
                name: try field(.name, String.self), token: try field(.token, String.self), mode: try field(.mode, String.self),
                proxy: try field(.proxy, ProxyBody.self).map { $0.map(\.proxy) },
                defaultPackageValueCents: try field(.defaultPackageValueCents, Int64.self))
        }
    }

    struct InviteBody: Decodable {
        var role: String?
        var userID: String?
        var delivererID: String?
        var name: String?
        var baseSalaryCents: Int64?
        var commissionPerDeliveryCents: Int64?
        var expiresIn: Int64?
        enum CodingKeys: String, CodingKey {
            case role, userID = "user_id", delivererID = "deliverer_id", name, baseSalaryCents = "base_salary_cents"
            case commissionPerDeliveryCents = "commission_per_delivery_cents", expiresIn = "expires_in"
        }
    }

    public func register(on router: some RouterMethods<SessiondRequestContext>, routes: RouteRegistry) {
        let service = service
        let tag = "channels"
        let base = service.configuration.publicBaseURL
        routes.add(.init(.post, "/api/channels", summary: "Create a Telegram bot channel (admin); its api_key is in this answer only", tag: tag, request: "CreateChannel", response: "CreatedChannel", status: 201, errors: [400, 403, 409, 422, 503]), to: router) { request, context in
            let body = try await request.decodeJSON(as: CreateBody.self, context: context)
            return try await IdempotencySlot.respond {
                try await service.create(
                    .init(kind: body.kind, name: body.name, userID: body.userID, token: body.token, mode: body.mode, proxy: body.proxy?.proxy,
                          defaultPackageValueCents: body.defaultPackageValueCents), caller: context.caller)
            } render: { created in
                .json(ChannelJSON(channel: created.channel, base: base, apiKey: created.apiKey), status: .created, headers: [.location: "/api/channels/\(created.channel.id)", .cacheControl: "no-store"])
            }
        }
        routes.add(.init(.get, "/api/channels", summary: "Channels the caller may see", tag: tag, response: "ChannelPage", errors: [403, 422], query: [.limit(maximum: 200), .cursor()]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let page = try await service.channels(caller: context.caller, after: request.queryString("cursor"), limit: limit)
            return JSONResponse.write(Page(items: page.items.map { ChannelJSON(channel: $0, base: base) }, next: page.next))
        }
        routes.add(.init(.get, "/api/channels/{id}", summary: "One channel (never its token or secrets)", tag: tag, response: "Channel", errors: [403, 404]), to: router) { _, context in
            JSONResponse.write(ChannelJSON(channel: try await service.channel(try context.parameters.require("id"), caller: context.caller), base: base))
        }
        routes.add(.init(.patch, "/api/channels/{id}", summary: "Change name, token, mode, proxy (null removes it) or default package value (admin); a connected channel reconnects", tag: tag, request: "UpdateChannel", response: "Channel", errors: [400, 403, 404, 409, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: PatchBody.self, context: context)
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.update(id, body.patch, caller: context.caller)
            } render: { .json(ChannelJSON(channel: $0, base: base)) }
        }
        routes.add(.init(.delete, "/api/channels/{id}", summary: "Delete a channel (admin): polling stops or the webhook is deleted, its key revoked, its links and invites gone", tag: tag, status: 204, errors: [403, 404]), to: router) { _, context in
            try await service.delete(try context.parameters.require("id"), caller: context.caller)
            return Response(status: .noContent)
        }
        routes.add(.init(.post, "/api/channels/{id}/connect", summary: "Connect (again, at once): getMe, then long polling or setWebhook", tag: tag, response: "ChannelStatus", errors: [403, 404]), to: router) { _, context in
            JSONResponse.write(StatusJSON(view: try await service.connect(try context.parameters.require("id"), caller: context.caller)))
        }
        routes.add(.init(.post, "/api/channels/{id}/disconnect", summary: "Disconnect: stop reading updates (webhook mode: deleteWebhook)", tag: tag, response: "ChannelStatus", errors: [403, 404]), to: router) { _, context in
            JSONResponse.write(StatusJSON(view: try await service.disconnect(try context.parameters.require("id"), caller: context.caller)))
        }
        routes.add(.init(.get, "/api/channels/{id}/status", summary: "Desired beside actual status, last error, webhook info", tag: tag, response: "ChannelStatus", errors: [403, 404]), to: router) { _, context in
            JSONResponse.write(StatusJSON(view: try await service.status(try context.parameters.require("id"), caller: context.caller)))
        }
        routes.add(.init(.get, "/api/channels/{id}/stats", summary: "Updates in, messages out, errors, last activity (survive restarts)", tag: tag, response: "ChannelStats", errors: [403, 404]), to: router) { _, context in
            JSONResponse.write(StatsJSON(stats: try await service.stats(try context.parameters.require("id"), caller: context.caller)))
        }
        routes.add(.init(.post, "/api/channels/{id}/proxy/test", summary: "getMe through the channel's proxy", tag: tag, response: "ProxyTest", errors: [403, 404, 409]), to: router) { _, context in
            let result = try await service.testProxy(try context.parameters.require("id"), caller: context.caller)
            return JSONResponse.write(
                JSONValue.object([
                    "ok": .bool(result.ok), "latency_ms": .int(result.latencyMilliseconds), "exit_ip": result.exitIP.map(JSONValue.string) ?? .null,
                    "error": result.error.map(JSONValue.string) ?? .null,
                ]))
        }
        routes.add(.init(.post, "/api/channels/{id}/invites", summary: "A one-time deep link (and its QR code) that links a Telegram user as the owner or a deliverer", tag: tag, request: "CreateInvite", response: "Invite", status: 201, errors: [400, 403, 404, 409, 422]), to: router) { request, context in
            let body = try await request.decodeJSON(as: InviteBody.self, context: context)
            let id = try context.parameters.require("id")
            return try await IdempotencySlot.respond {
                try await service.createInvite(
                    id,
                    .init(role: body.role, userID: body.userID, delivererID: body.delivererID, name: body.name, baseSalaryCents: body.baseSalaryCents,
                          commissionPerDeliveryCents: body.commissionPerDeliveryCents, expiresIn: body.expiresIn), caller: context.caller)
            } render: { created in
                .json(InviteJSON(invite: created.invite, token: created.token, url: created.url), status: .created, headers: [.cacheControl: "no-store"])
            }
        }
        routes.add(.init(.get, "/api/channels/{id}/invites", summary: "The channel's invites (never their tokens)", tag: tag, response: "InvitePage", errors: [403, 404, 422], query: [.limit(maximum: 200), .cursor()]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let page = try await service.invites(try context.parameters.require("id"), caller: context.caller, after: request.queryString("cursor"), limit: limit)
            return JSONResponse.write(Page(items: page.items.map { InviteJSON(invite: $0, token: nil, url: nil) }, next: page.next))
        }
        routes.add(.init(.get, "/api/channels/{id}/invites/{invite_id}/qr.png", summary: "The invite's QR code, owner or admin only (410 once used, revoked or expired)", tag: tag, errors: [403, 404, 410], responseMediaType: "image/png"), to: router) { _, context in
            let png = try await service.inviteQR(try context.parameters.require("id"), inviteID: try context.parameters.require("invite_id"), caller: context.caller)
            return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(bytes: png)))
        }
        routes.add(.init(.post, "/api/channels/{id}/invites/{invite_id}/revoke", summary: "Revoke an unused invite (owner, admin): it links nobody and its QR code is 410", tag: tag, response: "Invite", errors: [403, 404]), to: router) { _, context in
            let (id, inviteID) = (try context.parameters.require("id"), try context.parameters.require("invite_id"))
            return try await IdempotencySlot.respond {
                try await service.revokeInvite(id, inviteID: inviteID, caller: context.caller)
            } render: { .json(InviteJSON(invite: $0, token: nil, url: nil)) }
        }
        routes.add(.init(.get, "/api/channels/{id}/links", summary: "Telegram users linked to the channel", tag: tag, response: "LinkPage", errors: [403, 404, 422], query: [.limit(maximum: 200), .cursor()]), to: router) { request, context in
            let limit = try request.queryInt("limit", default: 50, range: 1...200)
            let page = try await service.links(try context.parameters.require("id"), caller: context.caller, after: request.queryString("cursor"), limit: limit)
            return JSONResponse.write(Page(items: page.items.map(LinkJSON.init), next: page.next))
        }
        routes.add(.init(.delete, "/api/channels/{id}/links/{link_id}", summary: "Unlink: the person is a stranger to the bot again", tag: tag, status: 204, errors: [403, 404]), to: router) { _, context in
            try await service.removeLink(try context.parameters.require("id"), linkID: try context.parameters.require("link_id"), caller: context.caller)
            return Response(status: .noContent)
        }
        routes.add(.init(.post, "/telegram/webhook/{channel_id}", summary: "Telegram's webhook (X-Telegram-Bot-Api-Secret-Token); 200 once the update is stored", tag: tag, errors: [400, 401, 404], access: .public), to: router) { request, context in
            var request = request
            let body = try await request.collectBody(upTo: context.maxUploadSize)
            try await service.receiveWebhook(
                try context.parameters.require("channel_id"), secret: request.headers[HTTPField.Name("X-Telegram-Bot-Api-Secret-Token")!],
                body: Array(body.readableBytesView))
            return Response(status: .ok)
        }
    }
}

struct ChannelJSON: JSONWritable {
    var channel: Channel
    var base: String?
    var apiKey: String?

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("channel_id", channel.id)
        writer.field("kind", channel.kind)
        writer.field("name", channel.name)
        writer.field("user_id", channel.userID)
        writer.field("mode", channel.mode.rawValue)
        writer.key("proxy")
        if let proxy = channel.proxy {
            writer.beginObject()
            writer.field("type", proxy.type.rawValue)
            writer.field("host", proxy.host)
            writer.field("port", proxy.port)
            writer.field("username", proxy.username)
            writer.field("has_password", proxy.hasPassword)
            writer.endObject()
        } else {
            writer.null()
        }
        writer.field("default_package_value_cents", channel.defaultPackageValueCents)
        writer.key("bot")
        if let bot = channel.bot {
            writer.beginObject()
            writer.field("id", bot.id)
            writer.field("username", bot.username)
            writer.field("first_name", bot.firstName)
            writer.endObject()
        } else {
            writer.null()
        }
        writer.field("desired", channel.desired.rawValue)
        writer.field("status", channel.status.rawValue)
        writer.field("last_error", channel.lastError)
        writer.field("last_error_at", channel.lastErrorAt)
        writer.field("since", channel.since)
        writer.field("webhook_url", channel.webhookURL(base: base))
        writer.field("api_key_id", channel.apiKeyID)
        if let apiKey { writer.field("api_key", apiKey) }
        writer.field("created_at", channel.createdAt)
        writer.field("updated_at", channel.updatedAt)
        writer.endObject()
    }
}

struct StatusJSON: JSONWritable {
    var view: ChannelService.ChannelStatusView

    func write(to writer: inout JSONWriter) {
        let channel = view.channel
        writer.beginObject()
        writer.field("channel_id", channel.id)
        writer.field("desired", channel.desired.rawValue)
        writer.field("status", channel.status.rawValue)
        writer.field("last_error", channel.lastError)
        writer.field("last_error_at", channel.lastErrorAt)
        writer.field("since", channel.since)
        writer.field("mode", channel.mode.rawValue)
        writer.field("bot_username", channel.bot?.username)
        writer.key("webhook")
        if channel.mode == .webhook {
            writer.beginObject()
            writer.field("url", view.webhook?.url ?? view.webhookURL)
            writer.field("pending_update_count", view.webhook.map { Int64($0.pendingUpdateCount) })
            writer.field("last_error_date", view.webhook?.lastErrorDate.map { Timestamp(milliseconds: $0 * 1000) })
            writer.field("last_error_message", view.webhook?.lastErrorMessage)
            writer.endObject()
        } else {
            writer.null()
        }
        writer.endObject()
    }
}

struct StatsJSON: JSONWritable {
    var stats: ChannelStats

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("channel_id", stats.channelID)
        writer.field("updates_in", stats.updatesIn)
        writer.field("messages_out", stats.messagesOut)
        writer.field("errors", stats.errors)
        writer.field("last_activity_at", stats.lastActivityAt)
        writer.endObject()
    }
}

struct InviteJSON: JSONWritable {
    var invite: Invite
    var token: String?
    var url: String?

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("invite_id", invite.id)
        writer.field("channel_id", invite.channelID)
        writer.field("role", invite.role.rawValue)
        writer.field("user_id", invite.userID)
        writer.field("deliverer_id", invite.delivererID)
        writer.field("name", invite.name)
        writer.field("base_salary_cents", invite.baseSalaryCents)
        writer.field("commission_per_delivery_cents", invite.commissionPerDeliveryCents)
        if let token { writer.field("token", token) }
        if let url { writer.field("url", url) }
        writer.field("qr_url", "/api/channels/\(invite.channelID)/invites/\(invite.id)/qr.png")
        writer.field("created_at", invite.createdAt)
        writer.field("expires_at", invite.expiresAt)
        writer.field("used_at", invite.usedAt)
        writer.field("revoked_at", invite.revokedAt)
        writer.field("used_by_telegram_user_id", invite.usedByTelegramUserID)
        writer.endObject()
    }
}

struct LinkJSON: JSONWritable {
    var link: ChannelLink

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("link_id", link.id)
        writer.field("channel_id", link.channelID)
        writer.field("role", link.role.rawValue)
        writer.field("user_id", link.userID)
        writer.field("deliverer_id", link.delivererID)
        writer.field("name", link.name)
        writer.field("base_salary_cents", link.baseSalaryCents)
        writer.field("commission_per_delivery_cents", link.commissionPerDeliveryCents)
        writer.field("telegram_user_id", link.telegramUserID)
        writer.field("chat_id", link.chatID)
        writer.field("telegram_username", link.telegramUsername)
        writer.field("created_at", link.createdAt)
        writer.endObject()
    }
}
