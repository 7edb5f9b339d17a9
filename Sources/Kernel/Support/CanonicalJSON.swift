extension JSONValue {
    /// Canonical JSON text: object keys sorted by their UTF-8 bytes, no spaces, `/` not escaped.
    /// The audit chain hashes this text, so it must never change for the same value.
    public func canonicalText() -> String {
        var writer = JSONWriter(capacity: 128)
        write(to: &writer)
        return String(buffer: writer.buffer)
    }
}
