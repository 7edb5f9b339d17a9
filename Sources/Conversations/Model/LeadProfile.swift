import Foundation
import Kernel

/// What the bot learned about a contact (PRODUCT.md, "Conversations contract"), and the figures
/// computed from it on every read, never stored.
public struct LeadProfile: Sendable, Equatable {
    public var budgetMin: Int64?
    public var budgetMax: Int64?
    public var mainUse: String?
    public var city: String?
    public var state: String?
    public var priorities: [String] = []
    public var preferredBrands: [String] = []
    public var preferredTypes: [String] = []
    public var urgency: Urgency?

    public init() {}

    public enum Urgency: String, Sendable, CaseIterable {
        case immediate
        case oneToThreeMonths = "1-3 months"
        case threeToSixMonths = "3-6 months"
        case exploring

        var points: Int {
            switch self {
            case .immediate: 25
            case .oneToThreeMonths: 20
            case .threeToSixMonths: 15
            case .exploring: 10
            }
        }
    }

    public enum LeadClass: String, Sendable { case high, medium, low }

    var hasBudget: Bool { budgetMin != nil && budgetMax != nil }

    /// 0 … 1 in hundredths: 0.25 (both budgets) + 0.25 (main use) + 0.20 (city and state) + 0.30 (3+ priorities).
    public var completeness: Double {
        var hundredths = 0
        if hasBudget { hundredths += 25 }
        if mainUse != nil { hundredths += 25 }
        if city != nil && state != nil { hundredths += 20 }
        if priorities.count >= 3 { hundredths += 30 }
        return Double(hundredths) / 100
    }

    /// 30 (both budgets) + urgency (25/20/15/10) + 10 (a priority) + 8 (main use) + 7 (a preferred
    /// brand or type) + engagement by user messages (5+: 20, 3–4: 15, 1–2: 10).
    public func qualificationScore(interactionCount: Int) -> Int {
        var score = 0
        if hasBudget { score += 30 }
        score += urgency?.points ?? 0
        if !priorities.isEmpty { score += 10 }
        if mainUse != nil { score += 8 }
        if !preferredBrands.isEmpty || !preferredTypes.isEmpty { score += 7 }
        switch interactionCount {
        case 5...: score += 20
        case 3...4: score += 15
        case 1...2: score += 10
        default: break
        }
        return score
    }

    public static func leadClass(score: Int) -> LeadClass {
        score >= 60 ? .high : score >= 40 ? .medium : .low
    }
}


/// A field of the profile the request got wrong (the route answers 422 naming it).
public struct ProfileError: Error, Equatable {
    public var field: String
    public var detail: String
}

extension LeadProfile {
    static let fields: Set<String> = [
        "budget_min", "budget_max", "main_use", "city", "state", "priorities", "preferred_brands", "preferred_types", "urgency",
    ]

    /// The profile with `patch` merged in field by field: a field absent stays, `null` clears it,
    /// a value replaces it (lists are replaced whole). Then the whole is checked: budgets positive,
    /// minimum ≤ maximum, urgency one of its four values.
    public func merging(_ patch: [String: JSONValue]) throws(ProfileError) -> LeadProfile {
        var profile = self
        for (name, value) in patch {
            let field = "profile." + name
            guard Self.fields.contains(name) else { throw ProfileError(field: field, detail: "\(name) is not a profile field") }
            switch name {
            case "budget_min": profile.budgetMin = try Self.cents(value, field)
            case "budget_max": profile.budgetMax = try Self.cents(value, field)
            case "main_use": profile.mainUse = try Self.text(value, field)
            case "city": profile.city = try Self.text(value, field)
            case "state": profile.state = try Self.text(value, field)
            case "priorities": profile.priorities = try Self.list(value, field)
            case "preferred_brands": profile.preferredBrands = try Self.list(value, field)
            case "preferred_types": profile.preferredTypes = try Self.list(value, field)
            default:
                guard let text = try Self.text(value, field) else {
                    profile.urgency = nil
                    continue
                }
                guard let urgency = Urgency(rawValue: text) else {
                    throw ProfileError(field: field, detail: "urgency is one of \(Urgency.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                profile.urgency = urgency
            }
        }
        if let low = profile.budgetMin, let high = profile.budgetMax, low > high {
            throw ProfileError(field: "profile.budget_min", detail: "budget_min must not be above budget_max")
        }
        return profile
    }

    static func cents(_ value: JSONValue, _ field: String) throws(ProfileError) -> Int64? {
        switch value {
        case .null: return nil
        case .int(let number) where number > 0: return number
        default: throw ProfileError(field: field, detail: "a positive whole number")
        }
    }

    static func text(_ value: JSONValue, _ field: String) throws(ProfileError) -> String? {
        switch value {
        case .null: return nil
        case .string(let text) where !text.trimmingCharacters(in: .whitespaces).isEmpty && text.count <= 200: return text
        default: throw ProfileError(field: field, detail: "a non-empty string of at most 200 characters")
        }
    }

    static func list(_ value: JSONValue, _ field: String) throws(ProfileError) -> [String] {
        switch value {
        case .null: return []
        case .array(let items) where items.count <= 50:
            var strings: [String] = []
            for (index, item) in items.enumerated() {
                guard case .string(let text) = item, !text.trimmingCharacters(in: .whitespaces).isEmpty, text.count <= 200 else {
                    throw ProfileError(field: "\(field)[\(index)]", detail: "a non-empty string of at most 200 characters")
                }
                strings.append(text)
            }
            return strings
        default: throw ProfileError(field: field, detail: "a list of at most 50 strings")
        }
    }
}

extension LeadProfile: JSONWritable {
    /// The profile's fields as the contract names them (unset ones as null, lists as arrays).
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("budget_min", budgetMin)
        writer.field("budget_max", budgetMax)
        writer.field("main_use", mainUse)
        writer.field("city", city)
        writer.field("state", state)
        writer.field("priorities", array: priorities)
        writer.field("preferred_brands", array: preferredBrands)
        writer.field("preferred_types", array: preferredTypes)
        writer.field("urgency", urgency?.rawValue)
        writer.endObject()
    }

    /// The profile from its stored JSON text (written by `write(to:)`).
    public static func stored(_ text: String) -> LeadProfile {
        guard case .object(let fields) = JSONValue.parse(text) else { return LeadProfile() }
        return (try? LeadProfile().merging(fields)) ?? LeadProfile()
    }
}
