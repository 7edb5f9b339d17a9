import Access
import Conversations
import Delivery
import Foundation
import Kernel
import Scanning

/// The delivery bot: an owner and their deliverers run a delivery session in a private chat. It
/// calls the delivery, scanning and conversations services as the linked person (the owner as the
/// channel's `user_id`, a deliverer as its `deliverer_id`); those modules know nothing of Telegram.
///
/// Each update is answered in one transaction: the change it causes (through the delivery
/// service's `alongside`), the update marked handled, the replies (outbox) and what the bot now
/// waits for in the chat (the conversations module's `ChatDialogs`). A restart in the middle of a
/// dialog continues where it was, and an update is never handled twice.
public struct DeliveryBot: UpdateHandler {
    let channels: ChannelService
    let delivery: DeliveryService
    let scanning: ScanService
    let dialogs: ChatDialogs

    public init(channels: ChannelService, delivery: DeliveryService, scanning: ScanService, dialogs: ChatDialogs) {
        self.channels = channels
        self.delivery = delivery
        self.scanning = scanning
        self.dialogs = dialogs
    }

    /// What the bot waits for in one chat.
    struct Dialog: Codable, Sendable, Equatable {
        /// The owner's current session.
        var sessionID: String?
        /// A deliverer's package whose failure reason the bot asked for.
        var failing: Failing?
        /// The links picked in `/start_session`'s picker.
        var selected: [String]?

        struct Failing: Codable, Sendable, Equatable {
            var sessionID: String
            var packageID: String
            var barcode: String
        }
    }

    /// The replies to an update and the chat's state after it.
    struct Reply: Sendable {
        var messages: [OutgoingMessage] = []
        var dialog: Dialog
        var statements: [SQLStatement] = []
        var dialogChanged = false

        mutating func say(_ chat: Int64, _ text: String, keyboard: BotAPI.Keyboard? = nil) {
            messages.append(.text(chatID: chat, text: text, keyboard: keyboard))
        }

        mutating func set(_ change: (inout Dialog) -> Void) {
            change(&dialog)
            dialogChanged = true
        }
    }

    /// Who is speaking, and in which chat.
    struct Context: Sendable {
        var channel: Channel
        var chat: Int64
        var from: BotAPI.User
        var link: ChannelLink?
        var client: TelegramClient
        var finish: [SQLStatement]

        var owner: Caller {
            Caller.principal(kind: .apiKey, credentialID: link?.id, role: .owner, userID: channel.userID, delivererID: nil)
        }

        var deliverer: Caller? {
            guard let id = link?.delivererID else { return nil }
            return Caller.principal(kind: .apiKey, credentialID: link?.id, role: .deliverer, userID: channel.userID, delivererID: id)
        }
    }

    // MARK: entry

    public func handle(_ update: BotAPI.Update, channel: Channel, client: TelegramClient, finish: [SQLStatement]) async throws {
        let from: BotAPI.User
        let chat: Int64
        if let query = update.callbackQuery {
            from = query.from
            chat = query.message?.chat.id ?? query.from.id
        } else if let message = update.message, let sender = message.from, message.chat.type == "private" {
            from = sender
            chat = message.chat.id
        } else {
            // Groups, channels, edits and everything else: recorded as handled, no answer.
            try await channels.storage.write(finish)
            return
        }
        let link = try await channels.store.link(telegramUserID: from.id, channelID: channel.id)
        let dialog = try await dialogs.state(Dialog.self, channel: channel.id, chat: String(chat)) ?? Dialog()
        let context = Context(channel: channel, chat: chat, from: from, link: link, client: client, finish: finish)
        var reply = Reply(dialog: dialog)
        if let query = update.callbackQuery {
            // Every button press is answered, so no spinner hangs.
            reply.messages.append(.callbackAnswer(queryID: query.id, text: nil))
        }

        if let text = update.message?.text, text.hasPrefix("/start"), let token = Self.startToken(text) {
            return try await linkPerson(token: token, context, reply)
        }
        guard let link else {
            if update.callbackQuery == nil { reply.say(chat, BotTexts.stranger) }
            return try await commit(reply, context)
        }
        switch link.role {
        case .owner: try await owner(update, context, reply)
        case .deliverer: try await deliverer(update, context, reply)
        }
    }

    static func startToken(_ text: String) -> String? {
        let parts = text.split(separator: " ", maxSplits: 1)
        guard parts.first == "/start", parts.count == 2 else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// The statements that answer an update: the update marked handled (fenced), the replies, the chat's state.
    func statements(_ reply: Reply, _ context: Context) -> [SQLStatement] {
        let now = channels.clock.now()
        var statements = context.finish + reply.statements
        for message in reply.messages {
            statements.append(ChannelSQL.enqueue(message, id: channels.ids.make(), channelID: context.channel.id, at: now))
        }
        if reply.dialogChanged, let save = try? dialogs.save(channel: context.channel.id, chat: String(context.chat), state: reply.dialog, at: now) {
            statements.append(save)
        }
        return statements
    }

    func commit(_ reply: Reply, _ context: Context) async throws {
        try await channels.storage.write(statements(reply, context))
        channels.didCommitEvents()
    }

    /// Runs a change of the delivery engine with the reply in its transaction; a refusal is said to the person instead.
    func change<Outcome: Sendable>(
        _ context: Context, _ reply: Reply, refused: String? = nil,
        _ run: (@escaping @Sendable (Outcome) -> [SQLStatement]) async throws -> Outcome,
        answer: @escaping @Sendable (Outcome, inout Reply) -> Void
    ) async throws {
        do {
            _ = try await run { outcome in
                var final = reply
                answer(outcome, &final)
                return statements(final, context)
            }
        } catch let error where (error as? any ProblemConvertible) != nil {
            var final = reply
            final.say(context.chat, refused ?? BotTexts.refusal(error))
            try await commit(final, context)
        }
    }

    // MARK: linking

    func linkPerson(token: String, _ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let now = channels.clock.now()
        if let link = context.link {
            reply.say(context.chat, "Você já está vinculado a este bot como \(link.role == .owner ? "responsável" : "entregador"). Use /sessions ou aguarde seus pacotes.")
            return try await commit(reply, context)
        }
        guard let invite = try await channels.store.invite(tokenHash: ChannelService.tokenHash(token), channelID: context.channel.id),
            invite.isOpen(at: now)
        else {
            reply.say(context.chat, "Este convite não vale mais (já foi usado, foi cancelado, expirou ou não existe). Peça um novo a quem o enviou.")
            return try await commit(reply, context)
        }
        let link = ChannelLink(
            id: channels.ids.make(), channelID: context.channel.id, role: invite.role, userID: invite.role == .owner ? context.channel.userID : nil,
            delivererID: invite.role == .deliverer ? (invite.delivererID ?? "tg-\(context.from.id)") : nil,
            name: invite.name ?? context.from.firstName, baseSalaryCents: invite.baseSalaryCents,
            commissionPerDeliveryCents: invite.commissionPerDeliveryCents, telegramUserID: context.from.id, chatID: context.chat,
            telegramUsername: context.from.username, createdAt: now)
        reply.statements += [
            SQLStatement(
                "UPDATE channel_invites SET used_at = ?, used_by_telegram_user_id = ? WHERE invite_id = ? AND used_at IS NULL AND revoked_at IS NULL",
                [.int(now.milliseconds), .int(context.from.id), .text(invite.id)], expectedChanges: 1),
            ChannelSQL.insertLink(link),
        ]
        reply.statements += channels.events.append([
            channels.event("channel.link.created", context.channel, at: now) { data in
                data.field("link_id", link.id)
                data.field("role", link.role.rawValue)
                data.field("deliverer_id", link.delivererID)
            }
        ])
        let name = link.name ?? context.from.firstName
        switch link.role {
        case .owner:
            reply.say(context.chat, "Olá, \(name)! Você agora administra as entregas por aqui. Use /sessions para começar.", keyboard: BotTexts.menuKeyboard)
        case .deliverer:
            reply.say(context.chat, "Olá, \(name)! Você foi cadastrado como entregador. Quando uma sessão começar, seus pacotes chegam aqui.")
        }
        try await commit(reply, context)
    }

    // MARK: owner

    func owner(_ update: BotAPI.Update, _ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        if let data = update.callbackQuery?.data {
            return try await ownerButton(data, update.callbackQuery?.message, context, reply)
        }
        guard let message = update.message else { return try await commit(reply, context) }
        if let photo = message.photo, !photo.isEmpty {
            return try await scanLabel(photo, intent: .add, context, reply)
        }
        let text = (message.text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("/") {
            let command = String(text.split(separator: " ", maxSplits: 1).first ?? "").split(separator: "@").first.map(String.init) ?? ""
            let argument = text.split(separator: " ", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
            switch command {
            case "/sessions":
                reply.say(chat, BotTexts.menu, keyboard: BotTexts.menuKeyboard)
            case "/session_dashboard":
                return try await dashboard(context, reply)
            case "/start_session":
                return try await picker(context, reply)
            case "/convidar":
                return try await invite(argument, context, reply)
            case "/cancel":
                reply.set { $0.failing = nil; $0.selected = nil }
                reply.say(chat, "Ok, cancelado.")
            case "/start":
                reply.say(chat, "Olá! Use /sessions para abrir o menu.", keyboard: BotTexts.menuKeyboard)
            default:
                reply.say(chat, BotTexts.help)
            }
            return try await commit(reply, context)
        }
        guard !text.isEmpty else { return try await commit(reply, context) }
        try await addBarcodes(text, context, reply)
    }

    func ownerButton(_ data: String, _ message: BotAPI.Message?, _ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        let owner = context.owner
        let userID = context.channel.userID
        switch data {
        case "menu:new":
            do {
                // The reply and the chat's new current session ride in the session's own transaction.
                _ = try await delivery.create(userID: userID, name: nil, caller: owner) { session in
                    var final = reply
                    final.set { $0.sessionID = session.id; $0.selected = nil }
                    final.say(chat, "🆕 \(BotTexts.title(session)) aberta! Envie os códigos de barras, um por linha (opcional: o valor, como 12,50), ou a foto da etiqueta.")
                    return statements(final, context)
                }
            } catch let error where (error as? any ProblemConvertible) != nil {
                reply.say(chat, BotTexts.refusal(error))
                try await commit(reply, context)
            }
            return
        case "menu:list":
            let sessions = try await delivery.sessions(userID: userID, status: nil, cursor: nil, limit: 10, caller: owner).items
            if sessions.isEmpty {
                reply.say(chat, "Você ainda não tem sessões. Toque em \(BotTexts.newSession) para começar.", keyboard: BotTexts.menuKeyboard)
            } else {
                let lines = sessions.map { "• \(BotTexts.title($0)) — \(BotTexts.status($0.status)), \(BotTexts.packages($0.packagesTotal))" }
                reply.say(chat, "📂 Suas sessões:\n" + lines.joined(separator: "\n"))
            }
        case "menu:reuse":
            let open = try await delivery.sessions(userID: userID, status: .open, cursor: nil, limit: 20, caller: owner).items
            if open.isEmpty {
                reply.say(chat, "Nenhuma sessão aberta para reutilizar. Toque em \(BotTexts.newSession).", keyboard: BotTexts.menuKeyboard)
            } else {
                let rows = open.map { [BotAPI.Button("🔄 \(BotTexts.title($0))", data: "reuse:" + CompactID.encode($0.id))] }
                reply.say(chat, "Qual sessão aberta você quer reutilizar?", keyboard: BotAPI.Keyboard(rows))
            }
        case "menu:dash":
            return try await dashboard(context, reply)
        case "go":
            return try await startSession(context, reply)
        default:
            if data.hasPrefix("reuse:"), let sessionID = CompactID.decode(String(data.dropFirst(6))) {
                return try await change(context, reply) { alongside in
                    try await delivery.reuse(sessionID, userID: userID, caller: owner, alongside: alongside)
                } answer: { session, final in
                    final.set { $0.sessionID = session.id; $0.selected = nil }
                    final.say(chat, "🔄 \(BotTexts.title(session)) é a sessão atual (\(BotTexts.packages(session.packagesTotal))). Envie mais códigos ou use /start_session.")
                }
            }
            if data.hasPrefix("pick:") {
                let linkID = String(data.dropFirst(5))
                var selected = reply.dialog.selected ?? []
                if let index = selected.firstIndex(of: linkID) { selected.remove(at: index) } else { selected.append(linkID) }
                reply.set { $0.selected = selected }
                if let message {
                    let keyboard = try await pickerKeyboard(context, selected: selected)
                    reply.messages.append(.editKeyboard(chatID: chat, messageID: message.messageID, keyboard: keyboard))
                }
            }
        }
        try await commit(reply, context)
    }

    func currentSession(_ context: Context, _ reply: Reply) async throws -> DeliveryAggregate? {
        guard let id = reply.dialog.sessionID else { return nil }
        return try await session(id, caller: context.owner)
    }

    /// The session, or nil when it is gone or not this person's (a 404). Any other failure (the
    /// database) is thrown: the update is tried again, never answered as if there were no session.
    func session(_ id: String, caller: Caller) async throws -> DeliveryAggregate? {
        do {
            return try await delivery.session(id, caller: caller)
        } catch DeliveryError.sessionNotFound {
            return nil
        }
    }

    func dashboard(_ context: Context, _ reply: Reply) async throws {
        var reply = reply
        if let session = try await currentSession(context, reply) {
            reply.say(context.chat, BotTexts.dashboard(session.session))
        } else {
            reply.say(context.chat, BotTexts.noCurrentSession, keyboard: BotTexts.menuKeyboard)
        }
        try await commit(reply, context)
    }

    /// One line per package: `BARCODE` or `BARCODE VALUE`.
    static func parseBarcodes(_ text: String, defaultValue: Int64) -> (packages: [NewPackage], invalid: [String]) {
        var packages: [NewPackage] = []
        var invalid: [String] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { continue }
            let parts = trimmed.split(separator: " ", maxSplits: 1)
            let barcode = String(parts[0])
            var value = defaultValue
            if parts.count == 2 {
                guard let parsed = Reais.parse(String(parts[1])) else {
                    invalid.append(trimmed)
                    continue
                }
                value = parsed
            }
            packages.append(NewPackage(barcode: barcode, valueCents: value))
        }
        return (packages, invalid)
    }

    func addBarcodes(_ text: String, _ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        guard let session = try await currentSession(context, reply), session.session.status == .open else {
            reply.say(chat, BotTexts.noCurrentSession, keyboard: BotTexts.menuKeyboard)
            return try await commit(reply, context)
        }
        let (packages, invalid) = Self.parseBarcodes(text, defaultValue: context.channel.defaultPackageValueCents)
        let invalidNote = invalid.isEmpty ? "" : "\n⚠️ Não entendi o valor em: " + invalid.joined(separator: "; ") + " (use 12,50 ou R$ 12,50)."
        guard !packages.isEmpty else {
            reply.say(chat, "Nenhum código para adicionar." + invalidNote)
            return try await commit(reply, context)
        }
        let total = session.session.packagesTotal
        try await change(context, reply) { alongside in
            try await delivery.addPackages(session.id, packages, caller: context.owner, alongside: alongside)
        } answer: { outcome, final in
            var text = outcome.added.isEmpty
                ? "Nenhum pacote novo."
                : "✅ \(outcome.added.count == 1 ? "1 pacote adicionado" : "\(outcome.added.count) pacotes adicionados") (total: \(total + outcome.added.count))."
            if !outcome.duplicates.isEmpty {
                text += "\n⚠️ Duplicado\(outcome.duplicates.count == 1 ? "" : "s"), não adicionado\(outcome.duplicates.count == 1 ? "" : "s"): "
                    + outcome.duplicates.joined(separator: ", ")
            }
            final.say(chat, text + invalidNote)
        }
    }

    func scanLabel(_ photo: [BotAPI.PhotoSize], intent: ScanIntent, _ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        let largest = photo.max { $0.width * $0.height < $1.width * $1.height }!
        var sessionID: String?
        var caller = context.owner
        var delivererID: String?
        switch intent {
        case .deliver:
            guard let deliverer = context.deliverer, let id = context.link?.delivererID else { return try await commit(reply, context) }
            caller = deliverer
            delivererID = id
            sessionID = try await activeSession(of: id, context)?.id
        default:
            if let session = try await currentSession(context, reply), session.session.status == .open { sessionID = session.id }
        }
        guard let sessionID else {
            reply.say(chat, intent == .deliver ? "Você não tem uma sessão em andamento agora." : BotTexts.noCurrentSession)
            return try await commit(reply, context)
        }
        do {
            let bytes = try await context.client.download(fileID: largest.fileID, limit: channels.configuration.maxPhotoBytes)
            let answer = try await scanning.scan(
                sessionID, intent: intent, delivererID: delivererID, image: Array(bytes.readableBytesView), caller: caller,
                valueCents: context.channel.defaultPackageValueCents)
            if answer.found, let barcode = answer.barcode {
                switch answer.outcome {
                case "added": reply.say(chat, "📷 Li o código \(barcode) e adicionei o pacote.")
                case "duplicate": reply.say(chat, "📷 Li o código \(barcode), mas ele já está na sessão (duplicado, não adicionado).")
                case "delivered": reply.say(chat, "📷 Li o código \(barcode): pacote marcado como entregue ✅")
                default: reply.say(chat, "📷 Li o código \(barcode).")
                }
            } else {
                reply.say(chat, "📷 Não consegui ler nenhum código nesta foto. Tente outra foto, mais de perto e com luz, ou digite o código.")
            }
        } catch let failure as TelegramFailure {
            throw failure  // retried: the photo could not be downloaded yet
        } catch let error where (error as? any ProblemConvertible) != nil {
            reply.say(chat, "📷 " + BotTexts.refusal(error))
        }
        try await commit(reply, context)
    }

    // MARK: starting a session

    func deliverers(_ context: Context) async throws -> [ChannelLink] {
        try await channels.store.links(context.channel.id, after: nil, limit: 100).filter { $0.role == .deliverer }
    }

    func pickerKeyboard(_ context: Context, selected: [String]) async throws -> BotAPI.Keyboard {
        let links = try await deliverers(context)
        var rows = links.map { link in
            let name = link.name ?? link.telegramUsername ?? link.delivererID ?? "Entregador"
            return [BotAPI.Button((selected.contains(link.id) ? "✅ " : "👤 ") + name, data: "pick:" + link.id)]
        }
        rows.append([BotAPI.Button(BotTexts.startButton, data: "go")])
        return BotAPI.Keyboard(rows)
    }

    func picker(_ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        guard let session = try await currentSession(context, reply), session.session.status == .open else {
            reply.say(chat, BotTexts.noCurrentSession, keyboard: BotTexts.menuKeyboard)
            return try await commit(reply, context)
        }
        guard !session.packages.isEmpty else {
            reply.say(chat, "A sessão ainda não tem pacotes. Envie os códigos de barras primeiro.")
            return try await commit(reply, context)
        }
        guard try await !deliverers(context).isEmpty else {
            reply.say(chat, "Nenhum entregador vinculado ainda. Use /convidar NOME para convidar um.")
            return try await commit(reply, context)
        }
        reply.set { $0.selected = [] }
        reply.say(
            chat, "Quem vai entregar os \(BotTexts.packages(session.packages.count)) de \(BotTexts.title(session.session))? Toque para escolher e depois em \(BotTexts.startButton).",
            keyboard: try await pickerKeyboard(context, selected: []))
        try await commit(reply, context)
    }

    func startSession(_ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        guard let session = try await currentSession(context, reply) else {
            reply.say(chat, BotTexts.noCurrentSession, keyboard: BotTexts.menuKeyboard)
            return try await commit(reply, context)
        }
        let selected = Set(reply.dialog.selected ?? [])
        let chosen = try await deliverers(context).filter { selected.contains($0.id) }
        guard !chosen.isEmpty else {
            reply.say(chat, "Selecione ao menos um entregador antes de iniciar.")
            return try await commit(reply, context)
        }
        let team = chosen.map {
            NewDeliverer(
                delivererID: $0.delivererID ?? "tg-\($0.telegramUserID)", name: $0.name, baseSalaryCents: $0.baseSalaryCents,
                commissionPerDeliveryCents: $0.commissionPerDeliveryCents)
        }
        try await change(context, reply) { alongside in
            try await delivery.start(session.id, deliverers: team, assignments: [:], caller: context.owner, alongside: alongside)
        } answer: { started, final in
            final.set { $0.selected = nil }
            final.say(
                chat,
                "🚀 \(BotTexts.title(started)) iniciada com \(team.count == 1 ? "1 entregador" : "\(team.count) entregadores") e \(BotTexts.packages(started.packagesTotal)). Acompanhe com \(BotTexts.dashboard).",
                keyboard: BotAPI.Keyboard([[BotAPI.Button(BotTexts.dashboard, data: "menu:dash")]]))
        }
    }

    // MARK: invites

    func invite(_ argument: String, _ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        var words = argument.split(separator: " ").map(String.init)
        var salary: Int64 = 0
        var commission: Int64 = 0
        if words.count >= 3, let c = Reais.parse(words[words.count - 1]), let s = Reais.parse(words[words.count - 2]) {
            salary = s
            commission = c
            words.removeLast(2)
        }
        let name = words.joined(separator: " ")
        guard !name.isEmpty else {
            reply.say(chat, "Use: /convidar NOME [SALÁRIO COMISSÃO], por exemplo /convidar Ana 80 2,50")
            return try await commit(reply, context)
        }
        do {
            let (_, _, url, statements) = try channels.inviteStatements(
                context.channel,
                .init(role: "deliverer", userID: nil, delivererID: nil, name: name, baseSalaryCents: salary, commissionPerDeliveryCents: commission, expiresIn: nil),
                actor: context.owner)
            reply.statements += statements
            reply.messages.append(
                .inviteQR(
                    chatID: chat, url: url,
                    caption: "Convite para \(name) (salário \(Reais.format(cents: salary)), comissão \(Reais.format(cents: commission)) por entrega). Vale 7 dias e uma vez só:\n\(url)"))
        } catch let error as ChannelError {
            reply.say(chat, error.problem.detail)
        }
        try await commit(reply, context)
    }

    // MARK: deliverer

    /// The active session of the channel's owner where this deliverer works (the newest).
    func activeSession(of delivererID: String, _ context: Context) async throws -> DeliveryAggregate? {
        let sessions = try await delivery.sessions(userID: context.channel.userID, status: .active, cursor: nil, limit: 20, caller: .system).items
        for session in sessions {
            if let aggregate = try await self.session(session.id, caller: .system), aggregate.deliverer(id: delivererID) != nil { return aggregate }
        }
        return nil
    }

    func deliverer(_ update: BotAPI.Update, _ context: Context, _ reply: Reply) async throws {
        var reply = reply
        let chat = context.chat
        guard let caller = context.deliverer, let delivererID = context.link?.delivererID else { return try await commit(reply, context) }
        if let data = update.callbackQuery?.data {
            let parts = data.split(separator: ":").map(String.init)
            guard parts.count == 3, let sessionID = CompactID.decode(parts[1]), let packageID = CompactID.decode(parts[2]) else {
                return try await commit(reply, context)
            }
            switch parts[0] {
            case "ok":
                return try await change(context, reply) { alongside in
                    try await delivery.mark(sessionID, .delivered, .id(packageID), delivererID: delivererID, reason: nil, caller: caller, alongside: alongside)
                } answer: { outcome, final in
                    final.set { if $0.failing?.packageID == packageID { $0.failing = nil } }
                    let left = outcome.deliverer.map { $0.packagesAssigned - $0.packagesDelivered - $0.packagesFailed }
                    final.say(chat, "✅ \(outcome.package.barcode) entregue!" + (left.map { $0 > 0 ? " Faltam \(BotTexts.packages($0))." : " Você terminou seus pacotes. 🎉" } ?? ""))
                }
            case "fail":
                guard let aggregate = try await session(sessionID, caller: caller), let package = aggregate.package(id: packageID) else {
                    reply.say(chat, "Não encontrei esse pacote.")
                    return try await commit(reply, context)
                }
                reply.set { $0.failing = .init(sessionID: sessionID, packageID: packageID, barcode: package.barcode) }
                reply.say(chat, "❌ Qual foi o motivo da falha do pacote \(package.barcode)? Responda com uma mensagem (ou /cancel).")
            default:
                break
            }
            return try await commit(reply, context)
        }
        guard let message = update.message else { return try await commit(reply, context) }
        if let photo = message.photo, !photo.isEmpty {
            return try await scanLabel(photo, intent: .deliver, context, reply)
        }
        let text = (message.text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        if text == "/cancel" {
            reply.set { $0.failing = nil }
            reply.say(chat, "Ok, cancelado.")
            return try await commit(reply, context)
        }
        if let failing = reply.dialog.failing, !text.isEmpty, !text.hasPrefix("/") {
            return try await change(context, reply) { alongside in
                try await delivery.mark(
                    failing.sessionID, .failed, .id(failing.packageID), delivererID: delivererID, reason: text, caller: caller, alongside: alongside)
            } answer: { outcome, final in
                final.set { $0.failing = nil }
                final.say(chat, "Anotado: \(outcome.package.barcode) não entregue (\(text)).")
            }
        }
        reply.say(chat, "Seus pacotes chegam aqui quando a sessão começar. Toque em \(BotTexts.delivered) ou \(BotTexts.failed) em cada um, ou envie a foto da etiqueta ao entregar.")
        try await commit(reply, context)
    }
}
