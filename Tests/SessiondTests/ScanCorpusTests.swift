import Foundation
@testable import Scanning
import Testing

/// The pipeline on the generated corpus: read rates per degradation, with and without the
/// session's barcodes to match against, and never a wrong barcode reported as found. Scans go
/// through the pipeline's own threads (`scan`, not `scanNow`): minutes of OCR on the test
/// process's cooperative threads would starve every other test running beside it.
@Suite struct ScanCorpusTests {
    static let pipeline = ScanPipeline(ocr: DigitsOCR.shared(), timeBudget: .seconds(30), useZXing: ProcessInfo.processInfo.environment["SCAN_ZXING"] != "0")

    struct Tally {
        var photos = 0
        var read = 0
        var wrong = 0
        var methods: [String: Int] = [:]
    }

    @Test func readRatesPerDegradationAndNoWrongReads() async throws {
        let corpus = try await ScanCorpus.shared()
        #expect(corpus.photos.count >= 140)
        var alone: [String: Tally] = [:], matched: [String: Tally] = [:]
        var legible = Tally()
        var wrongReads: [String] = []
        for photo in corpus.photos {
            let bytes = try corpus.bytes(photo.file)
            for known in [[], photo.known] {
                let report = try await Self.pipeline.scan(bytes, known: known)
                var tally = (known.isEmpty ? alone : matched)[photo.degradation] ?? Tally()
                tally.photos += 1
                if report.verdict.found {
                    if report.verdict.barcode == photo.barcode {
                        tally.read += 1
                        tally.methods[report.verdict.method ?? "?", default: 0] += 1
                    } else {
                        tally.wrong += 1
                        wrongReads.append("\(photo.file) (known: \(!known.isEmpty)): read \(report.verdict.barcode ?? "nil") by \(report.verdict.method ?? "?")")
                    }
                }
                if known.isEmpty { alone[photo.degradation] = tally } else { matched[photo.degradation] = tally }
                if !known.isEmpty, photo.legible {
                    legible.photos += 1
                    if report.verdict.found && report.verdict.barcode == photo.barcode { legible.read += 1 }
                }
            }
        }
        var lines = ["degradation      alone   matched  methods (matched)"]
        for degradation in alone.keys.sorted() {
            let a = alone[degradation]!, m = matched[degradation]!
            lines.append(
                degradation.padding(toLength: 16, withPad: " ", startingAt: 0) + " \(a.read)/\(a.photos)   \(m.read)/\(m.photos)    "
                    + m.methods.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        let totalAlone = alone.values.reduce(0) { $0 + $1.read }, totalMatched = matched.values.reduce(0) { $0 + $1.read }
        lines.append("total            \(totalAlone)/\(corpus.photos.count)   \(totalMatched)/\(corpus.photos.count); legible with matching \(legible.read)/\(legible.photos)")
        print(lines.joined(separator: "\n"))
        // A wrong barcode reported as found is worse than none: never, with or without matching.
        #expect(wrongReads.isEmpty, "wrong reads: \(wrongReads)")
        // Floors a little under what the pipeline reads today (see docs/BENCHMARKS.md), so a change
        // that reads fewer labels fails here.
        #expect(totalMatched > totalAlone, "matching against the session's barcodes reads more")
        #expect(totalMatched >= corpus.photos.count * 95 / 100)
        #expect(legible.read * 100 >= legible.photos * 97, "legible labels read with matching: \(legible.read)/\(legible.photos)")
        for (degradation, tally) in matched {
            let floor = degradation == "covered" ? 8 : (degradation == "glare" ? 9 : 11)
            #expect(tally.read * 12 >= floor * tally.photos, "\(degradation): \(tally.read)/\(tally.photos)")
        }
        #expect((matched["covered"]?.methods["ocr"] ?? 0) + (matched["covered"]?.methods["match"] ?? 0) >= 6, "covered bars are read from the printed line")
    }
}

/// `SCAN_DEBUG=file1,file2 swift test --filter ScanDebug` prints every step of those photos.
@Suite struct ScanDebug {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SCAN_DEBUG"] != nil)) func steps() async throws {
        let corpus = try await ScanCorpus.shared()
        let names = (ProcessInfo.processInfo.environment["SCAN_DEBUG"] ?? "").split(separator: ",").map(String.init)
        for photo in corpus.photos where names.contains(where: { photo.file.hasPrefix($0) }) {
            for known in [[], photo.known] {
                let report = try await ScanCorpusTests.pipeline.scan(try corpus.bytes(photo.file), known: known)
                print("\(photo.file) truth \(photo.barcode) known \(known.count): \(report.verdict)")
                for step in report.steps { print("   \(step.step) \(step.variant) \(step.elapsedMS) ms \(step.result)") }
            }
        }
    }
}

extension ScanDebug {
    /// `SCAN_DEBUG_STRIPS=file` writes the region crop and the OCR strips as PGM files to /tmp.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SCAN_DEBUG_STRIPS"] != nil)) func strips() async throws {
        let corpus = try await ScanCorpus.shared()
        let name = ProcessInfo.processInfo.environment["SCAN_DEBUG_STRIPS"] ?? ""
        let image = try ImageDecoder().decode(try corpus.bytes(name))
        let region = try #require(BarRegion.find(in: image))
        print("region \(region)")
        let (crop, bars) = try #require(ScanPipeline.uprightCrop(image, region))
        print("bars in crop \(bars), crop \(crop.width)x\(crop.height)")
        try Self.write(crop, "crop")
        for (variant, strip) in ScanPipeline.textStrips(crop, bars: bars) {
            if let strip { try Self.write(strip, variant) }
        }
    }

    /// `picture` as /tmp/NAME.pgm (any image viewer or Pillow opens it).
    static func write(_ picture: GrayImage, _ name: String) throws {
        var data = Data("P5\n\(picture.width) \(picture.height)\n255\n".utf8)
        data.append(contentsOf: picture.pixels)
        try data.write(to: URL(fileURLWithPath: "/tmp/\(name).pgm"))
    }
}

extension ScanDebug {
    /// `SCAN_TUNE=covered` tries OCR preparations on the printed lines of those photos and counts exact reads.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SCAN_TUNE"] != nil)) func tuneOCR() async throws {
        let corpus = try await ScanCorpus.shared()
        let prefix = ProcessInfo.processInfo.environment["SCAN_TUNE"] ?? ""
        let ocr = DigitsOCR.shared()
        var exact: [String: Int] = [:]
        var total = 0
        for photo in corpus.photos where photo.file.hasPrefix(prefix) && photo.legible {
            let image = try ImageDecoder().decode(try corpus.bytes(photo.file)).fitting(longSide: 1600)
            guard let region = BarRegion.find(in: image), let (crop, bars) = ScanPipeline.uprightCrop(image, region),
                let rect = ScanPipeline.lineBelow(crop, bars: bars), let line = ScanPipeline.lineImage(crop, rect)
            else { print("\(photo.file): no line"); continue }
            total += 1
            for height in [20, 26, 32, 40] {
                for (name, prepared) in [("gray", line), ("binarized", line.binarized())] {
                    for (layoutName, layout) in [("line", DigitsOCR.Layout.line), ("raw", .rawLine)] {
                        for smooth in [false, true] {
                            var ready = ScanPipeline.forOCR(prepared, targetHeight: height)
                            if smooth { ready = ready.smoothed() }
                            let read = ocr.readLine(ready, layout: layout)
                            let text = ScanJudge.normalized(read?.text ?? "")
                            let key = "\(name)-\(height)-\(layoutName)\(smooth ? "-smooth" : "")"
                            if text.contains(photo.barcode) { exact[key, default: 0] += 1 }
                            // The pipeline's own preparation, kept to look at.
                            if key == "gray-32-line-smooth" {
                                try Self.write(ready, "line-\(photo.file)")
                                print("\(photo.file): \(photo.barcode) read \(text) (confidence \(read?.confidence ?? 0))")
                            }
                        }
                    }
                }
            }
        }
        print("lines \(total): " + exact.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }
}
