import Conversations
import Kernel
import Testing

/// The conversations module's pure rules: states and their transitions, the profile's merge and
/// checks, and the pinned formulas against hand-computed values.
@Suite("Conversations: states, profile, scoring")
struct ConversationRulesTests {
    @Test("transitions: the next state, back to collecting_profile from qualifying or recommending, handoff or closed from any open state; closed is final")
    func transitions() {
        let allowed = Set<String>([
            "greeting>collecting_profile", "collecting_profile>qualifying", "qualifying>recommending", "recommending>negotiating",
            "negotiating>scheduling", "scheduling>handoff", "handoff>closed",
            "qualifying>collecting_profile", "recommending>collecting_profile",
        ]).union(ConversationState.allCases.filter { $0 != .closed }.flatMap { ["\($0.rawValue)>handoff", "\($0.rawValue)>closed"] })
        for from in ConversationState.allCases {
            for to in ConversationState.allCases {
                #expect(from.canMove(to: to) == allowed.contains("\(from.rawValue)>\(to.rawValue)"), "\(from.rawValue) → \(to.rawValue)")
            }
        }
        #expect(allowed.count == 7 + 2 + 14 - 2)  // scheduling>handoff and handoff>closed are both "next" and "any open"
    }

    static func profile(_ fields: [String: JSONValue]) throws -> LeadProfile {
        try LeadProfile().merging(fields)
    }

    /// (profile, user messages, completeness, score, class), each computed by hand from the contract's formulas.
    static let table: [(fields: [String: JSONValue], interactions: Int, completeness: Double, score: Int, lead: LeadProfile.LeadClass)] = [
        ([:], 0, 0, 0, .low),
        (["budget_min": 50_000, "budget_max": 80_000], 0, 0.25, 30, .low),
        (["budget_min": 50_000, "budget_max": 80_000, "urgency": "immediate"], 1, 0.25, 65, .high),
        (["main_use": "família", "city": "Campinas", "state": "SP"], 2, 0.45, 18, .low),
        (["priorities": ["economia", "espaço", "segurança"]], 3, 0.30, 25, .low),
        (["priorities": ["economia"], "preferred_brands": ["Fiat"]], 4, 0, 32, .low),
        ([
            "budget_min": 90_000, "budget_max": 120_000, "main_use": "trabalho", "city": "Recife", "state": "PE",
            "priorities": ["conforto", "consumo", "porta-malas"], "preferred_brands": ["Toyota"], "urgency": "1-3 months",
        ], 5, 1.0, 95, .high),
        (["budget_min": 40_000, "budget_max": 40_000, "urgency": "exploring"], 0, 0.25, 40, .medium),
        (["budget_min": 40_000, "main_use": "lazer", "urgency": "3-6 months"], 5, 0.25, 43, .medium),
        (["city": "Natal", "preferred_types": ["SUV"], "priorities": ["preço", "revenda"]], 1, 0, 27, .low),
        (["urgency": "1-3 months", "priorities": ["preço"], "main_use": "uber", "preferred_types": ["sedan"]], 3, 0.25, 60, .high),
        (["urgency": "1-3 months", "priorities": ["preço"], "main_use": "uber"], 0, 0.25, 38, .low),
        (["budget_min": 1, "budget_max": 2, "main_use": "x", "city": "y", "state": "z", "priorities": ["a", "b"]], 7, 0.70, 30 + 8 + 10 + 20, .high),
    ]

    @Test("completeness, qualification_score and lead_class follow the pinned formulas (13 profiles computed by hand)")
    func scoring() throws {
        for row in Self.table {
            let profile = try Self.profile(row.fields)
            #expect(profile.completeness == row.completeness, "\(row.fields)")
            let score = profile.qualificationScore(interactionCount: row.interactions)
            #expect(score == row.score, "\(row.fields)")
            #expect(LeadProfile.leadClass(score: score) == row.lead, "\(row.fields)")
        }
        #expect(LeadProfile.leadClass(score: 59) == .medium && LeadProfile.leadClass(score: 39) == .low)
    }

    @Test("the profile merges field by field (null clears, lists are replaced) and refuses bad values naming the field")
    func merge() throws {
        var profile = try Self.profile(["budget_min": 10_000, "budget_max": 20_000, "priorities": ["a", "b"], "city": "Natal"])
        profile = try profile.merging(["priorities": ["c"], "city": .null, "urgency": "exploring"])
        #expect(profile.priorities == ["c"] && profile.city == nil && profile.budgetMin == 10_000 && profile.urgency == .exploring)
        let bad: [([String: JSONValue], String)] = [
            (["budget_min": 30_000], "profile.budget_min"),  // above the maximum of 20,000
            (["budget_max": 0], "profile.budget_max"),
            (["budget_max": -5], "profile.budget_max"),
            (["budget_min": "10"], "profile.budget_min"),
            (["urgency": "soon"], "profile.urgency"),
            (["priorities": ["ok", 3]], "profile.priorities[1]"),
            (["priorities": "a"], "profile.priorities"),
            (["city": ""], "profile.city"),
            (["favourite_colour": "blue"], "profile.favourite_colour"),
        ]
        for (patch, field) in bad {
            #expect(throws: ProfileError.self) { try profile.merging(patch) }
            do {
                _ = try profile.merging(patch)
            } catch {
                #expect(error.field == field, "\(patch)")
            }
        }
    }
}
