public enum SQLDialect: String, Sendable {
    case sqlite
    case postgres

    /// Rewrites `?` placeholders to `$1…$n` for PostgreSQL. Our SQL never puts `?` inside literals.
    public func placeholders(_ sql: String) -> String {
        guard self == .postgres else { return sql }
        var result = ""
        result.reserveCapacity(sql.utf8.count + 16)
        var index = 0
        for character in sql {
            if character == "?" {
                index += 1
                result += "$\(index)"
            } else {
                result.append(character)
            }
        }
        return result
    }
}
