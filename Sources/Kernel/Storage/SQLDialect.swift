public enum SQLDialect: String, Sendable {
    case sqlite
    case postgres

    /// Rewrites `?` placeholders to `$1…$n` for PostgreSQL. Our SQL never puts `?` inside literals.
    public func placeholders(_ sql: String) -> String {
        guard self == .postgres else { return sql }
        // Bytes, not Characters: this runs on every PostgreSQL statement, some kilobytes long.
        var result: [UInt8] = []
        result.reserveCapacity(sql.utf8.count + 64)
        var index = 0
        for byte in sql.utf8 {
            if byte == UInt8(ascii: "?") {
                index += 1
                result.append(UInt8(ascii: "$"))
                result.append(contentsOf: String(index).utf8)
            } else {
                result.append(byte)
            }
        }
        return String(decoding: result, as: UTF8.self)
    }
}

/// LIKE patterns written the same on both databases: `… LIKE ? ESCAPE '!'`.
public enum SQLLike {
    /// `text` as a literal inside a LIKE pattern (escape character `!`).
    public static func escaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if character == "%" || character == "_" || character == "!" { escaped.append("!") }
            escaped.append(character)
        }
        return escaped
    }

    /// A pattern matching any text that contains `text`.
    public static func containing(_ text: String) -> String { "%" + escaped(text) + "%" }
}
