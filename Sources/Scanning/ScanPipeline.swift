import Foundation
import Kernel
import NIOPosix
import Synchronization

/// One step of a scan as the attempt records it: what ran on which version of the image, how
/// long it took and what it read.
public struct ScanStep: Sendable, Equatable, Codable {
    /// `decode`, `zbar`, `zxing`, `ocr`.
    public var step: String
    /// The image it ran on: `original`, `contrast`, `crop`, `crop-binarized`, `upscaled`, `text-below`, …
    public var variant: String
    public var elapsedMS: Double
    /// What it read (barcode texts, or the OCR line), empty when nothing.
    public var result: [String]

    enum CodingKeys: String, CodingKey { case step, variant, elapsedMS = "elapsed_ms", result }
}

/// What one photo gave: the verdict and how it was reached.
public struct ScanReport: Sendable {
    public var verdict: ScanJudge.Verdict
    public var steps: [ScanStep]
    public var width: Int
    public var height: Int
    public var elapsedMS: Double
    /// True when the time budget ran out before every step had run.
    public var timedOut: Bool
}

/// The scanning pipeline: decode the photo, try the decoders on the image and on prepared
/// versions of it (contrast, a crop around the bars, binarised, enlarged), then OCR the printed
/// line, then judge everything against the session's barcodes. It stops at the first step that
/// settles the answer, and within `timeBudget` (checked between steps; one step is bounded by the
/// working size of the image). Runs on its own threads, never on the server's.
public final class ScanPipeline: Sendable {
    public let decoder: ImageDecoder
    public let ocr: DigitsOCR
    public let judge: ScanJudge
    public let timeBudget: Duration
    /// Scans waiting or running at most; more are refused (`ScanError.busy`) rather than queued without end.
    public let maxPending: Int
    /// Whether zxing-cpp runs beside ZBar.
    public let useZXing: Bool
    private let pending = Atomic<Int>(0)
    /// The longer side the decoders work at.
    static let workingSide = 1600

    /// CPU-bound work has threads of its own (one per core), shared by every pipeline in the process.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(1, ProcessInfo.processInfo.activeProcessorCount))
        pool.start()
        return pool
    }()

    public init(decoder: ImageDecoder = ImageDecoder(), ocr: DigitsOCR, judge: ScanJudge = ScanJudge(), timeBudget: Duration = .seconds(4), maxPending: Int = 64, useZXing: Bool = true) {
        self.useZXing = useZXing
        self.decoder = decoder
        self.ocr = ocr
        self.judge = judge
        self.timeBudget = timeBudget
        self.maxPending = maxPending
    }

    /// Scans `bytes` (a JPEG or PNG) for one of `known` barcodes or any other.
    public func scan(_ bytes: [UInt8], known: [String]) async throws -> ScanReport {
        guard pending.add(1, ordering: .relaxed).newValue <= maxPending else {
            pending.subtract(1, ordering: .relaxed)
            throw ScanError.busy
        }
        // Decoding is the one step the budget cannot stop between steps: a photo still being
        // decoded when the budget is up (counted from when a thread takes it; a progressive JPEG
        // of very many scans, say) is answered as too slow, and its thread finishes on its own,
        // counted as pending until it does. Once decoded, the steps keep to the budget themselves.
        let limit = timeBudget
        let first = FirstOutcome<ScanReport>()
        let decoded = DecodeMark()
        let report = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ScanReport?, any Error>) in
            first.set(continuation)
            Task { [self] in
                do {
                    try await Self.threads.runIfActive { [self] in
                        defer { pending.subtract(1, ordering: .relaxed) }
                        let timer = Task {
                            try await Task.sleep(for: limit)
                            if !decoded.isSet { first.resume(.success(nil)) }
                        }
                        defer { timer.cancel() }
                        do throws(ScanError) {
                            first.resume(.success(try self.scanNow(bytes, known: known, afterDecoding: decoded.set)))
                        } catch {
                            first.resume(.failure(error))
                        }
                    }
                } catch {
                    pending.subtract(1, ordering: .relaxed)  // never ran: the pool is shutting down
                    first.resume(.failure(error))
                }
            }
        }
        guard let report else { throw ScanError.tooSlow(budget: timeBudget) }
        return report
    }

    /// The whole pipeline on the calling thread (`afterDecoding` is called once the photo is decoded).
    public func scanNow(_ bytes: [UInt8], known: [String], afterDecoding: () -> Void = {}) throws(ScanError) -> ScanReport {
        let clock = ContinuousClock()
        let started = clock.now
        let image = try decoder.decode(bytes)
        afterDecoding()
        let decoded = ScanStep(step: "decode", variant: "original", elapsedMS: Self.milliseconds(clock.now - started), result: ["\(image.width)x\(image.height)"])
        return scan(image, known: known, started: started, steps: [decoded])
    }

    /// The pipeline on a decoded image (`started`: when the time budget began).
    func scan(_ image: GrayImage, known: [String], started: ContinuousClock.Instant = .now, steps: [ScanStep] = []) -> ScanReport {
        let clock = ContinuousClock()
        let deadline = started + timeBudget
        var steps = steps
        func timed<T>(_ step: String, _ variant: String, _ body: () -> T, describe: (T) -> [String]) -> T {
            let start = clock.now
            let value = body()
            steps.append(ScanStep(step: step, variant: variant, elapsedMS: Self.milliseconds(clock.now - start), result: describe(value)))
            return value
        }
        var reads: [DecodedBarcode] = []
        var lines: [OCRLine] = []
        var timedOut = false
        func inTime() -> Bool {
            if clock.now < deadline { return true }
            timedOut = true
            return false
        }
        /// Both decoders on `variant`; true when either read something.
        func decode(_ variant: String, _ picture: GrayImage, tryHarder: Bool) -> Bool {
            let zbar = timed("zbar", variant, { ZBarReader.read(picture) }, describe: { $0.map(\.text) })
            let zxing = useZXing ? timed("zxing", variant, { ZXingReader.read(picture, tryHarder: tryHarder) }, describe: { $0.map(\.text) }) : []
            reads += zbar + zxing
            return !(zbar.isEmpty && zxing.isEmpty)
        }
        func report() -> ScanReport {
            let verdict = judge.judge(reads: reads, lines: lines, known: known)
            return ScanReport(
                verdict: verdict, steps: steps, width: image.width, height: image.height, elapsedMS: Self.milliseconds(clock.now - started),
                timedOut: timedOut && !verdict.found)
        }

        let base = image.fitting(longSide: Self.workingSide)
        if decode("original", base, tryHarder: false) { return report() }
        if inTime(), decode("contrast", base.contrastStretched(), tryHarder: true) { return report() }
        let region = BarRegion.find(in: base)
        // Around the bars, made upright and at least 900 pixels wide.
        var upright: (image: GrayImage, bars: PixelRect)?
        if let region { upright = Self.uprightCrop(base, region) }
        if let crop = upright?.image, inTime() {
            if decode("crop", crop, tryHarder: true) { return report() }
            if inTime(), decode("crop-binarized", crop.adaptivelyBinarized(radius: max(8, crop.height / 10)), tryHarder: true) { return report() }
        }
        if max(base.width, base.height) < 900, inTime(), decode("upscaled", base.scaled(by: 2), tryHarder: true) { return report() }

        // The printed line: below the bars, or above them when the label is upside down.
        guard ocr.available else { return report() }
        func read(_ variant: String, _ strip: GrayImage?, layout: DigitsOCR.Layout = .line) -> Bool {
            guard let strip, inTime() else { return false }
            let line = timed("ocr", variant, { ocr.readLine(strip, layout: layout) }, describe: { $0.map { [$0.text] } ?? [] })
            guard let line else { return false }
            lines += line.text.split(whereSeparator: \.isNewline).map { OCRLine(text: String($0), confidence: line.confidence) }
            return judge.judge(reads: [], lines: lines, known: known).found
        }
        if let (crop, bars) = upright {
            for (variant, strip) in Self.textStrips(crop, bars: bars) where read(variant, strip) { return report() }
        } else {
            _ = read("whole-sparse", Self.forOCR(base.fitting(longSide: 1400).contrastStretched(), targetHeight: nil), layout: .sparse)
        }
        return report()
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return (Double(seconds) * 1000 + Double(attoseconds) / 1e15).rounded(toPlaces: 2)
    }

    /// The region and its surroundings (room for the printed line) cut out, turned so the bars
    /// stand upright, enlarged to at least 900 pixels across; with the bars' box inside it.
    static func uprightCrop(_ image: GrayImage, _ region: BarRegion) -> (image: GrayImage, bars: PixelRect)? {
        let rect = region.rect
        let area = region.upright
            ? rect.inset(dx: rect.width / 8, dy: rect.height * 3 / 4)
            : rect.inset(dx: rect.width * 3 / 4, dy: rect.height / 8)
        let origin = (x: max(0, area.x), y: max(0, area.y))
        guard var crop = image.cropped(area) else { return nil }
        var bars = PixelRect(x: rect.x - origin.x, y: rect.y - origin.y, width: rect.width, height: rect.height)
        if !region.upright {
            // A quarter turn clockwise takes (x, y) to (H − 1 − y, x).
            bars = PixelRect(x: crop.height - bars.y - bars.height, y: bars.x, width: bars.height, height: bars.width)
            crop = crop.rotatedQuarter()
        }
        if crop.width < 900 {
            let factor = min(3, 900 / Double(crop.width))
            crop = crop.scaled(by: factor)
            bars = PixelRect(
                x: Int(Double(bars.x) * factor), y: Int(Double(bars.y) * factor), width: Int(Double(bars.width) * factor),
                height: Int(Double(bars.height) * factor))
        }
        return (crop, bars)
    }

    /// Where the human-readable line may be, prepared for Tesseract (enlarged to 32-pixel
    /// characters and softened: the best of the preparations tried on the corpus): the line found
    /// under the bars, as it is and binarised, then the line above them (the label upside down);
    /// a loose strip under the bars when no line was found.
    static func textStrips(_ crop: GrayImage, bars: PixelRect) -> [(String, GrayImage?)] {
        let turned = crop.oriented(3)
        let turnedBars = PixelRect(x: crop.width - bars.x - bars.width, y: crop.height - bars.y - bars.height, width: bars.width, height: bars.height)
        func loose(_ image: GrayImage, _ bars: PixelRect) -> GrayImage? {
            image.cropped(PixelRect(x: bars.x - bars.width / 8, y: bars.y + bars.height - bars.height / 12, width: bars.width * 5 / 4, height: bars.height * 3 / 10))
        }
        let line = lineBelow(crop, bars: bars).flatMap { lineImage(crop, $0) }
        let above: (String, GrayImage?) = (
            "text-above", lineBelow(turned, bars: turnedBars).flatMap { lineImage(turned, $0) }.map { forOCR($0, targetHeight: 32).smoothed() }
        )
        guard let line else {
            // No line found under the bars: above them, then a loose strip where it should be.
            return [above, ("text-below-loose", loose(crop, bars).map { forOCR($0.contrastStretched(), targetHeight: 60) })]
        }
        return [
            ("text-below", forOCR(line, targetHeight: 32).smoothed()),
            ("text-below-binarized", forOCR(line.binarized(), targetHeight: 32).smoothed()),
            above,
            ("text-below-large", forOCR(line, targetHeight: 40).smoothed()),
            ("text-below-small", forOCR(line, targetHeight: 24).smoothed()),
        ]
    }

    /// The rows of the printed line, contrast stretched, with what runs into it from above
    /// whitened: guard bars (EAN, UPC) that reach down beside the digits, the label's edge, the
    /// table beside it. Characters start below the gap under the bars; those do not.
    static func lineImage(_ image: GrayImage, _ rect: PixelRect) -> GrayImage? {
        guard var line = image.cropped(rect) else { return nil }
        let threshold = image.otsuThreshold()
        let (x0, y0) = (max(0, rect.x), max(0, rect.y))
        let above = y0 - 2
        guard above >= 0 else { return line.contrastStretched() }
        for x in 0..<line.width where image[x0 + x, above] <= threshold {
            for y in 0..<line.height {
                guard line.pixels[y * line.width + x] <= threshold else { break }
                line.pixels[y * line.width + x] = 255
            }
        }
        return line.contrastStretched()
    }

    /// The printed line under the bars: going down from inside the bars, the rows that repeat the
    /// bars' pattern, then blank rows, then the rows with ink until blank again.
    static func lineBelow(_ image: GrayImage, bars: PixelRect) -> PixelRect? {
        let x0 = max(0, bars.x), x1 = min(image.width, bars.x + bars.width)
        guard x1 - x0 >= 16 else { return nil }
        let threshold = Int(image.otsuThreshold())
        func dark(_ y: Int) -> [Bool] { (x0..<x1).map { Int(image.pixels[y * image.width + $0]) <= threshold } }
        // The reference row: the one with the most changes between dark and light in the
        // middle of the box (the box is cells wide, so it can reach past the bars' ends).
        func changes(_ row: [Bool]) -> Int { zip(row, row.dropFirst()).filter { $0 != $1 }.count }
        let candidates = stride(from: max(0, bars.y + bars.height / 5), to: min(image.height, bars.y + bars.height * 3 / 5), by: 2)
        guard let referenceY = candidates.max(by: { changes(dark($0)) < changes(dark($1)) }) else { return nil }
        let reference = dark(referenceY)
        // Ink is counted between the bars only: guard bars that run down beside the digits
        // (EAN, UPC) are not the printed line.
        let between = reference.indices.filter { !reference[$0] }
        guard between.count >= 8 else { return nil }
        func inked(_ row: [Bool]) -> Double { Double(between.filter { row[$0] }.count) / Double(between.count) }
        var y = referenceY
        while y + 1 < image.height {
            let row = dark(y + 1)
            let same = zip(row, reference).filter { $0 == $1 }.count
            if Double(same) / Double(row.count) < 0.8 { break }
            y += 1
        }
        // Below the bars: runs of rows with ink, split by blank rows; the line is the first run
        // tall enough for characters and not solid (a bearer bar, the label's edge).
        let limit = min(image.height, y + bars.height * 3 / 4)
        let barsEnd = y
        var runs: [(top: Int, bottom: Int, ink: Double)] = []
        while y < limit {
            let ink = inked(dark(y))
            if ink >= 0.005 {
                if let last = runs.last, last.bottom == y {
                    runs[runs.count - 1] = (last.top, y + 1, last.ink + ink)
                } else {
                    runs.append((y, y + 1, ink))
                }
            }
            y += 1
        }
        let lines = runs.filter { $0.bottom - $0.top >= 6 && $0.bottom - $0.top <= bars.height / 2 && $0.ink / Double($0.bottom - $0.top) <= 0.6 }
        // A run that touches the bars may be their end (ITF's bearer bar, blurred bar ends): the
        // first run after a gap is the line, when it is near; otherwise the touching one is (UPC-A
        // prints its digits right under the bars, and the next run down is the address).
        let near = barsEnd + bars.height * 35 / 100
        guard let run = lines.first(where: { $0.top > barsEnd + 1 && $0.top <= near }) ?? lines.first(where: { $0.top <= barsEnd + 1 }) ?? lines.first
        else { return nil }
        let (top, height) = (run.top, run.bottom - run.top)
        // Exactly the line's rows (one more each side): the bars' ends above it stay out; the
        // margins Tesseract wants are added in white by `forOCR`.
        return PixelRect(x: bars.x - bars.width * 3 / 20, y: top - 1, width: bars.width * 13 / 10, height: height + 2)
    }

    /// Scaled to `targetHeight` (characters of about 26 pixels suit Tesseract best on these
    /// labels, measured on the corpus) and framed in white.
    static func forOCR(_ image: GrayImage, targetHeight: Int?) -> GrayImage {
        var prepared = image
        if let targetHeight {
            prepared = prepared.scaled(by: min(4, Double(targetHeight) / Double(prepared.height)))
        }
        let margin = max(10, prepared.height / 2)
        var framed = GrayImage(width: prepared.width + 2 * margin, height: prepared.height + 2 * margin)
        for y in 0..<prepared.height {
            let row = (y + margin) * framed.width + margin
            framed.pixels.replaceSubrange(row..<(row + prepared.width), with: prepared.pixels[(y * prepared.width)..<((y + 1) * prepared.width)])
        }
        return framed
    }
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let factor = pow(10, Double(places))
        return (self * factor).rounded() / factor
    }
}

/// Set once a photo is decoded: the time limit on waiting for a scan applies to decoding only.
final class DecodeMark: Sendable {
    private let done = Atomic<Bool>(false)
    var isSet: Bool { done.load(ordering: .acquiring) }
    func set() { done.store(true, ordering: .releasing) }
}
