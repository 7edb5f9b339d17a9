import Foundation
import Testing

@testable import Scanning

/// The judge's rules on reads and OCR lines (pure), check digits, and image decoding guards.
@Suite struct ScanRulesTests {
    let judge = ScanJudge()

    func line(_ text: String) -> OCRLine { OCRLine(text: text, confidence: 0) }

    @Test func checkDigits() {
        #expect(Symbology.gtinCheck("7891234567895"))
        #expect(!Symbology.gtinCheck("7891234567894"))
        #expect(Symbology.selfChecking("036000291452") == .upca)
        #expect(Symbology.s10Check("RA123456785BR"))
        #expect(!Symbology.s10Check("RA123456784BR"))
        #expect(Symbology.selfChecking("RA123456785BR") == .s10)
        #expect(Symbology.selfChecking("PKG1234") == nil)
    }

    @Test func decoderReadsAndDisagreement() {
        let both = judge.judge(reads: [.init(text: "ABC123", symbology: .code128, decoder: "zbar"), .init(text: "ABC123", symbology: .code128, decoder: "zxing")], lines: [], known: [])
        #expect(both.found && both.barcode == "ABC123" && both.method == "zbar" && both.confidence >= 0.99)
        // Two decoders, two different codes, neither the session's: unclear, both as candidates.
        let split = judge.judge(reads: [.init(text: "ABC123", symbology: .code128, decoder: "zbar"), .init(text: "XYZ999", symbology: .code128, decoder: "zxing")], lines: [], known: [])
        #expect(!split.found && split.barcode == nil && split.candidates.count == 2)
        // …but one of them is the session's: that one.
        let known = judge.judge(reads: [.init(text: "ABC123", symbology: .code128, decoder: "zbar"), .init(text: "XYZ999", symbology: .code128, decoder: "zxing")], lines: [], known: ["XYZ999"])
        #expect(known.found && known.barcode == "XYZ999")
        // ZBar's short reads of an ITF crossed at a slant are pieces of the long one.
        let itf = judge.judge(reads: [.init(text: "178961", symbology: .itf, decoder: "zbar"), .init(text: "17896112565175", symbology: .itf, decoder: "zbar")], lines: [], known: [])
        #expect(itf.found && itf.barcode == "17896112565175")
        // A UPC-A read as an EAN-13 with a leading zero takes the session's form.
        let upc = judge.judge(reads: [.init(text: "0036000291452", symbology: .ean13, decoder: "zbar")], lines: [], known: ["036000291452"])
        #expect(upc.barcode == "036000291452")
    }

    @Test func ocrAgainstTheSessionsBarcodes() {
        let known = ["QB975545916BR", "QB975545920BR", "QB975545933BR"]
        // Exactly one of them in the text.
        let exact = judge.judge(reads: [], lines: [line("Y QB975545916BR 1")], known: known)
        #expect(exact.found && exact.barcode == "QB975545916BR" && exact.method == "ocr")
        // One slip (S for 9 is not a look-alike), every other barcode two or more away: a match.
        let slip = judge.judge(reads: [], lines: [line("QB975545916BR".replacingOccurrences(of: "QB9", with: "QBS"))], known: known)
        #expect(slip.found && slip.barcode == "QB975545916BR" && slip.method == "match")
        // A slip right where two of the session's barcodes differ: it could be either: not found,
        // both candidates, best first.
        let twins = ["PKG000123", "PKG000124"]
        let unsure = judge.judge(reads: [], lines: [line("PKG00012X")], known: twins)
        #expect(!unsure.found && unsure.barcode == nil)
        #expect(Set(unsure.candidates.prefix(2).map(\.barcode)) == Set(twins))
        // A code without a check digit one slip from another of the session's needs two agreeing readings.
        #expect(!judge.judge(reads: [], lines: [line("PKG000123")], known: twins).found)
        #expect(judge.judge(reads: [], lines: [line("PKG000123"), line("PKG000123")], known: twins).barcode == "PKG000123")
        // A partial read (the bars' left end torn off) that fits one barcode only.
        let partial = judge.judge(reads: [], lines: [line("545916BR")], known: ["QB975545916BR", "JB123456785BR"])
        #expect(partial.found && partial.barcode == "QB975545916BR")
        // OCR dropped a UPC-A's small outer digits: three of the session's barcodes fit the ten
        // it read, but only one passes its check digit: that one (a printed UPC-A always does).
        let upc = judge.judge(reads: [], lines: [line("2607741721"), line("2607741721")], known: ["026077417213", "726077417213", "026077417216"])
        #expect(upc.found && upc.barcode == "026077417213" && upc.method == "match")
        // Two that pass it: no telling which.
        #expect(!judge.judge(reads: [], lines: [line("2607741721"), line("2607741721")], known: ["026077417213", "126077417210"]).found)
        // Garbage claims nothing.
        #expect(!judge.judge(reads: [], lines: [line("HTT"), line("VIMEUIOETAB")], known: known).found)
    }

    @Test func ocrWithoutTheSessionNeedsACheckDigitAndTwoReadings() {
        // An EAN-13 whose check digit holds, read once: a candidate only; read twice: found.
        #expect(!judge.judge(reads: [], lines: [line("7891234567895")], known: []).found)
        let twice = judge.judge(reads: [], lines: [line("7 891234 567895"), line("7891234567895")], known: [])
        #expect(twice.found && twice.barcode == "7891234567895" && twice.symbology == .ean13)
        // A misread digit breaks the check: never found.
        #expect(!judge.judge(reads: [], lines: [line("7891234567894"), line("7891234567894")], known: []).found)
        // Eight digits out of a longer run are not an EAN-8.
        #expect(!judge.judge(reads: [], lines: [line("80538578"), line("80538578")], known: []).found)
    }

    @Test func decodingGuards() throws {
        let decoder = ImageDecoder(maxPixels: 1_000_000)
        #expect(throws: ScanError.emptyImage) { try decoder.decode([]) }
        #expect(throws: ScanError.self) { try decoder.decode(Array("GIF89a.....".utf8)) }
        // A PNG header claiming 40000 × 40000 is refused before any pixel is decoded.
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]
        png += [0, 0, 0x9C, 0x40, 0, 0, 0x9C, 0x40, 8, 0, 0, 0, 0]
        png += [0, 0, 0, 0]
        #expect(throws: ScanError.self) { try decoder.decode(png) }
        // EXIF orientation 6: the stored image is turned a quarter clockwise to stand.
        let image = GrayImage(width: 3, height: 2, pixels: [1, 2, 3, 4, 5, 6])
        let turned = image.oriented(6)
        #expect(turned.width == 2 && turned.height == 3 && turned.pixels == [4, 1, 5, 2, 6, 3])
    }
}

/// Whatever comes in, a scan answers or refuses; it never crashes the process (the C libraries
/// included: ZBar, zxing-cpp 1.4 built with assertions, Tesseract, libjpeg-turbo, libpng).
@Suite struct ScanRobustnessTests {
    static let pipeline = ScanPipeline(ocr: DigitsOCR.shared(), timeBudget: .seconds(10))

    /// The pipeline on a decoded image, on the pipeline's threads (never the tests' cooperative ones).
    static func scan(_ pipeline: ScanPipeline, _ image: GrayImage, known: [String]) async throws -> ScanReport {
        try await ScanPipeline.threads.runIfActive { pipeline.scan(image, known: known) }
    }

    @Test func oddImagesNeverCrash() async throws {
        var rng = SystemRandomNumberGenerator()
        var shapes: [(Int, Int)] = [(1, 1), (2, 2), (3, 1), (1, 3), (7, 7), (8, 8), (9, 9), (16, 1), (1, 16), (4000, 1), (1, 3000), (24, 900), (900, 24)]
        for _ in 0..<6 { shapes.append((Int.random(in: 10...700, using: &rng), Int.random(in: 10...700, using: &rng))) }
        for (width, height) in shapes {
            for kind in 0..<4 {
                var pixels = [UInt8](repeating: 255, count: width * height)
                switch kind {
                case 0: for index in pixels.indices { pixels[index] = UInt8.random(in: 0...255, using: &rng) }  // noise
                case 1: for index in pixels.indices where (index % width) % 6 < 3 { pixels[index] = 0 }  // bars without a code
                case 2: for index in pixels.indices where (index / width) % 2 == 0 { pixels[index] = 0 }  // stripes the other way
                default: for index in pixels.indices where index % 7 == 0 { pixels[index] = 0 }  // speckle
                }
                let report = try await Self.scan(Self.pipeline, GrayImage(width: width, height: height, pixels: pixels), known: ["7891234567895", "QB975545916BR"])
                #expect(report.width == width)
            }
        }
    }

    @Test func damagedFilesAreRefusedNotCrashed() async throws {
        let corpus = try await ScanCorpus.shared()
        var rng = SystemRandomNumberGenerator()
        let originals = [try corpus.bytes(corpus.photos.first { $0.file.hasSuffix(".jpg") }!.file), try corpus.bytes(corpus.photos.first { $0.file.hasSuffix(".png") }!.file)]
        var refused = 0, read = 0
        for original in originals {
            for round in 0..<40 {
                var bytes = original
                switch round % 4 {
                case 0: bytes = Array(bytes.prefix(Int.random(in: 1..<bytes.count, using: &rng)))  // cut anywhere
                case 1: for _ in 0..<8 { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }  // flipped bytes
                case 2: for _ in 0..<4 { bytes[Int.random(in: 2..<min(bytes.count, 400), using: &rng)] = UInt8.random(in: 0...255, using: &rng) }  // a damaged header
                default: bytes += (0..<Int.random(in: 1...5000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }  // junk after the end
                }
                do {
                    _ = try await Self.pipeline.scan(bytes, known: [])
                    read += 1
                } catch {
                    refused += 1
                }
            }
        }
        #expect(refused + read == 80 && refused > 0)
    }

    @Test func exifOrientationIsHonoured() async throws {
        let corpus = try await ScanCorpus.shared()
        let image = try ImageDecoder().decode(try corpus.badBytes("exif-orientation-6.jpg"))
        // Stored 120 × 200; seen (turned a quarter clockwise) 200 × 120 with the dark square top left.
        #expect(image.width == 200 && image.height == 120)
        #expect(image[10, 10] < 60 && image[190, 110] > 200 && image[190, 10] > 200)
    }

    @Test func theTimeBudgetBoundsAScan() async throws {
        let pipeline = ScanPipeline(ocr: DigitsOCR.shared(), timeBudget: .milliseconds(1))
        var pixels = [UInt8](repeating: 255, count: 1280 * 960)
        for index in pixels.indices where (index % 1280) % 9 < 4 && (index / 1280) > 300 && (index / 1280) < 600 { pixels[index] = 0 }
        let report = try await Self.scan(pipeline, GrayImage(width: 1280, height: 960, pixels: pixels), known: [])
        // The first step always runs; the budget stops the rest.
        #expect(report.timedOut && !report.verdict.found)
        #expect(report.steps.count <= 3, "\(report.steps.map(\.step))")
    }
}

extension ScanRobustnessTests {
    /// More photos than the pipeline holds at once are refused at once (503 `scanner-busy` over
    /// HTTP), not queued without end.
    @Test func tooManyAtOnceAreRefused() async throws {
        let corpus = try await ScanCorpus.shared()
        let pipeline = ScanPipeline(ocr: DigitsOCR.shared(), maxPending: 1)
        let photo = try corpus.bytes(corpus.photos.first { $0.degradation == "covered" }!.file)
        let outcomes = await withTaskGroup(of: String.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    do {
                        _ = try await pipeline.scan(photo, known: [])
                        return "scanned"
                    } catch let error as ScanError {
                        return error == .busy ? "busy" : "other"
                    } catch {
                        return "other"
                    }
                }
            }
            return await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(outcomes.contains("scanned") && outcomes.contains("busy") && !outcomes.contains("other"), "\(outcomes)")
        #expect(ScanError.busy.problem.status == .serviceUnavailable && ScanError.busy.problem.headers[.retryAfter] == "1")
    }
}
