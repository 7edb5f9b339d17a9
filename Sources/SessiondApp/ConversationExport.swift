import CSV
import Conversations
import Foundation
import Kernel
import Logging

/// `sessiond export conversations`: archived conversations as CSV (RFC 4180, a header row), one
/// row each with the profile's fields flattened (lists joined by `|`) and the computed lead figures,
/// for DuckDB, spreadsheets and other analytics tools. (Parquet: no maintained Swift library is
/// available here; DuckDB reads this CSV directly.)
public enum ConversationExport {
    public static let header = [
        "conversation_id", "channel", "contact", "state", "turn_id", "summary", "profile_budget_min", "profile_budget_max", "profile_main_use",
        "profile_city", "profile_state", "profile_priorities", "profile_preferred_brands", "profile_preferred_types", "profile_urgency",
        "completeness", "qualification_score", "lead_class", "consent_given", "consent_at", "message_count", "interaction_count",
        "created_at", "updated_at", "archived_at", "user_id",
    ]

    static func row(_ archived: ConversationService.Archived) -> [String] {
        let conversation = archived.conversation
        let profile = conversation.profile
        let score = profile.qualificationScore(interactionCount: archived.userMessages)
        let row: [String] = [
            conversation.id, conversation.channel, conversation.contact, conversation.state.rawValue, String(conversation.turnID), conversation.summary ?? "",
            profile.budgetMin.map(String.init) ?? "", profile.budgetMax.map(String.init) ?? "", profile.mainUse ?? "", profile.city ?? "", profile.state ?? "",
            profile.priorities.joined(separator: "|"), profile.preferredBrands.joined(separator: "|"), profile.preferredTypes.joined(separator: "|"),
            profile.urgency?.rawValue ?? "", String(profile.completeness), String(score), LeadProfile.leadClass(score: score).rawValue,
            String(conversation.consentGiven), conversation.consentAt?.rfc3339 ?? "", String(archived.messages), String(archived.userMessages),
            conversation.createdAt.rfc3339, conversation.updatedAt.rfc3339, conversation.archivedAt?.rfc3339 ?? "", conversation.userID,
        ]
        return SpreadsheetCell.safe(row)
    }

    /// Writes every conversation archived since `since` (of `userID`, or every owner's) to the file
    /// at `path` (`/dev/stdout` for standard output), a page of 1,000 at a time; returns how many.
    public static func write(since: Timestamp, userID: String? = nil, toFile path: String, _ configuration: ServerConfiguration, logger: Logger) async throws -> Int {
        try await withDatabase(configuration, logger: logger) { storage in
            let service = ConversationService(storage: storage, clock: .system, ttlSeconds: configuration.conversationTTLSeconds)
            guard let stream = OutputStream(toFileAtPath: path, append: path == "/dev/stdout") else { throw ExportError(path: path) }
            let writer = try CSVWriter(stream: stream, newline: .crlf)
            try writer.write(row: header)
            var cursor: (Timestamp, String)?
            var count = 0
            while true {
                let page = try await service.archived(since: since, userID: userID, after: cursor, limit: 1000)
                for archived in page { try writer.write(row: row(archived)) }
                count += page.count
                guard let last = page.last, page.count == 1000 else { break }
                cursor = (last.conversation.archivedAt ?? since, last.conversation.id)
            }
            writer.stream.close()
            return count
        }
    }

    public struct ExportError: Error, CustomStringConvertible {
        public var path: String
        public var description: String { "cannot write to \(path)" }
    }
}
