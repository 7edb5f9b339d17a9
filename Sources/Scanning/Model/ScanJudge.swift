/// What the pipeline saw, judged: which barcode (if any) the photo shows and how sure that is.
/// Pure: the decoders' reads, the OCR lines and the session's barcodes in, a verdict out.
///
/// A wrong barcode is worse than none, so the verdict is `found` only on evidence: a decoder's
/// read (its format's own checks passed), OCR text that is exactly one of the session's barcodes,
/// or carries a valid check digit and was read twice alike, or comes within a small edit distance
/// of one of the session's barcodes while every other is clearly farther (or, on a tie, fails its
/// own check digit where that one passes). Anything less is `found: false` with candidates, best
/// first.
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
        // ZBar reads an Interleaved 2 of 5 code crossed by a slanted scan line as a shorter code
        // (the format has no length of its own): a read inside a longer read of the same format is that.
        let reads = reads.filter { read in
            !reads.contains { $0.symbology == read.symbology && $0.text.count > read.text.count && $0.text.contains(read.text) }
        }
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
        var nearness: [String: Nearness] = [:]
        var readings: [String: Int] = [:]
        func consider(_ verdict: Verdict) {
            if let barcode = verdict.barcode { claims.insert(barcode) }
            if verdict.confidence > best.confidence { best = verdict }
        }
        // How sure a line is: Tesseract's own confidence where it gives one (with a character
        // whitelist, Tesseract 5.3 reports 0 for every word), and agreement: each other reading
        // of the photo (another preparation of the line) that gives the same text adds to it.
        let texts = lines.map { Self.normalized($0.text) }
        var agreeing: [String: Int] = [:]
        for text in texts where text.count >= 4 { agreeing[text, default: 0] += 1 }
        for (line, text) in zip(lines, texts) {
            let sureness = min(1, max(line.confidence, 0.6 + 0.2 * Double((agreeing[text] ?? 1) - 1)))
            guard text.count >= 4 else { continue }
            // 1. One of the session's barcodes, exactly, in the text.
            for barcode in known where barcode.count >= 6 && text.contains(barcode) {
                // A code without a check digit one slip away from another of the session's could
                // be that other one misread: it takes two agreeing readings.
                let twin = Symbology.selfChecking(barcode) == nil
                    && known.contains { $0 != barcode && Self.semiGlobal(pattern: Array($0.utf8), in: Array(barcode.utf8)) <= 2 && $0.count == barcode.count }
                let value = twin ? 0.4 + 0.3 * sureness : 0.75 + 0.24 * sureness
                offer(barcode, value)
                consider(Verdict(found: true, barcode: barcode, symbology: Symbology.selfChecking(barcode), method: "ocr", confidence: value, candidates: []))
            }
            // 2. A complete code whose check digit holds (EAN-13, UPC-A, ITF-14, S10). One of the
            // session's: sure. Another: a check digit catches every single slip but lets one in
            // ten double slips through, so it takes two readings of the line that agree.
            for piece in Self.selfCheckingPieces(text) {
                let value: Double
                if knownSet.contains(piece.text) {
                    value = 0.75 + 0.24 * sureness
                } else {
                    readings[piece.text, default: 0] += 1
                    value = readings[piece.text]! >= 2 ? 0.6 + 0.3 * sureness : 0.4 + 0.15 * sureness
                }
                offer(piece.text, value)
                if value >= threshold {
                    consider(Verdict(found: true, barcode: piece.text, symbology: piece.symbology, method: "ocr", confidence: value, candidates: []))
                }
            }
            // 3. Near one of the session's barcodes (scored below, over every line).
            for barcode in known {
                let match = Self.distance(of: text, to: barcode)
                var entry = nearness[barcode] ?? Nearness()
                if match < entry.best { (entry.best, entry.confidence) = (match, sureness) }
                entry.total += min(match.errors, Self.errorCap)
                nearness[barcode] = entry
            }
        }
        // The nearest of the session's barcodes wins if its best line is within a slip or two, it
        // covers most of the code, and every other barcode is clearly farther: a full edit on the
        // best lines and one and a half over all the lines together.
        let near = nearness.sorted { ($0.value.best, $0.value.total, $0.key) < ($1.value.best, $1.value.total, $1.key) }
        for (barcode, entry) in near.prefix(5) {
            let similarity = max(0, 1 - Double(entry.best.errors) / Double(2 * max(barcode.count, 1)))
            offer(barcode, similarity * entry.best.coverage * (0.4 + 0.4 * entry.confidence))
        }
        func clearlyFarther(_ other: Nearness, than entry: Nearness) -> Bool {
            other.best.errors >= entry.best.errors + 2 && other.total >= entry.total + 3
        }
        if let first = near.first, lines.count > 0 {
            // The session's barcodes the lines cannot tell apart from the nearest. When exactly one
            // of them passes its own check digit (EAN-13, UPC-A, ITF-14, S10) and the others, of the
            // same length, fail theirs, that one is the label: a printed code of those formats
            // always carries a valid check digit. (OCR often drops UPC-A's small outer digits,
            // which are exactly where look-alikes differ.)
            let ties = near.filter { !clearlyFarther($0.value, than: first.value) }
            let valid = ties.filter { Symbology.selfChecking($0.key) != nil }
            let byCheckDigit = ties.count > 1 && valid.count == 1 && ties.allSatisfy { $0.key.count == valid[0].key.count }
            let (barcode, entry) = byCheckDigit ? valid[0] : first
            let allowed = 2 * max(1, barcode.count / 8)
            let runnerUp = near.first { $0.key != barcode }?.value
            let margin = runnerUp.map { min($0.best.errors - entry.best.errors, $0.total - entry.total) } ?? Self.errorCap
            let clear = byCheckDigit || ties.count == 1
            if barcode.count >= 6, entry.best.errors <= allowed, entry.best.coverage >= 0.6, clear {
                let similarity = 1 - Double(entry.best.errors) / Double(2 * barcode.count)
                // A partial read counts for less, not for nothing: what it covers, it matched.
                let value = similarity * (0.5 + 0.5 * entry.best.coverage) * (0.55 + 0.4 * entry.confidence) * (margin >= 4 ? 1 : 0.85)
                    * (byCheckDigit ? 0.9 : 1)
                if value >= threshold {
                    offer(barcode, value)
                    consider(Verdict(found: true, barcode: barcode, symbology: Symbology.selfChecking(barcode), method: "match", confidence: value, candidates: []))
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
            // Eight digits (EAN-8) are too short to trust from OCR: a run of them is a piece of anything.
            if let symbology = Symbology.selfChecking(run), symbology != .s10, symbology != .ean8 { found.append((run, symbology)) }
            // An S10 number around this run: two letters before, two after, nine digits.
            if end - start == 9, start >= 2, end + 2 <= characters.count {
                let s10 = String(decoding: characters[(start - 2)..<(end + 2)], as: UTF8.self)
                if Symbology.s10Check(s10) { found.append((s10, .s10)) }
            }
            start = end
        }
        return found
    }

    /// How near one of the session's barcodes the OCR lines came.
    struct Nearness {
        var best = Match(errors: Int.max / 4, coverage: 0)
        /// The best line's OCR confidence.
        var confidence = 0.0
        /// Errors summed over every line (each capped at `errorCap`).
        var total = 0
    }

    /// A line's errors count at most this much in the total (four edits), so one garbage line
    /// does not outweigh the others.
    static let errorCap = 8

    struct Match: Comparable {
        /// Edit cost between the barcode (or its covered part) and the text, in half edits: a
        /// character OCR commonly mistakes for another (`S`/`5`, `O`/`0`, `B`/`8`…) costs 1,
        /// any other edit 2.
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
        let whole = Match(errors: semiGlobal(pattern: b, in: t), coverage: 1)
        guard t.count < b.count else { return whole }
        let partial = Match(errors: semiGlobal(pattern: t, in: b), coverage: Double(t.count) / Double(b.count))
        return partial.errors < whole.errors ? partial : whole
    }

    /// Characters OCR mistakes for one another on printed labels.
    static let confusable: Set<UInt16> = {
        let groups = ["0ODQ", "1IL", "5S", "8B", "2Z", "6G", "9Q"]
        var pairs = Set<UInt16>()
        for group in groups {
            let bytes = Array(group.utf8)
            for a in bytes { for b in bytes where a != b { pairs.insert(UInt16(a) << 8 | UInt16(b)) } }
        }
        return pairs
    }()

    static func substitution(_ a: UInt8, _ b: UInt8) -> Int {
        a == b ? 0 : (confusable.contains(UInt16(a) << 8 | UInt16(b)) ? 1 : 2)
    }

    /// The least cost (half edits) that turns `pattern` into some substring of `text`.
    static func semiGlobal(pattern: [UInt8], in text: [UInt8]) -> Int {
        guard !pattern.isEmpty else { return 0 }
        var previous = [Int](repeating: 0, count: text.count + 1)  // free start anywhere in text
        var current = previous
        for i in 1...pattern.count {
            current[0] = 2 * i
            for j in stride(from: 1, through: text.count, by: 1) {
                let replace = previous[j - 1] + substitution(pattern[i - 1], text[j - 1])
                current[j] = min(replace, previous[j] + 2, current[j - 1] + 2)
            }
            swap(&previous, &current)
        }
        return previous.min() ?? 2 * pattern.count
    }
}
