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
