/// What the pipeline saw, judged: which barcode (if any) the photo shows and how sure that is.
/// Pure: the decoders' reads, the OCR lines and the session's barcodes in, a verdict out.
///
/// A wrong barcode is worse than none, so the verdict is `found` only on evidence: a decoder's
/// read (its format's own checks passed), OCR text that carries a valid check digit or is exactly
/// one of the session's barcodes, or OCR text within a small edit distance of exactly one of the
/// session's barcodes and clearly farther from every other. Anything less is `found: false`
/// with candidates, best first.
public struct ScanJudge: Sendable {
    /// Below this confidence nothing is claimed.
    public var threshold: Double

    public init(threshold: Double = 0.6) { self.threshold = threshold }

    public struct Candidate: Sendable, Equatable {
        public var barcode: String
        public var confidence: Double
        /// True when the barcode is one of the session's.
        public var known: Bool
    }

    public struct Verdict: Sendable, Equatable {
        public var found: Bool
        public var barcode: String?
        public var symbology: Symbology?
        /// `zbar`, `zxing`, `ocr` or `match`.
        public var method: String?
        public var confidence: Double
        public var candidates: [Candidate]

        static let nothing = Verdict(found: false, barcode: nil, symbology: nil, method: nil, confidence: 0, candidates: [])
    }

    /// - Parameters:
    ///   - reads: every decoder read, one entry per (variant, decoder) that read something.
    ///   - lines: OCR lines of the printed text.
    ///   - known: the session's barcodes.
    public func judge(reads: [DecodedBarcode], lines: [OCRLine], known: [String]) -> Verdict {
        let knownSet = Set(known)
        if !reads.isEmpty { return judgeDecoded(reads, known: knownSet) }
        return judgeText(lines, known: known, knownSet: knownSet)
    }

    // MARK: decoders

    func judgeDecoded(_ reads: [DecodedBarcode], known: Set<String>) -> Verdict {
        // Group the reads by text (an EAN-13 with a leading zero is the same code as its UPC-A).
        var groups: [String: (symbology: Symbology, decoders: Set<String>, count: Int)] = [:]
        for read in reads {
            let text = Self.canonical(read, known: known)
            var group = groups[text] ?? (read.symbology, [], 0)
            group.decoders.insert(read.decoder)
            group.count += 1
            groups[text] = group
        }
        func confidence(_ text: String, _ group: (symbology: Symbology, decoders: Set<String>, count: Int)) -> Double {
            var value = group.decoders.count > 1 ? 0.99 : (group.count > 1 ? 0.95 : 0.9)
            // Formats without a check digit of their own (Code 39, Codabar) are easier to misread.
            if [.code39, .codabar].contains(group.symbology), group.decoders.count == 1 { value -= 0.1 }
            if known.contains(text) { value = max(value, 0.97) }
            return value
        }
        var ranked = groups.map { (text: $0.key, group: $0.value, confidence: confidence($0.key, $0.value)) }
        ranked.sort { ($0.group.decoders.count, $0.group.count, $0.text) > ($1.group.decoders.count, $1.group.count, $1.text) }
        let candidates = ranked.map { Candidate(barcode: $0.text, confidence: $0.confidence, known: known.contains($0.text)) }
        // Several different codes on one photo: one of the session's wins; otherwise it is unclear which is meant.
        let chosen: (text: String, group: (symbology: Symbology, decoders: Set<String>, count: Int), confidence: Double)
        if ranked.count == 1 {
            chosen = ranked[0]
        } else {
            let knownOnes = ranked.filter { known.contains($0.text) }
            guard knownOnes.count == 1 else {
                return Verdict(found: false, barcode: nil, symbology: nil, method: nil, confidence: 0, candidates: candidates.map { Self.halved($0) })
            }
            chosen = knownOnes[0]
        }
        let method = chosen.group.decoders.contains("zbar") ? "zbar" : "zxing"
        return Verdict(
            found: chosen.confidence >= threshold, barcode: chosen.text, symbology: chosen.group.symbology, method: method,
            confidence: chosen.confidence, candidates: candidates)
    }

    static func halved(_ candidate: Candidate) -> Candidate {
        Candidate(barcode: candidate.barcode, confidence: candidate.confidence / 2, known: candidate.known)
    }

    /// A UPC-A read as an EAN-13 (leading 0), or the other way, takes the form the session uses.
    static func canonical(_ read: DecodedBarcode, known: Set<String>) -> String {
        if read.symbology == .ean13, read.text.hasPrefix("0"), known.contains(String(read.text.dropFirst())) { return String(read.text.dropFirst()) }
        if read.symbology == .upca, known.contains("0" + read.text) { return "0" + read.text }
        return read.text
    }

    // MARK: OCR

    func judgeText(_ lines: [OCRLine], known: [String], knownSet: Set<String>) -> Verdict {
        var candidates: [String: Candidate] = [:]
        func offer(_ barcode: String, _ confidence: Double) {
            let value = min(0.99, confidence)
            if (candidates[barcode]?.confidence ?? -1) < value {
                candidates[barcode] = Candidate(barcode: barcode, confidence: value, known: knownSet.contains(barcode))
            }
        }
        var best: Verdict = .nothing
        var claims = Set<String>()
        func consider(_ verdict: Verdict) {
            if let barcode = verdict.barcode { claims.insert(barcode) }
            if verdict.confidence > best.confidence { best = verdict }
        }
        for line in lines {
            let text = Self.normalized(line.text)
            guard text.count >= 4 else { continue }
            // 1. One of the session's barcodes, exactly, in the text.
            for barcode in known where barcode.count >= 6 && text.contains(barcode) {
                // A code without a check digit one slip away from another of the session's could
                // be that other one misread: less sure.
                let twin = Symbology.selfChecking(barcode) == nil
                    && known.contains { $0 != barcode && Self.semiGlobal(pattern: Array($0.utf8), in: Array(barcode.utf8)) <= 1 && $0.count == barcode.count }
                let value = 0.75 + 0.24 * line.confidence - (twin ? 0.25 : 0)
                offer(barcode, value)
                consider(Verdict(found: true, barcode: barcode, symbology: Symbology.selfChecking(barcode), method: "ocr", confidence: value, candidates: []))
            }
            // 2. A complete code whose check digit holds (EAN/UPC/ITF-14/S10), known or not.
            for piece in Self.selfCheckingPieces(text) {
                let value = knownSet.contains(piece.text) ? 0.75 + 0.24 * line.confidence : 0.55 + 0.3 * line.confidence
                offer(piece.text, value)
                consider(Verdict(found: true, barcode: piece.text, symbology: piece.symbology, method: "ocr", confidence: value, candidates: []))
            }
            // 3. Near one of the session's barcodes: whole reads with a slip or two, or a long part.
            let scored = known.map { barcode in (barcode, Self.distance(of: text, to: barcode)) }.sorted { $0.1 < $1.1 }
            for (barcode, match) in scored.prefix(5) {
                let similarity = 1 - Double(match.errors) / Double(max(barcode.count, 1))
                offer(barcode, similarity * match.coverage * (0.4 + 0.4 * line.confidence))
            }
            if let (barcode, match) = scored.first {
                let runnerUp = scored.dropFirst().first?.1
                let allowed = max(1, barcode.count / 8)
                let clear = runnerUp.map { $0.errors >= match.errors + 2 || $0.coverage < match.coverage - 0.3 } ?? true
                if match.errors <= allowed, match.coverage >= 0.6, clear, barcode.count >= 6 {
                    let similarity = 1 - Double(match.errors) / Double(barcode.count)
                    let value = similarity * match.coverage * (0.55 + 0.4 * line.confidence)
                    if value >= threshold {
                        offer(barcode, value)
                        consider(Verdict(found: true, barcode: barcode, symbology: Symbology.selfChecking(barcode), method: "match", confidence: value, candidates: []))
                    }
                }
            }
        }
        // Two different codes claimed by the text: say neither.
        var ranked = candidates.values.filter { $0.confidence > 0.2 }.sorted { ($0.confidence, $0.barcode) > ($1.confidence, $1.barcode) }
        ranked = Array(ranked.prefix(5))
        guard best.found, best.confidence >= threshold, claims.count <= 1 else {
            return Verdict(found: false, barcode: nil, symbology: nil, method: nil, confidence: 0, candidates: ranked)
        }
        best.candidates = ranked
        return best
    }

    /// Upper case, letters and digits only; letters OCR confuses with digits turned into digits
    /// where a run of digits makes that the only sense (`O`→`0`, `I`/`L`→`1`, `S`→`5`, `B`→`8`, `Z`→`2`).
    static func normalized(_ text: String) -> String {
        let kept = Array(text.uppercased().unicodeScalars.filter { ($0.value >= 48 && $0.value <= 57) || ($0.value >= 65 && $0.value <= 90) })
        let isDigit: (Unicode.Scalar) -> Bool = { $0.value >= 48 && $0.value <= 57 }
        let lookalikes: [Unicode.Scalar: Unicode.Scalar] = ["O": "0", "D": "0", "I": "1", "L": "1", "S": "5", "B": "8", "Z": "2", "G": "6"]
        var out = kept
        for index in kept.indices {
            guard let digit = lookalikes[kept[index]] else { continue }
            let before = index > 0 && isDigit(kept[index - 1])
            let after = index + 1 < kept.count && isDigit(kept[index + 1])
            // Inside a run of digits (both sides) — the two letters of an S10 number stay letters.
            if before && after { out[index] = digit }
        }
        return String(String.UnicodeScalarView(out))
    }

    /// The self-checking codes in `text`: a whole run of digits whose check digit holds, or an
    /// S10 number (two letters, nine digits, two letters). Never a piece of a longer run of
    /// digits: a misread digit must not leave a shorter piece that passes by chance (one in ten).
    static func selfCheckingPieces(_ text: String) -> [(text: String, symbology: Symbology)] {
        let characters = Array(text.utf8)
        let isDigit: (UInt8) -> Bool = { $0 >= 48 && $0 <= 57 }
        var found: [(String, Symbology)] = []
        var start = 0
        while start < characters.count {
            guard isDigit(characters[start]) else { start += 1; continue }
            var end = start
            while end < characters.count, isDigit(characters[end]) { end += 1 }
            let run = String(decoding: characters[start..<end], as: UTF8.self)
            if let symbology = Symbology.selfChecking(run), symbology != .s10 { found.append((run, symbology)) }
            // An S10 number around this run: two letters before, two after, nine digits.
            if end - start == 9, start >= 2, end + 2 <= characters.count {
                let s10 = String(decoding: characters[(start - 2)..<(end + 2)], as: UTF8.self)
                if Symbology.s10Check(s10) { found.append((s10, .s10)) }
            }
            start = end
        }
        return found
    }

    struct Match: Comparable {
        /// Edit operations between the barcode (or its covered part) and the text.
        var errors: Int
        /// The share of the barcode the text covers (1 for a whole read).
        var coverage: Double

        static func < (a: Match, b: Match) -> Bool {
            (a.errors, -a.coverage) < (b.errors, -b.coverage)
        }
    }

    /// How far OCR `text` is from `barcode`: the better of the barcode aligned inside the text
    /// (extra characters around it cost nothing) and the text aligned inside the barcode (a
    /// partial read: what it did not cover lowers the coverage, not the errors).
    static func distance(of text: String, to barcode: String) -> Match {
        let t = Array(text.utf8), b = Array(barcode.utf8)
        let whole = semiGlobal(pattern: b, in: t)
        let whole_ = Match(errors: whole, coverage: 1)
        guard t.count < b.count else { return whole_ }
        let part = semiGlobal(pattern: t, in: b)
        let partial = Match(errors: part, coverage: Double(t.count) / Double(b.count))
        return partial.errors < whole_.errors ? partial : whole_
    }

    /// The fewest edits that turn `pattern` into some substring of `text`.
    static func semiGlobal(pattern: [UInt8], in text: [UInt8]) -> Int {
        guard !pattern.isEmpty else { return 0 }
        var previous = [Int](repeating: 0, count: text.count + 1)  // free start anywhere in text
        var current = previous
        for i in 1...pattern.count {
            current[0] = i
            for j in stride(from: 1, through: text.count, by: 1) {
                let substitution = previous[j - 1] + (pattern[i - 1] == text[j - 1] ? 0 : 1)
                current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
            }
            swap(&previous, &current)
        }
        return previous.min() ?? pattern.count
    }
}
